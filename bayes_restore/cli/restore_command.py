"""The restore subcommands (denoise, deblur, superres, inpaint): run, then write every
output all or none."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .checks import (
    UserError,
    check_options,
    check_outputs,
    make_operator,
    outputs_of,
    read_input,
)
from .options import FLOAT_SUFFIXES

__all__ = ["restore_command"]


def _output_depth(info, out: Path) -> int:
    """Bit depth of the restored image: the input's when the format allows it."""
    if out.suffix.lower() in FLOAT_SUFFIXES:
        return 32 if info.is_float else info.bit_depth
    return 16 if info.is_float or info.bit_depth == 16 else 8


def restore_command(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from bayes_restore.io import atomic_paths, encode_image, prepare_image

    outputs = outputs_of(args)
    inputs = [("input", Path(args.input))]
    if getattr(args, "mask", None):
        inputs.append(("--mask", Path(args.mask)))
    if getattr(args, "psf", None) and Path(args.psf).exists():
        inputs.append(("--psf", Path(args.psf)))
    check_outputs(inputs, outputs, args.force)
    check_options(args)

    image, info = read_input(args.input, None, page=args.page)
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
    operator = make_operator(args, y)

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

    point = to_hwc(_restored(post, args.point))
    if alpha is not None:
        point = np.concatenate([point[..., None] if point.ndim == 2 else point, alpha], -1)
    images = {Path(args.output): (point, _output_depth(info, Path(args.output)))}
    if args.std:
        images[Path(args.std)] = (to_hwc(post.std), 32)  # a std is not an intensity
    if args.interval:
        for path, bound in zip(args.interval, post.interval(args.prob), strict=True):
            images[Path(path)] = (to_hwc(bound), 32)
    prepared = {path: prepare_image(path, data, depth) for path, (data, depth) in images.items()}
    figure = _figure(post, y) if args.figure else None
    idata = post.to_arviz(observed=y) if args.samples else None

    targets = [path for _, path in outputs]
    current = None
    try:
        with atomic_paths(targets) as temps:
            for (option, path), tmp in zip(outputs, temps, strict=True):
                current = f"{option} {str(path)!r}"
                if path in prepared:
                    encode_image(tmp, *prepared[path])
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
        if ("scale_estimated" in par or "scale_method" in par) and "weight_estimated" not in par:
            how["weight"] = "estimated"
        if how["sigma"] == "estimated" and "sigma_method" in par:
            how["sigma"] = f"estimated from the {par['sigma_method']}"
        chooser = par.get("weight_method") or par.get("scale_method")
        if how["weight"] == "estimated" and chooser:
            how["weight"] = f"estimated by {chooser}"
        weight = "n/a" if par.get("weight") is None else format(par["weight"], ".4g")
        print(f"sigma {par['sigma']:.4g} ({how['sigma']}), weight {weight} "
              f"({how['weight']}), method {args.method} ({method}), seed {args.seed}")
        for path in targets:
            print(f"wrote {path}")
    return 0


def _restored(post, point: str):
    """The image ``-o`` writes: ``--point`` map or mean; auto, the MAP when there is one."""
    image = post.mean if point == "mean" else post.map
    if image is None and point == "auto":
        image = post.point
    if image is None:  # a registered engine that gives no such image
        raise UserError(f"--point {point}: --method {post.method} gave no "
                        f"{'posterior mean' if point == 'mean' else 'MAP image'}")
    return image


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
