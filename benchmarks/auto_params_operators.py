"""Parameter-free restoration with an operator: the chosen parameters against the oracle.

Run from the repository root::

    python benchmarks/auto_params_operators.py            # 7 images, 256x256
    python benchmarks/auto_params_operators.py --quick    # 2 images, 128x128 (a smoke test)
    python benchmarks/auto_params_operators.py --noise    # the noise estimate's errors only

For each grey scikit-image sample (centre crops, as ``benchmarks/superres.py``) and each
task of that benchmark's ``observe`` (``deblur``: a 9x9 Gaussian blur of std 1.5 with
``Blur``'s default boundary; ``sr2``: ``Downsample(2)``; ``inpaint``: a 50 % random mask),
with Gaussian noise of std ``--sigma`` (0.01 by default, as there):

- **TV**: the parameters ``restore(y, "tv", operator=op)`` chooses
  (:func:`~bayes_restore.parameters.resolve_parameters`: sigma from the observation
  through the operator, the weight by SAPG with the operator) against the **oracle**
  weight, the PSNR-best of a geometric grid (``GRID`` times the true sigma, in
  scikit-image's units ``w = lambda / 2``, factor sqrt(2) apart). Both MAPs are solved to
  a certified relative gap of 1e-3. Columns: the estimated sigma over the true one, the
  chosen and oracle ``w / sigma``, their PSNRs and the gap, and the time of the choice
  (sigma + weight, without the final solve).
- **Gaussian** (``--gaussian``; ``--no-tv`` for these rows alone): the maximum-evidence
  scale (``hyper.gaussian_empirical_bayes(y, sigma, operator=op)``: the closed form for the
  reflective blur and the decimation, the PCG path for the mask) against the PSNR-best
  scale of a grid, both MAPs by ``restore(..., method="map")``.

- **Noise** (``--noise``, instead of the above): the relative error of
  ``hyper.estimate_observation_sigma(y, op)`` for noise levels ``NOISE_SIGMAS``, through
  the blur, ``Downsample(2)`` and random masks with ``MISSING`` of the pixels missing,
  with the masked estimator's two readings (``masked_sigma(..., method="windows")`` and
  ``"blocks"``; the default takes the smaller) next to it;
  ``auto_params_operators_noise.json``.

Results go to ``benchmarks/results/auto_params_operators.json`` (``--quick``:
``auto_params_operators_quick.json``); ``--markdown`` prints the tables of the
documentation from the JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from superres import IMAGES, grey_image, observe, psnr  # noqa: E402

from bayes_restore import restore  # noqa: E402
from bayes_restore.infer.tv import tv_map_pdhg  # noqa: E402
from bayes_restore.parameters import resolve_parameters  # noqa: E402

TASKS = ("deblur", "sr2", "inpaint")
#: oracle grid of the TV weight, scikit-image units over sigma: 0.015 to 2, factor sqrt(2)
GRID = tuple(0.015 * 2 ** (k / 2) for k in range(15))
#: oracle grid of the Gaussian scale, factors of the evidence's choice
GAUSS_GRID = tuple(2 ** (k / 2) for k in range(-6, 7))
RESULTS = Path(__file__).parent / "results"
#: the noise table: noise levels and the masks' missing shares
NOISE_SIGMAS, MISSING = (0.01, 0.05), (0.5, 0.8)


def tv_psnr(op, y: np.ndarray, w: float, clean: np.ndarray) -> float:
    x, _ = tv_map_pdhg(torch.from_numpy(y), 2 * w, op, tol=1e-3, max_iter=50000)
    return psnr(x.numpy(), clean)


def tv_row(op, y: np.ndarray, clean: np.ndarray, sigma: float, seed: int) -> dict:
    t0 = time.perf_counter()
    s_est, _, weight, info = resolve_parameters(
        torch.from_numpy(y), "tv", sigma=None, scale=None, weight=None, beta=None,
        operator=op, seed=seed)
    elapsed = time.perf_counter() - t0
    chosen = psnr_at = tv_psnr(op, y, weight / 2, clean)
    grid = {g: tv_psnr(op, y, g * sigma, clean) for g in GRID}
    best = max(grid, key=grid.get)
    # the same solves with the true sigma's SAPG, to separate sigma's share of the gap
    _, _, w_true, _ = resolve_parameters(
        torch.from_numpy(y), "tv", sigma=sigma, scale=None, weight=None, beta=None,
        operator=op, seed=seed)
    return {
        "sigma_ratio": s_est / sigma, "chosen_w_over_sigma": weight / 2 / sigma,
        "chosen_psnr": chosen, "oracle_w_over_sigma": best, "oracle_psnr": grid[best],
        "gap_db": psnr_at - grid[best], "time_s": elapsed,
        "true_sigma_w_over_sigma": w_true / 2 / sigma,
        "true_sigma_psnr": tv_psnr(op, y, w_true / 2, clean),
        "grid": {f"{g:.4g}": v for g, v in grid.items()}, "method": info["weight_method"],
    }


def gaussian_row(op, y: np.ndarray, clean: np.ndarray, seed: int) -> dict | None:
    t0 = time.perf_counter()
    try:
        s_est, scale, _, _ = resolve_parameters(
            torch.from_numpy(y), "gaussian", sigma=None, scale=None, weight=None, beta=None,
            operator=op, seed=seed)
    except ValueError as err:
        return {"skipped": str(err).splitlines()[0]}
    elapsed = time.perf_counter() - t0

    def at(b: float) -> float:
        post = restore(y, "gaussian", sigma=s_est, scale=b, operator=op, seed=seed)
        return psnr(post.point, clean)

    chosen = at(scale)
    grid = {f: at(f * scale) for f in GAUSS_GRID}
    best = max(grid, key=grid.get)
    return {"scale": scale, "chosen_psnr": chosen, "oracle_factor": best,
            "oracle_psnr": max(grid[best], chosen), "gap_db": chosen - max(grid[best], chosen),
            "time_s": elapsed}


def noise_table(images, size: int) -> dict:
    """Relative errors of the noise estimate through each operator (one draw per case)."""
    import superres

    from bayes_restore.hyper import estimate_observation_sigma
    from bayes_restore.hyper.observation_noise import masked_sigma
    from bayes_restore.operators import Mask

    rows: dict = {}
    for name in images:
        clean = grey_image(name, size)
        k = IMAGES.index(name) if name in IMAGES else 0
        for sigma in NOISE_SIGMAS:
            superres.SIGMA = sigma
            row = {}
            for j, task in enumerate(("deblur", "sr2")):
                op, y, _ = observe(task, clean, seed=1000 + 100 * k + j)
                row[task] = estimate_observation_sigma(torch.from_numpy(y), op) / sigma - 1
            for j, missing in enumerate(MISSING):
                rng = np.random.default_rng(2000 + 100 * k + j)
                seen = rng.random(clean.shape) >= missing
                y = torch.from_numpy(np.where(
                    seen, clean + sigma * rng.standard_normal(clean.shape), 0.0))
                seen_t = torch.from_numpy(seen)
                t0 = time.process_time()
                row[f"mask{missing:g}"] = estimate_observation_sigma(y, Mask(seen_t)) / sigma - 1
                row[f"mask{missing:g}_cpu_s"] = time.process_time() - t0
                for method in ("windows", "blocks"):
                    alone = masked_sigma(y, seen_t, method=method)
                    row[f"mask{missing:g}_{method}"] = alone / sigma - 1
            rows[f"{name} {sigma:g}"] = row
            print(f"{name:>9} sigma {sigma:g}: " + ", ".join(
                f"{key} {v:+.0%}" for key, v in row.items() if not key.endswith("_s")), flush=True)
    return rows


def noise_markdown(rows: dict) -> str:
    kinds = ("", "_windows", "_blocks")
    keys = ["deblur", "sr2"] + [f"mask{m:g}{b}" for m in MISSING for b in kinds]
    heads = ["deblur", "x2"] + [f"mask {m:.0%}{b.replace('_', ' ')}" for m in MISSING
                                 for b in kinds]
    lines = ["| image | sigma | " + " | ".join(heads) + " |", "|---" * (len(heads) + 2) + "|"]
    for case, row in rows.items():
        name, sigma = case.split()
        lines.append(f"| {name} | {sigma} | "
                     + " | ".join(f"{row[k]:+.0%}" for k in keys) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 images, 128x128")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--sigma", type=float, default=0.01)
    parser.add_argument("--images", default=None, help="comma-separated image names")
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--gaussian", action="store_true", help="also the Gaussian prior")
    parser.add_argument("--no-tv", action="store_true", help="the Gaussian rows only")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None)
    parser.add_argument("--markdown", action="store_true", help="print the tables of a JSON")
    parser.add_argument("--noise", action="store_true",
                        help="only the noise estimate's relative errors")
    args = parser.parse_args(argv)
    if args.noise:
        out = Path(args.out) if args.out else RESULTS / "auto_params_operators_noise.json"
        if not args.markdown:
            torch.set_num_threads(args.threads)
            images = (args.images.split(",") if args.images
                      else (IMAGES[:2] if args.quick else IMAGES))
            rows = noise_table(images, 128 if args.quick else args.size)
            out.write_text(json.dumps({"config": {
                "size": 128 if args.quick else args.size, "sigmas": NOISE_SIGMAS,
                "missing": MISSING, "threads": args.threads, "torch": torch.__version__},
                "rows": rows}, indent=2))
        print(noise_markdown(json.loads(out.read_text())["rows"]))
        return
    out = Path(args.out) if args.out else RESULTS / (
        "auto_params_operators_quick.json" if args.quick else "auto_params_operators.json")
    if args.markdown:
        print(table(json.loads(out.read_text())))
        return
    torch.set_num_threads(args.threads)
    images = args.images.split(",") if args.images else (IMAGES[:2] if args.quick else IMAGES)
    size = 128 if args.quick else args.size
    tasks = args.tasks.split(",")
    import superres

    superres.SIGMA = args.sigma  # observe() adds noise of this std
    results: dict = {
        "config": {"sigma": args.sigma, "size": size, "grid_over_sigma": GRID,
                   "threads": args.threads, "machine": platform.platform(),
                   "torch": torch.__version__},
        "images": {},
    }
    for i, name in enumerate(images):
        clean = grey_image(name, size)
        results["images"][name] = {}
        for task in tasks:
            # the seed of the image's place in the full run: a subset (--images) sees the
            # same observations as the full run
            k = IMAGES.index(name) if name in IMAGES else i
            op, y, _ = observe(task, clean, seed=100 * k + TASKS.index(task))
            row = {} if args.no_tv else {"tv": tv_row(op, y, clean, args.sigma, seed=0)}
            if args.gaussian or args.no_tv:
                row["gaussian"] = gaussian_row(op, y, clean, seed=0)
            results["images"][name][task] = row
            if args.no_tv:
                print(f"{name:>9} {task:>7}: Gaussian {row['gaussian']}", flush=True)
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(json.dumps(results, indent=2))
                continue
            r = row["tv"]
            print(f"{name:>9} {task:>7}: sigma x{r['sigma_ratio']:.2f} | TV w/sigma "
                  f"{r['chosen_w_over_sigma']:.3f} {r['chosen_psnr']:.2f} dB, oracle "
                  f"{r['oracle_w_over_sigma']:.3f} {r['oracle_psnr']:.2f} dB, gap "
                  f"{r['gap_db']:+.2f} (true sigma: {r['true_sigma_psnr'] - r['oracle_psnr']:+.2f})"
                  f" | {r['time_s']:.1f} s", flush=True)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(results, indent=2))
    print()
    print(table(results))


def table(results: dict) -> str:
    """Markdown: per image and task, sigma's ratio, the TV gap, and the summary per task."""
    lines = ["| image | task | sigma est / true | w/sigma chosen | w/sigma oracle | TV dB chosen "
             "| TV dB oracle | gap dB | gap with true sigma | time (s) | Gaussian gap dB |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    gaps: dict[str, list] = {}
    for name, tasks in results["images"].items():
        for task, row in tasks.items():
            g = row.get("gaussian")
            if "tv" not in row:  # --no-tv
                if g is not None and "skipped" not in g:
                    gaps.setdefault(task, []).append(g["gap_db"])
                    lines.append(f"| {name} | {task} | | | | | | | | {g['time_s']:.1f} | "
                                 f"{g['gap_db']:+.2f} |")
                continue
            r = row["tv"]
            gauss = "" if g is None else ("n/a" if "skipped" in g else f"{g['gap_db']:+.2f}")
            gaps.setdefault(task, []).append(r["gap_db"])
            lines.append(
                f"| {name} | {task} | {r['sigma_ratio']:.2f} | {r['chosen_w_over_sigma']:.3f} | "
                f"{r['oracle_w_over_sigma']:.3f} | {r['chosen_psnr']:.2f} | "
                f"{r['oracle_psnr']:.2f} | {r['gap_db']:+.2f} | "
                f"{r['true_sigma_psnr'] - r['oracle_psnr']:+.2f} | {r['time_s']:.1f} | {gauss} |")
    lines += ["", "| task | mean gap dB | worst gap dB |", "|---|---|---|"]
    for task, v in gaps.items():
        lines.append(f"| {task} | {np.mean(v):+.2f} | {min(v):+.2f} |")
    every = [x for v in gaps.values() for x in v]
    if every:
        lines.append(f"| all | {np.mean(every):+.2f} | {min(every):+.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
