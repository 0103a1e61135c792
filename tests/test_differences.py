"""grad/div (adjoint, boundary), the DCT against scipy, and TV against the reference formulas."""

import math

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
import scipy.fft
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bayes_restore.differences import (
    dct2,
    dct_matrix,
    div,
    grad,
    gradient_energy,
    idct2,
    laplacian_eigenvalues,
)

shapes = hnp.array_shapes(min_dims=2, max_dims=4, min_side=1, max_side=9)


@settings(max_examples=60, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**31 - 1))
def test_div_is_minus_adjoint_of_grad(shape, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    p = torch.randn(shape[:-2] + (2,) + shape[-2:], generator=g, dtype=torch.float64)
    lhs = (grad(x) * p).sum()
    rhs = -(x * div(p)).sum()
    assert abs(float(lhs - rhs)) <= 1e-10 * (1 + abs(float(lhs)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_adjoint_float32_and_float64(dtype):
    x = torch.randn(3, 17, 11, dtype=dtype)
    p = torch.randn(3, 2, 17, 11, dtype=dtype)
    lhs, rhs = (grad(x) * p).sum(), -(x * div(p)).sum()
    tol = 1e-6 if dtype == torch.float64 else 1e-3
    assert abs(float(lhs - rhs)) <= tol * (1 + abs(float(lhs)))
    assert grad(x).dtype == dtype and div(p).dtype == dtype


def test_grad_neumann_boundary_and_values():
    x = torch.arange(12.0).reshape(3, 4) ** 2
    g = grad(x)
    assert g.shape == (2, 3, 4)
    np.testing.assert_array_equal(g[0, -1], 0)  # last row difference is zero
    np.testing.assert_array_equal(g[1, :, -1], 0)
    np.testing.assert_array_equal(g[0, :-1], (x[1:] - x[:-1]))
    np.testing.assert_array_equal(g[1, :, :-1], (x[:, 1:] - x[:, :-1]))


def test_grad_of_constant_is_zero_and_div_batched():
    x = torch.full((2, 3, 5, 6), 3.5)
    assert torch.count_nonzero(grad(x)) == 0
    p = torch.randn(2, 3, 2, 5, 6)
    d = div(p)
    for i in range(2):
        for c in range(3):
            torch.testing.assert_close(d[i, c], div(p[i, c]))


def test_div_rejects_wrong_layout():
    with pytest.raises(ValueError, match="p must have shape"):
        div(torch.zeros(3, 4, 5))
    with pytest.raises(ValueError, match="x must have at least 2"):
        grad(torch.zeros(5))


@settings(max_examples=30, deadline=None)
@given(h=st.integers(1, 12), w=st.integers(1, 12), seed=st.integers(0, 1000))
def test_dct_matches_scipy_and_inverts(h, w, seed):
    x = np.random.default_rng(seed).standard_normal((2, h, w))
    ours = dct2(torch.from_numpy(x)).numpy()
    ref = scipy.fft.dctn(x, type=2, norm="ortho", axes=(-2, -1))
    np.testing.assert_allclose(ours, ref, atol=1e-12)
    np.testing.assert_allclose(idct2(torch.from_numpy(ref)).numpy(), x, atol=1e-12)


def test_dct_matrix_matches_scipy():
    c = dct_matrix(7).numpy()
    np.testing.assert_allclose(c, scipy.fft.dct(np.eye(7), norm="ortho", axis=0), atol=1e-14)


def test_dct_diagonalises_minus_div_grad():
    x = torch.randn(9, 13, dtype=torch.float64)
    lhs = -div(grad(x))
    rhs = idct2(laplacian_eigenvalues(9, 13) * dct2(x))
    torch.testing.assert_close(lhs, rhs, atol=1e-12, rtol=0)


def _tv_anisotropic_tf(img: np.ndarray) -> float:
    """TensorFlow's ``tf.image.total_variation`` (tv-loss-notes-ko.txt): sum |neighbour diffs|."""
    xv = img[1:, :] - img[:-1, :]
    yv = img[:, 1:] - img[:, :-1]
    return float(np.abs(xv).sum() + np.abs(yv).sum())


def _tv_isotropic_loops(img: np.ndarray, beta: float = 1.0) -> float:
    """The isotropic definition, pixel by pixel: sum ((dx^2 + dy^2))^(beta / 2)."""
    h, w = img.shape
    total = 0.0
    for i in range(h):
        for j in range(w):
            dy = img[i + 1, j] - img[i, j] if i + 1 < h else 0.0
            dx = img[i, j + 1] - img[i, j] if j + 1 < w else 0.0
            total += (dx * dx + dy * dy) ** (beta / 2)
    return total


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_tv_matches_reference_formulas(rng, dtype):
    img = rng.random((13, 10))
    t = torch.from_numpy(img).to(dtype)
    tol = dict(rtol=1e-5) if dtype == torch.float32 else dict(rtol=1e-12)
    np.testing.assert_allclose(
        float(gradient_energy(t, 1.0, isotropic=False)), _tv_anisotropic_tf(img), **tol
    )
    np.testing.assert_allclose(float(gradient_energy(t, 1.0)), _tv_isotropic_loops(img), **tol)
    np.testing.assert_allclose(
        float(gradient_energy(t, 1.5)), _tv_isotropic_loops(img, 1.5), **tol
    )
    # squared gradient: the same for both norms
    sq = float(((img[1:] - img[:-1]) ** 2).sum() + ((img[:, 1:] - img[:, :-1]) ** 2).sum())
    np.testing.assert_allclose(float(gradient_energy(t, 2.0)), sq, **tol)
    np.testing.assert_allclose(float(gradient_energy(t, 2.0, isotropic=False)), sq, **tol)


def test_gradient_energy_event_dims_and_finite_gradient():
    x = torch.zeros(4, 3, 6, 6, dtype=torch.float64, requires_grad=True)
    e = gradient_energy(x, 1.0, event_dim=3)
    assert e.shape == (4,)
    e.sum().backward()  # all gradients vanish: the subgradient 0, never NaN
    assert torch.isfinite(x.grad).all()
    for beta in (0.5, 1.0, 1.5):
        x.grad = None
        gradient_energy(x, beta, isotropic=False).sum().backward()
        assert torch.isfinite(x.grad).all()


def test_gradient_energy_is_beta_homogeneous(rng):
    x = torch.from_numpy(rng.random((3, 8, 8)))
    for beta in (0.7, 1.0, 1.3, 2.0):
        for iso in (True, False):
            e1 = gradient_energy(x, beta, isotropic=iso, event_dim=3)
            e2 = gradient_energy(2.5 * x, beta, isotropic=iso, event_dim=3)
            assert math.isclose(float(e2), 2.5**beta * float(e1), rel_tol=1e-12)


def test_gradient_energy_rejects_bad_beta():
    with pytest.raises(ValueError, match="beta"):
        gradient_energy(torch.zeros(3, 3), 0.0)
