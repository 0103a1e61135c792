"""Super-resolution, deblurring and inpainting: TV-MAP PSNR against bicubic and the data.

Run from the repository root::

    python benchmarks/superres.py            # 7 images, 256x256 crops: about 5 minutes
    python benchmarks/superres.py --quick    # 2 images, 128x128 (a smoke test)

For each grey image that scikit-image ships (centre crops of ``--size``; 256x256 by
default, because a 512x512 run of every weight of every task is several times slower on
the shared two-core machine this was written on) and each task, with Gaussian noise of
std ``sigma = 0.01`` (seeded):

- ``sr2``, ``sr4``: ``y`` = block means (``Downsample(f)``, box kernel) + noise. Baseline:
  bicubic interpolation, ``skimage.transform.resize(y, order=3, mode="edge",
  anti_aliasing=False)``.
- ``deblur``: ``y`` = Gaussian blur (std 1.5, 9x9; ``Blur``'s default reflective boundary)
  + noise. Baseline: ``y``.
- ``inpaint``: half of the pixels observed at random, + noise. Baselines: ``y`` (zeros at
  the missing pixels, the observed image) and the observed pixels' mean filled in.

TV-MAP is ``tv_map_pdhg(y, 2 * w, A)`` (``0.5 |A x - y|^2 + w TV(x)``, i.e. ``|A x - y|^2 +
lambda TV(x)`` with the solver's ``lambda = 2 w``; isotropic TV), stopped at a certified
relative gap of 1e-3 (the PSNR changes by less than 0.01 dB beyond that). The TV weight
``w`` (scikit-image's convention, as in the tables and the JSON) is chosen two ways:

- ``oracle``: the PSNR-best of a geometric grid (``GRID`` times ``sigma``);
- ``fixed``: the camera image's oracle weight for the task, used for every image (a rule
  tuned on one image and applied to the others);
- ``auto`` (parameter-free): ``restore(y, "tv", operator=A)`` with neither ``sigma`` nor a
  weight: sigma estimated from the observation through the operator, the weight by SAPG
  with the operator (:func:`~bayes_restore.parameters.resolve_parameters`); its row holds
  the chosen ``w``, the estimated sigma, the PSNR of ``restore``'s MAP (default
  tolerance 1e-4) and the wall time of the whole call. ``--no-auto`` leaves it out.

Every TV-MAP time is the wall time of one certified solve at the oracle weight at
``tol = 1e-4``, with its iteration count. Results go to ``benchmarks/results/superres.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from bayes_restore import restore
from bayes_restore.infer.tv import tv_map_pdhg
from bayes_restore.operators import Blur, Downsample, Mask, gaussian_psf

SIGMA = 0.01
#: TV weights tried, in units of sigma
GRID = (0.03, 0.06, 0.12, 0.25, 0.5, 1.0, 2.0)
IMAGES = ("camera", "astronaut", "coffee", "moon", "brick", "grass", "coins")
TASKS = ("sr2", "sr4", "deblur", "inpaint")


def grey_image(name: str, size: int) -> np.ndarray:
    """A centre crop of a scikit-image sample, grey, float64 in [0, 1]."""
    import skimage
    from skimage.color import rgb2gray

    img = getattr(skimage.data, name)()
    if img.ndim == 3:
        img = rgb2gray(img[..., :3])
    img = skimage.img_as_float(img).astype(np.float64)
    h, w = img.shape
    if min(h, w) < size:
        raise ValueError(f"{name} is {img.shape}, smaller than {size}")
    top, left = (h - size) // 2, (w - size) // 2
    return img[top : top + size, left : left + size]


def psnr(x, clean: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64)
    return float(10 * np.log10(1.0 / np.mean((x - clean) ** 2)))


def observe(task: str, clean: np.ndarray, seed: int):
    """The operator, the observation and the baselines ``{name: image}`` of a task."""
    from skimage.transform import resize

    rng = np.random.default_rng(seed)
    x = torch.from_numpy(clean)
    if task in ("sr2", "sr4"):
        op = Downsample(int(task[-1]))
        ax = op.forward(x).numpy()
        y = ax + SIGMA * rng.standard_normal(ax.shape)
        bicubic = resize(y, clean.shape, order=3, mode="edge", anti_aliasing=False)
        return op, y, {"bicubic": bicubic}
    if task == "deblur":
        op = Blur(gaussian_psf(9, 1.5))
        y = op.forward(x).numpy() + SIGMA * rng.standard_normal(clean.shape)
        return op, y, {"observed": y}
    observed = rng.random(clean.shape) < 0.5
    op = Mask(torch.from_numpy(observed))
    y = np.where(observed, clean + SIGMA * rng.standard_normal(clean.shape), 0.0)
    filled = np.where(observed, y, y[observed].mean())
    return op, y, {"observed": y, "mean_filled": filled}


def solve(op, y: np.ndarray, w: float, tol: float):
    return tv_map_pdhg(torch.from_numpy(y), 2 * w, op, tol=tol, max_iter=50000)  # lambda = 2 w


def run_auto(op, y: np.ndarray, clean: np.ndarray) -> dict:
    """Parameter-free TV: ``restore(y, "tv", operator=op)``, timed, and what it chose."""
    t0 = time.perf_counter()
    post = restore(y, "tv", operator=op)
    elapsed = time.perf_counter() - t0
    par = post.diagnostics["parameters"]
    return {"tv_auto": psnr(post.point, clean), "auto_weight": par["weight"] / 2,
            "auto_sigma": par["sigma"], "auto_time_s": elapsed,
            "auto_method": par.get("weight_method")}


def run_task(task: str, clean: np.ndarray, seed: int, fixed_w: float | None,
             auto: bool = True) -> dict:
    op, y, baselines = observe(task, clean, seed)
    scores = {}
    for g in GRID:
        x, _ = solve(op, y, g * SIGMA, tol=1e-3)
        scores[g * SIGMA] = psnr(x.numpy(), clean)
    w_best = max(scores, key=scores.get)
    t0 = time.perf_counter()
    x, info = solve(op, y, w_best, tol=1e-4)
    elapsed = time.perf_counter() - t0
    row = {
        "baselines": {k: psnr(v, clean) for k, v in baselines.items()},
        "oracle_weight": w_best,
        "tv_oracle": psnr(x.numpy(), clean),
        "grid": {f"{k:.4g}": v for k, v in scores.items()},
        "time_s": elapsed,
        "iterations": info.iterations,
        "gap": info.gap,
    }
    if fixed_w is not None:
        xf, _ = solve(op, y, fixed_w, tol=1e-3)
        row["fixed_weight"] = fixed_w
        row["tv_fixed"] = psnr(xf.numpy(), clean)
    if auto:
        row.update(run_auto(op, y, clean))
    return row


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 images, 128x128")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-auto", action="store_true", help="no parameter-free rows")
    parser.add_argument("--tasks", default=",".join(TASKS),
                        help="comma-separated subset of " + ",".join(TASKS))
    parser.add_argument("--out",
                        default=str(Path(__file__).parent / "results" / "superres.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    images = IMAGES[:2] if args.quick else IMAGES
    size = 128 if args.quick else args.size
    tasks = args.tasks.split(",")
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        parser.error(f"--tasks: unknown {unknown}, choose from {TASKS}")

    results: dict = {
        "config": {"sigma": SIGMA, "size": size, "grid_over_sigma": GRID,
                   "threads": args.threads, "bicubic": "skimage resize order=3 mode=edge",
                   "machine": platform.platform(), "torch": torch.__version__},
        "images": {},
    }
    fixed: dict[str, float] = {}
    for i, name in enumerate(images):  # camera first: it calibrates the fixed rule
        clean = grey_image(name, size)
        results["images"][name] = {}
        for task in tasks:  # seeds as in the full run: a subset sees the same data
            row = run_task(task, clean, seed=100 * i + TASKS.index(task), fixed_w=fixed.get(task),
                           auto=not args.no_auto)
            if name == images[0]:
                fixed[task] = row["oracle_weight"]
                row["fixed_weight"], row["tv_fixed"] = row["oracle_weight"], row["tv_oracle"]
            results["images"][name][task] = row
            base = ", ".join(f"{k} {v:.2f}" for k, v in row["baselines"].items())
            print(f"{name:>9} {task:>7}: {base} | TV oracle {row['tv_oracle']:.2f} "
                  f"(w={row['oracle_weight']:.2g}) fixed {row['tv_fixed']:.2f} | "
                  f"{row['iterations']} it, {row['time_s']:.2f} s"
                  + (f" | auto {row['tv_auto']:.2f} (w={row['auto_weight']:.2g}, "
                     f"{row['auto_time_s']:.1f} s)" if "tv_auto" in row else ""), flush=True)

    print()
    print(table(results))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))


def table(results: dict) -> str:
    """A markdown table: per image and task, the baseline and TV-MAP PSNRs (dB)."""
    lines = [
        "| image | task | baseline | baseline dB | TV oracle dB | TV fixed-rule dB | "
        "gain (oracle) | iterations | time (s) | TV parameter-free dB | its time (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, tasks in results["images"].items():
        for task, row in tasks.items():
            base_name = "bicubic" if task.startswith("sr") else "observed"
            base = row["baselines"][base_name]
            lines.append(
                f"| {name} | {task} | {base_name} | {base:.2f} | {row['tv_oracle']:.2f} | "
                f"{row['tv_fixed']:.2f} | {row['tv_oracle'] - base:+.2f} | "
                f"{row['iterations']} | {row['time_s']:.2f} | "
                + (f"{row['tv_auto']:.2f} | {row['auto_time_s']:.1f} |" if "tv_auto" in row
                   else "n/a | n/a |")
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
