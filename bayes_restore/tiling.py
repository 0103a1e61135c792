"""The tiling of large images: tile geometry, where the shared parameters are estimated,
the overlap, and the memory budget of a batch of tiles."""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any

import torch

from bayes_restore._validation import check_int, check_positive
from bayes_restore.energy import weight_from_scale
from bayes_restore.engines import ENGINES
from bayes_restore.priors import make_prior

__all__ = [
    "Tile",
    "tile_grid",
    "check_overlap",
    "parse_memory",
    "parameter_windows",
    "parameter_slices",
    "auto_overlap",
    "hole_radius",
    "units_per_batch",
    "DEFAULT_TILE",
    "DEFAULT_OVERLAP",
    "PARAMETER_PIXELS",
    "CPU_BATCH_PIXELS",
]

#: default core tile side (pixels)
DEFAULT_TILE = 1024
#: default overlap on each side of a tile (pixels) for TV; see the Large images page
DEFAULT_OVERLAP = 32
#: the noise level and prior scale are estimated on at most this many pixels per image
PARAMETER_PIXELS = 2048 * 2048
#: on a CPU, batches of at most this many pixels: beyond about a megapixel the arrays of
#: the eager (torch) engines leave the caches and the cost per pixel doubles
#: (Large images page; the TV MAP's fused kernels are immune); small tiles are still batched
#: together, which saves the per-call overhead
CPU_BATCH_PIXELS = 2**20


@dataclass(frozen=True)
class Tile:
    """One tile: the extended window that is restored and the core that is kept.

    ``window`` and ``core`` are ``(rows, cols)`` slices of the whole image; ``inner``
    is the core's position inside the window.
    """

    window: tuple[slice, slice]
    core: tuple[slice, slice]

    @property
    def inner(self) -> tuple[slice, slice]:
        """The core in the window's coordinates."""
        pairs = zip(self.core, self.window, strict=True)
        return tuple(slice(c.start - w.start, c.stop - w.start) for c, w in pairs)

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, cols)`` of the window."""
        return tuple(s.stop - s.start for s in self.window)


def _splits(n: int, tile: int) -> list[tuple[int, int]]:
    """``ceil(n / tile)`` nearly equal consecutive intervals covering ``range(n)``."""
    count = max(1, math.ceil(n / tile))
    edges = [round(i * n / count) for i in range(count + 1)]
    return list(zip(edges[:-1], edges[1:], strict=True))


def tile_grid(shape: tuple[int, int], tile: int, overlap: int) -> list[Tile]:
    """Cut an ``(H, W)`` image into cores of at most ``tile`` pixels a side, each extended
    by ``overlap`` pixels on every side that is not the image's border.

    The cores partition the image (nearly equal sizes); the windows overlap by
    ``2 * overlap``.

    Examples
    --------
    >>> [t.window for t in tile_grid((10, 4), tile=5, overlap=2)]
    [(slice(0, 7, None), slice(0, 4, None)), (slice(3, 10, None), slice(0, 4, None))]
    """
    h, w = shape
    tiles = []
    for r0, r1 in _splits(h, tile):
        for c0, c1 in _splits(w, tile):
            window = (slice(max(r0 - overlap, 0), min(r1 + overlap, h)),
                      slice(max(c0 - overlap, 0), min(c1 + overlap, w)))
            tiles.append(Tile(window=window, core=(slice(r0, r1), slice(c0, c1))))
    return tiles


def check_overlap(overlap: Any) -> int | None:
    """``None`` (automatic) or a non-negative integer (returned), else a ``ValueError``."""
    return None if overlap is None else check_int(overlap, "overlap", 0)


def parse_memory(value: int | float | str | None, name: str = "max_memory") -> int | None:
    """Bytes from ``1e9``, ``"512MB"``, ``"2 GiB"``...; ``None`` stays ``None``.

    Examples
    --------
    >>> parse_memory("1.5 GiB")
    1610612736
    >>> parse_memory("200MB")
    200000000
    """
    if value is None:
        return None
    if isinstance(value, str):
        units = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
                 "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
        text = value.strip().lower().replace(" ", "")
        number = text.rstrip("abcdefghijklmnopqrstuvwxyz")
        unit = text[len(number):]
        if unit not in units or not number:
            raise ValueError(f"{name} must be a number of bytes or like '512MB', got {value!r}")
        value = float(number) * units[unit]
    check_positive(value, name)
    return int(value)


def parameter_windows(shape: tuple[int, int], max_pixels: int | None = None):
    """Where the shared parameters are estimated: ``None`` for the whole image when it has
    at most ``max_pixels`` pixels, else four ``(rows, cols)`` crops at its corners.

    Examples
    --------
    >>> parameter_windows((100, 100), 400)
    [(slice(0, 10, None), slice(0, 10, None)), (slice(0, 10, None), slice(90, 100, None)), \
(slice(90, 100, None), slice(0, 10, None)), (slice(90, 100, None), slice(90, 100, None))]
    """
    h, w = shape
    max_pixels = PARAMETER_PIXELS if max_pixels is None else max_pixels
    if h * w <= max_pixels:
        return None
    side = max(min(math.isqrt(max_pixels // 4), h, w), 1)
    return [(slice(r, r + side), slice(c, c + side)) for r in (0, h - side) for c in (0, w - side)]


def auto_overlap(shared: dict, mask: torch.Tensor | None = None) -> int:
    """The default overlap for the shared parameters (see the Large images page of the docs).

    TV (and orders ``beta < 2``): :data:`DEFAULT_OVERLAP`, 32 pixels, where the tiling
    error measured below 1e-4 at sigma 0.05-0.2. The Gaussian-gradient prior smooths over
    ``sqrt(lambda)`` pixels (the Green's function of ``I - lambda Laplacian`` decays as
    ``exp(-d / sqrt(lambda))``): ``max(32, ceil(7 sqrt(lambda)))``, which keeps the error
    below 1e-3 for image contrasts up to 1. With a ``mask`` (inpainting), the largest
    distance from a missing pixel to an observed one is added: a hole's pixels take
    their values from the hole's rim, which the tile must contain.

    Examples
    --------
    >>> auto_overlap({"prior": "tv", "sigma": 0.1, "weight": 0.2, "scale": None, "beta": None})
    32
    >>> auto_overlap({"prior": "gaussian", "sigma": 0.1, "weight": 100.0, "scale": None,
    ...               "beta": None})
    70
    """
    prior = shared["prior"]
    probe = make_prior(prior, 1.0, shape=(2, 2), beta=shared["beta"]) if isinstance(
        prior, str) else prior
    overlap = DEFAULT_OVERLAP
    if getattr(probe, "gradient_order", None) == 2.0:
        lam = shared["weight"]
        if lam is None:
            lam = weight_from_scale(shared["sigma"], shared["scale"], 2.0)
        overlap = max(DEFAULT_OVERLAP, math.ceil(7 * math.sqrt(lam)))
    if mask is not None:
        overlap += hole_radius(mask)
    return overlap


def hole_radius(mask: torch.Tensor, limit: int = 4096) -> int:
    """Largest chessboard distance from an unobserved pixel of a 2-D ``mask`` (True =
    observed) to an observed one, by repeated 3 x 3 dilation (at most ``limit`` steps).

    Examples
    --------
    >>> import torch
    >>> m = torch.ones(9, 9, dtype=torch.bool); m[2:7, 2:7] = False
    >>> hole_radius(m)
    3
    """
    seen = mask.reshape((1, 1) + tuple(mask.shape[-2:])).to(torch.float32)
    if not bool(seen.any()):
        raise ValueError("operator: the mask observes no pixel")
    steps = 0
    while not bool(seen.all()) and steps < limit:
        seen = torch.nn.functional.max_pool2d(seen, 3, stride=1, padding=1)
        steps += 1
    return steps


def parameter_slices(
    shape: tuple[int, int, int, int], max_pixels: int | None = None
) -> tuple[int | None, list | None]:
    """What the shared parameters are estimated on, for an ``(N, C, H, W)`` input: the first
    ``lead`` images (``None``: all) and, for images over ``max_pixels`` (default
    :data:`PARAMETER_PIXELS`), four corner windows of the first one
    (:func:`parameter_windows`).

    Examples
    --------
    >>> parameter_slices((1, 1, 512, 512))
    (None, None)
    >>> parameter_slices((100, 1, 1024, 1024))
    (4, None)
    """
    n, _, h, w = shape
    max_pixels = PARAMETER_PIXELS if max_pixels is None else max_pixels
    windows = parameter_windows((h, w), max_pixels)
    if windows is not None:
        return 1, windows
    fit = max(1, max_pixels // (h * w))
    return (None if fit >= n else fit), None


def units_per_batch(tiles, stack, method, budget, engine_kwargs, device) -> int:
    """(image, tile) units per batch: within the memory budget, on a CPU within the caches."""
    if budget is None:
        return 1
    h, w = max((t.shape for t in tiles), key=lambda s: s[0] * s[1])
    pixels = h * w * stack.shape[1]
    values = ENGINES[method].values_per_pixel
    if method == "mcmc":
        from bayes_restore.infer import mcmc

        defaults = inspect.signature(mcmc).parameters
        draws = engine_kwargs.get("num_samples", defaults["num_samples"].default)
        chains = engine_kwargs.get("num_chains", defaults["num_chains"].default)
        values += int(draws) * int(chains)
    count = budget // (pixels * stack.element_size() * values)
    if device.type == "cpu":
        count = min(count, CPU_BATCH_PIXELS // pixels)
    return max(1, count)
