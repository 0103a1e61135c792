"""TV-L1 with an operator (``tv_l1_pdhg(..., operator=A)``): time to a certified relative gap.

The problems: scikit-image's camera (512x512; ``--quick``: the top-left 128x128 crop),
observed through

- ``blur``: a periodic Gaussian blur, 9x9, std 1.5 (``Blur(..., boundary="periodic")``);
- ``blur_reflect``: the same kernel with reflective boundaries (DCT-diagonal);
- ``sr2``: box decimation by 2 (``Downsample(2)``);
- ``mask``: half of the pixels observed at random (``Mask``);

then 10 % of the observed values replaced by salt-and-pepper impulses (0 or 1, seed 0).
``lambda`` of ``|A x - y|_1 + lambda TV(x)`` is the PSNR-best of the grid ``LAMBDA_GRID`` for
each task (``--sweep`` measures it again: each grid value solved to a certified gap of 1e-3
on the same image; the stored choice is what that sweep gave on the 512x512 camera).

Each row: our default path (the splitting chosen by the operator's structure) and the plain
reference in the same run, Chambolle-Pock with ``K = [grad; A]`` on eager torch
(``splitting="dual"``, the same certificate), each to a certified relative gap ``--tol``
(default 1e-4), one thread; CPU time (``time.process_time``) and wall time, iterations,
the certified gap reached, PSNR. The reference is capped at ``--max-iter`` iterations.

Run: ``OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 python benchmarks/tvl1_speed.py``; writes
``benchmarks/results/tvl1_speed.json`` (``--quick``: ``tvl1_speed_quick.json``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results"
TASKS = ("blur", "blur_reflect", "sr2", "mask")
#: the lambda grid of --sweep
LAMBDA_GRID = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 1.5)
#: the PSNR-best lambda of the grid per task (512x512 camera, the sweep of --sweep)
LAMBDA = {"blur": 0.05, "blur_reflect": 0.05, "sr2": 0.3, "mask": 0.5}


def make_problem(task: str, size: int, dtype: torch.dtype):
    """``(clean, operator, y)``: the camera crop, the operator, the impulse-noisy observation."""
    import skimage

    from bayes_restore.operators import Blur, Downsample, Mask, gaussian_psf

    full = skimage.img_as_float(skimage.data.camera())
    clean = torch.from_numpy(full[:size, :size].copy())
    rng = np.random.default_rng(0)
    if task == "blur":
        op = Blur(gaussian_psf(9, 1.5), boundary="periodic")
    elif task == "blur_reflect":
        op = Blur(gaussian_psf(9, 1.5), boundary="reflect")
    elif task == "sr2":
        op = Downsample(2)
    elif task == "mask":
        op = Mask(torch.from_numpy(rng.random(clean.shape) < 0.5))
    else:
        raise ValueError(f"unknown task {task!r}")
    y = op.forward(clean)
    hit = rng.random(tuple(y.shape)) < 0.1
    salt = (rng.random(tuple(y.shape)) < 0.5).astype(np.float64)
    y = torch.where(torch.from_numpy(hit), torch.from_numpy(salt), y)
    return clean.to(dtype), op, y.to(dtype)


def psnr(x: torch.Tensor, clean: torch.Tensor) -> float:
    return 10 * math.log10(1.0 / float((x.double() - clean.double()).square().mean()))


def solve(op, y, lam, tol, max_iter, **options):
    from bayes_restore.infer import tv_l1_pdhg

    wall, cpu = time.perf_counter(), time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x, info = tv_l1_pdhg(y, lam, operator=op, tol=tol, max_iter=max_iter, **options)
    return x, info, time.perf_counter() - wall, time.process_time() - cpu


def sweep(task, size, tol=1e-3):
    clean, op, y = make_problem(task, size, torch.float64)
    scores = {}
    for lam in LAMBDA_GRID:
        x, info, _, _ = solve(op, y, lam, tol, 5000)
        scores[lam] = psnr(x, clean)
        print(f"  sweep {task} lambda={lam}: {scores[lam]:.2f} dB (gap {info.gap:.1e})",
              flush=True)
    return max(scores, key=scores.get), scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="128x128 crop")
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--dtypes", default="float32,float64")
    parser.add_argument("--tol", type=float, default=1e-4)
    parser.add_argument("--max-iter", type=int, default=3000,
                        help="iteration cap of the reference (ours: 20000)")
    parser.add_argument("--our-max-iter", type=int, default=20000,
                        help="iteration cap of our default path")
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--sweep", action="store_true", help="measure the PSNR-best lambda")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    torch.set_num_threads(args.threads)
    size = 128 if args.quick else 512
    rows, chosen = [], {}
    for task in args.tasks.split(","):
        lam = LAMBDA[task]
        if args.sweep:
            lam, scores = sweep(task, size)
            chosen[task] = {"lambda": lam, "psnr": scores}
        for name in args.dtypes.split(","):
            dtype = getattr(torch, name)
            clean, op, y = make_problem(task, size, dtype)
            solve(op, y, lam, 1e-2, 2)  # warm-up: JIT and caches
            x, info, wall, cpu = solve(op, y, lam, args.tol, args.our_max_iter)
            row = {"task": task, "dtype": name, "size": size, "lambda": lam,
                   "solver": info.solver, "backend": info.backend,
                   "iterations": info.iterations, "gap": info.gap, "converged": info.converged,
                   "cpu_s": cpu, "wall_s": wall, "psnr": psnr(x, clean),
                   "psnr_observed": psnr(op.adjoint(y) if task != "sr2" else
                                         op.adjoint(y) * 4, clean)}
            if not args.skip_reference:
                xr, ir, wr, cr = solve(op, y, lam, args.tol, args.max_iter, splitting="dual")
                row.update({"ref_iterations": ir.iterations, "ref_gap": ir.gap,
                            "ref_converged": ir.converged, "ref_cpu_s": cr, "ref_wall_s": wr})
            rows.append(row)
            print(_format(row), flush=True)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    out = {"rows": rows, "tol": args.tol, "threads": args.threads, "load_after": load,
           "lambda_sweep": chosen, "machine": platform.platform(),
           "torch": torch.__version__, "command": " ".join(sys.argv)}
    name = args.out or ("tvl1_speed_quick.json" if args.quick else "tvl1_speed.json")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / name).write_text(json.dumps(out, indent=1))
    print(f"load average after the run: {load}; wrote {RESULTS / name}")


def _format(row) -> str:
    text = (f"{row['task']:13s} {row['dtype']:8s} lambda={row['lambda']:<5} "
            f"{row['solver']:5s} {row['iterations']:6d} it {row['cpu_s']:7.2f} s CPU "
            f"({row['wall_s']:6.2f} wall) gap {row['gap']:.1e} PSNR {row['psnr']:.2f} dB")
    if "ref_iterations" in row:
        ratio = row["ref_cpu_s"] / row["cpu_s"] if row["cpu_s"] > 0 else math.nan
        text += (f" | reference {row['ref_iterations']} it {row['ref_cpu_s']:.2f} s gap "
                 f"{row['ref_gap']:.1e}{'' if row['ref_converged'] else ' (capped)'}; "
                 f"ratio {ratio:.1f}x")
    return text


if __name__ == "__main__":
    main()
