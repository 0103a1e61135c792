"""TV MAP with a spectrally diagonal blur by ADMM: agreement with the primal-dual splitting,
a certificate that bounds the true suboptimality, both boundaries and dtypes."""

import warnings

import numpy as np
import pytest
import torch
from helpers import piecewise_image

from bayes_restore import ConvergenceWarning
from bayes_restore.energy import energy
from bayes_restore.infer.tv import tv_map_pdhg
from bayes_restore.operators import Blur, Downsample, gaussian_psf


def _blur(boundary):
    return Blur(gaussian_psf(5, 1.0), boundary=boundary)


def _observe(op, shape=(12, 12), seed=1, sigma=0.02):
    clean = torch.from_numpy(np.broadcast_to(piecewise_image(*shape[-2:]), shape).copy())
    y = op.forward(clean)
    return y + sigma * torch.from_numpy(np.random.default_rng(seed).standard_normal(y.shape))


def _half(x, y, w, op):
    """``0.5 |A x - y|^2 + w TV(x)`` in float64 (the solvers take ``lambda = 2 w``)."""
    return float(energy(x.double(), y.double(), 2 * w, operator=op)) / 2


_OPTIMA: dict = {}


def _optimum(boundary, y, w, op) -> float:
    """A lower bound of the optimum within a certified 1e-5 of it, by the primal-dual
    splitting (another algorithm, another certificate)."""
    if boundary not in _OPTIMA:
        x, info = tv_map_pdhg(y, 2 * w, op, tol=1e-5, max_iter=400000, splitting="primal")
        assert info.converged and info.solver == "pdhg"
        _OPTIMA[boundary] = _half(x, y, w, op) * (1 - info.gap)  # a lower bound
    return _OPTIMA[boundary]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("boundary", ["periodic", "reflect"])
def test_admm_is_certified_and_agrees_with_the_primal_dual_optimum(boundary, dtype):
    op = _blur(boundary)
    y64, w = _observe(op), 0.01
    x, info = tv_map_pdhg(y64.to(dtype), 2 * w, op, tol=1e-4)
    assert info.solver == "admm" and info.converged and info.gap <= 1e-4
    assert x.dtype == dtype and x.shape == y64.shape
    assert info.objective == pytest.approx(2 * _half(x, y64.to(dtype), w, op), rel=1e-5)
    best = _optimum(boundary, y64, w, op)
    rel = (_half(x, y64, w, op) - best) / best
    slack = 2e-5 if dtype == torch.float32 else 1e-9  # float32: the data rounded
    assert -slack <= rel <= info.gap + 1e-5 + slack  # the reference is 1e-5 below


@pytest.mark.parametrize("boundary", ["periodic", "reflect"])
def test_admm_certificate_bounds_the_true_suboptimality_at_every_stop(boundary):
    op = _blur(boundary)
    y, w = _observe(op), 0.01
    best = _optimum(boundary, y, w, op)
    gaps = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        x_aniso, aniso = tv_map_pdhg(y, 2 * w, op, tol=1e-4, isotropic=False)
        for stop in (2, 4, 8, 16):
            x, info = tv_map_pdhg(y, 2 * w, op, tol=1e-12, max_iter=stop, splitting="admm")
            primal = _half(x, y, w, op)
            true = (primal - best) / primal
            gaps.append(info.gap)
            assert info.iterations == stop and np.isfinite(info.gap)
            # ``true`` is overstated by up to 1e-5 (a lower bound stands for the optimum)
            assert true <= info.gap + 1e-12  # the certificate is a bound
    assert gaps[-1] < gaps[0]
    # anisotropic TV: certified, and within both certified gaps of the primal splitting's
    assert aniso.solver == "admm" and aniso.converged
    x_pd, pd = tv_map_pdhg(y, 2 * w, op, tol=1e-4, isotropic=False, splitting="primal")
    e_admm, e_pd = (float(energy(x, y, 2 * w, isotropic=False, operator=op)) / 2
                    for x in (x_aniso, x_pd))
    assert aniso.objective == pytest.approx(2 * e_admm, rel=1e-9)
    assert abs(e_admm - e_pd) / e_pd <= aniso.gap + pd.gap


def test_admm_batch_with_one_weight_per_image_matches_single_solves():
    op = _blur("periodic")
    y = torch.stack([_observe(op, seed=2), _observe(op, seed=3)])
    weights = torch.tensor([0.01, 0.03], dtype=torch.float64).reshape(2, 1, 1)
    x, info = tv_map_pdhg(y, 2 * weights, op, tol=1e-5)
    assert info.solver == "admm" and info.converged
    for i in range(2):
        w = float(weights[i])
        xi, _ = tv_map_pdhg(y[i], 2 * w, op, tol=1e-5)
        pi, pb = _half(xi, y[i], w, op), _half(x[i], y[i], w, op)
        assert abs(pb - pi) / pi <= 2e-5


def test_admm_choice_and_its_errors():
    op = _blur("periodic")
    y = _observe(op)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        _, eager = tv_map_pdhg(y, 0.02, op, max_iter=20, backend="torch")  # no kernels
        _, primal = tv_map_pdhg(y, 0.02, op, max_iter=20, splitting="primal")
    assert eager.solver == "pdhg" and eager.backend == "torch"
    assert primal.solver == "pdhg" and primal.iterations == 20
    with pytest.raises(ValueError, match="splitting='admm'"):
        tv_map_pdhg(_observe(Downsample(2)), 0.02, Downsample(2), splitting="admm")
    with pytest.raises(ValueError, match="splitting must be"):
        tv_map_pdhg(y, 0.02, op, splitting="newton")


def _div(f):
    """``div f`` of a padded field ``(B, 2, H + 1, W + 1)``, by numpy."""
    return f[:, 0, 1:, 1:] - f[:, 0, :-1, 1:] + f[:, 1, 1:, 1:] - f[:, 1, 1:, :-1]


@pytest.mark.parametrize("isotropic", [True, False], ids=["iso", "aniso"])
@pytest.mark.parametrize("shape", [(5, 7), (9, 4)])
def test_closing_field_integrates_the_residual(shape, isotropic):
    """The certificate's closing field (never stored by the kernel): rebuilt here from
    its definition by cumulative sums, it has ``div f = r`` and the Neumann zeros, and
    the kernel's ``max |p + f|`` is that field's."""
    from bayes_restore.infer.tv import _admm_numba

    h, w = shape
    rng = np.random.default_rng(4)
    r = rng.standard_normal((2, h, w))
    r -= r.mean((1, 2), keepdims=True)
    p = np.zeros((2, 2, h + 1, w + 1))
    p[:, 0, 1:h, 1:] = 0.6 * np.tanh(rng.standard_normal((2, h - 1, w)))
    p[:, 1, 1:, 1:w] = 0.6 * np.tanh(rng.standard_normal((2, h, w - 1)))
    rows, cols = r.sum(2), r.sum(1)
    f = np.zeros_like(p)
    along_rows = (np.repeat(np.cumsum(rows, 1)[:, :, None] / w, w, 2),
                  np.cumsum(r - rows[:, :, None] / w, 2))
    along_cols = (np.cumsum(r - cols[:, None, :] / h, 1),
                  np.repeat(np.cumsum(cols, 1)[:, None, :] / h, h, 1))
    f[:, 0, 1:, 1:] = 0.5 * (along_rows[0] + along_cols[0])
    f[:, 1, 1:, 1:] = 0.5 * (along_rows[1] + along_cols[1])
    f[:, 0, h], f[:, 1, :, w] = 0.0, 0.0  # the Neumann zeros (their values there are ~0)
    assert np.abs(_div(f) - r).max() < 1e-12
    q = p + f
    norm = (np.hypot(q[:, 0], q[:, 1]) if isotropic
            else np.maximum(np.abs(q[:, 0]), np.abs(q[:, 1])))
    out = np.empty(2)
    _admm_numba.closed_norm_max(p, r, isotropic, out)
    np.testing.assert_allclose(out, norm.reshape(2, -1).max(1), rtol=1e-12)


@pytest.mark.parametrize("kind,shape", [("fft", (6, 8)), ("fft", (5, 7)), ("dct", (6, 5))])
def test_spectral_parseval_weights_give_inner_products(kind, shape):
    from bayes_restore.infer.tv.admm import Spectral

    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((2,) + shape)
    h, w = shape
    s = Spectral(kind, np.ones((h, w // 2 + 1) if kind == "fft" else shape), shape)
    fa, fb = s.forward(a), s.forward(b)
    value = float((s.parseval() * (fa * np.conj(fb)).real).sum())
    assert value == pytest.approx(float((a * b).sum()), rel=1e-12, abs=1e-12)
