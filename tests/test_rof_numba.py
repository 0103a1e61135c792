"""The fused CPU kernels of the ROF solver run the same iteration as the eager torch path."""

import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bayes_restore.infer import tv_denoise_pdhg, tv_energy

pytest.importorskip("numba")
from bayes_restore.infer.tv import _rof_numba  # noqa: E402


def _noisy(shape, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    clean = torch.zeros(shape, dtype=torch.float64)
    h, w = shape[-2:]
    clean[..., h // 4 : 3 * h // 4, w // 3 :] = 1.0
    clean[..., : h // 2, : w // 5] = 0.5
    return (clean + 0.1 * torch.randn(shape, generator=g, dtype=torch.float64)).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("iso", [True, False])
@pytest.mark.parametrize("shape,event_dim", [((40, 37), 2), ((2, 3, 24, 29), 3),
                                             ((3, 1, 17, 16), 2)])
def test_numba_and_torch_backends_run_the_same_iteration(dtype, iso, shape, event_dim):
    y = _noisy(shape, dtype)
    batch = shape[: len(shape) - event_dim]
    gen = torch.Generator().manual_seed(1)
    w = 0.1
    if batch:
        w = 0.05 + 0.1 * torch.rand(batch + (1,) * event_dim, generator=gen, dtype=dtype)
    xt, it = tv_denoise_pdhg(y, 2 * w, isotropic=iso, event_dim=event_dim, tol=1e-5,
                             backend="torch")
    xn, inn = tv_denoise_pdhg(y, 2 * w, isotropic=iso, event_dim=event_dim, tol=1e-5,
                              backend="numba")
    assert (it.backend, inn.backend) == ("torch", "numba")
    assert xn.dtype == dtype and xn.shape == y.shape
    # the same iterates up to rounding: same checks, same iterations, same gaps
    assert inn.iterations == it.iterations
    assert inn.converged and inn.gap <= 1e-5
    # (the torch path sums float32 rows in float32, the kernels in float64: in float32
    # the gaps differ by ~1e-7, a few float32 epsilons of the objective)
    gap_atol = 1e-6 if dtype == torch.float32 else 1e-12
    assert np.allclose(inn.history, it.history, rtol=0, atol=gap_atol)
    atol = 1e-5 if dtype == torch.float32 else 1e-12
    assert (xn - xt).abs().max() <= atol
    # the certificate the kernels compute is the objective tv_energy measures
    x64, w64 = xn.double(), torch.as_tensor(w, dtype=torch.float64)
    dims = tuple(range(-event_dim, 0))
    energy = (0.5 * (x64 - y.double()).square().sum(dims)
              + w64.reshape(batch) * tv_energy(x64, isotropic=iso, event_dim=event_dim)).sum()
    rel = 1e-5 if dtype == torch.float32 else 1e-10
    assert inn.objective == pytest.approx(2 * float(energy), rel=rel)  # |x - y|^2 + 2 w TV


@pytest.mark.parametrize("shape,kind", [((300, 37), "strips"), ((3, 61, 45), "images")])
def test_parallel_plans_give_the_serial_result(monkeypatch, shape, kind):
    # strips: one image cut in horizontal strips iterated in their own buffers with a
    # halo; images: whole images per thread. Either way, the same arithmetic per pixel.
    y = _noisy(shape, torch.float64)
    x1, info1 = tv_denoise_pdhg(y, 2 * 0.1, tol=1e-6, backend="numba")
    monkeypatch.setattr(_rof_numba, "PARALLEL_MIN_PIXELS", 0)
    real = torch.get_num_threads()
    try:
        for threads in (2, 3):
            monkeypatch.setattr(torch, "get_num_threads", lambda t=threads: t)
            flat = y.reshape(-1, *shape[-2:]).numpy()
            plan = _rof_numba.Plan(flat, threads, 16)
            assert plan.kind == kind
            assert len(plan.parts) == (threads if kind == "strips" else min(threads, 3))
            x2, info2 = tv_denoise_pdhg(y, 2 * 0.1, tol=1e-6, backend="numba")
            assert info2.iterations == info1.iterations
            assert torch.equal(x2, x1)
    finally:  # the solver restores the count it read: the patched one
        torch.set_num_threads(real)


def _objectives_torch(u, y, p, iso):
    """``[P(u), D(p)]`` per image from the package's own TV and the padded layout's div."""
    u, y, p = (torch.from_numpy(np.asarray(a, dtype=np.float64)) for a in (u, y, p))
    primal = 0.5 * (u - y).square().sum((-2, -1)) + tv_energy(u, isotropic=iso)
    e = p[:, 0, 1:, 1:] - p[:, 0, :-1, 1:] + p[:, 1, 1:, 1:] - p[:, 1, 1:, :-1]
    dual = -(e * (y + 0.5 * e)).sum((-2, -1))
    return torch.stack([primal, dual], -1).numpy()


def _make_parallel_plan(y, threads):
    old = _rof_numba.PARALLEL_MIN_PIXELS
    _rof_numba.PARALLEL_MIN_PIXELS = 0
    try:
        return _rof_numba.Plan(y, threads, 16)
    finally:
        _rof_numba.PARALLEL_MIN_PIXELS = old


def test_many_iterations_per_pass_are_plain_iterations():
    # sweep_many with m steps == m calls with one step each, bit for bit
    rng = np.random.default_rng(0)
    y = rng.standard_normal((2, 23, 19))
    steps = rng.uniform(0.05, 0.9, (3, 8))
    state = [y.copy(), y.copy(), np.zeros((2, 2, 24, 20))]
    ref = [t.copy() for t in state]
    plan = _rof_numba.Plan(y, 1, 16)
    _rof_numba.iterate(plan, *state[:2], y, state[2], *steps, True)
    for j in range(8):
        _rof_numba.iterate(plan, *ref[:2], y, ref[2], *steps[:, j : j + 1], True)
    for a, b in zip(state, ref, strict=True):
        assert np.array_equal(a, b)
    assert np.abs(state[2]).max() > 0  # the dual field moved
    # the objectives gathered on the way are those of the final state
    for threads, shape in ((1, (2, 23, 19)), (2, (3, 23, 19)), (2, (1, 200, 19))):
        y = rng.standard_normal(shape)
        u, ubar, p = y.copy(), y.copy(), np.zeros(shape[:1] + (2, shape[1] + 1, shape[2] + 1))
        plan = _rof_numba.Plan(y, threads, 16)
        plan_kind = {(1, 2): "serial", (2, 3): "images", (2, 1): "strips"}[threads, shape[0]]
        if threads == 2:
            plan = _make_parallel_plan(y, threads)
        assert plan.kind == plan_kind
        for iso in (True, False):
            sums = _rof_numba.iterate(plan, u, ubar, y, p, *steps, iso, certify=True)
            _rof_numba.finish(plan, u, ubar, p)  # strips: the state back in the image
            np.testing.assert_allclose(sums, _objectives_torch(u, y, p, iso), rtol=1e-12)
    with pytest.raises(ValueError, match="at most 15"):
        _rof_numba.iterate(plan, *state[:2], y, state[2], *np.ones((3, 17)), True)


def test_plans_stay_serial_for_small_images():
    assert _rof_numba.Plan(np.zeros((1, 512, 512), np.float32), 8, 16).kind == "serial"
    assert _rof_numba.Plan(np.zeros((1, 1024, 1024), np.float32), 1, 16).kind == "serial"
    assert _rof_numba.Plan(np.zeros((1, 1024, 1024), np.float32), 2, 16).kind == "strips"
    assert _rof_numba.Plan(np.zeros((4, 512, 512), np.float32), 2, 16).kind == "images"
    assert _rof_numba.Plan(np.zeros((1, 2048, 2048), np.float32), 2, 16).kind == "strips"


@settings(max_examples=25, deadline=None)
@given(h=st.integers(1, 9), w=st.integers(1, 9), iso=st.booleans(), seed=st.integers(0, 2**16))
def test_backends_agree_on_any_small_shape(h, w, iso, seed):
    y = torch.randn((h, w), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    xt, it = tv_denoise_pdhg(y, 2 * 0.3, isotropic=iso, tol=1e-6, backend="torch")
    xn, inn = tv_denoise_pdhg(y, 2 * 0.3, isotropic=iso, tol=1e-6, backend="numba")
    assert inn.iterations == it.iterations
    assert torch.allclose(xn, xt, rtol=0, atol=1e-12)


def test_auto_takes_numba_on_cpu_and_noncontiguous_input_works():
    y = _noisy((30, 20), torch.float32).t()  # a transposed view
    x, info = tv_denoise_pdhg(y, 2 * 0.1)
    assert info.backend == "numba"
    xr, _ = tv_denoise_pdhg(y.contiguous(), 2 * 0.1, backend="torch")
    assert (x - xr).abs().max() <= 1e-5


def test_half_precision_runs_on_torch():
    y = _noisy((24, 24), torch.float64)
    for dtype in (torch.float16, torch.bfloat16):
        x, info = tv_denoise_pdhg(y.to(dtype), 2 * 0.1, tol=1e-2)
        assert info.backend == "torch" and x.dtype == dtype
        with pytest.raises(ValueError, match="float32/float64"):
            tv_denoise_pdhg(y.to(dtype), 2 * 0.1, backend="numba")


def test_a_numba_that_fails_to_load_falls_back(monkeypatch):
    # e.g. numba's "cannot cache function: no locator available" on a read-only install
    import builtins

    import bayes_restore.infer.tv

    real_import = builtins.__import__

    def failing(name, globals=None, locals=None, fromlist=(), level=0):
        if fromlist and "_rof_numba" in fromlist:
            raise RuntimeError("cannot cache function: no locator available")
        return real_import(name, globals, locals, fromlist, level)

    monkeypatch.delattr(bayes_restore.infer.tv, "_rof_numba")
    monkeypatch.setattr(builtins, "__import__", failing)
    y = _noisy((16, 16), torch.float64)
    _, info = tv_denoise_pdhg(y, 2 * 0.1)
    assert info.backend == "torch"
    with pytest.raises(ImportError, match="no locator"):
        tv_denoise_pdhg(y, 2 * 0.1, backend="numba")


def test_auto_does_not_run_the_kernels_as_python(monkeypatch):
    # NUMBA_DISABLE_JIT=1 (a debugging switch) would make the kernels pure Python loops
    monkeypatch.setattr(_rof_numba, "jit_disabled", lambda: True)
    _, info = tv_denoise_pdhg(_noisy((16, 16), torch.float64), 2 * 0.1)
    assert info.backend == "torch"


def test_vectorial_tv_stays_on_torch_and_backend_errors():
    y = _noisy((3, 16, 16), torch.float64)
    _, info = tv_denoise_pdhg(y, 2 * 0.1, vectorial=True, event_dim=3)
    assert info.backend == "torch"
    with pytest.raises(ValueError, match="backend='numba'"):
        tv_denoise_pdhg(y, 2 * 0.1, vectorial=True, event_dim=3, backend="numba")
    with pytest.raises(ValueError, match="backend must be one of"):
        tv_denoise_pdhg(y, 2 * 0.1, backend="cuda")


def test_without_numba_auto_falls_back_and_numba_says_why(monkeypatch):
    import bayes_restore.infer.tv

    monkeypatch.setitem(sys.modules, "bayes_restore.infer.tv._rof_numba", None)
    monkeypatch.delattr(bayes_restore.infer.tv, "_rof_numba")
    y = _noisy((16, 16), torch.float64)
    x, info = tv_denoise_pdhg(y, 2 * 0.1)
    assert info.backend == "torch" and info.converged
    with pytest.raises(ImportError, match="needs numba"):
        tv_denoise_pdhg(y, 2 * 0.1, backend="numba")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_input_runs_on_torch():
    y = _noisy((32, 32), torch.float32).cuda()
    x, info = tv_denoise_pdhg(y, 2 * 0.1)
    assert info.backend == "torch" and x.device == y.device


@pytest.mark.parametrize("backend", ["torch", "numba"])
def test_both_backends_check_tau0(backend):
    with pytest.raises(ValueError, match="tau0 must be > 0"):
        tv_denoise_pdhg(_noisy((8, 8), torch.float64), 2 * 0.1, tau0=0.0, backend=backend)
