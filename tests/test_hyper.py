"""Noise and prior-scale estimation: known noise, exact evidence, SURE against the true MSE."""

import math

import numpy as np
import pyro.poutine as poutine
import pytest
import torch
from helpers import piecewise_image
from scipy import stats

from bayes_restore.differences import gradient_energy, idct2, laplacian_eigenvalues
from bayes_restore.hyper import (
    choose_tv_weight,
    estimate_sigma,
    gaussian_empirical_bayes,
    gibbs_theta,
    hierarchical_tv_model,
    tv_scale_gibbs,
    tv_scale_sapg,
    tv_sure_risk,
    tv_weight_sure,
)
from bayes_restore.infer import gaussian_log_evidence, tv_denoise_pdhg
from bayes_restore.restore import restore


def _camera() -> np.ndarray:
    skimage = pytest.importorskip("skimage")
    return skimage.img_as_float(skimage.data.camera())


def _psnr(x, clean) -> float:
    return 10 * math.log10(1.0 / float(((torch.as_tensor(x).double() - clean) ** 2).mean()))


# --- estimate_sigma ----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["kurtosis", "blocks", "mad"])
@pytest.mark.parametrize("sigma", [0.02, 0.1, 0.3])
def test_sigma_of_noise_on_flat_and_piecewise_constant_images(rng, method, sigma):
    flat = np.full((256, 256), 0.5)
    piecewise = piecewise_image(256, 256)
    for clean in (flat, piecewise):
        noisy = clean + sigma * rng.standard_normal(clean.shape)
        assert estimate_sigma(noisy, method=method) == pytest.approx(sigma, rel=0.04)


@pytest.mark.parametrize("sigma", [0.05, 0.1, 0.2])
def test_sigma_on_a_natural_image_within_ten_percent(rng, sigma):
    clean = _camera()
    noisy = clean + sigma * rng.standard_normal(clean.shape)
    assert estimate_sigma(noisy) == pytest.approx(sigma, rel=0.10)
    # the local estimator is what gets there at low noise: plain MAD is further off
    if sigma == 0.05:
        mad = estimate_sigma(noisy, method="mad")
        assert abs(estimate_sigma(noisy) - sigma) < abs(mad - sigma)


def _burst_texture(rng, n=512, cell=32, p=0.05, c=6.0, strength=0.25, blur=0.6):
    """Smooth image + a Gaussian scale mixture: blurred white noise whose variance is 1 on most
    ``cell x cell`` cells and ``1 + c`` on a random share ``p`` of them (heavy-tailed DCT bands,
    texture everywhere); ``strength`` is its std on the quiet cells."""
    from scipy.ndimage import gaussian_filter

    i, j = np.mgrid[:n, :n] / n
    smooth = 0.5 + 0.3 * np.sin(2 * np.pi * i) * np.cos(3 * np.pi * j)
    var = 1 + c * (rng.random((n // cell, n // cell)) < p)
    scale = np.kron(np.sqrt(var), np.ones((cell, cell)))
    tex = gaussian_filter(rng.standard_normal((n, n)), blur, mode="wrap")
    return smooth + strength * scale * tex / tex.std()


@pytest.mark.parametrize("sigma", [0.05, 0.1])
def test_kurtosis_method_sees_through_gaussian_scale_mixture_texture(rng, sigma):
    """Texture as strong as 2.5 sigma everywhere: "blocks" reads it as noise (+24-25 % on these
    draws), the kurtosis fit does not (within 3 %): Gaussian noise has no excess kurtosis."""
    clean = _burst_texture(rng, strength=2.5 * sigma)
    noisy = clean + sigma * rng.standard_normal(clean.shape)
    assert estimate_sigma(noisy, method="blocks") > 1.15 * sigma
    assert estimate_sigma(noisy, method="kurtosis") == pytest.approx(sigma, rel=0.10)
    assert estimate_sigma(noisy) == estimate_sigma(noisy, method="kurtosis")  # the default


def test_kurtosis_method_keeps_blocks_on_coins_at_low_noise(rng):
    """Coins at sigma = 0.02: the clean image's own band kurtoses are unequal and dominate the
    fit (21-23 % low without the homogeneity gate); the image has quiet regions, so "blocks"
    is kept (a few % high)."""
    skimage = pytest.importorskip("skimage")
    clean = skimage.img_as_float(skimage.data.coins())
    noisy = clean + 0.02 * rng.standard_normal(clean.shape)
    blocks = estimate_sigma(noisy, method="blocks")
    assert blocks == pytest.approx(0.02, rel=0.12)
    assert estimate_sigma(noisy, method="kurtosis") == pytest.approx(blocks, rel=1e-12)


def test_kurtosis_method_batches_dtypes_and_small_images(rng):
    sig = np.array([0.05, 0.1, 0.2])
    clean = np.stack([_burst_texture(rng, n=256, strength=0.0)] * 3)
    noisy = clean + sig[:, None, None] * rng.standard_normal(clean.shape)
    per_slice = np.array([estimate_sigma(x, method="kurtosis") for x in noisy])
    np.testing.assert_allclose(per_slice, sig, rtol=0.04)
    batch = estimate_sigma(noisy[None], method="kurtosis")  # (1, 3, H, W): one value per slice
    assert isinstance(batch, np.ndarray) and batch.shape == (1, 3)
    np.testing.assert_allclose(batch[0], per_slice, rtol=1e-12)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device, dtype in [(d, t) for d in devices for t in (torch.float32, torch.float64)]:
        t = torch.from_numpy(noisy).to(device=device, dtype=dtype)
        out = estimate_sigma(t, method="kurtosis")
        assert out.shape == (3,) and out.dtype == dtype and out.device == t.device
        np.testing.assert_allclose(out.cpu().double().numpy(), per_slice, rtol=1e-3)
    assert estimate_sigma(np.full((64, 64), 0.5), method="kurtosis") < 1e-12  # as "blocks"
    with pytest.raises(ValueError, match="method='kurtosis' needs an image of at least 16"):
        estimate_sigma(np.zeros((15, 64)), method="kurtosis")
    tiny = 0.1 * rng.standard_normal((16, 16))  # allowed, if rough
    assert 0 < estimate_sigma(tiny, method="kurtosis") < 0.2


def test_sigma_matches_scikit_image_wavelet_estimate(rng):
    pytest.importorskip("pywt")
    from skimage.restoration import estimate_sigma as sk_estimate_sigma

    noisy = piecewise_image(256, 256) + 0.1 * rng.standard_normal((256, 256))
    assert estimate_sigma(noisy, method="mad") == pytest.approx(sk_estimate_sigma(noisy), rel=0.05)


def test_sigma_shapes_and_types(rng):
    sig = np.array([0.05, 0.1, 0.2])[:, None, None]
    colour = 0.5 + sig * rng.standard_normal((3, 160, 160))
    grey = estimate_sigma(colour[0])
    assert isinstance(grey, float)
    per_channel = estimate_sigma(colour)
    assert isinstance(per_channel, np.ndarray) and per_channel.shape == (3,)
    np.testing.assert_allclose(per_channel, sig.ravel(), rtol=0.06)
    batch = torch.from_numpy(np.stack([colour, colour[::-1]])).to(torch.float32)
    out = estimate_sigma(batch)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 3) and out.dtype == torch.float32
    np.testing.assert_allclose(out[1].numpy(), sig.ravel()[::-1], rtol=0.06)
    scalar = estimate_sigma(batch[0, 0])
    assert isinstance(scalar, torch.Tensor) and scalar.shape == ()
    small = 0.1 * rng.standard_normal((40, 40))  # "auto" falls back to MAD below 128 x 128
    assert estimate_sigma(small) == estimate_sigma(small, method="mad")


@pytest.mark.parametrize(
    "image, match",
    [
        (np.full((32, 32), np.nan), "image"),
        (np.zeros(32), "image"),
        (np.zeros((1, 1, 2, 8, 8)), "image"),
        (np.zeros((8, 8), dtype=np.complex128), "image"),
        ([[0.0, 1.0]], "image"),
    ],
)
def test_sigma_errors_name_the_argument(image, match):
    with pytest.raises(ValueError, match=match):
        estimate_sigma(image)


def test_sigma_rejects_unknown_method():
    with pytest.raises(ValueError, match="method must be one of .*'kurtosis'"):
        estimate_sigma(np.zeros((32, 32)), method="wavelet")


# --- Gaussian-gradient prior: empirical Bayes --------------------------------------------------


def _gmrf_draw(h, w, sigma, b, gen):
    """``x = IDCT(b z / sqrt(mu))`` on the non-constant modes, ``y = x + sigma n``."""
    mu = laplacian_eigenvalues(h, w)
    z = torch.randn(h, w, generator=gen, dtype=torch.float64)
    x = idct2(torch.where(mu > 0, b * z / mu.clamp_min(1e-12).sqrt(), torch.zeros_like(z)))
    return x + sigma * torch.randn(h, w, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize("sigma, b", [(0.05, 0.05), (0.02, 0.05), (0.1, 0.1)])
def test_empirical_bayes_recovers_sigma_and_scale_from_prior_draws(gen, sigma, b):
    """256 x 256 draws with b / sigma >= 0.5 (smaller ratios leave b weakly identified)."""
    y = _gmrf_draw(256, 256, sigma, b, gen)
    s_hat, b_hat = gaussian_empirical_bayes(y)
    assert s_hat == pytest.approx(sigma, rel=0.03)
    assert b_hat == pytest.approx(b, rel=0.04)
    _, b_given = gaussian_empirical_bayes(y.numpy(), sigma=sigma)
    assert b_given == pytest.approx(b, rel=0.04)


def test_empirical_bayes_is_the_maximum_of_the_package_evidence(gen):
    y = _gmrf_draw(64, 48, 0.1, 0.03, gen)
    s_hat, b_hat = gaussian_empirical_bayes(y)
    best = float(gaussian_log_evidence(y, s_hat, b_hat))
    for ds, db in [(1.01, 1), (0.99, 1), (1, 1.02), (1, 0.98), (1.01, 1.01), (0.99, 0.99)]:
        assert best > float(gaussian_log_evidence(y, s_hat * ds, b_hat * db))
    _, b_given = gaussian_empirical_bayes(y, sigma=0.1)
    ev = float(gaussian_log_evidence(y, 0.1, b_given))
    assert ev > float(gaussian_log_evidence(y, 0.1, b_given * 1.01))
    assert ev > float(gaussian_log_evidence(y, 0.1, b_given / 1.01))


def test_empirical_bayes_errors():
    with pytest.raises(ValueError, match="sigma"):
        gaussian_empirical_bayes(np.zeros((8, 8)), sigma=-1.0)
    with pytest.raises(ValueError, match="image"):
        gaussian_empirical_bayes(np.full((8, 8), np.inf))


# --- TV: SURE ----------------------------------------------------------------------------------


def test_sure_tracks_the_true_mse_at_several_weights(rng, gen):
    """A mosaic of 16 x 16 tiles: piecewise constant, with enough edges for a sizeable MSE.

    One realisation fluctuates by a few % (SURE - MSE has std ~ sigma^2 sqrt(2 / N) and
    more); the average over four noise draws is unbiased.
    """
    sigma = 0.1
    clean = torch.from_numpy(_mosaic(rng, size=16))
    for w in (0.03, 0.06, 0.12):
        risks, mses = [], []
        for _ in range(4):
            y = clean + sigma * torch.randn(clean.shape, generator=gen, dtype=torch.float64)
            risk, x = tv_sure_risk(y, sigma, w, generator=gen)
            risks.append(risk)
            mses.append(float((x.double() - clean).square().mean()))
            assert risk == pytest.approx(mses[-1], rel=0.15)
        assert np.mean(risks) == pytest.approx(np.mean(mses), rel=0.04)


def _mosaic(rng, tiles=16, size=8):
    return np.kron(rng.random((tiles, tiles)), np.ones((size, size)))


@pytest.mark.parametrize("image", ["piecewise", "mosaic"])
def test_sure_weight_is_near_the_oracle(rng, gen, image):
    """128 x 128: on much smaller or sparser images SURE's own noise (std ~ sigma^2 sqrt(2/N))
    exceeds the MSE differences between weights near the optimum."""
    sigma = 0.1
    clean = piecewise_image(128, 128) if image == "piecewise" else _mosaic(rng)
    clean = torch.from_numpy(clean).float()
    y = clean + sigma * torch.randn(clean.shape, generator=gen)
    est = tv_weight_sure(y, sigma, generator=gen)
    assert est.method == "sure" and est.weight == pytest.approx(2 * est.skimage_weight)
    assert est.scale == pytest.approx(sigma**2 / est.skimage_weight)
    grid = sigma * np.exp(np.linspace(np.log(0.1), np.log(3.0), 30))
    oracle = max(_psnr(tv_denoise_pdhg(y, 2 * float(w), tol=1e-3)[0], clean) for w in grid)
    chosen = _psnr(tv_denoise_pdhg(y, est.weight, tol=1e-3)[0], clean)
    assert chosen > oracle - 0.2
    assert est.x is not None and est.x.shape == y.shape


def test_sure_float32_and_tolerance_do_not_move_the_weight(gen):
    clean = torch.from_numpy(piecewise_image(96, 96))
    y = clean + 0.1 * torch.randn(clean.shape, generator=gen, dtype=torch.float64)
    loose = tv_weight_sure(y, 0.1, generator=torch.Generator().manual_seed(1))
    tight = tv_weight_sure(y, 0.1, tol=1e-4, dtype=torch.float64,
                           generator=torch.Generator().manual_seed(1))
    assert loose.skimage_weight == pytest.approx(tight.skimage_weight, rel=0.05)


def test_sure_on_colour_and_batch_returns_one_weight(gen):
    clean = torch.from_numpy(piecewise_image(48, 48))
    y = clean.expand(2, 3, 48, 48) + 0.1 * torch.randn(2, 3, 48, 48, generator=gen,
                                                        dtype=torch.float64)
    est = tv_weight_sure(y, 0.1, generator=gen)
    assert est.x.shape == y.shape and 0.01 < est.skimage_weight < 0.4


def test_sure_errors():
    y = np.zeros((16, 16))
    with pytest.raises(ValueError, match="sigma"):
        tv_weight_sure(y, 0.0)
    with pytest.raises(ValueError, match="bounds"):
        tv_weight_sure(y, 0.1, bounds=(2.0, 1.0))
    with pytest.raises(ValueError, match="skimage_weight"):
        tv_sure_risk(y, 0.1, -1.0)


# --- TV: hierarchical model, Gibbs and SAPG ---------------------------------------------------


def test_gamma_conditional_moments_and_law(gen):
    alpha, beta0 = 2.0, 0.5
    x = torch.rand(4, 4, generator=gen, dtype=torch.float64)
    n = x.numel()
    tv = float(gradient_energy(x, 1.0))
    draws = gibbs_theta(x.expand(40000, 4, 4), alpha, beta0, gen)
    shape, rate = alpha + n - 1, beta0 + tv
    assert draws.shape == (40000,)
    assert float(draws.mean()) == pytest.approx(shape / rate, rel=0.005)
    assert float(draws.var()) == pytest.approx(shape / rate**2, rel=0.03)
    assert stats.kstest(draws.numpy(), stats.gamma(shape, scale=1 / rate).cdf).pvalue > 1e-3


def test_gamma_conditional_counts_channels(gen):
    x = torch.rand(3, 5, 6, generator=gen, dtype=torch.float64)
    tv = float(gradient_energy(x, 1.0, event_dim=3))
    draws = gibbs_theta(x.expand(20000, 3, 5, 6), 1.0, 1.0, gen, event_dim=3)
    assert float(draws.mean()) == pytest.approx((1.0 + 90 - 3) / (1.0 + tv), rel=0.01)


def test_hierarchical_model_log_joint(gen):
    y = torch.rand(6, 7, generator=gen, dtype=torch.float64)
    x = torch.rand(6, 7, generator=gen, dtype=torch.float64)
    theta, sigma, alpha, beta0 = torch.tensor(12.0, dtype=torch.float64), 0.1, 2.0, 0.3
    tr = poutine.trace(poutine.condition(hierarchical_tv_model, {"theta": theta, "x": x}))
    log_joint = float(tr.get_trace(y, sigma=sigma, alpha=alpha, beta0=beta0).log_prob_sum())
    n = y.numel()
    expected = (
        stats.gamma(alpha, scale=1 / beta0).logpdf(12.0)
        - 12.0 * float(gradient_energy(x, 1.0)) + (n - 1) * math.log(12.0)
        + stats.norm(x.numpy(), sigma).logpdf(y.numpy()).sum()
    )
    assert log_joint == pytest.approx(expected, rel=1e-10)


def test_samplers_land_near_the_sure_weight(gen):
    sigma = 0.1
    clean = torch.from_numpy(piecewise_image(64, 64))
    y = clean + sigma * torch.randn(clean.shape, generator=gen, dtype=torch.float64)
    sapg = tv_scale_sapg(y, sigma, num_iter=150, burn_in=70, generator=gen)
    gibbs = tv_scale_gibbs(y, sigma, num_iter=150, burn_in=70, generator=gen)
    sure = tv_weight_sure(y, sigma, generator=gen)
    for est in (sapg, gibbs):
        assert 0.33 < est.skimage_weight / sure.skimage_weight < 3
        assert len(est.trace["theta"]) == 150
    assert gibbs.skimage_weight == pytest.approx(sapg.skimage_weight, rel=0.15)


# --- defaults ----------------------------------------------------------------------------------


def test_choose_tv_weight_estimates_sigma_and_returns_the_energy_weight(rng):
    clean = _mosaic(rng, size=10)
    noisy = clean + 0.1 * rng.standard_normal(clean.shape)
    sigma, weight, info = choose_tv_weight(noisy, generator=torch.Generator().manual_seed(0))
    assert info["sigma_estimated"] and sigma == pytest.approx(0.1, rel=0.05)
    assert weight == pytest.approx(2 * info["skimage_weight"])
    assert info["scale"] == pytest.approx(2 * sigma**2 / weight)
    assert info["method"] == "sure" and info["time"] > 0
    given, _, info2 = choose_tv_weight(noisy, 0.1, generator=torch.Generator().manual_seed(0))
    assert given == 0.1 and not info2["sigma_estimated"]


def test_choose_tv_weight_errors():
    with pytest.raises(ValueError, match="method"):
        choose_tv_weight(np.zeros((16, 16)), 0.1, method="joint-map")
    with pytest.raises(ValueError, match="sigma"):
        choose_tv_weight(np.zeros((16, 16)), -0.1)
    with pytest.raises(ValueError, match="noise"):
        choose_tv_weight(np.zeros((16, 16)))


def test_sure_and_restore_are_reproducible_without_a_generator(gen):
    # the Monte Carlo probe has a fixed default seed: same image, same weight, same MAP
    clean = torch.zeros(48, 48, dtype=torch.float64)
    clean[12:36, 8:30] = 1.0
    noisy = clean + 0.1 * torch.randn(48, 48, generator=gen, dtype=torch.float64)
    torch.manual_seed(1)
    first = tv_weight_sure(noisy, 0.1)
    torch.manual_seed(2)  # the global generator plays no part
    assert tv_weight_sure(noisy, 0.1).skimage_weight == first.skimage_weight
    a = restore(noisy.numpy(), "tv")
    b = restore(noisy.numpy(), "tv")
    weights = [p.diagnostics["parameters"]["weight_estimated"] for p in (a, b)]
    assert weights[0] == weights[1]
    np.testing.assert_array_equal(a.map, b.map)
    other = tv_weight_sure(noisy, 0.1, generator=torch.Generator().manual_seed(5))
    assert other.skimage_weight != first.skimage_weight  # the probe does matter


def test_kurtosis_estimate_scales_with_the_image_without_overflow(rng):
    y = 0.1 * rng.standard_normal((128, 128))
    ref = estimate_sigma(y, method="kurtosis")
    for scale in (1e-150, 1e150, 1e300):  # fourth powers of 1e150 overflow float64
        assert estimate_sigma(y * scale, method="kurtosis") / scale == pytest.approx(ref)
