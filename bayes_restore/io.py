"""Image files: atomic writes of 8-bit PNG and float32 TIFF (through Pillow)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["write_image", "atomic_path"]


class atomic_path:  # noqa: N801 - used as a context manager, like open()
    """Context manager yielding a temporary path beside ``path``, renamed onto it on success.

    A crash or an exception leaves no partial file at ``path``.

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


def write_image(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write a 2-D (grey) or ``(H, W, 3)`` float image atomically.

    ``.png``: 8-bit, values in [0, 1] clipped and rounded (clipping only here, at
    write time). ``.tif`` / ``.tiff``: float32 values as they are (grey only).

    Parameters
    ----------
    path : str or path-like
        Output file; its suffix chooses the format.
    image : numpy.ndarray
        The image.

    Returns
    -------
    pathlib.Path
        The written path.

    Examples
    --------
    >>> import numpy as np, pathlib, tempfile
    >>> p = write_image(pathlib.Path(tempfile.mkdtemp()) / "a.png", np.ones((4, 4)) / 2)
    >>> p.suffix
    '.png'
    """
    from PIL import Image

    path = Path(path)
    image = np.asarray(image)
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] not in (3, 4)):
        raise ValueError(f"image must be (H, W) or (H, W, 3|4), got shape {image.shape}")
    if not np.isfinite(image).all():
        raise ValueError("image contains NaN or infinite values")
    suffix = path.suffix.lower()
    if suffix == ".png":
        data = np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)
        pil = Image.fromarray(data)
    elif suffix in (".tif", ".tiff"):
        if image.ndim != 2:
            raise ValueError("float TIFF output is for grey images (H, W)")
        pil = Image.fromarray(image.astype(np.float32), mode="F")
    else:
        raise ValueError(f"path must end in .png, .tif or .tiff, got {path.name!r}")
    with atomic_path(path) as tmp:
        pil.save(tmp, format="PNG" if suffix == ".png" else "TIFF")
    return path
