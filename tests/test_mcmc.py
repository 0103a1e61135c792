"""Samplers: proximal Langevin against NUTS (TV) and against exact Gaussian answers; API checks."""

import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from helpers import piecewise_image

from bayes_restore.differences import dct_matrix, div, grad, laplacian_eigenvalues
from bayes_restore.infer.gaussian import dct_map, gaussian_posterior_std
from bayes_restore.infer.mcmc import mcmc, skrock_coefficients
from bayes_restore.models import restoration_model
from bayes_restore.operators import Blur, LinearOperator, Mask, gaussian_psf
from bayes_restore.priors import GaussianGradient, GradientPrior, TotalVariation

SIGMA = 0.1


def _noisy(h, w, seed=1, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    clean = torch.from_numpy(piecewise_image(h, w)).to(dtype)
    return clean + SIGMA * torch.randn(clean.shape, generator=gen, dtype=dtype)


def _agreement(ours, reference):
    """(mean |diff| average, mean |diff| max, average relative |std diff|, average std ratio)."""
    dm = (ours.mean - reference.mean).abs()
    rel = ((ours.std - reference.std).abs() / reference.std).mean()
    return float(dm.mean()), float(dm.max()), float(rel), float((ours.std / reference.std).mean())


def _agrees(stats):
    mean_avg, mean_max, std_rel, _ = stats
    return mean_avg <= 0.01 and mean_max <= 0.03 and std_rel <= 0.15


# --- TV: against Pyro's NUTS on a small crop ---------------------------------------------------


@pytest.fixture(scope="module")
def tv_8x8():
    """An 8x8 TV denoising posterior and a NUTS reference (one chain, about 20 s)."""
    y = _noisy(8, 8)
    kwargs = {"prior": TotalVariation(0.1, shape=(8, 8)), "sigma": SIGMA}
    pyro.clear_param_store()
    nuts = mcmc(restoration_model, y, sampler="nuts", num_samples=400, warmup=200,
                num_chains=1, seed=3, **kwargs)
    return y, kwargs, nuts


def test_nuts_reference_is_sane(tv_8x8):
    _, _, nuts = tv_8x8
    d = nuts.diagnostics
    assert d["sampler"] == "nuts" and d["max_plate_nesting"] == 0
    assert nuts.samples.shape == (1, 400, 8, 8) and nuts.samples.dtype == torch.float32
    assert d["gradient_evaluations"] > 600 and d["divergences"] <= 4
    # the noise level bounds the posterior std of a log-concave posterior (Brascamp-Lieb)
    assert float(nuts.std.max()) < SIGMA


def test_skrock_agrees_with_nuts_on_tv(tv_8x8):
    """The issue's criterion (mean within 0.01, std within 15 %) at a small size."""
    y, kwargs, nuts = tv_8x8
    ours = mcmc(restoration_model, y, sampler="skrock", num_samples=500, num_chains=16,
                seed=0, **kwargs)
    stats = _agreement(ours, nuts)
    assert _agrees(stats), stats
    assert 0.9 < stats[3] < 1.1  # no systematic inflation or shrinkage of the std
    assert ours.diagnostics["lambda_MY"] == pytest.approx(0.01 * SIGMA**2)


def test_lm_agrees_with_nuts_on_tv(tv_8x8):
    y, kwargs, nuts = tv_8x8
    ours = mcmc(restoration_model, y, sampler="lm", num_samples=1000, num_chains=16, seed=0,
                **kwargs)
    stats = _agreement(ours, nuts)
    assert _agrees(stats), stats


def test_large_moreau_yosida_smoothing_is_detected_as_biased(tv_8x8):
    """lambda_MY = sigma^2 smooths the TV kinks away: the comparison must notice."""
    y, kwargs, nuts = tv_8x8
    biased = mcmc(restoration_model, y, sampler="skrock", num_samples=500, num_chains=16,
                  seed=0, smoothing=1.0, **kwargs)
    stats = _agreement(biased, nuts)
    assert not _agrees(stats), stats
    assert stats[3] > 1.05  # too wide, as the design page warns


# --- beta = 2: exact answers -----------------------------------------------------------------


def _stationary_variance(sampler, p, diagnostics):
    """Stationary variance (times the curvature h) of a sampler on N(0, 1/h), step p = delta h."""
    if sampler == "lm":
        return np.ones_like(p)  # Leimkuhler-Matthews is exact on Gaussians
    if sampler == "myula":
        return 1.0 / (1.0 - p / 2.0)
    s = diagnostics["stages"]
    c = skrock_coefficients(s)
    mu, nu, kappa = c["mu"], c["nu"], c["kappa"]
    # SK-ROCK is linear here: x' = a x + b z; track the coefficients (a, b) of every stage
    sq = np.sqrt(2.0 * p)  # sqrt(2 delta) in units where h = 1
    a_prev, b_prev = np.ones_like(p), np.zeros_like(p)
    a_cur = 1.0 - mu[1] * p
    b_cur = -mu[1] * p * nu[1] * sq + kappa[1] * sq
    for j in range(2, s + 1):
        a_new = nu[j] * a_cur + kappa[j] * a_prev - mu[j] * p * a_cur
        b_new = nu[j] * b_cur + kappa[j] * b_prev - mu[j] * p * b_cur
        a_prev, b_prev, a_cur, b_cur = a_cur, b_cur, a_new, b_new
    return b_cur**2 / (1.0 - a_cur**2)


def _predicted_std(shape, sigma, scale, sampler, diagnostics):
    """Per-pixel std of the sampler's own stationary law, mode by mode in the DCT basis."""
    h, w = shape
    mu = laplacian_eigenvalues(h, w).numpy()
    curvature = 1.0 / sigma**2 + mu / scale**2
    ratio = _stationary_variance(sampler, diagnostics["step_size"] * curvature, diagnostics)
    d = ratio / curvature
    ch, cw = dct_matrix(h).numpy() ** 2, dct_matrix(w).numpy() ** 2
    return np.sqrt(ch.T @ d @ cw)


@pytest.mark.parametrize("sampler", ["lm", "myula", "skrock"])
def test_langevin_on_gaussian_prior_matches_its_exact_stationary_law(sampler):
    """beta = 2: the std of every sampler equals its predicted discrete-time std.

    For ``"lm"`` that prediction is the exact posterior std; MYULA's Euler step is too wide
    and SK-ROCK's too narrow, by amounts the prediction gives to the percent.
    """
    shape, scale = (16, 16), 0.1
    y = _noisy(*shape)
    post = mcmc(restoration_model, y, prior=GaussianGradient(scale, shape=shape), sigma=SIGMA,
                sampler=sampler, num_samples=600, num_chains=32, seed=0)
    exact = gaussian_posterior_std(shape, SIGMA, scale).numpy()
    predicted = _predicted_std(shape, SIGMA, scale, sampler, post.diagnostics)
    ratio = post.std.numpy() / predicted
    assert abs(ratio.mean() - 1) < 0.02, ratio.mean()
    assert np.abs(ratio - 1).mean() < 0.06
    mean_err = (post.mean - dct_map(y, SIGMA**2 / scale**2)).abs()
    assert float(mean_err.mean()) < 0.1 * exact.mean()
    bias = predicted.mean() / exact.mean() - 1
    if sampler == "lm":
        assert abs(bias) < 1e-12
    elif sampler == "myula":
        assert bias > 0.02
    else:
        assert bias < -0.02


class _Double(LinearOperator):
    """``A = 2 I``: the posterior is the denoising one with noise ``sigma / 2``."""

    norm_bound = 2.0

    def forward(self, x):
        return 2 * x

    def adjoint(self, y):
        return 2 * y


def test_langevin_uses_the_operator():
    shape, scale = (12, 12), 0.1
    y = 2 * _noisy(*shape)
    post = mcmc(restoration_model, y, prior=GaussianGradient(scale, shape=shape), sigma=SIGMA,
                operator=_Double(), sampler="lm", num_samples=600, num_chains=32, seed=0)
    exact = gaussian_posterior_std(shape, SIGMA / 2, scale).numpy()
    assert abs((post.std.numpy() / exact).mean() - 1) < 0.02
    expected_mean = dct_map(y / 2, (SIGMA / 2) ** 2 / scale**2)
    assert float((post.mean - expected_mean).abs().mean()) < 0.1 * exact.mean()


def _exact_gaussian_posterior(y, op, shape, sigma, scale):
    """Mean and std of the Gaussian-gradient posterior with operator ``op``, dense algebra."""
    n = math.prod(shape)
    eye = torch.eye(n, dtype=torch.float64).reshape(n, *shape)
    prior = -div(grad(eye)).reshape(n, n) / scale**2
    precision = op.normal(eye).reshape(n, n) / sigma**2 + prior
    cov = torch.linalg.inv(precision)
    mean = cov @ op.adjoint(y).flatten() / sigma**2
    return mean.reshape(shape), cov.diagonal().sqrt().reshape(shape)


@pytest.mark.parametrize("name", ["mask", "blur"])
def test_diagonal_preconditioner_keeps_the_exact_gaussian_posterior(name):
    """LM, exact on Gaussian targets, stays exact when preconditioned (z = M^-1/2 x).

    Against the dense posterior of an 8x8 Gaussian-gradient model with half the pixels
    masked (M per pixel) or a reflective blur (M per DCT frequency); the Lipschitz bound
    is that of the preconditioned potential.
    """
    shape, scale = (8, 8), 0.2
    keep = torch.rand(shape, generator=torch.Generator().manual_seed(2)) < 0.5
    op = Mask(keep) if name == "mask" else Blur(gaussian_psf(5, 1.0))
    y = op(_noisy(*shape))
    post = mcmc(restoration_model, y, prior=GaussianGradient(scale, shape=shape), sigma=SIGMA,
                operator=op, sampler="lm", preconditioner="diagonal",
                num_samples=400, num_chains=32, seed=0)
    d = post.diagnostics
    assert d["preconditioner"] == "diagonal"
    # M = k / (1 + (k - 1) a^2), k = 4 per pixel (mask), 3.25 per DCT frequency (blur):
    # L = max(M a^2) L_f + max(M) 8 / b^2 <= L_f + 8 k / b^2
    k = 4 if name == "mask" else 3.25
    assert 1 / SIGMA**2 + 8 / scale**2 < d["lipschitz"] <= 1 / SIGMA**2 + 8 * k / scale**2
    mean, std = _exact_gaussian_posterior(y, op, shape, SIGMA, scale)
    ratio = post.std / std
    assert abs(float(ratio.mean()) - 1) < 0.02, float(ratio.mean())
    assert float((ratio - 1).abs().max()) < 0.12
    assert float((post.mean - mean).abs().mean()) < 0.1 * float(std.mean())


class _Hidden(LinearOperator):
    """An operator without a declared structure: ``A^T A`` by its own ``normal``."""

    def __init__(self, op):
        self.op = op
        self.norm_bound = op.norm_bound

    def forward(self, x):
        return self.op.forward(x)

    def adjoint(self, y):
        return self.op.adjoint(y)


def test_reflective_blur_normal_by_dcts_gives_the_same_chains():
    """A^T A by DCTs (a DCT-diagonal operator) or by convolutions: the same chains."""
    shape = (16, 16)
    blur = Blur(gaussian_psf(5, 1.0))
    y = blur(_noisy(*shape))
    start = blur.adjoint(y)  # the same start (the default, a MAP, depends on the solver)
    runs = [mcmc(restoration_model, y, operator=op, num_samples=8, warmup=2, seed=0,
                 preconditioner="none", init=start, **_tv_kwargs(shape))
            for op in (blur, _Hidden(blur))]
    assert runs[0].diagnostics["preconditioner"] == "none"
    auto = mcmc(restoration_model, y, operator=blur, num_samples=8, warmup=2, seed=0,
                **_tv_kwargs(shape))
    assert auto.diagnostics["preconditioner"] == "diagonal"  # the default for this blur
    torch.testing.assert_close(runs[0].samples, runs[1].samples, rtol=0, atol=1e-5)
    assert float((runs[0].samples[:, -1] - runs[0].samples[:, 0]).abs().max()) > 0.01


# --- API: shapes, dtypes, randomness, memory, errors ----------------------------------------


def _tv_kwargs(shape, isotropic=True):
    return {"prior": TotalVariation(0.1, shape=shape, isotropic=isotropic), "sigma": SIGMA}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("sampler", ["skrock", "myula", "lm"])
def test_shapes_and_dtypes(dtype, sampler):
    y = _noisy(6, 7, dtype=dtype)
    post = mcmc(restoration_model, y, sampler=sampler, num_samples=20, warmup=5, num_chains=3,
                seed=0, **_tv_kwargs((6, 7)))
    assert post.method == "mcmc" and post.map is None
    assert post.samples.shape == (3, 20, 6, 7) and post.samples.dtype == torch.float32
    assert post.mean.dtype == dtype and post.std.dtype == dtype
    assert post.mean.shape == post.std.shape == (6, 7)
    d = post.diagnostics
    assert d["sampler"] == sampler and d["gaussian"] is False
    assert d["num_draws_kept"] == 20 and d["num_steps"] == 25
    assert d["gradient_evaluations"] == 25 * d["stages"]
    assert d["prox_evaluations"] == d["gradient_evaluations"]
    assert d["wall_time"] > 0 and d["step_size"] > 0


def test_channels_anisotropic_and_thinning():
    y = torch.stack([_noisy(6, 6, seed=s) for s in range(3)])
    post = mcmc(restoration_model, y, sampler="skrock", num_samples=10, warmup=0, thin=3,
                num_chains=2, seed=0, **_tv_kwargs((3, 6, 6), isotropic=False))
    assert post.samples.shape == (2, 10, 3, 6, 6)
    assert post.diagnostics["num_steps"] == 30


def test_generator_reproducibility():
    y = _noisy(6, 6)
    run = lambda **kw: mcmc(restoration_model, y, num_samples=15, warmup=5,  # noqa: E731
                            **_tv_kwargs((6, 6)), **kw)
    a = run(generator=torch.Generator().manual_seed(7))
    b = run(generator=torch.Generator().manual_seed(7))
    c = run(seed=7)
    d = run(seed=8)
    assert torch.equal(a.samples, b.samples) and torch.equal(a.samples, c.samples)
    assert not torch.equal(a.samples, d.samples)


@pytest.mark.parametrize("sampler", ["skrock", "lm"])
def test_chains_are_the_same_whatever_the_number_of_threads(sampler):
    # the noise comes from a counter-based generator (no thread draws its own stream); an
    # odd size (pairs of values cross no image boundary) and a run to convergence
    y = _noisy(7, 9, dtype=torch.float32)
    before = torch.get_num_threads()
    runs = []
    try:
        for threads in (1, 2, 1):
            torch.set_num_threads(threads)
            runs.append(mcmc(restoration_model, y, num_samples=20, warmup=5, sampler=sampler,
                             **_tv_kwargs((7, 9)), seed=3))
    finally:
        torch.set_num_threads(before)
    assert torch.equal(runs[0].samples, runs[1].samples)
    assert torch.equal(runs[0].samples, runs[2].samples)
    assert not torch.equal(runs[0].samples[0], runs[0].samples[1])  # the chains differ


def test_memory_bound_thins_storage_but_not_the_moments():
    y = _noisy(8, 8)
    full = mcmc(restoration_model, y, num_samples=100, num_chains=2, seed=0, **_tv_kwargs((8, 8)))
    per_draw = 2 * 8 * 8 * 4
    small = mcmc(restoration_model, y, num_samples=100, num_chains=2, seed=0,
                 max_memory=30 * per_draw, **_tv_kwargs((8, 8)))
    d = small.diagnostics
    assert d["num_draws_kept"] <= 30 and small.samples.shape[1] == d["num_draws_kept"]
    assert d["storage_thin"] == 4 and d["num_draws"] == 100
    assert torch.equal(small.samples, full.samples[:, :: d["storage_thin"]])
    torch.testing.assert_close(small.mean, full.mean)
    torch.testing.assert_close(small.std, full.std)
    with pytest.raises(ValueError, match="max_memory"):
        mcmc(restoration_model, y, num_samples=10, seed=0, max_memory=100, **_tv_kwargs((8, 8)))


def _laplace_model(y):
    x = pyro.sample("x", TotalVariation(0.1, shape=tuple(y.shape)))
    pyro.sample("y", dist.Laplace(x, 0.1).to_event(2), obs=y)


def _hierarchical_model(y):
    scale = pyro.sample("scale", dist.LogNormal(math.log(0.1), 0.3))
    x = pyro.sample("x", TotalVariation(scale, shape=tuple(y.shape)))
    pyro.sample("y", dist.Normal(x, SIGMA).to_event(2), obs=y)


@pytest.mark.parametrize(
    ("model", "kwargs"),
    [
        (restoration_model, {"prior": GradientPrior(0.1, 1.5, shape=(4, 4)), "sigma": SIGMA}),
        (_laplace_model, {}),
    ],
)
@pytest.mark.parametrize("sampler", ["skrock", "myula", "lm"])
def test_langevin_refuses_models_it_does_not_fit(model, kwargs, sampler):
    with pytest.raises(ValueError, match="does not fit"):
        mcmc(model, _noisy(4, 4), sampler=sampler, num_samples=5, seed=0, **kwargs)


def test_auto_falls_back_to_nuts_for_other_models():
    post = mcmc(_hierarchical_model, _noisy(3, 3), num_samples=20, warmup=20, num_chains=2,
                seed=0)
    d = post.diagnostics
    assert d["sampler"] == "nuts" and post.samples.shape == (2, 20, 3, 3)
    assert set(d["latents"]) == {"scale"} and float(d["latents"]["scale"]["mean"]) > 0
    assert len(d["step_size"]) == 2 and d["gradient_evaluations"] > 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"sampler": "hmc"}, "sampler"),
        ({"num_samples": 0}, "num_samples"),
        ({"num_chains": 0}, "num_chains"),
        ({"thin": 0}, "thin"),
        ({"warmup": -1}, "warmup"),
        ({"smoothing": 0.0}, "smoothing"),
        ({"step_size": -1.0}, "step_size"),
        ({"stages": 0}, "stages"),
        ({"seed": 1, "generator": torch.Generator()}, "not both"),
    ],
)
def test_bad_options(options, message):
    with pytest.raises(ValueError, match=message):
        mcmc(restoration_model, _noisy(4, 4), **_tv_kwargs((4, 4)), **options)


def test_init_starts_the_chains_and_is_checked():
    """``init``: with no step the chains sit at it; a wrong shape, NaN or NUTS is refused."""
    shape = (8, 8)
    blur = Blur(gaussian_psf(3, 0.7))
    y = blur(_noisy(*shape))
    start = torch.full(shape, 0.25, dtype=y.dtype)
    post = mcmc(restoration_model, y, operator=blur, num_samples=1, warmup=0, seed=0,
                init=start, step_size=1e-12, **_tv_kwargs(shape))
    assert float((post.samples.double() - 0.25).abs().max()) < 1e-3
    default = mcmc(restoration_model, y, operator=blur, num_samples=1, warmup=0, seed=0,
                   step_size=1e-12, **_tv_kwargs(shape))
    assert float((default.samples.double() - 0.25).abs().max()) > 0.05
    with pytest.raises(ValueError, match="init must have the image's shape"):
        mcmc(restoration_model, y, operator=blur, num_samples=2, seed=0,
             init=torch.zeros(4, 4, dtype=y.dtype), **_tv_kwargs(shape))
    with pytest.raises(ValueError, match="init must be finite"):
        mcmc(restoration_model, y, operator=blur, num_samples=2, seed=0,
             init=torch.full(shape, float("nan"), dtype=y.dtype), **_tv_kwargs(shape))
    with pytest.raises(ValueError, match="init is for the Langevin samplers"):
        mcmc(restoration_model, y, sampler="nuts", num_samples=2, seed=0, init=start,
             **_tv_kwargs(shape))


def test_colour_chains_draw_the_noise_of_their_own_images():
    """A colour image's noise has one scale and one stream per (C, H, W) image while the fused
    step runs per channel: its chains must be finite and the same on every rerun (reading the
    per-channel scales past the per-image ones gave garbage, hence NaN, now and then)."""
    gen = torch.Generator().manual_seed(0)
    y = torch.rand(3, 12, 12, generator=gen)
    runs = [mcmc(restoration_model, y, prior=TotalVariation(0.2, shape=(3, 12, 12)), sigma=0.1,
                 num_samples=30, seed=0, sampler="skrock").samples for _ in range(4)]
    assert all(bool(torch.isfinite(torch.as_tensor(r)).all()) for r in runs)
    assert all(torch.equal(torch.as_tensor(r), torch.as_tensor(runs[0])) for r in runs[1:])
