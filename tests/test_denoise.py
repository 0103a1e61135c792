"""The one-line call: types, dtypes, shapes, batches, and clear errors for bad input."""

import numpy as np
import pytest
import torch
from helpers import piecewise_image

from bayes_restore import denoise
from bayes_restore.energy import energy, scale_from_weight
from bayes_restore.infer import dct_map
from bayes_restore.priors import GradientPrior, TotalVariation


@pytest.fixture
def noisy(rng):
    clean = piecewise_image(32, 32)
    return clean, clean + 0.1 * rng.standard_normal(clean.shape)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("prior", ["tv", "tv-anisotropic", "gaussian"])
def test_numpy_in_numpy_out_same_dtype(noisy, dtype, prior):
    clean, y = noisy
    out = denoise(y.astype(dtype), prior, sigma=0.1, weight=0.2)
    assert isinstance(out, np.ndarray) and out.dtype == dtype and out.shape == y.shape
    # TV keeps the edges of this piecewise-constant image; the Gaussian prior blurs them
    factor = 0.9 if prior == "gaussian" else 0.6
    assert np.abs(out - clean).mean() < factor * np.abs(y - clean).mean()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_torch_in_torch_out_same_dtype_and_device(noisy, dtype):
    _, y = noisy
    t = torch.from_numpy(y).to(dtype)
    out = denoise(t, "tv", sigma=0.1, scale=0.05)
    assert isinstance(out, torch.Tensor) and out.dtype == dtype and out.device == t.device
    np.testing.assert_allclose(
        out.double().numpy(), denoise(y, "tv", sigma=0.1, scale=0.05), atol=5e-3
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_in_cuda_out(noisy):
    _, y = noisy
    out = denoise(torch.from_numpy(y).cuda(), "tv", sigma=0.1, weight=0.2)
    assert out.is_cuda


def test_gaussian_is_the_closed_form_and_scale_equals_weight(noisy):
    _, y = noisy
    out = denoise(y, "gaussian", sigma=0.1, scale=0.2)
    np.testing.assert_allclose(out, dct_map(torch.from_numpy(y), 0.1**2 / 0.2**2).numpy())
    w = 0.1**2 / 0.2**2
    np.testing.assert_allclose(denoise(y, "gaussian", sigma=0.1, weight=w), out, atol=1e-12)


def test_colour_channels_are_separate_images(rng):
    y = rng.random((3, 20, 20))
    out = denoise(y, "tv", sigma=0.1, weight=0.3, tol=1e-7)
    for c in range(3):
        single = denoise(y[c], "tv", sigma=0.1, weight=0.3, tol=1e-7)
        np.testing.assert_allclose(out[c], single, atol=2e-3)


def test_batches_equal_one_by_one(rng):
    y = rng.random((4, 3, 16, 16))
    out = denoise(y, "tv", sigma=0.1, weight=0.3, tol=1e-6)
    assert out.shape == y.shape
    for i in range(4):
        single = denoise(y[i], "tv", sigma=0.1, weight=0.3, tol=1e-6)
        e_batch = float(energy(torch.from_numpy(out[i]), torch.from_numpy(y[i]), 0.3))
        e_single = float(energy(torch.from_numpy(single), torch.from_numpy(y[i]), 0.3))
        assert abs(e_batch - e_single) / e_single < 2e-6


def test_general_order_goes_through_the_generic_path(noisy):
    clean, y = noisy
    out = denoise(y, "gradient", beta=1.5, sigma=0.1, weight=0.3)
    assert np.abs(out - clean).mean() < np.abs(y - clean).mean()
    # it is a minimiser of the energy of order 1.5
    x = torch.from_numpy(out)
    yt = torch.from_numpy(y)
    e0 = float(energy(x, yt, 0.3, beta=1.5))
    for s in np.random.default_rng(0).standard_normal((4,) + y.shape) * 1e-3:
        assert float(energy(x + torch.from_numpy(s), yt, 0.3, beta=1.5)) >= e0 - 1e-9


def test_prior_instance_is_accepted(noisy):
    _, y = noisy
    prior = TotalVariation(scale_from_weight(0.1, 0.2), shape=y.shape)
    np.testing.assert_allclose(
        denoise(y, prior, sigma=0.1), denoise(y, "tv", sigma=0.1, weight=0.2), atol=1e-12
    )


BAD = [
    (dict(image=np.full((8, 8), np.nan)), "image"),
    (dict(image=np.full((8, 8), np.inf)), "image"),
    (dict(image=np.zeros(8)), "image"),
    (dict(image=np.zeros((1, 1, 1, 8, 8))), "image"),
    (dict(image=np.zeros((8, 8), dtype=np.complex128)), "image"),
    (dict(image=np.zeros((8, 8), dtype=object)), "image"),
    (dict(image=[[0.0, 1.0]]), "image"),
    (dict(image=np.zeros((0, 8))), "image"),
    (dict(sigma=0.0), "sigma"),
    (dict(sigma=-0.1), "sigma"),
    (dict(sigma=float("nan")), "sigma"),
    (dict(scale=-1.0, weight=None), "scale"),
    (dict(weight=0.0), "weight"),
    (dict(scale=0.1, weight=0.1), "scale or weight"),
    (dict(weight=None, prior="gradient", beta=1.5), "scale= or weight="),
    (dict(prior="lasso"), "prior"),
    (dict(prior="tv", beta=2.0), "beta"),
    (dict(solver="fista"), "solver"),
]


@pytest.mark.parametrize("changes,match", BAD, ids=[f"{i}-{m}" for i, (_, m) in enumerate(BAD)])
def test_bad_input_raises_value_error_naming_the_argument(changes, match):
    kwargs = dict(image=np.zeros((8, 8)), prior="tv", sigma=0.1, weight=0.1)
    kwargs.update(changes)
    image = kwargs.pop("image")
    prior = kwargs.pop("prior")
    with pytest.raises(ValueError, match=match):
        denoise(image, prior, **kwargs)


def test_prior_instance_shape_mismatch_and_extra_arguments():
    prior = GradientPrior(0.1, 1.0, shape=(4, 4))
    with pytest.raises(ValueError, match="event shape"):
        denoise(np.zeros((5, 5)), prior, sigma=0.1)
    with pytest.raises(ValueError, match="prior name"):
        denoise(np.zeros((4, 4)), prior, sigma=0.1, scale=0.1)


def test_parameter_free_defaults_estimate_sigma_and_the_weight(noisy):
    clean, y = noisy
    auto = denoise(y)  # TV, sigma and weight from the data
    assert np.abs(auto - clean).mean() < 0.6 * np.abs(y - clean).mean()
    from bayes_restore import restore

    post = restore(y, "gaussian", method="exact")
    par = post.diagnostics["parameters"]
    assert 0.07 < par["sigma_estimated"] < 0.13 and par["scale_method"] == "evidence"
    par = restore(y, "tv").diagnostics["parameters"]
    assert par["weight_method"] == "sure" and par["weight"] == pytest.approx(
        par["weight_estimated"], rel=1e-6)
