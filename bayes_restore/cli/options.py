"""The command line's parser: its option types and every option of every subcommand."""

from __future__ import annotations

import argparse

__all__ = [
    "PROG",
    "PRIORS",
    "IMAGE_SUFFIXES",
    "FLOAT_SUFFIXES",
    "BLUR_BOUNDARY",
    "OneLineParser",
    "build_parser",
    "check_parsed",
]

PROG = "bayes-restore"
PRIORS = ["tv", "tv-anisotropic", "gaussian", "gradient", "gradient-anisotropic"]
#: what the restored image may be written as, and the std and interval maps (float32)
IMAGE_SUFFIXES = (".png", ".tif", ".tiff")
FLOAT_SUFFIXES = (".tif", ".tiff")
MAX_SEED = 2**63 - 1
#: --boundary's default: Blur's (the parser does not import torch; a test keeps them equal)
BLUR_BOUNDARY = "reflect"


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
    if value > MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be at most 2**63 - 1, got {text!r}")
    return value


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
    p.add_argument("--method", default="map", metavar="NAME",
                   help="map: the MAP image only (default); exact: Gaussian posterior "
                        "(--prior gaussian); vi: variational; mcmc: Langevin sampling; or an "
                        "engine registered with bayes_restore.restore.register_engine")
    p.add_argument("--point", default="auto", choices=["auto", "map", "mean"],
                   help="what -o writes: the MAP image or the posterior mean; auto (default) "
                        "the MAP when the method computes one (map, exact, vi: for TV the "
                        "sharper image), else the mean (mcmc)")
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


class OneLineParser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) and exit code 2."""

    def error(self, message: str):  # noqa: D102
        self.exit(2, f"{PROG}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog=PROG, description="Bayesian image restoration: images and uncertainty."
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser,
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
                   "Deblur and denoise an image: y = psf * x + noise. Without --sigma, "
                   "--scale or --weight they are estimated from the image."),
        "superres": ("super-resolve an image file",
                     "Super-resolve an image: y = downsample(x) + noise, x is --factor times "
                     "larger. Without --sigma, --scale or --weight they are estimated from "
                     "the image."),
        "inpaint": ("fill in missing pixels of an image file",
                    "Fill in the pixels that are dark in --mask: y = mask * x + noise. "
                    "Without --sigma, --scale or --weight they are estimated from the "
                    "observed pixels."),
    }
    subs = {}
    for name, (short, long) in commands.items():
        subs[name] = sub.add_parser(name, help=short, description=long)
        _add_restore_arguments(subs[name])
    subs["deblur"].add_argument("--psf", required=True,
                                help="blur kernel: gaussian:SIGMA[:SIZE], box:SIZE, or a file "
                                     "(image or .npy)")
    subs["deblur"].add_argument("--boundary", default=BLUR_BOUNDARY,
                                choices=["reflect", "periodic", "valid"],
                                help="reflect: the image mirrored about its borders (default); "
                                     "periodic: the blur wraps around; valid: the "
                                     "observation is smaller than the image by the kernel")
    subs["superres"].add_argument("--factor", type=int, default=2, choices=[2, 3, 4],
                                  help="magnification (default 2)")
    subs["superres"].add_argument("--kernel", default="box", choices=["box", "gaussian"],
                                  help="how the camera averages pixels: box (default) or "
                                       "gaussian")
    subs["inpaint"].add_argument("--mask", required=True,
                                 help="image: bright = observed, dark = missing")
    return parser


def check_parsed(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """argparse takes ``--tile=--`` for "not given" (it drops the ``--``): refuse it."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for action in sub.choices[args.command]._actions:
        if action.nargs is None and action.option_strings and \
                getattr(args, action.dest, None) == []:
            parser.error(f"argument {'/'.join(action.option_strings)}: expected a value, "
                         "got '--'")
