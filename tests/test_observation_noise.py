"""The noise level through a mask: the checkerboard-window estimator of ``masked_sigma``, its
fallback to the quadratic-residual blocks, and its input checks."""

import pytest
import torch
from helpers import smooth_image

from bayes_restore.hyper import estimate_observation_sigma
from bayes_restore.hyper.observation_noise import masked_sigma
from bayes_restore.operators import Mask

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("missing", [0.5, 0.8])
@pytest.mark.parametrize("sigma", [0.01, 0.1])
def test_windows_within_10_percent_on_smooth_image_and_pure_noise(missing, sigma):
    """Smooth image + white noise, and white noise alone: both unbiased within 10 %."""
    g = torch.Generator().manual_seed(11)
    clean = smooth_image(128)
    seen = torch.rand(clean.shape, generator=g) >= missing
    noise = sigma * torch.randn(clean.shape, generator=g, dtype=clean.dtype)
    y = torch.where(seen, clean + noise, 0.0)
    pure = torch.where(seen, noise, 0.0)
    got = masked_sigma(y, seen, method="windows")
    assert abs(got / sigma - 1) < 0.1
    assert abs(masked_sigma(pure, seen, method="windows") / sigma - 1) < 0.1
    auto = masked_sigma(y, seen)  # the smaller of the two readings
    assert auto == min(got, masked_sigma(y, seen, method="blocks"))
    assert abs(auto / sigma - 1) < 0.1
    assert auto == estimate_observation_sigma(y, Mask(seen))


def test_windows_ignore_quadratic_trends_and_scale_with_the_image():
    """Each window's checkerboard coefficient is fitted next to a quadratic: adding any
    quadratic surface leaves the estimate unchanged; scaling ``y`` scales it."""
    g = torch.Generator().manual_seed(5)
    n = 96
    seen = torch.rand(n, n, generator=g) < 0.5
    noise = 0.05 * torch.randn(n, n, generator=g, dtype=torch.float64)
    i = torch.arange(n, dtype=torch.float64)[:, None] / n
    j = torch.arange(n, dtype=torch.float64)[None, :] / n
    surface = 3.0 - 2.0 * i + 5.0 * j + 4.0 * i * i - 6.0 * i * j + 2.5 * j * j
    base = masked_sigma(torch.where(seen, noise, 0.0), seen, method="windows")
    tilted = masked_sigma(torch.where(seen, noise + surface, 0.0), seen, method="windows")
    assert tilted == pytest.approx(base, rel=1e-6)
    scaled = masked_sigma(torch.where(seen, 7 * noise, 0.0), seen, method="windows")
    assert scaled == pytest.approx(7 * base, rel=1e-9)


def test_windows_read_less_texture_than_blocks():
    """Fine random texture (a 2 x 2 box-filtered field) plus weak noise: the windows,
    which read the finest scale, are nearer the truth than the blocks' residuals."""
    g = torch.Generator().manual_seed(2)
    n = 128
    w = torch.randn(n + 1, n + 1, generator=g, dtype=torch.float64)
    texture = 0.05 * (w[1:, 1:] + w[:-1, 1:] + w[1:, :-1] + w[:-1, :-1]) / 4
    seen = torch.rand(n, n, generator=g) < 0.5
    y = torch.where(seen, texture + 0.01 * torch.randn(n, n, generator=g,
                                                        dtype=torch.float64), 0.0)
    windows = masked_sigma(y, seen, method="windows")
    blocks = masked_sigma(y, seen, method="blocks")
    assert 0.01 < windows < blocks


def test_fallback_to_blocks_on_small_images_and_sparse_masks():
    """Too few usable windows: "auto" is "blocks", and "windows" says why it cannot."""
    g = torch.Generator().manual_seed(7)
    for n, observed in ((32, 0.5), (80, 0.05)):
        seen = torch.rand(n, n, generator=g) < observed
        y = torch.where(seen, 0.1 * torch.randn(n, n, generator=g, dtype=torch.float64), 0.0)
        auto = masked_sigma(y, seen)
        assert auto == masked_sigma(y, seen, method="blocks")
        assert 0.05 < auto < 0.2
        with pytest.raises(ValueError, match="method='blocks'"):
            masked_sigma(y, seen, method="windows")


def test_channels_dtype_and_degenerate_inputs():
    g = torch.Generator().manual_seed(9)
    seen = torch.rand(96, 96, generator=g) < 0.5
    noise = torch.randn(2, 96, 96, generator=g, dtype=torch.float64)
    y = torch.where(seen, noise * torch.tensor([0.02, 0.04]).view(2, 1, 1), 0.0)
    each = [masked_sigma(y[c], seen) for c in range(2)]
    assert masked_sigma(y, seen) == pytest.approx((sum(e * e for e in each) / 2) ** 0.5)
    assert masked_sigma(y.float(), seen) == pytest.approx(masked_sigma(y, seen), rel=1e-3)
    assert masked_sigma(torch.zeros(96, 96), seen) == 0.0
    assert masked_sigma(y[0], torch.zeros_like(seen)) == 0.0


def test_bad_input_names_the_argument():
    seen = torch.ones(64, 64, dtype=torch.bool)
    y = torch.zeros(64, 64)
    with pytest.raises(ValueError, match="observed"):
        masked_sigma(y, torch.ones(32, 32, dtype=torch.bool))
    with pytest.raises(ValueError, match="method"):
        masked_sigma(y, seen, method="median")
    with pytest.raises(TypeError, match="y must"):
        masked_sigma(torch.zeros(64, 64, dtype=torch.int64), seen)
    with pytest.raises(TypeError, match="observed"):
        masked_sigma(y, [[True]])
    bad = y.clone()
    bad[3, 3] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        masked_sigma(bad, seen)
