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

- ``new``: ``tv_map_pdhg(y, 2 w, A)`` as it runs by default (the fused numba kernels; for
  the blur, diagonal in the FFT, the spectral ADMM of ``bayes_restore/infer/tv/admm.py``:
  the exact FFT solve, a warm-started inner ROF, certified by the same gap);
- ``prev``: the previous default iteration, unrelaxed (``relaxation=1.0``) with the primal
  step ``0.1 std(x0) / w`` (the same kernels and data steps otherwise; the primal
  splitting, also for the blur);
- ``primal``: the primal splitting as it runs by default where ADMM is not chosen (the
  over-relaxed Chambolle-Pock iteration, ``splitting="primal"``; for the blur the
  previous default);
- ``old``: the same call as ``new`` with ``backend="torch"``: the eager iteration (the
  same algorithm and certificate, for the blur those of ``primal``; its checks come every
  5 % of the iterations);
- ``admm``: a prototype written here: ADMM on ``x = v`` with the exact x-update
  ``A.solve_normal`` (FFT, block mean or pointwise) and the ROF prox by
  ``tv_denoise_pdhg`` (fused, certified to 1e-5 per call); stopped at the first check
  (every 5 iterations, not timed) whose objective reaches the target below;
- ``admm_grad``: a second prototype, ADMM with the splitting on the gradient (split
  Bregman / FTVd: ``z = grad x`` by shrinkage, ``v = x`` by ``A.solve_normal``, the
  x-update diagonal in the DCT), penalties ``ADMM_GRAD``, the same stopping rule;
- peers, when ``--peers-python`` (default ``$INVERSE_SPEED_PEERS_PYTHON``) names an
  interpreter where they import; they run in a subprocess of that interpreter on the
  same problem, saved to a temporary file, with the same thread count, each in one call
  timed by a callback that evaluates the objective every 5 iterations (not timed) and
  stops at the first value at or below the target (or past ``--peer-max-seconds`` of
  wall time): deepinv's proximal gradient (the iteration of ``optim_builder("PGD")``: its
  ``TVPrior`` prox with 100 inner iterations, step ``1 / ||A||^2``) and pyproximal's
  ``PrimalDual`` (Chambolle-Pock: ``L2(Op=A)``, whose prox is an inner solve of 10
  iterations, and ``L21`` on pylops' forward-difference ``Gradient``, with the primal
  step of ``prev`` and ``mu = 1 / (8 tau)``); ``A`` and ``A^T`` are the same as ours.

Rows other than ``new`` can be left out with ``--skip primal,prev,old,admm,admm_grad``
(``--no-admm``: both prototypes). Every row reports wall time and CPU time
(``time.process_time()``, the measure that the load of other processes distorts least);
the ``x`` ratios are of CPU times.

The target is ``D (1 + 1e-4)`` with ``D`` the best lower bound known: the one that
certifies ours (``P (1 - gap)``) or a reference's, ``tv_map_pdhg`` on the same data in
float64 certified to ``TOL_REF = 1e-5`` (not timed). An objective below it is within 1e-4
of the optimum, the gap ours certifies, and the target does not move with where our run
happened to stop (a looser bound of ours would make it stricter). The ADMM prototype
also reports the time to ``D (1 + 1e-4)`` with ours alone (``admm_own_target``, the rule
of earlier runs).

Our rows and the prototypes run ``--repeats`` times round-robin (so all see the same
load from other processes); the median is reported. The ``prev`` and ``old`` rows stop at
the same certified gap, the prototypes and peers at the target; ``x`` columns are ratios
to ``new``. Results go to
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


def admm(op, y, w, rho, target, max_outer=5000, check=5, also=None):
    """The ADMM prototype; ``(x, outer iterations, wall and CPU seconds without the
    checks)`` to ``target``. ``also``: a lower target; then the run goes on to it, and
    ``(iterations, wall, CPU)`` to it come as a fifth value (``None`` if not reached)."""
    from bayes_restore.infer.tv import tv_denoise_pdhg

    start, cpu0 = time.perf_counter(), time.process_time()
    aty = op.adjoint(y)
    x = aty.clone()
    v = aty.clone()
    d = torch.zeros_like(aty)
    spent = spent_cpu = 0.0
    k = 0
    first = further = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for k in range(1, max_outer + 1):
            x = op.solve_normal(aty + rho * (v - d), rho)
            v, _ = tv_denoise_pdhg(x + d, 2 * w / rho, tol=1e-5)  # prox of (w / rho) TV
            d += x - v
            if k % check == 0:
                t0, c0 = time.perf_counter(), time.process_time()
                value = half_energy(v, y, w, op)
                spent += time.perf_counter() - t0
                spent_cpu += time.process_time() - c0
                now = (k, time.perf_counter() - start - spent,
                       time.process_time() - cpu0 - spent_cpu)
                if first is None and value <= target:
                    first = now
                if also is not None and value <= also:
                    further = now
                if first is not None and (also is None or further is not None):
                    break
    first = first or (k, time.perf_counter() - start - spent,
                      time.process_time() - cpu0 - spent_cpu)
    return (v, *first) if also is None else (v, *first, further)


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
    ``(x, iterations, wall and CPU seconds without the checks)``.
    """
    import scipy.fft as sfft

    from bayes_restore.differences import laplacian_eigenvalues

    start, cpu0 = time.perf_counter(), time.process_time()
    ys = y / w
    aty = op.adjoint(ys)
    h, wd = aty.shape[-2:]
    denom = (r1 * laplacian_eigenvalues(h, wd, dtype=aty.dtype) + r2).numpy()
    u = (init / w).contiguous().numpy().copy()
    v = u.copy()
    zy, zx = np.zeros_like(u), np.zeros_like(u)
    by, bx, b2 = np.zeros_like(u), np.zeros_like(u), np.zeros_like(u)
    aty = aty.numpy()
    spent = spent_cpu = 0.0
    k = 0
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
            t0, c0 = time.perf_counter(), time.process_time()
            done = half_energy(torch.from_numpy(u * w), y, w, op) <= target
            spent += time.perf_counter() - t0
            spent_cpu += time.process_time() - c0
            if done:
                break
    return (torch.from_numpy(u * w), k, time.perf_counter() - start - spent,
            time.process_time() - cpu0 - spent_cpu)


def start_image(task, op, y):
    """``tv_map_pdhg``'s default starting image for the task (for the ADMM prototypes)."""
    if task == "blur":
        return y.clone()
    if task in ("sr2", "sr4"):
        return op.adjoint(y) * int(task[2]) ** 2
    seen = op.mask.to(torch.bool)
    return torch.where(seen, y, y[seen].mean())


def previous_tau(task, op, y, w) -> float:
    """The primal step of the previous default (``0.1 std(x0) / w``, ``x0`` the start)."""
    return 0.1 * float(start_image(task, op, y).double().std()) / w


#: the reference lower bound's certified gap (see reference_bound)
TOL_REF = 1e-5


def reference_bound(op, y, w) -> float:
    """A lower bound of ``min 0.5 |A x - y|^2 + w TV(x)`` within ``TOL_REF`` of it (not
    timed): ``tv_map_pdhg`` on the same data in float64, certified to ``TOL_REF``."""
    from bayes_restore.infer.tv import tv_map_pdhg

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, info = tv_map_pdhg(y.double(), 2 * w, op, tol=TOL_REF, max_iter=100000)
    return info.objective / 2 * (1 - info.gap)


def run_ours(op, y, w, backend, **options):
    """``(x, info, wall seconds, CPU seconds)`` of ``tv_map_pdhg`` to the gap ``TOL``."""
    from bayes_restore.infer.tv import tv_map_pdhg

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start, cpu0 = time.perf_counter(), time.process_time()
        x, info = tv_map_pdhg(y, 2 * w, op, tol=TOL, max_iter=100000, backend=backend,
                              **options)
    return x, info, time.perf_counter() - start, time.process_time() - cpu0


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
w, target, task, cap = args["w"], args["target"], args["task"], args["max_seconds"]
H, W = aty0.shape
if task == "blur":
    tf = torch.from_numpy(data["transfer_re"] + 1j * data["transfer_im"])
    tf = tf.to(torch.complex64 if dtype == torch.float32 else torch.complex128)
    A = lambda x: torch.fft.irfft2(torch.fft.rfft2(x) * tf, s=(H, W))
    AT = lambda r: torch.fft.irfft2(torch.fft.rfft2(r) * tf.conj(), s=(H, W))
    L = 1.0
elif task in ("sr2", "sr4"):
    f = int(task[2])
    A = lambda x: torch.nn.functional.avg_pool2d(x.reshape(-1, 1, H, W), f).reshape(
        x.shape[:-2] + (H // f, W // f))
    AT = lambda r: r.repeat_interleave(f, -2).repeat_interleave(f, -1) / f**2
    L = 1.0 / f**2
else:
    m = torch.from_numpy(data["mask"]).to(dtype)
    A = lambda x: x * m
    AT = A
    L = 1.0

def energy(x):
    x = torch.as_tensor(x).double().reshape(H, W)
    r = A(x.to(dtype)).double() - y.double()
    gy = torch.zeros_like(x); gx = torch.zeros_like(x)
    gy[:-1] = x[1:] - x[:-1]; gx[:, :-1] = x[:, 1:] - x[:, :-1]
    return float(0.5 * r.square().sum() + w * (gy * gy + gx * gx).sqrt().sum())

class Reached(Exception):
    pass

class Clock:
    """Wall and CPU time of the iterations, the objective checks excluded; stops the run
    (``Reached``) at the first check at or below the target, or past ``cap`` seconds."""
    def __init__(self, every):
        self.every, self.k, self.spent_wall, self.spent_cpu = every, 0, 0.0, 0.0
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
        self.result = None
    def __call__(self, x):
        self.k += 1
        if self.k % self.every:
            return
        w0, c0 = time.perf_counter(), time.process_time()
        value = energy(x)
        self.spent_wall += time.perf_counter() - w0
        self.spent_cpu += time.process_time() - c0
        wall = time.perf_counter() - self.wall0 - self.spent_wall
        cpu = time.process_time() - self.cpu0 - self.spent_cpu
        if value <= target:
            self.result = {"time": wall, "cpu": cpu, "iterations": self.k, "objective": value}
            raise Reached
        if wall > cap:
            self.result = {"time": None, "iterations": self.k, "objective": value,
                           "note": f"not reached in {cap:.0f} s ({self.k} iterations)"}
            raise Reached

out = {}
# deepinv: its proximal gradient (the iteration of optim_builder("PGD")) with its TVPrior
try:
    import deepinv as dinv
    from deepinv.optim.prior import TVPrior
    prior = TVPrior(n_it_max=100)
    step = 1.0 / L
    clock = Clock(5)
    x = AT(y)[None, None].clone()
    yy = y[None, None]
    try:
        with torch.no_grad():
            for _ in range(10**6):
                x = prior.prox(x - step * AT(A(x) - yy), gamma=step * w)
                clock(x)
    except Reached:
        pass
    out["deepinv"] = dict(clock.result, version=dinv.__version__,
                          method="PGD + TVPrior(n_it_max=100), step 1/||A||^2")
except ImportError as err:
    out["deepinv"] = {"time": None, "note": f"not importable: {err}"}
# pyproximal: Chambolle-Pock (PrimalDual) with the data term's prox by its L2(Op) (inner
# solver) and the isotropic TV as L21 of pylops' forward-difference Gradient
try:
    import pylops
    import pyproximal
    npdt = np.float32 if dtype == torch.float32 else np.float64
    n_out = int(np.prod(y.shape))
    def tensor(v, shape):
        return torch.from_numpy(np.ascontiguousarray(v, dtype=npdt)).reshape(shape)
    Aop = pylops.FunctionOperator(lambda v: A(tensor(v, (H, W))).numpy().ravel(),
                                  lambda r: AT(tensor(r, y.shape)).numpy().ravel(),
                                  n_out, H * W, dtype=npdt)
    grad = pylops.Gradient(dims=(H, W), kind="forward", edge=False, dtype=npdt)
    tau = args["tau"]
    mu = 1.0 / (8.0 * tau)
    data_prox = pyproximal.L2(Op=Aop, b=y.numpy().ravel().astype(npdt), niter=10, warm=True)
    tv = pyproximal.L21(ndim=2, sigma=w)
    clock = Clock(5)
    start = aty0.numpy().ravel().astype(npdt) * (1.0 / L if task != "blur" else 1.0)
    try:
        pyproximal.optimization.primaldual.PrimalDual(
            data_prox, tv, grad, x0=start, tau=tau, mu=mu, theta=1.0, niter=10**6,
            callback=clock)
    except Reached:
        pass
    out["pyproximal"] = dict(clock.result, version=pyproximal.__version__,
                             method="PrimalDual, L2(Op, niter=10) + L21(Gradient), tau of ours")
except ImportError as err:
    out["pyproximal"] = {"time": None, "note": f"not importable: {err}"}
print("PEERS" + json.dumps(out))
'''


def run_peers(python, task, op, y, w, target, dtype, threads, max_seconds, tau):
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
                "dtype": str(dtype).replace("torch.", ""), "max_seconds": max_seconds,
                "tau": tau}
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


#: the rows besides ``new`` (each can be left out with ``--skip``)
ROWS = ("primal", "prev", "old", "admm", "admm_grad")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="128x128, one repeat")
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tasks", default="blur,sr2,sr4,mask")
    parser.add_argument("--dtypes", default="float32,float64")
    parser.add_argument("--no-admm", action="store_true", help="the same as --skip admm,admm_grad")
    parser.add_argument("--skip", default="", help=f"rows to leave out, of {','.join(ROWS)}")
    parser.add_argument("--peers-python", default=os.environ.get("INVERSE_SPEED_PEERS_PYTHON"),
                        help="an interpreter where deepinv / pyproximal import (peers are "
                             "skipped without; default $INVERSE_SPEED_PEERS_PYTHON)")
    parser.add_argument("--out", default=None, help="JSON file name under results/")
    parser.add_argument("--peer-max-seconds", type=float, default=None,
                        help="give a peer up this (default 60 s, 5 s with --quick)")
    args = parser.parse_args()
    size = args.size or (128 if args.quick else 512)
    repeats = args.repeats or (1 if args.quick else 2)
    skip = {r for r in args.skip.split(",") if r}
    if args.no_admm:
        skip |= {"admm", "admm_grad"}
    if skip - set(ROWS):
        parser.error(f"--skip takes rows of {ROWS}, got {sorted(skip - set(ROWS))}")
    rows_run = [r for r in ROWS if r not in skip]
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
            tau_prev = previous_tau(task, op, y, w)
            times = {r: [] for r in ("new", "admm_own_target") + ROWS}
            cpus = {r: [] for r in ("new", "admm_own_target") + ROWS}
            reference = reference_bound(op, y, w)
            its = {}
            for _ in range(repeats):
                x_new, info_new, t, c = run_ours(op, y, w, "auto")
                times["new"].append(t)
                cpus["new"].append(c)
                # an objective within tol of the optimum: P <= D (1 + tol) with D <= P*
                # a lower bound means (P - P*) / P* <= tol. D is the best lower bound
                # known: ours at this stop, or the reference's (certified to TOL_REF),
                # so the target does not move with where our run happened to stop
                ours = info_new.objective / 2 * (1 - info_new.gap)
                target = max(ours, reference) * (1 + TOL)
                strict = ours * (1 + TOL)  # the rule of earlier runs: our own D
                if "primal" in rows_run:
                    _, info_primal, t, c = run_ours(op, y, w, "auto", splitting="primal")
                    times["primal"].append(t)
                    cpus["primal"].append(c)
                    its["primal"] = info_primal.iterations
                if "prev" in rows_run:  # the previous default: unrelaxed, tau 0.1 std / w
                    _, info_prev, t, c = run_ours(op, y, w, "auto", relaxation=1.0,
                                                  tau=tau_prev, splitting="primal")
                    times["prev"].append(t)
                    cpus["prev"].append(c)
                    its["prev"] = info_prev.iterations
                if "old" in rows_run:
                    _, info_old, t, c = run_ours(op, y, w, "torch")
                    times["old"].append(t)
                    cpus["old"].append(c)
                    its["old"] = info_old.iterations
                if "admm" in rows_run:
                    _, its["admm"], t, c, own = admm(
                        op, y, w, ADMM_RHO[task], target,
                        max_outer=300 if args.quick else 3000, also=strict)
                    times["admm"].append(t)
                    cpus["admm"].append(c)
                    if own is not None:
                        its["admm_own_target"] = own[0]
                        times["admm_own_target"].append(own[1])
                        cpus["admm_own_target"].append(own[2])
                if "admm_grad" in rows_run:
                    _, its["admm_grad"], t, c = admm_grad(
                        op, y, w, target, start_image(task, op, y),
                        max_outer=300 if args.quick else 3000, **ADMM_GRAD)
                    times["admm_grad"].append(t)
                    cpus["admm_grad"].append(c)
            row = {
                "task": task, "dtype": name, "size": size, "w": w,
                "objective": info_new.objective / 2, "gap": info_new.gap,
                "new": {"time": statistics.median(times["new"]),
                        "cpu": statistics.median(cpus["new"]),
                        "iterations": info_new.iterations, "backend": info_new.backend,
                        "solver": info_new.solver},
            }
            row["new"]["per_iteration_over_rof"] = (
                row["new"]["time"] / info_new.iterations / per_iteration_rof[name])
            row["reference_bound"] = reference
            for r in rows_run + (["admm_own_target"] if cpus["admm_own_target"] else []):
                row[r] = {"time": statistics.median(times[r]), "cpu": statistics.median(cpus[r]),
                          "iterations": its[r]}
            if args.peers_python:
                cap = args.peer_max_seconds or (5.0 if args.quick else 60.0)
                row["peers"] = run_peers(args.peers_python, task, op, y, w, target, dtype,
                                         args.threads, cap, tau_prev)
            rows.append(row)
            print(_format(row), flush=True)
            # written after every row: a long run interrupted keeps what it measured
            result = {
                "config": {"size": size, "sigma": SIGMA, "tol": TOL, "weights": WEIGHTS,
                           "admm_rho": ADMM_RHO, "admm_grad": ADMM_GRAD, "repeats": repeats,
                           "threads": args.threads, "rows": rows_run,
                           "rof_iteration_s": per_iteration_rof,
                           "load_average": os.getloadavg(),
                           "machine": platform.platform(), "torch": torch.__version__},
                "rows": rows,
            }
            out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")


def _format(row) -> str:
    new = row["new"]
    parts = [f"{row['task']:5s} {row['dtype']:8s} new {new['time']:6.3f} s "
             f"(cpu {new['cpu']:6.3f}) {new['iterations']:5d} it "
             f"({new['per_iteration_over_rof']:.1f}x ROF it)"]
    for r in ROWS + ("admm_own_target",):
        if r in row:
            v = row[r]
            parts.append(f"{r} {v['time']:6.3f} s (cpu {v['cpu']:6.3f}) {v['iterations']:5d} it"
                         f" x{v['cpu'] / new['cpu']:.1f}")
    for peer, r in row.get("peers", {}).items():
        if r.get("time") is not None:
            parts.append(f"{peer} {r['time']:6.3f} s (cpu {r['cpu']:6.3f}) {r['iterations']} it"
                         f" x{r['cpu'] / new['cpu']:.1f}")
        else:
            parts.append(f"{peer} {r.get('note', '-')}")
    return " | ".join(parts)


if __name__ == "__main__":
    main()
