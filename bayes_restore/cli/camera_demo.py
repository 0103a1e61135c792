"""The ``demo`` subcommand: restore scikit-image's camera image, with uncertainty."""

from __future__ import annotations

import argparse
from pathlib import Path

from .checks import UserError
from .options import PROG

__all__ = ["demo", "demo_command"]


def demo(
    out: str | Path = "bayes_restore_demo",
    *,
    sigma: float = 0.1,
    seed: int = 0,
    num_samples: int | None = 150,
    max_time: float | None = None,
) -> dict:
    """Restore scikit-image's camera image with added noise, with per-pixel uncertainty.

    The model is total variation with a Gaussian likelihood; the noise level is known and
    the TV weight chosen from the data (Stein's unbiased risk estimate). Writes into
    ``out``, all three or none: ``restored.png`` (the TV MAP, certified solver),
    ``std.tiff`` (the per-pixel posterior standard deviation, float32, from SK-ROCK
    proximal Langevin draws) and ``figure.png`` (noisy, MAP, posterior mean, std). The std
    panel states its Monte Carlo error: the relative standard error of the std map at the
    median pixel, from the draws' effective sample sizes (a few draws leave the map grainy:
    the number says how grainy).

    Parameters
    ----------
    out : str or path-like, default "bayes_restore_demo"
        The folder to write into (created if needed; files in it are replaced).
    sigma : float, default 0.1
        Standard deviation of the noise added to the clean image.
    seed : int, default 0
        Seeds the added noise and the sampler: equal seeds give equal files.
    num_samples : int or None, default 150
        Number of Langevin draws for the std (a fixed budget, about 10 s); ``None``: run
        the chains until they have converged (R-hat and ESS on every pixel, see
        :func:`~bayes_restore.infer.mcmc`), at most ``max_time`` seconds.
    max_time : float, optional
        With ``num_samples=None``: the time cap (default: that of ``mcmc``).

    Returns
    -------
    dict
        ``paths`` (the written files), ``psnr`` (noisy, TV MAP, TV posterior mean),
        ``weight`` (the TV weight), ``sampler`` and ``std_mc_error`` (relative, at the
        median pixel).
    """
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np

    from bayes_restore.io import atomic_paths, encode_image, prepare_image
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
    budget = ({"num_samples": num_samples, "num_chains": 1} if num_samples is not None
              else {} if max_time is None else {"max_time": max_time})
    sampled = restore(noisy, "tv", sigma=sigma, weight=weight, method="mcmc", seed=seed,
                      **budget)
    mc_error = sampled.diagnostics.get("std_mc_error")
    tv, mean, std = map_post.map, sampled.mean, sampled.std
    scores = {
        "noisy": psnr(clean, noisy, data_range=1.0),
        "tv_map": psnr(clean, tv, data_range=1.0),
        "tv_mean": psnr(clean, mean, data_range=1.0),
    }
    paths = {"restored": out / "restored.png", "std": out / "std.tiff",
             "figure": out / "figure.png"}
    restored_data = prepare_image(paths["restored"], tv, None)
    std_data = prepare_image(paths["std"], std, 32)
    draws = sampled.diagnostics["num_draws"] * sampled.diagnostics["num_chains"]
    std_title = f"posterior std (mean {float(std.mean()):.3f})"
    if mc_error is not None:
        std_title += (f"\nMonte Carlo error {100 * mc_error:.0f} % at the median pixel "
                      f"({draws} draws)")
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
        encode_image(tmp_restored, *restored_data)
        encode_image(tmp_std, *std_data)
        fig.savefig(tmp_figure, dpi=110, format="png")
    return {"paths": paths, "psnr": scores, "weight": weight,
            "sampler": sampled.diagnostics.get("sampler"), "std_mc_error": mc_error}


def demo_command(args: argparse.Namespace) -> int:
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
    mce = result.get("std_mc_error")
    print(f"TV weight {result['weight']:.4g} (SURE), std from {result['sampler']} draws"
          + ("" if mce is None else f" (Monte Carlo error {100 * mce:.0f} % at the median "
                                    "pixel)"))
    return 0
