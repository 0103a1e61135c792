"""Extend a stored blur reference of the TV posterior with new, independent SK-ROCK chains.

Two steps, each a subcommand:

- ``run CASE --out EXT.npz``: the stored reference's model, sampler, smoothing, step, prox
  iterations, preconditioner and number of chains (``tv_reference.py``'s setup), another
  seed (new noise, starts at the TV MAP plus 2 sigma white noise). After a warm-up the
  chains' draws are accumulated in batch means (no draws stored; also the batch means of
  ``grad U_lambda``, a control variate that was tried and not used), checkpointed every
  four batches.
- ``merge CASE EXT.npz``: writes ``results/tv_reference/CASE_long.npz`` (see ``merge``).

The stored ``*_long`` references were made with (one thread)::

    python benchmarks/tv_reference_extend.py run camera64_bluroracle_s0.05 --seed 101 \
        --warmup 3000 --batch 1000 --time-cap 1320 --out ext_bo05.npz
    python benchmarks/tv_reference_extend.py run camera64_blur_s0.05 --seed 102 \
        --warmup 3000 --batch 1000 --time-cap 1200 --out ext_b05.npz
    python benchmarks/tv_reference_extend.py run camera64_bluroracle_s0.1 --seed 103 \
        --warmup 1500 --batch 500 --time-cap 900 --out ext_bo10.npz
    python benchmarks/tv_reference_extend.py merge camera64_bluroracle_s0.05 ext_bo05.npz

and so on for the other two. A ``_long`` reference extended once more (``merge --base``
reads its combined mean and per-pixel ``mean_se``; ``--name`` the new file)::

    python benchmarks/tv_reference_extend.py run camera64_blur_s0.05 --seed 202 \
        --warmup 3000 --batch 1000 --time-cap 5400 --out ext_b05_2.npz
    python benchmarks/tv_reference_extend.py merge camera64_blur_s0.05 ext_b05_2.npz \
        --base camera64_blur_s0.05_long --name camera64_blur_s0.05_long2
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tv_reference as T  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "tv_reference"

def run(a):
    torch.set_num_threads(1)
    import bayes_restore
    from bayes_restore.infer.langevin import (
        LangevinMetric,
        SmoothedPotential,
        skrock_coefficients,
        skrock_step,
        stages_for,
    )
    from bayes_restore.infer.problem import recognise
    from bayes_restore.infer.prox import tv_prox_dual
    from bayes_restore.models import restoration_model
    from bayes_restore.operators import Blur
    from bayes_restore.priors import TotalVariation

    ref = np.load(RESULTS / f"{a.case}.npz")
    summ = json.loads(str(ref["summary"]))
    st = summ["settings"]
    sigma, b = float(ref["sigma"]), float(ref["b"])
    y = ref["y"].astype(np.float64)
    operator = Blur(torch.as_tensor(ref["psf"], dtype=torch.float64))
    dtype = torch.float32
    yt = torch.as_tensor(y, dtype=dtype)
    shape = tuple(y.shape)
    problem = recognise(restoration_model, (yt,),
                        {"prior": TotalVariation(b, shape=shape), "sigma": sigma,
                         "operator": operator})
    l_f = problem.operator.norm_bound**2 / problem.sigma.square()
    lambda_my = T.SMOOTHING / l_f
    assert abs(float(lambda_my) - st["lambda_MY"]) < 1e-6 * st["lambda_MY"]
    # the stored reference's sampler, whatever the package's defaults are now: its metric
    # peak k (``M = k / (1 + (k - 1) a^2 / |A|^2)``, read off the recorded preconditioner)
    # and SK-ROCK damping (--eta: 0.05 for every stored reference; the package's default is
    # 0.01 since they were made); the recorded stages and step check the reconstruction
    peak_k = float(st["preconditioner"].split("DCT, ")[1].split(" /")[0])
    n2 = float(problem.operator.norm_bound) ** 2
    a2 = operator.dct_symbol(shape[0], shape[1], yt)
    metric = LangevinMetric("dct", peak_k / (1.0 + (peak_k - 1.0) * a2 / n2), a2=a2)
    apply_metric, apply_root = metric.apply, metric.noise
    gain, peak = float((metric.m * a2).max()) / n2, float(metric.m.max())
    lip = gain * l_f + peak / lambda_my
    stages = st["stages"]
    coef = skrock_coefficients(stages, eta=a.eta)
    delta = torch.minimum(st["step_size"] / l_f, coef["ell"] / lip)
    assert stages_for(st["step_size"] * float((lip / l_f).max()), eta=a.eta) == stages
    assert abs(float(delta) - st["delta"]) < 1e-6 * st["delta"], (float(delta), st["delta"])
    delta = delta.to(dtype)
    sqrt_2delta = torch.sqrt(2 * delta)
    potential = SmoothedPotential(problem, lambda_my, T.PROX_ITER)

    def gradient(v):
        return apply_metric(potential.grad(v))

    map_post = bayes_restore.restore(y, "tv", sigma=sigma, scale=b, method="map",
                                     operator=operator)
    x_map = torch.as_tensor(np.asarray(map_post.point), dtype=dtype)
    gen = torch.Generator().manual_seed(a.seed)
    nc = st["num_chains"]
    x = torch.stack([x_map + 2 * sigma * torch.randn(shape, generator=gen, dtype=dtype)
                     for _ in range(nc)]).contiguous()
    potential.dual = tv_prox_dual(x, potential.prox_weight.to(dtype),
                                  isotropic=problem.isotropic, num_iter=50)
    t0, c0 = time.perf_counter(), time.process_time()
    with torch.no_grad():
        for _ in range(a.warmup):
            z = torch.randn(x.shape, generator=gen, dtype=dtype)
            x = skrock_step(x, gradient, delta, sqrt_2delta * apply_root(z), coef, stages)
    print(f"{a.case}: warm-up {a.warmup} steps {time.perf_counter() - t0:.0f} s "
          f"(CPU {time.process_time() - c0:.0f} s), load {os.getloadavg()[0]:.1f}", flush=True)
    xs, gs = [], []
    steps = a.warmup
    with torch.no_grad():
        for k in range(a.max_batches):
            sx = torch.zeros((nc,) + shape, dtype=torch.float64)
            sg = torch.zeros_like(sx)
            n = 0
            for i in range(a.batch):
                z = torch.randn(x.shape, generator=gen, dtype=dtype)
                x = skrock_step(x, gradient, delta, sqrt_2delta * apply_root(z), coef, stages)
                steps += 1
                if i % a.every == 0:
                    sx += x.to(torch.float64)
                    sg += potential.grad(x).to(torch.float64)
                    n += 1
            if not bool(torch.isfinite(x).all()):
                raise FloatingPointError("diverged")
            xs.append((sx / n).numpy())
            gs.append((sg / n).numpy())
            last = (k == a.max_batches - 1
                    or time.perf_counter() - t0 > a.time_cap)
            if k % 4 == 3 or last:
                xb, gb = np.stack(xs, 1), np.stack(gs, 1)  # (chains, batches, h, w)
                bm = xb.reshape(-1, *shape)
                se = bm.std(0, ddof=1) / np.sqrt(bm.shape[0])
                d = bm.mean(0) - ref["mean"]
                np.savez_compressed(a.out, xbatch=xb.astype(np.float32),
                                    gbatch=gb.astype(np.float32), seed=a.seed,
                                    warmup=a.warmup, batch=a.batch, every=a.every,
                                    eta=a.eta,
                                    steps=steps, case=a.case,
                                    wall=time.perf_counter() - t0,
                                    cpu=time.process_time() - c0)
                print(f"  {steps} steps, {len(xs)} batches/chain: SE max {se.max():.4f} "
                      f"median {np.median(se):.4f}; new - stored mean: rms "
                      f"{np.sqrt(np.mean(d**2)):.4f} max {np.abs(d).max():.4f}; "
                      f"{time.perf_counter() - t0:.0f} s, CPU {time.process_time() - c0:.0f} s,"
                      f" load {os.getloadavg()[0]:.1f}", flush=True)
            if last:
                break


def merge(case, ext, base=None, name=None):
    """Write <case>_long.npz (or ``name``): a stored blur reference extended by new SK-ROCK
    chains (``run``).

    mean: per-pixel inverse-variance weighted mean of the base's mean (the stored reference,
    its error std_i / sqrt(median bulk ESS), as tv_vi_reference.py read it; or with ``base``
    an extended reference, its stored per-pixel ``mean_se``) and the new chains' mean (error
    from the batch means: chains x batches, batches of 1000 steps at sigma 0.05, 500 at 0.1);
    mean_se: the combined standard error; std: the stored reference's (the new chains keep no
    second moments); quantiles: the base's values (offsets re-centred on the new mean).
    """
    old = np.load(RESULTS / f"{base or case}.npz")
    s = json.loads(str(old["summary"]))
    e = np.load(ext)
    xb = e["xbatch"].astype(np.float64)
    nc, nb, h, w = xb.shape
    flat = xb.reshape(nc * nb, -1)
    m_new = flat.mean(0).reshape(h, w)
    se_new = (flat.std(0, ddof=1) / np.sqrt(nc * nb)).reshape(h, w)
    m_old, std = old["mean"].astype(np.float64), old["std"].astype(np.float64)
    se_old = (old["mean_se"].astype(np.float64) if "mean_se" in old.files
              else std / np.sqrt(s["median_ess_bulk"]))
    wo, wn = 1 / se_old**2, 1 / se_new**2
    mean = (wo * m_old + wn * m_new) / (wo + wn)
    se = 1 / np.sqrt(wo + wn)
    diag = T.rhat_ess(xb.astype(np.float32))  # on the batch means (chains, batches, h, w)
    z = (m_new - m_old) / np.sqrt(se_new**2 + se_old**2)
    quant = old["quantile_offsets"].astype(np.float64) + m_old
    offsets = (quant - mean).astype(np.float16)
    name = name or f"{case}_long"
    summary = dict(s)
    summary.pop("history", None)
    if "extension" in s:  # the base was extended before: keep what it was
        summary["previous_extensions"] = s.get("previous_extensions", []) + [s["extension"]]
    summary.update({
        "case": name,
        "extends": base or case,
        # judged on the stored chains' R-hat (the extension's batch means, 20-40 per chain,
        # give a max over 4096 pixels near 1.1 even for independent draws: recorded below)
        "max_rhat": s["max_rhat"],
        "extension": {
            "how": "new SK-ROCK chains, the stored reference's model, sampler, smoothing, step, "
                   "prox iterations, preconditioner and number of chains; another seed (new "
                   "noise; starts at the TV MAP plus 2 sigma white noise), warm-up discarded; "
                   "per chain, batch means of x over batches of `batch` steps (x every other "
                   "step), no draws kept",
            "seed": int(e["seed"]), "warmup_steps": int(e["warmup"]),
            "batch_steps": int(e["batch"]), "every": int(e["every"]),
            # SK-ROCK damping (recorded by the runs since the package's default changed)
            "eta": float(e["eta"]) if "eta" in e.files else 0.05,
            "num_chains": nc, "batches_per_chain": nb,
            "steps_after_warmup": int(e["steps"]) - int(e["warmup"]),
            "wall_time": float(e["wall"]), "cpu_time": float(e["cpu"]),
            "batch_means_max_rhat": diag["max_rhat"],
            "batch_means_min_ess": diag["min_ess_bulk"],
            "se_median": float(np.median(se_new)), "se_max": float(se_new.max()),
            "agreement_with_stored_z_rms": float(np.sqrt(np.mean(z**2))),
            "abs_z_above_3": int((abs(z) > 3).sum()),
        },
        "mean_rule": "per-pixel inverse-variance weighted mean of the base's mean (s.e.: its "
                     "mean_se, or std / sqrt(median bulk ESS) for a stored reference) and the "
                     "extension's (s.e. from batch means)",
        "mean_se_median": float(np.median(se)), "mean_se_max": float(se.max()),
        "std_rule": "the stored reference's std (the extension keeps no second moments)",
        "quantile_rule": "the stored reference's quantiles, offsets re-centred on the new mean",
        "file": f"tv_reference/{name}.npz",
    })
    np.savez_compressed(RESULTS / f"{name}.npz", y=old["y"], x=old["x"], b=old["b"],
                        sigma=old["sigma"], operator=old["operator"], psf=old["psf"],
                        mean=mean.astype(np.float32), mean_se=se.astype(np.float32),
                        std=old["std"], levels=old["levels"], quantile_offsets=offsets,
                        summary=np.array(json.dumps(summary)))
    print(name, json.dumps(summary["extension"]), "combined se median/max",
          summary["mean_se_median"], summary["mean_se_max"])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="new chains for a stored case")
    r.add_argument("case")
    r.add_argument("--seed", type=int, default=101)
    r.add_argument("--warmup", type=int, default=2000)
    r.add_argument("--batch", type=int, default=500)
    r.add_argument("--max-batches", type=int, default=400)
    r.add_argument("--time-cap", type=float, default=1800)
    r.add_argument("--every", type=int, default=2, help="accumulate every k-th step")
    r.add_argument("--eta", type=float, default=0.05,
                   help="SK-ROCK damping of the stored reference (0.05 for all stored ones)")
    r.add_argument("--out", required=True)
    m = sub.add_parser("merge", help="write CASE_long.npz from the stored case and a run")
    m.add_argument("case")
    m.add_argument("ext")
    m.add_argument("--base", help="the reference to extend (default CASE; e.g. CASE_long)")
    m.add_argument("--name", help="the new file's name (default CASE_long)")
    a = p.parse_args()
    if a.command == "run":
        run(a)
    else:
        merge(a.case, a.ext, a.base, a.name)


if __name__ == "__main__":
    main()
