"""Uncertainty engines: exact Gaussian posterior, VI, the Posterior type and its ArviZ form."""

import warnings

import numpy as np
import pytest
import torch

from bayes_restore import ConvergenceWarning, Posterior, restore
from bayes_restore.differences import div, grad, idct2, laplacian_eigenvalues
from bayes_restore.infer import exact_posterior, variational
from bayes_restore.models import restoration_model
from bayes_restore.priors import GaussianGradient


def _dense_posterior_std(h, w, sigma, b):
    n = h * w
    lap = np.zeros((n, n))
    for k in range(n):
        e = torch.zeros(n, dtype=torch.float64)
        e[k] = 1
        lap[:, k] = (-div(grad(e.reshape(h, w)))).reshape(-1).numpy()
    cov = np.linalg.inv(np.eye(n) / sigma**2 + lap / b**2)
    return np.sqrt(np.diag(cov)).reshape(h, w)


def test_exact_std_equals_dense_computation_24x24():
    """Done-criterion of issue 4: 1e-6 relative on a 24x24 float64 image."""
    y = torch.rand(24, 24, dtype=torch.float64)
    post = restore(y, "gaussian", sigma=0.1, scale=0.04, method="exact")
    expected = _dense_posterior_std(24, 24, 0.1, 0.04)
    np.testing.assert_allclose(post.std.numpy(), expected, rtol=1e-6)


def _prior_draws(n, h, w, b, gen):
    """GMRF draws on the non-constant modes, plus a level of 0.5: x = IDCT(b z / sqrt(mu))."""
    mu = laplacian_eigenvalues(h, w)
    z = torch.randn(n, h, w, generator=gen, dtype=torch.float64)
    coeff = torch.where(mu > 0, b * z / mu.clamp_min(1e-30).sqrt(), torch.zeros_like(z))
    return idct2(coeff) + 0.5


def test_exact_intervals_cover_their_nominal_mass_on_prior_draws():
    gen = torch.Generator().manual_seed(7)
    sigma, b = 0.1, 0.05
    x = _prior_draws(12, 64, 64, b, gen)
    y = x + sigma * torch.randn(x.shape, generator=gen, dtype=torch.float64)
    post = restore(y.unsqueeze(1), "gaussian", sigma=sigma, scale=b, method="exact")
    cov90 = post.coverage(x.unsqueeze(1), 0.9)
    assert 0.89 <= cov90 <= 0.91
    assert 0.48 <= post.coverage(x.unsqueeze(1), 0.5) <= 0.52
    # exact draws give the same intervals as the Gaussian formula
    post_s = restore(y[0], "gaussian", sigma=sigma, scale=b, method="exact", num_samples=4000,
                     generator=torch.Generator().manual_seed(0))
    assert post_s.samples.shape == (1, 4000, 64, 64) and post_s.samples.dtype == torch.float32
    lo_s, hi_s = post_s.interval(0.9)
    lo, hi = post_s.with_fields(samples=None).interval(0.9)
    assert float((hi_s - lo_s).mean() / (hi - lo).mean()) == pytest.approx(1.0, abs=0.02)
    np.testing.assert_allclose(post_s.samples[0].std(0).numpy(), post_s.std.numpy(), rtol=0.1)


def test_exact_refuses_models_it_cannot_diagonalise():
    y = np.zeros((8, 8))
    with pytest.raises(ValueError, match="Gaussian-gradient prior"):
        restore(y, "tv", sigma=0.1, scale=0.1, method="exact")
    with pytest.raises(ValueError, match="num_samples"):
        restore(y, "gaussian", sigma=0.1, scale=0.1, method="exact", num_samples=-1)


def test_numpy_in_numpy_out_and_map_has_no_uncertainty():
    y = np.random.default_rng(0).random((3, 16, 16)).astype(np.float32)
    post = restore(y, "gaussian", sigma=0.1, scale=0.1, method="exact")
    assert isinstance(post.mean, np.ndarray) and post.mean.dtype == np.float32
    assert post.std.shape == (3, 16, 16)
    lo, hi = post.interval(0.9)
    assert isinstance(lo, np.ndarray) and (hi > lo).all()
    post_map = restore(y, "tv", sigma=0.1, weight=0.2)
    assert post_map.method == "map" and post_map.std is None
    assert isinstance(post_map.map, np.ndarray)
    with pytest.raises(ValueError, match="no uncertainty"):
        post_map.interval()
    with pytest.raises(ValueError, match="kept no draws"):
        post_map.to_arviz()
    with pytest.raises(ValueError, match="method"):
        restore(y, "tv", sigma=0.1, weight=0.2, method="laplace")
    with pytest.raises(ValueError, match="prob"):
        post.interval(1.5)


def test_mean_field_vi_matches_the_exact_mean_and_underestimates_the_std():
    gen = torch.Generator().manual_seed(3)
    y = _prior_draws(1, 16, 16, 0.05, gen)[0] + 0.1 * torch.randn(16, 16, generator=gen,
                                                                  dtype=torch.float64)
    prior = GaussianGradient(0.05, shape=(16, 16))
    exact = exact_posterior(restoration_model, y, prior=prior, sigma=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        vi = variational(restoration_model, y, prior=prior, sigma=0.1, num_samples=50,
                         engine="svi", generator=torch.Generator().manual_seed(0))
    assert vi.method == "vi" and vi.samples.shape == (1, 50, 16, 16)
    assert float((vi.mean - exact.mean).abs().mean()) < 0.01
    ratio = float((vi.std / exact.std).mean())
    assert 0.6 < ratio < 0.95  # mean field ignores the coupling of neighbours: too narrow
    assert len(vi.diagnostics["elbo"]) == vi.info.iterations


def test_vi_argument_errors():
    y = torch.zeros(4, 4)
    prior = GaussianGradient(0.1, shape=(4, 4))
    with pytest.raises(ValueError, match="guide"):
        variational(restoration_model, y, prior=prior, sigma=0.1, guide="flow")
    with pytest.raises(ValueError, match="max_steps"):
        variational(restoration_model, y, prior=prior, sigma=0.1, max_steps=0)
    with pytest.raises(ValueError, match="init"):
        variational(restoration_model, y, prior=prior, sigma=0.1, init="prior")


def test_to_arviz_works_with_arviz_own_functions():
    az = pytest.importorskip("arviz")
    rng = np.random.default_rng(0)
    draws = rng.normal(size=(2, 200, 3, 5, 6)).astype(np.float32)
    post = Posterior(method="mcmc", samples=draws, mean=draws.mean((0, 1)),
                     diagnostics={"observed": np.zeros((3, 5, 6)),
                                  "sample_stats": {"lp": rng.normal(size=(2, 200))}})
    idata = post.to_arviz()
    assert isinstance(idata, az.InferenceData)
    assert idata.posterior["image"].dims == ("chain", "draw", "channel", "y", "x")
    assert idata.observed_data["observed"].dims == ("channel", "y", "x")
    assert "lp" in idata.sample_stats
    ess = az.ess(idata)["image"]
    assert ess.shape == (3, 5, 6) and float(ess.min()) > 100  # independent draws
    rhat = az.rhat(idata)["image"]
    assert float(abs(rhat - 1).max()) < 0.05
    hdi = az.hdi(idata, hdi_prob=0.9)["image"]
    assert hdi.shape == (3, 5, 6, 2)
    assert len(az.summary(idata, var_names=["image"])) == 90


def test_exact_draws_to_arviz_and_batches():
    y = np.random.default_rng(1).random((2, 1, 8, 8))
    post = restore(y, "gaussian", sigma=0.1, scale=0.1, method="exact", num_samples=20)
    idata = post.to_arviz()
    assert idata.posterior["image"].dims == ("chain", "draw", "batch", "channel", "y", "x")
    assert idata.posterior["image"].shape == (1, 20, 2, 1, 8, 8)
