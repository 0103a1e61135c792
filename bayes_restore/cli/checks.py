"""The command's input: output names and places, option combinations, reading the input
files and the forward operator, each problem a one-line :class:`UserError`."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from .options import FLOAT_SUFFIXES, IMAGE_SUFFIXES

__all__ = [
    "UserError",
    "outputs_of",
    "check_outputs",
    "check_options",
    "read_input",
    "make_operator",
]


class UserError(Exception):
    """A problem with the command's input: one line on stderr and exit code 2."""


# ---------------------------------------------------------------------------- checks


def outputs_of(args: argparse.Namespace) -> list[tuple[str, Path]]:
    """The outputs of a restore command as ``(option, path)``, in writing order."""
    outputs = [("-o", Path(args.output))]
    if args.std:
        outputs.append(("--std", Path(args.std)))
    if args.interval:
        outputs.extend(("--interval", Path(p)) for p in args.interval)
    if args.figure:
        outputs.append(("--figure", Path(args.figure)))
    if args.samples:
        outputs.append(("--samples", Path(args.samples)))
    return outputs


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_outputs(inputs: list[tuple[str, Path]], outputs: list[tuple[str, Path]],
                   force: bool) -> None:
    """Names, suffixes and places of the outputs, before any work is done."""
    for option, out in outputs:
        if out.is_dir():
            raise UserError(f"{option} {str(out)!r} is a directory: give a file name")
        suffix = out.suffix.lower()
        if option == "-o" and suffix not in IMAGE_SUFFIXES:
            raise UserError(f"-o {str(out)!r}: the restored image must end in .png, .tif or "
                            ".tiff")
        if option in ("--std", "--interval") and suffix not in FLOAT_SUFFIXES:
            raise UserError(f"{option} {str(out)!r}: std and interval maps are written as "
                            "float32 TIFF: use .tif or .tiff")
        if option == "--figure" and suffix != ".png":
            raise UserError(f"--figure {str(out)!r} must end in .png")
        if option == "--samples" and suffix != ".nc":
            raise UserError(f"--samples {str(out)!r} must end in .nc (netCDF)")
    seen: list[Path] = []
    for option, out in outputs:
        for in_option, source in inputs:
            if _same_file(out, source):
                what = "the input file" if in_option == "input" else f"the {in_option} input file"
                raise UserError(f"{option} {str(out)!r} is {what}: refusing to overwrite it")
        if any(_same_file(out, other) for other in seen):
            raise UserError(f"{option} {str(out)!r}: this output is named twice")
        seen.append(out)
        parent = out.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            raise UserError(f"{option} {str(out)!r}: {str(parent)!r} is not a directory")
        if out.exists() and not force:
            raise UserError(f"{option} {str(out)!r} exists (use --force to overwrite it)")


def check_options(args: argparse.Namespace) -> None:
    """Combinations of options that cannot work, before any file is read."""
    from bayes_restore.engines import ENGINES
    from bayes_restore.priors import PRIOR_NAMES, make_prior

    if args.method not in ENGINES:
        raise UserError(f"--method {args.method!r}: unknown; expected one of "
                        f"{', '.join(ENGINES)}")
    no_std = not ENGINES[args.method].gives_std
    if (args.std or args.interval) and no_std:
        raise UserError(f"--std and --interval need a method with uncertainty (exact, vi or "
                        f"mcmc), not --method {args.method}")
    if args.samples and no_std:
        raise UserError("--samples needs --method mcmc, vi or exact")
    if args.num_samples is not None and no_std:
        raise UserError("--num-samples needs --method mcmc, vi or exact")
    if args.point == "mean" and no_std:
        raise UserError(f"--point mean needs a posterior mean (--method exact, vi or mcmc), "
                        f"not --method {args.method}")
    if args.point == "map" and not ENGINES[args.method].gives_map:
        raise UserError(f"--point map: --method {args.method} computes no MAP image; use "
                        "--method map or vi, or --point mean")
    if args.overlap is not None and args.tile is None:
        raise UserError("--overlap needs --tile")
    if args.tile is not None and args.command in ("deblur", "superres"):
        raise UserError(f"--tile: {args.command} cannot be tiled (its operator couples pixels "
                        "across tiles): restore the whole image")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UserError("--device cuda: no CUDA device is available")
    scale = None if args.scale == "auto" else args.scale
    if scale is not None and args.weight is not None:
        raise UserError("--scale and --weight: give one of them, not both")
    if args.prior not in PRIOR_NAMES:
        raise UserError(f"--prior {args.prior!r}: unknown; expected one of "
                        f"{', '.join(sorted(PRIOR_NAMES))}")
    try:
        probe = make_prior(args.prior, 1.0, shape=(2, 2), beta=args.beta)
    except ValueError as err:
        raise UserError(f"--beta {args.beta} with --prior {args.prior}: {err}") from None
    order = getattr(probe, "gradient_order", None)
    if args.method == "exact" and order != 2.0:
        raise UserError(f"--method exact needs --prior gaussian (a Gaussian posterior), not "
                        f"--prior {args.prior}: use --method vi or mcmc")
    if scale is None and args.weight is None:
        if order not in (1.0, 2.0):
            raise UserError(f"--prior {args.prior}: give --scale or --weight (the automatic "
                            "choice is for TV and gaussian)")


# ---------------------------------------------------------------------------- inputs


def read_input(path: str | Path, option: str | None, page: int | None = None):
    """``read_image`` with its errors as one-line user errors naming the option."""
    from bayes_restore.io import read_image

    try:
        return read_image(path, page=page)
    except ValueError as err:
        message = str(err)
        if option is not None:
            message = f"{option}: {message.replace(' with --page N', '')}"
        elif page is not None and "page" in message:
            message = f"--page {page}: {message}"
        raise UserError(message) from None


def make_operator(args: argparse.Namespace, y):
    """The forward operator of the subcommand: None (denoise), Blur, Downsample or Mask,
    checked on the image's shape."""
    import torch

    from bayes_restore import operators

    if args.command == "deblur":
        op = operators.Blur(_parse_psf(args.psf, tuple(y.shape[-2:])), boundary=args.boundary)
        option = f"--psf {args.psf!r} with --boundary {args.boundary}"
    elif args.command == "superres":
        op = operators.Downsample(args.factor, kernel=args.kernel)
        option = f"--factor {args.factor}"
    elif args.command == "inpaint":
        mask, _ = read_input(args.mask, "--mask")
        if mask.ndim == 3:
            mask = mask.max(-1)
        if mask.shape != tuple(y.shape[-2:]):
            raise UserError(f"--mask is {mask.shape[0]}x{mask.shape[1]} but the image is "
                            f"{y.shape[-2]}x{y.shape[-1]}")
        if not (mask > 0.5).any():
            raise UserError(f"--mask {args.mask!r} observes no pixel (all dark)")
        op = operators.Mask(torch.from_numpy(mask > 0.5))
        option = "--mask"
    else:
        return None
    try:
        op.adjoint(op.forward(y))
    except ValueError as err:
        raise UserError(f"{option}: {err}") from None
    return op


def _parse_psf(text: str, shape: tuple[int, int]):
    """``gaussian:SIGMA[:SIZE]``, ``box:SIZE``, or an image / ``.npy`` file holding the kernel,
    at most the image's size."""
    import numpy as np
    import torch

    from bayes_restore import operators

    kind, _, rest = text.partition(":")
    limit = max(shape)
    if kind in ("gaussian", "box"):
        try:
            parts = rest.split(":")
            if kind == "box":
                if len(parts) != 1:
                    raise ValueError("expected box:SIZE")
                size, sigma = int(parts[0]), None
            else:
                if len(parts) > 2:
                    raise ValueError("expected gaussian:SIGMA or gaussian:SIGMA:SIZE")
                sigma = float(parts[0])
                if not 0 < sigma < limit:
                    raise ValueError(f"SIGMA must be in (0, {limit}) for this image, got "
                                     f"{parts[0]!r}")
                size = int(parts[1]) if len(parts) > 1 else 2 * int(np.ceil(3 * sigma)) + 1
            if size > 2 * limit + 1:
                raise ValueError(f"the kernel ({size} pixels) is larger than the image "
                                 f"{shape[0]}x{shape[1]}")
            if kind == "box":
                return operators.box_psf(size)
            return operators.gaussian_psf(min(size, 2 * limit + 1), sigma)
        except ValueError as err:
            raise UserError(f"--psf {text!r}: {err}") from None
    path = Path(text)
    if path.suffix.lower() == ".npy":
        if not path.is_file():
            raise UserError(f"--psf {text!r}: not a file (or use gaussian:SIGMA[:SIZE], "
                            "box:SIZE)")
        try:
            psf = np.asarray(np.load(path, allow_pickle=False), dtype=np.float64)
        except (OSError, ValueError, TypeError) as err:
            raise UserError(f"--psf {text!r}: not a valid .npy kernel ({err})") from None
    else:
        if ":" in text and not path.exists():
            raise UserError(f"--psf {text!r}: unknown kernel {kind!r} (expected "
                            "gaussian:SIGMA[:SIZE], box:SIZE, or a file)")
        psf, _ = read_input(path, "--psf")
    if psf.ndim != 2 or not np.isfinite(psf).all() or psf.sum() <= 0:
        raise UserError(f"--psf {text!r}: need a 2-D kernel with a positive sum")
    if max(psf.shape) > 2 * limit + 1:
        raise UserError(f"--psf {text!r}: the kernel {psf.shape[0]}x{psf.shape[1]} is larger "
                        f"than the image {shape[0]}x{shape[1]}")
    return torch.from_numpy(np.ascontiguousarray(psf / psf.sum()))
