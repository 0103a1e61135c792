"""A fast subset of the noise-level sweep (the full one is a benchmark script, 2 x 1125 cases).

The sweep adds Gaussian noise to scikit-image's images made small (resized to 128-256 pixels
with anti-aliasing, or cropped). The kurtosis estimator used to return exactly 0 on 29 of the
1125 resized cases: its fit drifted to ``sigma = 0`` where the fine scales show no heavy tails.
"""

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from bayes_restore.hyper import estimate_sigma

skimage = pytest.importorskip("skimage")

METHODS = ("auto", "kurtosis", "blocks", "mad")


def _small(name: str, size: int) -> np.ndarray:
    """The (greyed) image resized to ``size x size`` (anti-aliased), float64 in [0, 1]."""
    from skimage.transform import resize

    img = getattr(skimage.data, name)()
    img = skimage.color.rgb2gray(img) if img.ndim == 3 else skimage.img_as_float(img)
    return np.ascontiguousarray(resize(img, (size, size), anti_aliasing=True))


def _crop(name: str, size: int) -> np.ndarray:
    """The (greyed) image's centre ``size x size`` crop, float64 in [0, 1] (as the sweep)."""
    img = getattr(skimage.data, name)()
    img = skimage.color.rgb2gray(img) if img.ndim == 3 else skimage.img_as_float(img)
    i, j = (img.shape[0] - size) // 2, (img.shape[1] - size) // 2
    return np.ascontiguousarray(img[i : i + size, j : j + size], dtype=np.float64)


def _noisy(name: str, size: int, sigma: float, seed: int) -> np.ndarray:
    clean = _small(name, size)
    return clean + sigma * np.random.default_rng(seed).standard_normal(clean.shape)


# (image, size, sigma, seeds, lowest and highest estimate / sigma): the cases where the default
# returned 0. Brick and clock are smooth at these sizes: the blocks estimate is within 10 %.
# Gravel at sigma = 0.01 is texture first (its clean fine-scale power is that of noise of std
# ~0.024): every estimator reads it as noise, 2.5 times too high.
KNOWN_ZEROS = [
    ("brick", 128, 0.01, (0, 1, 2), 0.9, 1.1),
    ("brick", 128, 0.02, (0, 1, 2), 0.9, 1.1),
    ("clock", 128, 0.05, (0, 1), 0.9, 1.1),
    ("clock", 256, 0.02, (0, 1, 2), 0.9, 1.1),
    ("gravel", 192, 0.01, (0, 1, 2), 0.8, 3.0),
]


@pytest.mark.parametrize("name, size, sigma, seeds, low, high", KNOWN_ZEROS)
def test_the_former_zero_cases_get_a_positive_estimate(name, size, sigma, seeds, low, high):
    for seed in seeds:
        est = estimate_sigma(_noisy(name, size, sigma, seed))
        assert np.isfinite(est) and est > 0
        assert low * sigma <= est <= high * sigma, (name, size, sigma, seed, est / sigma)


@pytest.mark.parametrize(
    "name, size, sigma",
    [("camera", 256, 0.05), ("coins", 192, 0.1), ("grass", 256, 0.05), ("clock", 128, 0.2),
     ("rocket", 192, 0.1)],
)
def test_accuracy_at_sigma_005_and_above(name, size, sigma):
    """Within 20 % (the sweep's requirement) on a few resized cases; grass is the texture case."""
    for seed in (0, 1):
        est = estimate_sigma(_noisy(name, size, sigma, seed))
        assert est == pytest.approx(sigma, rel=0.2), (name, size, sigma, seed, est / sigma)


def test_grass_crop_keeps_the_kurtosis_correction():
    """Full-resolution grass texture: "blocks" is about 30 % high, the default within 10 %."""
    img = skimage.img_as_float(skimage.data.grass())[192:320, 192:320]
    noisy = img + 0.05 * np.random.default_rng(0).standard_normal(img.shape)
    assert estimate_sigma(noisy, method="blocks") > 1.25 * 0.05
    assert estimate_sigma(noisy) == pytest.approx(0.05, rel=0.1)


def test_grass_resized_to_128_within_20_percent_on_20_seeds():
    """The sweep's closest case: Gaussian-like pixel texture, so the blocks estimate decides.

    Its texture bias is about +14 %; at stride 8 (225 blocks) the quantile's spread put seed 2
    at +20.6 %, at stride 4 every one of 20 seeds is within 20 % (worst +19.4 %).
    """
    clean = _small("grass", 128)
    for seed in range(20):
        noisy = clean + 0.05 * np.random.default_rng(seed).standard_normal(clean.shape)
        assert estimate_sigma(noisy) == pytest.approx(0.05, rel=0.2), seed


def test_blocks_stride_4_on_small_images_only(monkeypatch):
    """Stride 4 up to ~370 px; from 512 x 512 the blocks estimate is that of stride 8."""
    from bayes_restore.hyper import noise

    rng = np.random.default_rng(0)
    for size, same in ((128, False), (512, True)):
        noisy = _small("camera", size) + 0.05 * rng.standard_normal((size, size))
        default = estimate_sigma(noisy, method="blocks")
        with monkeypatch.context() as m:
            m.setattr(noise, "_BLOCKS_STRIDE", noise._STRIDE)
            stride8 = estimate_sigma(noisy, method="blocks")
        assert (default == stride8) is same, size
        assert default == pytest.approx(0.05, rel=0.1), size


# small images, mostly a few grey levels (so that robust statistics can be exactly 0), with an
# optional scale: every method must give a finite estimate > 0 unless the image is constant
_levels = st.sampled_from([0.0, 1.0, -2.5, 1e-3, 0.5])


@settings(max_examples=80, deadline=None, derandomize=True)
@given(
    image=st.integers(2, 40).flatmap(
        lambda h: st.integers(2, 40).flatmap(
            lambda w: hnp.arrays(np.float64, (h, w), elements=_levels)
        )
    ),
    scale=st.sampled_from([1e-200, 1e-6, 1.0, 1e6, 1e200]),
)
def test_never_zero_on_a_non_constant_image(image, scale):
    assume(np.ptp(image) > 0)
    image = image * scale
    methods = METHODS if min(image.shape) >= 16 else ("auto", "mad")
    for method in methods:
        est = estimate_sigma(image, method=method)
        assert np.isfinite(est) and est > 0, (method, image.shape, est)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    shape=st.tuples(st.integers(16, 48), st.integers(16, 48)),
    seed=st.integers(0, 2**31 - 1),
    sparsity=st.sampled_from([0.0, 0.5, 0.95, 0.999]),
)
def test_never_zero_on_sparse_random_images(shape, seed, sparsity):
    """White noise on a random share of the pixels, the rest exactly flat."""
    rng = np.random.default_rng(seed)
    image = rng.standard_normal(shape) * (rng.random(shape) >= sparsity)
    assume(np.ptp(image) > 0)
    for method in METHODS:
        est = estimate_sigma(image, method=method)
        assert np.isfinite(est) and est > 0, (method, shape, sparsity, est)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("shape", [(2, 2), (3, 5), (16, 16), (130, 140)])
def test_constant_image_gives_exactly_zero(method, shape):
    if method in ("kurtosis", "blocks") and min(shape) < 16:
        pytest.skip("needs 16 x 16")
    for value in (0.0, 0.3, -7.0, 1e300):
        assert estimate_sigma(np.full(shape, value), method=method) == 0.0


def test_constant_and_non_constant_slices_in_one_batch():
    rng = np.random.default_rng(0)
    batch = np.stack([np.full((64, 64), 0.4), 0.4 + 0.1 * rng.standard_normal((64, 64))])
    out = estimate_sigma(batch, method="blocks")
    assert out[0] == 0.0 and out[1] == pytest.approx(0.1, rel=0.1)
    t = estimate_sigma(torch.from_numpy(batch), method="mad")
    assert t[0] == 0 and t[1] > 0


def test_gcv_cap_keeps_parameter_free_denoising_from_erasing_texture():
    """Clean texture as strong as the noise makes sigma over-estimated and SURE's weight
    erase the texture (-2.9 dB against the input); the GCV cap takes a smaller weight."""
    from skimage.metrics import peak_signal_noise_ratio as psnr

    from bayes_restore.hyper import tv_weight_sure

    clean = _small("grass", 128)
    noisy = clean + 0.01 * np.random.default_rng(0).standard_normal(clean.shape)
    sigma = float(estimate_sigma(noisy))
    assert sigma > 2 * 0.01  # the over-estimate the cap is for
    capped = tv_weight_sure(noisy, sigma, gcv_cap=True)
    plain = tv_weight_sure(noisy, sigma)
    assert capped.trace["capped"] and capped.weight < plain.weight / 4
    p_in = psnr(clean, noisy, data_range=1)
    assert psnr(clean, plain.x.numpy(), data_range=1) < p_in - 1  # SURE alone: worse
    assert psnr(clean, capped.x.numpy(), data_range=1) > p_in  # capped: better than input


def test_gcv_cap_leaves_sure_alone_when_sigma_is_right():
    from bayes_restore.hyper import tv_weight_sure

    clean = _small("camera", 128)
    noisy = clean + 0.1 * np.random.default_rng(1).standard_normal(clean.shape)
    est = tv_weight_sure(noisy, 0.1, gcv_cap=True)
    assert not est.trace["capped"] and est.weight == 2 * est.trace["sure_weight"]


# Three of the 52 sweep cases where parameter-free denoising came out worse than its input
# (sigma over-estimated 1.4-3.1 times by clean pixel-scale texture; SURE then erased the
# texture): (protocol, image, size, sigma, seed, the PSNR gain before the texture guard).
# Coins lost 0.90 dB in the sweep (sigma 1.91 times too high, blocks at stride 8); at stride 4
# the estimate is 1.86 times too high and SURE's own weight loses 0.50 dB
FORMER_LOSSES = [
    ("resize", "grass", 128, 0.01, 1, -3.02),
    ("crop", "grass", 128, 0.01, 0, -1.47),
    ("resize", "coins", 128, 0.01, 2, -0.50),
]


@pytest.mark.parametrize("protocol, name, size, sigma, seed, before", FORMER_LOSSES)
def test_parameter_free_denoising_is_not_worse_than_its_input(protocol, name, size, sigma, seed,
                                                               before):
    """The texture guard: with sigma estimated, the TV weight must also improve on the input
    at the plausible lower noise level the spectral tilt gives."""
    from skimage.metrics import peak_signal_noise_ratio as psnr

    from bayes_restore import denoise
    from bayes_restore.hyper import choose_tv_weight

    clean = (_small if protocol == "resize" else _crop)(name, size)
    noisy = clean + sigma * np.random.default_rng(seed).standard_normal(clean.shape)
    s, weight, info = choose_tv_weight(noisy)
    assert s > 1.3 * sigma and info["sigma_low"] < 0.9 * s  # over-estimated, and doubted
    trace = info["estimate"].trace
    assert trace["guarded"] and weight < 2 * trace["sure_weight"]  # lambda = 2 w
    gain = psnr(clean, denoise(noisy, "tv", sigma=s, weight=weight), data_range=1) - psnr(
        clean, noisy, data_range=1)
    assert gain >= 0, (protocol, name, size, sigma, seed, gain)
    if name == "coins":  # the test can fail: SURE's own weight is worse than the input
        plain = denoise(noisy, "tv", sigma=s, weight=2 * trace["sure_weight"])
        loss = psnr(clean, plain, data_range=1) - psnr(clean, noisy, data_range=1)
        assert loss == pytest.approx(before, abs=0.3)


@pytest.mark.parametrize("name, size, sigma", [("camera", 128, 0.05), ("coins", 128, 0.1)])
def test_texture_guard_leaves_sure_alone_where_sigma_is_right(name, size, sigma):
    from bayes_restore.hyper import choose_tv_weight

    _, weight, info = choose_tv_weight(_noisy(name, size, sigma, 0))
    trace = info["estimate"].trace
    assert not trace["guarded"] and weight == 2 * trace["sure_weight"]


def _blobs(size: int) -> np.ndarray:
    """The sweep's binary blobs (generator seeded 0) resized to ``size x size``, anti-aliased."""
    from skimage.transform import resize

    img = skimage.img_as_float(skimage.data.binary_blobs(rng=0))
    return np.ascontiguousarray(resize(img, (size, size), anti_aliasing=True))


def test_texture_guard_leaves_sharp_edges_alone():
    """Resized binary blobs at sigma = 0.05: the edges tilt the spectrum like texture (tilt
    1.8) but leave the finest band white, so sigma is trusted and SURE's weight kept (the
    guard used to cut this case's gain from +6.4 to +0.7 dB)."""
    from skimage.metrics import peak_signal_noise_ratio as psnr

    from bayes_restore import denoise
    from bayes_restore.hyper import choose_tv_weight
    from bayes_restore.hyper.noise import sigma_low_ratio

    clean = _blobs(128)
    noisy = clean + 0.05 * np.random.default_rng(0).standard_normal(clean.shape)
    assert sigma_low_ratio(noisy) == 1.0
    s, weight, info = choose_tv_weight(noisy)
    trace = info["estimate"].trace
    assert abs(s / 0.05 - 1) < 0.2 and info["sigma_low"] == s
    assert not trace["guarded"] and weight == 2 * trace["sure_weight"]
    gain = psnr(clean, denoise(noisy, "tv", sigma=s, weight=weight), data_range=1) - psnr(
        clean, noisy, data_range=1)
    assert gain > 5.0


def test_sigma_low_ratio_is_one_on_noise_and_below_one_on_tilted_texture():
    from bayes_restore.hyper.noise import sigma_low_ratio

    rng = np.random.default_rng(0)
    assert sigma_low_ratio(0.1 * rng.standard_normal((128, 128))) == 1.0
    assert sigma_low_ratio(np.full((64, 64), 0.3)) == 1.0  # constant
    assert sigma_low_ratio(rng.standard_normal((12, 40))) == 1.0  # smaller than a block
    rng = np.random.default_rng(2)
    w = rng.standard_normal((129, 129))  # 2 x 2 box-filtered noise: a tilted spectrum ...
    box = 0.05 * (w[1:, 1:] + w[:-1, 1:] + w[1:, :-1] + w[:-1, :-1]) / 4
    strength = np.kron(rng.uniform(0.5, 2, (8, 8)), np.ones((16, 16)))  # ... varying by patch
    noise = 0.01 * rng.standard_normal(box.shape)
    ratio = sigma_low_ratio(strength * box + noise)
    assert 1 / 3.5 <= ratio < 0.5
    both = sigma_low_ratio(torch.from_numpy(np.stack([strength * box + noise, 0.1 * w[1:, 1:]])))
    assert both.shape == (2,) and both[0] < 0.5 and both[1] == 1
    crop = _crop("grass", 128)  # real texture: over-estimated and doubted (a former loss)
    assert sigma_low_ratio(crop + 0.01 * np.random.default_rng(0).standard_normal(crop.shape)) < 0.5


def test_sure_sigma_low_lowers_the_weight_only_when_needed():
    from bayes_restore.hyper import tv_weight_sure

    clean = _small("grass", 128)
    noisy = clean + 0.01 * np.random.default_rng(0).standard_normal(clean.shape)
    plain = tv_weight_sure(noisy, 0.027)
    low = tv_weight_sure(noisy, 0.027, sigma_low=0.01)
    assert low.trace["guarded"] and low.weight < plain.weight / 2
    assert low.trace["sure_weight"] == plain.trace["sure_weight"]
    same = tv_weight_sure(noisy, 0.027, sigma_low=0.027)
    assert not same.trace["guarded"] and same.weight == plain.weight
    with pytest.raises(ValueError, match="sigma_low"):
        tv_weight_sure(noisy, 0.027, sigma_low=0.0)
