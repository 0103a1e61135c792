"""Input checks shared by the public functions: each error names the argument."""

from __future__ import annotations

import math
from dataclasses import dataclass
from operator import index as operator_index
from typing import Any

import numpy as np
import torch


def check_positive(value: Any, name: str) -> None:
    """Raise ``ValueError`` unless every entry of ``value`` is finite and > 0.

    A string, ``None`` or another non-number raises ``TypeError`` naming ``name``.
    """
    t = as_number_tensor(value, name)
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


def as_number_tensor(value: Any, name: str) -> torch.Tensor:
    """``value`` (a number, array or tensor of numbers) as a tensor, else a ``TypeError``."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (str, bytes)) or value is None:
        raise TypeError(f"{name} must be a number, got {_short(value)}")
    if isinstance(value, np.ndarray) and value.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a number, got an array of {value.dtype}")
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return torch.tensor(float(value), dtype=torch.float64)  # 1e-300 is not 0
    try:
        return torch.as_tensor(np.asarray(value, dtype=np.float64)
                               if isinstance(value, np.ndarray) and value.dtype.kind == "f"
                               and value.dtype.byteorder not in "=|" else value)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"{name} must be a number, got {_short(value)}") from None


def check_finite(t: torch.Tensor, name: str) -> None:
    """Raise ``ValueError`` when ``t`` holds NaN or infinity."""
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or infinite values")


def to_tensor(image: Any, name: str) -> tuple[torch.Tensor, bool]:
    """A float tensor of ``image`` (numpy or torch) and whether it was numpy.

    float32 and float64 are taken as they are (numpy: a zero-copy view where the array is
    contiguous and native-endian); half precision is computed in float32; integer and
    boolean images are scaled as scikit-image's ``img_as_float`` does (unsigned to
    ``[0, 1]``, signed to ``[-1, 1]``). :func:`as_image` also records how to give the
    result back in the input's dtype.
    """
    t, as_numpy, _ = _float_tensor(image, name)
    return t, as_numpy


def _float_tensor(image: Any, name: str) -> tuple[torch.Tensor, bool, Any]:
    """``(tensor, as_numpy, result_dtype)``: ``result_dtype`` is None for float32/64."""
    if isinstance(image, torch.Tensor):
        dtype = image.dtype
        if dtype in (torch.float32, torch.float64):
            return image, False, None
        if dtype in (torch.float16, torch.bfloat16):
            return image.to(torch.float32), False, dtype
        if dtype == torch.bool:
            return image.to(torch.get_default_dtype()), False, torch.get_default_dtype()
        if dtype.is_complex:
            raise ValueError(f"{name} must be a real image, got a {dtype} tensor")
        if not dtype.is_floating_point:  # integers
            info = torch.iinfo(dtype)
            out = image.to(torch.float64) * (1.0 / info.max)
            out = out.clamp_min(-1.0) if info.min < 0 else out
            return out.to(torch.get_default_dtype()), False, torch.get_default_dtype()
        raise ValueError(f"{name} has an unsupported dtype {dtype}")
    if isinstance(image, np.ndarray):
        kind, dtype = image.dtype.kind, image.dtype
        if kind == "f":
            if dtype.itemsize > 8:
                raise ValueError(
                    f"{name}: {dtype} is not supported; convert it with .astype(np.float64)"
                )
            native = image.astype(dtype.newbyteorder("="), copy=False)
            if dtype.itemsize == 2:  # float16: computed in float32, returned as float16
                return torch.from_numpy(np.asarray(native.astype(np.float32))), True, np.float16
            return torch.from_numpy(np.ascontiguousarray(native)), True, None
        if kind == "b":
            return torch.from_numpy(np.asarray(image.astype(np.float64))), True, np.float64
        if kind in "ui":
            info = np.iinfo(dtype)
            out = np.asarray(image.astype(np.float64) * (1.0 / info.max))
            if info.min < 0:
                out = np.maximum(out, -1.0)
            return torch.from_numpy(np.asarray(out)), True, np.float64
        raise ValueError(
            f"{name} must be a real numeric array (float, integer or bool), got {dtype}"
        )
    raise ValueError(f"{name} must be a numpy array or a torch tensor, got {type(image).__name__}")


def from_tensor(t: torch.Tensor, as_numpy: bool) -> Any:
    """The inverse of :func:`to_tensor`: numpy out for numpy in."""
    return t.detach().cpu().numpy() if as_numpy else t


#: channel counts that make a trailing axis look like channels-last colour
_COLOUR_CHANNELS = (3, 4)


@dataclass(frozen=True)
class ImageLayout:
    """How an image was given (array type, dtype, channel axis), to give results back so.

    Made by :func:`as_image`; :meth:`give_back` turns a channels-first float tensor (or
    draws of them, with leading dimensions) into the input's form.
    """

    as_numpy: bool
    result_dtype: Any = None  # None: keep the computed float dtype
    channel_axis: int | None = None  # negative, in the input's dimensions

    def give_back(self, t: torch.Tensor | None) -> Any:
        """``t`` with the channel axis where the input had it, in the input's dtype and type."""
        if t is None:
            return None
        if self.channel_axis is not None:
            t = t.movedim(-3, self.channel_axis)
        if self.result_dtype is not None and not self.as_numpy:
            t = t.to(self.result_dtype)
        if not self.as_numpy:
            return t
        out = t.detach().cpu().numpy()
        return out.astype(self.result_dtype) if self.result_dtype is not None else out


def as_image(
    image: Any, name: str = "image", *, channel_axis: Any = None, ndims: tuple = (2, 3, 4)
) -> tuple[torch.Tensor, ImageLayout]:
    """A finite, channels-first float tensor of ``image`` and its :class:`ImageLayout`.

    ``channel_axis=None`` takes the package's layout, ``(H, W)``, ``(C, H, W)`` or
    ``(N, C, H, W)``, but refuses a 3-D or 4-D image whose last axis has 3 or 4 entries
    and whose would-be channel axis has more than 4: that is channels-last colour (what
    imageio, Pillow and scikit-image give), which must be said with ``channel_axis=-1``.
    An integer ``channel_axis`` (scikit-image's name and meaning) is moved to the
    channels-first place; results are given back with it where it was.
    """
    t, as_numpy, result_dtype = _float_tensor(image, name)
    if t.dim() not in ndims:
        raise ValueError(
            f"{name} must be " + ", ".join(_LAYOUTS[n] for n in ndims)
            + f", got {t.dim()} dimensions (shape {tuple(t.shape)})"
        )
    axis = None
    if channel_axis is not None:
        if isinstance(channel_axis, bool):
            raise TypeError(f"channel_axis must be an integer or None, got {channel_axis!r}")
        try:
            channel_axis = operator_index(channel_axis)
        except TypeError:
            raise TypeError(
                f"channel_axis must be an integer or None, got {_short(channel_axis)}"
            ) from None
        if t.dim() < 3:
            raise ValueError(
                f"channel_axis={channel_axis} but {name} is 2-D {tuple(t.shape)}: a grey "
                "image has no channel axis (give channel_axis=None)"
            )
        if not -t.dim() <= channel_axis < t.dim():
            raise ValueError(
                f"channel_axis={channel_axis} is out of range for a {t.dim()}-D {name}"
            )
        axis = channel_axis - t.dim() if channel_axis >= 0 else channel_axis
        t = t.movedim(axis, -3)
        if axis == -3:
            axis = None
    elif t.dim() >= 3 and t.shape[-1] in _COLOUR_CHANNELS and t.shape[-3] > 4:
        raise ValueError(
            f"{name} has shape {tuple(t.shape)}: channels-last colour? Give channel_axis=-1 "
            "for (H, W, C) or (N, H, W, C) images, or channel_axis="
            f"{t.dim() - 3} if the channels really come first"
        )
    if min(t.shape) < 1:
        raise ValueError(f"{name} must not be empty, got shape {tuple(t.shape)}")
    check_finite(t, name)
    return t, ImageLayout(as_numpy, result_dtype, axis)


_LAYOUTS = {2: "(H, W)", 3: "(C, H, W)", 4: "(N, C, H, W)"}


def optional_number(value: Any, name: str) -> float | None:
    """``None``, or ``value`` as one real number (a Python, numpy or one-element tensor value).

    Strings, booleans, sequences and anything else raise ``TypeError`` naming ``name``;
    range checks are the caller's.
    """
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if isinstance(value, (torch.Tensor, np.ndarray)):
        if value.numel() if isinstance(value, torch.Tensor) else value.size != 1:
            raise TypeError(f"{name} must be a single number, got shape {tuple(value.shape)}")
        if value.dtype in (torch.bool, np.bool_) or (
            isinstance(value, np.ndarray) and value.dtype.kind not in "iuf"
        ) or (isinstance(value, torch.Tensor) and value.is_complex()):
            raise TypeError(f"{name} must be a real number, got {value.dtype}")
        return float(value.reshape(()).item())
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    raise TypeError(f"{name} must be a number, got {_short(value)}")


def as_float(value: Any, name: str) -> float:
    """A Python float from a number or a one-element tensor/array."""
    if isinstance(value, (str, bytes)) or value is None:
        raise TypeError(f"{name} must be a number, got {_short(value)}")
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {_short(value)}") from None
    if math.isnan(out):
        raise ValueError(f"{name} must not be NaN")
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 80 else text[:77] + "..."


def check_seed(seed: Any, name: str = "seed") -> int | None:
    """``seed`` as a non-negative int (numpy integers too) or None, else an error naming it."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"{name} must be an integer or None, got {_short(seed)}")
    seed = int(seed)
    if not 0 <= seed < 2**63:
        raise ValueError(f"{name} must be in [0, 2**63), got {seed}")
    return seed


def rms(values: Any) -> float:
    """Root mean square of ``values`` (float64), without overflow near the float range's end.

    Examples
    --------
    >>> rms([3.0, -4.0]) == (12.5) ** 0.5
    True
    """
    t = torch.as_tensor(values, dtype=torch.float64).abs().reshape(-1)
    peak = float(t.max()) if t.numel() else 0.0
    if peak == 0.0 or not math.isfinite(peak):
        return peak
    return peak * float((t / peak).square().mean().sqrt())


def broadcast_shape(*shapes: Any) -> torch.Size:
    """The shape ``shapes`` broadcast to; ValueError when they do not.

    The same as ``torch.broadcast_shapes``, whose first call imports torch's symbolic-shape
    machinery (seconds, on a command line's start).

    Examples
    --------
    >>> broadcast_shape((3, 1), (1, 4))
    torch.Size([3, 4])
    """
    return torch.Size(np.broadcast_shapes(*(tuple(s) for s in shapes)))


def broadcasts_to(shape: Any, target: Any) -> bool:
    """Whether ``shape`` broadcasts to exactly ``target``.

    Examples
    --------
    >>> broadcasts_to((2, 1, 1), (2, 3, 4)), broadcasts_to((5, 1), (2, 4))
    (True, False)
    """
    try:
        return broadcast_shape(shape, target) == torch.Size(target)
    except ValueError:
        return False
