"""The block bound that certifies TV MAP with box decimation: feasible, valid, tight."""

import warnings

import numpy as np
import pytest
import torch
from helpers import piecewise_image

from bayes_restore import ConvergenceWarning
from bayes_restore.energy import energy
from bayes_restore.infer import tv_map_pdhg
from bayes_restore.infer.tv import _splitting_numba
from bayes_restore.operators import Downsample


def _problem(f, size=24, seed=1, sigma=0.02):
    op = Downsample(f)
    clean = torch.from_numpy(piecewise_image(size, size).copy())
    y = op.forward(clean)
    return op, y + sigma * torch.from_numpy(np.random.default_rng(seed).standard_normal(y.shape))


def _half(x, y, w, op):
    """``0.5 |A x - y|^2 + w TV(x)`` in float64."""
    return float(energy(x.double(), y.double(), 2 * w, operator=op)) / 2


_OPTIMA: dict = {}


def _optimum(f, size, w):
    """An upper bound of the optimum within ~1e-9 of it (a long run), cached."""
    key = (f, size, w)
    if key not in _OPTIMA:
        op, y = _problem(f, size)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            x, info = tv_map_pdhg(y, 2 * w, op, tol=1e-9, max_iter=200000)
        assert info.gap <= 1e-7
        _OPTIMA[key] = _half(x, y, w, op)
    return _OPTIMA[key]


@pytest.mark.parametrize("iso", [True, False], ids=["iso", "aniso"])
@pytest.mark.parametrize("f", [2, 4])
def test_block_correction_makes_div_p_block_constant_on_interior_edges_only(f, iso):
    from bayes_restore.infer.tv._workspace import Workspace
    from bayes_restore.infer.tv.certificate import _block_pinv

    h, w = 4 * f, 3 * f
    ws = Workspace((2, h, w), torch.float64, "cpu", 2, iso, False)
    gen = torch.Generator().manual_seed(11)
    p = torch.zeros_like(ws.p)
    p[..., 0, 1:h, 1:] = torch.rand(2, h - 1, w, generator=gen, dtype=torch.float64) - 0.5
    p[..., 1, 1:, 1:w] = torch.rand(2, h, w - 1, generator=gen, dtype=torch.float64) - 0.5
    before = p.clone()
    d0 = torch.empty(2, h, w, dtype=torch.float64)
    ws.div_into(p, d0)
    q = torch.empty(2, h // f, w // f, dtype=torch.float64)
    _splitting_numba.block_correct(p.numpy(), q.numpy(), f, _block_pinv(f, q).numpy())
    d1 = torch.empty_like(d0)
    ws.div_into(p, d1)
    # A^T q = div p exactly: div p is the block mean everywhere, q = f^2 A div p
    op = Downsample(f)
    torch.testing.assert_close(op.adjoint(q), d1, rtol=0, atol=1e-14)
    torch.testing.assert_close(op.forward(d0) * f**2, q, rtol=0, atol=1e-14)
    # only the blocks' interior edges moved; the padding and Neumann zeros are still zero
    changed = (p - before).abs() > 0
    assert not bool(changed[:, 0, f::f, :].any()) and not bool(changed[:, 1, :, f::f].any())
    assert bool(changed.any())
    assert float(p[:, :, 0].abs().max()) == 0.0 and float(p[:, :, :, 0].abs().max()) == 0.0
    assert float(p[:, 0, h].abs().max()) == 0.0 and float(p[:, 1, :, w].abs().max()) == 0.0


@pytest.mark.parametrize("scale", [1.0, 1.3])
@pytest.mark.parametrize("f", [2, 4])
def test_block_bound_is_below_the_optimum_and_close_to_it(f, scale):
    # the dual field of an unfinished run, the relaxed iterate (may leave |p| <= 1) or
    # pushed further out: every variant of the bound stays below the optimum, the
    # numba and torch corrections agree, and polishing tightens the bound
    from bayes_restore.infer.tv._data_prox import make_data_prox
    from bayes_restore.infer.tv._workspace import Workspace
    from bayes_restore.infer.tv.certificate import GeneralCertificate
    from bayes_restore.infer.tv.splitting import _pdhg_primal_prox

    size, w = 24, 0.01
    op, y = _problem(f, size)
    star = _optimum(f, size, w) / w**2  # scaled units, an upper bound within 1e-9
    ys = y / w
    x_shape = (size, size)
    ws = Workspace(x_shape, ys.dtype, "cpu", 2, True, False)
    data = make_data_prox(op, ys, x_shape)
    cert = GeneralCertificate(op, ws, ys, x_shape)
    u0 = data.initial_image(y, op.adjoint(y)) / w
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        u, *_ = _pdhg_primal_prox(u0, ws, torch.ones(()), data, cert,
                                  tau=0.1 * float(u0.std()), rho=1.9, tol=1e-12,
                                  max_iter=300, check_every=300)
    ws.p.mul_(scale)
    plain = float(cert.dual(cert.residual(u)))
    fused0 = float(cert.dual_block(f, 0, _splitting_numba))
    eager0 = float(cert.dual_block(f, 0, None))
    polished = float(cert.dual_block(f, 20, _splitting_numba))
    assert fused0 == pytest.approx(eager0, rel=1e-12, abs=1e-9)
    for bound in (plain, fused0, polished):
        assert bound <= star * (1 + 1e-9)
    assert polished >= fused0
    if scale == 1.0:  # an iterate 300 steps in: the polished bound certifies much more
        assert (star - polished) < 0.5 * (star - plain)


def test_block_bound_needs_whole_blocks():
    from bayes_restore.infer.tv._workspace import Workspace
    from bayes_restore.infer.tv.certificate import GeneralCertificate

    op = Downsample(2)
    ys = torch.zeros(5, 5, dtype=torch.float64)
    ws = Workspace((11, 10), torch.float64, "cpu", 2, True, False)
    cert = GeneralCertificate(op, ws, ys, (11, 10))
    assert cert.dual_block(2, 5, _splitting_numba) is None


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("whole", [True, False], ids=["whole", "partial"])
@pytest.mark.parametrize("f", [2, 4])
def test_certified_gap_bounds_the_true_suboptimality(f, whole, dtype):
    # whole blocks: the block bound; rows and columns beyond them: the plain certificate
    size = 24 if whole else 24 + f - 1
    w = 0.01
    op, y = _problem(f, size)
    star = _optimum(f, size, w)
    for tol in (1e-2, 1e-3, 1e-4):
        x, info = tv_map_pdhg(y.to(dtype), 2 * w, op, tol=tol, max_iter=100000)
        assert info.converged and info.backend == "numba"
        true_gap = (_half(x, y, w, op) - star) / star
        # float32: the rounded data is another problem, ~1e-6 away here
        assert true_gap <= info.gap + (2e-6 if dtype == torch.float32 else 1e-9)
        assert true_gap >= -(2e-6 if dtype == torch.float32 else 1e-9)
