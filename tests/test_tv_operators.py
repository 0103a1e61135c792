"""TV MAP with an operator on the fused kernels: agreement, certificates, every structure."""

import warnings

import numpy as np
import pytest
import torch
from helpers import gain_operator, piecewise_image

from bayes_restore import ConvergenceWarning
from bayes_restore.energy import energy
from bayes_restore.infer import map_estimate, tv_l1_pdhg, tv_map_pdhg
from bayes_restore.infer.tv import _splitting_numba
from bayes_restore.operators import Blur, Downsample, LinearOperator, Mask, gaussian_psf
from bayes_restore.priors import TotalVariation


def _operators(size=16):
    gen = torch.Generator().manual_seed(3)
    return {
        "blur": Blur(gaussian_psf(5, 1.0), boundary="periodic"),
        "sr2": Downsample(2),
        "sr4": Downsample(4),
        "mask": Mask(torch.rand(size, size, generator=gen) < 0.5),
    }


def _observe(op, shape=(16, 16), seed=1, sigma=0.02):
    clean = torch.from_numpy(np.broadcast_to(piecewise_image(*shape[-2:]), shape).copy())
    y = op.forward(clean)
    return y + sigma * torch.from_numpy(np.random.default_rng(seed).standard_normal(y.shape))


def _half(x, y, w, op, iso=True):
    """``0.5 |A x - y|^2 + w TV(x)`` (the tests keep ``w``; the solvers take ``2 w``)."""
    return float(energy(x.double(), y.double(), 2 * w, isotropic=iso, operator=op)) / 2


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", ["blur", "sr2", "sr4", "mask"])
def test_fused_solver_is_the_eager_iteration_and_meets_its_certificate(name, dtype):
    op = _operators()[name]
    y64, w = _observe(op), 0.01
    y = y64.to(dtype)
    # the same iterates: both backends run the same iteration (the checks change nothing)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        # (the primal splitting: a blur's default, the spectral ADMM, has no eager twin)
        x_fused, info_f = tv_map_pdhg(y, 2 * w, op, max_iter=37, backend="numba",
                                      splitting="primal")
        x_eager, _ = tv_map_pdhg(y, 2 * w, op, max_iter=37, backend="torch", splitting="primal")
    assert info_f.backend == "numba"
    scale = float(x_eager.abs().max())
    atol = (2e-4 if dtype == torch.float32 else 1e-10) * scale
    torch.testing.assert_close(x_fused, x_eager, rtol=0, atol=atol)
    # certified, and the certificate holds against a long reference run
    x, info = tv_map_pdhg(y, 2 * w, op, tol=1e-4)
    assert info.converged and info.gap <= 1e-4 and info.backend == "numba"
    assert x.dtype == dtype
    # float32: the data rounded is another problem, within ~1e-5 in objective here
    slack = 2e-5 if dtype == torch.float32 else 1e-5
    assert info.objective == pytest.approx(2 * _half(x, y, w, op), rel=1e-5)
    p, p_ref = _half(x, y64, w, op), _reference(name, y64, w, op)
    assert -slack <= (p - p_ref) / p <= info.gap + slack


_REFERENCES: dict = {}


def _reference(name, y, w, op) -> float:
    """The optimum to 1e-5 (certified: a tenth of the tolerance tested), once per operator."""
    if name not in _REFERENCES:
        x_ref, ref = tv_map_pdhg(y, 2 * w, op, tol=1e-5, max_iter=400000)
        assert ref.converged
        _REFERENCES[name] = _half(x_ref, y, w, op)
    return _REFERENCES[name]


@pytest.mark.parametrize("iso", [True, False], ids=["iso", "aniso"])
def test_fused_batch_of_colour_images_with_one_weight_each(iso):
    op = _operators()["mask"]
    y = _observe(op, shape=(2, 3, 16, 16), seed=4)
    w = torch.tensor([0.01, 0.03], dtype=torch.float64).reshape(2, 1, 1, 1)
    x, info = tv_map_pdhg(y, 2 * w, op, event_dim=3, isotropic=iso, tol=1e-5)
    assert info.converged and info.backend == "numba" and x.shape == y.shape
    for i in range(2):
        xi, one = tv_map_pdhg(y[i], 2 * float(w[i]), op, event_dim=3, isotropic=iso,
                              tol=1e-5, max_iter=400000)
        pi = _half(xi, y[i], float(w[i]), op, iso)
        assert _half(x[i], y[i], float(w[i]), op, iso) <= pi * (1 + 1e-5 + one.gap)


def test_vectorial_colour_tv_with_an_operator_runs_eager_and_certifies():
    op = _operators()["sr2"]
    y = _observe(op, shape=(3, 12, 12), seed=5)
    x, info = tv_map_pdhg(y, 0.02, op, event_dim=3, vectorial=True, tol=1e-4)
    assert info.converged and info.backend == "torch" and x.shape == (3, 12, 12)
    with pytest.raises(ValueError, match="non-vectorial"):
        tv_map_pdhg(y, 0.02, op, event_dim=3, vectorial=True, backend="numba")


def test_block_prox_kernel_covers_rows_and_columns_beyond_the_blocks(gen):
    v = torch.randn(2, 11, 9, generator=gen, dtype=torch.float64)
    aty = torch.randn(2, 11, 9, generator=gen, dtype=torch.float64)
    out = torch.empty_like(v)
    f, c = 4, 0.3
    _splitting_numba.block_prox(v.numpy(), out.numpy(), aty.numpy(), f, c / f**2)
    expect = v + aty
    blocks = v[:, :8, :8].reshape(2, 2, 4, 2, 4)
    expect[:, :8, :8] -= c * blocks.mean((2, 4), keepdim=True).expand_as(blocks).reshape(2, 8, 8)
    torch.testing.assert_close(out, expect, rtol=0, atol=1e-12)


class _Scaled(LinearOperator):
    """``A = 0.6 I`` with only its own ``solve_normal``: no declared structure."""

    norm_bound = 0.6

    def forward(self, x):
        return 0.6 * x

    def adjoint(self, y):
        return 0.6 * y

    def solve_normal(self, v, rho):
        return v / (0.36 + rho)


class _Opaque(_Scaled):
    """The same operator knowing no exact solve: ``A`` goes in the dual."""

    solve_normal = LinearOperator.solve_normal


def test_operators_without_a_structure_still_work():
    y = _observe(_Scaled())
    with_solve, info_s = tv_map_pdhg(y, 0.02, _Scaled(), tol=1e-6)
    opaque, info_o = tv_map_pdhg(y, 0.02, _Opaque(), tol=1e-6, max_iter=100000)
    assert info_s.converged and info_o.converged and info_s.backend == "numba"
    p_s, p_o = _half(with_solve, y, 0.01, _Scaled()), _half(opaque, y, 0.01, _Scaled())
    assert abs(p_s - p_o) / p_o <= 2e-6


def test_reflective_blur_runs_on_its_own_normal_solve():
    try:
        op = Blur(gaussian_psf(5, 1.0), boundary="reflect")
    except ValueError:
        pytest.skip("this version of Blur has no reflective boundary")
    y = _observe(op, shape=(12, 12))
    x, info = tv_map_pdhg(y, 0.02, op, tol=1e-4)
    assert info.converged and info.backend == "numba"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        # the same iteration on both backends: the primal splitting (the default on the
        # fused kernels is the spectral ADMM, which has no eager twin)
        x_fused, _ = tv_map_pdhg(y, 0.02, op, max_iter=25, splitting="primal")
        x_eager, _ = tv_map_pdhg(y, 0.02, op, max_iter=25, backend="torch",
                                 splitting="primal")
    torch.testing.assert_close(x_fused, x_eager, rtol=0, atol=1e-10)


def test_map_estimate_takes_the_fused_path_and_tv_l1_still_certifies():
    op = _operators()["blur"]
    y = _observe(op)
    prior = TotalVariation(torch.tensor(0.1, dtype=torch.float64), shape=(16, 16))
    from bayes_restore.models import restoration_model

    post = map_estimate(restoration_model, y, prior=prior, sigma=0.02, operator=op)
    assert post.info.solver == "admm" and post.info.converged  # periodic blur: the ADMM
    assert post.info.backend == "numba"
    noisy = _observe(Mask(torch.ones(16, 16, dtype=torch.bool)))
    x_l1, info_l1 = tv_l1_pdhg(noisy, 0.8)
    assert info_l1.converged and info_l1.gap <= 1e-4 and x_l1.shape == noisy.shape


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_certificate_dct_solve_is_the_dense_dct(dtype):
    from bayes_restore.differences import dct_matrix
    from bayes_restore.infer.tv._dct import scaled_dct_solve

    gen = torch.Generator().manual_seed(5)
    r = torch.randn(2, 9, 12, generator=gen, dtype=torch.float64)
    factor = torch.rand(9, 12, generator=gen, dtype=torch.float64) + 0.5
    ch, cw = dct_matrix(9), dct_matrix(12)
    dense = ch.T @ ((ch @ r @ cw.T) * factor) @ cw  # C^T diag(factor) C r, independent
    out = scaled_dct_solve(r.to(dtype), factor.to(dtype))
    assert out.dtype == dtype and out.shape == r.shape
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(out.double(), dense, rtol=0, atol=tol * float(dense.abs().max()))


def test_certificate_of_a_large_image_is_honest():
    # above the dense-DCT size of the certificate (256): its Poisson solve runs by the FFT
    size, w = 264, 0.01
    op = Mask(torch.rand(size, size, generator=torch.Generator().manual_seed(6)) < 0.5)
    y = _observe(op, shape=(size, size), seed=7)
    x, info = tv_map_pdhg(y, 2 * w, op, tol=1e-3)
    x_ref, ref = tv_map_pdhg(y, 2 * w, op, tol=1e-5, max_iter=400000)
    assert info.converged and info.gap <= 1e-3 and ref.converged
    p, p_ref = _half(x, y, w, op), _half(x_ref, y, w, op)
    # the certified gap bounds the true relative error (up to the reference's own 1e-5)
    assert -1e-5 <= (p - p_ref) / p <= info.gap + 1e-5


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("iso", [True, False], ids=["iso", "aniso"])
@pytest.mark.parametrize("binary", [True, False], ids=["mask", "gain"])
def test_fused_bounds_are_the_primal_value_and_the_box_bound(gen, dtype, iso, binary):
    # one numba pass against the certificate's primal value and the eager box bound, for
    # a batch, a field partly outside |p| <= 1 and data at the pixels A does not see
    from bayes_restore.infer.tv._data_prox import make_data_prox
    from bayes_restore.infer.tv._workspace import Workspace
    from bayes_restore.infer.tv.certificate import GeneralCertificate

    shape = (2, 3, 11, 9)  # two colour images (event_dim 3: one value per image)
    seen = torch.rand(shape[1:], generator=gen) < 0.6
    g = seen.double() if binary else seen * (0.2 + torch.rand(shape[1:], generator=gen,
                                                               dtype=torch.float64))
    op = gain_operator(g.to(dtype))
    ys = (5 * torch.randn(shape, generator=gen, dtype=torch.float64)).to(dtype)
    u = (5 * torch.randn(shape, generator=gen, dtype=torch.float64)).to(dtype)
    ws = Workspace(shape, dtype, "cpu", 3, iso, False)
    ws.p[..., 0, 1:11, 1:] = 1.5 * torch.randn(shape[:2] + (10, 9), generator=gen).to(dtype)
    ws.p[..., 1, 1:, 1:9] = 1.5 * torch.randn(shape[:2] + (11, 8), generator=gen).to(dtype)
    data = make_data_prox(op, ys, shape)
    assert data.fused_bounds(ws, u) is None  # no kernels: the eager path
    data.kernels = _splitting_numba
    primal, bound = data.fused_bounds(ws, u)
    cert = GeneralCertificate(op, ws, ys, shape)
    want_primal = cert.primal_residual(u)[0]
    want_bound = data.lower_bound(ws, torch.empty(shape, dtype=dtype))
    assert primal.shape == bound.shape == (2,)
    # float32: the eager bound takes div p in float32, the kernel in float64
    rtol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(primal, want_primal, rtol=rtol, atol=0)
    torch.testing.assert_close(bound, want_bound, rtol=rtol, atol=0)


def test_plain_dual_runs_where_it_may_decide():
    from bayes_restore.infer.tv.splitting import _plain_due

    # far from tol: only when the iterations have grown eightfold since it last ran
    assert not _plain_due(70, 10, True, [0.5], 1e-4, final=False)
    assert _plain_due(80, 10, False, [0.5], 1e-4, final=False)
    # within reach of tol: at every check while it was the tighter bound, else not
    assert _plain_due(200, 180, True, [1e-3], 1e-4, final=False)
    assert not _plain_due(200, 180, False, [1e-3], 1e-4, final=False)
    assert _plain_due(200, 180, False, [1e-3], 1e-4, final=True)  # the last iteration


def test_gap_checks_are_spaced_by_their_cost():
    from bayes_restore.infer.tv.splitting import _next_interval

    far = [(900, 1e-2), (1000, 9e-3)]  # far from tol = 1e-4: the eighth rule
    assert _next_interval(far, 1e-4, 10) == 1000 // 8
    # a check worth 40 iterations: at least 40 / 0.25 = 160 iterations apart ...
    assert _next_interval(far, 1e-4, 10, cost=40.0) == 160
    # ... but never more than half the iterations done (bounded overshoot)
    assert _next_interval([(90, 1e-2), (100, 9e-3)], 1e-4, 10, cost=40.0) == 50
    near = [(900, 1.2e-4), (1000, 1.05e-4)]  # the crossing is predicted close
    assert _next_interval(near, 1e-4, 10) < 1000 // 8


@pytest.mark.parametrize("iso", [True, False], ids=["iso", "aniso"])
def test_dual_polish_stays_feasible_and_approaches_div_p_equal_g(iso):
    from bayes_restore.infer.tv._workspace import Workspace

    h, w = 12, 10
    ws = Workspace((2, h, w), torch.float64, "cpu", 2, iso, False)
    gen = torch.Generator().manual_seed(8)

    def feasible_field():
        f = torch.zeros_like(ws.p)
        f[..., 0, 1:h, 1:] = torch.rand(2, h - 1, w, generator=gen, dtype=torch.float64) - 0.5
        f[..., 1, 1:, 1:w] = torch.rand(2, h, w - 1, generator=gen, dtype=torch.float64) - 0.5
        return f  # |f| <= 1 / sqrt(2) < 1: strictly feasible, Neumann zeros in place

    g = torch.empty(2, h, w, dtype=torch.float64)
    ws.div_into(feasible_field(), g)  # g = div of a feasible field: reachable exactly
    p = feasible_field()
    residual = torch.empty_like(g)
    ws.div_into(p, residual)
    before = float((residual - g).norm())
    _splitting_numba.polish_dual(p.numpy(), g.numpy(), 300, 0.125, 1.0, iso)
    ws.div_into(p, residual)
    after = float((residual - g).norm())
    assert after < 0.05 * before
    norm = (p[:, 0].square() + p[:, 1].square()).sqrt() if iso else p.abs().amax(1)
    assert float(norm.max()) <= 1.0 + 1e-12
    # the padding and the Neumann zeros stay zero
    assert float(p[:, :, 0].abs().max()) == 0.0 and float(p[:, :, :, 0].abs().max()) == 0.0
    assert float(p[:, 0, h].abs().max()) == 0.0 and float(p[:, 1, :, w].abs().max()) == 0.0
