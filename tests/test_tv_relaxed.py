"""TV MAP with an operator: the over-relaxed iteration, the fused block step, float32 blur."""

import math
import warnings

import numpy as np
import pytest
import torch
from helpers import piecewise_image

from bayes_restore import ConvergenceWarning
from bayes_restore.energy import energy
from bayes_restore.infer import tv_map_pdhg
from bayes_restore.infer.tv import _splitting_numba
from bayes_restore.operators import Blur, Downsample, Mask, gaussian_psf


def _problem(name, size=24, seed=1, sigma=0.02):
    gen = torch.Generator().manual_seed(5)
    op = {
        "blur": Blur(gaussian_psf(5, 1.0), boundary="periodic"),
        "sr2": Downsample(2),
        "sr4": Downsample(4),
        "mask": Mask(torch.rand(size, size, generator=gen) < 0.5),
    }[name]
    clean = torch.from_numpy(piecewise_image(size, size).copy())
    y = op.forward(clean)
    return op, y + sigma * torch.from_numpy(np.random.default_rng(seed).standard_normal(y.shape))


def _half(x, y, w, op):
    """``0.5 |A x - y|^2 + w TV(x)`` in float64."""
    return float(energy(x.double(), y.double(), 2 * w, operator=op)) / 2


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", ["blur", "sr2", "sr4", "mask"])
def test_relaxed_and_plain_iterations_reach_the_same_certified_minimiser(name, dtype):
    op, y64 = _problem(name)
    y, w = y64.to(dtype), 0.01
    x_r, info_r = tv_map_pdhg(y, 2 * w, op, tol=1e-5)  # default: over-relaxed, rho = 1.9
    x_p, info_p = tv_map_pdhg(y, 2 * w, op, tol=1e-5, relaxation=1.0)
    assert info_r.converged and info_p.converged
    assert info_r.gap <= 1e-5 and info_p.gap <= 1e-5
    p_r, p_p = _half(x_r, y, w, op), _half(x_p, y, w, op)
    # each certificate bounds the other's objective from below (float32: the rounding)
    slack = 2e-6 if dtype == torch.float32 else 1e-9
    assert abs(p_r - p_p) / p_p <= 1e-5 + slack
    # 0.5 |A (x - x*)|^2 <= F(x) - F(x*) <= gap F(x): the images agree where A sees them
    bound = math.sqrt(2 * (1e-5 + slack) * p_r) + math.sqrt(2 * (1e-5 + slack) * p_p)
    seen = float((op.forward(x_r.double()) - op.forward(x_p.double())).norm())
    assert seen <= bound


def test_relaxation_must_be_in_the_open_interval_to_two():
    op, y = _problem("sr2", size=8)
    for bad in (0.0, 2.0, -1.0):
        with pytest.raises(ValueError, match="relaxation"):
            tv_map_pdhg(y, 0.02, op, relaxation=bad)


@pytest.mark.parametrize("f", [2, 3])
def test_fused_block_step_is_dual_div_then_block_prox(gen, f):
    # 11 x 9 images: rows and columns beyond the last whole block take uh = v + aty
    b, h, w = 2, 11, 9
    u = torch.randn(b, h, w, generator=gen, dtype=torch.float64)
    uh = torch.randn(b, h, w, generator=gen, dtype=torch.float64)
    aty = torch.randn(b, h, w, generator=gen, dtype=torch.float64)
    p = torch.zeros(b, 2, h + 1, w + 1, dtype=torch.float64)
    p[:, 0, 1:h, 1:] = 0.5 * torch.randn(b, h - 1, w, generator=gen, dtype=torch.float64)
    p[:, 1, 1:, 1:w] = 0.5 * torch.randn(b, h, w - 1, generator=gen, dtype=torch.float64)
    args = (0.3, 0.4, 1.7, 1.0, True)  # sigma, tau, rho, one, isotropic
    cf = 0.2 / f**2
    ref = [t.clone() for t in (uh, u, p)]
    v_ref = torch.empty_like(u)
    _splitting_numba.dual_div(ref[0].numpy(), ref[1].numpy(), ref[2].numpy(), v_ref.numpy(),
                              *args)
    _splitting_numba.block_prox(v_ref.numpy(), ref[0].numpy(), aty.numpy(), f, cf)
    v = torch.empty_like(u)
    _splitting_numba.iterate_block(uh.numpy(), u.numpy(), p.numpy(), v.numpy(), aty.numpy(),
                                   f, cf, *args)
    for got, want in zip((uh, u, p, v), (*ref, v_ref), strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_float32_periodic_blur_certifies_and_matches_float64():
    # before the FFT pair ran on v - y, float32 blur stalled near a 4e-4 gap at 128x128
    op, y64 = _problem("blur", size=64)
    w = 0.002
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        x32, info32 = tv_map_pdhg(y64.float(), 2 * w, op, tol=1e-5, max_iter=20000)
    x64, info64 = tv_map_pdhg(y64, 2 * w, op, tol=1e-5)
    assert info32.converged and info32.gap <= 1e-5 and x32.dtype == torch.float32
    p32, p64 = _half(x32, y64, w, op), _half(x64, y64, w, op)
    assert abs(p32 - p64) / p64 <= 2e-5


@pytest.mark.parametrize("scale", [1.0, 1.3])
def test_mask_box_bound_holds_for_a_dual_field_outside_the_ball(scale):
    # rho > 1 steps past the projection: the iterate's p can leave |p| <= 1, and the box
    # bound, valid for |p| <= 1 only, must not see it unprojected. Near-optimal fields
    # pushed past the ball are the dangerous ones: unprojected, the bound grows like
    # (scale - 1) TV and passes the optimum.
    op, y = _problem("mask", size=16)
    w = 0.01
    x_star, star = tv_map_pdhg(y, 2 * w, op, tol=1e-7, max_iter=400000)
    p_star = _half(x_star, y, w, op) / w**2 * (1 - star.gap)  # a lower bound, scaled units
    ws, data, ys = _relaxed_run(op, y, w, 400)
    ws.p.mul_(scale)  # the relaxed iterate (scale 1), or pushed further out
    bound = float(data.lower_bound(ws, torch.empty_like(ys)))
    assert bound <= p_star * (1 + 1e-12)


def _relaxed_run(op, y, w, iterations):
    """``(ws, data, ys)`` after ``iterations`` relaxed primal-splitting steps (``rho = 1.9``,
    no stop) on ``0.5 |A x - y|^2 + w TV(x)`` in the solver's scaled units ``ys = y / w``."""
    from bayes_restore.infer.tv._data_prox import make_data_prox
    from bayes_restore.infer.tv._workspace import Workspace
    from bayes_restore.infer.tv.certificate import GeneralCertificate
    from bayes_restore.infer.tv.splitting import _pdhg_primal_prox

    ys = y / w
    ws = Workspace(ys.shape, ys.dtype, "cpu", 2, True, False)
    data = make_data_prox(op, ys, ys.shape)
    cert = GeneralCertificate(op, ws, ys, ys.shape)
    u0 = data.initial_image(y, op.adjoint(y)) / w
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        _pdhg_primal_prox(u0, ws, torch.ones(()), data, cert, tau=0.1 * float(u0.std()),
                          rho=1.9, tol=1e-12, max_iter=iterations, check_every=iterations)
    return ws, data, ys


def _random_state(gen, b, h, w, dtype=torch.float64, spread=0.8):
    """``(uh, u, p)``: random images and a dual field partly outside ``|p| <= 1``, its
    padding and Neumann zeros in place."""
    u = torch.randn(b, h, w, generator=gen, dtype=dtype)
    uh = u + 0.3 * torch.randn(b, h, w, generator=gen, dtype=dtype)
    p = torch.zeros(b, 2, h + 1, w + 1, dtype=dtype)
    p[:, 0, 1:h, 1:] = spread * torch.randn(b, h - 1, w, generator=gen, dtype=dtype)
    p[:, 1, 1:, 1:w] = spread * torch.randn(b, h, w - 1, generator=gen, dtype=dtype)
    return uh, u, p


@pytest.mark.parametrize("iso", [True, False], ids=["iso", "aniso"])
@pytest.mark.parametrize("count", [1, 3, 9])
def test_fused_affine_sweep_is_dual_div_then_the_pointwise_prox(gen, iso, count):
    # several iterations in one pass, each a row behind the previous, images of a batch
    # in the same sweep (9 iterations on 7-row images: the lag spans both images)
    b, h, w = 2, 7, 9
    uh, u, p = _random_state(gen, b, h, w)
    gain = torch.rand(b, h, w, generator=gen, dtype=torch.float64)
    offset = torch.randn(b, h, w, generator=gen, dtype=torch.float64)
    args = (0.3, 0.4, 1.7, 1.0, iso)  # sigma, tau, rho, one, isotropic
    ref = [t.clone() for t in (uh, u, p)]
    v = torch.empty_like(u)
    for _ in range(count):  # the unfused path: a pass of dual_div, then the prox
        _splitting_numba.dual_div(*(t.numpy() for t in ref), v.numpy(), *args)
        torch.addcmul(offset, gain, v, out=ref[0])
    _splitting_numba.iterate_affine(uh.numpy(), u.numpy(), p.numpy(), gain.numpy(),
                                    offset.numpy(), *args, count)
    for got, want in zip((uh, u, p), ref, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("f", [2, 3])
def test_fused_block_iterations_in_one_pass_are_the_single_iterations(gen, f):
    # 4 iterations a group of rows behind each other, over a batch of 11 x 9 images (rows
    # and columns beyond the last whole block included)
    b, h, w = 2, 11, 9
    uh, u, p = _random_state(gen, b, h, w)
    aty = torch.randn(b, h, w, generator=gen, dtype=torch.float64)
    args = (aty.numpy(), f, 0.2 / f**2, 0.3, 0.4, 1.7, 1.0, True)
    ref = [t.clone() for t in (uh, u, p)]
    v = torch.empty_like(u)
    for _ in range(4):
        _splitting_numba.iterate_block(*(t.numpy() for t in ref), v.numpy(), *args)
    _splitting_numba.iterate_block(uh.numpy(), u.numpy(), p.numpy(), v.numpy(), *args, 4)
    for got, want in zip((uh, u, p), ref, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_mask_box_bound_is_tight_near_the_optimum_with_data_at_unseen_pixels():
    # y is noisy at the pixels the mask drops (as a camera's would be): their 0.5 y^2 is
    # part of every objective value, and a bound without it stays that far below
    op, y = _problem("mask", size=16)
    unseen = ~op.mask.bool()
    assert float(y[unseen].abs().min()) > 0
    w = 0.01
    # the optimum from the dual splitting (A in the dual: no box bound involved)
    x_star, star = tv_map_pdhg(y, 2 * w, op, tol=1e-6, max_iter=400000, splitting="dual")
    p_hi = _half(x_star, y, w, op) / w**2  # scaled units; the optimum is within 1e-6 below
    ws, data, ys = _relaxed_run(op, y, w, 2000)
    bound = float(data.lower_bound(ws, torch.empty_like(ys)))
    assert star.converged
    assert p_hi * (1 - 1e-4) <= bound <= p_hi
