"""MAP speed: our certified TV solver against scikit-image's ``denoise_tv_chambolle``.

Run from the repository root::

    python benchmarks/map_speed.py            # about 4-5 minutes on 2 cores
    python benchmarks/map_speed.py --quick    # 512x512 only, 3 runs (a smoke test)

For each image (scikit-image's camera, 512x512, and the same upscaled 4x by ``np.kron``
to 2048x2048) with Gaussian noise ``sigma = 0.1`` (seeded), and for each weight (the
issue's ``w = 0.08`` at 512 and the PSNR-best weight of a grid at both sizes). ``w`` is
scikit-image's weight throughout (tables, JSON, the objective ``P(x) = 0.5 |x - y|^2 + w
TV(x)``); our solver takes the package's energy weight ``lambda = 2 w`` of ``|x - y|^2 +
lambda TV(x)`` (the same minimiser), and its ``info.objective`` is ``2 P``:

- a converged reference ``P*``: our solver in float64 at a certified relative gap 1e-6;
- ours (``tv_denoise_pdhg``, float32 and float64, its default backend: the fused numba
  kernels on a CPU): wall time of the call that stops at a *certified* relative gap
  ``<= tol`` for ``tol = 1e-3, 1e-4``, its iterations, and its true gap
  ``(P(x) - P*) / P*``; and the eager torch backend (float32, 1e-4) for comparison;
- scikit-image (float32 and float64 input, ``eps=0``): the smallest ``max_num_iter`` whose
  output has a true relative gap ``<= target`` (a search: growth by 1.5 then bisection,
  to about 3 %), and the wall time of that call;
- every timed call runs ``--repeats`` times round-robin (ours and scikit-image
  alternate, so both see the same load from other processes) after warm-up calls at
  the same size (the weight grid, the reference, the search); the median is reported;
- ratios ours / scikit-image; peak memory beyond the input (the peak resident set
  ``VmHWM`` of a fresh subprocess per configuration, reset by ``/proc/self/clear_refs``
  just before the call, minus the resident set then; and the solver's buffers counted); the bytes an
  iteration moves against a measured bandwidth (a plain ``a * x + b`` pass), with the
  time of the fused iteration alone (no gap checks, no set-up).

Torch runs on ``--threads`` threads (default 1, like numpy's scikit-image code, and immune
to other processes competing for the two cores). Results go to
``benchmarks/results/map_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bayes_restore.infer.tv import tv_denoise_pdhg, tv_energy

SIGMA = 0.1
TARGETS = (1e-3, 1e-4)
#: certified relative gap of the reference: 1 % of the smallest target
REFERENCE_TOL = 1e-6


def noisy_camera(size: int) -> tuple[np.ndarray, np.ndarray]:
    import skimage

    clean = skimage.img_as_float(skimage.data.camera())
    if size != clean.shape[0]:
        clean = np.kron(clean, np.ones((size // clean.shape[0],) * 2))
    noisy = clean + SIGMA * np.random.default_rng(0).standard_normal(clean.shape)
    return clean, noisy


def rof(x: np.ndarray | torch.Tensor, y: torch.Tensor, w: float) -> float:
    """``0.5 |x - y|^2 + w TV(x)`` in float64."""
    x = torch.as_tensor(np.asarray(x, dtype=np.float64)) if isinstance(x, np.ndarray) else x
    x = x.double()
    return float(0.5 * (x - y).square().sum() + w * tv_energy(x))


def psnr(x: np.ndarray, clean: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((np.asarray(x, dtype=np.float64) - clean) ** 2)))


def best_weight(clean, noisy, grid) -> tuple[float, dict]:
    y = torch.from_numpy(noisy).float()
    scores = {w: psnr(tv_denoise_pdhg(y, 2 * w, tol=1e-3)[0].numpy(), clean) for w in grid}
    return max(scores, key=scores.get), scores


def skimage_iterations(noisy, w, p_star, y64, target, dtype, start=None) -> int:
    """Smallest max_num_iter (to ~3 %) with a true relative gap <= target."""
    from skimage.restoration import denoise_tv_chambolle

    img = noisy.astype(dtype)

    def gap(k):
        x = denoise_tv_chambolle(img, weight=w, eps=0, max_num_iter=k)
        return (rof(x, y64, w) - p_star) / p_star

    if start is not None and gap(start) <= target:  # another dtype: the count is close
        lo, hi = int(start * 0.9), start
        while lo > 1 and gap(lo) <= target:
            lo, hi = int(lo * 0.9), lo
    else:
        lo, hi = 0, 32 if start is None else start
        while gap(hi) > target:
            lo, hi = hi, int(math.ceil(hi * 1.5))
    while hi - lo > max(1, hi // 32):
        mid = (lo + hi) // 2
        if gap(mid) <= target:
            hi = mid
        else:
            lo = mid
    return hi


def bandwidth(shape, dtype, repeats=200) -> float:
    """Bytes per second of a plain in-place ``x <- a * x + b`` (two passes, each r + w)."""
    x = torch.rand(shape, dtype=dtype)
    x.mul_(1.0).add_(0.0)
    nbytes = x.numel() * x.element_size()
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(repeats):
            x.mul_(1.0).add_(0.0)
        times.append((time.perf_counter() - t0) / repeats / 2)
    return 2 * nbytes / min(times)


# bytes an iteration reads + writes, in image-sized arrays, counted from tv/rof.py:
# p += s grad u_bar, 4 in-place passes (r2 w1) = 12; projection: n = p0^2 (r1 w1),
# n += p1^2 (r2 w1), clamp (r1 w1), rsqrt (r1 w1), p *= n (r3 w2) = 14; d = y + div p,
# 4 passes (r2 w1) = 12; two lerps (r2 w1) = 6
PASS_ARRAYS = 12 + 14 + 12 + 6
# the fused sweep (numba backend): read u_bar, p (2), y, u; write p (2), u, u_bar
FUSED_ARRAYS = 9
# solver buffers of the fused path: p (2 padded), u (the result), u_bar, y / w
WORKSPACE_ARRAYS = 5

_CHILD = r"""
import warnings, torch
torch.set_num_threads({threads})
size, w, kind = {size}, {w}, "{kind}"
y = torch.rand((size, size), dtype=torch.float32, generator=torch.Generator().manual_seed(0))
if kind == "ours":
    from bayes_restore.infer.tv import tv_denoise_pdhg
    warnings.simplefilter("ignore")
    tv_denoise_pdhg(y[:8, :8].clone(), 2 * w, tol=1e-2)
else:
    from skimage.restoration import denoise_tv_chambolle
    y = y.numpy()
    denoise_tv_chambolle(y[:8, :8], weight=w, eps=0, max_num_iter=2)
def status(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field))
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak resident set size (VmHWM) to the current one
current = status("VmRSS:")  # input included
if kind == "ours":
    x = tv_denoise_pdhg(y, 2 * w, tol=1e-4, max_iter=60)[0]
else:
    x = denoise_tv_chambolle(y, weight=w, eps=0, max_num_iter=60)
print(max(0, status("VmHWM:") - current))
"""


def fused_iteration_seconds(noisy, w, fused=10, repeats=5) -> float:
    """One fused iteration alone (float32; ``fused`` iterations per pass, as between two
    gap checks ``check_every=10`` apart; no gap check, no set-up): best of ``repeats``.

    The kernels run the solver's internal scaled problem, ``y / w`` with ``w = lambda / 2``
    (scikit-image's weight)."""
    from bayes_restore.infer.tv import _rof_numba as k

    y = (noisy / w).astype(np.float32)[None]
    u, ubar = y.copy(), y.copy()
    p = np.zeros((1, 2) + tuple(s + 1 for s in y.shape[1:]), np.float32)
    plan = k.Plan(y, torch.get_num_threads(), 16)
    steps = np.array([[0.05], [0.5], [0.9]], np.float32).repeat(fused, axis=1)
    n = max(1, int(2e8 // (y.size * fused)))
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            k.iterate(plan, u, ubar, y, p, *steps, True)
        best = min(best, (time.perf_counter() - t0) / (n * fused))
    return best


def peak_memory(size, w, kind, threads) -> int:
    """Peak resident bytes beyond the state before the call (a fresh process, float32)."""
    code = _CHILD.format(size=size, w=w, kind=kind, threads=threads)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    return int(out.stdout.split()[-1])


def run_config(size, w, clean, noisy, args, skimage_targets, skimage_dtypes) -> dict:
    """Reference, iteration counts, then all timings round-robin (same load for all)."""
    from skimage.restoration import denoise_tv_chambolle

    y64 = torch.from_numpy(noisy)
    t0 = time.perf_counter()
    x_ref, info_ref = tv_denoise_pdhg(y64, 2 * w, tol=REFERENCE_TOL, max_iter=100000)
    p_star = info_ref.objective / 2  # |x - y|^2 + 2 w TV(x) = 2 P(x)
    row = {"size": size, "weight": w, "psnr_map": psnr(x_ref.numpy(), clean),
           "reference": {"gap": info_ref.gap, "iterations": info_ref.iterations,
                         "objective": p_star, "seconds": time.perf_counter() - t0},
           "ours": {}, "skimage": {}}
    calls = {}
    for dtype in ("float32", "float64"):
        y = y64.to(getattr(torch, dtype))
        for tol in TARGETS:
            calls["ours", f"{dtype} {tol:g}"] = (
                lambda y=y, tol=tol: tv_denoise_pdhg(y, 2 * w, tol=tol))
    y32 = y64.float()
    calls["ours", "torch-float32 0.0001"] = (
        lambda: tv_denoise_pdhg(y32, 2 * w, tol=1e-4, backend="torch"))
    start = None
    iterations = {}
    for target in skimage_targets:
        for dtype in skimage_dtypes:
            k = skimage_iterations(noisy, w, p_star, y64, target, dtype, start)
            start = iterations[f"{dtype} {target:g}"] = k
            img = noisy.astype(dtype)
            calls["skimage", f"{dtype} {target:g}"] = (
                lambda img=img, k=k: denoise_tv_chambolle(img, weight=w, eps=0, max_num_iter=k))
    # warm-up: the weight grid (float32) and the reference (float64) ran our solver at
    # this size, the iteration search ran scikit-image; then the runs go round-robin
    times = {key: [] for key in calls}
    outputs = {}
    for _ in range(args.repeats):
        for key, fn in calls.items():
            t1 = time.perf_counter()
            outputs[key] = fn()
            times[key].append(time.perf_counter() - t1)
    for (kind, key), out in outputs.items():
        seconds = statistics.median(times[kind, key])
        if kind == "ours":
            x, info = out
            entry = {"iterations": info.iterations, "certified_gap": info.gap,
                     "backend": info.backend}
        else:
            x, entry = out, {"iterations": iterations[key]}
        entry.update(seconds=seconds, min_seconds=min(times[kind, key]),
                     true_gap=(rof(x, y64, w) - p_star) / p_star,
                     per_iteration_ms=1e3 * seconds / entry["iterations"])
        row[kind][key] = entry
    ours32 = row["ours"]["float32 0.0001"]["seconds"]
    row["ratios"] = {
        f"ours f32 1e-4 / skimage {key}": ours32 / v["seconds"]
        for key, v in row["skimage"].items()
    }
    for key, v in row["ours"].items():
        if key in row["skimage"]:
            row["ratios"][f"ours / skimage {key}"] = v["seconds"] / row["skimage"][key]["seconds"]
    return row


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="512x512 only, 3 runs")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--full", action="store_true",
                        help="at 2048 also scikit-image in float64 and to 1e-4 (+10 min)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "map_speed.json"))
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats = min(args.repeats, 3)
    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    results = {
        "command": "python benchmarks/map_speed.py" + (" --quick" if args.quick else "")
        + (" --full" if args.full else ""),
        "machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "torch": torch.__version__, "numpy": np.__version__,
                    "python": platform.python_version(), "processor": platform.processor()},
        "sigma": SIGMA, "repeats": args.repeats, "configs": [],
    }
    import skimage

    results["machine"]["skimage"] = skimage.__version__
    sizes = (512,) if args.quick else (512, 2048)
    for size in sizes:
        clean, noisy = noisy_camera(size)
        grid = (0.05, 0.06, 0.07, 0.08, 0.09, 0.10, 0.12) if size == 512 else (
            0.08, 0.10, 0.12, 0.14, 0.16, 0.18)
        w_best, scores = best_weight(clean, noisy, grid)
        weights = [0.08, w_best] if size == 512 and w_best != 0.08 else [w_best]
        for w in weights:
            if size == 512:
                targets, dtypes = TARGETS, ("float32", "float64")
            elif args.full:
                targets, dtypes = TARGETS, ("float32", "float64")
            else:  # scikit-image at 2048: float32 to 1e-3 only (the rest takes minutes)
                targets, dtypes = (1e-3,), ("float32",)
            row = run_config(size, w, clean, noisy, args, targets, dtypes)
            row["psnr_grid"] = {f"{k:g}": v for k, v in scores.items()}
            row["psnr_best_weight"] = w_best
            image_bytes = size * size * 4
            row["memory"] = {
                "image_bytes_float32": image_bytes,
                "ours_workspace_bytes_float32": WORKSPACE_ARRAYS * (size + 1) ** 2 * 4,
                "ours_peak_rss_beyond_input_float32": peak_memory(size, w, "ours", args.threads),
                "skimage_peak_rss_beyond_input_float32": peak_memory(size, w, "skimage", 1),
            }
            bw = bandwidth((size, size), torch.float32)
            # the same pass over as many bytes as the fused iteration's working set (its
            # five arrays): at 2048 one image (16 MiB) fits in the 32 MiB L3 cache, the
            # working set does not, so this is the bandwidth the iteration can have
            bw_ws = bandwidth((WORKSPACE_ARRAYS, size, size), torch.float32, repeats=20)
            per_it = row["ours"]["float32 0.0001"]["per_iteration_ms"] / 1e3
            row["bandwidth"] = {
                "axpb_bytes_per_s": bw,
                "eager_pass_bytes_per_iteration": PASS_ARRAYS * (size + 1) ** 2 * 4,
                "fused_bytes_per_iteration": FUSED_ARRAYS * size * size * 4,
                "eager_bound_ms": 1e3 * PASS_ARRAYS * (size + 1) ** 2 * 4 / bw,
                "fused_bound_ms": 1e3 * FUSED_ARRAYS * size * size * 4 / bw,
                "axpb_working_set_bytes_per_s": bw_ws,
                "fused_bound_working_set_ms": 1e3 * FUSED_ARRAYS * size * size * 4 / bw_ws,
                "measured_ms": 1e3 * per_it,
                "fused_iteration_ms": 1e3 * fused_iteration_seconds(noisy, w),
                "eager_measured_ms": row["ours"]["torch-float32 0.0001"]["per_iteration_ms"],
            }
            results["configs"].append(row)
            print_row(row)
    results["total_seconds"] = time.perf_counter() - began
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"\nwrote {args.out} ({results['total_seconds']:.0f} s)")


def print_row(row) -> None:
    size, w = row["size"], row["weight"]
    print(f"\n{size}x{size}, w = {w:g} (PSNR-best on the grid: {row['psnr_best_weight']:g}; "
          f"MAP PSNR {row['psnr_map']:.2f} dB); reference gap {row['reference']['gap']:.1e}")
    print(f"{'solver':<26}{'target':>8}{'iters':>7}{'time [s]':>10}{'ms/it':>8}"
          f"{'true gap':>10}")
    for key, v in row["ours"].items():
        dt, tol = key.split()
        print(f"{'ours ' + dt:<26}{tol:>8}{v['iterations']:>7}{v['seconds']:>10.4f}"
              f"{v['per_iteration_ms']:>8.3f}{v['true_gap']:>10.1e}")
    for key, v in row["skimage"].items():
        dt, tol = key.split()
        print(f"{'skimage ' + dt:<26}{tol:>8}{v['iterations']:>7}{v['seconds']:>10.4f}"
              f"{v['per_iteration_ms']:>8.3f}{v['true_gap']:>10.1e}")
    for key, v in row["ratios"].items():
        print(f"  ratio {key}: {v:.3f}")
    m, b = row["memory"], row["bandwidth"]
    ours_peak = m["ours_peak_rss_beyond_input_float32"]
    print(f"  peak memory beyond the input (float32): ours {ours_peak / 2**20:.1f} MiB "
          f"(workspace {m['ours_workspace_bytes_float32'] / 2**20:.1f} MiB = "
          f"{m['ours_workspace_bytes_float32'] / m['image_bytes_float32']:.1f}x the image), "
          f"skimage {m['skimage_peak_rss_beyond_input_float32'] / 2**20:.1f} MiB")
    print(f"  bandwidth (a*x+b) {b['axpb_bytes_per_s'] / 1e9:.1f} GB/s on one image, "
          f"{b['axpb_working_set_bytes_per_s'] / 1e9:.1f} GB/s on the working set's bytes; "
          f"per iteration: fused kernel alone {b['fused_iteration_ms']:.3f} ms, whole call "
          f"{b['measured_ms']:.3f} ms, bound for its 9 arrays {b['fused_bound_ms']:.3f} ms "
          f"(one image) or {b['fused_bound_working_set_ms']:.3f} ms (working set); "
          f"eager torch {b['eager_measured_ms']:.3f} ms against its bound "
          f"{b['eager_bound_ms']:.3f} ms")


if __name__ == "__main__":
    main()
