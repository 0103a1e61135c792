"""Benchmark of the exact Gaussian-gradient posterior with an operator, and of blur boundaries.

Run ``python benchmarks/gaussian_exact.py`` (about 5 minutes on 2 cores; ``--quick`` skips
the TV border rows, ``--speed-only`` runs the speed table alone and keeps the border rows
of the existing JSON, ``--pcg-512`` adds the PCG path at 512x512, several minutes a row). It
prints two tables and writes
``benchmarks/results/gaussian_exact.json``:

1. **Speed.** ``exact_posterior`` (mean and per-pixel std) on crops of scikit-image's
   ``camera`` seen through a reflective 9x9 Gaussian blur (std 1.5) and x2 / x4 box
   decimation, noise 0.01, ``b = 0.05``: the closed form (``solver="dct"``) against the
   PCG / perturb-and-optimise path it replaces (``solver="pcg"``, default Monte Carlo
   target), in the same run, float64 and float32, one thread. Times are the median of
   repeats; the PCG row also gives the error of its std against the exact one.
2. **Borders.** A crop of a larger blurred image (the blur of the scene outside the crop
   reaches into it, as in a real photograph), restored with the blur modelled with the
   periodic and the reflective boundary: PSNR over the whole crop, the 16-pixel border band
   and the interior, at the best weight of a small grid for each. Gaussian-gradient prior
   (its posterior mean) and, unless ``--quick``, TV.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from bayes_restore.infer import exact_posterior, tv_map_pdhg
from bayes_restore.infer.gaussian_spectral import SpectralGaussian, dct_aliasing
from bayes_restore.models import restoration_model
from bayes_restore.operators import Blur, Downsample, gaussian_psf
from bayes_restore.priors import GaussianGradient

RESULTS = Path(__file__).resolve().parent / "results" / "gaussian_exact.json"
SIGMA = 0.01
SCALE = 0.05


def camera(size: int | None = None) -> torch.Tensor:
    """scikit-image's camera in [0, 1], float64, or its centred ``size x size`` crop."""
    from skimage import data, img_as_float

    img = torch.from_numpy(img_as_float(data.camera()))
    if size is None or size >= img.shape[0]:
        return img
    top = (img.shape[0] - size) // 2
    return img[top : top + size, top : top + size]


OPERATORS = {
    "blur 9x9 reflect": lambda: Blur(gaussian_psf(9, 1.5), boundary="reflect"),
    "x2 box": lambda: Downsample(2),
    "x4 box": lambda: Downsample(4),
}


def _posterior(op, y, size, solver, dtype, **kw):
    prior = GaussianGradient(torch.tensor(SCALE, dtype=dtype), shape=(size, size))
    return exact_posterior(restoration_model, y, prior=prior,
                           sigma=torch.tensor(SIGMA, dtype=dtype), operator=op,
                           solver=solver, **kw)


def speed_row(name: str, size: int, dtype: torch.dtype, *, pcg: bool, repeats: int) -> dict:
    op = OPERATORS[name]()
    x = camera(size).to(dtype)
    gen = torch.Generator().manual_seed(0)
    y = op.forward(x) + SIGMA * torch.randn(op.output_shape(x.shape), generator=gen, dtype=dtype)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        exact = _posterior(op, y, size, "dct", dtype)
        times.append(time.perf_counter() - start)
    row = {"operator": name, "size": size, "dtype": str(dtype).replace("torch.", ""),
           "exact_s": statistics.median(times), "exact_s_min": min(times)}
    core = []
    for _ in range(repeats):  # the closed form alone, without the engine's model tracing
        start = time.perf_counter()
        post = SpectralGaussian(dct_aliasing(op, (size, size), y),
                                torch.tensor([[SIGMA]], dtype=dtype),
                                torch.tensor([[SCALE]], dtype=dtype))
        post.mean(y), post.std()
        core.append(time.perf_counter() - start)
    row["closed_form_s"] = statistics.median(core)
    start = time.perf_counter()
    _posterior(op, y, size, "dct", dtype, num_samples=10)
    row["exact_with_10_samples_s"] = time.perf_counter() - start
    if pcg:
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            slow = _posterior(op, y, size, "pcg", dtype)
        row["pcg_s"] = time.perf_counter() - start
        row["pcg_draws"] = slow.diagnostics["num_draws"]
        rel = (slow.std.double() / exact.std.double() - 1).abs()
        row["pcg_std_err_median"] = float(rel.median())
        row["pcg_std_err_max"] = float(rel.max())
        row["pcg_mean_err"] = float((slow.mean.double() - exact.mean.double()).abs().max()
                                    / exact.std.double().min())
        row["speedup"] = row["pcg_s"] / row["exact_s"]
    return row


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return 10 * math.log10(1.0 / float(((a - b) ** 2).mean()))


def border_rows(tv: bool) -> list[dict]:
    """Periodic against reflective blur on crops of a larger blurred image."""
    psf = gaussian_psf(9, 1.5)
    img = camera()
    blurred = Blur(psf, boundary="valid").forward(img)  # the scene beyond each crop included
    n, band_width = 192, 16
    band = torch.ones(n, n, dtype=torch.bool)
    band[band_width:-band_width, band_width:-band_width] = False
    rows = []
    for corner in [(60, 60), (200, 150)]:
        r0, c0 = corner
        gen = torch.Generator().manual_seed(0)
        y = blurred[r0 : r0 + n, c0 : c0 + n] + SIGMA * torch.randn(n, n, generator=gen,
                                                                   dtype=torch.float64)
        truth = img[r0 + 4 : r0 + 4 + n, c0 + 4 : c0 + 4 + n]
        priors = [("gaussian", [0.005, 0.01, 0.02, 0.05, 0.1, 0.2])]
        if tv:
            priors.append(("tv", [1e-3, 3e-3, 1e-2, 3e-2, 1e-1]))
        for prior, grid in priors:
            for boundary in ("periodic", "reflect"):
                op = Blur(psf, boundary=boundary)
                best = None
                for value in grid:
                    start = time.perf_counter()
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        if prior == "gaussian":
                            x = _gaussian_mean(op, y, n, value)
                        else:
                            x, _ = tv_map_pdhg(y, value, op, tol=1e-4, max_iter=3000)
                    row = {"crop": list(corner), "prior": prior, "boundary": boundary,
                           "parameter": value, "psnr": _psnr(x, truth),
                           "psnr_border": _psnr(x[band], truth[band]),
                           "psnr_interior": _psnr(x[~band], truth[~band]),
                           "time_s": time.perf_counter() - start}
                    if best is None or row["psnr"] > best["psnr"]:
                        best = row
                rows.append(best)
        rows.append({"crop": list(corner), "prior": "none (the blurred input)",
                     "boundary": "-", "parameter": None, "psnr": _psnr(y, truth),
                     "psnr_border": _psnr(y[band], truth[band]),
                     "psnr_interior": _psnr(y[~band], truth[~band]), "time_s": 0.0})
    return rows


def _gaussian_mean(op, y, n, scale) -> torch.Tensor:
    """The Gaussian-gradient posterior mean (= MAP) with prior scale ``scale``."""
    prior = GaussianGradient(torch.tensor(scale, dtype=torch.float64), shape=(n, n))
    post = exact_posterior(restoration_model, y, prior=prior,
                           sigma=torch.tensor(SIGMA, dtype=torch.float64), operator=op,
                           num_draws=2)
    return post.mean


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="no TV border rows")
    parser.add_argument("--pcg-512", action="store_true", help="the PCG path at 512x512 too")
    parser.add_argument("--speed-only", action="store_true",
                        help="the speed table only; the border rows are kept from --output")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    speed = []
    print(f"{'operator':18s} {'size':>5s} {'dtype':8s} {'core s':>7s} {'exact s':>8s} "
          f"{'+10 draws':>9s} "
          f"{'PCG s':>8s} {'draws':>5s} {'ratio':>7s} {'PCG std err med/max':>20s}")
    for size, pcg in [(128, True), (512, args.pcg_512)]:
        for name in OPERATORS:
            for dtype in (torch.float64, torch.float32):
                row = speed_row(name, size, dtype, pcg=pcg, repeats=args.repeats)
                speed.append(row)
                tail = ""
                if pcg:
                    tail = (f"{row['pcg_s']:8.2f} {row['pcg_draws']:5d} {row['speedup']:7.0f} "
                            f"{row['pcg_std_err_median']:9.3f}/{row['pcg_std_err_max']:.3f}")
                print(f"{name:18s} {size:5d} {row['dtype']:8s} {row['closed_form_s']:7.4f} "
                      f"{row['exact_s']:8.4f} "
                      f"{row['exact_with_10_samples_s']:9.4f} {tail}", flush=True)
    print()
    if args.speed_only:
        borders = json.loads(args.output.read_text())["borders"] if args.output.exists() else []
    else:
        borders = border_rows(tv=not args.quick)
    print(f"{'crop':11s} {'prior':24s} {'boundary':9s} {'param':>7s} {'PSNR':>6s} "
          f"{'border':>6s} {'inner':>6s}")
    for r in borders:
        param = "" if r["parameter"] is None else f"{r['parameter']:.0e}"
        print(f"{str(tuple(r['crop'])):11s} {r['prior']:24s} {r['boundary']:9s} {param:>7s} "
              f"{r['psnr']:6.2f} {r['psnr_border']:6.2f} {r['psnr_interior']:6.2f}")
    result = {
        "speed": speed, "borders": borders, "sigma": SIGMA, "scale": SCALE,
        "threads": args.threads, "torch": torch.__version__, "numpy": np.__version__,
        "python": sys.version.split()[0], "machine": platform.machine(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2))
    print(f"\nwritten {args.output}")
    return result


if __name__ == "__main__":
    main()
