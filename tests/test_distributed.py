"""restore_dask: lazy, chunked, on threads or a two-worker LocalCluster; equal to in-memory."""

import warnings

import numpy as np
import pytest
import torch

from bayes_restore import restore, restore_tiled
from bayes_restore.operators import Blur, Mask, gaussian_psf

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")
from bayes_restore.distributed import restore_dask  # noqa: E402


@pytest.fixture(scope="module")
def noisy():
    skimage = pytest.importorskip("skimage")
    clean = skimage.data.camera()[128:320, 96:352].astype(np.float64) / 255
    return clean + 0.1 * np.random.default_rng(5).standard_normal(clean.shape)


def test_lazy_result_equals_whole_image(noisy):
    y = da.from_array(noisy, chunks=(64, 100))
    out = restore_dask(y, "tv", sigma=0.1, weight=0.08, tol=1e-8)
    assert isinstance(out, da.Array)  # nothing computed yet
    assert out.chunks == y.chunks and out.dtype == y.dtype
    whole = restore(noisy, "tv", sigma=0.1, weight=0.08, tol=1e-8).map
    result = out.compute(scheduler="threads")
    assert np.abs(result - whole).max() < 1e-3
    tiled = restore_tiled(noisy, "tv", sigma=0.1, weight=0.08, tol=1e-8, tile=100)
    assert np.abs(result - tiled.map).max() < 1e-3


def test_no_overlap_shows_seams(noisy):
    y = da.from_array(noisy, chunks=64)
    whole = restore(noisy, "tv", sigma=0.1, weight=0.08, tol=1e-8).map
    seams = restore_dask(y, "tv", sigma=0.1, weight=0.08, tol=1e-8, overlap=0).compute()
    assert np.abs(seams - whole).max() > 1e-2


def test_std_on_request_from_one_graph(noisy):
    y = da.from_array(noisy.astype(np.float32), chunks=96)
    mean, std = restore_dask(y, "gaussian", sigma=0.1, scale=0.05, method="exact",
                             return_std=True)
    mean, std = dask.compute(mean, std)
    whole = restore(noisy.astype(np.float32), "gaussian", sigma=0.1, scale=0.05, method="exact")
    assert mean.dtype == np.float32
    assert np.abs(mean - whole.mean).max() < 1e-3
    assert np.abs(std - whole.std).max() < 1e-4


def test_estimated_parameters_match_in_memory(noisy):
    torch.manual_seed(0)
    whole = restore(noisy, "tv")
    torch.manual_seed(0)
    out = restore_dask(da.from_array(noisy, chunks=128)).compute()
    assert np.abs(out - whole.map).max() < 0.02  # both at the default tol 1e-4


def test_stack_and_rgb_chunks(rng):
    y = rng.random((4, 3, 40, 60))
    x = da.from_array(y, chunks=(2, 1, 40, 30))
    out = restore_dask(x, "tv", sigma=0.1, weight=0.1, overlap=12, tol=1e-8)
    assert out.chunks == ((2, 2), (3,), (40,), (30, 30))  # channels in one chunk
    whole = restore(y, "tv", sigma=0.1, weight=0.1, tol=1e-8).map
    np.testing.assert_allclose(out.compute(), whole, atol=1e-3)


def test_mask_is_chunked_with_the_image(rng):
    clean = np.kron(rng.random((6, 8)), np.ones((10, 10)))
    mask = rng.random(clean.shape) > 0.5
    y = np.where(mask, clean + 0.02 * rng.standard_normal(clean.shape), 0.0)
    whole = restore(y, "tv", sigma=0.02, weight=0.01, operator=Mask(mask), tol=1e-7).map
    out = restore_dask(da.from_array(y, chunks=30), "tv", sigma=0.02, weight=0.01,
                       operator=Mask(mask), overlap=15, tol=1e-7).compute()
    assert np.abs(out - whole).max() < 2e-3


def test_zarr_in_zarr_out(tmp_path, noisy):
    zarr = pytest.importorskip("zarr")
    store = str(tmp_path / "in.zarr")
    z = zarr.open(store, mode="w", shape=noisy.shape, chunks=(96, 128), dtype="f4")
    z[:] = noisy.astype(np.float32)
    y = da.from_zarr(store)
    out = restore_dask(y, "tv", sigma=0.1, weight=0.08, tol=1e-7)
    out.to_zarr(str(tmp_path / "out.zarr"))
    result = zarr.open(str(tmp_path / "out.zarr"), mode="r")[:]
    whole = restore(noisy.astype(np.float32), "tv", sigma=0.1, weight=0.08, tol=1e-7).map
    assert result.dtype == np.float32
    assert np.abs(result - whole).max() < 2e-3


def test_local_cluster_two_workers(noisy):
    distributed = pytest.importorskip("distributed")
    y = da.from_array(noisy, chunks=96)
    whole = restore(noisy, "tv", sigma=0.1, weight=0.08, tol=1e-8).map
    with warnings.catch_warnings():
        # the cluster's own start-up/shut-down chatter is not ours
        warnings.simplefilter("ignore")
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      host="127.0.0.1", dashboard_address=None) as cluster, \
                distributed.Client(cluster) as client:
            out = restore_dask(y, "tv", sigma=0.1, weight=0.08, tol=1e-8, threads=1)
            with distributed.get_task_stream(client) as stream:
                result = client.compute(out).result()
            workers = {task["worker"] for task in stream.data}
    assert len(workers) == 2  # both workers did a share
    assert np.abs(result - whole).max() < 1e-3


def test_numpy_input_is_wrapped(rng):
    y = rng.random((50, 70))
    out = restore_dask(y, "tv", sigma=0.1, weight=0.1, tile=32, overlap=8, tol=1e-8)
    # 70 = 32 + 32 + 6: the 6-pixel chunk is narrower than the overlap and is widened
    assert out.chunks == ((32, 18), (32, 30, 8))
    whole = restore(y, "tv", sigma=0.1, weight=0.1, tol=1e-8).map
    np.testing.assert_allclose(out.compute(), whole, atol=1e-3)


@pytest.mark.parametrize(
    "array, kwargs, match",
    [
        (np.zeros((8, 8), np.uint8), {}, "array"),
        (np.zeros((2, 2, 2, 8, 8)), {}, "array"),
        ([[0.0]], {}, "array"),
        (np.zeros((8, 8)), dict(overlap=-2), "overlap"),
        (np.zeros((8, 8)), dict(tile=0), "tile"),
        (np.zeros((8, 8)), dict(return_std=True), "return_std"),
        (np.zeros((8, 8)), dict(method="nope"), "method"),
        (np.zeros((8, 8)), dict(threads=0), "threads"),
        (np.zeros((8, 8)), dict(operator=Blur(gaussian_psf(3, 1.0))), "operator"),
        (np.zeros((8, 8)), dict(operator=Mask(np.ones((3, 3), bool))), "operator"),
    ],
)
def test_bad_arguments_are_named(array, kwargs, match):
    kwargs = {"sigma": 0.1, "weight": 0.1, **kwargs}
    with pytest.raises(ValueError, match=match):
        restore_dask(array, **kwargs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_chunks(noisy):  # pragma: no cover - no GPU in CI
    y = da.from_array(noisy.astype(np.float32), chunks=96)
    cpu = restore_dask(y, sigma=0.1, weight=0.08, tol=1e-7).compute()
    gpu = restore_dask(y, sigma=0.1, weight=0.08, tol=1e-7, device="cuda").compute()
    np.testing.assert_allclose(gpu, cpu, atol=1e-4)


def test_thin_images_stacks_parameters_and_threads(rng):
    thin = rng.random((10, 120))
    out, params = restore_dask(da.from_array(thin, chunks=(10, 40)), "tv", sigma=0.1,
                               weight=0.1, tol=1e-8, return_parameters=True)
    whole = restore(thin, "tv", sigma=0.1, weight=0.1, tol=1e-8).map
    assert np.abs(out.compute() - whole).max() < 1e-3
    assert params["overlap"] == 32 and params["sigma"] == 0.1
    stack = rng.random((5, 1, 40, 40))
    lazy, params = restore_dask(stack, "tv", return_parameters=True)
    assert lazy.chunks[0] == (1,) * 5  # numpy stacks: one image per task
    assert "sigma_estimated" in params and "weight_estimated" in params
    before = torch.get_num_threads()
    restore_dask(stack, "tv", sigma=0.1, weight=0.1, threads=1).compute(scheduler="sync")
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="generator"):
        restore_dask(stack, "tv", sigma=0.1, weight=0.1, method="mcmc",
                     generator=torch.Generator())
