"""The Gaussian-gradient prior's maximum evidence for any operator (the PCG path), against the
dense marginal likelihood and against the closed form where one exists."""

import math

import pytest
import torch
from scipy.optimize import minimize, minimize_scalar

from bayes_restore.differences import div, grad, idct2, laplacian_eigenvalues
from bayes_restore.hyper import gaussian_empirical_bayes
from bayes_restore.operators import Blur, Downsample, Mask, gaussian_psf

F64 = torch.float64


def _dense(op, h, w):
    n = h * w
    return op.forward(torch.eye(n, dtype=F64).reshape(n, h, w)).reshape(n, -1).T


def _dense_log_evidence(a, lap, y, observed, log_s, log_b):
    """``log p(y | sigma, b)`` up to a constant, from ``Q = A^T A / s^2 + L / b^2``: the
    improper prior ``b^-(N-1) exp(-x^T L x / 2 b^2)`` integrated against the likelihood of the
    ``observed`` values (``y`` is zero elsewhere and so is ``A x``)."""
    s2, b2 = math.exp(2 * log_s), math.exp(2 * log_b)
    n = lap.shape[0]
    q = a.T @ a / s2 + lap / b2
    h = a.T @ y / s2
    chol = torch.linalg.cholesky(q)
    quad = float(h @ torch.cholesky_solve(h[:, None], chol)[:, 0])
    return (-(n - 1) * log_b - observed * log_s - float(chol.diagonal().log().sum())
            + 0.5 * quad - float(y @ y) / (2 * s2))


def _gmrf(h, w, b, seed):
    mu = laplacian_eigenvalues(h, w)
    z = torch.randn(h, w, generator=torch.Generator().manual_seed(seed), dtype=F64)
    return 0.3 + idct2(torch.where(mu > 0, b * z / mu.clamp_min(1e-12).sqrt(), 0 * z))


OPERATORS = {
    "mask": lambda h, w: Mask(torch.rand(h, w, generator=torch.Generator().manual_seed(2)) < 0.6),
    "periodic-blur": lambda h, w: Blur(gaussian_psf(3, 0.8), boundary="periodic"),
    "gaussian-down2": lambda h, w: Downsample(2, kernel="gaussian"),
}


@pytest.mark.parametrize("name", list(OPERATORS))
def test_pcg_evidence_is_the_dense_maximum(name):
    """8 x 10 images: the dense evidence's maximiser over ``b`` (sigma given) and over
    ``(sigma, b)``; 100 probes make the trace's Monte Carlo error a few per cent."""
    h, w, sigma, b = 8, 10, 0.05, 0.1
    op = OPERATORS[name](h, w)
    x = _gmrf(h, w, b, 0)
    shape = op.output_shape((h, w))
    y = op.forward(x) + sigma * torch.randn(shape, generator=torch.Generator().manual_seed(1),
                                            dtype=F64)
    y = op.forward(torch.ones(h, w, dtype=F64)).ne(0) * y if name == "mask" else y
    a = _dense(op, h, w)
    lap = (-div(grad(torch.eye(h * w, dtype=F64).reshape(-1, h, w)))).reshape(h * w, -1).T
    observed = int(a.abs().sum(1).gt(0).sum())
    yv = y.reshape(-1)
    best = minimize_scalar(lambda t: -_dense_log_evidence(a, lap, yv, observed,
                                                          math.log(sigma), t),
                           bounds=(-8, 2), method="bounded", options={"xatol": 1e-7})
    _, b_pcg = gaussian_empirical_bayes(y, sigma, operator=op, num_probes=100, tol=1e-4)
    reached = _dense_log_evidence(a, lap, yv, observed, math.log(sigma), math.log(b_pcg))
    assert -best.fun - reached <= 0.05  # the evidence is flat in b on 80 pixels: its value
    assert math.log(b_pcg) == pytest.approx(best.x, abs=0.1)
    joint = minimize(lambda v: -_dense_log_evidence(a, lap, yv, observed, v[0], v[1]),
                     [math.log(sigma), math.log(b)], method="Nelder-Mead",
                     options={"xatol": 1e-7, "fatol": 1e-10, "maxiter": 4000})
    s_pcg, b_pcg = gaussian_empirical_bayes(y, operator=op, num_probes=100, tol=1e-4)
    # jointly the evidence is nearly flat along sigma ~ b on 80 pixels: compare its value
    # (a wrong count of observed values or a wrong profile of sigma costs nats)
    reached = _dense_log_evidence(a, lap, yv, observed, math.log(s_pcg), math.log(b_pcg))
    assert -joint.fun - reached <= 0.2
    assert math.log(s_pcg) == pytest.approx(joint.x[0], abs=0.15)


def test_pcg_path_agrees_with_the_closed_form_and_is_seeded():
    """A reflective blur has the closed form, and its DCT symbol makes the control variate
    exact (``M = Q``): the PCG path's root is the closed form's to the search's accuracy.
    A mask's answer depends on the probes only through their Monte Carlo error."""
    h = w = 48
    op = Blur(gaussian_psf(5, 1.0), boundary="reflect")
    x = _gmrf(h, w, 0.05, 3)
    y = op.forward(x) + 0.02 * torch.randn(h, w, generator=torch.Generator().manual_seed(4),
                                           dtype=F64)
    _, b_closed = gaussian_empirical_bayes(y, 0.02, operator=op)
    _, b_pcg = gaussian_empirical_bayes(y, 0.02, operator=op, method="pcg", tol=1e-6)
    assert b_pcg == pytest.approx(b_closed, rel=1e-5)
    s_closed, b_closed = gaussian_empirical_bayes(y, operator=op)
    s_pcg, b_pcg = gaussian_empirical_bayes(y, operator=op, method="pcg", tol=1e-6)
    assert s_pcg == pytest.approx(s_closed, rel=1e-4) and b_pcg == pytest.approx(b_closed,
                                                                                 rel=1e-4)
    mask = Mask(torch.rand(h, w, generator=torch.Generator().manual_seed(8)) < 0.7)
    ym = mask.forward(x + 0.02 * torch.randn(h, w, generator=torch.Generator().manual_seed(9),
                                             dtype=F64))
    first = gaussian_empirical_bayes(ym, 0.02, operator=mask)[1]
    assert gaussian_empirical_bayes(ym, 0.02, operator=mask)[1] == first  # seed=0: repeatable
    other = gaussian_empirical_bayes(ym, 0.02, operator=mask, seed=1)[1]
    assert other != first and other == pytest.approx(first, rel=0.03)


def test_mask_recovers_sigma_and_b_from_a_prior_draw():
    h = w = 48
    sigma, b = 0.02, 0.05
    op = Mask(torch.rand(h, w, generator=torch.Generator().manual_seed(5)) < 0.5)
    x = _gmrf(h, w, b, 6)
    y = op.forward(x + sigma * torch.randn(h, w, generator=torch.Generator().manual_seed(7),
                                           dtype=F64))
    _, b_hat = gaussian_empirical_bayes(y, sigma, operator=op)
    assert b_hat == pytest.approx(b, rel=0.05)
    assert gaussian_empirical_bayes(y.float(), sigma, operator=op)[1] == pytest.approx(
        b_hat, rel=1e-3)  # float32 input: the search runs in float64


def test_method_and_argument_errors():
    y = torch.rand(8, 8, dtype=F64)
    for op in (Blur(gaussian_psf(3, 1.0), boundary="periodic"), Mask(torch.rand(8, 8) < 0.5),
               Downsample(2, kernel="gaussian")):
        with pytest.raises(ValueError, match="closed-form evidence"):
            gaussian_empirical_bayes(y if op.output_shape((8, 8)) == (8, 8) else y[:4, :4],
                                     operator=op, method="spectral")
    with pytest.raises(ValueError, match="method"):
        gaussian_empirical_bayes(y, method="newton")
    with pytest.raises(ValueError, match="num_probes"):
        gaussian_empirical_bayes(y, method="pcg", num_probes=0)
    with pytest.raises(ValueError, match="tol"):
        gaussian_empirical_bayes(y, method="pcg", tol=0.0)
    with pytest.raises(ValueError, match="constant"):
        gaussian_empirical_bayes(y, 0.1, operator=Mask(torch.zeros(8, 8, dtype=torch.bool)))
