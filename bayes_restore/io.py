"""Image files: read and write PNG / TIFF (8-, 16-bit, float) and read JPEG, atomically.

Intensity convention: integer images are read as floats in [0, 1] (``value / (2^bits - 1)``)
and written back at their bit depth, rounding and clipping to [0, 1] only at write time;
float TIFFs keep their values. Images are ``(H, W)`` grey or ``(H, W, C)`` with ``C`` 3
(RGB) or 4 (RGBA) on disk and in these functions. Codecs: pypng (PNG), tifffile
(TIFF), Pillow (JPEG): install them with ``pip install "bayes-restore[io]"``.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["ImageInfo", "read_image", "write_image", "atomic_path"]

_PNG = (".png",)
_TIFF = (".tif", ".tiff")
_JPEG = (".jpg", ".jpeg")


@dataclass(frozen=True)
class ImageInfo:
    """What :func:`read_image` found: ``bit_depth`` (8, 16, or 32/64 for float) and kind."""

    bit_depth: int
    is_float: bool
    channels: int
    format: str


class atomic_path:  # noqa: N801 - used as a context manager, like open()
    """Context manager yielding a temporary path beside ``path``, renamed onto it on success.

    A crash or an exception leaves no partial file at ``path`` (and removes the
    temporary file).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "out.txt"
    >>> with atomic_path(target) as tmp:
    ...     _ = tmp.write_text("done")
    >>> target.read_text()
    'done'
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def __enter__(self) -> Path:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(
            prefix=f".{self.path.name}.", suffix=self.path.suffix, dir=self.path.parent
        )
        os.close(fd)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(name, 0o666 & ~umask)  # mkstemp makes 0600; give the usual permissions
        self.tmp = Path(name)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


def read_image(path: str | os.PathLike) -> tuple[np.ndarray, ImageInfo]:
    """Read a PNG, TIFF or JPEG file as a float64 image.

    Parameters
    ----------
    path : str or path-like
        The file. PNG: 8/16-bit grey, grey+alpha, RGB, RGBA; TIFF: 8/16-bit integer or
        float32/float64, grey or RGB(A); JPEG: 8-bit grey or RGB.

    Returns
    -------
    image : numpy.ndarray
        ``(H, W)`` or ``(H, W, C)``, float64; integers scaled to [0, 1].
    info : ImageInfo
        Bit depth and kind, to write results back the same way.

    Raises
    ------
    ValueError
        Unreadable or non-image file, unsupported format or bit depth, NaN values.

    Examples
    --------
    >>> import numpy as np, pathlib, tempfile
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.png"
    >>> _ = write_image(p, np.full((4, 4), 0.5), bit_depth=16)
    >>> img, info = read_image(p)
    >>> info.bit_depth, round(float(img[0, 0]), 4)
    (16, 0.5)
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise ValueError(f"cannot read {str(path)!r}: no such file")
    try:
        if suffix in _PNG:
            raw, fmt = _read_png(path), "png"
        elif suffix in _TIFF:
            import tifffile

            raw, fmt = tifffile.imread(path), "tiff"
        elif suffix in _JPEG:
            from PIL import Image

            with Image.open(path) as im:
                raw, fmt = np.asarray(im), "jpeg"
        else:
            raise ValueError(f"cannot read {str(path)!r}: unsupported file type {suffix!r}")
    except ValueError:
        raise
    except Exception as err:  # noqa: BLE001 - codecs raise many kinds; one clear message
        raise ValueError(f"cannot read {str(path)!r}: not a valid image ({err})") from None
    if raw.ndim == 3 and raw.shape[0] in (3, 4) and raw.shape[-1] not in (3, 4):
        raw = np.moveaxis(raw, 0, -1)  # planar TIFF
    if raw.ndim not in (2, 3) or (raw.ndim == 3 and raw.shape[-1] not in (1, 2, 3, 4)):
        raise ValueError(f"cannot read {str(path)!r}: unsupported image shape {raw.shape}")
    if raw.ndim == 3 and raw.shape[-1] == 1:
        raw = raw[..., 0]
    channels = 1 if raw.ndim == 2 else raw.shape[-1]
    if raw.dtype == np.uint8:
        image, depth, is_float = raw / 255.0, 8, False
    elif raw.dtype == np.uint16:
        image, depth, is_float = raw / 65535.0, 16, False
    elif raw.dtype in (np.float32, np.float64):
        image, depth, is_float = raw.astype(np.float64), raw.dtype.itemsize * 8, True
        if not np.isfinite(image).all():
            raise ValueError(f"cannot use {str(path)!r}: it contains NaN or infinite values")
    else:
        raise ValueError(
            f"cannot read {str(path)!r}: unsupported sample type {raw.dtype} (use 8- or 16-bit "
            "integers or float32/float64)"
        )
    return image, ImageInfo(bit_depth=depth, is_float=is_float, channels=channels, format=fmt)


def _read_png(path: Path) -> np.ndarray:
    import png

    with open(path, "rb") as fh:
        width, height, rows, meta = png.Reader(file=fh).asDirect()
        dtype = np.uint16 if meta["bitdepth"] > 8 else np.uint8
        data = np.vstack([np.asarray(row, dtype=dtype) for row in rows])
    planes = meta["planes"]
    if meta["bitdepth"] not in (8, 16):  # low bit depths: scale to 8 bits
        data = (data.astype(np.float64) * 255 / (2 ** meta["bitdepth"] - 1)).round()
        data = data.astype(np.uint8)
    return data.reshape(height, width, planes) if planes > 1 else data.reshape(height, width)


def write_image(
    path: str | os.PathLike,
    image: np.ndarray,
    *,
    bit_depth: int | None = None,
) -> Path:
    """Write an image atomically (a temporary file renamed into place).

    Parameters
    ----------
    path : str or path-like
        ``.png`` (8 or 16 bit) or ``.tif``/``.tiff`` (8, 16 bit or float32).
    image : numpy.ndarray
        ``(H, W)`` or ``(H, W, C)`` with ``C`` in (2, 3, 4), values in [0, 1] for
        integer output (clipped and rounded here, and only here).
    bit_depth : {8, 16, 32}, optional
        8 or 16 for integers, 32 for float32 TIFF. Default: 8 for PNG, 32 for TIFF.

    Returns
    -------
    pathlib.Path

    Examples
    --------
    >>> import numpy as np, pathlib, tempfile
    >>> p = write_image(pathlib.Path(tempfile.mkdtemp()) / "a.tif", np.ones((4, 4)) / 3)
    >>> round(float(read_image(p)[0][0, 0]), 6)
    0.333333
    """
    path = Path(path)
    image = np.asarray(image)
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] not in (2, 3, 4)):
        raise ValueError(f"image must be (H, W) or (H, W, 2|3|4), got shape {image.shape}")
    if not np.isfinite(image).all():
        raise ValueError("image contains NaN or infinite values")
    suffix = path.suffix.lower()
    if suffix in _PNG:
        depth = 8 if bit_depth is None else bit_depth
        if depth not in (8, 16):
            raise ValueError(f"PNG bit_depth must be 8 or 16, got {depth}")
    elif suffix in _TIFF:
        depth = 32 if bit_depth is None else bit_depth
        if depth not in (8, 16, 32):
            raise ValueError(f"TIFF bit_depth must be 8, 16 or 32, got {depth}")
    else:
        raise ValueError(f"output must end in .png, .tif or .tiff, got {path.name!r}")
    if depth == 32:
        data = image.astype(np.float32)
    else:
        top = 2**depth - 1
        dtype = np.uint8 if depth == 8 else np.uint16
        data = np.round(np.clip(image, 0.0, 1.0) * top).astype(dtype)
    with atomic_path(path) as tmp:
        if suffix in _PNG:
            _write_png(tmp, data, depth)
        else:
            import tifffile

            photometric = "minisblack" if data.ndim == 2 or data.shape[-1] == 2 else "rgb"
            rgba = data.ndim == 3 and data.shape[-1] == 4
            extra = {"extrasamples": ["unassalpha"]} if rgba else {}
            tifffile.imwrite(tmp, data, photometric=photometric, **extra)
    return path


def _write_png(path: Path, data: np.ndarray, depth: int) -> None:
    import png

    h, w = data.shape[:2]
    planes = 1 if data.ndim == 2 else data.shape[-1]
    writer = png.Writer(
        width=w, height=h, bitdepth=depth, greyscale=planes in (1, 2), alpha=planes in (2, 4)
    )
    with open(path, "wb") as fh:
        writer.write(fh, data.reshape(h, w * planes))
