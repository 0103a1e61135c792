"""The fused numba kernels of the TV Langevin stage run the eager torch arithmetic."""

import dataclasses
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy import stats

from bayes_restore.infer import prox, tv_denoise_pdhg
from bayes_restore.infer.langevin import (
    SmoothedPotential,
    diagonal_metric,
    skrock_coefficients,
    skrock_step,
)
from bayes_restore.infer.problem import RestorationProblem
from bayes_restore.infer.prox import tv_prox_dual
from bayes_restore.operators import Blur, Downsample, Mask, as_operator, gaussian_psf

pytest.importorskip("numba")
from bayes_restore.infer import _langevin_numba  # noqa: E402

TOL = {torch.float32: 2e-5, torch.float64: 1e-12}


def _potentials(y, *, iso=True, sigma=0.1, scale=0.1, smoothing=0.01, operator=None,
                event_dim=2, prox_iter=5):
    """The same potential on both backends (sigma, scale: numbers or per-image tensors)."""
    batch = y.shape[: y.dim() - event_dim]
    sigma = torch.as_tensor(sigma, dtype=y.dtype)
    sigma = torch.broadcast_to(sigma.reshape(sigma.shape + (1,) * event_dim),
                               batch + (1,) * event_dim)
    scale = torch.full_like(sigma, scale)
    pr = RestorationProblem(y, SimpleNamespace(isotropic=iso, gradient_order=1.0),
                            as_operator(operator), sigma, scale, event_dim)
    norm = 1.0 if operator is None else float(operator.norm_bound)
    lam = smoothing * sigma.square() / norm**2
    return tuple(SmoothedPotential(pr, lam, prox_iter, backend=b) for b in ("torch", "numba"))


def _image(shape, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    clean = torch.zeros(shape, dtype=torch.float64)
    h, w = shape[-2:]
    clean[..., h // 4 : 3 * h // 4, w // 3 :] = 1.0
    return (clean + 0.1 * torch.randn(shape, generator=g, dtype=torch.float64)).to(dtype)


def _rel(a, b):
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("iso", [True, False])
def test_fused_gradient_is_the_eager_one_over_warm_calls(dtype, iso):
    # two images of different noise, three chains each, an odd shape; the dual is warm
    y = _image((2, 13, 10), dtype)
    pt, pn = _potentials(y, iso=iso, sigma=torch.tensor([0.1, 0.2]))
    x = y + 0.05 * _image((3, 2, 13, 10), dtype, seed=1)
    warm = tv_prox_dual(x, pt.prox_weight, isotropic=iso, num_iter=7)
    kept = warm.clone()
    pt.dual = pn.dual = warm
    for _ in range(3):
        gt, gn = pt.grad(x), pn.grad(x)
        assert _rel(gn, gt) < TOL[dtype]
        assert float((pn.dual - pt.dual).abs().max()) < 50 * TOL[dtype]
        x = x - 2e-4 * gt
    assert pn.evaluations == pt.evaluations == 3
    assert torch.equal(warm, kept)  # the fused path updates its own copy of a given dual


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_skrock_step_is_the_eager_recursion(dtype):
    # colour images (event_dim 3), two chains, per-chain theta (the Gibbs move's set_theta)
    y = _image((3, 12, 9), dtype)
    pt, pn = _potentials(y, event_dim=3)
    theta = torch.tensor([8.0, 12.0], dtype=dtype)
    pt.set_theta(theta)
    pn.set_theta(theta)
    coef = skrock_coefficients(5)
    delta = torch.tensor(0.25 * 0.01, dtype=dtype)  # the default 0.25 / L_f
    gen = torch.Generator().manual_seed(3)
    x = y.expand(2, 3, 12, 9).clone()
    x_t = x_n = x
    for _ in range(4):
        q = torch.sqrt(2 * delta) * torch.randn(x.shape, generator=gen, dtype=dtype)
        x_in, q_copy, x_copy = x_n, q.clone(), x_n.clone()
        x_t = skrock_step(x_t, pt.grad, delta, q, coef, 5)
        x_n = skrock_step(x_n, pn.grad, delta, q, coef, 5)
        assert torch.equal(q, q_copy) and torch.equal(x_in, x_copy)  # inputs untouched
    assert _rel(x_n - y, x_t - y) < 20 * TOL[dtype]
    assert pn.evaluations == pt.evaluations == 20


@pytest.mark.parametrize("operator", [Blur(gaussian_psf(5, 1.0)), Downsample(2)])
def test_fused_prior_term_with_an_operator(operator):
    x0 = _image((12, 14), torch.float64)
    y = operator(x0)
    pt, pn = _potentials(y, operator=operator)
    x = x0.expand(2, 12, 14) + 0.05 * _image((2, 12, 14), torch.float64, seed=4)
    coef = skrock_coefficients(4)
    q = 0.01 * _image((2, 12, 14), torch.float64, seed=5)
    delta = torch.tensor(1e-3, dtype=torch.float64)
    gt, gn = pt.grad(x), pn.grad(x)
    assert _rel(gn, gt) < 1e-12
    xt = skrock_step(x, pt.grad, delta, q, coef, 4)
    xn = skrock_step(x, pn.grad, delta, q, coef, 4)
    assert _rel(xn - x, xt - x) < 1e-11


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("operator", [
    Blur(gaussian_psf(5, 1.0)),
    Mask(torch.rand(12, 14, generator=torch.Generator().manual_seed(1)) < 0.5),
    Downsample(2),
])
def test_preconditioned_stages_are_the_eager_recursion(dtype, operator):
    # the metric run inside the stages (per pixel in the fused pass, per DCT frequency on the
    # chain's DCT coefficients, the block means' projection) against the eager recursion of
    # M grad U over three steps (the DCT coefficients carried between steps)
    x0 = _image((12, 14), dtype)
    pt, _ = _potentials(operator(x0), operator=operator)
    _, _, apply, noise = diagonal_metric(operator, x0)
    pm = SmoothedPotential(pt.problem, pt.lambda_my, 5, metric=apply)
    x = x0.expand(2, 12, 14) + 0.05 * _image((2, 12, 14), dtype, seed=4)
    assert _rel(pm.grad(x), apply(pt.grad(x))) < TOL[dtype]
    coef = skrock_coefficients(4)
    delta = torch.tensor(1e-3, dtype=dtype)
    gen = torch.Generator().manual_seed(3)
    x_t = x_m = x
    for _ in range(3):
        q = torch.sqrt(2 * delta) * noise(torch.randn(x.shape, generator=gen, dtype=dtype))
        x_t = skrock_step(x_t, lambda v: apply(pt.grad(v)), delta, q, coef, 4)
        x_m = skrock_step(x_m, pm.grad, delta, q, coef, 4)
    assert _rel(x_m - x, x_t - x) < 50 * TOL[dtype]
    assert pm.evaluations == 1 + 12
    # the noise: B B^T = M (on the basis images)
    basis = torch.eye(12 * 14, dtype=torch.float64).reshape(-1, 12, 14)
    b = noise(basis.to(dtype)).reshape(12 * 14, -1).to(torch.float64)
    m = apply(basis.to(dtype)).reshape(12 * 14, -1).to(torch.float64)
    assert _rel(b.T @ b, m) < 10 * TOL[dtype]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_masked_data_term_is_the_eager_one(dtype):
    # a pixel-diagonal operator (a mask): its data term (d^2 v - A^T y) / sigma^2 is made in
    # the fused pass from the weights d^2; the same numbers as the eager A^T A
    keep = torch.rand(12, 14, generator=torch.Generator().manual_seed(2)) < 0.5
    op = Mask(keep)
    x0 = _image((12, 14), dtype)
    y = op(x0)
    pt, pn = _potentials(y, operator=op)
    assert pn.weights is not None and torch.equal(pn.weights, keep.to(dtype))
    x = x0.expand(3, 12, 14) + 0.05 * _image((3, 12, 14), dtype, seed=4)
    q = 0.01 * _image((3, 12, 14), dtype, seed=5)
    delta = torch.tensor(1e-3, dtype=dtype)
    assert _rel(pn.grad(x), pt.grad(x)) < TOL[dtype]
    coef = skrock_coefficients(4)
    xt = skrock_step(x, pt.grad, delta, q, coef, 4)
    xn = skrock_step(x, pn.grad, delta, q, coef, 4)
    assert _rel(xn - x, xt - x) < 20 * TOL[dtype]


def test_many_fused_iterations_reach_the_rof_prox():
    # independent of the eager FGP: (x - prox(x)) / lambda with the prox from the PDHG solver
    y = _image((16, 16), torch.float64)
    _, pn = _potentials(y, prox_iter=400)
    x = y + 0.2 * _image((16, 16), torch.float64, seed=2)
    prior = pn.grad(x) - (x - y) / 0.01  # sigma = 0.1: the data term is (x - y) / sigma^2
    w = float(pn.prox_weight)
    prox, _ = tv_denoise_pdhg(x, 2 * w, tol=1e-8, backend="torch")
    lam = float(pn.lambda_my)
    assert float((x - lam * prior - prox).abs().max()) < 1e-4


def test_reruns_and_thread_counts_give_identical_chains():
    y = _image((20, 18), torch.float32)
    coef = skrock_coefficients(5)
    delta = torch.tensor(2.5e-3)
    before = torch.get_num_threads()
    runs = []
    try:
        for threads in (2, 2, 1):
            torch.set_num_threads(threads)
            _, pn = _potentials(y)
            gen = torch.Generator().manual_seed(7)
            x = y.expand(4, 20, 18).clone()
            for _ in range(5):
                q = torch.sqrt(2 * delta) * torch.randn(x.shape, generator=gen)
                x = skrock_step(x, pn.grad, delta, q, coef, 5)
            runs.append(x)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(runs[0], runs[1]) and torch.equal(runs[0], runs[2])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("masked", [False, True])
def test_whole_step_kernel_is_the_stage_by_stage_passes_with_its_own_noise(dtype, masked,
                                                                         monkeypatch):
    # one kernel call per step (each chain's noise, then its stages on one thread) against
    # a stage per call and the noise drawn first; a mask adds the weights and the metric
    op = Mask(torch.rand(11, 13, generator=torch.Generator().manual_seed(4)) < 0.5) if masked \
        else None
    x0 = _image((11, 13), dtype)
    y = x0 if op is None else op(x0)
    metric = diagonal_metric(op, x0)[2] if masked else None
    coef, delta = skrock_coefficients(5), torch.tensor(2.5e-3, dtype=dtype)
    scale = np.full(3, math.sqrt(5e-3), dtype=np.dtype(str(dtype)[6:]))

    def run(whole, threads):
        pn = dataclasses.replace(_potentials(y, operator=op)[1], metric=metric, threads=threads)
        x = x0.expand(3, 11, 13).clone()
        for counter in range(3):
            q = torch.empty_like(x)
            if whole:
                x = pn.skrock(x, delta, q, coef, 5, noise=(17, counter, scale))
            else:
                _langevin_numba.gaussian_noise(q.numpy(), 17, counter, scale, 1)
                x = pn.skrock(x, delta, q, coef, 5)
        return x, q, pn.evaluations

    x_w, q_w, ev = run(True, 2)
    with monkeypatch.context() as m:  # the stage-by-stage passes
        m.setattr(SmoothedPotential, "_whole_step", lambda *args: None)
        x_s, q_s, _ = run(False, 1)
    assert torch.equal(q_w, q_s) and ev == 15  # the same noise, drawn in the kernel
    # equal to rounding: fastmath may contract or vectorise the inlined stages otherwise
    assert _rel(x_w - x0, x_s - x0) < 20 * TOL[dtype]
    for threads in (1, 3):
        assert torch.equal(run(True, threads)[0], x_w)


def test_dispatch_numba_on_cpu_torch_otherwise(monkeypatch):
    calls = []
    real = _langevin_numba.run_stage
    monkeypatch.setattr(_langevin_numba, "run_stage",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    y = _image((8, 8), torch.float64)
    pt, pn = _potentials(y)
    auto = SmoothedPotential(pn.problem, pn.lambda_my, 5)
    x = y.expand(2, 8, 8).clone()
    g_auto = auto.grad(x)
    assert len(calls) == 1 and _rel(g_auto, pt.grad(x)) < 1e-12
    # a wrapped gradient (e.g. preconditioned) takes the eager recursion, each grad fused
    coef = skrock_coefficients(3)
    skrock_step(x, lambda v: auto.grad(v), torch.tensor(1e-3, dtype=torch.float64), 0 * x,
                coef, 3)
    assert len(calls) == 4
    # an image one pixel high: auto takes torch, numba refuses with a clear message
    flat = _image((1, 9), torch.float64)
    ft, fn = _potentials(flat)
    f_auto = SmoothedPotential(fn.problem, fn.lambda_my, 5)
    assert _rel(f_auto.grad(flat), ft.grad(flat)) < 1e-12 and len(calls) == 4
    with pytest.raises(ValueError, match="backend='numba'"):
        fn.grad(flat)
    with pytest.raises(ValueError, match="backend"):
        SmoothedPotential(pn.problem, pn.lambda_my, 5, backend="cuda")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("iso", [True, False])
def test_fused_prox_dual_is_the_eager_fgp(dtype, iso):

    v = _image((3, 2, 11, 7), dtype)
    w = torch.tensor([0.05, 0.2], dtype=dtype).reshape(2, 1, 1)
    warm = prox.tv_prox_dual(v, w, isotropic=iso, num_iter=3)
    kept = warm.clone()
    fused = [prox.tv_prox_dual(v, w, isotropic=iso, dual=warm, num_iter=k) for k in (1, 40)]
    eager = [prox.tv_prox_dual(v, w, isotropic=iso, dual=warm, num_iter=k, backend="torch")
             for k in (1, 40)]
    assert torch.equal(warm, kept)
    for f, e in zip(fused, eager, strict=True):
        assert float((f - e).abs().max()) < 100 * TOL[dtype]


# --- the counter-based Gaussian noise ------------------------------------------------------


def _draws(shape, key, counter, threads, dtype=np.float64, scale=None):
    out = np.empty(shape, dtype)
    images = shape[0] if len(shape) > 1 else 1
    scale = np.ones(images, dtype) if scale is None else scale
    _langevin_numba.gaussian_noise(out, key, counter, scale, threads)
    return out


def test_noise_is_standard_normal_by_ks_and_chi_square():
    z = _draws((4, (1 << 18) + 1), key=11, counter=5, threads=2).ravel()
    n = z.size
    assert abs(z.mean()) < 5 / math.sqrt(n) and abs(z.var() - 1) < 5 * math.sqrt(2 / n)
    assert stats.kstest(z, "norm").pvalue > 1e-3
    # chi-square on 64 equiprobable bins (the tails included: |z| > 3.44 is the
    # ziggurat's tail path, 0.06 % of the draws)
    edges = stats.norm.ppf(np.linspace(0, 1, 65))
    counts = np.histogram(z, edges)[0]
    assert stats.chisquare(counts).pvalue > 1e-3
    tail = np.mean(np.abs(z) > 3.6)
    assert abs(tail / (2 * stats.norm.sf(3.6)) - 1) < 0.25


def test_noise_draws_are_uncorrelated_across_values_images_and_counters():
    a = _draws((2, 1 << 17), key=3, counter=0, threads=1)
    b = _draws((2, 1 << 17), key=3, counter=1, threads=1)
    c = _draws((2, 1 << 17), key=4, counter=0, threads=1)
    bound = 5 / math.sqrt(1 << 17)
    pairs = [(a[0, :-1], a[0, 1:]), (a[0], a[1]), (a[0], b[0]), (a[0], c[0]),
             (a[0, : 1 << 16], a[0, 1 << 16 :]),  # the two halves of the same words
             (a[0] ** 2, b[0] ** 2)]
    assert max(abs(np.corrcoef(u, v)[0, 1]) for u, v in pairs) < bound


def test_noise_is_the_same_whatever_the_threads_and_rounds_to_float32():
    ref = _draws((3, 5, 8193), key=9, counter=2, threads=1)
    for threads in (2, 3):
        assert np.array_equal(_draws((3, 5, 8193), key=9, counter=2, threads=threads), ref)
    assert np.array_equal(_draws((3, 5, 8193), key=9, counter=2, threads=2,
                                 dtype=np.float32), ref.astype(np.float32))
    scaled = _draws((3, 5, 8193), key=9, counter=2, threads=2,
                    scale=np.array([1.0, 2.0, 0.5]))
    assert np.array_equal(scaled, ref * np.array([1.0, 2.0, 0.5])[:, None, None])
    assert not np.array_equal(_draws((3, 5, 8193), key=9, counter=3, threads=1), ref)
    with pytest.raises(ValueError, match="one per image"):
        _langevin_numba.gaussian_noise(np.empty((3, 4)), 1, 0, np.ones(5), 1)
    with pytest.raises(ValueError, match="C-contiguous"):
        _langevin_numba.gaussian_noise(np.empty((4, 3)).T, 1, 0, np.ones(3), 1)


def test_noise_key_comes_from_the_generator():
    key = _langevin_numba.noise_key
    assert key(torch.Generator().manual_seed(1)) == key(torch.Generator().manual_seed(1))
    assert key(torch.Generator().manual_seed(1)) != key(torch.Generator().manual_seed(2))
    assert 0 <= key(torch.Generator().manual_seed(3)) < 2**64


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_block_whole_step_is_the_eager_recursion_on_colour_images(dtype):
    # box decimation's whole step in one kernel call (per stage the prior's term, then the
    # block means' data term and the metric) against the eager recursion of M grad U; colour
    # images (event_dim 3), two chains, three steps; 1 and 3 threads give the same chains
    op = Downsample(2)
    x0 = _image((3, 12, 14), dtype)
    pt, _ = _potentials(op(x0), operator=op, event_dim=3)
    _, _, apply, noise = diagonal_metric(op, x0)
    coef, delta = skrock_coefficients(4), torch.tensor(1e-3, dtype=dtype)
    x = x0.expand(2, 3, 12, 14) + 0.05 * _image((2, 3, 12, 14), dtype, seed=4)
    gen = torch.Generator().manual_seed(3)
    qs = [torch.sqrt(2 * delta) * noise(torch.randn(x.shape, generator=gen, dtype=dtype))
          for _ in range(3)]

    def run(threads):
        pm = SmoothedPotential(pt.problem, pt.lambda_my, 5, metric=apply, threads=threads)
        out = x
        for q in qs:
            out = pm.skrock(out, delta, q, coef, 4)
        return out, pm.evaluations

    x_t = x
    for q in qs:
        x_t = skrock_step(x_t, lambda v: apply(pt.grad(v)), delta, q, coef, 4)
    x_k, evaluations = run(1)
    assert evaluations == 12
    assert _rel(x_k - x, x_t - x) < 50 * TOL[dtype]
    assert torch.equal(run(3)[0], x_k)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(3, 12, 14), (17, 10)])
def test_spectral_step_takes_white_noise_as_dct_coefficients(dtype, shape):
    # the DCT metric's step given the white draw q (white=True) makes the noise B q itself
    # (its DCT coefficients m^1/2 q): the same step as the recursion given B q, on colour
    # images with two chains (the numba DCT) and on a side of odd factor 17 (scipy's DCTs);
    # the chains' coefficients carried between steps
    op = Blur(gaussian_psf(5, 1.0))
    x0 = _image(shape, dtype)
    pt, _ = _potentials(op(x0), operator=op, event_dim=len(shape))
    _, _, apply, noise = diagonal_metric(op, x0)
    pm = SmoothedPotential(pt.problem, pt.lambda_my, 5, metric=apply)
    coef, delta = skrock_coefficients(5), torch.tensor(1e-3, dtype=dtype)
    x = x0.expand((2,) + shape) + 0.05 * _image((2,) + shape, dtype, seed=4)
    gen = torch.Generator().manual_seed(3)
    x_t = x_w = x
    for _ in range(3):
        qw = torch.sqrt(2 * delta) * torch.randn(x.shape, generator=gen, dtype=dtype)
        copy = qw.clone()
        x_w = pm.skrock(x_w, delta, qw, coef, 5, white=True)
        assert torch.equal(qw, copy)  # the draw is not modified
        x_t = skrock_step(x_t, lambda v: apply(pt.grad(v)), delta, noise(qw), coef, 5)
    assert pm.evaluations == 15
    # the whole-step kernel ran (the numba DCT) unless a side's odd factor is above 16
    assert (pm._spectral_y_state is not None) == (shape[-2] != 17)
    assert _rel(x_w - x, x_t - x) < 50 * TOL[dtype]
    # the same chain on 1 and 3 threads (whole chains per thread)
    runs = []
    for threads in (1, 3):
        p3 = SmoothedPotential(pt.problem, pt.lambda_my, 5, metric=apply, threads=threads)
        runs.append(p3.skrock(x, delta, qw, coef, 5, white=True))
    assert torch.equal(runs[0], runs[1])
    # elsewhere white noise is not taken: the caller makes B q
    pn = SmoothedPotential(pt.problem, pt.lambda_my, 5)
    assert pn.skrock(x, delta, qw, coef, 5, white=True) is None


def test_whole_step_kernel_entries_check_shapes():
    # the kernels run without bounds checks: a wrong shape is refused before the call
    n, h, w = 2, 8, 8
    a = np.zeros((n, h, w))
    one = np.ones(n)
    nu = kappa = np.zeros(3)
    args = dict(x=a, q=a, out_a=a.copy(), out_b=a.copy(), gp=a.copy(), aty=np.zeros((1, h, w)),
                p=np.zeros((n, 2, h, w)), nu=nu, kappa=kappa, eps=np.zeros((3, n)), wt=one,
                st=one, inv_var=one, inv_scale=one, mom=np.zeros(2), iso=True, factor=2,
                scale=4.0, threads=1)
    _langevin_numba.run_block_skrock(**args)  # the right shapes run
    for key, bad in (("eps", np.zeros((3, 1))), ("p", np.zeros((1, 2, h, w))),
                     ("inv_var", np.ones(1)), ("aty", np.zeros((1, h, w + 1))),
                     ("gp", np.zeros((n, h, w - 1)))):
        with pytest.raises(ValueError, match="shape"):
            _langevin_numba.run_block_skrock(**{**args, key: bad})
    tab = _langevin_numba.dct_tables(h, np.float64)
    consts = tuple(np.zeros((1, w, h)) for _ in range(5))
    spec = dict(x=a, xy=np.zeros((n, w, h)), qw=a, out=a.copy(), out_y=np.zeros((n, w, h)),
                p=np.zeros((n, 2, h, w)), consts=consts, nu=nu, kappa=kappa,
                eps=np.zeros((3, n)), wt=one, st=one, inv_scale=one, mom=np.zeros(2), iso=True,
                white=True, cached=True, h_tab=tab, w_tab=tab, threads=1)
    _langevin_numba.run_spectral_skrock(**spec)
    for key, bad in (("xy", np.zeros((n, h, w + 1))), ("consts", consts[:4] + (a,)),
                     ("wt", np.ones(3)), ("qw", np.zeros((n, h + 1, w)))):
        with pytest.raises(ValueError, match="shape"):
            _langevin_numba.run_spectral_skrock(**{**spec, key: bad})


@pytest.mark.parametrize("shape", [(12, 14), (128, 64), (7, 5), (1, 4), (20, 36)])
def test_fast_dct_is_the_orthonormal_dct(shape):
    # the numba DCT-II (butterflies, odd blocks, post-additions; y-layout) against scipy's
    # orthonormal dctn, and its inverse back to the image
    from scipy.fft import dctn

    h, w = shape
    rng = np.random.default_rng(0)
    for dtype, tol in ((np.float64, 1e-13), (np.float32, 2e-6)):
        th, tw = _langevin_numba.dct_tables(h, dtype), _langevin_numba.dct_tables(w, dtype)
        img = rng.random((2, h, w)).astype(dtype)
        dd = th[4][:, None] * tw[4][None, :]
        ref = _langevin_numba.y_layout(dctn(img.astype(np.float64), norm="ortho",
                                            axes=(-2, -1)) / dd, th, tw)
        y = _langevin_numba.dct_y(img, th, tw)
        assert np.abs(y - ref).max() <= tol * np.abs(ref).max()
        d2 = _langevin_numba.y_layout(dd * dd, th, tw).astype(dtype)
        assert np.abs(_langevin_numba.idct_y(y, d2, th, tw) - img).max() <= 10 * tol
