"""The exact Gaussian-gradient posterior with a reflective blur or a box decimation.

Everything is checked against dense linear algebra built from the operator itself (applied
to unit vectors): ``Q = A^T A / sigma^2 + D^T D / b^2``, its inverse, its solves, the dense
Gaussian density of the observation.
"""

import math

import numpy as np
import pytest
import torch

from bayes_restore import ConvergenceWarning
from bayes_restore.differences import dct2, dct_matrix, div, grad, idct2, laplacian_eigenvalues
from bayes_restore.hyper import gaussian_empirical_bayes
from bayes_restore.infer import exact_posterior, gaussian_log_evidence
from bayes_restore.models import restoration_model
from bayes_restore.operators import (
    Blur,
    DCTDiagonal,
    Downsample,
    LinearOperator,
    Mask,
    gaussian_psf,
)
from bayes_restore.priors import GaussianGradient

F64 = torch.float64


def _dense(op, h, w):
    """The matrix of ``op`` on ``(h, w)`` images, one column per pixel."""
    n = h * w
    return op.forward(torch.eye(n, dtype=F64).reshape(n, h, w)).reshape(n, -1).T


def _laplacian(h, w):
    n = h * w
    return (-div(grad(torch.eye(n, dtype=F64).reshape(n, h, w)))).reshape(n, -1).T


def _precision(op, h, w, sigma, b):
    a = _dense(op, h, w)
    return a, a.T @ a / sigma**2 + _laplacian(h, w) / b**2


def _observe(op, x, sigma, seed):
    g = torch.Generator().manual_seed(seed)
    shape = op.output_shape(tuple(x.shape))
    return op.forward(x) + sigma * torch.randn(shape, generator=g, dtype=x.dtype)


def _posterior(op, y, h, w, sigma, b, **kw):
    sigma = torch.as_tensor(sigma, dtype=y.dtype)
    return exact_posterior(restoration_model, y, prior=GaussianGradient(b, shape=(h, w)),
                           sigma=sigma, operator=op, **kw)


OPERATORS = {
    "blur-reflect": lambda: Blur(gaussian_psf(5, 1.2), boundary="reflect"),
    "down2": lambda: Downsample(2),
    "down4": lambda: Downsample(4),
}


@pytest.mark.parametrize("name", list(OPERATORS))
def test_mean_and_std_equal_the_dense_posterior_on_24x24(name):
    h = w = 24
    sigma, b = 0.05, 0.1
    op = OPERATORS[name]()
    x = torch.rand(h, w, generator=torch.Generator().manual_seed(0), dtype=F64)
    y = _observe(op, x, sigma, 1)
    a, q = _precision(op, h, w, sigma, b)
    m = torch.linalg.solve(q, a.T @ y.reshape(-1) / sigma**2).reshape(h, w)
    std = torch.linalg.inv(q).diagonal().sqrt().reshape(h, w)
    post = _posterior(op, y, h, w, sigma, b)
    assert post.info.solver == "dct" and post.diagnostics["std_method"] == "exact"
    assert post.diagnostics["aliasing"] == ((1, 1) if name.startswith("blur") else (op.factor,) * 2)
    torch.testing.assert_close(post.mean, m, rtol=0, atol=1e-8 * float(m.abs().max()))
    torch.testing.assert_close(post.std, std, rtol=1e-8, atol=0)


@pytest.mark.parametrize("name", ["blur-reflect", "down2"])
def test_exact_draws_have_the_dense_covariance(name):
    """6000 draws on 8x8, whitened by the dense ``Q = L L^T``: ``z = L^T (x - m) ~ N(0, I)``.

    Each of the 64 variances has relative standard error ``sqrt(2 / n)``, each covariance
    ``1 / sqrt(n)``, the mean of the variances ``sqrt(2 / (64 n))``; the bounds are 4.5 of
    them (2080 entries: a false alarm has probability below 1 %). A draw from the prior or
    with the wrong blocks is off by far more (the variances would be wrong by > 10 %).
    """
    h = w = 8
    sigma, b, n = 0.05, 0.1, 6000
    op = OPERATORS[name]()
    x = torch.rand(h, w, generator=torch.Generator().manual_seed(3), dtype=F64)
    y = _observe(op, x, sigma, 4)
    _, q = _precision(op, h, w, sigma, b)
    post = _posterior(op, y, h, w, sigma, b, num_samples=n, seed=7)
    assert post.samples.shape == (1, n, h, w) and post.samples.dtype == torch.float32
    chol = torch.linalg.cholesky(q)
    z = (post.samples[0].double().reshape(n, -1) - post.mean.reshape(-1)) @ chol
    cov = z.T @ z / n
    diag = cov.diagonal()
    assert abs(float(diag.mean()) - 1) <= 4.5 * math.sqrt(2 / (h * w * n))
    assert float((diag - 1).abs().max()) <= 4.5 * math.sqrt(2 / n)
    assert float((cov - torch.diag(diag)).abs().max()) <= 4.5 / math.sqrt(n)
    assert float(z.mean(0).abs().max()) <= 4.5 / math.sqrt(n)
    # seeded: the same seed gives the same draws, another seed others
    first, again, other = (_posterior(op, y, h, w, sigma, b, num_samples=3, seed=s)
                           for s in (7, 7, 8))
    assert torch.equal(again.samples, first.samples)
    assert not torch.equal(other.samples, again.samples)


@pytest.mark.parametrize("name,h,w", [("blur-reflect", 8, 10), ("down2", 8, 12),
                                      ("down4", 12, 8)])
def test_log_evidence_equals_the_dense_gaussian_density(name, h, w):
    """``y = A x + n``: its non-constant DCT modes are Gaussian with covariance
    ``B (sigma^2 I + b^2 A L^+ A^T) B^T`` (the flat constant direction only moves the
    constant mode of ``y``)."""
    op = OPERATORS[name]()
    a = _dense(op, h, w)
    evals, evecs = torch.linalg.eigh(_laplacian(h, w))
    pinv = evecs[:, 1:] @ torch.diag(1 / evals[1:]) @ evecs[:, 1:].T
    mh, mw = op.output_shape((h, w))
    modes = torch.kron(dct_matrix(mh), dct_matrix(mw))[1:]
    y = torch.randn(mh, mw, generator=torch.Generator().manual_seed(5), dtype=F64)
    for sigma, b in [(0.3, 0.2), (0.05, 1.0), (1.0, 0.01)]:
        cov = modes @ (sigma**2 * torch.eye(mh * mw, dtype=F64) + b**2 * a @ pinv @ a.T) @ modes.T
        dense = torch.distributions.MultivariateNormal(torch.zeros(len(cov), dtype=F64), cov)
        want = float(dense.log_prob(modes @ y.reshape(-1)))
        got = float(gaussian_log_evidence(y, sigma, b, operator=op))
        assert got == pytest.approx(want, rel=1e-10)
    # batched and differentiable in (sigma, b)
    s = torch.tensor([0.3, 0.05], dtype=F64, requires_grad=True)
    ev = gaussian_log_evidence(torch.stack([y, 2 * y]), s, 0.2, operator=op)
    assert ev.shape == (2,)
    ev.sum().backward()
    assert bool(torch.isfinite(s.grad).all())


def test_empirical_bayes_with_an_operator_recovers_sigma_and_b():
    """A GMRF draw seen through a reflective blur and through a decimation: (sigma, b) back."""
    h = w = 96
    sigma, b = 0.02, 0.05
    mu = laplacian_eigenvalues(h, w)
    z = torch.randn(h, w, generator=torch.Generator().manual_seed(0), dtype=F64)
    x = idct2(torch.where(mu > 0, b * z / mu.clamp_min(1e-12).sqrt(), 0 * z))
    for op in (Blur(gaussian_psf(5, 1.0), boundary="reflect"), Downsample(2)):
        y = _observe(op, x, sigma, 1)
        s_hat, b_hat = gaussian_empirical_bayes(y, operator=op)
        assert s_hat == pytest.approx(sigma, rel=0.1) and b_hat == pytest.approx(b, rel=0.1)
        _, b_given = gaussian_empirical_bayes(y, sigma, operator=op)
        assert b_given == pytest.approx(b, rel=0.1)
        best = float(gaussian_log_evidence(y, s_hat, b_hat, operator=op))
        for ds, db in [(1.02, 1), (0.98, 1), (1, 1.02), (1, 0.98)]:
            assert best > float(gaussian_log_evidence(y, s_hat * ds, b_hat * db, operator=op))
    for op in (Blur(gaussian_psf(5, 1.0), boundary="periodic"), Mask(torch.rand(8, 8) < 0.5),
               Downsample(2, kernel="gaussian")):
        with pytest.raises(ValueError, match="closed-form evidence"):
            gaussian_empirical_bayes(torch.rand(8, 8), operator=op, method="spectral")


def test_batched_images_with_their_own_sigma_and_float32():
    """(N, C, H, W) with one sigma per image: each slice equals its own dense posterior."""
    n, c, h, w = 2, 2, 8, 12
    op = Downsample(2)
    sigma = torch.tensor([0.05, 0.2], dtype=F64)
    x = torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(0), dtype=F64)
    y = op.forward(x) + sigma.reshape(n, 1, 1, 1) * torch.randn(
        n, c, h // 2, w // 2, generator=torch.Generator().manual_seed(1), dtype=F64)
    b = 0.1
    post = exact_posterior(restoration_model, y, prior=GaussianGradient(b, shape=(c, h, w)),
                           sigma=sigma.reshape(n, 1, 1, 1), operator=op, num_samples=2)
    assert post.mean.shape == post.std.shape == (n, c, h, w)
    assert post.samples.shape == (1, 2, n, c, h, w)
    for i in range(n):
        a, q = _precision(op, h, w, float(sigma[i]), b)
        cov = torch.linalg.inv(q)
        for j in range(c):
            m = cov @ (a.T @ y[i, j].reshape(-1)) / float(sigma[i]) ** 2
            torch.testing.assert_close(post.mean[i, j].reshape(-1), m, rtol=1e-9, atol=1e-9)
            torch.testing.assert_close(post.std[i, j].reshape(-1), cov.diagonal().sqrt(),
                                       rtol=1e-9, atol=0)
    post32 = exact_posterior(restoration_model, y.float(),
                             prior=GaussianGradient(b, shape=(c, h, w)),
                             sigma=sigma.float().reshape(n, 1, 1, 1), operator=op)
    assert post32.mean.dtype == post32.std.dtype == torch.float32
    torch.testing.assert_close(post32.std.double(), post.std, rtol=1e-4, atol=0)
    torch.testing.assert_close(post32.mean.double(), post.mean, rtol=0, atol=1e-4)


class Heat(LinearOperator):
    """``A = exp(-t D^T D)`` (heat diffusion), known to the package only by its structure."""

    def __init__(self, t):
        self.t = t

    def _lam(self, h, w, like):
        mu = laplacian_eigenvalues(h, w, dtype=like.dtype, device=like.device)
        return torch.exp(-self.t * mu)

    def forward(self, x):
        return idct2(self._lam(*x.shape[-2:], x) * dct2(x))

    adjoint = forward

    def structure(self):
        return DCTDiagonal(self._lam)


def test_an_operator_from_outside_gets_the_closed_form_by_declaring_its_structure():
    h, w, sigma, b = 7, 9, 0.05, 0.1
    op = Heat(0.3)
    y = torch.rand(h, w, generator=torch.Generator().manual_seed(0), dtype=F64)
    a, q = _precision(op, h, w, sigma, b)
    post = _posterior(op, y, h, w, sigma, b)
    assert post.info.solver == "dct"
    torch.testing.assert_close(post.std.reshape(-1), torch.linalg.inv(q).diagonal().sqrt(),
                               rtol=1e-9, atol=0)
    m = torch.linalg.solve(q, a.T @ y.reshape(-1) / sigma**2)
    torch.testing.assert_close(post.mean.reshape(-1), m, rtol=1e-9, atol=1e-9)
    # and solver="pcg" still runs the iterative path on it, to the same mean
    pcg = _posterior(op, y, h, w, sigma, b, solver="pcg", num_draws=2, tol=1e-11)
    assert pcg.info.solver == "pcg"
    torch.testing.assert_close(pcg.mean, post.mean, rtol=1e-8, atol=1e-8)


def test_other_operators_keep_pcg_with_convergence_controlled_draws():
    """A mask: PCG; draws until the std's Monte Carlo error at the median pixel <= std_rtol."""
    h = w = 12
    op = Mask(torch.rand(h, w, generator=torch.Generator().manual_seed(0)) < 0.6)
    y = _observe(op, torch.zeros(h, w, dtype=F64), 0.1, 1)
    post = _posterior(op, y, h, w, 0.1, 0.05, std_rtol=0.08)
    d = post.diagnostics
    assert post.info.solver == "pcg" and d["std_method"] == "perturb-optimise"
    assert d["std_mc_error"] <= 0.08 and d["std_rtol"] == 0.08
    # Gaussian draws: the error is about sqrt(1 / (2 n)), so n is about 1 / (2 0.08^2) = 78
    assert 60 <= d["num_draws"] <= 130
    assert d["std_mc_error"] == pytest.approx(math.sqrt(1 / (2 * d["num_draws"])), rel=0.15)
    with pytest.warns(ConvergenceWarning, match="max_draws=40"):
        capped = _posterior(op, y, h, w, 0.1, 0.05, std_rtol=0.01, max_draws=40)
    assert capped.diagnostics["num_draws"] == 40 and capped.diagnostics["std_mc_error"] > 0.01
    fixed = _posterior(op, y, h, w, 0.1, 0.05, num_draws=10)
    assert fixed.diagnostics["num_draws"] == 10 and fixed.diagnostics.std_rtol is None
    # a decimation whose factor does not divide the image: PCG too
    y3 = torch.rand(3, 3, dtype=F64)
    assert _posterior(Downsample(2), y3, 7, 7, 0.1, 0.05, num_draws=2).info.solver == "pcg"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_device_follows_the_input():
    op = Downsample(2)
    y = torch.rand(8, 8, dtype=F64, device="cuda")
    post = _posterior(op, y, 16, 16, 0.05, 0.1, num_samples=2)
    cpu = _posterior(op, y.cpu(), 16, 16, 0.05, 0.1)
    assert post.mean.device.type == post.std.device.type == "cuda"
    torch.testing.assert_close(post.std.cpu(), cpu.std)


def test_reflect_blur_is_the_dct_diagonal_convolution_and_solves_exactly():
    psf = gaussian_psf(7, 1.5)
    op = Blur(psf, boundary="reflect")
    x = torch.rand(2, 9, 6, generator=torch.Generator().manual_seed(0), dtype=F64)
    lam = op.dct_eigenvalues(9, 6, x)
    torch.testing.assert_close(op.forward(x), idct2(lam * dct2(x)), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(op.dct_symbol(9, 6, x), lam.square(), rtol=1e-12, atol=1e-12)
    a = _dense(op, 9, 6)
    v = torch.rand(9, 6, dtype=F64)
    want = torch.linalg.solve(a.T @ a + 0.1 * torch.eye(54, dtype=F64), v.reshape(-1))
    torch.testing.assert_close(op.solve_normal(v, 0.1).reshape(-1), want)
    np.testing.assert_equal(Blur(torch.rand(3, 3, dtype=F64), boundary="reflect").structure(),
                            None)
