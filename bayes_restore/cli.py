"""The ``bayes-restore`` command line (``python -m bayes_restore``).

Exit codes: 0 success; 2 a problem with the command's input (a bad option or value, an
unreadable or missing file, an output that exists...), told in one line on stderr; 1 an
internal error, shown as a traceback (please report it); 128 + N when stopped by signal N
(130 for SIGINT, 143 for SIGTERM). Outputs are written all or none: every file goes to a
hidden temporary file beside its target first and they are renamed together at the end; an
error or a SIGINT/SIGTERM/SIGHUP removes the temporary files and leaves no partial set.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

__all__ = ["main", "demo"]

PROG = "bayes-restore"
PRIORS = ["tv", "tv-anisotropic", "gaussian", "gradient", "gradient-anisotropic"]
_IMAGE_SUFFIXES = (".png", ".tif", ".tiff")
_FLOAT_SUFFIXES = (".tif", ".tiff")
_MAX_SEED = 2**63 - 1


def demo(
    out: str | Path = "bayes_restore_demo",
    *,
    sigma: float = 0.1,
    seed: int = 0,
    num_samples: int = 150,
) -> dict:
    """Restore scikit-image's camera image with added noise, with per-pixel uncertainty.

    The model is total variation with a Gaussian likelihood; the noise level is known and
    the TV weight chosen from the data (Stein's unbiased risk estimate). Writes into
    ``out``, all three or none: ``restored.png`` (the TV MAP, certified solver),
    ``std.tiff`` (the per-pixel posterior standard deviation, float32, from SK-ROCK
    proximal Langevin draws) and ``figure.png`` (noisy, MAP, posterior mean, std).

    Parameters
    ----------
    out : str or path-like, default "bayes_restore_demo"
        The folder to write into (created if needed; files in it are replaced).
    sigma : float, default 0.1
        Standard deviation of the noise added to the clean image.
    seed : int, default 0
        Seeds the added noise and the sampler: equal seeds give equal files.
    num_samples : int, default 150
        Number of Langevin draws for the std.

    Returns
    -------
    dict
        ``paths`` (the written files), ``psnr`` (noisy, TV MAP, TV posterior mean),
        ``weight`` (the TV weight) and ``sampler``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np

    from bayes_restore.io import _encode, _prepare, atomic_paths
    from bayes_restore.plot import image_panels
    from bayes_restore.restore import restore

    try:
        from skimage import data, img_as_float
        from skimage.metrics import peak_signal_noise_ratio as psnr
    except ImportError:  # pragma: no cover - depends on the install
        raise SystemExit(
            f"{PROG}: error: the demo needs scikit-image: "
            'pip install "bayes-restore[examples]"'
        ) from None

    out = Path(out)
    clean = img_as_float(data.camera())
    rng = np.random.default_rng(seed)
    noisy = clean + sigma * rng.standard_normal(clean.shape)

    map_post = restore(noisy, "tv", sigma=sigma, seed=seed)  # weight by SURE
    weight = map_post.diagnostics["parameters"]["weight"]
    sampled = restore(noisy, "tv", sigma=sigma, weight=weight, method="mcmc",
                      num_samples=num_samples, num_chains=1, seed=seed)
    tv, mean, std = map_post.map, sampled.mean, sampled.std
    scores = {
        "noisy": psnr(clean, noisy, data_range=1.0),
        "tv_map": psnr(clean, tv, data_range=1.0),
        "tv_mean": psnr(clean, mean, data_range=1.0),
    }
    paths = {"restored": out / "restored.png", "std": out / "std.tiff",
             "figure": out / "figure.png"}
    restored_data = _prepare(paths["restored"], tv, None)
    std_data = _prepare(paths["std"], std, 32)
    std_title = f"posterior std (mean {float(std.mean()):.3f})"
    fig = image_panels(
        {
            f"noisy (sigma={sigma:g}), {scores['noisy']:.2f} dB": np.clip(noisy, 0, 1),
            f"TV MAP, {scores['tv_map']:.2f} dB": tv,
            f"TV posterior mean, {scores['tv_mean']:.2f} dB": mean,
            std_title: std,
        },
        cmaps={std_title: "magma"},
    )
    with atomic_paths(paths.values()) as (tmp_restored, tmp_std, tmp_figure):
        _encode(tmp_restored, *restored_data)
        _encode(tmp_std, *std_data)
        fig.savefig(tmp_figure, dpi=110, format="png")
    return {"paths": paths, "psnr": scores, "weight": weight,
            "sampler": sampled.diagnostics.get("sampler")}


class UserError(Exception):
    """A problem with the command's input: one line on stderr and exit code 2."""


class _Interrupted(BaseException):
    """SIGINT, SIGTERM or SIGHUP arrived: unwind (removing temporary files) and exit."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


# ---------------------------------------------------------------------------- option types


def _number_or_auto(text: str) -> float | str:
    if text == "auto":
        return "auto"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'auto', got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    # the images are computed in float32: a parameter must be a float32 number too
    if not 1.2e-38 <= value <= 3.4e38:
        raise argparse.ArgumentTypeError(
            f"must be a number > 0 that float32 can hold (about 1e-38 to 3e38), got {text!r}"
        )
    return value


def _positive(text: str) -> float:
    value = _number_or_auto(text)
    if value == "auto":
        raise argparse.ArgumentTypeError("expected a number, got 'auto'")
    return value


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1), got {text!r}")
    return value


def _nonnegative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    value = _nonnegative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be > 0, got 0")
    return value


def _seed(text: str) -> int:
    value = _nonnegative_int(text)
    if value > _MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be at most 2**63 - 1, got {text!r}")
    return value


# ---------------------------------------------------------------------------- checks


def _outputs(args: argparse.Namespace) -> list[tuple[str, Path]]:
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


def _check_outputs(inputs: list[tuple[str, Path]], outputs: list[tuple[str, Path]],
                   force: bool) -> None:
    """Names, suffixes and places of the outputs, before any work is done."""
    for option, out in outputs:
        if out.is_dir():
            raise UserError(f"{option} {str(out)!r} is a directory: give a file name")
        suffix = out.suffix.lower()
        if option == "-o" and suffix not in _IMAGE_SUFFIXES:
            raise UserError(f"-o {str(out)!r}: the restored image must end in .png, .tif or "
                            ".tiff")
        if option in ("--std", "--interval") and suffix not in _FLOAT_SUFFIXES:
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


def _check_options(args: argparse.Namespace) -> None:
    """Combinations of options that cannot work, before any file is read."""
    from bayes_restore.priors import PRIOR_NAMES, make_prior

    if (args.std or args.interval) and args.method == "map":
        raise UserError("--std and --interval need --method exact, vi or mcmc (MAP has no std)")
    if args.samples and args.method == "map":
        raise UserError("--samples needs --method mcmc, vi or exact")
    if args.num_samples is not None and args.method == "map":
        raise UserError("--num-samples needs --method mcmc, vi or exact")
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
        if args.command != "denoise":
            raise UserError(f"{args.command}: give --scale or --weight (the automatic choice "
                            "is for denoise)")
        if order not in (1.0, 2.0):
            raise UserError(f"--prior {args.prior}: give --scale or --weight (the automatic "
                            "choice is for TV and gaussian)")


# ---------------------------------------------------------------------------- inputs


def _read(path: str | Path, option: str | None, page: int | None = None):
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


def _make_operator(args: argparse.Namespace, y):
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
        mask, _ = _read(args.mask, "--mask")
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
        psf, _ = _read(path, "--psf")
    if psf.ndim != 2 or not np.isfinite(psf).all() or psf.sum() <= 0:
        raise UserError(f"--psf {text!r}: need a 2-D kernel with a positive sum")
    if max(psf.shape) > 2 * limit + 1:
        raise UserError(f"--psf {text!r}: the kernel {psf.shape[0]}x{psf.shape[1]} is larger "
                        f"than the image {shape[0]}x{shape[1]}")
    return torch.from_numpy(np.ascontiguousarray(psf / psf.sum()))


def _output_depth(info, out: Path) -> int:
    """Bit depth of the restored image: the input's when the format allows it."""
    if out.suffix.lower() in _FLOAT_SUFFIXES:
        return 32 if info.is_float else info.bit_depth
    return 16 if info.is_float or info.bit_depth == 16 else 8


# ---------------------------------------------------------------------------- the command


def _restore_command(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from bayes_restore.io import _encode, _prepare, atomic_paths

    outputs = _outputs(args)
    inputs = [("input", Path(args.input))]
    if getattr(args, "mask", None):
        inputs.append(("--mask", Path(args.mask)))
    if getattr(args, "psf", None) and Path(args.psf).exists():
        inputs.append(("--psf", Path(args.psf)))
    _check_outputs(inputs, outputs, args.force)
    _check_options(args)

    image, info = _read(args.input, None, page=args.page)
    alpha = None
    if image.ndim == 3 and image.shape[-1] in (2, 4):  # keep alpha as it is
        image, alpha = image[..., :-1], image[..., -1:]
        if image.shape[-1] == 1:
            image = image[..., 0]
    chw = image if image.ndim == 2 else np.moveaxis(image, -1, 0)
    if min(chw.shape[-2:]) < 2:
        raise UserError(f"{args.input!r} is {chw.shape[-2]}x{chw.shape[-1]} pixels: need at "
                        "least 2x2")
    y = torch.from_numpy(np.ascontiguousarray(chw)).to(args.device)
    operator = _make_operator(args, y)

    sigma = None if args.sigma == "auto" else args.sigma
    scale = None if args.scale == "auto" else args.scale
    kwargs: dict = {"seed": args.seed}
    if args.method in ("map", "vi", "mcmc"):
        kwargs["progress"] = not args.quiet and sys.stderr.isatty()
    if args.num_samples is not None:
        kwargs["num_samples"] = args.num_samples
    elif args.samples and args.method == "exact":
        kwargs["num_samples"] = 1000
    common = dict(sigma=sigma, scale=scale, weight=args.weight, beta=args.beta,
                  method=args.method, operator=operator, **kwargs)
    if args.tile is not None:  # large images: tiles in memory-bounded batches
        from bayes_restore.tiled import restore_tiled

        post = restore_tiled(y, args.prior, tile=args.tile, overlap=args.overlap, **common)
    else:
        from bayes_restore.restore import restore

        post = restore(y, args.prior, **common)

    def to_hwc(t):
        arr = t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)
        return arr if arr.ndim == 2 else np.moveaxis(arr, 0, -1)

    point = to_hwc(post.point)
    if alpha is not None:
        point = np.concatenate([point[..., None] if point.ndim == 2 else point, alpha], -1)
    images = {Path(args.output): (point, _output_depth(info, Path(args.output)))}
    if args.std:
        images[Path(args.std)] = (to_hwc(post.std), 32)  # a std is not an intensity
    if args.interval:
        for path, bound in zip(args.interval, post.interval(args.prob), strict=True):
            images[Path(path)] = (to_hwc(bound), 32)
    prepared = {path: _prepare(path, data, depth) for path, (data, depth) in images.items()}
    figure = _figure(post, y) if args.figure else None
    idata = post.to_arviz(observed=y) if args.samples else None

    targets = [path for _, path in outputs]
    current = None
    try:
        with atomic_paths(targets) as temps:
            for (option, path), tmp in zip(outputs, temps, strict=True):
                current = f"{option} {str(path)!r}"
                if path in prepared:
                    _encode(tmp, *prepared[path])
                elif option == "--figure":
                    figure.savefig(tmp, dpi=110, format="png")
                else:
                    idata.to_netcdf(str(tmp))
            current = "the outputs"
    except OSError as err:
        raise UserError(f"cannot write {current}: {err.strerror or err}") from None
    if not args.quiet:
        method = post.info.solver if post.info is not None else args.method
        par = post.diagnostics["parameters"]
        how = {k: "estimated" if f"{k}_estimated" in par else "given" for k in ("sigma", "weight")}
        if "scale_estimated" in par and "weight_estimated" not in par:
            how["weight"] = "estimated"
        weight = "n/a" if par.get("weight") is None else format(par["weight"], ".4g")
        print(f"sigma {par['sigma']:.4g} ({how['sigma']}), weight {weight} "
              f"({how['weight']}), method {args.method} ({method}), seed {args.seed}")
        for path in targets:
            print(f"wrote {path}")
    return 0


def _figure(post, y):
    import matplotlib

    matplotlib.use("Agg")
    from bayes_restore.plot import image_panels, uncertainty_panel

    noisy = y.detach().cpu().numpy()
    if post.std is not None:
        return uncertainty_panel(post, noisy)
    point = post.point.detach().cpu().numpy() if hasattr(post.point, "detach") else post.point
    first = (lambda a: a if a.ndim == 2 else a[0])  # noqa: E731
    return image_panels({"observed": first(noisy), "MAP": first(point)})


def _demo_command(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {args.out!r} is a file: give a folder")
    try:
        result = demo(out, sigma=args.sigma, seed=args.seed)
    except OSError as err:
        raise UserError(f"--out {args.out!r}: cannot write: {err.strerror or err}") from None
    for name, path in result["paths"].items():
        print(f"{name:>9}: {path}")
    print(
        "PSNR: noisy {noisy:.2f} dB, TV MAP {tv_map:.2f} dB, "
        "TV posterior mean {tv_mean:.2f} dB".format(**result["psnr"])
    )
    print(f"TV weight {result['weight']:.4g} (SURE), std from {result['sampler']} draws")
    return 0


# ---------------------------------------------------------------------------- the parser


def _add_restore_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="input image (PNG, TIFF or JPEG)")
    p.add_argument("-o", "--output", required=True,
                   help="restored image (.png or .tif/.tiff; keeps the input's bit depth "
                        "where the format allows)")
    p.add_argument("--page", type=_nonnegative_int, default=None, metavar="N",
                   help="page of a multi-page TIFF input, from 0 (required for such files)")
    p.add_argument("--prior", default="tv", metavar="NAME",
                   help="image prior: " + ", ".join(PRIORS) + " (total variation by default, "
                        "anisotropic TV, Gaussian gradients, gradients of order --beta), or a "
                        "name registered with bayes_restore.priors.register_prior")
    p.add_argument("--beta", type=_positive, default=None, help="order of --prior gradient")
    p.add_argument("--sigma", type=_number_or_auto, default="auto",
                   help="noise std in [0, 1] intensity units, or 'auto' (default)")
    p.add_argument("--scale", type=_number_or_auto, default=None,
                   help="prior scale b, or 'auto' (default when --weight is not given)")
    p.add_argument("--weight", type=_positive, default=None,
                   help="energy weight lambda (instead of --scale)")
    p.add_argument("--method", default="map", choices=["map", "exact", "vi", "mcmc"],
                   help="map: the MAP image only (default); exact: Gaussian posterior "
                        "(--prior gaussian); vi: variational; mcmc: Langevin sampling")
    p.add_argument("--num-samples", type=_positive_int, default=None, metavar="N",
                   help="posterior draws for --method mcmc, vi or exact (default: the "
                        "method's)")
    p.add_argument("--seed", type=_seed, default=0,
                   help="seed of the random draws (default 0): equal seeds, equal files")
    p.add_argument("--std", metavar="STD.tif",
                   help="write the per-pixel posterior std here (float32 TIFF)")
    p.add_argument("--interval", nargs=2, metavar=("LO.tif", "HI.tif"),
                   help="write the credible interval bounds here (float32 TIFFs)")
    p.add_argument("--prob", type=_probability, default=0.9,
                   help="mass of --interval, in (0, 1) (default 0.9)")
    p.add_argument("--figure", metavar="FIG.png", help="write a figure here")
    p.add_argument("--samples", metavar="S.nc", help="write the posterior draws (netCDF)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                   help="where to compute (default cpu)")
    p.add_argument("--tile", type=_positive_int, default=None,
                   help="restore in tiles of this size (large images; denoise and inpaint)")
    p.add_argument("--overlap", type=_nonnegative_int, default=None,
                   help="pixels of overlap around each tile (default: automatic, 32 for TV)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or messages")
    p.add_argument("--force", action="store_true",
                   help="overwrite existing outputs (never the input)")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) and exit code 2."""

    def error(self, message: str):  # noqa: D102
        self.exit(2, f"{PROG}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG, description="Bayesian image restoration: images and uncertainty."
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser,
                                metavar="COMMAND")
    p_demo = sub.add_parser(
        "demo", help="restore a bundled sample image, with uncertainty",
        description="Add noise to scikit-image's camera image and restore it with total "
                    "variation: writes restored.png, std.tiff (float32) and figure.png.",
    )
    p_demo.add_argument("--out", default="bayes_restore_demo",
                        help="output folder (default bayes_restore_demo)")
    p_demo.add_argument("--sigma", type=_positive, default=0.1,
                        help="noise level to add (default 0.1)")
    p_demo.add_argument("--seed", type=_seed, default=0,
                        help="seed of the noise and of the sampler (default 0)")
    commands = {
        "denoise": ("denoise an image file",
                    "Denoise an image: y = x + noise. Without --sigma, --scale or --weight "
                    "they are estimated from the image."),
        "deblur": ("deblur (and denoise) an image file",
                   "Deblur and denoise an image: y = psf * x + noise. Give --scale or "
                   "--weight."),
        "superres": ("super-resolve an image file",
                     "Super-resolve an image: y = downsample(x) + noise, x is --factor times "
                     "larger. Give --scale or --weight."),
        "inpaint": ("fill in missing pixels of an image file",
                    "Fill in the pixels that are dark in --mask: y = mask * x + noise. Give "
                    "--scale or --weight."),
    }
    subs = {}
    for name, (short, long) in commands.items():
        subs[name] = sub.add_parser(name, help=short, description=long)
        _add_restore_arguments(subs[name])
    subs["deblur"].add_argument("--psf", required=True,
                                help="blur kernel: gaussian:SIGMA[:SIZE], box:SIZE, or a file "
                                     "(image or .npy)")
    subs["deblur"].add_argument("--boundary", default="periodic", choices=["periodic", "valid"],
                                help="periodic: the blur wraps around (default); valid: the "
                                     "observation is smaller than the image by the kernel")
    subs["superres"].add_argument("--factor", type=int, default=2, choices=[2, 3, 4],
                                  help="magnification (default 2)")
    subs["superres"].add_argument("--kernel", default="box", choices=["box", "gaussian"],
                                  help="how the camera averages pixels: box (default) or "
                                       "gaussian")
    subs["inpaint"].add_argument("--mask", required=True,
                                 help="image: bright = observed, dark = missing")
    return parser


@contextlib.contextmanager
def _interrupts() -> Iterator[dict]:
    """SIGINT, SIGTERM and SIGHUP raise :class:`_Interrupted` (once; later ones wait) so
    that temporary files are removed on the way out; the old handlers come back at the end."""
    from bayes_restore.io import _deferrable

    state: dict = {"signum": None, "armed": True}

    def handler(signum, frame):
        if state["signum"] is None:
            state["signum"] = signum
            if state["armed"]:
                raise _Interrupted(signum)

    names = ("SIGINT", "SIGTERM", "SIGHUP")
    old = {}
    if threading.current_thread() is threading.main_thread():
        for name in names:
            if hasattr(signal, name):
                num = getattr(signal, name)
                old[num] = signal.signal(num, _deferrable(handler))
    try:
        yield state
    finally:
        state["armed"] = False
        for num, previous in old.items():
            signal.signal(num, previous)


@contextlib.contextmanager
def _summarised_warnings() -> Iterator[None]:
    """Collect warnings and print one line per kind on stderr at the end."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=PendingDeprecationWarning)
        try:
            yield
        finally:
            kinds: dict[str, list] = {}
            for w in caught:
                kinds.setdefault(w.category.__name__, []).append(w)
            for name, items in kinds.items():
                first = str(items[0].message).splitlines()[0] if str(items[0].message) else ""
                print(f"warning: {len(items)} {name}(s): {first}", file=sys.stderr)


def _check_parsed(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """argparse takes ``--tile=--`` for "not given" (it drops the ``--``): refuse it."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for action in sub.choices[args.command]._actions:
        if action.nargs is None and action.option_strings and \
                getattr(args, action.dest, None) == []:
            parser.error(f"argument {'/'.join(action.option_strings)}: expected a value, "
                         "got '--'")


def _interrupt_in(err: BaseException) -> _Interrupted | None:
    """The :class:`_Interrupted` that ``err`` is or comes from (its causes and contexts)."""
    seen: set[int] = set()
    todo = [err]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, _Interrupted):
            return e
        todo.extend([e.__cause__, e.__context__, *getattr(e, "exceptions", ())])
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``bayes-restore``.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit code: 0 done, 2 a user error (one line on stderr), 128 + N stopped by
        signal N. Internal errors are raised (a traceback, exit code 1).
    """
    from bayes_restore.io import _remove_temps

    with _interrupts() as state:
        try:
            parser = _parser()
            try:
                args = parser.parse_args(argv)
                _check_parsed(parser, args)
            except SystemExit as done:  # --help, or an argparse error (already printed)
                return done.code if isinstance(done.code, int) else 2
            with _summarised_warnings():
                if args.command == "demo":
                    return _demo_command(args)
                return _restore_command(args)
        except UserError as err:
            message = str(err).splitlines()[0] if str(err) else "invalid input"
            print(f"{PROG}: error: {message}", file=sys.stderr)
            return 2
        except BaseException as err:
            # the interrupt itself, or an error it caused (Python wraps exceptions raised in
            # some places, e.g. a class being created by an import, in a RuntimeError)
            stop = _interrupt_in(err)
            if stop is None:
                raise
            state["armed"] = False
            _remove_temps()
            name = signal.Signals(stop.signum).name
            print(f"{PROG}: interrupted by {name}", file=sys.stderr)
            return 128 + stop.signum
        finally:
            state["armed"] = False
            _remove_temps()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
