"""Image files: read and write PNG / TIFF (8-, 16-bit, float) and read JPEG, atomically.

Intensity convention: integer images are read as floats in [0, 1] (``value / (2^bits - 1)``)
and written back at their bit depth, rounding and clipping to [0, 1] only at write time;
float TIFFs keep their values. Images are ``(H, W)`` grey or ``(H, W, C)`` with ``C`` 3
(RGB) or 4 (RGBA) on disk and in these functions. Multi-page TIFFs are read one page at a
time (``read_image(path, page=N)``), never guessed. Writes go to a temporary file beside
the target that is renamed onto it at the end (:class:`atomic_path`; several files at once,
all or none: :class:`atomic_paths`); an error or an interrupt removes the temporary files.
Codecs: pypng (PNG), tifffile (TIFF), Pillow (JPEG): install them with
``pip install "bayes-restore[io]"``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["ImageInfo", "read_image", "write_image", "atomic_path", "atomic_paths"]

_PNG = (".png",)
_TIFF = (".tif", ".tiff")
_JPEG = (".jpg", ".jpeg")

#: temporary files created by this module and not yet renamed or removed (see remove_temps)
_TEMPS: set[Path] = set()


@dataclass(frozen=True)
class ImageInfo:
    """What :func:`read_image` found: ``bit_depth`` (8, 16, or 32/64 for float) and kind."""

    bit_depth: int
    is_float: bool
    channels: int
    format: str


#: depth of nested critical sections, and the signal handlers that waited for their end
_critical = 0
_pending: list = []


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """A critical section, such as creating-and-recording a temporary file or a group of
    renames: SIGINT, SIGTERM and SIGHUP wait for its end.

    Two mechanisms: the signals are blocked for this thread (enough in a single-threaded
    process), and handlers wrapped by :func:`deferrable` (the command line's) run at the
    end of the section, since in a multi-threaded process the kernel delivers the signal to
    another thread and Python runs the handler in the main thread all the same.
    """
    global _critical
    block = getattr(signal, "pthread_sigmask", None)
    wanted = {getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n)}
    _critical += 1
    old = None
    try:
        if block is not None:
            old = block(signal.SIG_BLOCK, wanted)
        yield
    finally:
        if old is not None:
            block(signal.SIG_SETMASK, old)  # a blocked signal is handled here: deferred
        _critical -= 1
        if _critical == 0 and _pending:
            handler, signum = _pending[0]
            _pending.clear()
            handler(signum, None)


def deferrable(handler):
    """``handler`` (a signal handler) made to wait for the end of critical sections."""

    def wrapped(signum, frame):
        if _critical:
            _pending.append((handler, signum))
            return
        handler(signum, frame)

    return wrapped


def _new_temp(path: Path, tag: str = "") -> Path:
    """Create an empty hidden file beside ``path`` (same suffix, usual permissions), recorded
    in ``_TEMPS`` before it exists so that no interrupt can leave it unrecorded."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = path.parent / f".{path.name}.{tag}{secrets.token_hex(4)}{path.suffix}"
        with _signals_deferred():
            _TEMPS.add(tmp)
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # umask applies
            except FileExistsError:
                _TEMPS.discard(tmp)
                continue
            except BaseException:  # an interrupt may come just after the file was made
                _discard(tmp)
                raise
        os.close(fd)
        return tmp


def _discard(tmp: Path) -> None:
    """Remove a temporary file (if it is there) and forget it."""
    with _signals_deferred():
        try:
            tmp.unlink(missing_ok=True)
        except OSError:  # pragma: no cover - e.g. the directory went away
            pass
        _TEMPS.discard(tmp)


def remove_temps() -> None:
    """Remove every temporary file of this module still on disk (the command line's last
    resort after an interrupt)."""
    for tmp in list(_TEMPS):
        _discard(tmp)


class atomic_path:  # noqa: N801 - used as a context manager, like open()
    """Context manager yielding a temporary path beside ``path``, renamed onto it on success.

    A crash, an exception or an interrupt (``KeyboardInterrupt``) leaves no partial file at
    ``path`` and removes the temporary file. For several files that must appear together,
    use :class:`atomic_paths`.

    Parameters
    ----------
    path : str or path-like
        The file to write; its folder is created if needed.

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
        self._group = atomic_paths([path])
        self.path = self._group.paths[0]

    def __enter__(self) -> Path:
        self.tmp = self._group.__enter__()[0]
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        self._group.__exit__(exc_type, exc, tb)


class atomic_paths:  # noqa: N801 - used as a context manager, like open()
    """Write several files all or none: temporary paths beside each target, renamed onto the
    targets together when the ``with`` block succeeds.

    On an exception (or ``KeyboardInterrupt``) in the block, every temporary file is removed
    and no target is touched. The renames at the end run with SIGINT/SIGTERM/SIGHUP held
    back, so an interrupt cannot leave half of the set; if a rename fails, the targets
    already renamed are put back as they were (a replaced file is restored from a hard link
    kept until the end) and the error is raised.

    Parameters
    ----------
    paths : iterable of str or path-like
        The files to write, all different; their folders are created if needed.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> with atomic_paths([folder / "a.txt", folder / "b.txt"]) as (ta, tb):
    ...     _ = ta.write_text("a"), tb.write_text("b")
    >>> sorted(p.name for p in folder.iterdir())
    ['a.txt', 'b.txt']
    """

    def __init__(self, paths: Iterable[str | os.PathLike]) -> None:
        self.paths = [Path(p) for p in paths]
        resolved = [p.resolve() for p in self.paths]
        if len(set(resolved)) != len(resolved):
            raise ValueError(f"a path is named twice in {[str(p) for p in self.paths]}")
        self.temps: list[Path] = []

    def __enter__(self) -> list[Path]:
        try:
            for path in self.paths:
                self.temps.append(_new_temp(path))
        except BaseException:
            self._clean()
            raise
        return list(self.temps)

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self._clean()
            return
        try:
            self._commit()
        finally:
            self._clean()

    def _clean(self) -> None:
        for tmp in self.temps:
            _discard(tmp)

    def _commit(self) -> None:
        # (target, existed, backup of what it replaced), recorded before each rename
        done: list[tuple[Path, bool, Path | None]] = []
        with _signals_deferred():
            try:
                for tmp, target in zip(self.temps, self.paths, strict=True):
                    existed = target.is_file()
                    backup = _link_backup(target) if existed else None
                    done.append((target, existed, backup))
                    os.replace(tmp, target)
            except BaseException:
                for target, existed, backup in reversed(done):
                    with contextlib.suppress(OSError):
                        if backup is not None:
                            os.replace(backup, target)
                        elif not existed:
                            target.unlink(missing_ok=True)
                raise
            finally:
                for _, _, backup in done:
                    if backup is not None:
                        _discard(backup)


def _link_backup(target: Path) -> Path | None:
    """A hard link to ``target`` under a recorded temporary name; ``None`` where the file
    system has no hard links."""
    backup = target.parent / f".{target.name}.old.{secrets.token_hex(4)}{target.suffix}"
    _TEMPS.add(backup)
    try:
        os.link(target, backup)
    except OSError:
        _TEMPS.discard(backup)
        return None
    return backup


def read_image(
    path: str | os.PathLike, *, page: int | None = None
) -> tuple[np.ndarray, ImageInfo]:
    """Read a PNG, TIFF or JPEG file as a float64 image.

    Parameters
    ----------
    path : str or path-like
        The file. PNG: 8/16-bit grey, grey+alpha, RGB, RGBA; TIFF: 8/16-bit integer or
        float32/float64, grey or RGB(A) (interleaved or planar); JPEG: 8-bit grey or RGB.
    page : int, optional
        The page of a multi-page TIFF, from 0. Required when the file has several pages
        (they are never guessed as channels or skipped silently); a single-page file
        accepts only ``page=0``.

    Returns
    -------
    image : numpy.ndarray
        ``(H, W)`` or ``(H, W, C)``, float64; integers scaled to [0, 1].
    info : ImageInfo
        Bit depth and kind, to write results back the same way.

    Raises
    ------
    ValueError
        Missing file, a folder, unreadable or non-image file, unsupported format or bit
        depth, NaN values, a multi-page TIFF without ``page``, a page out of range.

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
    name = repr(str(path))
    if page is not None and (isinstance(page, bool) or not isinstance(page, (int, np.integer))):
        raise TypeError(f"page must be an integer, got {page!r}")
    if page is not None and page < 0:
        raise ValueError(f"page must be >= 0, got {page}")
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ValueError(f"cannot read {name}: no such file") from None
    except OSError as err:
        raise ValueError(f"cannot read {name}: {err.strerror or err}") from None
    if stat.S_ISDIR(mode):
        raise ValueError(f"cannot read {name}: it is a directory, not an image file")
    if not stat.S_ISREG(mode):
        raise ValueError(f"cannot read {name}: not a regular file")
    if not os.access(path, os.R_OK):
        raise ValueError(f"cannot read {name}: permission denied")
    suffix = path.suffix.lower()
    if suffix not in _PNG + _TIFF + _JPEG:
        raise ValueError(f"cannot read {name}: unsupported file type {suffix!r}")
    planar = False
    try:
        if suffix in _TIFF:
            raw, planar = _read_tiff(path, page)
            fmt = "tiff"
        else:
            if page not in (None, 0):
                raise ValueError(f"cannot read {name}: page {page} of a single-page image")
            if suffix in _PNG:
                raw, fmt = _read_png(path), "png"
            else:
                from PIL import Image

                with Image.open(path) as im:
                    if im.mode not in ("L", "RGB"):
                        im = im.convert("RGB")  # CMYK, YCbCr...: as RGB
                    raw, fmt = np.asarray(im), "jpeg"
    except ValueError as err:
        if str(err).startswith("cannot read"):
            raise
        raise ValueError(f"cannot read {name}: not a valid image ({err})") from None
    except PermissionError:
        raise ValueError(f"cannot read {name}: permission denied") from None
    except Exception as err:  # noqa: BLE001 - codecs raise many kinds; one clear message
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(f"cannot read {name}: not a valid image ({detail})") from None
    if planar and raw.ndim == 3:
        raw = np.moveaxis(raw, 0, -1)  # planar TIFF: samples first on disk
    if raw.ndim not in (2, 3) or (raw.ndim == 3 and raw.shape[-1] not in (1, 2, 3, 4)):
        raise ValueError(f"cannot read {name}: unsupported image shape {raw.shape}")
    if min(raw.shape) < 1:
        raise ValueError(f"cannot read {name}: empty image of shape {raw.shape}")
    if raw.ndim == 3 and raw.shape[-1] == 1:
        raw = raw[..., 0]
    channels = 1 if raw.ndim == 2 else raw.shape[-1]
    kind = raw.dtype.newbyteorder("=")
    if kind == np.uint8:
        image, depth, is_float = raw / 255.0, 8, False
    elif kind == np.uint16:
        image, depth, is_float = raw / 65535.0, 16, False
    elif kind in (np.float32, np.float64):
        image, depth, is_float = raw.astype(np.float64), raw.dtype.itemsize * 8, True
        if not np.isfinite(image).all():
            raise ValueError(f"cannot use {name}: it contains NaN or infinite values")
    else:
        raise ValueError(
            f"cannot read {name}: unsupported sample type {raw.dtype} (use 8- or 16-bit "
            "integers or float32/float64)"
        )
    image = np.ascontiguousarray(image, dtype=np.float64)
    return image, ImageInfo(bit_depth=depth, is_float=is_float, channels=channels, format=fmt)


def _read_tiff(path: Path, page: int | None) -> tuple[np.ndarray, bool]:
    """One page of a TIFF and whether its samples are planar (first axis)."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        count = len(tif.pages)
        if count == 0:
            raise ValueError("no image in the file")
        if page is None and count > 1:
            raise ValueError(
                f"cannot read {str(path)!r}: it has {count} pages; choose one with --page N "
                f"(read_image(..., page=N)), N from 0 to {count - 1}"
            )
        index = 0 if page is None else int(page)
        if index >= count:
            raise ValueError(
                f"cannot read {str(path)!r}: page {index} does not exist (it has {count} "
                f"page{'s' if count > 1 else ''}: 0 to {count - 1})"
            )
        chosen = tif.pages[index]
        raw = chosen.asarray()
        key = getattr(chosen, "keyframe", chosen)
        planar = int(getattr(key, "planarconfig", 1)) == 2 and int(key.samplesperpixel) > 1
    return raw, planar


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
    image : array_like
        ``(H, W)`` or ``(H, W, C)`` with ``C`` in (2, 3, 4), real numbers of any dtype,
        byte order and memory layout (Fortran order, strided views...); values in [0, 1]
        for integer output (clipped and rounded here, and only here).
    bit_depth : {8, 16, 32}, optional
        8 or 16 for integers, 32 for float32 TIFF. Default: 8 for PNG, 32 for TIFF.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ValueError
        Wrong shape, non-real or non-finite values, unsupported suffix or bit depth.

    Examples
    --------
    >>> import numpy as np, pathlib, tempfile
    >>> p = write_image(pathlib.Path(tempfile.mkdtemp()) / "a.tif", np.ones((4, 4)) / 3)
    >>> round(float(read_image(p)[0][0, 0]), 6)
    0.333333
    """
    path = Path(path)
    data, depth = prepare_image(path, image, bit_depth)
    with atomic_path(path) as tmp:
        encode_image(tmp, data, depth)
    return path


def prepare_image(path: Path, image, bit_depth: int | None) -> tuple[np.ndarray, int]:
    """Check an image for ``path`` and convert it to the samples to store: C-contiguous,
    native byte order, uint8 / uint16 / float32."""
    image = np.asarray(image)
    if image.dtype.kind not in "biuf":
        raise ValueError(f"image must hold real numbers, got dtype {image.dtype}")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] not in (2, 3, 4)):
        raise ValueError(f"image must be (H, W) or (H, W, 2|3|4), got shape {image.shape}")
    if min(image.shape) < 1:
        raise ValueError(f"image must not be empty, got shape {image.shape}")
    image = image.astype(np.float64)  # native order, any layout in
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
        if np.abs(image).max() > np.finfo(np.float32).max:
            raise ValueError("image values overflow float32")
        data = image.astype(np.float32)
    else:
        top = 2**depth - 1
        dtype = np.uint8 if depth == 8 else np.uint16
        data = np.round(np.clip(image, 0.0, 1.0) * top).astype(dtype)
    return np.ascontiguousarray(data), depth


def encode_image(path: Path, data: np.ndarray, depth: int) -> None:
    """Write prepared samples to ``path`` (not atomic: ``path`` is a temporary file)."""
    if path.suffix.lower() in _PNG:
        _write_png(path, data, depth)
        return
    import tifffile

    photometric = "minisblack" if data.ndim == 2 or data.shape[-1] == 2 else "rgb"
    rgba = data.ndim == 3 and data.shape[-1] == 4
    extra = {"extrasamples": ["unassalpha"]} if rgba else {}
    if data.ndim == 3 and data.shape[-1] == 2:
        extra = {"extrasamples": ["unassalpha"], "planarconfig": "contig"}
    tifffile.imwrite(path, data, photometric=photometric, **extra)


def _write_png(path: Path, data: np.ndarray, depth: int) -> None:
    import png

    h, w = data.shape[:2]
    planes = 1 if data.ndim == 2 else data.shape[-1]
    writer = png.Writer(
        width=w, height=h, bitdepth=depth, greyscale=planes in (1, 2), alpha=planes in (2, 4)
    )
    rows = np.ascontiguousarray(data).reshape(h, w * planes)
    with open(path, "wb") as fh:
        writer.write(fh, rows)
