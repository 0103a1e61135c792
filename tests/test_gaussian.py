"""Exact Gaussian-gradient posterior: marginal std and evidence against dense linear algebra."""

import numpy as np
import torch
from scipy.stats import multivariate_normal

from bayes_restore.differences import div, grad
from bayes_restore.infer import gaussian_log_evidence, gaussian_posterior_std


def _laplacian(h, w):
    n = h * w
    out = np.zeros((n, n))
    for k in range(n):
        e = torch.zeros(n, dtype=torch.float64)
        e[k] = 1
        out[:, k] = (-div(grad(e.reshape(h, w)))).reshape(-1).numpy()
    return out


def test_marginal_std_matches_dense_posterior_covariance():
    h, w, sigma, b = 5, 6, 0.1, 0.07
    precision = np.eye(h * w) / sigma**2 + _laplacian(h, w) / b**2
    expected = np.sqrt(np.diag(np.linalg.inv(precision))).reshape(h, w)
    np.testing.assert_allclose(gaussian_posterior_std((h, w), sigma, b).numpy(), expected,
                               rtol=1e-10)


def test_evidence_matches_the_dense_marginal_likelihood_up_to_the_flat_direction(rng):
    """y = x + n with x ~ GMRF: differences of the evidence in (sigma, b) match the dense one.

    The dense reference integrates x over the complement of the constants; projecting out
    the mean of y removes the flat direction, which carries no information on (sigma, b).
    """
    h, w = 4, 5
    n = h * w
    lap = _laplacian(h, w)
    eigval, eigvec = np.linalg.eigh(lap)
    basis, mu = eigvec[:, 1:], eigval[1:]  # the non-constant eigenvectors
    y = rng.standard_normal((h, w))
    z = basis.T @ y.reshape(-1)

    def dense(sigma, b):
        return multivariate_normal(np.zeros(n - 1), np.diag(sigma**2 + b**2 / mu)).logpdf(z)

    ours = lambda s, b: float(gaussian_log_evidence(torch.from_numpy(y), s, b))  # noqa: E731
    for s, b in [(0.3, 0.2), (1.0, 0.5), (0.05, 2.0)]:
        np.testing.assert_allclose(ours(s, b), dense(s, b), rtol=1e-10)


# --- any linear operator: PCG mean, perturb-and-optimise draws (issue 6) ---------------------

import math  # noqa: E402

import pytest  # noqa: E402

from bayes_restore import ConvergenceWarning, restore  # noqa: E402
from bayes_restore.differences import dct2, idct2, laplacian_eigenvalues  # noqa: E402
from bayes_restore.infer import dct_map, exact_posterior  # noqa: E402
from bayes_restore.models import restoration_model  # noqa: E402
from bayes_restore.operators import (  # noqa: E402
    Blur,
    Downsample,
    Mask,
    gaussian_psf,
)
from bayes_restore.priors import GaussianGradient  # noqa: E402

Z90 = 1.6448536269514722  # the 95 % quantile of N(0, 1): 90 % equal-tailed intervals


def _f64(value):
    """``sigma`` as float64: a Python float reaches the likelihood as float32 (0.10000000149)."""
    return torch.tensor(value, dtype=torch.float64)


def _operators(h, w):
    mask = torch.rand(h, w, generator=torch.Generator().manual_seed(3)) < 0.6
    return {
        "blur-periodic": Blur(gaussian_psf(3, 1.0), boundary="periodic"),
        "blur-valid": Blur(gaussian_psf(3, 1.0), boundary="valid"),
        "downsample-box": Downsample(2),
        "downsample-gaussian": Downsample(2, kernel="gaussian"),
        "mask": Mask(mask),
    }


def _dense_posterior(op, h, w, sigma, b, y):
    """Dense ``Q = A^T A / sigma^2 + D^T D / b^2`` (from basis vectors) and ``m = Q^-1 A^T y``."""
    n = h * w
    a_cols = []
    for k in range(n):
        e = torch.zeros(n, dtype=torch.float64)
        e[k] = 1
        a_cols.append(op.forward(e.reshape(h, w)).reshape(-1).numpy())
    a = np.stack(a_cols, 1)
    q = a.T @ a / sigma**2 + _laplacian(h, w) / b**2
    m = np.linalg.solve(q, a.T @ y.reshape(-1).numpy() / sigma**2)
    return q, m.reshape(h, w)


def _observe(op, x, sigma, seed):
    g = torch.Generator().manual_seed(seed)
    shape = op.output_shape(tuple(x.shape))
    return op.forward(x) + sigma * torch.randn(shape, generator=g, dtype=x.dtype)


@pytest.mark.parametrize("name", list(_operators(6, 7)))
def test_pcg_mean_and_perturb_optimise_covariance_match_the_dense_posterior(name):
    """6x7 float64: the mean to the CG tolerance; the draws' covariance within Monte Carlo error.

    With ``n`` exact draws, whitening by the dense ``Q = L L^T`` gives ``z = L^T (x - m)``
    with ``Cov(z) = I``: each of its 42 variances has relative standard error ``sqrt(2 / n)``,
    their mean ``sqrt(2 / (42 n))`` (independent components), each covariance ``1 / sqrt(n)``.
    The bounds below are 4.5 of those standard errors (all 903 entries: false alarm < 1 %).
    """
    h, w, sigma, b, n = 6, 7, 0.1, 0.05, 4000
    op = _operators(h, w)[name]
    x = torch.rand(h, w, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = _observe(op, x, sigma, 2)
    q, m = _dense_posterior(op, h, w, sigma, b, y)
    post = exact_posterior(restoration_model, y, prior=GaussianGradient(b, shape=(h, w)),
                           sigma=_f64(sigma), operator=op, num_samples=n, tol=1e-12,
                           generator=torch.Generator().manual_seed(0))
    assert post.info.solver == "pcg" and post.info.converged and post.info.gap <= 1e-12
    assert post.diagnostics["std_method"] == "perturb-optimise"
    assert post.diagnostics["num_draws"] == n and post.diagnostics["gaussian"] is True
    np.testing.assert_allclose(post.mean.numpy(), m, rtol=0, atol=1e-9 * np.abs(m).max())
    assert post.samples.shape == (1, n, h, w)

    var = np.diag(np.linalg.inv(q)).reshape(h, w)
    ratio = post.std.numpy() ** 2 / var
    assert np.abs(ratio - 1).max() <= 4.5 * math.sqrt(2 / n)
    assert abs(ratio.mean() - 1) <= 4.5 * math.sqrt(2 / n)  # correlated pixels: not / 42

    chol = np.linalg.cholesky(q)
    z = (post.samples[0].double().numpy().reshape(n, -1) - m.reshape(-1)) @ chol
    cov = z.T @ z / n
    assert abs(np.diag(cov).mean() - 1) <= 4.5 * math.sqrt(2 / (h * w * n))
    assert np.abs(np.diag(cov) - 1).max() <= 4.5 * math.sqrt(2 / n)
    assert np.abs(cov - np.diag(np.diag(cov))).max() <= 4.5 / math.sqrt(n)
    assert np.abs(z.mean(0)).max() <= 4.5 / math.sqrt(n)  # the draws are centred on m

    # the 90 % intervals (mean +- z std) agree with the dense ones within the std's MC error
    lo, hi = post.with_fields(samples=None).interval(0.9)
    half = Z90 * np.sqrt(var)
    np.testing.assert_allclose(lo.numpy(), m - half, rtol=0, atol=float(half.max()) * 0.05)
    np.testing.assert_allclose(hi.numpy(), m + half, rtol=0, atol=float(half.max()) * 0.05)


def test_identity_path_is_still_the_dct_closed_form_and_pcg_agrees_with_it():
    h, w, sigma, b = 12, 10, 0.1, 0.05
    y = torch.rand(h, w, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    prior = GaussianGradient(b, shape=(h, w))
    exact = exact_posterior(restoration_model, y, prior=prior, sigma=_f64(sigma))
    assert exact.info.solver == "dct" and exact.diagnostics["std_method"] == "exact"
    np.testing.assert_allclose(exact.mean.numpy(), dct_map(y, sigma**2 / b**2).numpy(),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(exact.std.numpy(), gaussian_posterior_std((h, w), sigma, b).numpy(),
                               rtol=1e-12)
    n = 4000  # relative std error of a std from n draws: sqrt(1 / (2 n)) = 1.1 %
    for op, solver in [(None, "pcg"),
                       (Blur(torch.ones(1, 1, dtype=torch.float64), boundary="periodic"), "auto")]:
        post = exact_posterior(restoration_model, y, prior=prior, sigma=_f64(sigma), operator=op,
                               solver=solver, num_draws=n, tol=1e-12,
                               generator=torch.Generator().manual_seed(1))
        assert post.info.solver == "pcg"
        np.testing.assert_allclose(post.mean.numpy(), exact.mean.numpy(), rtol=1e-9)
        np.testing.assert_allclose(post.std.numpy(), exact.std.numpy(),
                                   rtol=4.5 * math.sqrt(1 / (2 * n)))


def _gmrf_draws(n, h, w, b, seed):
    """Images whose non-constant DCT modes are the proper GMRF's, plus a level of 0.5.

    The prior is flat along constants, but ``x - E[x | y]`` does not depend on the level
    (``D^T D 1 = 0``), so the exact posterior is calibrated for any fixed level.
    """
    mu = laplacian_eigenvalues(h, w)
    z = torch.randn(n, h, w, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    coeff = torch.where(mu > 0, b * z / mu.clamp_min(1e-30).sqrt(), torch.zeros_like(z))
    return idct2(coeff) + 0.5


@pytest.mark.parametrize("name", ["blur-periodic", "downsample-gaussian", "mask"])
def test_perturb_optimise_intervals_cover_their_nominal_mass_on_model_draws(name):
    """8 images of 32x32 drawn from the model: 90 % intervals cover 0.88-0.92 of the pixels.

    Batched PCG (one system per image and draw); 200 draws put the std within 5 %
    (relative), which moves the coverage by far less than the pixels' sampling noise.
    """
    h = w = 32
    sigma, b = 0.1, 0.05
    op = _operators(h, w)[name]
    x = _gmrf_draws(8, h, w, b, seed=4)
    y = _observe(op, x, sigma, 5)
    post = exact_posterior(restoration_model, y, prior=GaussianGradient(b, shape=(h, w)),
                           sigma=_f64(sigma), operator=op, num_draws=200,
                           generator=torch.Generator().manual_seed(6))
    assert post.std.shape == (8, h, w)
    assert 0.88 <= post.coverage(x, 0.9) <= 0.92
    assert 0.47 <= post.coverage(x, 0.5) <= 0.53


def test_restore_with_a_blur_runs_the_pcg_engine_end_to_end():
    h, w, sigma, b = 24, 20, 0.05, 0.1
    op = Blur(gaussian_psf(5, 1.0), boundary="valid")
    x = torch.rand(h, w, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = _observe(op, x, sigma, 1).numpy()
    post = restore(y, "gaussian", sigma=sigma, scale=b, operator=op, method="exact",
                   num_samples=10, generator=torch.Generator().manual_seed(2))
    assert isinstance(post.mean, np.ndarray) and post.mean.shape == (h, w)
    assert post.std.shape == (h, w) and (post.std > 0).all()
    assert post.samples.shape == (1, 10, h, w)
    assert post.info.solver == "pcg" and post.info.converged
    # the mean solves the normal equations Q m = A^T y / sigma^2 to the default tolerance
    m = torch.from_numpy(post.mean)
    rhs = op.adjoint(torch.from_numpy(y)) / sigma**2
    qm = op.adjoint(op.forward(m)) / sigma**2 - div(grad(m)) / b**2
    assert float((qm - rhs).norm() / rhs.norm()) <= 1e-6
    lo, hi = post.with_fields(samples=None).interval(0.9)  # mean +- z std, not 10 draws
    assert (lo < post.mean).all() and (post.mean < hi).all()


def test_float32_pcg_reaches_its_default_tolerance():
    op = Downsample(2, kernel="gaussian")
    x = torch.rand(32, 32, generator=torch.Generator().manual_seed(0))
    y = _observe(op, x, 0.05, 1)
    post = restore(y, "gaussian", sigma=0.05, scale=0.05, operator=op, method="exact",
                   num_draws=8, generator=torch.Generator().manual_seed(2))
    assert post.mean.dtype == torch.float32 and post.std.dtype == torch.float32
    assert post.info.converged and post.diagnostics["tol"] == 1e-5
    assert post.diagnostics["draw_residual"] <= 1e-5


def test_preconditioner_cuts_the_iterations():
    h = w = 32
    op = Mask(torch.rand(h, w, generator=torch.Generator().manual_seed(0)) < 0.5)
    y = _observe(op, torch.zeros(h, w, dtype=torch.float64), 0.1, 1)
    prior = GaussianGradient(0.02, shape=(h, w))
    its = {
        pre: exact_posterior(restoration_model, y, prior=prior, sigma=0.1, operator=op,
                             num_draws=2, precondition=pre).info.iterations
        for pre in (True, False)
    }
    assert 3 * its[True] < its[False]


def test_iteration_cap_warns_and_says_not_converged():
    op = Blur(gaussian_psf(3, 1.0), boundary="periodic")
    y = torch.rand(16, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with pytest.warns(ConvergenceWarning, match="max_iter=1"):
        post = exact_posterior(restoration_model, y, prior=GaussianGradient(0.05, shape=(16, 16)),
                               sigma=0.01, operator=op, max_iter=1, num_draws=2)
    assert not post.info.converged and post.info.iterations == 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_samples": -1}, "num_samples"),
        ({"num_samples": 2.5}, "num_samples"),
        ({"tol": 0.0}, "tol"),
        ({"tol": 1.5}, "tol"),
        ({"tol": "tight"}, "tol"),
        ({"max_iter": 0}, "max_iter"),
        ({"num_draws": 1}, "num_draws"),
        ({"solver": "cholesky"}, "solver"),
        ({"num_draws": 1.5}, "num_draws"),
        ({"std_rtol": 0.0}, "std_rtol"),
        ({"max_draws": 1}, "max_draws"),
        ({"solver": "dct"}, "shares the DCT-II basis"),
    ],
)
def test_bad_options_are_named(kwargs, match):
    y = torch.zeros(8, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match=match):
        exact_posterior(restoration_model, y, prior=GaussianGradient(0.1, shape=(8, 8)),
                        sigma=0.1, operator=Blur(gaussian_psf(3, 1.0), boundary="periodic"),
                        **kwargs)


def test_an_operator_blind_to_constants_is_refused():
    y = torch.zeros(8, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match="improper"):
        exact_posterior(restoration_model, y, prior=GaussianGradient(0.1, shape=(8, 8)),
                        sigma=0.1, operator=Mask(torch.zeros(8, 8, dtype=torch.bool)))


def test_dct_preconditioner_is_the_exact_inverse_for_the_identity():
    """With A = I the preconditioner is Q itself: PCG converges in one iteration."""
    y = torch.rand(9, 11, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    post = exact_posterior(restoration_model, y, prior=GaussianGradient(0.05, shape=(9, 11)),
                           sigma=_f64(0.1), solver="pcg", num_draws=2, tol=1e-12)
    assert post.info.iterations == 1
    np.testing.assert_allclose(dct2(post.mean).numpy(),
                               dct2(dct_map(y, 0.1**2 / 0.05**2)).numpy(), atol=1e-12)
