"""Input checks shared by the public functions: each error names the argument."""

from __future__ import annotations

import math
from operator import index as operator_index
from typing import Any

import numpy as np
import torch


def check_positive(value: Any, name: str) -> None:
    """Raise ``ValueError`` unless every entry of ``value`` is finite and > 0."""
    t = torch.as_tensor(value)
    if t.is_complex() or t.dtype == torch.bool:
        raise ValueError(f"{name} must be real and positive, got {value!r}")
    t = t.detach()
    if t.numel() == 0 or not bool(torch.isfinite(t).all()) or not bool((t > 0).all()):
        raise ValueError(f"{name} must be finite and > 0, got {_short(value)}")


def check_int(value: Any, name: str, minimum: int) -> int:
    """``value`` as an int (numpy integers too) ``>= minimum``, else a ``ValueError``."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    try:
        value = operator_index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def parse_device(device: Any, name: str = "device") -> torch.device:
    """A ``torch.device`` from a string or device, else a ``ValueError`` naming it."""
    try:
        return torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"{name} must name a torch device, got {device!r}") from None


def check_finite(t: torch.Tensor, name: str) -> None:
    """Raise ``ValueError`` when ``t`` holds NaN or infinity."""
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or infinite values")


def to_tensor(image: Any, name: str) -> tuple[torch.Tensor, bool]:
    """Convert a float numpy array or tensor to a tensor; say whether it was numpy."""
    if isinstance(image, torch.Tensor):
        if not image.is_floating_point():
            raise ValueError(
                f"{name} must be a floating-point tensor (values in [0, 1]), got {image.dtype}"
            )
        return image, False
    if isinstance(image, np.ndarray):
        if image.dtype not in (np.float32, np.float64):
            raise ValueError(
                f"{name} must be a float32 or float64 array (values in [0, 1]), got "
                f"{image.dtype}; convert integers with skimage.util.img_as_float"
            )
        return torch.from_numpy(np.ascontiguousarray(image)), True
    raise ValueError(f"{name} must be a numpy array or a torch tensor, got {type(image).__name__}")


def from_tensor(t: torch.Tensor, as_numpy: bool) -> Any:
    """The inverse of :func:`to_tensor`: numpy out for numpy in."""
    return t.detach().cpu().numpy() if as_numpy else t


def as_float(value: Any, name: str) -> float:
    """A Python float from a number or a one-element tensor/array."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {_short(value)}") from None
    if math.isnan(out):
        raise ValueError(f"{name} must not be NaN")
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 80 else text[:77] + "..."
