"""Parameters from the variational engine: VB-EM's sigma and TV scale against the oracle weight.

Run from the repository root::

    python benchmarks/vb_params.py             # 7 images x 3 noise levels (256x256) + blur
    python benchmarks/vb_params.py --quick     # camera, sigma 0.1, 128x128, no blur
    python benchmarks/vb_params.py --size 512  # the full images of auto_params.py (slower)

Denoising: the images and noise levels of ``benchmarks/auto_params.py`` (its ``load``:
centre crops of ``--size``, Gaussian noise seeded per pair). For each pair,
``restore(y, "tv", method="vi")`` with sigma and the scale left out: the structured
variational engine starts from the resolved estimates (sigma by the noise estimator, the
weight by SURE) and refines them by VB-EM (TV's majoriser, Babacan et al. 2008; the
noise level under a Gamma hyperprior of confidence 0.9 centred at the estimate, the
scale with a flat one). Reported: the learned sigma over the true one, the learned weight
``w / sigma`` (scikit-image units, ``w = lambda / 2``) and the PSNR of the engine's
``map`` (the TV MAP at the learned parameters) and of its ``mean`` (the variational
posterior mean) against the oracle: the PSNR-best TV MAP weight (``auto_params.oracle``);
``sure``: the TV MAP at the starting (SURE) weight, for comparison.

``--blur`` (on by default, off with ``--quick``): a 9x9 Gaussian blur of std 1.5
(reflective boundary) and noise 0.01 on 256x256 crops of three images, the starting weight
by SAPG (``resolve_parameters`` with the operator), the oracle a grid of 15 weights
(``auto_params_operators.GRID``), MAPs at a relative gap of 1e-3.

Writes ``benchmarks/results/vb_params.json`` (``--quick``: ``vb_params_quick.json``).
"""

from __future__ import annotations

import argparse
import json
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


def denoise_pair(name: str, sigma: float, size: int, seed: int) -> dict:
    """VB-EM against the oracle weight on one image and noise level."""
    from bayes_restore.infer.tv import tv_denoise_pdhg

    clean = load(name, size)
    rng = np.random.default_rng(seed)
    y = clean + sigma * rng.standard_normal(clean.shape)
    y32 = torch.from_numpy(y).float()
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        post = restore(y32, "tv", method="vi", seed=seed)
    seconds = time.perf_counter() - start
    params = post.diagnostics["parameters"]
    w_or, p_or, _ = oracle(y32, clean, sigma)
    w_start = params["sigma_start"] ** 2 / params["scale_start"]  # scikit-image units
    sure = tv_denoise_pdhg(y32, 2 * w_start, tol=1e-4)[0]
    w_vb = params["weight"] / 2
    return {
        "image": name, "sigma": sigma, "size": size,
        "sigma_ratio": params["sigma"] / sigma,
        "sigma_start_ratio": params["sigma_start"] / sigma,
        "w_over_sigma": w_vb / sigma, "w_start_over_sigma": w_start / sigma,
        "oracle_w_over_sigma": w_or / sigma, "oracle_psnr": p_or,
        "map_gap_db": psnr(post.map, clean) - p_or,
        "mean_gap_db": psnr(post.mean, clean) - p_or,
        "sure_gap_db": psnr(sure, clean) - p_or,
        "vb_iterations": post.info.iterations, "converged": post.info.converged,
        "seconds": seconds,
    }


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
        out[f"{k}_mean"] = float(np.mean([r[k] for r in rows]))
        out[f"{k}_worst"] = float(np.min([r[k] for r in rows]))
    out["seconds_mean"] = float(np.mean([r["seconds"] for r in rows]))
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--images", default=",".join(IMAGES))
    parser.add_argument("--no-blur", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    images = ("camera",) if args.quick else tuple(args.images.split(","))
    sigmas = (0.1,) if args.quick else SIGMAS
    size = 128 if args.quick else args.size
    rows = []
    print(f"{'image':10s} sigma  s/s_true  w/s (start, oracle)     map dB  mean dB  sure dB"
          "   it   time")
    for i, name in enumerate(images):
        for j, sigma in enumerate(sigmas):
            r = denoise_pair(name, sigma, size, seed=100 * i + j)
            rows.append(r)
            print(f"{name:10s} {sigma:5.2f}  {r['sigma_ratio']:7.3f}  {r['w_over_sigma']:5.2f} "
                  f"({r['w_start_over_sigma']:5.2f}, {r['oracle_w_over_sigma']:5.2f})  "
                  f"{r['map_gap_db']:+7.2f} {r['mean_gap_db']:+8.2f} {r['sure_gap_db']:+8.2f} "
                  f"{r['vb_iterations']:4d} {r['seconds']:6.1f}", flush=True)
    result = {"denoise": rows,
              "denoise_summary": summary(rows, ("map_gap_db", "mean_gap_db", "sure_gap_db"))}
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
    result["command"] = "python benchmarks/vb_params.py " + " ".join(argv or sys.argv[1:])
    result["machine"] = {"python": platform.python_version(), "torch": torch.__version__,
                         "threads": torch.get_num_threads()}
    out = RESULTS / ("vb_params_quick.json" if args.quick else "vb_params.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
