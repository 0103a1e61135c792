"""Tiled restoration: the stitched result is the whole-image result (TV decays fast)."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bayes_restore import restore, restore_tiled
from bayes_restore.operators import Blur, Mask, gaussian_psf
from bayes_restore.priors import GaussianGradient, TotalVariation
from bayes_restore.tiled import parse_memory, tile_grid


@pytest.fixture(scope="module")
def camera_noisy():
    skimage = pytest.importorskip("skimage")
    clean = skimage.data.camera()[96:352, 128:384].astype(np.float64) / 255
    noisy = clean + 0.1 * np.random.default_rng(3).standard_normal(clean.shape)
    return clean, noisy


@given(h=st.integers(1, 300), w=st.integers(1, 300), tile=st.integers(1, 128),
       overlap=st.integers(0, 40))
@settings(max_examples=60, deadline=None)
def test_tile_cores_partition_the_image_and_windows_contain_them(h, w, tile, overlap):
    cover = np.zeros((h, w), int)
    for t in tile_grid((h, w), tile, overlap):
        cover[t.core] += 1
        rows, cols = t.window
        assert rows.start <= t.core[0].start and t.core[0].stop <= rows.stop
        assert cols.start <= t.core[1].start and t.core[1].stop <= cols.stop
        assert max(t.core[0].stop - t.core[0].start, t.core[1].stop - t.core[1].start) <= tile
        # the window reaches `overlap` beyond the core wherever the image allows
        assert rows.start == max(t.core[0].start - overlap, 0)
        assert cols.stop == min(t.core[1].stop + overlap, w)
    assert (cover == 1).all()


def test_tv_map_tiled_equals_whole_image(camera_noisy):
    _, y = camera_noisy
    whole = restore(y, "tv", sigma=0.1, weight=0.08, tol=1e-8).map
    tiled = restore_tiled(y, "tv", sigma=0.1, weight=0.08, tile=96, tol=1e-8)
    assert tiled.diagnostics["tiles"]["count"] == 9
    assert tiled.info.converged and tiled.info.gap <= 1e-8
    assert np.abs(tiled.map - whole).max() < 1e-3
    # without overlap the seams are visible: the test can tell
    seams = restore_tiled(y, "tv", sigma=0.1, weight=0.08, tile=96, overlap=0, tol=1e-8)
    assert np.abs(seams.map - whole).max() > 1e-2


def test_tiled_error_shrinks_with_overlap(camera_noisy):
    _, y = camera_noisy
    whole = restore(y, "tv", sigma=0.1, weight=0.08, tol=1e-9).map
    errors = [
        np.abs(restore_tiled(y, "tv", sigma=0.1, weight=0.08, tile=128, overlap=o,
                             tol=1e-9).map - whole).max()
        for o in (2, 8, 32)
    ]
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-4


def test_exact_std_tiled_equals_whole_image(camera_noisy):
    _, y = camera_noisy
    whole = restore(y, "gaussian", sigma=0.1, scale=0.05, method="exact")
    tiled = restore_tiled(y, "gaussian", sigma=0.1, scale=0.05, method="exact", tile=100)
    assert np.abs(tiled.mean - whole.mean).max() < 1e-3
    assert np.abs(tiled.std - whole.std).max() < 1e-4
    lo, hi = tiled.interval(0.9)  # Gaussian marginals survive stitching
    assert (lo < tiled.mean).all() and (tiled.mean < hi).all()


def test_parameters_estimated_once_for_all_tiles(camera_noisy):
    _, y = camera_noisy
    torch.manual_seed(0)  # SURE's Monte Carlo probe
    whole = restore(y, "tv")
    torch.manual_seed(0)
    tiled = restore_tiled(y, "tv", tile=128)
    for key in ("sigma", "weight", "sigma_estimated"):
        assert tiled.diagnostics["parameters"][key] == pytest.approx(
            whole.diagnostics["parameters"][key])
    assert np.abs(tiled.map - whole.map).max() < 0.02  # both at the default tol 1e-4


def test_stack_rgb_batched_by_memory_budget(rng):
    y = rng.random((3, 3, 40, 50)).astype(np.float32)
    whole = restore(y, "tv", sigma=0.1, weight=0.1, tol=1e-7).map
    one_image = 3 * 40 * 50 * 4 * 16  # the MAP engine's working memory for one image
    small = restore_tiled(y, "tv", sigma=0.1, weight=0.1, tile=64, tol=1e-7,
                          max_memory=one_image)
    # the stack is split along N: one image per call
    assert small.diagnostics["tiles"]["per_batch"] == 1
    assert small.diagnostics["tiles"]["batches"] == 3
    assert small.map.dtype == np.float32 and small.map.shape == y.shape
    np.testing.assert_allclose(small.map, whole, atol=2e-4)
    two = restore_tiled(y, "tv", sigma=0.1, weight=0.1, tile=64, max_memory=2 * one_image)
    assert two.diagnostics["tiles"]["batches"] == 2
    tiles = restore_tiled(y, "tv", sigma=0.1, weight=0.1, tile=20, overlap=10, tol=1e-7,
                          batch_size=4)
    assert tiles.diagnostics["tiles"]["count"] == 6  # per image; 18 (image, tile) units
    assert tiles.diagnostics["tiles"]["batches"] >= 18 // 4
    np.testing.assert_allclose(tiles.map, whole, atol=1e-3)


def test_mask_operator_is_tiled_with_its_image(rng):
    clean = np.kron(rng.random((6, 6)), np.ones((10, 10)))
    mask = rng.random(clean.shape) > 0.5
    y = np.where(mask, clean + 0.02 * rng.standard_normal(clean.shape), 0.0)
    whole = restore(y, "tv", sigma=0.02, weight=0.01, operator=Mask(mask), tol=1e-7).map
    tiled = restore_tiled(y, "tv", sigma=0.02, weight=0.01, operator=Mask(mask), tol=1e-7,
                          tile=30, overlap=15, batch_size=2)
    assert np.abs(tiled.map - whole).max() < 2e-3
    assert np.abs(tiled.map - clean)[~mask].mean() < 0.05  # the holes are filled


def test_prior_instance_and_tensor_in_tensor_out(rng):
    y = torch.tensor(rng.random((50, 40)))
    prior = GaussianGradient(0.2, shape=(50, 40))
    whole = restore(y, prior, sigma=0.1).map
    tiled = restore_tiled(y, prior, sigma=0.1, tile=25, overlap=20)
    assert isinstance(tiled.map, torch.Tensor) and tiled.map.dtype == torch.float64
    assert float((tiled.map - whole).abs().max()) < 1e-3
    with pytest.raises(ValueError, match="one prior scale"):
        restore_tiled(y, TotalVariation(torch.tensor([0.1, 0.2]), shape=(50, 40)), sigma=0.1)


def test_mcmc_tiles_keep_samples_and_intervals(rng):
    y = rng.random((40, 40))
    post = restore_tiled(y, "tv", sigma=0.1, weight=0.05, method="mcmc", tile=20, overlap=8,
                         num_samples=40, seed=1, keep_samples=True)
    assert post.samples.shape[-2:] == (40, 40) and post.std.shape == (40, 40)
    lo, hi = post.interval(0.9)
    assert (lo <= hi).all()
    drop = restore_tiled(y, "tv", sigma=0.1, weight=0.05, method="mcmc", tile=20, overlap=8,
                         num_samples=40, seed=1)
    assert drop.samples is None  # off by default: as large as num_samples images
    np.testing.assert_allclose(drop.std, post.std)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(tile=0), "tile"),
        (dict(tile=2.5), "tile"),
        (dict(overlap=-1), "overlap"),
        (dict(batch_size=0), "batch_size"),
        (dict(max_memory="lots"), "max_memory"),
        (dict(method="magic"), "method"),
        (dict(prior="nope"), "prior"),
        (dict(operator=Blur(gaussian_psf(5, 1.0))), "operator"),
        (dict(sigma=-1.0), "sigma"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    y = np.zeros((16, 16))
    kwargs = {"sigma": 0.1, "weight": 0.1, **kwargs}
    with pytest.raises(ValueError, match=match):
        restore_tiled(y, **kwargs)


def test_bad_image_is_named():
    with pytest.raises(ValueError, match="image"):
        restore_tiled(np.full((8, 8), np.nan), sigma=0.1, weight=0.1)


def test_parse_memory():
    assert parse_memory(1024) == 1024
    assert parse_memory("2 KiB") == 2048
    assert parse_memory(None) is None
    with pytest.raises(ValueError, match="max_memory"):
        parse_memory("-3MB")


def test_cuda_device_when_unavailable_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("CUDA present: covered by the CUDA test")
    with pytest.raises(ValueError, match="device"):
        restore_tiled(np.zeros((8, 8)), sigma=0.1, weight=0.1, device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_end_to_end(rng):  # pragma: no cover - no GPU in CI
    y = rng.random((64, 64)).astype(np.float32)
    cpu = restore_tiled(y, sigma=0.1, weight=0.1, tile=32, tol=1e-7).map
    gpu = restore_tiled(y, sigma=0.1, weight=0.1, tile=32, tol=1e-7, device="cuda")
    assert isinstance(gpu.map, np.ndarray) and gpu.diagnostics["tiles"]["device"] == "cuda"
    np.testing.assert_allclose(gpu.map, cpu, atol=1e-4)
    t = torch.tensor(y, device="cuda")
    assert restore_tiled(t, sigma=0.1, weight=0.1, tile=32).map.device.type == "cuda"


def test_restore_device_keyword(rng):
    y = rng.random((16, 16))
    a = restore(y, sigma=0.1, weight=0.1, device="cpu").map
    b = restore(torch.tensor(y), sigma=0.1, weight=0.1, device=torch.device("cpu")).map
    np.testing.assert_allclose(a, b.numpy())
    with pytest.raises(ValueError, match="device"):
        restore(y, sigma=0.1, weight=0.1, device="quantum")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            restore(y, sigma=0.1, weight=0.1, device="cuda")


def test_large_images_estimate_parameters_on_corner_crops(monkeypatch, rng):
    from bayes_restore import hyper, tiled

    clean = np.kron(rng.random((8, 8)), np.ones((16, 16)))
    y = clean + 0.05 * rng.standard_normal(clean.shape)
    y[40:90, 40:90] += 0.2 * rng.standard_normal((50, 50))  # noisier centre, outside crops
    monkeypatch.setattr(tiled, "PARAMETER_PIXELS", 4 * 32 * 32)
    post = restore_tiled(y, "gaussian", tile=64)
    corners = [y[:32, :32], y[:32, -32:], y[-32:, :32], y[-32:, -32:]]
    expected = np.sqrt(np.mean(np.square(hyper.estimate_sigma(np.stack(corners)))))
    assert post.diagnostics["parameters"]["sigma_estimated"] == pytest.approx(expected)
    assert expected == pytest.approx(0.05, rel=0.2)


def test_tiled_example_runs_and_overlap_removes_seams(tmp_path):
    pytest.importorskip("matplotlib")
    pytest.importorskip("skimage")
    pytest.importorskip("dask")
    from test_examples import load_example

    example = load_example("plot_tiled_restoration")
    out = tmp_path / "tiled.png"
    errors = example.main(size=96, tile=32, overlaps=(0, 24), out=str(out))
    assert out.is_file() and out.stat().st_size > 5_000
    assert errors[0] > 1e-2 > 1e-3 > errors[24]
    assert errors["dask"] < 1e-3


def test_overlap_grows_with_a_smoothing_gaussian_prior(camera_noisy):
    _, y = camera_noisy
    kwargs = dict(sigma=0.1, scale=0.01)  # lambda = sigma^2 / b^2 = 100: 10-pixel smoothing
    whole = restore(y, "gaussian", **kwargs).map
    auto = restore_tiled(y, "gaussian", tile=64, **kwargs)
    assert auto.diagnostics["tiles"]["overlap"] == 70
    assert np.abs(auto.map - whole).max() < 1e-3
    short = restore_tiled(y, "gaussian", tile=64, overlap=32, **kwargs)
    assert np.abs(short.map - whole).max() > 1e-3
    assert restore_tiled(y, "tv", sigma=0.1, weight=0.1, tile=128).diagnostics["tiles"][
        "overlap"] == 32


def test_rgb_with_broadcast_mask_and_numpy_integer_sizes(rng):
    clean = np.stack([np.kron(rng.random((4, 5)), np.ones((12, 12)))] * 3)
    mask = rng.random(clean.shape[-2:]) > 0.3
    y = np.where(mask, clean + 0.02 * rng.standard_normal(clean.shape), 0.0)
    whole = restore(y, "tv", sigma=0.02, weight=0.01, operator=Mask(mask), tol=1e-7).map
    tiled = restore_tiled(y, "tv", sigma=0.02, weight=0.01, operator=Mask(mask), tol=1e-7,
                          tile=np.int64(24), overlap=np.int64(20))
    assert tiled.map.shape == (3, 48, 60)
    assert np.abs(tiled.map - whole).max() < 2e-3
    with pytest.raises(ValueError, match="operator"):
        restore_tiled(y, "tv", sigma=0.02, weight=0.01, operator=Mask(mask[:30]))


def test_overlap_covers_the_largest_hole():
    clean = np.full((240, 240), 0.5)  # the TV MAP fills any hole with 0.5 (TV = 0)
    mask = np.ones(clean.shape, bool)
    mask[70:170, 70:170] = False  # a 100 x 100 hole: up to 50 pixels from its rim
    kwargs = dict(sigma=0.01, weight=1e-3, operator=Mask(mask), tile=32)
    tiled = restore_tiled(np.where(mask, clean, 0.0), "tv", **kwargs)
    assert tiled.diagnostics["tiles"]["overlap"] == 32 + 50
    assert np.abs(tiled.map - clean).max() < 1e-3
    short = restore_tiled(np.where(mask, clean, 0.0), "tv", overlap=8, **kwargs)
    assert np.abs(short.map - clean).max() > 0.1  # windows inside the hole see no data
