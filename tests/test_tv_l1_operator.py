"""TV-L1 with a linear operator (``tv_l1_pdhg(..., operator=A)``): exact LP optimum, an honest
certificate, dtypes, batches, colour, the generic operator, bad input and map_estimate."""

from __future__ import annotations

import warnings

import numpy as np
import pyro
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog
from scipy.sparse import csr_matrix, eye, hstack, kron, vstack

from bayes_restore.exceptions import ConvergenceWarning
from bayes_restore.infer import map_estimate, tv_energy, tv_l1_pdhg
from bayes_restore.infer.tv._workspace import Workspace
from bayes_restore.infer.tv.l1_operator import L1Certificate
from bayes_restore.operators import Blur, Downsample, LinearOperator, Mask, gaussian_psf
from bayes_restore.priors import TotalVariation

F64 = torch.float64


class Plain(LinearOperator):
    """An operator that gives only ``forward`` and ``adjoint`` (no declared structure)."""

    def __init__(self, op):
        self.op, self.norm_bound = op, op.norm_bound

    def forward(self, x):
        return self.op.forward(x)

    def adjoint(self, y):
        return self.op.adjoint(y)

    def output_shape(self, shape):
        return self.op.output_shape(shape)

    def input_shape(self, shape):
        return self.op.input_shape(shape)


def _operators(n):
    mask = Mask(torch.from_numpy(np.random.default_rng(5).random((n, n)) < 0.6))
    return {
        "mask": mask,
        "x2": Downsample(2),
        "blur_periodic": Blur(gaussian_psf(3, 0.8), boundary="periodic"),
        "blur_reflect": Blur(gaussian_psf(3, 0.8), boundary="reflect"),
        "plain_x2": Plain(Downsample(2)),
    }


def _observe(op, n, seed, fraction=0.15):
    """``A x + impulses`` for a random smooth-ish image ``x``."""
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(np.cumsum(rng.random((n, n)), 0) / n)
    y = op.forward(x)
    hit = torch.from_numpy(rng.random(tuple(y.shape)) < fraction)
    return torch.where(hit, torch.from_numpy(rng.random(tuple(y.shape))), y)


def _dense(op, n):
    cols = [op.forward(torch.eye(n * n, dtype=F64)[k].reshape(n, n)).reshape(-1)
            for k in range(n * n)]
    return torch.stack(cols, 1).numpy()


def _lp_optimum(op, y, lam, n):
    """``min |A x - y|_1 + lam TV_aniso(x)`` exactly, by HiGHS."""
    a = csr_matrix(_dense(op, n))
    d1 = csr_matrix(np.diff(np.eye(n), axis=0))
    big_d = vstack([kron(d1, eye(n)), kron(eye(n), d1)]).tocsr()
    m, k, npx = a.shape[0], big_d.shape[0], n * n
    c = np.concatenate([np.zeros(npx), np.ones(m), lam * np.ones(k)])
    z_mk, z_km = csr_matrix((m, k)), csr_matrix((k, m))
    a_ub = vstack([hstack([a, -eye(m), z_mk]), hstack([-a, -eye(m), z_mk]),
                   hstack([big_d, z_km, -eye(k)]), hstack([-big_d, z_km, -eye(k)])]).tocsr()
    yv = y.reshape(-1).numpy()
    b_ub = np.concatenate([yv, -yv, np.zeros(2 * k)])
    lp = linprog(c, A_ub=a_ub, b_ub=b_ub, bounds=[(None, None)] * npx + [(0, None)] * (m + k),
                 method="highs")
    assert lp.status == 0
    return lp.fun


def _energy(x, y, lam, op, iso=True):
    return float((op.forward(x) - y).abs().sum() + lam * tv_energy(x, isotropic=iso))


@pytest.mark.parametrize("name", ["mask", "x2", "blur_periodic", "blur_reflect", "plain_x2"])
def test_matches_the_linear_program(name):
    """Anisotropic TV-L1 with an operator is an LP: the certified result is within its gap
    of HiGHS's optimum, and the certified lower bound never exceeds it."""
    n, lam = 6, 0.3
    op = _operators(n)[name]
    y = _observe(op, n, seed=1)
    best = _lp_optimum(op, y, lam, n)
    tol = 1e-4 if name == "plain_x2" else 1e-6
    x, info = tv_l1_pdhg(y, lam, operator=op, isotropic=False, tol=tol)
    expected = {"mask": "pdhg", "x2": "pdhg", "plain_x2": "pdhg"}.get(name, "admm")
    assert info.converged and info.solver == expected
    value = _energy(x, y, lam, op, iso=False)
    assert info.objective == pytest.approx(value, rel=1e-9)
    assert -1e-9 <= (value - best) / best <= info.gap <= tol
    assert value * (1 - info.gap) <= best * (1 + 1e-12)  # the bound is below the optimum


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), kind=st.sampled_from(["mask", "x2", "blur_reflect"]),
       lam=st.floats(0.05, 2.0))
def test_certificate_never_exceeds_the_optimum(seed, kind, lam):
    """Any candidate pair (random ``q`` and ``p``, not at all feasible) gives a lower bound
    of the LP optimum, and so does the box bound of a pixel-diagonal operator."""
    n = 5
    op = _operators(n)[kind]
    y = _observe(op, n, seed)
    best = _lp_optimum(op, y, lam, n)
    g = torch.Generator().manual_seed(seed)
    ws = Workspace((n, n), F64, "cpu", 2, False, False)
    ws.p.copy_(3 * torch.randn(ws.p.shape, generator=g, dtype=F64))
    ws.p[..., 0, 0, :] = 0
    ws.p[..., :, 0] = 0
    cert = L1Certificate(op, ws, y, torch.tensor(1.0 / lam, dtype=F64), (n, n))
    q = 2 * torch.randn(y.shape, generator=g, dtype=F64) / lam
    assert float(cert.dual(q)) * lam <= best * (1 + 1e-12) + 1e-12
    box = cert.box()
    if kind == "mask":
        assert float(box) * lam <= best * (1 + 1e-12) + 1e-12
    else:
        assert box is None


@pytest.mark.parametrize("name", ["mask", "x2", "blur_periodic"])
def test_float32_float64_batches_and_per_image_weights(name):
    """float32 agrees with float64; a batch with one weight per image is the images alone."""
    n = 8
    op = _operators(n)[name]
    ys = torch.stack([_observe(op, n, seed=s) for s in (2, 3)])
    lam = torch.tensor([0.2, 0.4], dtype=F64).reshape(2, 1, 1)
    xb, info = tv_l1_pdhg(ys, lam, operator=op, tol=1e-5)
    assert info.converged and xb.shape == (2, n, n) and xb.dtype == F64
    for k in range(2):
        xk, _ = tv_l1_pdhg(ys[k], float(lam[k]), operator=op, tol=1e-5)
        ek, eb = (_energy(x, ys[k], float(lam[k]), op) for x in (xk, xb[k]))
        assert abs(eb - ek) <= 2e-5 * ek
    x32, info32 = tv_l1_pdhg(ys[0].float(), 0.2, operator=op, tol=1e-4)
    assert x32.dtype == torch.float32 and info32.converged
    e32, e64 = _energy(x32.double(), ys[0], 0.2, op), _energy(xb[0], ys[0], 0.2, op)
    assert abs(e32 - e64) <= 2e-4 * e64


@pytest.mark.parametrize("vectorial", [False, True], ids=["channelwise", "vectorial"])
def test_colour_images(vectorial):
    """event_dim=3: each channel its own TV-L1 problem (or coupled by the vectorial TV), a
    mask shared by the channels; the result is certified and better than the channels'
    sum of the others' objectives would allow."""
    n = 10
    op = _operators(n)["mask"]
    y = torch.stack([_observe(op, n, seed=s) for s in (4, 5, 6)])
    x, info = tv_l1_pdhg(y, 0.5, operator=op, event_dim=3, vectorial=vectorial, tol=1e-5)
    assert info.converged and x.shape == (3, n, n)
    tv = tv_energy(x, isotropic=True, event_dim=3, vectorial=vectorial)
    value = float((op.forward(x) - y).abs().sum() + 0.5 * tv)
    assert info.objective == pytest.approx(value, rel=1e-9)
    if not vectorial:  # channels are independent problems
        parts = [tv_l1_pdhg(y[c], 0.5, operator=op, tol=1e-5)[1].objective for c in range(3)]
        assert abs(sum(parts) - value) <= 3e-5 * value


def test_generic_operator_agrees_with_the_structured_paths():
    """The same decimation without its declared structure runs the K = [grad; A] splitting
    and reaches the minimum of the structured (primal) splitting within the gaps; so does
    a declared blur forced onto the dual splitting against its ADMM."""
    n = 8
    op = Downsample(2)
    y = _observe(op, n, seed=7)
    x1, i1 = tv_l1_pdhg(y, 0.3, operator=op, tol=1e-5)
    x2, i2 = tv_l1_pdhg(y, 0.3, operator=Plain(op), tol=1e-4)
    assert (i1.solver, i2.solver) == ("pdhg", "pdhg") and i1.converged and i2.converged
    assert (i1.backend, i2.backend) == ("numba", "torch")
    e1, e2 = _energy(x1, y, 0.3, op), _energy(x2, y, 0.3, op)
    assert -1e-5 * e1 <= e2 - e1 <= 1e-4 * e2  # each within its certified gap
    blur = Blur(gaussian_psf(3, 0.8), boundary="reflect")
    yb = _observe(blur, 6, seed=9)
    x3, i3 = tv_l1_pdhg(yb, 0.5, operator=blur, tol=1e-5)
    x4, i4 = tv_l1_pdhg(yb, 0.5, operator=blur, tol=1e-3, splitting="dual")
    assert (i3.solver, i4.solver) == ("admm", "pdhg") and i4.converged
    e3, e4 = _energy(x3, yb, 0.5, blur), _energy(x4, yb, 0.5, blur)
    assert -1e-5 * e3 <= e4 - e3 <= 1e-3 * e4


def test_bad_input_names_the_argument():
    y = torch.rand(8, 8, dtype=F64)
    with pytest.raises(ValueError, match="operator"):
        tv_l1_pdhg(y, 0.5, operator="blur")
    with pytest.raises(ValueError, match="splitting"):
        tv_l1_pdhg(y, 0.5, operator=Downsample(2), splitting="fast")
    with pytest.raises(ValueError, match="splitting='primal'"):
        tv_l1_pdhg(y, 0.5, operator=Blur(gaussian_psf(3, 1.0)), splitting="primal")
    with pytest.raises(ValueError, match="splitting='admm'"):
        tv_l1_pdhg(y, 0.5, operator=Downsample(2), splitting="admm")
    with pytest.raises(ValueError, match="weight"):
        tv_l1_pdhg(y, -1.0, operator=Downsample(2))
    with pytest.raises(ValueError, match="backend"):
        tv_l1_pdhg(y, 0.5, operator=Downsample(2), backend="gpu")
    with pytest.raises(ValueError, match="tau"):
        tv_l1_pdhg(y, 0.5, operator=Downsample(2), tau=0.0)


def _laplace_model(y, *, prior, b_l, operator):
    from bayes_restore.likelihoods import LaplaceLikelihood

    x = pyro.sample("x", prior)
    pyro.sample("y", LaplaceLikelihood(x, b_l, operator), obs=y)


@pytest.mark.parametrize("name", ["mask", "x2", "blur_periodic"])
def test_map_estimate_takes_the_fast_path_with_an_operator(name):
    """A Laplace likelihood with an operator and a TV prior: map_estimate runs tv_l1_pdhg
    (lambda = b_l / b); the generic Pyro path ends no lower."""
    n = 8
    op = _operators(n)[name]
    y = _observe(op, n, seed=8)
    prior = TotalVariation(torch.tensor(0.5, dtype=F64), shape=(n, n))
    post = map_estimate(_laplace_model, y, prior=prior, b_l=0.15, operator=op, tol=1e-6)
    direct, info = tv_l1_pdhg(y, 0.3, operator=op, tol=1e-6)
    assert post.info.solver == info.solver and post.info.converged
    assert torch.allclose(post.map, direct)
    fast = _energy(post.map, y, 0.3, op)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        generic = map_estimate(_laplace_model, y, prior=prior, b_l=0.15, operator=op,
                               solver="generic", optimizer="adam", max_iter=1500)
    slow = _energy(generic.map, y, 0.3, op)
    assert fast <= slow * (1 + 1e-6)
    assert (slow - fast) / fast < 0.05
