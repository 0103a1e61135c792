"""What the estimators of :mod:`bayes_restore.hyper` share: input checks and a 1-D search."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from bayes_restore._validation import as_float, check_finite, check_positive, to_tensor

__all__ = ["image_tensor", "tv_problem", "check_iterations", "degrees_of_freedom", "golden"]


def image_tensor(image: Any) -> tuple[torch.Tensor, bool]:
    """The checked image as a tensor, and whether it came as a numpy array."""
    y, as_numpy = to_tensor(image, "image")
    if y.dim() not in (2, 3, 4):
        raise ValueError(
            f"image must be (H, W), (C, H, W) or (N, C, H, W), got {y.dim()} dimensions"
        )
    if y.numel() == 0:
        raise ValueError(f"image must not be empty, got shape {tuple(y.shape)}")
    check_finite(y, "image")
    return y, as_numpy


def tv_problem(y: Any, sigma: Any) -> tuple[torch.Tensor, int, float]:
    """The observation as a float tensor, its TV event dimension, and sigma as a float."""
    t, _ = image_tensor(y)
    check_positive(sigma, "sigma")
    sigma = as_float(sigma, "sigma")
    event_dim = 2 if t.dim() == 2 else 3
    return t.detach(), event_dim, sigma


def check_iterations(num_iter: Any, burn_in: Any) -> None:
    """``num_iter >= 1`` and ``0 <= burn_in < num_iter``, integers (the samplers' lengths)."""
    if not isinstance(num_iter, int) or num_iter < 1:
        raise ValueError(f"num_iter must be an integer >= 1, got {num_iter!r}")
    if not isinstance(burn_in, int) or not 0 <= burn_in < num_iter:
        raise ValueError(f"burn_in must be an integer in [0, num_iter), got {burn_in!r}")


def degrees_of_freedom(t: torch.Tensor, event_dim: int) -> int:
    """``N - C`` summed over the images: the exponent of ``theta`` in the TV normaliser."""
    channels = 1 if event_dim == 2 else t.shape[-3]
    per_image = t.shape[-1] * t.shape[-2] * channels - channels
    return per_image * (t.numel() // (t.shape[-1] * t.shape[-2] * channels))


def golden(
    f: Callable[[float], float], lo: float, hi: float, *, xtol: float,
    cache: dict[float, float] | None = None,
) -> tuple[float, float]:
    """Golden-section search for a minimum of a unimodal ``f`` on ``[lo, hi]``.

    Returns the best ``(t, f(t))`` of all points evaluated, those of ``cache`` (a dict
    ``t -> f(t)``, filled in) included: a search resumed on a shifted bracket reuses them.

    Examples
    --------
    >>> t, value = golden(lambda t: (t - 1.0) ** 2, 0.0, 3.0, xtol=1e-6)
    >>> round(t, 4), value < 1e-10
    (1.0, True)
    """
    cache = {} if cache is None else cache

    def fc(t: float) -> float:
        if t not in cache:
            cache[t] = f(t)
        return cache[t]

    inv_phi = (math.sqrt(5) - 1) / 2
    a, b = lo, hi
    c, d = b - inv_phi * (b - a), a + inv_phi * (b - a)
    while b - a > xtol:
        if fc(c) <= fc(d):
            b, d = d, c
            c = b - inv_phi * (b - a)
        else:
            a, c = c, d
            d = a + inv_phi * (b - a)
    best = min(cache.items(), key=lambda kv: kv[1]) if cache else ((a + b) / 2, fc((a + b) / 2))
    return best

