"""Benchmark of TV posterior sampling run to convergence: time, ESS, R-hat, Monte Carlo error.

Run ``python benchmarks/mcmc_convergence.py`` (``--quick`` for a smoke test, ``--only``
to pick rows). Each row is one function returning a dict; :func:`main` prints the table
and writes ``benchmarks/results/mcmc_convergence.json``.

Model: ``x ~ TV(b)``, ``y ~ N(A x, sigma^2)`` on crops of scikit-image's ``camera``
(values in [0, 1]), ``sigma = 0.1``, ``b = 0.1``, SK-ROCK with its defaults, two chains,
``mcmc(...)`` without ``num_samples`` (run until every pixel has R-hat <= 1.01 and bulk and
tail ESS >= 100, or ``max_time``). "s/minESS" is the wall time over the worst pixel's bulk
ESS; the ESS are those of every pixel unless ``diagnostic_stride`` > 1 (a grid of them).
Operator rows: reflective Gaussian blur (std 1 px, 7x7), x2 box decimation, a 50 %
random mask. The NUTS rows compare the run-to-convergence posterior with Pyro's NUTS on
32x32 (mean within 0.01, std within 15 %). The memory row runs 2048x2048 to a time cap
and reports the peak resident memory beyond the input (in a child process).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from bayes_restore.infer.mcmc import mcmc
from bayes_restore.models import restoration_model
from bayes_restore.operators import Blur, Downsample, Mask, gaussian_psf
from bayes_restore.priors import TotalVariation

RESULTS = Path(__file__).resolve().parent / "results" / "mcmc_convergence.json"
SIGMA = 0.1
SCALE = 0.1


def camera_crop(size: int) -> np.ndarray:
    """A ``size x size`` crop of scikit-image's camera in [0, 1] (larger: tiled by reflection)."""
    from skimage import data, img_as_float

    img = img_as_float(data.camera())
    if size > img.shape[0]:
        reps = -(-size // img.shape[0])
        img = np.block([[img if (i + j) % 2 == 0 else img[::-1, ::-1] for j in range(reps)]
                        for i in range(reps)])
        return img[:size, :size]
    top, left = min(100, img.shape[0] - size), min(200, img.shape[1] - size)
    return img[top : top + size, left : left + size]


def operator(name: str, size: int):
    """The forward operator of a row (``None``: denoising)."""
    if name == "denoise":
        return None
    if name == "blur":
        return Blur(gaussian_psf(7, 1.0))
    if name == "decimate":
        return Downsample(2)
    if name == "mask":
        keep = torch.rand(size, size, generator=torch.Generator().manual_seed(5)) < 0.5
        return Mask(keep)
    raise ValueError(name)


def observation(size: int, op, dtype=torch.float32) -> torch.Tensor:
    clean = torch.from_numpy(camera_crop(size)).to(dtype)
    ax = clean if op is None else op(clean)
    gen = torch.Generator().manual_seed(0)
    return ax + SIGMA * torch.randn(ax.shape, generator=gen, dtype=dtype)


def run(size: int, op_name: str, *, dtype=torch.float32, **options):
    """One run; the Posterior and the wall time."""
    op = operator(op_name, size)
    y = observation(size, op, dtype)
    kwargs = {} if op is None else {"operator": op}
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        post = mcmc(restoration_model, y, prior=TotalVariation(SCALE, shape=(size, size)),
                    sigma=SIGMA, seed=0, **kwargs, **options)
    seconds = time.perf_counter() - start
    return post, seconds, [str(w.message) for w in caught]


def summary_row(name: str, post, seconds: float, messages) -> dict:
    d = post.diagnostics
    return {
        "row": name,
        "seconds": seconds,
        "converged": d.get("converged"),
        "draws_per_chain": d["num_draws"],
        "num_chains": d["num_chains"],
        "warmup": d["warmup"],
        "stages": d["stages"],
        "step_size": d["step_size"],
        "rhat_max": d["rhat_max"],
        "ess_bulk_min": d["ess_bulk_min"],
        "ess_bulk_median": d["ess_bulk_median"],
        "ess_tail_min": d["ess_tail_min"],
        "s_per_min_ess": seconds / d["ess_bulk_min"],
        "s_per_min_ess_bulk_tail": seconds / min(d["ess_bulk_min"], d["ess_tail_min"]),
        "num_steps": d["num_steps"],
        "cpu_seconds": d.get("cpu_time"),
        "diagnostics_seconds": d.get("diagnostics_time"),
        "diagnostics_cpu_seconds": d.get("diagnostics_cpu_time"),
        "diagnostic_stride": d.get("diagnostic_stride"),
        "diagnostic_thin": d.get("diagnostic_thin"),
        "std_mc_error_median": d["std_mc_error"],
        "mean_mc_error_median": d["mean_mc_error"],
        "diagnostic_draws": d["diagnostic_draws"],
        # "int16 levels": every pixel's kept draws in 16 bits (their ESS covers every pixel)
        "diagnostic_values": d.get("diagnostic_values", "float32"),
        "quantisation_clipped": d.get("quantisation_clipped"),
        "checks": [dict(c) for c in d.get("checks", ())],
        "warnings": messages,
    }


def row_denoise(size: int, max_time: float, **options) -> dict:
    post, seconds, msgs = run(size, "denoise", max_time=max_time, **options)
    row = summary_row(f"denoise {size}x{size} to convergence"
                      + "".join(f" {k}={v}" for k, v in options.items()), post, seconds, msgs)
    row["seconds_per_draw"] = seconds / (post.diagnostics["num_steps"])
    row["ess_per_draw"] = post.diagnostics["ess_bulk_min"] / post.diagnostics["num_draws"]
    return row


def row_operator(name: str, size: int, max_time: float, **options) -> dict:
    post, seconds, msgs = run(size, name, max_time=max_time, **options)
    row = summary_row(f"{name} {size}x{size} to convergence"
                      + "".join(f" {k}={v}" for k, v in options.items()), post, seconds, msgs)
    row["preconditioner"] = post.diagnostics.get("preconditioner")
    row["seconds_per_draw"] = seconds / (post.diagnostics["num_steps"])
    row["ess_per_draw"] = post.diagnostics["ess_bulk_min"] / post.diagnostics["num_draws"]
    if name == "mask":  # where the slow pixels are: observed or not
        keep = operator(name, size).structure().d
        ess = post.diagnostics["convergence"]["ess_bulk"]
        row["ess_bulk_median_observed"] = float(ess[keep].median())
        row["ess_bulk_median_unobserved"] = float(ess[~keep].median())
        row["ess_bulk_min_observed"] = float(ess[keep].min())
        row["ess_bulk_min_unobserved"] = float(ess[~keep].min())
    return row


def row_nuts_agreement(name: str, quick: bool, nuts_draws: int | None = None,
                       **options) -> dict:
    """NUTS and SK-ROCK (to convergence) on the 32x32 posterior of one operator.

    Besides the differences, their Monte Carlo part: ``mean_z_max`` is the largest
    ``|mean difference| / sqrt(mcse_nuts^2 + mcse_ours^2)`` (about 3.5-4 for 1024 pixels
    when the two targets agree), and the differences over the pixels where NUTS's own bulk
    ESS is at least 400.
    """
    n = nuts_draws or (100 if quick else 300)
    nuts, t_nuts, _ = run(32, name, dtype=torch.float64, sampler="nuts", num_samples=n,
                          warmup=min(n, 500))
    ours, t_ours, msgs = run(32, name, dtype=torch.float64, max_time=120 if quick else 600,
                             **options)
    dm = (ours.mean - nuts.mean).abs()
    ratio = ours.std / nuts.std
    se = (ours.mean_mcse.square() + nuts.mean_mcse.square()).sqrt()
    z = dm / se
    worst = int(dm.argmax())
    nuts_ess = nuts.diagnostics["convergence"]["ess_bulk"]
    good = nuts_ess >= 400
    row = summary_row(f"{name} 32x32 vs NUTS" + ("" if not options else f" {options}"),
                      ours, t_ours, msgs)
    row.update({
        "nuts_draws_per_chain": n,
        "nuts_seconds": t_nuts,
        "nuts_ess_bulk_min": nuts.diagnostics["ess_bulk_min"],
        "nuts_ess_bulk_median": nuts.diagnostics["ess_bulk_median"],
        "mean_abs_diff_max": float(dm.max()),
        "mean_abs_diff_avg": float(dm.mean()),
        "mean_abs_diff_over_0.01": int((dm > 0.01).sum()),
        "mean_z_max": float(z.max()),
        "mean_z_rms": float(z.square().mean().sqrt()),
        "worst_pixel": {"mean_abs_diff": float(dm.flatten()[worst]),
                        "mcse_nuts": float(nuts.mean_mcse.flatten()[worst]),
                        "mcse_ours": float(ours.mean_mcse.flatten()[worst]),
                        "nuts_ess_bulk": float(nuts_ess.flatten()[worst])},
        "pixels_nuts_ess_400": int(good.sum()),
        "mean_abs_diff_max_nuts_ess_400": float(dm[good].max()) if bool(good.any()) else None,
        "std_ratio_avg": float(ratio.mean()),
        "std_rel_diff_avg": float((ratio - 1).abs().mean()),
        "std_rel_diff_max": float((ratio - 1).abs().max()),
        "nuts_std_mc_error_median": nuts.diagnostics["std_mc_error"],
    })
    return row


_CHILD = """
import resource, sys, time, warnings, torch
sys.path.insert(0, {bench!r})
sys.path.insert(0, {package!r})
from mcmc_convergence import observation, SIGMA, SCALE
from bayes_restore.infer.mcmc import mcmc
from bayes_restore.models import restoration_model
from bayes_restore.priors import TotalVariation
torch.set_num_threads({threads})
size = {size}
y = observation(size, None)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    post = mcmc(restoration_model, y, prior=TotalVariation(SCALE, shape=(size, size)),
                sigma=SIGMA, seed=0, max_time={max_time})
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
d = post.diagnostics
print({{"seconds": time.perf_counter() - start, "peak_rss_mib": after / 1024,
        "rss_before_mib": before / 1024, "beyond_input_mib": (after - before) / 1024,
        "draws_per_chain": d["num_draws"], "rhat_max": d["rhat_max"],
        "ess_bulk_min": d["ess_bulk_min"], "converged": d["converged"],
        "diagnostic_draws": d["diagnostic_draws"], "std_mc_error_median": d["std_mc_error"],
        "diagnostic_stride": d["diagnostic_stride"], "warmup": d["warmup"],
        "num_steps": d["num_steps"], "max_time": {max_time}, "package": mcmc.__module__,
        "package_file": sys.modules[mcmc.__module__].__file__}})
"""


def row_memory(size: int, max_time: float, threads: int) -> dict:
    """Peak resident memory of a run to convergence (capped by ``max_time``), child process."""
    import bayes_restore  # the child imports the same package as this process

    code = _CHILD.format(bench=str(Path(__file__).resolve().parent), size=size,
                         max_time=max_time, threads=threads,
                         package=str(Path(bayes_restore.__file__).resolve().parents[1]))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    result = eval(out.stdout.strip().splitlines()[-1])  # noqa: S307 - our own child's dict
    return {"row": f"memory {size}x{size}", **result}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny run (smoke test)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--only", nargs="*", default=None,
                        help="run only the rows whose name contains one of these")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-time", type=float, default=None,
                        help="time cap of each run to convergence (default 600, quick 60)")
    parser.add_argument("--preconditioner", default=None,
                        help="mcmc's preconditioner for the operator and NUTS rows")
    parser.add_argument("--step-size", type=float, default=None,
                        help="mcmc's step_size for the denoise rows (default: mcmc's)")
    parser.add_argument("--prox-iter", type=int, default=None,
                        help="mcmc's prox_iter for the denoise rows (default: mcmc's)")
    parser.add_argument("--nuts-draws", type=int, default=None,
                        help="NUTS draws per chain of the nuts_* rows (default 300, quick 100)")
    opts = parser.parse_args(argv)
    torch.set_num_threads(opts.threads)
    load_start = list(__import__("os").getloadavg())
    q = opts.quick
    cap = opts.max_time if opts.max_time is not None else (60 if q else 600)
    extra = {} if opts.preconditioner is None else {"preconditioner": opts.preconditioner}
    langevin = {k: v for k, v in (("step_size", opts.step_size), ("prox_iter", opts.prox_iter))
                if v is not None}
    plan = [
        ("denoise128", lambda: row_denoise(64 if q else 128, cap, **langevin)),
        ("denoise512", lambda: row_denoise(128 if q else 512, cap, **langevin)),
        ("nuts_denoise", lambda: row_nuts_agreement("denoise", q, opts.nuts_draws, **langevin)),
        ("blur128", lambda: row_operator("blur", 64 if q else 128, cap, **extra)),
        ("decimate128", lambda: row_operator("decimate", 64 if q else 128, cap, **extra)),
        ("mask128", lambda: row_operator("mask", 64 if q else 128, cap, **extra)),
        ("nuts_blur", lambda: row_nuts_agreement("blur", q, opts.nuts_draws, **extra)),
        ("nuts_decimate", lambda: row_nuts_agreement("decimate", q, opts.nuts_draws, **extra)),
        ("nuts_mask", lambda: row_nuts_agreement("mask", q, opts.nuts_draws, **extra)),
        ("memory2048", lambda: row_memory(256 if q else 2048, 30 if q else 300, opts.threads)),
    ]
    results = []
    for key, fn in plan:
        if opts.only is not None and not any(k in key for k in opts.only):
            continue
        row = fn()
        results.append(row)
        print(f"done: {row['row']} ({row['seconds']:.1f} s)", file=sys.stderr, flush=True)
    head = (f"{'row':<34} {'seconds':>8} {'draws':>7} {'R-hat':>7} {'ESS min':>8} "
            f"{'ESS med':>8} {'tail min':>8} {'s/minESS':>9} {'std MCE':>8} conv")
    print(head)
    print("-" * len(head))
    for r in results:
        print(f"{r['row']:<34} {r['seconds']:8.1f} {r['draws_per_chain']:7d} "
              f"{r['rhat_max']:7.4f} {r['ess_bulk_min']:8.1f} {r.get('ess_bulk_median', 0):8.1f} "
              f"{r.get('ess_tail_min', 0):8.1f} {r.get('s_per_min_ess', 0):9.4f} "
              f"{100 * r['std_mc_error_median']:7.2f}% {r['converged']}")
        if r.get("cpu_seconds") is not None:
            print(f"    {r['num_steps']} steps; CPU {r['cpu_seconds']:.1f} s "
                  f"({1e3 * r['cpu_seconds'] / max(r['num_steps'], 1):.1f} ms/step incl. "
                  f"diagnostics); diagnostics {r['diagnostics_seconds']:.1f} s wall, "
                  f"{r['diagnostics_cpu_seconds']:.1f} s CPU; s/min(bulk,tail) ESS "
                  f"{r['s_per_min_ess_bulk_tail']:.3f}")
        if "mean_abs_diff_max" in r:
            print(f"    vs NUTS: mean |diff| max {r['mean_abs_diff_max']:.4f} avg "
                  f"{r['mean_abs_diff_avg']:.4f}; std ratio avg {r['std_ratio_avg']:.3f}, "
                  f"|ratio - 1| avg {r['std_rel_diff_avg']:.3f}")
        if "beyond_input_mib" in r:
            print(f"    peak RSS {r['peak_rss_mib']:.0f} MiB, {r['beyond_input_mib']:.0f} MiB "
                  "beyond the input")
    try:
        load = list(__import__("os").getloadavg())
    except OSError:  # pragma: no cover
        load = None
    payload = {
        "command": "python benchmarks/mcmc_convergence.py " + " ".join(
            sys.argv[1:] if argv is None else argv),
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "load_average_at_end": load},
        "settings": {"sigma": SIGMA, "scale": SCALE, "image": "skimage camera crops"},
        "rows": results,
    }
    payload["load_average_at_start"] = load_start
    opts.output.parent.mkdir(parents=True, exist_ok=True)
    # earlier runs are kept: the file is {"note": ..., "runs": [one payload per invocation]}
    record = {"note": "", "runs": []}
    if opts.output.exists():
        old = json.loads(opts.output.read_text())
        record = old if "runs" in old else {"note": "", "runs": [old]}
    record["runs"].append(payload)
    opts.output.write_text(json.dumps(record, indent=2, default=float))
    return results


if __name__ == "__main__":
    main()
