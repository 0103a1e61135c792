"""Linear operators: adjoint identities on random shapes, norms, and independent references."""

import numpy as np
import pytest
import scipy.ndimage
import scipy.signal
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bayes_restore.infer import map_estimate
from bayes_restore.models import restoration_model
from bayes_restore.operators import (
    Blur,
    Downsample,
    Identity,
    Mask,
    box_psf,
    gaussian_psf,
)
from bayes_restore.priors import GaussianGradient


def make(kind, h, w, seed):
    rng = np.random.default_rng(seed)
    if kind == "identity":
        return Identity()
    if kind == "blur-periodic":
        return Blur(torch.from_numpy(rng.random((3, 5))), boundary="periodic")
    if kind == "blur-reflect":
        return Blur(torch.from_numpy(rng.random((3, 5))), boundary="reflect")
    if kind == "blur-reflect-sym":
        return Blur(gaussian_psf(5, 1.0), boundary="reflect")
    if kind == "blur-valid":
        return Blur(gaussian_psf(3, 0.8), boundary="valid")
    if kind == "down2-box":
        return Downsample(2)
    if kind == "down3-gauss":
        return Downsample(3, kernel="gaussian")
    if kind == "mask":
        return Mask(torch.from_numpy(rng.random((h, w)) < 0.5))
    raise AssertionError(kind)


KINDS = ["identity", "blur-periodic", "blur-reflect", "blur-reflect-sym", "blur-valid",
         "down2-box", "down3-gauss", "mask"]


@settings(max_examples=40, deadline=None)
@given(
    kind=st.sampled_from(KINDS),
    h=st.integers(6, 20),
    w=st.integers(6, 20),
    batch=st.lists(st.integers(1, 3), max_size=2),
    seed=st.integers(0, 10_000),
)
def test_adjoint_identity(kind, h, w, batch, seed):
    op = make(kind, h, w, seed)
    if kind.startswith("down"):
        f = op.factor
        h, w = max(h // f, 1) * f, max(w // f, 1) * f
    g = torch.Generator().manual_seed(seed)
    shape = tuple(batch) + (h, w)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    y = torch.randn(tuple(batch) + op.output_shape((h, w)), generator=g, dtype=torch.float64)
    ax = op.forward(x)
    assert ax.shape == y.shape
    aty = op.adjoint(y)
    assert aty.shape == x.shape
    lhs, rhs = float((ax * y).sum()), float((x * aty).sum())
    assert abs(lhs - rhs) <= 1e-10 * (1 + abs(lhs))


@pytest.mark.parametrize("kind", KINDS)
def test_adjoint_float32_and_norm_bound(kind):
    op = make(kind, 24, 24, 0)
    x = torch.randn(2, 24, 24)
    y = torch.randn((2,) + op.output_shape((24, 24)))
    lhs, rhs = float((op.forward(x) * y).sum()), float((x * op.adjoint(y)).sum())
    assert abs(lhs - rhs) <= 1e-5 * (1 + abs(lhs))
    assert op.forward(x).dtype == torch.float32
    # power iteration: the largest singular value stays below norm_bound
    v = torch.randn(24, 24, dtype=torch.float64)
    for _ in range(200):
        v = op.normal(v)
        v = v / v.norm()
    sigma_max = float(op.forward(v).norm())
    assert sigma_max <= op.norm_bound * (1 + 1e-9)


@pytest.mark.parametrize("kernel", [(5, 3), (21, 15)], ids=["small", "wider-than-image"])
def test_periodic_blur_matches_scipy_wrap_convolution(rng, kernel):
    x = rng.random((17, 13))
    psf = rng.random(kernel)
    ours = Blur(torch.from_numpy(psf), boundary="periodic").forward(torch.from_numpy(x)).numpy()
    ref = scipy.ndimage.convolve(x, psf, mode="wrap")
    np.testing.assert_allclose(ours, ref, atol=1e-12)


@pytest.mark.parametrize("kernel", [(5, 3), (21, 15), (4, 2)], ids=["small", "wider", "even"])
def test_reflect_blur_is_the_valid_convolution_of_the_symmetric_extension(rng, kernel):
    """Half-sample symmetric extension (numpy's "symmetric", scipy.ndimage's "reflect").

    Output ``n`` reads ``x[n - (k - 1 - k // 2) .. n + k // 2]`` (centre at ``k // 2``), so
    the image is extended by ``k - 1 - k // 2`` before and ``k // 2`` after.
    """
    x = rng.random((17, 13))
    psf = rng.random(kernel)
    ours = Blur(torch.from_numpy(psf), boundary="reflect").forward(torch.from_numpy(x)).numpy()
    kh, kw = kernel
    pad = ((kh - 1 - kh // 2, kh // 2), (kw - 1 - kw // 2, kw // 2))
    ref = scipy.signal.convolve2d(np.pad(x, pad, mode="symmetric"), psf, mode="valid")
    np.testing.assert_allclose(ours, ref, atol=1e-12)
    if kh % 2 and kw % 2:  # an independent reference where scipy's centre is the same
        np.testing.assert_allclose(ours, scipy.ndimage.convolve(x, psf, mode="reflect"),
                                   atol=1e-12)
    assert Blur(torch.from_numpy(psf)).boundary == "reflect"  # the default


@pytest.mark.parametrize("kernel", [(5, 3), (4, 2)], ids=["odd", "even"])
def test_valid_blur_matches_scipy_valid_convolution(rng, kernel):
    x = rng.random((17, 13))
    psf = rng.random(kernel)
    ours = Blur(torch.from_numpy(psf), boundary="valid").forward(torch.from_numpy(x)).numpy()
    ref = scipy.signal.convolve2d(x, psf, mode="valid")
    np.testing.assert_allclose(ours, ref, atol=1e-12)


def test_box_downsample_is_block_mean_and_psf_helpers(rng):
    skimage = pytest.importorskip("skimage")
    x = rng.random((12, 18))
    ours = Downsample(3).forward(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours, skimage.transform.downscale_local_mean(x, (3, 3)))
    assert Downsample(4).output_shape((3, 17, 19)) == (3, 4, 4)
    np.testing.assert_allclose(float(gaussian_psf(7, 1.5).sum()), 1.0)
    np.testing.assert_allclose(box_psf(3).numpy(), np.full((3, 3), 1 / 9))


def test_mask_zero_fills_and_is_self_adjoint():
    m = torch.tensor([[True, False, True], [False, True, False]])
    op = Mask(m)
    x = torch.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(op.forward(x), x * m)
    np.testing.assert_array_equal(op.adjoint(x), op.forward(x))


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: Blur(torch.ones(3)), "psf"),
        (lambda: Blur(torch.ones(3, 3), boundary="mirror"), "boundary"),
        (lambda: Blur(torch.ones(9, 9), boundary="valid").forward(torch.ones(4, 4)), "larger"),
        (lambda: Downsample(1), "factor"),
        (lambda: Downsample(2, kernel="lanczos"), "kernel"),
        (lambda: Mask(torch.ones(3, 3)), "boolean"),
        (lambda: gaussian_psf(4, 1.0), "odd"),
        (lambda: gaussian_psf(5, 0.0), "sigma"),
    ],
)
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("op", [Blur(gaussian_psf(5, 1.0)), Downsample(2), Mask(
    torch.from_numpy(np.random.default_rng(0).random((16, 16)) < 0.7))], ids=repr)
def test_gaussian_map_through_an_operator_solves_the_normal_equations(op):
    """Generic Pyro MAP with A != I: (A^T A / sigma^2 + grad^T grad / b^2) x = A^T y / sigma^2."""
    rng = np.random.default_rng(1)
    x_true = torch.from_numpy(rng.random((16, 16)))
    y = op.forward(x_true) + 0.05 * torch.from_numpy(rng.standard_normal(op.output_shape((16, 16))))
    prior = GaussianGradient(torch.tensor(0.1, dtype=torch.float64), shape=(16, 16))
    post = map_estimate(restoration_model, y, prior=prior, sigma=0.05, operator=op)
    from bayes_restore.differences import div, grad

    rhs = op.adjoint(y) / 0.05**2
    residual = op.normal(post.map) / 0.05**2 - div(grad(post.map)) / 0.1**2 - rhs
    assert float(residual.abs().max()) < 1e-3 * float(rhs.abs().max())


@pytest.mark.parametrize("boundary", ["reflect", "periodic"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_blur_normal_in_its_own_basis_equals_adjoint_of_forward(boundary, dtype):
    # reflective blur of a symmetric kernel: two DCTs; periodic: one FFT pair; both must be
    # A^T A as the convolutions give it
    from bayes_restore.operators import Blur, gaussian_psf

    op = Blur(gaussian_psf(7, 1.3), boundary=boundary)
    x = torch.randn(2, 19, 24, dtype=dtype, generator=torch.Generator().manual_seed(0))
    expected = op.adjoint(op.forward(x))
    got = op.normal(x)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert got.dtype == dtype and got.shape == x.shape
    assert float((got - expected).abs().max()) < tol
    skewed = Blur(torch.tensor([[0.0, 0.2, 0.5], [0.0, 0.2, 0.1], [0.0, 0.0, 0.0]],
                               dtype=torch.float64), boundary="reflect")  # not symmetric
    x64 = x.double()
    assert float((skewed.normal(x64) - skewed.adjoint(skewed.forward(x64))).abs().max()) == 0.0
