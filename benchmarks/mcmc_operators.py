"""Benchmark of SK-ROCK with forward operators: seconds per minimum-ESS sample and NUTS agreement.

Run ``python benchmarks/mcmc_operators.py`` (``--quick`` for a smoke test). Writes
``benchmarks/results/mcmc_operators.json`` (earlier runs are kept in its ``"runs"`` list).

Model: ``x ~ TV(b)``, ``y ~ N(A x, sigma^2)`` on crops of scikit-image's ``camera`` (values in
[0, 1]), ``sigma = 0.1``, ``b = 0.1``, the operators of ``benchmarks/mcmc_convergence.py``:
denoising, a reflective Gaussian blur (std 1 px, 7 x 7), x2 box decimation and a 50 % random
mask. ``mcmc``'s default preconditioner runs for every operator row (``diagonal_metric``: the
DCT metric of the blur, the block-mean metric of the decimation, the pixel metric of the
mask; ``--variant OP:preconditioner=none`` adds unpreconditioned rows). Two parts:

- **Speed** at ``--size`` (default 128 x 128): for each operator and seed (default 0-3), a
  fixed budget of SK-ROCK draws (2 chains, ``--draws`` per chain after ``--warmup``, default
  2000: with 1000 the minimum over the pixels of the bulk ESS moved a seed's ratio by up to
  25 %) with ``mcmc``'s defaults
  (or the ``--variant`` options); "s/minESS" is the sampling time over the worst pixel's bulk
  ESS, in wall time and in CPU time of the sampling loop (``mcmc``'s ``cpu_time`` less its
  ``diagnostics_cpu_time``: ``time.process_time`` of this process), and its ratio to
  denoising of the same seed. Run with one thread (``--threads 1``): under a shared machine
  the CPU time is the stable figure and the ratios within one run are what count. The
  "steady" ratio takes each row's median CPU ms per step over the seeds (the work per step
  does not depend on the seed) times the seed's steps per minimum-ESS sample. (Earlier runs
  in the JSON scaled the whole call's CPU time by the sampling's share of the wall time,
  which under load moved single seeds' ratios by up to 30 %.)
- **Agreement with NUTS** on 32 x 32 (float64): Pyro's NUTS (``--nuts-draws`` per chain, or
  draws cached in ``--nuts-cache`` by an earlier run; ``--nuts-reference FILE``: the pooled
  NUTS moments stored in ``benchmarks/results/mcmc_operators_nuts.json``, so the comparison
  reruns without NUTS) against a long SK-ROCK run (``--ref-draws`` per chain): the largest
  mean difference, the number of pixels off by more than 0.01, the differences in units of
  the two runs' combined Monte Carlo errors ``z = |d| / sqrt(mcse_nuts^2 + mcse_skrock^2)``
  (RMS, largest, how many beyond 2 and 3 against the 4.6 % and 0.27 % of a normal), and the
  std ratio (average, worst). SK-ROCK's Monte Carlo error of the mean is from batch means
  of its kept draws (25 batches per chain) when ``mcmc`` reports none (long runs).
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

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mcmc_convergence import SCALE, SIGMA, observation, operator  # noqa: E402

from bayes_restore.infer.mcmc import mcmc  # noqa: E402
from bayes_restore.models import restoration_model  # noqa: E402
from bayes_restore.priors import TotalVariation  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "mcmc_operators.json"
#: the pooled NUTS moments on 32 x 32 per operator (maps as nested lists)
NUTS_REFERENCE = RESULTS.with_name("mcmc_operators_nuts.json")
_MAPS = ("mean", "std", "mean_mcse", "std_mcse", "ess_bulk")
OPERATORS = ("denoise", "blur", "decimate", "mask")


def sample(name: str, size: int, *, dtype=torch.float32, seed: int = 0, **options):
    """One ``mcmc`` run on the row's observation; the Posterior, wall and CPU seconds."""
    op = operator(name, size)
    y = observation(size, op, dtype)
    kwargs = {} if op is None else {"operator": op}
    wall, cpu = time.perf_counter(), time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = mcmc(restoration_model, y, prior=TotalVariation(SCALE, shape=(size, size)),
                    sigma=SIGMA, seed=seed, **kwargs, **options)
    return post, time.perf_counter() - wall, time.process_time() - cpu


def speed_row(name: str, size: int, draws: int, warmup: int, seed: int, **options) -> dict:
    """Seconds per minimum-ESS sample of a fixed budget of SK-ROCK draws."""
    post, wall, cpu = sample(name, size, seed=seed, num_samples=draws, warmup=warmup,
                             sampler="skrock", **options)
    d = post.diagnostics
    sampling = d["wall_time"]  # the chains alone, without the final diagnostics
    ess = d["ess_bulk_min"]
    cpu_sampling = d["cpu_time"] - d["diagnostics_cpu_time"]  # the loop alone
    ess_map = d["convergence"]["ess_bulk"].flatten().double()
    low = torch.quantile(ess_map, torch.tensor([0.001, 0.01], dtype=torch.float64))
    row = {"operator": name, "size": size, "seed": seed, "options": options,
           "draws_per_chain": draws, "warmup": warmup, "stages": d["stages"],
           "step_size": d["step_size"], "lambda_MY": d["lambda_MY"],
           "preconditioner": d.get("preconditioner"),
           "seconds_sampling": sampling, "seconds_total": wall, "cpu_seconds_total": cpu,
           "ess_bulk_min": ess, "ess_bulk_median": d["ess_bulk_median"],
           "ess_tail_min": d["ess_tail_min"], "rhat_max": d["rhat_max"],
           "ess_bulk_q001": float(low[0]), "ess_bulk_q01": float(low[1]),
           "diagnostic_stride": d["diagnostic_stride"], "s_per_min_ess": sampling / ess,
           "cpu_seconds_sampling": cpu_sampling,
           "cpu_ms_per_step": 1000 * cpu_sampling / d["num_steps"],
           "cpu_s_per_min_ess": cpu_sampling / ess}
    if name == "mask":
        stride = d["diagnostic_stride"]  # the ESS map is of a grid of pixels on large images
        keep = operator(name, size).structure().d[::stride, ::stride]
        e = d["convergence"]["ess_bulk"]
        row["ess_bulk_median_observed"] = float(e[keep].median())
        row["ess_bulk_median_unobserved"] = float(e[~keep].median())
        row["ess_bulk_min_unobserved"] = float(e[~keep].min())
        row["ess_bulk_min_observed"] = float(e[keep].min())
    return row


def pool_runs(runs: list[dict]) -> dict:
    """Independent NUTS runs of one posterior pooled, each weighted by its draws (chains x
    draws): the mean, the std (from the pooled second moment) and their Monte Carlo errors
    (``sqrt(sum n_i^2 mcse_i^2) / N``; the std's to first order)."""
    n = torch.tensor([float(r["draws"]) * float(r.get("chains", 2)) for r in runs],
                     dtype=torch.float64)
    w = (n / n.sum()).tolist()

    def total(key, square=False):  # sum_i w_i r_i[key] (of the squares: their root)
        parts = [wi * r[key] for wi, r in zip(w, runs, strict=True)]
        return sum(p.square() for p in parts).sqrt() if square else sum(parts)

    mean = total("mean")
    second = sum(wi * (r["std"].square() + r["mean"].square())
                 for wi, r in zip(w, runs, strict=True))
    out = {"mean": mean, "std": (second - mean.square()).clamp_min(0).sqrt(),
           "mean_mcse": total("mean_mcse", True), "std_mcse": total("std_mcse", True),
           "ess_bulk": sum(r["ess_bulk"] for r in runs),  # independent chains: ESS add up
           "chains": int(sum(int(r.get("chains", 2)) for r in runs)),
           "runs": [{k: r[k] for k in ("draws", "warmup", "seed", "seconds", "cpu")
                     if k in r} for r in runs]}
    out["draws"] = int(n.sum()) // out["chains"]  # per chain, on average
    return out


def read_reference(name: str, path: Path = NUTS_REFERENCE) -> dict | None:
    """The stored pooled NUTS moments of ``name`` (tensors), or None."""
    if not path.exists():
        return None
    entry = json.loads(path.read_text()).get(name)
    if entry is None:
        return None
    ref = dict(entry)
    for key in _MAPS:
        ref[key] = torch.tensor(entry[key], dtype=torch.float64)
    ref["cached"] = str(path.name)
    return ref


def write_reference(name: str, ref: dict, path: Path = NUTS_REFERENCE) -> None:
    """Store the pooled NUTS moments of ``name`` (maps as lists) in ``path``."""
    record = json.loads(path.read_text()) if path.exists() else {}
    entry = {k: v for k, v in ref.items() if k not in _MAPS and k != "cached"}
    for key in _MAPS:
        entry[key] = ref[key].to(torch.float64).tolist()
    entry["mean_mcse_max"] = float(ref["mean_mcse"].max())
    entry["mean_mcse_median"] = float(ref["mean_mcse"].median())
    entry["ess_bulk_min"] = float(ref["ess_bulk"].min())
    record[name] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))


def nuts_reference(name: str, draws: int, cache: Path | None,
                   reference: Path | None = None) -> dict:
    """NUTS on the 32 x 32 posterior (2 chains, float64): its moments and Monte Carlo errors.

    ``reference``: the stored pooled moments, when they hold ``name``. ``cache``: a directory
    of NUTS runs (``nuts_<name>*.pt``), pooled (:func:`pool_runs`) and stored in
    ``reference``; a new run is written there when it holds none."""
    if reference is not None and (ref := read_reference(name, reference)) is not None:
        return ref
    paths = [] if cache is None else sorted(cache.glob(f"nuts_{name}*.pt"))
    if paths:
        ref = pool_runs([torch.load(p) for p in paths])
        ref["cached"] = [p.name for p in paths]
        if reference is not None:
            write_reference(name, ref, reference)
        return ref
    path = None if cache is None else cache / f"nuts_{name}.pt"
    post, wall, cpu = sample(name, 32, dtype=torch.float64, sampler="nuts", num_samples=draws,
                             warmup=min(draws, 500))
    d = post.diagnostics
    ref = {"mean": post.mean, "std": post.std, "mean_mcse": post.mean_mcse,
           "std_mcse": post.std_mcse, "ess_bulk": d["convergence"]["ess_bulk"],
           "seconds": wall, "cpu": cpu, "draws": draws}
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(ref, path)
    return ref


def batch_mcse(samples: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
               batches: int = 25) -> tuple[torch.Tensor, torch.Tensor]:
    """Monte Carlo errors of the mean and of the std from batch means of the kept draws
    ``(chain, draw, H, W)`` (``batches`` per chain)."""
    c, k = samples.shape[:2]
    size = k // batches
    x = samples[:, : batches * size].to(torch.float64)
    shape = (c, batches, size) + tuple(x.shape[2:])
    means = x.reshape(shape).mean(2).flatten(0, 1)
    squares = (x - mean).square().reshape(shape).mean(2).flatten(0, 1)
    root = (c * batches) ** 0.5
    return means.std(0) / root, squares.std(0) / root / (2 * std)


def agreement_row(name: str, nuts_draws: int, ref_draws: int, cache: Path | None,
                  reference: Path | None = None, **options) -> dict:
    """SK-ROCK (a fixed budget of ``ref_draws`` per chain) against NUTS on 32 x 32."""
    nuts = nuts_reference(name, nuts_draws, cache, reference)
    ours, wall, cpu = sample(name, 32, dtype=torch.float64, sampler="skrock",
                             num_samples=ref_draws, warmup=500, **options)
    dm = (ours.mean - nuts["mean"]).abs()
    ratio = ours.std / nuts["std"]
    mcse, std_mcse = ours.mean_mcse, ours.std_mcse
    if mcse is None:  # long runs report them on no pixel: batch means of the kept draws
        mcse, std_mcse = batch_mcse(ours.samples, ours.mean, ours.std)
    se = (mcse.square() + nuts["mean_mcse"].square()).sqrt()
    std_se = (std_mcse.square() + (ratio * nuts["std_mcse"]).square()
              ).sqrt() / nuts["std"]  # of the ratio, to first order
    z = dm / se
    z_std = (ratio - 1).abs() / std_se
    return {"operator": name, "options": options, "skrock_draws_per_chain": ref_draws,
            "skrock_seconds": wall, "skrock_stages": ours.diagnostics["stages"],
            "skrock_step_size": ours.diagnostics["step_size"],
            "nuts_draws_per_chain": int(nuts.get("draws", nuts_draws)),
            "nuts_chains": int(nuts.get("chains", 2)),
            "nuts_mean_mcse_max": float(nuts["mean_mcse"].max()),
            "nuts_mean_mcse_median": float(nuts["mean_mcse"].median()),
            "skrock_mean_mcse_max": float(mcse.max()),
            "skrock_mean_mcse_median": float(mcse.median()),
            "nuts_cached": nuts.get("cached"),
            "nuts_ess_bulk_min": float(nuts["ess_bulk"].min()),
            "nuts_ess_bulk_median": float(nuts["ess_bulk"].median()),
            "mean_abs_diff_max": float(dm.max()), "mean_abs_diff_avg": float(dm.mean()),
            "mean_abs_diff_over_0.01": int((dm > 0.01).sum()),
            "mean_z_rms": float(z.square().mean().sqrt()), "mean_z_max": float(z.max()),
            "mean_z_over_2": int((z > 2).sum()), "mean_z_over_3": int((z > 3).sum()),
            "mean_z_over_2_normal": 0.0455 * dm.numel(),
            "mean_z_over_3_normal": 0.0027 * dm.numel(),
            "mean_over_0.01_z_max": float(z[dm > 0.01].max()) if bool((dm > 0.01).any())
            else None,
            "std_z_rms": float(z_std.square().mean().sqrt()), "std_z_max": float(z_std.max()),
            "std_ratio_avg": float(ratio.mean()), "std_ratio_min": float(ratio.min()),
            "std_ratio_max": float(ratio.max()),
            "std_ratio_avg_mcse": float(std_se.square().mean().sqrt() / dm.numel() ** 0.5),
            "std_rel_diff_max": float((ratio - 1).abs().max())}


def parse_variant(text: str) -> dict:
    """``"step_size=0.0625,preconditioner=diagonal"`` -> options of ``mcmc``."""
    out = {}
    for part in filter(None, text.split(",")):
        key, value = part.split("=")
        try:
            out[key] = float(value)
        except ValueError:
            out[key] = value
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny run (smoke test)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--size", type=int, default=None, help="speed rows (default 128)")
    parser.add_argument("--draws", type=int, default=None, help="per chain (default 2000)")
    parser.add_argument("--warmup", type=int, default=None, help="default 200")
    parser.add_argument("--seeds", type=int, nargs="*", default=None, help="default 0 1 2 3")
    parser.add_argument("--operators", nargs="*", default=list(OPERATORS))
    parser.add_argument("--variant", action="append", default=[],
                        help="OPERATOR:key=value,... extra mcmc options of one operator "
                             "(e.g. mask:preconditioner=diagonal); repeat for more rows")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-nuts", action="store_true")
    parser.add_argument("--nuts-draws", type=int, default=None, help="default 1000, quick 100")
    parser.add_argument("--ref-draws", type=int, default=None, help="default 10000, quick 500")
    parser.add_argument("--nuts-cache", type=Path, default=None,
                        help="directory of cached NUTS runs nuts_<operator>*.pt (pooled and "
                             "stored in --nuts-reference; a new run written when missing)")
    parser.add_argument("--nuts-reference", type=Path, default=NUTS_REFERENCE,
                        help="pooled NUTS moments (JSON), read when they hold the operator "
                             "(default benchmarks/results/mcmc_operators_nuts.json)")
    opts = parser.parse_args(argv)
    torch.set_num_threads(opts.threads)
    q = opts.quick
    size = opts.size or (32 if q else 128)
    draws = opts.draws or (100 if q else 2000)
    warmup = opts.warmup or (50 if q else 200)
    seeds = opts.seeds if opts.seeds is not None else ([0] if q else [0, 1, 2, 3])
    load_start = os.getloadavg()
    plan = [(name, {}) for name in opts.operators]
    for v in opts.variant:
        name, _, rest = v.partition(":")
        plan.append((name, parse_variant(rest)))

    speed = []
    if not opts.skip_speed:
        for name, _ in plan:  # compile the kernels (numba's cache aside) outside the timings
            sample(name, 16, num_samples=4, warmup=2, sampler="skrock")
        for seed in seeds:
            for name, options in plan:
                row = speed_row(name, size, draws, warmup, seed, **options)
                speed.append(row)
                print(f"done: {name} {options} seed {seed}: {row['s_per_min_ess']:.4f} s/minESS"
                      f" (ESS min {row['ess_bulk_min']:.0f}, median {row['ess_bulk_median']:.0f},"
                      f" {row['stages']} stages, {row['seconds_sampling']:.1f} s, CPU "
                      f"{row['cpu_seconds_total']:.1f} s)", file=sys.stderr, flush=True)
        base = {(r["seed"]): r for r in speed if r["operator"] == "denoise" and not r["options"]}
        for r in speed:
            b = base.get(r["seed"])
            r["ratio_to_denoise"] = None if b is None else r["s_per_min_ess"] / b["s_per_min_ess"]
            r["cpu_ratio_to_denoise"] = (None if b is None else
                                         r["cpu_s_per_min_ess"] / b["cpu_s_per_min_ess"])
        # the work per step does not depend on the seed (its CPU time does, under load, by
        # 10-25 %): each row's median CPU ms per step over the seeds, times the seed's steps
        # per minimum-ESS sample, against denoising's the same way
        step_cost = {}
        for r in speed:
            step_cost.setdefault((r["operator"], json.dumps(r["options"])), []).append(
                r["cpu_ms_per_step"])
        step_cost = {k: float(torch.tensor(v).median()) for k, v in step_cost.items()}
        for r in speed:
            r["cpu_ms_per_step_median"] = step_cost[r["operator"], json.dumps(r["options"])]
            steps = (r["draws_per_chain"] + r["warmup"]) / r["ess_bulk_min"]
            r["steady_cpu_s_per_min_ess"] = r["cpu_ms_per_step_median"] * steps / 1000
        for r in speed:
            b = base.get(r["seed"])
            r["steady_cpu_ratio_to_denoise"] = (None if b is None else
                                                r["steady_cpu_s_per_min_ess"]
                                                / b["steady_cpu_s_per_min_ess"])
    agree = []
    if not opts.skip_nuts:
        for name, options in plan:
            agree.append(agreement_row(name, opts.nuts_draws or (100 if q else 1000),
                                       opts.ref_draws or (500 if q else 10000), opts.nuts_cache,
                                       None if q else opts.nuts_reference, **options))
            print(f"done: NUTS agreement {name} {options}", file=sys.stderr, flush=True)

    summary = []
    for name, options in plan:
        rows = [r for r in speed if r["operator"] == name and r["options"] == options]
        if not rows:
            continue

        def med(key, rows=rows):  # the middle value (two seeds: their mean)
            return float(torch.tensor([r[key] for r in rows], dtype=torch.float64).quantile(0.5))

        summary.append({"operator": name, "options": options, "seeds": len(rows),
                        "stages": rows[0]["stages"], "s_per_min_ess": med("s_per_min_ess"),
                        "cpu_s_per_min_ess": med("cpu_s_per_min_ess"),
                        "ratio_to_denoise": med("ratio_to_denoise"),
                        "cpu_ratio_to_denoise": med("cpu_ratio_to_denoise"),
                        "cpu_ratio_to_denoise_max": max(r["cpu_ratio_to_denoise"] for r in rows),
                        "cpu_ratio_to_denoise_seeds": [r["cpu_ratio_to_denoise"] for r in rows],
                        "steady_cpu_ratio_to_denoise_seeds": [
                            r["steady_cpu_ratio_to_denoise"] for r in rows],
                        "ess_bulk_min_seeds": [r["ess_bulk_min"] for r in rows],
                        "cpu_ms_per_step": med("cpu_ms_per_step"),
                        "ess_bulk_min": med("ess_bulk_min"),
                        "ess_bulk_median": med("ess_bulk_median"),
                        "ms_per_step": 1000 * med("seconds_sampling") / (draws + warmup)})
    if summary:
        head = (f"{'operator':<34} {'stages':>6} {'ms/step':>8} {'ESS min':>8} {'ESS med':>8} "
                f"{'s/minESS':>9} {'CPU s/mE':>9} {'ratio':>6} {'CPU ratio':>9} "
                f"{'CPU ratio per seed':>24} {'steady ratio per seed':>24}")
        print(f"{size} x {size}, {draws} draws per chain, medians over seeds {seeds} "
              f"(load average at start {load_start[0]:.1f})")
        print(head)
        print("-" * len(head))
        for s in summary:
            label = s["operator"] + "".join(f" {k}={v}" for k, v in s["options"].items())
            print(f"{label:<34} {s['stages']:>6} {s['ms_per_step']:8.2f} {s['ess_bulk_min']:8.1f} "
                  f"{s['ess_bulk_median']:8.1f} {s['s_per_min_ess']:9.4f} "
                  f"{s['cpu_s_per_min_ess']:9.4f} {s['ratio_to_denoise']:6.2f} "
                  f"{s['cpu_ratio_to_denoise']:9.2f} "
                  f"{' '.join(f'{v:.2f}' for v in s['cpu_ratio_to_denoise_seeds']):>24} "
                  f"{' '.join(f'{v:.2f}' for v in s['steady_cpu_ratio_to_denoise_seeds']):>24}")
    if agree:
        head = (f"{'32 x 32 vs NUTS':<34} {'|dmean| max':>11} {'> 0.01':>6} {'z RMS':>6} "
                f"{'z>2':>4} {'z>3':>4} {'std ratio avg':>13} {'min':>6} {'max':>6}")
        print(head)
        print("-" * len(head))
        for a in agree:
            label = a["operator"] + "".join(f" {k}={v}" for k, v in a["options"].items())
            print(f"{label:<34} {a['mean_abs_diff_max']:11.4f} {a['mean_abs_diff_over_0.01']:6d} "
                  f"{a['mean_z_rms']:6.2f} {a['mean_z_over_2']:4d} {a['mean_z_over_3']:4d} "
                  f"{a['std_ratio_avg']:13.3f} {a['std_ratio_min']:6.3f} "
                  f"{a['std_ratio_max']:6.3f}")
    payload = {
        "command": "python benchmarks/mcmc_operators.py " + " ".join(
            sys.argv[1:] if argv is None else argv),
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "load_average_at_start": load_start,
                    "load_average_at_end": os.getloadavg()},
        "settings": {"sigma": SIGMA, "scale": SCALE, "size": size, "draws": draws,
                     "warmup": warmup, "seeds": seeds},
        "summary": summary, "speed": speed, "nuts_agreement": agree,
    }
    opts.output.parent.mkdir(parents=True, exist_ok=True)
    record = {"runs": []}
    if opts.output.exists():
        record = json.loads(opts.output.read_text())
    record["runs"].append(payload)
    opts.output.write_text(json.dumps(record, indent=2, default=float))
    return payload


if __name__ == "__main__":
    main()
