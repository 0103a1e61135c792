"""Operators describe their structure; solvers ask them instead of testing their class.

Property tests of every operator against dense matrices (adjoint, normal, shapes, the
exact normal solve, the restriction to a window), and an operator written here, outside
the package, that only declares its structure and gets the fast path of the TV solver.
"""

import pytest
import torch
from helpers import PlainGain, gain_operator, random_dual_lower_bounds
from hypothesis import given, settings
from hypothesis import strategies as st

from bayes_restore.energy import energy
from bayes_restore.infer import tv_map_pdhg
from bayes_restore.operators import (
    BlockMean,
    Blur,
    Diagonal,
    Downsample,
    FourierDiagonal,
    Identity,
    LinearOperator,
    Mask,
    PixelDiagonal,
    gaussian_psf,
)

F64 = torch.float64
Plain = PlainGain  # the gain without a declared structure


KINDS = ["identity", "mask", "diagonal", "gain", "plain", "blur-periodic", "blur-valid",
         "down2-box", "down3-box", "down2-gauss"]
PIXEL = {"identity", "mask", "diagonal", "gain"}


def make(kind, obs_shape, seed):
    """The operator and its image shape, for an observation of ``obs_shape = (h, w)``."""
    g = torch.Generator().manual_seed(seed)
    h, w = obs_shape
    # gains of the full shape or broadcasting along rows or columns
    d_shape = [(h, w), (h, 1), (1, w), ()][seed % 4]
    if kind == "identity":
        op = Identity()
    elif kind == "mask":
        op = Mask(torch.rand((h, w), generator=g) < 0.6)
    elif kind == "diagonal":
        op = Diagonal(torch.randn(d_shape, generator=g, dtype=F64))
    elif kind == "gain":
        op = gain_operator(0.2 + torch.rand(d_shape, generator=g, dtype=F64))
    elif kind == "plain":
        op = Plain(0.2 + torch.rand((h, w), generator=g, dtype=F64))
    elif kind.startswith("blur"):
        kh, kw = 1 + seed % 4, 1 + (seed // 4) % 3  # even sizes too, not symmetric
        psf = torch.rand((kh, kw), generator=g, dtype=F64)
        op = Blur(psf / psf.sum(), boundary=kind.split("-")[1])
    else:
        f = int(kind[4])
        op = Downsample(f, kernel="box" if kind.endswith("box") else "gaussian")
    return op, op.input_shape(obs_shape)


def dense(op, image_shape):
    """The matrix of ``op`` on images of ``image_shape`` (float64), one column per pixel."""
    n = image_shape[0] * image_shape[1]
    columns = op.forward(torch.eye(n, dtype=F64).reshape((n,) + tuple(image_shape)))
    return columns.reshape(n, -1).T


cases = st.tuples(st.sampled_from(KINDS), st.integers(1, 6), st.integers(1, 6),
                  st.integers(0, 10_000))


@settings(max_examples=60, deadline=None)
@given(case=cases, batch=st.sampled_from([(), (2,), (2, 1)]))
def test_adjoint_normal_and_shapes(case, batch):
    kind, h, w, seed = case
    op, image = make(kind, (h, w), seed)
    assert op.output_shape(image) == (h, w)
    assert op.output_shape(batch + image) == batch + (h, w)
    assert op.input_shape(batch + (h, w)) == batch + image
    assert op.input_shape(op.output_shape(image)) == image
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(batch + image, generator=g, dtype=F64)
    y = torch.randn(batch + (h, w), generator=g, dtype=F64)
    ax, aty = op.forward(x), op.adjoint(y)
    assert ax.shape == y.shape and aty.shape == x.shape
    torch.testing.assert_close((ax * y).sum(), (x * aty).sum(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(op.normal(x), op.adjoint(op.forward(x)), rtol=1e-12,
                               atol=1e-12)
    assert op.is_identity == (kind == "identity")


@settings(max_examples=60, deadline=None)
@given(case=cases, rho=st.floats(1e-2, 10.0), batched=st.booleans())
def test_solve_normal_is_the_dense_solve(case, rho, batched):
    kind, h, w, seed = case
    op, image = make(kind, (h, w), seed)
    g = torch.Generator().manual_seed(seed + 2)
    v = torch.randn(((2,) if batched else ()) + image, generator=g, dtype=F64)
    expected_available = kind in PIXEL or kind in ("blur-periodic", "down2-box", "down3-box")
    assert op.can_solve_normal == expected_available
    assert (op.structure() is not None) == expected_available
    if not expected_available:
        with pytest.raises(NotImplementedError, match="structure"):
            op.solve_normal(v, rho)
        return
    a = dense(op, image)
    n = a.shape[1]
    system = a.T @ a + rho * torch.eye(n, dtype=F64)
    want = torch.linalg.solve(system, v.reshape(-1, n).T).T.reshape(v.shape)
    got = op.solve_normal(v, rho)
    assert got.shape == v.shape
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


@settings(max_examples=30, deadline=None)
@given(f=st.integers(2, 3), h=st.integers(2, 8), w=st.integers(2, 8),
       rho=st.floats(1e-2, 10.0), seed=st.integers(0, 1000))
def test_block_mean_solve_with_unobserved_rows_and_columns(f, h, w, rho, seed):
    """Beyond ``f * (H // f)`` nothing is observed: ``A^T A`` is zero there."""
    op = Downsample(f)
    if h < f or w < f:
        return
    v = torch.randn((h, w), generator=torch.Generator().manual_seed(seed), dtype=F64)
    a = dense(op, (h, w))
    want = torch.linalg.solve(a.T @ a + rho * torch.eye(h * w, dtype=F64), v.reshape(-1))
    torch.testing.assert_close(op.solve_normal(v, rho), want.reshape(h, w), rtol=1e-10,
                               atol=1e-10)


def test_solve_normal_takes_one_rho_per_image_and_checks_it():
    v = torch.rand(2, 4, 6, dtype=F64)
    rho = torch.tensor([0.5, 2.0], dtype=F64)
    for op in (Mask(torch.rand(4, 6) < 0.5), Blur(gaussian_psf(3, 1.0)), Downsample(2)):
        got = op.solve_normal(v, rho.reshape(2, 1, 1))
        for i in range(2):
            torch.testing.assert_close(got[i], op.solve_normal(v[i], float(rho[i])))
        with pytest.raises(ValueError, match="rho"):
            op.solve_normal(v, 0.0)


@settings(max_examples=60, deadline=None)
@given(case=cases, window=st.tuples(*[st.floats(0, 1)] * 4), batch=st.sampled_from([(), (3,)]))
def test_restrict_is_cropping(case, window, batch):
    kind, h, w, seed = case
    op, image = make(kind, (h, w), seed)
    assert op.tileable == (kind in PIXEL)
    r0, r1 = sorted(int(t * h) for t in window[:2])
    c0, c1 = sorted(int(t * w) for t in window[2:])
    rows, cols = slice(r0, max(r1, r0 + 1)), slice(c0, max(c1, c0 + 1))
    if not op.tileable:
        with pytest.raises(NotImplementedError, match="tileable"):
            op.restrict(rows, cols)
        return
    sub = op.restrict(rows, cols)
    assert isinstance(sub, LinearOperator) and sub.tileable
    x = torch.randn(batch + image, generator=torch.Generator().manual_seed(seed), dtype=F64)
    crop = x[..., rows, cols]
    torch.testing.assert_close(sub.forward(crop), op.forward(x)[..., rows, cols])
    torch.testing.assert_close(sub.adjoint(crop), op.adjoint(x)[..., rows, cols])
    if kind == "mask":
        assert isinstance(sub, Mask)
    with pytest.raises(TypeError, match="slices"):
        op.restrict((0, 1), cols)


@settings(max_examples=40, deadline=None)
@given(case=cases)
def test_declared_structures_describe_the_operator(case):
    """Each structure, applied by its own definition, is the operator's forward."""
    kind, h, w, seed = case
    op, image = make(kind, (h, w), seed)
    s = op.structure()
    x = torch.randn((2,) + image, generator=torch.Generator().manual_seed(seed), dtype=F64)
    if isinstance(s, PixelDiagonal):
        want = x * s.diagonal(x)
    elif isinstance(s, FourierDiagonal):
        want = torch.fft.irfft2(torch.fft.rfft2(x) * s.transfer(*image, x), s=image)
    elif isinstance(s, BlockMean):
        f = s.factor
        hh, ww = (image[0] // f) * f, (image[1] // f) * f
        want = x[..., :hh, :ww].reshape(2, hh // f, f, ww // f, f).mean((-3, -1))
    else:
        assert s is None and kind in ("plain", "blur-valid", "down2-gauss")
        return
    torch.testing.assert_close(op.forward(x), want, rtol=1e-12, atol=1e-12)


def test_base_class_defaults():
    class Crop(LinearOperator):  # changes the shape but forgets input_shape
        def forward(self, x):
            return x[..., 1:, :]

        def output_shape(self, shape):
            return tuple(shape[:-2]) + (shape[-2] - 1, shape[-1])

    with pytest.raises(NotImplementedError, match="input_shape"):
        Crop().input_shape((4, 4))
    plain = Plain(torch.ones(3, 3, dtype=F64))
    assert plain.structure() is None and not plain.can_solve_normal and not plain.tileable
    assert not plain.is_identity and Identity().is_identity
    assert PixelDiagonal(torch.tensor([0.0, 1.0])).binary
    assert PixelDiagonal(torch.tensor([True, False])).binary
    assert not PixelDiagonal(torch.tensor([0.5, 1.0])).binary
    # an operator of its own that overrides solve_normal says so
    class Own(Plain):
        def solve_normal(self, v, rho):
            return v / (self.g.to(v).square() + rho)

    assert Own(torch.ones(2, 2)).can_solve_normal
    with pytest.raises(ValueError, match="finite"):
        Diagonal(torch.tensor([1.0, float("nan")]))


# --- an operator from outside the package gets the primal splitting ---------------------


def _scene(shape=(16, 16), seed=0):
    g = torch.Generator().manual_seed(seed)
    clean = torch.zeros(shape, dtype=F64)
    clean[..., 4:12, 5:] = 1.0
    clean[..., :8, :4] = 0.5
    gain = 0.3 + 1.2 * torch.rand(shape[-2:], generator=g, dtype=F64)  # not binary
    return clean, gain, g


def _objective(x, y, w, op, iso=True):
    return float(energy(x, y, 2 * w, isotropic=iso, operator=op)) / 2


@pytest.mark.parametrize("holes", [False, True], ids=["gain", "gain-with-zeros"])
def test_toy_pixel_diagonal_operator_runs_the_primal_splitting(holes):
    clean, gain, g = _scene()
    if holes:
        gain = gain * (torch.rand(gain.shape, generator=g) < 0.7)
    op, w = gain_operator(gain), 0.02
    assert not op.structure().binary and op.can_solve_normal and op.tileable
    y = op.forward(clean) + 0.03 * torch.randn(clean.shape, generator=g, dtype=F64)
    # "auto" takes the primal splitting: bit for bit the run that names it
    x_auto, auto = tv_map_pdhg(y, 2 * w, op, tol=1e-4)
    x_primal, primal = tv_map_pdhg(y, 2 * w, op, tol=1e-4, splitting="primal")
    assert torch.equal(x_auto, x_primal) and auto.iterations == primal.iterations
    # the same operator without its structure: the dual splitting, another path
    with pytest.raises(ValueError, match="closed-form"):
        tv_map_pdhg(y, 2 * w, Plain(gain), splitting="primal")
    x_plain, plain = tv_map_pdhg(y, 2 * w, Plain(gain), tol=1e-4)
    assert plain.converged and plain.iterations != auto.iterations
    # certified: the primal splitting's gap bounds its distance to the optimum
    x_star, star = tv_map_pdhg(y, 2 * w, op, tol=1e-6, max_iter=400000, splitting="dual")
    p_star = _objective(x_star, y, w, op)
    p_auto = _objective(x_auto, y, w, op)
    assert auto.converged and star.converged
    assert auto.objective == pytest.approx(2 * p_auto, rel=1e-9)
    assert -star.gap <= (p_auto - p_star) / p_auto <= auto.gap
    # and tight: both splittings reach the same minimum, each within its certificate
    x_tight, tight = tv_map_pdhg(y, 2 * w, op, tol=1e-6, max_iter=400000, splitting="primal")
    assert tight.converged
    assert abs(_objective(x_tight, y, w, op) - p_star) / p_star <= tight.gap + star.gap


def test_toy_gain_box_bound_is_below_the_optimum_for_any_dual_field(gen):
    """The separable bound of a general gain holds for every |p| <= 1 (scaled problem)."""
    from bayes_restore.infer.tv._data_prox import make_data_prox
    from bayes_restore.infer.tv._workspace import Workspace

    clean, gain, g = _scene(seed=3)
    gain = gain * (torch.rand(gain.shape, generator=g) < 0.8)
    op, w = gain_operator(gain), 0.02
    y = op.forward(clean) + 0.03 * torch.randn(clean.shape, generator=g, dtype=F64)
    x_star, star = tv_map_pdhg(y, 2 * w, op, tol=1e-6, max_iter=400000, splitting="dual")
    p_star = _objective(x_star, y, w, op) / w**2 * (1 - star.gap)
    ys = y / w
    ws = Workspace(ys.shape, ys.dtype, "cpu", 2, True, False)
    data = make_data_prox(op, ys, ys.shape)
    assert max(random_dual_lower_bounds(ws, data, gen)) <= p_star


def test_toy_gain_batches_colour_and_float32():
    clean, gain, g = _scene((2, 3, 12, 12), seed=5)
    op = gain_operator(gain)
    y = (op.forward(clean) + 0.03 * torch.randn(clean.shape, generator=g, dtype=F64)).float()
    w = torch.tensor([0.02, 0.05]).reshape(2, 1, 1, 1)
    x, info = tv_map_pdhg(y, 2 * w, op, event_dim=3, tol=1e-4)
    assert x.dtype == torch.float32 and x.shape == y.shape and info.converged
    for i in range(2):
        yi, wi = y[i].double(), float(w[i])
        xi, _ = tv_map_pdhg(yi, 2 * wi, op, event_dim=3, tol=1e-5, max_iter=400000)
        assert _objective(x[i].double(), yi, wi, op) <= _objective(xi, yi, wi, op) * (1 + 2e-4)
