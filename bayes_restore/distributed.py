"""``restore_dask``: restoration of dask arrays, lazily, on whatever scheduler is active."""

from __future__ import annotations

import threading
import warnings
from functools import partial
from typing import Any

import numpy as np
import torch
from torch.distributions import Distribution

from bayes_restore._validation import check_int, check_seed, parse_device
from bayes_restore.engines import ENGINES, check_engine_kwargs, check_method
from bayes_restore.operators import Diagonal, LinearOperator, as_operator
from bayes_restore.restore import restore
from bayes_restore.tiled import resolve_shared_parameters
from bayes_restore.tiling import DEFAULT_TILE, auto_overlap, check_overlap, parameter_slices

__all__ = ["restore_dask"]

#: Pyro's handler stack and parameter store are process globals: one restoration at a time
#: per process (torch's intra-op threads still use every core inside a chunk)
_PYRO_LOCK = threading.Lock()


def _import_dask():
    try:
        import dask.array as da
    except ImportError as err:  # pragma: no cover - exercised without the extra
        raise ImportError(
            'restore_dask needs dask: pip install "bayes-restore[distributed]"'
        ) from err
    return da


def restore_dask(
    array: Any,
    prior: str | Distribution = "tv",
    *,
    overlap: int | None = None,
    tile: int | None = None,
    sigma: float | None = None,
    scale: float | None = None,
    weight: float | None = None,
    beta: float | None = None,
    operator: LinearOperator | None = None,
    method: str = "map",
    return_std: bool = False,
    device: str | None = None,
    threads: int | None = None,
    return_parameters: bool = False,
    channel_axis: int | None = None,
    seed: int | None = 0,
    **engine_kwargs: Any,
) -> Any:
    r"""Restore a dask array chunk by chunk, with overlap: a lazy dask array of the MAP.

    Each chunk is restored with ``overlap`` pixels of its neighbours on every inner side
    (``dask.array.overlap.overlap`` with no padding at the image border), by
    :func:`~bayes_restore.restore`, and trimmed back to the chunk: the same computation as
    :func:`~bayes_restore.restore_tiled` with the chunks as tiles. Nothing runs until the
    result is computed or stored (``.compute()``, ``.to_zarr(...)``), on whichever
    scheduler is active: threads, processes or a ``dask.distributed`` cluster. Memory per
    task is bounded by the chunk size plus the overlap, so arrays larger than memory (zarr
    stores, TIFF stacks read lazily) stream through. Pyro's handler stack is global to a
    process, so a process restores one chunk at a time (torch's own threads work inside
    it); chunks run in parallel across the processes or workers of the scheduler.

    ``sigma`` and the prior scale are shared by all chunks (the TV scale is not sampled
    per chunk with ``method="mcmc"``): given, or estimated now (as
    :func:`~bayes_restore.restore_tiled` does: the whole image when it has at most
    4 megapixels, else four corner crops, with the same windows of a mask's gains), which
    computes those crops.

    Parameters
    ----------
    array : dask.array.Array or numpy.ndarray
        Float image ``(H, W)``, ``(C, H, W)`` or ``(N, C, H, W)``; a numpy array is wrapped
        with chunks of ``tile`` (default 1024) pixels a side. The channel axis is kept in
        one chunk; images of a stack may be chunked.
    prior, sigma, scale, weight, beta, method, **engine_kwargs
        As in :func:`~bayes_restore.restore`.
    overlap : int, optional
        Pixels borrowed from each neighbouring chunk; by default
        :func:`~bayes_restore.tiling.auto_overlap` (32 for TV; see the Large images page of
        the documentation).
    tile : int, optional
        Rechunk the two image axes to this size first.
    operator : LinearOperator, optional
        A pixel-diagonal operator (``tileable``): inpainting's :class:`Mask` or a
        pointwise gain. Its ``(H, W)`` gains (in memory) are chunked and overlapped with
        the image. Other operators couple chunks and are refused.
    return_std : bool, default False
        Also return the per-pixel posterior std (needs ``method`` "exact", "vi" or
        "mcmc"). Both arrays come from one task graph: compute them together
        (``dask.compute(map, std)``) to run it once.
    device : str, optional
        Where each chunk is restored (``"cuda"`` on GPU workers); results come back as
        numpy.
    threads : int, optional
        ``torch.set_num_threads`` during each task (restored after it): 1 avoids
        oversubscription when the scheduler already runs one task per core.
    return_parameters : bool, default False
        Also return a dict of the shared parameters (``sigma``, ``scale`` or ``weight``,
        what was estimated, the ``overlap`` used).
    channel_axis : int, optional
        The colour axis (``-1`` for ``(H, W, 3)`` arrays), as in
        :func:`~bayes_restore.restore`; the result keeps it there.
    seed : int or None, default 0
        Seeds every draw: chunk ``k`` (in row-major order) uses seed ``seed + k``, so
        the result does not depend on the scheduler; ``None``: fresh entropy.

    Returns
    -------
    dask.array.Array or tuple
        The MAP (``method="map"``) or the posterior mean, with the input's shape, chunks
        (chunks narrower than ``overlap`` widened; channels in one chunk) and dtype; the
        pair ``(mean, std)`` when ``return_std``; and the parameters dict after them when
        ``return_parameters``.

    Raises
    ------
    ValueError
        Naming the argument: not a float array of 2-4 dimensions, a bad ``overlap`` or
        ``tile``, ``return_std`` with ``method="map"``, an operator that cannot be chunked.

    Examples
    --------
    >>> import dask.array as da, numpy as np
    >>> y = da.from_array(np.random.default_rng(0).random((96, 80)), chunks=48)
    >>> x = restore_dask(y, "tv", sigma=0.1, weight=0.05, overlap=16, tol=1e-8)
    >>> x.chunks
    ((48, 48), (48, 32))
    >>> whole = restore(y.compute(), "tv", sigma=0.1, weight=0.05, tol=1e-8).map
    >>> float(abs(x.compute() - whole).max()) < 1e-3
    True
    """
    da = _import_dask()
    check_method(method)
    seed = check_seed(seed)
    check_engine_kwargs(method, engine_kwargs)
    overlap = check_overlap(overlap)
    if tile is not None:
        tile = check_int(tile, "tile", 1)
    if return_std and not ENGINES[method].gives_std:
        raise ValueError("return_std needs method='exact', 'vi' or 'mcmc' (MAP has no std)")
    if threads is not None:
        threads = check_int(threads, "threads", 1)
    if engine_kwargs.get("generator") is not None:
        raise ValueError("generator: give seed= instead (each chunk derives its own stream)")
    if device is not None:
        parse_device(device)  # the workers may have a GPU that this process lacks
    x = _as_dask(da, array, tile or DEFAULT_TILE)
    moved = _channel_axis(x, channel_axis)
    if moved is not None:
        x = da.moveaxis(x, moved, -3)
    if tile is not None:
        x = x.rechunk({x.ndim - 2: tile, x.ndim - 1: tile})
    if x.ndim >= 3:
        x = x.rechunk({x.ndim - 3: -1})  # one chunk of channels: TV couples nothing else
    mask2d = _check_mask(operator, x.shape)

    def sample() -> tuple[torch.Tensor, Diagonal | None]:
        # computed only when a parameter is to be estimated; with a mask, its windows too
        stack = x.reshape((1,) * (4 - x.ndim) + tuple(x.shape)) if x.ndim < 4 else x
        lead, windows = parameter_slices(tuple(stack.shape))
        part = x if lead is None else stack[:lead]  # the whole input, as restore() sees it
        if windows is None:
            pixels = torch.from_numpy(np.asarray(part.compute()))
            gains = None if mask2d is None else torch.from_numpy(mask2d).to(pixels.dtype)
        else:
            crops = da.compute(*[part[0][(...,) + w] for w in windows])
            pixels = torch.stack([torch.from_numpy(np.asarray(c)) for c in crops])
            gains = None if mask2d is None else torch.stack(
                [torch.from_numpy(mask2d[w]) for w in windows]).unsqueeze(-3).to(pixels.dtype)
        return pixels, None if gains is None else Diagonal(gains)

    shared, estimated = resolve_shared_parameters(
        sample, prior, sigma=sigma, scale=scale, weight=weight, beta=beta, seed=seed,
    )
    if shared["sigma"] == 0.0:  # estimated on a constant or noise-free image
        warnings.warn("the estimated noise level is 0 (a constant or noise-free image): "
                      "the array is returned unchanged; give sigma= to restore it",
                      UserWarning, stacklevel=2)
        out = x if moved is None else da.moveaxis(x, -3, moved)
        out = (out, da.zeros_like(out)) if return_std else out
        return (out, {**estimated, "sigma": 0.0}) if return_parameters else out
    if overlap is None:
        overlap = auto_overlap(shared, mask=None if mask2d is None
                               else torch.from_numpy(np.ascontiguousarray(mask2d != 0)))
    x = _ensure_min_chunks(da, x, overlap)
    # depth per image axis: none along an axis in one chunk (nothing to borrow), and never
    # more than the axis
    depth = {ax: 0 if len(x.chunks[ax]) == 1 else min(overlap, x.shape[ax])
             for ax in (x.ndim - 2, x.ndim - 1)}
    ext = da.overlap.overlap(x, depth=depth, boundary="none")
    args = [ext]
    if mask2d is not None:  # the 2-D mask, chunked like the image's last two axes
        m = da.from_array(mask2d, chunks=x.chunks[-2:])
        args.append(da.overlap.overlap(m, depth={0: depth[x.ndim - 2], 1: depth[x.ndim - 1]},
                                       boundary="none"))
    func = partial(_restore_block, depth=(depth[x.ndim - 2], depth[x.ndim - 1]),
                   kwargs={**shared, **engine_kwargs}, seed=seed, method=method,
                   with_std=return_std,
                   device=device, threads=threads, has_mask=mask2d is not None)
    if not return_std:
        out = da.map_blocks(func, *args, dtype=x.dtype, chunks=x.chunks,
                            meta=np.empty((0,) * x.ndim, x.dtype))
    else:
        both = da.map_blocks(func, *args, dtype=x.dtype, chunks=((2,),) + x.chunks,
                             new_axis=0, meta=np.empty((0,) * (x.ndim + 1), x.dtype))
        out = (both[0], both[1])
    if moved is not None:
        out = (tuple(da.moveaxis(o, -3, moved) for o in out) if return_std
               else da.moveaxis(out, -3, moved))
    if return_parameters:
        parameters = {k: v for k, v in shared.items() if k != "prior" and v is not None}
        return out, {**parameters, **estimated, "overlap": overlap}
    return out


def _as_dask(da, array: Any, chunk: int):
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    if isinstance(array, np.ndarray):
        chunks = {array.ndim - 2: chunk, array.ndim - 1: chunk}
        if array.ndim == 4:
            chunks[0] = 1  # one image of a stack per task
        array = da.from_array(array, chunks=chunks)
    if not isinstance(array, da.Array):
        raise ValueError(
            f"array must be a dask array or a numpy array, got {type(array).__name__}"
        )
    if array.dtype not in (np.float32, np.float64):
        raise ValueError(
            f"array must be float32 or float64 (values in [0, 1]), got {array.dtype}"
        )
    if array.ndim not in (2, 3, 4):
        raise ValueError(
            f"array must be (H, W), (C, H, W) or (N, C, H, W), got {array.ndim} dimensions"
        )
    return array


def _channel_axis(x, channel_axis: Any) -> int | None:
    """The negative colour axis to move to the channels-first place, or None."""
    if channel_axis is None:
        if x.ndim >= 3 and x.shape[-1] in (3, 4) and x.shape[-3] > 4:
            raise ValueError(
                f"array has shape {tuple(x.shape)}: channels-last colour? Give "
                f"channel_axis=-1, or channel_axis={x.ndim - 3} if the channels come first"
            )
        return None
    if isinstance(channel_axis, bool) or not isinstance(channel_axis, (int, np.integer)):
        raise TypeError(f"channel_axis must be an integer or None, got {channel_axis!r}")
    if x.ndim < 3 or not -x.ndim <= channel_axis < x.ndim:
        raise ValueError(f"channel_axis={channel_axis} does not fit a {x.ndim}-D array")
    axis = int(channel_axis) - x.ndim if channel_axis >= 0 else int(channel_axis)
    return None if axis == -3 else axis


def _ensure_min_chunks(da, x, overlap: int):
    """Chunks at least ``overlap`` wide (dask's overlap borrows from one neighbour only)."""
    from dask.array.overlap import ensure_minimum_chunksize

    chunks = list(x.chunks)
    for axis in (x.ndim - 2, x.ndim - 1):
        if overlap and min(chunks[axis]) < overlap:
            chunks[axis] = ensure_minimum_chunksize(min(overlap, x.shape[axis]), chunks[axis])
    return x.rechunk(tuple(chunks)) if chunks != list(x.chunks) else x


def _check_mask(operator, shape) -> np.ndarray | None:
    """The 2-D gains of a pixel-diagonal operator (masks: 0/1; None for the identity); a
    ``ValueError`` for operators that couple chunks and for gains that vary along the
    leading axes."""
    op = as_operator(operator)
    if op.is_identity:
        return None
    if not op.tileable:
        raise ValueError(
            f"operator: restore_dask needs an operator that acts on each pixel alone (masks, "
            f"pointwise gains), got {op!r} (a blur or decimation couples pixels across chunks)"
        )
    gains = op.structure().d.detach().cpu().to(torch.float64).numpy()
    if tuple(gains.shape[-2:]) != tuple(shape[-2:]) or any(d != 1 for d in gains.shape[:-2]):
        raise ValueError(
            f"operator: restore_dask takes one (H, W) mask or gain map for all images, got "
            f"shape {gains.shape} for an array of shape {tuple(shape)}"
        )
    return gains.reshape(gains.shape[-2:])


def _restore_block(block, mask=None, *, depth, kwargs, seed, method, with_std, device, threads,
                   has_mask, block_info=None):
    """Restore one overlapped chunk and trim it to the chunk's own pixels."""
    info = block_info[0]
    location, counts = info["chunk-location"], info["num-chunks"]
    chunk = int(np.ravel_multi_index(location, counts))
    kwargs = {**kwargs, "seed": None if seed is None else seed + chunk}
    operator = Diagonal(np.ascontiguousarray(mask)) if has_mask else None
    with _PYRO_LOCK:  # read under the lock: another block may hold its own count
        previous = torch.get_num_threads()
        if threads is not None:
            torch.set_num_threads(threads)
        try:
            post = restore(np.ascontiguousarray(block), operator=operator, method=method,
                           device=device, **kwargs)
        finally:
            torch.set_num_threads(previous)
    trim = []
    for axis, d in zip((-2, -1), depth, strict=True):
        loc, count, size = location[axis], counts[axis], block.shape[axis]
        start = d if loc > 0 else 0
        stop = size - d if loc < count - 1 else size
        trim.append(slice(start, stop))
    point = post.map if method == "map" else post.mean
    out = point[(...,) + tuple(trim)]
    if not with_std:
        return out
    return np.stack([out, post.std[(...,) + tuple(trim)]])
