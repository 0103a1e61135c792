"""Every ordinary input works and every bad one fails cleanly, naming the argument.

The public entry points (``denoise``, ``restore``, ``restore_tiled``, ``estimate_sigma``,
the losses) are called as a new user would: other dtypes and layouts, wrong types,
out-of-range numbers. A user's mistake must give ``ValueError``/``TypeError`` raised by the
package itself (not a torch or Pyro traceback) whose message names the argument.
"""

import math
import traceback
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bayes_restore import denoise, estimate_sigma, restore, restore_tiled
from bayes_restore.losses import frequency_split_loss, frequency_split_targets, tv_loss
from bayes_restore.operators import Blur, Downsample, Mask, gaussian_psf
from bayes_restore.restore import engine_options

RNG = np.random.default_rng(0)
Y = RNG.random((24, 24))
RGB = RNG.random((24, 24, 3))  # channels last, as imageio / Pillow / scikit-image read


def _raised_by_package(err: BaseException) -> bool:
    """The last frame of the traceback is the package's own code (its check, not torch's)."""
    last = traceback.extract_tb(err.__traceback__)[-1].filename.replace("\\", "/")
    return "/bayes_restore/" in last


def _clean_error(call, name: str) -> BaseException:
    with pytest.raises((ValueError, TypeError)) as info:
        call()
    err = info.value
    assert name in str(err), f"{name!r} not named in: {err}"
    assert _raised_by_package(err), "".join(traceback.format_exception(err))
    assert "\n" not in str(err).strip(), f"not one line: {err}"
    return err


# --- a table of the mistakes seen, each with the argument its error must name -----------

BAD_CALLS = {
    "sigma as a string": (lambda: denoise(Y, sigma="0.1", weight=0.1), "sigma"),
    "weight as a string": (lambda: denoise(Y, sigma=0.1, weight="a"), "weight"),
    "scale as a list of strings": (lambda: denoise(Y, sigma=0.1, scale=["x"]), "scale"),
    "sigma None-like object": (lambda: denoise(Y, sigma=object(), weight=0.1), "sigma"),
    "negative sigma": (lambda: restore(Y, sigma=-1.0, weight=0.1), "sigma"),
    "infinite weight": (lambda: restore(Y, sigma=0.1, weight=math.inf), "weight"),
    "beta that overflows the scale": (
        lambda: denoise(Y, "gradient", sigma=0.1, weight=0.1, beta=1e-3), "beta"),
    "operator of another shape": (
        lambda: restore(Y, sigma=0.1, weight=0.1, operator=Mask(torch.ones(16, 16).bool())),
        "operator"),
    "operator not an operator": (
        lambda: restore(Y, sigma=0.1, weight=0.1, operator="blur"), "operator"),
    "unknown keyword": (lambda: restore(Y, sigma=0.1, weight=0.1, foo=1), "foo"),
    "vi keyword under map": (lambda: restore(Y, sigma=0.1, weight=0.1, guide="normal"),
                             "guide"),
    "seed as a string": (lambda: restore(Y, sigma=0.1, weight=0.1, seed="1"), "seed"),
    "seed as a float": (lambda: denoise(Y, sigma=0.1, weight=0.1, seed=1.5), "seed"),
    "negative seed": (lambda: restore(Y, sigma=0.1, weight=0.1, seed=-1), "seed"),
    "tiled seed as a string": (
        lambda: restore_tiled(Y, sigma=0.1, weight=0.1, seed="x"), "seed"),
    "tiled unknown keyword": (
        lambda: restore_tiled(Y, sigma=0.1, weight=0.1, bogus=2), "bogus"),
    "channels-last without channel_axis": (lambda: denoise(RGB, sigma=0.1, weight=0.1),
                                           "channel_axis=-1"),
    "channels-last in restore_tiled": (lambda: restore_tiled(RGB, sigma=0.1, weight=0.1),
                                       "channel_axis=-1"),
    "channel_axis on a grey image": (
        lambda: denoise(Y, sigma=0.1, weight=0.1, channel_axis=-1), "channel_axis"),
    "channel_axis out of range": (
        lambda: denoise(RGB, sigma=0.1, weight=0.1, channel_axis=3), "channel_axis"),
    "channel_axis as a string": (
        lambda: denoise(RGB, sigma=0.1, weight=0.1, channel_axis="last"), "channel_axis"),
    "complex image": (lambda: denoise(Y.astype(complex), sigma=0.1, weight=0.1), "image"),
    "object image": (lambda: denoise(Y.astype(object), sigma=0.1, weight=0.1), "image"),
    "longdouble image": (
        lambda: denoise(Y.astype(np.longdouble), sigma=0.1, weight=0.1)
        if np.dtype(np.longdouble).itemsize > 8 else denoise(Y[None, None, None], sigma=0.1),
        "image"),
    "list image": (lambda: denoise(Y.tolist(), sigma=0.1, weight=0.1), "image"),
    "NaN image": (lambda: restore(np.full((8, 8), np.nan), sigma=0.1, weight=0.1), "image"),
    "unknown prior": (lambda: denoise(Y, "lasso", sigma=0.1, weight=0.1), "prior"),
    "unknown method": (lambda: restore(Y, sigma=0.1, weight=0.1, method="svi"), "method"),
    "tv_loss channels last": (lambda: tv_loss(torch.rand(2, 16, 16, 3)), "channel_axis=-1"),
    "tv_loss channel_axis on 2-D": (lambda: tv_loss(torch.rand(8, 8), channel_axis=-1),
                                    "channel_axis"),
}


@pytest.mark.parametrize("case", sorted(BAD_CALLS))
def test_bad_input_gives_one_clean_error_naming_the_argument(case):
    call, name = BAD_CALLS[case]
    err = _clean_error(call, name)
    assert isinstance(err, (ValueError, TypeError)) and name in str(err)


def test_unknown_keyword_lists_what_the_engine_takes():
    err = _clean_error(lambda: restore(Y, sigma=0.1, weight=0.1, method="mcmc", steps=3),
                       "steps")
    assert "num_samples" in str(err)
    assert set(engine_options("map")) >= {"solver", "tol", "max_iter"}


# --- property tests: garbage in any numeric argument -----------------------------------

GARBAGE = st.one_of(
    st.text(max_size=5),
    st.none(),
    st.booleans(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-10, max_value=0),
    st.lists(st.floats(-1, 1), max_size=3),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
    st.just(object()),
    st.just(np.array(["a"])),
    st.just(torch.tensor([-1.0, 1.0])),
)


@pytest.mark.filterwarnings("ignore::bayes_restore.ConvergenceWarning")  # huge weights
@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(["sigma", "weight", "scale", "seed"]), value=GARBAGE)
def test_garbage_numbers_fail_cleanly_or_work(name, value):
    kwargs = {"sigma": 0.1, "weight": 0.1, "seed": 0}
    if name == "scale":
        kwargs.pop("weight")
    kwargs[name] = value
    try:
        out = denoise(Y[:12, :12], "tv", tol=1e-3, **kwargs)
    except (ValueError, TypeError) as err:
        assert _raised_by_package(err), "".join(traceback.format_exception(err))
        assert name in str(err) or (value is None and name != "seed") or (
            "out of the floating-point range" in str(err)), str(err)
    else:  # accepted: a sane answer of the input's shape
        assert out.shape == (12, 12) and np.isfinite(out).all()


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    shape=st.lists(st.integers(0, 6), min_size=0, max_size=5).map(tuple),
    dtype=st.sampled_from([np.float64, np.float32, np.float16, np.uint8, np.int16, bool,
                           np.complex64]),
)
def test_any_array_shape_and_dtype_works_or_fails_cleanly(shape, dtype):
    image = np.ones(shape, dtype=dtype)
    try:
        out = denoise(image, "tv", sigma=0.1, weight=0.1, tol=1e-3)
    except (ValueError, TypeError) as err:
        assert "image" in str(err) or "channel_axis" in str(err), str(err)
        assert _raised_by_package(err)
    else:
        assert out.shape == image.shape
        assert np.isfinite(out).all()


# --- dtypes: half precision, integers, byte order ----------------------------------------


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_torch_half_precision_is_computed_in_float32_and_returned_in_its_dtype(dtype):
    clean = torch.zeros(32, 32)
    clean[8:24, 8:24] = 1
    noisy = clean + 0.1 * torch.randn(32, 32, generator=torch.Generator().manual_seed(0))
    reference = denoise(noisy.double(), sigma=0.1, weight=0.2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ConvergenceWarning: it converges in float32
        out = denoise(noisy.to(dtype), sigma=0.1, weight=0.2)
        gauss = denoise(noisy.to(dtype), "gaussian", sigma=0.1, scale=0.1)
    assert out.dtype == dtype and gauss.dtype == dtype
    # the difference is the input's rounding to half precision, not a diverged solver
    rounding = float((noisy.to(dtype).double() - noisy.double()).abs().max())
    assert float((out.double() - reference).abs().max()) < 2 * rounding + 1e-2
    post = restore(noisy.to(dtype), "gaussian", sigma=0.1, scale=0.1, method="exact")
    assert post.mean.dtype == dtype and post.std.dtype == dtype


def test_numpy_float16_and_big_endian_arrays():
    ref = denoise(Y, sigma=0.1, weight=0.1)
    half = denoise(Y.astype(np.float16), sigma=0.1, weight=0.1)
    assert half.dtype == np.float16
    np.testing.assert_allclose(half.astype(np.float64), ref, atol=5e-3)
    for order in (">f8", ">f4"):
        big = Y.astype(order)
        out = denoise(big, sigma=0.1, weight=0.1)
        assert out.dtype == np.dtype(order).newbyteorder("=")
        np.testing.assert_allclose(out, denoise(big.astype(out.dtype), sigma=0.1, weight=0.1))
    np.testing.assert_array_equal(denoise(Y.astype(">f8"), sigma=0.1, weight=0.1), ref)


@pytest.mark.parametrize("dtype,scale", [(np.uint8, 255), (np.uint16, 65535),
                                         (np.int16, 32767)])
def test_integer_images_are_scaled_as_scikit_image_does(dtype, scale):
    from skimage.util import img_as_float

    image = (Y * scale).astype(dtype)
    out = denoise(image, sigma=0.1, weight=0.1)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(
        out, denoise(img_as_float(image), sigma=0.1, weight=0.1))
    if dtype != np.uint16:  # torch's uint16 has few operations
        torch_out = denoise(torch.from_numpy(image), sigma=0.1, weight=0.1)
        assert torch_out.dtype == torch.get_default_dtype()
        np.testing.assert_allclose(torch_out.double().numpy(), out, atol=1e-5)


def test_bool_image_is_zero_one():
    image = Y > 0.5
    np.testing.assert_array_equal(denoise(image, sigma=0.1, weight=0.1),
                                  denoise(image.astype(np.float64), sigma=0.1, weight=0.1))


# --- layouts ---------------------------------------------------------------------------


def test_channel_axis_last_equals_channels_first():
    first = denoise(np.moveaxis(RGB, -1, 0), sigma=0.1, weight=0.1)
    last = denoise(RGB, sigma=0.1, weight=0.1, channel_axis=-1)
    assert last.shape == RGB.shape
    np.testing.assert_array_equal(last, np.moveaxis(first, 0, -1))
    np.testing.assert_array_equal(denoise(RGB, sigma=0.1, weight=0.1, channel_axis=2), last)


def test_channel_axis_for_batches_posteriors_and_tiles():
    stack = RNG.random((2, 20, 20, 3))
    post = restore(stack, "gaussian", sigma=0.1, scale=0.1, method="exact", channel_axis=-1,
                   num_samples=4)
    ref = restore(np.moveaxis(stack, -1, 1), "gaussian", sigma=0.1, scale=0.1,
                  method="exact", num_samples=4)
    for name in ("mean", "std"):
        np.testing.assert_allclose(getattr(post, name),
                                   np.moveaxis(getattr(ref, name), 1, -1), atol=1e-12)
    assert post.samples.shape == (1, 4, 2, 20, 20, 3)
    lo, hi = post.interval(0.9)
    assert lo.shape == stack.shape and (lo <= hi).all()
    tiled = restore_tiled(RGB, sigma=0.1, weight=0.1, channel_axis=-1, tile=12, overlap=6,
                          tol=1e-8)
    whole = denoise(RGB, sigma=0.1, weight=0.1, channel_axis=-1, tol=1e-8)
    assert tiled.map.shape == RGB.shape
    assert float(np.abs(tiled.map - whole).max()) < 1e-3


def test_losses_channel_axis():
    nhwc = torch.rand(2, 16, 16, 3, generator=torch.Generator().manual_seed(1))
    nchw = nhwc.permute(0, 3, 1, 2)
    assert torch.equal(tv_loss(nhwc, channel_axis=-1), tv_loss(nchw))
    low, high = frequency_split_targets(nhwc, channel_axis=-1)
    low_c, high_c = frequency_split_targets(nchw)
    assert torch.equal(low, low_c.permute(0, 2, 3, 1))
    assert torch.equal(high, high_c.permute(0, 2, 3, 1))
    logits = torch.zeros(2, 8, 16, 16, 3)
    assert torch.equal(
        frequency_split_loss(nhwc, logits, nhwc, levels=8, channel_axis=-1),
        frequency_split_loss(nchw, logits.permute(0, 1, 4, 2, 3), nchw, levels=8))


# --- parameter-free on degenerate images -----------------------------------------------


@pytest.mark.parametrize("method", ["map", "exact", "mcmc"])
def test_constant_image_is_returned_unchanged_with_the_reason(method):
    flat = np.full((32, 32), 0.25)
    prior = "gaussian" if method == "exact" else "tv"
    with pytest.warns(UserWarning, match="noise level is 0"):
        post = restore(flat, prior, method=method)
    np.testing.assert_array_equal(post.point, flat)
    assert "reason" in post.diagnostics["parameters"]
    if method != "map":
        assert (post.std == 0).all()
    with pytest.warns(UserWarning, match="noise level is 0"):
        assert (denoise(flat) == flat).all()
    with pytest.warns(UserWarning, match="noise level is 0"):
        assert (restore_tiled(flat, tile=16).map == flat).all()


@pytest.mark.parametrize("factor", [1e300, 1e-300, 2.0**70])
def test_extreme_magnitudes_restore_like_unit_images(factor):
    clean = np.zeros((64, 64))
    clean[16:48, 16:48] = 1
    noisy = clean + 0.1 * np.random.default_rng(3).standard_normal(clean.shape)
    unit = restore(noisy, "tv", tol=1e-6)
    big = restore(noisy * factor, "tv", tol=1e-6)
    params = big.diagnostics["parameters"]
    assert math.isclose(params["sigma"], unit.diagnostics["parameters"]["sigma"] * factor,
                        rel_tol=1e-6)
    np.testing.assert_allclose(big.map / factor, unit.map, atol=1e-5)
    given = denoise(noisy * factor, "tv", sigma=0.1 * factor, weight=0.2 * factor, tol=1e-6)
    np.testing.assert_allclose(given / factor,
                               denoise(noisy, "tv", sigma=0.1, weight=0.2, tol=1e-6), atol=1e-5)


def test_tiled_exact_and_vi_accept_seed():
    post = restore_tiled(Y, "gaussian", sigma=0.1, scale=0.1, method="exact", seed=3,
                         num_samples=2, tile=12, overlap=4)
    assert post.mean.shape == Y.shape


@pytest.mark.filterwarnings("ignore::bayes_restore.ConvergenceWarning")  # max_iter=5
def test_downsample_mismatch_names_the_operator():
    # a 24 x 24 observation is fine for x3 decimation (a 72 x 72 image) ...
    assert restore(Y, sigma=0.1, weight=0.1, operator=Downsample(3), max_iter=5).map.shape \
        == (72, 72)
    # ... but a blur kernel on another device or a mask of another batch is not
    _clean_error(lambda: restore(np.stack([Y, Y]), sigma=0.1, weight=0.1,
                                 operator=Mask(torch.ones(3, 24, 24).bool())), "operator")
    assert restore(Y, sigma=0.1, weight=0.1, operator=Blur(gaussian_psf(5, 1.0)),
                   max_iter=5).map.shape == Y.shape


def test_estimate_sigma_takes_channel_axis_and_any_dtype():
    ramp = np.linspace(0.2, 0.8, 24)[None, :, None] * np.ones((24, 24, 3))
    noisy = ramp + 0.05 * np.random.default_rng(4).standard_normal(ramp.shape)
    per_channel = estimate_sigma(noisy, channel_axis=-1)
    assert per_channel.shape == (3,)
    np.testing.assert_array_equal(per_channel, estimate_sigma(np.moveaxis(noisy, -1, 0)))
    _clean_error(lambda: estimate_sigma(noisy), "channel_axis=-1")
    as_u8 = (np.clip(noisy, 0, 1) * 255).astype(np.uint8)
    assert 0.03 < estimate_sigma(as_u8, channel_axis=-1).mean() < 0.08
    half = estimate_sigma(torch.tensor(noisy[..., 0], dtype=torch.float16))
    assert half.dtype == torch.float16 and float(half) > 0
