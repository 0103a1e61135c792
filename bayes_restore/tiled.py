"""``restore_tiled``: restore large images and stacks tile by tile, in memory-bounded batches.

The tile geometry and the batch budget are :mod:`bayes_restore.tiling`; its public names are
re-exported here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.distributions import Distribution

from bayes_restore._validation import check_int, check_seed
from bayes_restore.engines import check_engine_kwargs, check_method
from bayes_restore.operators import Diagonal, LinearOperator, as_operator
from bayes_restore.parameters import resolve_parameters, unchanged_posterior
from bayes_restore.posterior import Posterior, SolverInfo, TiledDiagnostics
from bayes_restore.restore import check_observation, restore, to_device
from bayes_restore.tiling import (
    DEFAULT_OVERLAP,
    DEFAULT_TILE,
    PARAMETER_PIXELS,
    Tile,
    auto_overlap,
    check_overlap,
    hole_radius,
    parameter_slices,
    parameter_windows,
    parse_memory,
    tile_grid,
    units_per_batch,
)

__all__ = [
    "restore_tiled",
    "tile_grid",
    "auto_overlap",
    "hole_radius",
    "parse_memory",
    "DEFAULT_TILE",
    "DEFAULT_OVERLAP",
    "PARAMETER_PIXELS",
    # re-exported from bayes_restore.tiling too
    "Tile",
    "check_overlap",
    "parameter_windows",
    "parameter_slices",
]


def prior_spec(prior: str | Distribution) -> tuple[str | Distribution, dict]:
    """The prior to give each tile's :func:`~bayes_restore.restore`, and fixed keywords.

    A name passes through. An instance of the gradient family (it has a
    ``gradient_order``) is re-expressed as the ``"gradient"`` family with its ``beta``
    and scale (one scale for all images), so each tile gets a prior of its own shape; any
    other instance must say how to change its shape (``with_shape``) and is resized per
    batch of tiles.
    """
    if isinstance(prior, str):
        return prior, {}
    order = getattr(prior, "gradient_order", None)
    if order is None:
        if not callable(getattr(prior, "with_shape", None)):
            raise ValueError(
                "prior: a prior instance is tiled through its with_shape(shape) method, which "
                f"{type(prior).__name__} does not have; give a prior name"
            )
        if tuple(getattr(prior, "batch_shape", ())) != ():
            raise ValueError("prior: restore_tiled needs one prior for all images (no batch)")
        return prior, {}
    scale = torch.as_tensor(prior.scale).double()
    if scale.numel() != 1 and not bool((scale == scale.flatten()[0]).all()):
        raise ValueError("prior: restore_tiled needs one prior scale for all images")
    name = "gradient" if prior.isotropic or order == 2.0 else "gradient-anisotropic"
    return name, {"beta": float(order), "scale": float(scale.flatten()[0])}



def resolve_shared_parameters(
    sample: Callable[[], torch.Tensor],
    prior: str | Distribution,
    *,
    sigma: float | None,
    scale: float | None,
    weight: float | None,
    beta: float | None,
    seed: int | None = 0,
) -> tuple[dict, dict]:
    """One ``sigma`` and prior scale for every tile; ``sample()`` gives the pixels to estimate
    them from and the operator that acts on exactly those pixels (``(pixels, operator)``:
    with a mask, its windows), and is called only when something is to be estimated.

    Returns the keywords to give each tile's :func:`~bayes_restore.restore` and the
    estimation record.
    """
    name, fixed = prior_spec(prior)
    if fixed and (scale is not None or weight is not None or beta is not None):
        raise ValueError("give scale, weight or beta only with a prior name, not an instance")
    if fixed:
        scale, beta = fixed["scale"], fixed["beta"]
    needed = sigma is None or (scale is None and weight is None)
    pixels, operator = sample() if needed else (torch.zeros(2, 2), None)
    sigma, scale, weight, info = resolve_parameters(
        pixels, name, sigma=sigma, scale=scale, weight=weight, beta=beta, operator=operator,
        seed=seed,
    )
    kwargs = {"prior": name, "sigma": sigma, "scale": scale, "weight": weight, "beta": beta}
    return kwargs, info



def _batches(units: list, per_batch: int) -> Iterator[list]:
    """``(image, tile)`` units of equal window shape, ``per_batch`` at a time."""
    groups: dict[tuple[int, int], list] = {}
    for unit in units:
        groups.setdefault(unit[1].shape, []).append(unit)
    for group in groups.values():
        for i in range(0, len(group), per_batch):
            yield group[i:i + per_batch]


def restore_tiled(
    image: Any,
    prior: str | Distribution = "tv",
    *,
    tile: int = DEFAULT_TILE,
    overlap: int | None = None,
    sigma: float | None = None,
    scale: float | None = None,
    weight: float | None = None,
    beta: float | None = None,
    operator: LinearOperator | None = None,
    method: str = "map",
    max_memory: int | str | None = "1GiB",
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    keep_samples: bool = False,
    progress: bool = False,
    channel_axis: int | None = None,
    seed: int | None = 0,
    **engine_kwargs: Any,
) -> Posterior:
    r"""Restore an image (or a stack) tile by tile: :func:`~bayes_restore.restore` at scale.

    The image is cut into cores of at most ``tile`` pixels a side; each core is restored
    with ``overlap`` extra pixels on every side that is not the image border, and only the
    core is kept. TV's and the Gaussian prior's influence decays fast with distance (a cut
    changes the TV MAP by less than 1e-4 at 32 pixels from it on natural images at
    ``sigma`` 0.05-0.2: see the Large images page), so the stitched result has no seams and equals
    the whole-image result up to the solvers' own tolerance. Tiles of equal shape are
    restored together as one batch, as many as fit in ``max_memory`` (and, on a CPU, in
    about a megapixel, where the caches still hold the solver's arrays); stacks
    ``(N, C, H, W)`` are tiled image by image in the same batches, so ``tile`` larger
    than the images simply batches the stack.

    ``sigma`` and the prior scale are shared by all tiles (so, unlike
    :func:`~bayes_restore.restore` with ``method="mcmc"``, the TV scale is not sampled per
    tile: it is fixed at SURE's estimate unless given): given, or estimated once
    (as :func:`~bayes_restore.restore` does) on the whole image when it has at most
    :data:`~bayes_restore.tiling.PARAMETER_PIXELS` pixels, else on four crops at its corners.

    Parameters
    ----------
    image : numpy.ndarray or torch.Tensor
        Observation ``(H, W)``, ``(C, H, W)`` or ``(N, C, H, W)`` (dtypes as in
        :func:`~bayes_restore.restore`).
    prior, sigma, scale, weight, beta, method, channel_axis, **engine_kwargs
        As in :func:`~bayes_restore.restore`.
    tile : int, default 1024
        Largest side of a core tile.
    overlap : int, optional
        Pixels added on each inner side of a tile; by default
        (:func:`~bayes_restore.tiling.auto_overlap`) 32 for TV, more for a strongly smoothing
        Gaussian-gradient prior.
    operator : LinearOperator, optional
        Pointwise operators only (a blur couples pixels across tiles).
    max_memory : int or str or None, default "1GiB"
        Working-memory budget of one batch of tiles (bytes, or ``"512MB"``...). ``None``:
        one tile per batch unless ``batch_size`` says otherwise.
    batch_size : int, optional
        Tiles per batch, overriding ``max_memory``.
    device : str or torch.device, optional
        Where the tiles are restored (``"cuda"``...); default the input's device. The
        result is on the input's device (numpy for numpy input).
    keep_samples : bool, default False
        Also stitch the engine's draws into ``samples`` (``(chain, draw, *image_shape)``:
        as large as ``num_samples * num_chains`` images, so off by default). Draws of
        different tiles are independent: per-pixel marginals and intervals are right,
        joint statistics across tiles are not.
    progress : bool, default False
        A progress bar over batches (tqdm).
    seed : int or None, default 0
        Seeds every draw: batch ``k`` of tiles (in order) gets ``seed + k``'s stream,
        so reruns are identical and batches independent; ``None``: fresh entropy.

    Returns
    -------
    Posterior
        As from :func:`~bayes_restore.restore`; ``info`` has the wall time of the whole
        call, the worst gap and the most iterations over tiles; ``diagnostics["tiles"]`` describes
        the tiling and ``diagnostics["parameters"]`` the shared parameters.

    Raises
    ------
    ValueError
        Naming the argument: a bad image, ``tile`` or ``overlap`` not a positive /
        non-negative integer, an operator that cannot be tiled, an unknown method.

    Examples
    --------
    >>> import numpy as np
    >>> y = np.random.default_rng(0).random((96, 80))
    >>> whole = restore(y, "tv", sigma=0.1, weight=0.05, tol=1e-8).map
    >>> tiled = restore_tiled(y, "tv", sigma=0.1, weight=0.05, tile=48, overlap=16, tol=1e-8)
    >>> tiled.diagnostics["tiles"]["count"], float(abs(tiled.map - whole).max()) < 1e-3
    (4, True)
    """
    start = time.perf_counter()
    check_method(method)
    seed = check_seed(seed)
    check_engine_kwargs(method, engine_kwargs)
    tile = check_int(tile, "tile", 1)
    overlap = check_overlap(overlap)
    if batch_size is not None:
        batch_size = check_int(batch_size, "batch_size", 1)
    budget = parse_memory(max_memory)
    y, layout = check_observation(image, channel_axis)
    work_device = to_device(y[..., :0, :0], device).device
    stack = _as_stack(y)  # (N, C, H, W) view
    gains = _stack_gains(operator, y)

    # tiled.PARAMETER_PIXELS, looked up at the call: the knob stays this module's
    lead, windows = parameter_slices(tuple(stack.shape), PARAMETER_PIXELS)

    def sample() -> tuple[torch.Tensor, LinearOperator | None]:
        if lead is None and windows is None:
            return y, operator  # the whole input, as restore() would see it
        part = stack[:lead]
        part_gains = None if gains is None else gains[:lead]
        if windows is not None:  # corner windows of the first image, and of its gains
            part = torch.stack([part[0][(...,) + w] for w in windows])
            if part_gains is not None:
                part_gains = torch.stack([part_gains[0][(...,) + w] for w in windows])
        return part, None if part_gains is None else Diagonal(part_gains)

    shared, estimated = resolve_shared_parameters(
        sample, prior, sigma=sigma, scale=scale, weight=weight, beta=beta, seed=seed,
    )
    if shared["sigma"] == 0.0:  # estimated on a constant or noise-free image
        return unchanged_posterior(y, method, estimated).map_images(layout.give_back)
    if overlap is None:
        overlap = auto_overlap(shared, mask=None if gains is None else gains[0, 0] != 0)
    tiles = tile_grid(tuple(y.shape[-2:]), tile, overlap)
    units = [(n, t) for n in range(stack.shape[0]) for t in tiles]
    per_batch = batch_size or units_per_batch(tiles, stack, method, budget, engine_kwargs,
                                               work_device)

    out: dict[str, torch.Tensor] = {}
    infos: list[SolverInfo] = []
    diagnostics: list[dict] = []
    batches = list(_batches(units, per_batch))
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc="tiles", unit="batch")
    done = 0
    for batch in batches:
        windows_ = torch.stack([stack[n][(...,) + t.window] for n, t in batch]).to(work_device)
        kwargs = dict(engine_kwargs)
        if "generator" not in kwargs:  # independent, reproducible noise per batch
            kwargs["seed"] = None if seed is None else seed + done
        op = None
        if gains is not None:  # the operator on the batch's windows
            op = Diagonal(torch.stack([gains[n][(...,) + t.window] for n, t in batch])
                          .to(work_device))
        prior = shared["prior"]
        if not isinstance(prior, str):  # an instance: resized to the tiles
            prior = prior.with_shape(tuple(windows_.shape[1:]))
        post = restore(windows_, operator=op, method=method, **{**shared, "prior": prior},
                       **kwargs)
        _place(out, post, batch, stack, keep_samples)
        done += len(batch)
        if post.info is not None:
            infos.append(post.info)
        diagnostics.append(post.diagnostics)

    parameters = {**diagnostics[0]["parameters"], **estimated}
    info = _merge_infos(infos, time.perf_counter() - start)
    fields = {}
    for name, value in out.items():
        value = value.reshape(value.shape[:2] + tuple(y.shape) if name == "samples"
                              else tuple(y.shape))
        fields[name] = layout.give_back(value)
    return Posterior(
        method=method,
        info=info,
        diagnostics=TiledDiagnostics(
            parameters=parameters,
            tiles={"count": len(tiles), "tile": tile, "overlap": overlap,
                   "batches": len(batches), "per_batch": per_batch, "device": str(work_device)},
            gaussian=all(bool(d.get("gaussian", False)) for d in diagnostics),
        ),
        **fields,
    )


def _as_stack(t: torch.Tensor) -> torch.Tensor:
    """A ``(N, C, H, W)`` view of an ``(H, W)``, ``(C, H, W)`` or ``(N, C, H, W)`` tensor."""
    while t.dim() < 4:
        t = t.unsqueeze(0)
    return t


def _stack_gains(operator: LinearOperator | None, y: torch.Tensor) -> torch.Tensor | None:
    """The gains of a pixel-diagonal operator broadcast to the image, as an ``(N, C, H, W)``
    view; ``None`` for the identity; a ``ValueError`` for operators that cannot be tiled."""
    op = as_operator(operator)
    if op.is_identity:
        return None
    if not op.tileable:
        raise ValueError(
            f"operator: tiled restoration needs an operator that acts on each pixel alone "
            f"(identity, masks, pointwise gains), got {op!r} (a blur or decimation couples "
            "pixels across tiles; restore the whole image instead)"
        )
    gains = op.structure().d
    try:
        full = gains.to(device=y.device, dtype=y.dtype).expand(y.shape)
    except RuntimeError:
        raise ValueError(
            f"operator: its gains of shape {tuple(gains.shape)} do not broadcast to the "
            f"image's {tuple(y.shape)}"
        ) from None
    return _as_stack(full)



def _place(out: dict, post: Posterior, batch: list, stack: torch.Tensor, keep_samples: bool):
    """Copy the cores of a batch's results into the stitched ``(N, C, H, W)`` fields."""
    for name in ("map", "mean", "std", "samples"):
        value = getattr(post, name)
        if value is None or (name == "samples" and not keep_samples):
            continue
        value = torch.as_tensor(value).to(stack.device)
        lead = tuple(value.shape[:2]) if name == "samples" else ()
        if name not in out:
            out[name] = torch.empty(lead + tuple(stack.shape), dtype=value.dtype,
                                    device=stack.device)
        elif lead and tuple(out[name].shape[:2]) != lead:
            raise ValueError(
                f"keep_samples: the engine kept {lead[1]} draws for one batch of tiles and "
                f"{out[name].shape[1]} for another (its memory cap thinned them); use "
                "keep_samples=False or fewer draws"
            )
        ix = (slice(None),) * len(lead)
        for k, (n, t) in enumerate(batch):
            out[name][ix + (n, slice(None)) + t.core] = value[ix + (k, slice(None)) + t.inner]


def _merge_infos(infos: list[SolverInfo], elapsed: float) -> SolverInfo | None:
    if not infos:
        return None
    gaps = [i.gap for i in infos if i.gap is not None]
    return SolverInfo(
        solver=infos[0].solver,
        iterations=max(i.iterations for i in infos),
        converged=all(i.converged for i in infos),
        time=elapsed,
        gap=max(gaps) if gaps else None,
    )
