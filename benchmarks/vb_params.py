"""Parameters from the variational engine: VB-EM's sigma and TV scale against the oracle weight.

Run from the repository root::

    python benchmarks/vb_params.py             # 7 images x 3 noise levels (256x256) + blur
    python benchmarks/vb_params.py --quick     # camera, sigma 0.1, 128x128, no blur
    python benchmarks/vb_params.py --size 512  # the full images of auto_params.py (slower)

Denoising: the images and noise levels of ``benchmarks/auto_params.py`` (its ``load``:
centre crops of ``--size``, Gaussian noise seeded per pair), one row per ``--modes`` entry:

- ``default``: exactly ``restore(y, "tv", method="vi")``, sigma and the scale left out and
  every other argument at its default: what a user gets. The noise level is estimated and
  refined by VB-EM (a Gamma hyperprior of confidence 0.9 centred at the estimate), the
  weight is SURE's (kept for denoising).
- ``vbem``: the same with ``learn=("sigma", "scale")``: VB-EM learns the scale too (TV's
  majoriser, Babacan et al. 2008, flat hyperprior on the scale); ``vbem@G``: with the
  scale's Gamma hyperprior centred at SURE's value with confidence ``G``
  (``confidence=(0.9, G)``).

Reported per row: the learned sigma over the true one, the weight ``w / sigma``
(scikit-image units, ``w = lambda / 2``) and, against the oracle (the PSNR-best TV MAP
weight, ``auto_params.oracle``, cached in ``results/vb_params_oracle.json``), the PSNR of
the returned restored image ``post.point`` (the variational posterior mean: what
``Posterior.point`` and the command line give), of its ``map`` (the TV MAP at the final
parameters) and of its ``mean``; ``sure``: the TV MAP at the starting (SURE) weight.
Wall and CPU seconds per call (one thread by default).

``--blur`` (on by default, off with ``--quick``): a 9x9 Gaussian blur of std 1.5
(reflective boundary) and noise 0.01 on 256x256 crops of three images, the starting weight
by SAPG (``resolve_parameters`` with the operator), the oracle a grid of 15 weights
(``auto_params_operators.GRID``), MAPs at a relative gap of 1e-3.

Writes ``benchmarks/results/vb_params.json`` (``--quick``: ``vb_params_quick.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from auto_params import IMAGES, SIGMAS, load, oracle, psnr  # noqa: E402

from bayes_restore import ConvergenceWarning, restore  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
BLUR_IMAGES = ("camera", "astronaut", "coins")
BLUR_SIGMA = 0.01
#: the denoising rows: the package's default call, and VB-EM learning the weight too
#: (``vbem@G``: the scale's Gamma hyperprior centred at SURE's value with confidence G)
MODES = ("default", "vbem")


def mode_kwargs(mode: str) -> dict:
    """``restore``'s keywords of a denoising row: ``default``, ``vbem`` or ``vbem@G``."""
    if mode == "default":
        return {}
    name, _, gamma = mode.partition("@")
    if name != "vbem":
        raise ValueError(f"unknown mode {mode!r}")
    kw: dict = {"learn": ("sigma", "scale")}
    if gamma:
        kw["confidence"] = (0.9, float(gamma))
    return kw


ORACLE_CACHE = RESULTS / "vb_params_oracle.json"


def cached_oracle(y32: torch.Tensor, clean: np.ndarray, name: str, sigma: float, size: int,
                  seed: int) -> tuple[float, float]:
    """``auto_params.oracle`` (33 TV MAPs), cached by image, noise level, size and seed in
    ``results/vb_params_oracle.json`` (the noisy image is a function of these)."""
    key = f"{name}/{sigma:g}/{size}/{seed}"
    cache = json.loads(ORACLE_CACHE.read_text()) if ORACLE_CACHE.exists() else {}
    if key not in cache:
        w_or, p_or, _ = oracle(y32, clean, sigma)
        cache[key] = {"w": w_or, "psnr": p_or}
        ORACLE_CACHE.parent.mkdir(parents=True, exist_ok=True)
        ORACLE_CACHE.write_text(json.dumps(cache, indent=1, sort_keys=True))
    return cache[key]["w"], cache[key]["psnr"]


def run_restore(y32: torch.Tensor, **kwargs):
    """``restore(y, "tv", method="vi", **kwargs)`` with its wall and CPU seconds."""
    start, cpu = time.perf_counter(), time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        post = restore(y32, "tv", method="vi", **kwargs)
    return post, time.perf_counter() - start, time.process_time() - cpu


def denoise_pair(name: str, sigma: float, size: int, seed: int,
                 modes: tuple[str, ...] = MODES) -> dict:
    """The default call and VB-EM's weight against the oracle weight on one image and noise.

    ``default``: exactly ``restore(y, "tv", method="vi")`` (sigma and the scale left out,
    every other argument at its default): the PSNR of its restored image (``point``, the
    variational mean) and of its ``map``. ``vbem``: the same with
    ``learn=("sigma", "scale")``, VB-EM's own weight (what the default does not use for
    denoising). ``sure``: the TV MAP at the starting (SURE) weight.
    """
    from bayes_restore.infer.tv import tv_denoise_pdhg

    clean = load(name, size)
    rng = np.random.default_rng(seed)
    y = clean + sigma * rng.standard_normal(clean.shape)
    y32 = torch.from_numpy(y).float()
    w_or, p_or = cached_oracle(y32, clean, name, sigma, size, seed)
    row = {"image": name, "sigma": sigma, "size": size, "seed": seed,
           "oracle_w_over_sigma": w_or / sigma, "oracle_psnr": p_or}
    for mode in modes:
        post, seconds, cpu = run_restore(y32, **mode_kwargs(mode))
        params = post.diagnostics["parameters"]
        w_start = params["sigma_start"] ** 2 / params["scale_start"]  # scikit-image units
        row[mode] = {
            "kwargs": {k: list(v) if isinstance(v, tuple) else v
                       for k, v in mode_kwargs(mode).items()},
            "learned": list(post.diagnostics["learned"]),
            "sigma_ratio": params["sigma"] / sigma,
            "sigma_start_ratio": params["sigma_start"] / sigma,
            "w_over_sigma": params["weight"] / 2 / sigma,
            "w_start_over_sigma": w_start / sigma,
            "point_gap_db": psnr(post.point, clean) - p_or,
            "map_gap_db": (psnr(post.map, clean) - p_or) if post.map is not None else None,
            "mean_gap_db": psnr(post.mean, clean) - p_or,
            "vb_iterations": post.info.iterations, "converged": post.info.converged,
            "seconds": seconds, "cpu_seconds": cpu,
        }
        if "sure_gap_db" not in row:
            sure = tv_denoise_pdhg(y32, 2 * w_start, tol=1e-4)[0]
            row["w_start_over_sigma"] = w_start / sigma
            row["sure_gap_db"] = psnr(sure, clean) - p_or
    return row


def blur_case(name: str, size: int, seed: int) -> dict:
    """VB-EM with a blur against the oracle weight of the TV MAP with that blur."""
    from auto_params_operators import GRID

    from bayes_restore.infer.tv import tv_map_pdhg
    from bayes_restore.operators import Blur, gaussian_psf

    clean = load(name, size)
    op = Blur(gaussian_psf(9, 1.5))
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(clean)
    y = op(x) + BLUR_SIGMA * torch.from_numpy(rng.standard_normal(clean.shape))
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        post = restore(y, "tv", method="vi", operator=op, seed=seed, map_estimate=True)
    seconds = time.perf_counter() - start
    params = post.diagnostics["parameters"]

    def map_psnr(w: float) -> float:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            xm, _ = tv_map_pdhg(y, 2 * w, op, tol=1e-3, max_iter=50000)
        return psnr(xm, clean)

    grid = {g: map_psnr(g * BLUR_SIGMA) for g in GRID}
    best = max(grid, key=grid.get)
    w_start = params["sigma_start"] ** 2 / params["scale_start"]
    return {
        "image": name, "sigma": BLUR_SIGMA, "size": size, "operator": repr(op),
        "sigma_ratio": params["sigma"] / BLUR_SIGMA,
        "w_over_sigma": params["weight"] / 2 / BLUR_SIGMA,
        "w_start_over_sigma": w_start / BLUR_SIGMA,
        "oracle_w_over_sigma": best, "oracle_psnr": grid[best],
        "map_gap_db": psnr(post.map, clean) - grid[best],
        "mean_gap_db": psnr(post.mean, clean) - grid[best],
        "sapg_gap_db": map_psnr(w_start) - grid[best],
        "vb_iterations": post.info.iterations, "converged": post.info.converged,
        "seconds": seconds,
    }


def summary(rows: list[dict], keys: tuple[str, ...]) -> dict:
    """Means (and worst values) over rows."""
    out = {"pairs": len(rows),
           "sigma_error_mean": float(np.mean([abs(r["sigma_ratio"] - 1) for r in rows])),
           "sigma_error_max": float(np.max([abs(r["sigma_ratio"] - 1) for r in rows]))}
    for k in keys:
        values = [r[k] for r in rows if r.get(k) is not None]
        if values:
            out[f"{k}_mean"] = float(np.mean(values))
            out[f"{k}_worst"] = float(np.min(values))
    out["seconds_mean"] = float(np.mean([r["seconds"] for r in rows]))
    if all("cpu_seconds" in r for r in rows):
        out["cpu_seconds_mean"] = float(np.mean([r["cpu_seconds"] for r in rows]))
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--images", default=",".join(IMAGES))
    parser.add_argument("--modes", default=",".join(MODES),
                        help=f"denoising rows among {MODES} or vbem@G (the scale's hyperprior "
                             "centred at SURE's with confidence G); default: both")
    parser.add_argument("--no-blur", action="store_true")
    parser.add_argument("--blur-from", type=Path, default=None,
                        help="with --no-blur: copy the blur rows of an earlier results file "
                             "(marked as such in the output)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None,
                        help="results file (default vb_params.json, _quick.json with --quick)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    modes = tuple(args.modes.split(","))
    for mode in modes:
        try:
            mode_kwargs(mode)
        except ValueError:
            parser.error(f"--modes: {mode!r} is not one of {MODES} (or vbem@G)")
    images = ("camera",) if args.quick else tuple(args.images.split(","))
    sigmas = (0.1,) if args.quick else SIGMAS
    size = 128 if args.quick else args.size
    rows = []
    print(f"{'image':10s} sigma  mode     s/s_true  w/s (start, oracle)    point dB  map dB"
          "  sure dB   it   time    cpu")
    for name in images:
        i = IMAGES.index(name) if name in IMAGES else len(IMAGES)
        for j, sigma in enumerate(sigmas):
            r = denoise_pair(name, sigma, size, seed=100 * i + j, modes=modes)
            rows.append(r)
            for mode in modes:
                m = r[mode]
                map_db = f"{m['map_gap_db']:+7.2f}" if m["map_gap_db"] is not None else "    -  "
                print(f"{name:10s} {sigma:5.2f}  {mode:7s}  {m['sigma_ratio']:7.3f}  "
                      f"{m['w_over_sigma']:5.2f} ({r['w_start_over_sigma']:5.2f}, "
                      f"{r['oracle_w_over_sigma']:5.2f})  {m['point_gap_db']:+7.2f} {map_db} "
                      f"{r['sure_gap_db']:+8.2f} {m['vb_iterations']:4d} {m['seconds']:6.1f} "
                      f"{m['cpu_seconds']:6.1f}", flush=True)
    result = {"denoise": rows, "denoise_summary": {}}
    if rows:
        result["denoise_summary"]["sure_gap_db_mean"] = float(
            np.mean([r["sure_gap_db"] for r in rows]))
        result["denoise_summary"]["sure_gap_db_worst"] = float(
            np.min([r["sure_gap_db"] for r in rows]))
    for mode in modes:
        result["denoise_summary"][mode] = summary(
            [r[mode] for r in rows], ("point_gap_db", "map_gap_db", "mean_gap_db"))
    print(json.dumps(result["denoise_summary"], indent=1))
    if not (args.quick or args.no_blur):
        blur = []
        for i, name in enumerate(BLUR_IMAGES):
            r = blur_case(name, 256, seed=500 + i)
            blur.append(r)
            print(f"blur {name:10s} s/s_true {r['sigma_ratio']:.3f} w/s {r['w_over_sigma']:.3f} "
                  f"(start {r['w_start_over_sigma']:.3f}, oracle {r['oracle_w_over_sigma']:.3f}) "
                  f"map {r['map_gap_db']:+.2f} dB mean {r['mean_gap_db']:+.2f} dB "
                  f"sapg {r['sapg_gap_db']:+.2f} dB {r['seconds']:.1f} s", flush=True)
        result["blur"] = blur
        result["blur_summary"] = summary(blur, ("map_gap_db", "mean_gap_db", "sapg_gap_db"))
        print(json.dumps(result["blur_summary"], indent=1))
    elif args.blur_from is not None:
        earlier = json.loads(args.blur_from.read_text())
        for key in ("blur", "blur_summary"):
            if key in earlier:
                result[key] = earlier[key]
        result["blur_note"] = (f"blur rows copied from an earlier run ({args.blur_from.name}, "
                               f"command {earlier.get('command', '?')!r})")
    result["command"] = "python benchmarks/vb_params.py " + " ".join(argv or sys.argv[1:])
    result["machine"] = {"python": platform.python_version(), "torch": torch.__version__,
                         "threads": torch.get_num_threads(), "load": os.getloadavg()}
    out = args.out or RESULTS / ("vb_params_quick.json" if args.quick else "vb_params.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
