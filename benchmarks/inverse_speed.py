"""TV MAP with an operator: time and iterations to a certified gap, ours against the peers.

Run from the repository root::

    python benchmarks/inverse_speed.py                 # 512x512, float32 and float64
    python benchmarks/inverse_speed.py --quick         # 128x128, one repeat (a smoke test)
    python benchmarks/inverse_speed.py --peers-python /work/peers-venv/bin/python

The problems (the issue's table): scikit-image's camera (512x512, or the top-left crop of
``--size``), Gaussian noise of std 0.01 (seeded), and

- ``blur``: a periodic Gaussian blur, 9x9, std 1.5 (``Blur(..., boundary="periodic")``);
- ``sr2``, ``sr4``: box decimation by 2 and 4 (``Downsample(f)``);
- ``mask``: half of the pixels observed at random (``Mask``);

each at a near-oracle TV weight ``w`` of ``0.5 |A x - y|^2 + w TV(x)`` (the PSNR-best of
``benchmarks/superres.py``'s grid on the camera image; the solvers' ``lambda = 2 w``).
For float32 and float64, on ``--threads`` torch threads (default 1), in one process:

- ``new``: ``tv_map_pdhg(y, 2 w, A)`` as it runs by default (the fused numba kernels);
- ``old``: the same call with ``backend="torch"``: the eager iteration the package ran
  before (the same algorithm, iterations and certificate);
- ``admm``: a prototype written here: ADMM on ``x = v`` with the exact x-update
  ``A.solve_normal`` (FFT, block mean or pointwise) and the ROF prox by
  ``tv_denoise_pdhg`` (fused, certified to 1e-5 per call); stopped at the first check
  (every 5 iterations, not timed) whose objective reaches the target below;
- ``admm_grad``: a second prototype, ADMM with the splitting on the gradient (split
  Bregman / FTVd: ``z = grad x`` by shrinkage, ``v = x`` by ``A.solve_normal``, the
  x-update diagonal in the DCT), penalties ``ADMM_GRAD``, the same stopping rule;
  skipped with ``--no-admm`` as well;
- peers, when ``--peers-python`` names an interpreter where they import (they run in a
  subprocess of that interpreter on the same problem, saved to a temporary file, with
  the same thread count): deepinv's proximal gradient (``optim_builder("PGD")``, its
  ``TVPrior`` with 100 inner iterations, step ``1 / ||A||^2``) with the operator as a
  ``LinearPhysics`` of the same ``A`` and ``A^T``. Its time is that of the smallest
  ``max_iter`` (a doubling search, then bisection to ~6 %) whose objective reaches the
  target.

The target is ``D (1 + 1e-4)`` with ``D`` the lower bound that certifies ours (``P (1 -
gap)``): an objective below it is within 1e-4 of the optimum, the gap ours certifies.

``new``, ``old`` and ``admm`` run ``--repeats`` times round-robin (so all see the same
load from other processes); the median is reported. The ``old`` and peer rows stop at
the same certified gap or target; ``x`` columns are ratios to ``new``. Results go to
``benchmarks/results/inverse_speed.json`` (``inverse_speed_quick.json`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

SIGMA = 0.01
TOL = 1e-4
#: near-oracle weights w (of 0.5 |A x - y|^2 + w TV(x)), from benchmarks/superres.py
WEIGHTS = {"blur": 0.0006, "sr2": 0.0012, "sr4": 0.0006, "mask": 0.0012}
#: ADMM's penalty (the best of 0.03, 0.1, 0.3 on 256x256 crops)
ADMM_RHO = {"blur": 0.03, "sr2": 0.03, "sr4": 0.03, "mask": 0.1}


def make_problem(task: str, size: int):
    """``(operator, y, clean)`` in float64."""
    import skimage

    from bayes_restore.operators import Blur, Downsample, Mask, gaussian_psf

    full = skimage.img_as_float(skimage.data.camera())
    top = (full.shape[0] - size) // 2
    clean = full[top : top + size, top : top + size]
    rng = np.random.default_rng(0)
    if task == "blur":
        op = Blur(gaussian_psf(9, 1.5), boundary="periodic")
    elif task in ("sr2", "sr4"):
        op = Downsample(int(task[2]))
    else:
        op = Mask(torch.from_numpy(rng.random(clean.shape) < 0.5))
    y = op.forward(torch.from_numpy(clean))
    y = y + SIGMA * torch.from_numpy(rng.standard_normal(tuple(y.shape)))
    return op, y, clean


def half_energy(x, y, w, op) -> float:
    """``0.5 |A x - y|^2 + w TV(x)`` in float64."""
    from bayes_restore.infer.tv import tv_energy

    x = x.double()
    r = op.forward(x) - y.double()
    return float(0.5 * r.square().sum() + w * tv_energy(x))


def admm(op, y, w, rho, target, max_outer=5000, check=5):
    """The ADMM prototype; ``(x, outer iterations, seconds without the checks)``."""
    from bayes_restore.infer.tv import tv_denoise_pdhg

    start = time.perf_counter()
    aty = op.adjoint(y)
    x = aty.clone()
    v = aty.clone()
    d = torch.zeros_like(aty)
    spent = 0.0
    k = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for k in range(1, max_outer + 1):
            x = op.solve_normal(aty + rho * (v - d), rho)
            v, _ = tv_denoise_pdhg(x + d, 2 * w / rho, tol=1e-5)  # prox of (w / rho) TV
            d += x - v
            if k % check == 0:
                t0 = time.perf_counter()
                done = half_energy(v, y, w, op) <= target
                spent += time.perf_counter() - t0
                if done:
                    break
    return v, k, time.perf_counter() - start - spent


#: ADMM on z = grad x, v = x: penalties (r1 on z, r2 on v, in the units of u = x / w) and
#: over-relaxation; the best of r1 in 3e-4..1e-2, r2 in 1e-3..1e-1, alpha 1 or 1.6
#: (blur, 256x256 centre crop, to a certified gap of 1e-4)
ADMM_GRAD = {"r1": 0.003, "r2": 0.003, "alpha": 1.6}


def admm_grad(op, y, w, target, init, *, r1, r2, alpha, max_outer=3000, check=5):
    """ADMM with the splitting on the gradient (split Bregman, FTVd), a prototype.

    ``min 0.5 |A v - y|^2 + w |z|_{2,1}`` subject to ``z = grad x``, ``v = x``, on ``u =
    x / w``: the x-update ``(r1 grad^T grad + r2 I)^{-1}`` is diagonal in the DCT
    (scipy's, the Neumann gradient), the z-update an isotropic shrinkage, the v-update
    the operator's exact ``solve_normal``; over-relaxed by ``alpha``. Stopped at the
    first check (every ``check`` iterations, not timed) whose objective reaches
    ``target``. ``init``: the starting image (``tv_map_pdhg``'s, see :func:`start_image`).
    ``(x, iterations, seconds without the checks)``.
    """
    import scipy.fft as sfft

    from bayes_restore.differences import laplacian_eigenvalues

    start = time.perf_counter()
    ys = y / w
    aty = op.adjoint(ys)
    h, wd = aty.shape[-2:]
    denom = (r1 * laplacian_eigenvalues(h, wd, dtype=aty.dtype) + r2).numpy()
    u = (init / w).contiguous().numpy().copy()
    v = u.copy()
    zy, zx = np.zeros_like(u), np.zeros_like(u)
    by, bx, b2 = np.zeros_like(u), np.zeros_like(u), np.zeros_like(u)
    aty = aty.numpy()
    spent, k = 0.0, 0
    for k in range(1, max_outer + 1):
        # x-update: r1 D^T (z - b) + r2 (v - b2), D^T q = -div q
        ty, tx = zy - by, zx - bx
        rhs = r2 * (v - b2)
        rhs[:-1] -= r1 * ty[:-1]
        rhs[1:] += r1 * ty[:-1]
        rhs[:, :-1] -= r1 * tx[:, :-1]
        rhs[:, 1:] += r1 * tx[:, :-1]
        u = sfft.idctn(sfft.dctn(rhs, norm="ortho") / denom, norm="ortho")
        gy, gx = np.zeros_like(u), np.zeros_like(u)
        gy[:-1] = u[1:] - u[:-1]
        gx[:, :-1] = u[:, 1:] - u[:, :-1]
        ty = alpha * gy + (1 - alpha) * zy + by
        tx = alpha * gx + (1 - alpha) * zx + bx
        norm = np.sqrt(ty * ty + tx * tx)
        shrink = np.maximum(1.0 - (1.0 / r1) / np.maximum(norm, 1e-30), 0.0)
        zy, zx = shrink * ty, shrink * tx
        by, bx = ty - zy, tx - zx
        vin = alpha * u + (1 - alpha) * v + b2
        v = op.solve_normal(torch.from_numpy(aty + r2 * vin), r2).numpy()
        b2 = vin - v
        if k % check == 0:
            t0 = time.perf_counter()
            done = half_energy(torch.from_numpy(u * w), y, w, op) <= target
            spent += time.perf_counter() - t0
            if done:
                break
    return torch.from_numpy(u * w), k, time.perf_counter() - start - spent


def start_image(task, op, y):
    """``tv_map_pdhg``'s default starting image for the task (for the ADMM prototypes)."""
    if task == "blur":
        return y.clone()
    if task in ("sr2", "sr4"):
        return op.adjoint(y) * int(task[2]) ** 2
    seen = op.mask.to(torch.bool)
    return torch.where(seen, y, y[seen].mean())


def run_ours(op, y, w, backend):
    from bayes_restore.infer.tv import tv_map_pdhg

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        x, info = tv_map_pdhg(y, 2 * w, op, tol=TOL, max_iter=100000, backend=backend)
    return x, info, time.perf_counter() - start


# --- peers, in a subprocess of their own interpreter ---------------------------------------

_PEER_WORKER = r'''
import json, sys, time, warnings
import numpy as np, torch
warnings.simplefilter("ignore")
args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
data = np.load(args["npz"])
dtype = {"float32": torch.float32, "float64": torch.float64}[args["dtype"]]
y = torch.from_numpy(data["y"]).to(dtype)
aty0 = torch.from_numpy(data["aty"]).to(dtype)
w, target, task = args["w"], args["target"], args["task"]
H, W = aty0.shape
if task == "blur":
    tf = torch.from_numpy(data["transfer_re"] + 1j * data["transfer_im"])
    tf = tf.to(torch.complex64 if dtype == torch.float32 else torch.complex128)
    A = lambda x: torch.fft.irfft2(torch.fft.rfft2(x) * tf, s=(H, W))
    AT = lambda r: torch.fft.irfft2(torch.fft.rfft2(r) * tf.conj(), s=(H, W))
    L = 1.0
elif task in ("sr2", "sr4"):
    f = int(task[2])
    A = lambda x: torch.nn.functional.avg_pool2d(x, f)
    AT = lambda r: r.repeat_interleave(f, -2).repeat_interleave(f, -1) / f**2
    L = 1.0 / f**2
else:
    m = torch.from_numpy(data["mask"]).to(dtype)
    A = lambda x: x * m
    AT = A
    L = 1.0

def energy(x):
    x = x.double().reshape(H, W)
    r = A(x.to(dtype)[None, None]).double() - y.double()[None, None]
    gy = torch.zeros_like(x); gx = torch.zeros_like(x)
    gy[:-1] = x[1:] - x[:-1]; gx[:, :-1] = x[:, 1:] - x[:, :-1]
    return float(0.5 * r.square().sum() + w * (gy * gy + gx * gx).sqrt().sum())

out = {}
try:
    import deepinv as dinv
    from deepinv.optim import optim_builder
    from deepinv.optim.data_fidelity import L2
    from deepinv.optim.prior import TVPrior

    physics = dinv.physics.LinearPhysics(A=A, A_adjoint=AT)
    yy = y[None, None]

    def solve(n):
        model = optim_builder(iteration="PGD", prior=TVPrior(n_it_max=100),
                              data_fidelity=L2(), max_iter=n, early_stop=False,
                              params_algo={"stepsize": 1.0 / L, "lambda": w},
                              custom_init=lambda y, physics: {"est": (AT(y),)})
        t0 = time.perf_counter()
        with torch.no_grad():
            x = model(yy, physics)
        return x, time.perf_counter() - t0

    lo, hi, cap = 0, 8, args["max_seconds"]
    while True:
        x, t = solve(hi)
        if energy(x) <= target:
            break
        if t > cap:
            hi = None
            break
        lo, hi = hi, 2 * hi
    if hi is not None:
        while hi - lo > max(1, hi // 16):
            mid = (lo + hi) // 2
            x, t_mid = solve(mid)
            if energy(x) <= target:
                hi = mid
            else:
                lo = mid
        x, t = solve(hi)
        out["deepinv"] = {"time": t, "iterations": hi, "objective": energy(x)}
    else:
        out["deepinv"] = {"time": None, "iterations": None, "note": f"not reached in {cap} s"}
    out["deepinv"]["version"] = dinv.__version__
except ImportError as err:
    out["deepinv"] = {"time": None, "note": f"not importable: {err}"}
print("PEERS" + json.dumps(out))
'''


def run_peers(python, task, op, y, w, target, dtype, threads, max_seconds):
    """The peers' rows, from a subprocess of ``python``; ``{}`` when it fails."""
    with tempfile.TemporaryDirectory() as tmp:
        npz = os.path.join(tmp, "problem.npz")
        arrays = {"y": y.double().numpy(), "aty": op.adjoint(y.double()).numpy()}
        if task == "blur":
            tf = op.structure().transfer(*y.shape[-2:], y.double())
            arrays["transfer_re"], arrays["transfer_im"] = tf.real.numpy(), tf.imag.numpy()
        if task == "mask":
            arrays["mask"] = op.mask.double().numpy()
        np.savez(npz, **arrays)
        spec = {"npz": npz, "w": w, "target": target, "task": task, "threads": threads,
                "dtype": str(dtype).replace("torch.", ""), "max_seconds": max_seconds}
        proc = subprocess.run([python, "-c", _PEER_WORKER, json.dumps(spec)],
                              capture_output=True, text=True, timeout=3600)
    for line in proc.stdout.splitlines():
        if line.startswith("PEERS"):
            return json.loads(line[5:])
    print(f"  peers failed: {proc.stderr[-500:]}", file=sys.stderr)
    return {}


def fused_denoise_iteration(size, dtype) -> float:
    """Seconds per iteration of the fused ROF solver (``A = I``) at the same size."""
    from bayes_restore.infer.tv import tv_denoise_pdhg

    op, y, clean = make_problem("mask", size)
    noisy = torch.from_numpy(clean + 0.1 * np.random.default_rng(1).standard_normal(clean.shape))
    noisy = noisy.to(dtype)
    tv_denoise_pdhg(noisy, 0.16, tol=1e-4)
    times = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the cap is the point: 400 iterations, no check
        for _ in range(3):
            start = time.perf_counter()
            _, info = tv_denoise_pdhg(noisy, 0.16, tol=1e-9, max_iter=400, check_every=400)
            times.append((time.perf_counter() - start) / info.iterations)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="128x128, one repeat")
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tasks", default="blur,sr2,sr4,mask")
    parser.add_argument("--dtypes", default="float32,float64")
    parser.add_argument("--no-admm", action="store_true")
    parser.add_argument("--peers-python", default=None,
                        help="an interpreter where deepinv imports (peers are skipped without)")
    parser.add_argument("--out", default=None, help="JSON file name under results/")
    parser.add_argument("--peer-max-seconds", type=float, default=None,
                        help="give a peer up this (default 60 s, 5 s with --quick)")
    args = parser.parse_args()
    size = args.size or (128 if args.quick else 512)
    repeats = args.repeats or (1 if args.quick else 2)
    torch.set_num_threads(args.threads)
    dtypes = {"float32": torch.float32, "float64": torch.float64}
    rows = []
    out = Path(__file__).parent / "results" / (
        args.out or ("inverse_speed_quick.json" if args.quick else "inverse_speed.json"))
    per_iteration_rof = {name: fused_denoise_iteration(size, dtypes[name])
                         for name in args.dtypes.split(",")}
    for task in args.tasks.split(","):
        op, y64, _ = make_problem(task, size)
        w = WEIGHTS[task]
        for name in args.dtypes.split(","):
            dtype = dtypes[name]
            y = y64.to(dtype)
            run_ours(op, y, w, "auto")  # warm-up (compilation, FFT plans)
            times = {"new": [], "old": [], "admm": [], "admm_grad": []}
            for _ in range(repeats):
                x_new, info_new, t = run_ours(op, y, w, "auto")
                times["new"].append(t)
                # an objective that certifies the same gap with our lower bound D <= P*:
                # P <= D (1 + tol) means (P - P*) / P* <= tol
                target = info_new.objective / 2 * (1 - info_new.gap) * (1 + TOL)
                _, info_old, t = run_ours(op, y, w, "torch")
                times["old"].append(t)
                if not args.no_admm:
                    _, admm_it, t = admm(op, y, w, ADMM_RHO[task], target,
                                         max_outer=300 if args.quick else 3000)
                    times["admm"].append(t)
                    _, grad_it, t = admm_grad(op, y, w, target, start_image(task, op, y),
                                              max_outer=300 if args.quick else 3000,
                                              **ADMM_GRAD)
                    times["admm_grad"].append(t)
            row = {
                "task": task, "dtype": name, "size": size, "w": w,
                "objective": info_new.objective / 2, "gap": info_new.gap,
                "new": {"time": statistics.median(times["new"]),
                        "iterations": info_new.iterations, "backend": info_new.backend},
                "old": {"time": statistics.median(times["old"]),
                        "iterations": info_old.iterations, "gap": info_old.gap},
            }
            row["new"]["per_iteration_over_rof"] = (
                row["new"]["time"] / info_new.iterations / per_iteration_rof[name])
            if not args.no_admm:
                row["admm"] = {"time": statistics.median(times["admm"]), "iterations": admm_it}
                row["admm_grad"] = {"time": statistics.median(times["admm_grad"]),
                                    "iterations": grad_it}
            if args.peers_python:
                cap = args.peer_max_seconds or (5.0 if args.quick else 60.0)
                row["peers"] = run_peers(args.peers_python, task, op, y, w, target, dtype,
                                         args.threads, cap)
            rows.append(row)
            print(_format(row), flush=True)
            # written after every row: a long run interrupted keeps what it measured
            result = {
                "config": {"size": size, "sigma": SIGMA, "tol": TOL, "weights": WEIGHTS,
                           "admm_rho": ADMM_RHO, "admm_grad": ADMM_GRAD, "repeats": repeats,
                           "threads": args.threads,
                           "rof_iteration_s": per_iteration_rof,
                           "machine": platform.platform(), "torch": torch.__version__},
                "rows": rows,
            }
            out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")


def _format(row) -> str:
    new = row["new"]
    parts = [f"{row['task']:5s} {row['dtype']:8s} new {new['time']:7.3f} s "
             f"{new['iterations']:6d} it ({new['per_iteration_over_rof']:.1f}x ROF it)",
             f"old {row['old']['time']:7.3f} s {row['old']['iterations']:6d} it"
             f" x{row['old']['time'] / new['time']:.1f}"]
    if "admm" in row:
        parts.append(f"admm {row['admm']['time']:7.3f} s {row['admm']['iterations']:5d} it"
                     f" x{row['admm']['time'] / new['time']:.1f}")
    if "admm_grad" in row:
        r = row["admm_grad"]
        parts.append(f"admm_grad {r['time']:7.3f} s {r['iterations']:5d} it"
                     f" x{r['time'] / new['time']:.1f}")
    for peer, r in row.get("peers", {}).items():
        if r.get("time") is not None:
            parts.append(f"{peer} {r['time']:7.3f} s {r['iterations']} it"
                         f" x{r['time'] / new['time']:.1f}")
        else:
            parts.append(f"{peer} {r.get('note', '-')}")
    return " | ".join(parts)


if __name__ == "__main__":
    main()
