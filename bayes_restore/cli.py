"""The ``bayes-restore`` command line (``python -m bayes_restore``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main", "demo"]


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
    ``out``: ``restored.png`` (the TV MAP, certified solver), ``std.tiff`` (the per-pixel
    posterior standard deviation, float32, from SK-ROCK proximal Langevin draws) and
    ``figure.png`` (noisy, MAP, posterior mean, std).

    Returns a dict of the written paths, the PSNRs and the parameters.
    """
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np
    import torch

    from bayes_restore.io import atomic_path, write_image
    from bayes_restore.plot import image_panels
    from bayes_restore.restore import restore

    try:
        from skimage import data, img_as_float
        from skimage.metrics import peak_signal_noise_ratio as psnr
    except ImportError:  # pragma: no cover - depends on the install
        raise SystemExit(
            "bayes-restore: error: the demo needs scikit-image: "
            'pip install "bayes-restore[examples]"'
        ) from None

    out = Path(out)
    clean = img_as_float(data.camera())
    rng = np.random.default_rng(seed)
    noisy = clean + sigma * rng.standard_normal(clean.shape)

    map_post = restore(noisy, "tv", sigma=sigma)  # weight by SURE
    weight = map_post.diagnostics["parameters"]["weight"]
    sampled = restore(noisy, "tv", sigma=sigma, weight=weight, method="mcmc",
                      num_samples=num_samples, num_chains=1,
                      generator=torch.Generator().manual_seed(seed))
    tv, mean, std = map_post.map, sampled.mean, sampled.std
    scores = {
        "noisy": psnr(clean, noisy, data_range=1.0),
        "tv_map": psnr(clean, tv, data_range=1.0),
        "tv_mean": psnr(clean, mean, data_range=1.0),
    }
    paths = {
        "restored": write_image(out / "restored.png", tv),
        "std": write_image(out / "std.tiff", std),
    }
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
    with atomic_path(out / "figure.png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    paths["figure"] = out / "figure.png"
    return {"paths": paths, "psnr": scores, "weight": weight,
            "sampler": sampled.diagnostics.get("sampler")}


class UserError(Exception):
    """A problem with the command's input: one line on stderr and exit code 2."""


def _number_or_auto(text: str) -> float | str:
    if text == "auto":
        return "auto"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'auto', got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _positive(text: str) -> float:
    value = _number_or_auto(text)
    if value == "auto":
        raise argparse.ArgumentTypeError("expected a number")
    return value


def _nonnegative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = _nonnegative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be > 0, got 0")
    return value


def _check_outputs(inputs: list[Path], outputs: list[Path], force: bool) -> None:
    seen: set[Path] = set()
    sources = {p.resolve() for p in inputs}
    for out in outputs:
        resolved = out.resolve()
        if resolved in sources:
            raise UserError(f"output {str(out)!r} is an input file: refusing to overwrite it")
        if resolved in seen:
            raise UserError(f"output {str(out)!r} is named twice")
        seen.add(resolved)
        if out.exists() and not force:
            raise UserError(f"output {str(out)!r} exists (use --force to overwrite it)")


def _restore_command(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from bayes_restore.io import read_image, write_image
    from bayes_restore.restore import restore

    source = Path(args.input)
    outputs = [Path(args.output)]
    if args.std:
        outputs.append(Path(args.std))
    if args.interval:
        outputs.extend(Path(p) for p in args.interval)
    if args.figure:
        outputs.append(Path(args.figure))
    if args.samples:
        outputs.append(Path(args.samples))
    inputs = [source] + [Path(p) for p in (getattr(args, "mask", None),
                                           getattr(args, "psf", None)) if p]
    _check_outputs(inputs, outputs, args.force)
    for path in outputs[:1] + [Path(p) for p in (args.std, *(args.interval or ())) if p]:
        if path.suffix.lower() not in (".png", ".tif", ".tiff"):
            raise UserError(f"image output {str(path)!r} must end in .png, .tif or .tiff")
    if args.samples and Path(args.samples).suffix.lower() != ".nc":
        raise UserError(f"--samples {args.samples!r} must end in .nc (netCDF)")
    if args.figure and Path(args.figure).suffix.lower() != ".png":
        raise UserError(f"--figure {args.figure!r} must end in .png")
    needs_std = args.std or args.interval
    if needs_std and args.method == "map":
        raise UserError("--std and --interval need --method exact, vi or mcmc (MAP has no std)")
    if args.samples and args.method not in ("mcmc", "vi", "exact"):
        raise UserError("--samples needs --method mcmc, vi or exact")
    if args.overlap is not None and args.tile is None:
        raise UserError("--overlap needs --tile")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available")

    image, info = read_image(source)
    alpha = None
    if image.ndim == 3 and image.shape[-1] in (2, 4):  # keep alpha as it is
        image, alpha = image[..., :-1], image[..., -1:]
        if image.shape[-1] == 1:
            image = image[..., 0]
    chw = image if image.ndim == 2 else np.moveaxis(image, -1, 0)
    y = torch.from_numpy(np.ascontiguousarray(chw)).to(args.device)
    sigma = None if args.sigma == "auto" else args.sigma
    scale = None if args.scale == "auto" else args.scale
    weight = args.weight
    kwargs: dict = {}
    if args.method in ("map", "vi", "mcmc"):
        kwargs["progress"] = not args.quiet and sys.stderr.isatty()
    if args.samples and args.method == "exact":
        kwargs["num_samples"] = 1000
    operator = _make_operator(args, y)
    if args.tile is not None:  # large images: tiles in memory-bounded batches
        from bayes_restore.tiled import restore_tiled

        post = restore_tiled(y, args.prior, sigma=sigma, scale=scale, weight=weight,
                             beta=args.beta, method=args.method, operator=operator,
                             tile=args.tile, overlap=args.overlap, **kwargs)
    else:
        post = restore(y, args.prior, sigma=sigma, scale=scale, weight=weight,
                       beta=args.beta, method=args.method, operator=operator, **kwargs)

    def to_hwc(t):
        arr = t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)
        return arr if arr.ndim == 2 else np.moveaxis(arr, 0, -1)

    def save(path: str, data) -> None:
        out = Path(path)
        hwc = to_hwc(data)
        if alpha is not None and out == Path(args.output):
            hwc = np.concatenate([hwc[..., None] if hwc.ndim == 2 else hwc, alpha], axis=-1)
        depth = _output_depth(info, out)
        write_image(out, hwc, bit_depth=depth)
        written.append(str(out))

    written: list[str] = []
    save(args.output, post.point)
    if args.std:
        save(args.std, post.std)
    if args.interval:
        lo, hi = post.interval(args.prob)
        save(args.interval[0], lo)
        save(args.interval[1], hi)
    if args.figure:
        _save_figure(args.figure, post, y)
        written.append(args.figure)
    if args.samples:
        _save_samples(args.samples, post, y)
        written.append(args.samples)
    if not args.quiet:
        method = post.info.solver if post.info is not None else args.method
        par = post.diagnostics["parameters"]
        how = {k: "estimated" if f"{k}_estimated" in par else "given" for k in ("sigma", "weight")}
        if "scale_estimated" in par and "weight_estimated" not in par:
            how["weight"] = "estimated"
        print(f"sigma {par['sigma']:.4g} ({how['sigma']}), weight {par['weight']:.4g} "
              f"({how['weight']}), method {args.method} ({method})")
        for path in written:
            print(f"wrote {path}")
    return 0


def _make_operator(args: argparse.Namespace, y):
    """The forward operator of the subcommand: None (denoise), Blur, Downsample or Mask."""
    from bayes_restore import operators

    if args.command == "deblur":
        return operators.Blur(_parse_psf(args.psf), boundary=args.boundary)
    if args.command == "superres":
        return operators.Downsample(args.factor, kernel=args.kernel)
    if args.command == "inpaint":
        from bayes_restore.io import read_image

        mask, _ = read_image(args.mask)
        if mask.ndim == 3:
            mask = mask.max(-1)
        if mask.shape != tuple(y.shape[-2:]):
            raise UserError(f"--mask is {mask.shape[0]}x{mask.shape[1]} but the image is "
                            f"{y.shape[-2]}x{y.shape[-1]}")
        import torch

        return operators.Mask(torch.from_numpy(mask > 0.5))
    return None


def _parse_psf(text: str):
    """``gaussian:SIGMA[:SIZE]``, ``box:SIZE``, or an image / ``.npy`` file holding the kernel."""
    import numpy as np
    import torch

    from bayes_restore import operators

    kind, _, rest = text.partition(":")
    try:
        if kind == "gaussian":
            parts = rest.split(":")
            sigma = float(parts[0])
            size = int(parts[1]) if len(parts) > 1 else 2 * int(np.ceil(3 * sigma)) + 1
            return operators.gaussian_psf(size, sigma)
        if kind == "box":
            return operators.box_psf(int(rest))
    except ValueError as err:
        raise UserError(f"--psf {text!r}: {err}") from None
    path = Path(text)
    if path.suffix.lower() == ".npy" and path.is_file():
        psf = np.load(path)
    else:
        from bayes_restore.io import read_image

        psf, _ = read_image(path)
    if psf.ndim != 2 or not np.isfinite(psf).all() or psf.sum() <= 0:
        raise UserError(f"--psf {text!r}: need a 2-D kernel with a positive sum")
    return torch.from_numpy(psf / psf.sum())


def _output_depth(info, out: Path) -> int:
    """Bit depth of an output: the input's when the format allows it."""
    if out.suffix.lower() in (".tif", ".tiff"):
        return 32 if info.is_float else info.bit_depth
    return 16 if info.is_float or info.bit_depth == 16 else 8


def _save_figure(path: str, post, y) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from bayes_restore.io import atomic_path
    from bayes_restore.plot import image_panels, uncertainty_panel

    noisy = y.detach().cpu().numpy()
    if post.std is not None:
        fig = uncertainty_panel(post, noisy)
    else:
        point = post.point.detach().cpu().numpy() if hasattr(post.point, "detach") else post.point
        first = (lambda a: a if a.ndim == 2 else a[0])  # noqa: E731
        fig = image_panels({"observed": first(noisy), "MAP": first(point)})
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")


def _save_samples(path: str, post, y) -> None:
    from bayes_restore.io import atomic_path

    idata = post.to_arviz(observed=y)
    with atomic_path(path) as tmp:
        idata.to_netcdf(str(tmp))


def _add_restore_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="input image (PNG, TIFF or JPEG)")
    p.add_argument("-o", "--output", required=True, help="restored image (.png, .tif)")
    p.add_argument("--prior", default="tv",
                   choices=["tv", "tv-anisotropic", "gaussian", "gradient", "gradient-anisotropic"])
    p.add_argument("--beta", type=_positive, default=None, help="order of --prior gradient")
    p.add_argument("--sigma", type=_number_or_auto, default="auto",
                   help="noise std in [0, 1] intensity units, or 'auto' (default)")
    p.add_argument("--scale", type=_number_or_auto, default=None,
                   help="prior scale b, or 'auto' (default when --weight is not given)")
    p.add_argument("--weight", type=_positive, default=None,
                   help="energy weight lambda (instead of --scale)")
    p.add_argument("--method", default="map", choices=["map", "exact", "vi", "mcmc"])
    p.add_argument("--std", metavar="STD", help="write the per-pixel posterior std here")
    p.add_argument("--interval", nargs=2, metavar=("LO", "HI"),
                   help="write the credible interval bounds here")
    p.add_argument("--prob", type=float, default=0.9, help="mass of --interval (default 0.9)")
    p.add_argument("--figure", metavar="FIG.png", help="write a figure here")
    p.add_argument("--samples", metavar="S.nc", help="write the posterior draws (netCDF)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--tile", type=_positive_int, default=None,
                   help="restore in tiles of this size (large images; denoise and inpaint)")
    p.add_argument("--overlap", type=_nonnegative_int, default=None,
                   help="pixels of overlap around each tile (default: automatic, 32 for TV)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or messages")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) and exit code 2."""

    def error(self, message: str):  # noqa: D102
        self.exit(2, f"bayes-restore: error: {message}\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``bayes-restore``."""
    parser = _Parser(
        prog="bayes-restore", description="Bayesian image restoration: images and uncertainty."
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p_demo = sub.add_parser("demo", help="restore a bundled sample image, with uncertainty")
    p_demo.add_argument("--out", default="bayes_restore_demo", help="output folder")
    p_demo.add_argument("--sigma", type=_positive, default=0.1, help="noise level to add")
    p_denoise = sub.add_parser("denoise", help="denoise an image file")
    _add_restore_arguments(p_denoise)
    p_deblur = sub.add_parser("deblur", help="deblur (and denoise) an image file")
    _add_restore_arguments(p_deblur)
    p_deblur.add_argument("--psf", required=True,
                          help="blur kernel: gaussian:SIGMA[:SIZE], box:SIZE, or a file")
    p_deblur.add_argument("--boundary", default="periodic", choices=["periodic", "valid"])
    p_sr = sub.add_parser("superres", help="super-resolve an image file")
    _add_restore_arguments(p_sr)
    p_sr.add_argument("--factor", type=int, default=2, choices=[2, 3, 4])
    p_sr.add_argument("--kernel", default="box", choices=["box", "gaussian"])
    p_in = sub.add_parser("inpaint", help="fill in missing pixels of an image file")
    _add_restore_arguments(p_in)
    p_in.add_argument("--mask", required=True, help="image: bright = observed, dark = missing")
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            result = demo(args.out, sigma=args.sigma)
            for name, path in result["paths"].items():
                print(f"{name:>9}: {path}")
            print(
                "PSNR: noisy {noisy:.2f} dB, TV MAP {tv_map:.2f} dB, "
                "TV posterior mean {tv_mean:.2f} dB".format(**result["psnr"])
            )
            print(f"TV weight {result['weight']:.4g} (SURE), std from {result['sampler']} draws")
            return 0
        if not 0 < args.prob < 1:
            raise UserError(f"--prob must be in (0, 1), got {args.prob}")
        return _restore_command(args)
    except (UserError, ValueError, OSError) as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"bayes-restore: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
