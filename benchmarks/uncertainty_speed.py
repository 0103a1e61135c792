"""Benchmark of the uncertainty engines: seconds per effective sample of TV sampling, and more.

Run ``python benchmarks/uncertainty_speed.py`` (about 5-8 minutes on 2 cores). Each row
of the table is one function returning a dict; :func:`main` runs the rows, prints the
table and writes ``benchmarks/results/uncertainty_speed.json``. Rows for other engines
(exact std, VI) are added by writing a ``row_*`` function and listing it in :func:`rows`;
``--only vi`` runs the variational rows (SVI mean field at 256x256, the structured engine on
the Gaussian model, TV variational Bayes at 512x512 with and without a blur).

TV sampling rows: the denoising posterior ``x ~ TV(b)``, ``y ~ N(x, sigma^2)`` on crops of
scikit-image's ``camera`` (values in [0, 1]), ``sigma = 0.1``, ``b = 0.1`` (TV weight
``sigma^2 / b = 0.1``). Effective sample sizes are ArviZ's bulk ESS per pixel (all chains);
"min" is the worst pixel, "median" the typical one. Time is the wall time of the whole run
(warm-up included). The agreement row compares SK-ROCK against Pyro's NUTS at 32x32.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from bayes_restore.infer.mcmc import mcmc
from bayes_restore.models import restoration_model
from bayes_restore.priors import TotalVariation

RESULTS = Path(__file__).resolve().parent / "results" / "uncertainty_speed.json"
SIGMA = 0.1
SCALE = 0.1


def camera_crop(size: int) -> np.ndarray:
    """A ``size x size`` crop of scikit-image's camera, float in [0, 1] (512 = whole image)."""
    from skimage import data, img_as_float

    img = img_as_float(data.camera())
    top, left = min(100, img.shape[0] - size), min(200, img.shape[1] - size)
    return img[top : top + size, left : left + size]


def noisy(size: int, *, dtype: torch.dtype = torch.float64, seed: int = 0) -> torch.Tensor:
    """The observation ``y = x + sigma n`` for the test image of that size."""
    clean = torch.from_numpy(camera_crop(size)).to(dtype)
    gen = torch.Generator().manual_seed(seed)
    return clean + SIGMA * torch.randn(clean.shape, generator=gen, dtype=dtype)


def ess_stats(samples: torch.Tensor, stride: int = 1) -> dict:
    """Per-pixel bulk ESS and split R-hat of ``(chain, draw, H, W)`` samples (ArviZ).

    ArviZ loops over pixels in Python (about 4 ms a pixel for 4000 draws), so large
    images are measured on every ``stride``-th pixel of every ``stride``-th row.
    """
    import arviz as az

    sub = samples[..., ::stride, ::stride].detach().cpu().numpy()
    idata = az.from_dict(posterior={"x": sub})
    ess = az.ess(idata)["x"].values
    rhat = az.rhat(idata)["x"].values
    return {
        "ess_min": float(np.min(ess)),
        "ess_median": float(np.median(ess)),
        "rhat_max": float(np.max(rhat)),
        "ess_pixels": int(ess.size),
        "ess_pixel_stride": stride,
    }


def run_sampler(size: int, sampler: str, *, num_samples: int, num_chains: int,
                warmup: int | None = None, dtype: torch.dtype = torch.float32,
                ess_stride: int = 1, **options) -> tuple[dict, object]:
    """Sample the TV posterior at ``size``; return the row and the Posterior."""
    y = noisy(size, dtype=dtype)
    prior = TotalVariation(SCALE, shape=(size, size))
    start = time.perf_counter()
    post = mcmc(restoration_model, y, prior=prior, sigma=SIGMA, sampler=sampler,
                num_samples=num_samples, num_chains=num_chains, warmup=warmup, seed=0,
                **options)
    elapsed = time.perf_counter() - start
    stats = ess_stats(post.samples, ess_stride)
    d = post.diagnostics
    row = {
        "row": f"TV sampling {sampler} {size}x{size}",
        "engine": sampler,
        "size": size,
        "dtype": str(dtype).replace("torch.", ""),
        "num_chains": num_chains,
        "draws_per_chain": num_samples,
        "warmup": d["warmup"],
        "seconds": elapsed,
        "gradient_evaluations": d["gradient_evaluations"],
        **stats,
        "s_per_min_ess": elapsed / stats["ess_min"],
        "s_per_median_ess": elapsed / stats["ess_median"],
        "min_ess_per_s": stats["ess_min"] / elapsed,
        "step_size": d["step_size"],
        "lambda_MY": d.get("lambda_MY"),
        "stages": d.get("stages"),
    }
    return row, post


def agreement(ours, reference) -> dict:
    """Mean and std maps of ``ours`` against ``reference`` (two Posteriors)."""
    dm = (ours.mean - reference.mean).abs().to(torch.float64)
    rel = ((ours.std - reference.std).abs() / reference.std).to(torch.float64)
    ratio = (ours.std / reference.std).to(torch.float64)
    return {
        "mean_abs_diff_max": float(dm.max()),
        "mean_abs_diff_avg": float(dm.mean()),
        "std_rel_diff_avg": float(rel.mean()),
        "std_ratio_avg": float(ratio.mean()),
    }


# --- rows ------------------------------------------------------------------------------------

_CACHE: dict = {}


def row_tv_nuts_32(quick: bool = False) -> dict:
    """Pyro's NUTS on the 32x32 TV posterior (the gold standard)."""
    n = 100 if quick else 300
    row, post = run_sampler(32, "nuts", num_samples=n, num_chains=2, warmup=n,
                            dtype=torch.float64)
    _CACHE["nuts32"] = post
    return row


def row_tv_skrock_32(quick: bool = False) -> dict:
    """SK-ROCK on the same 32x32 posterior, with its agreement with NUTS."""
    row, post = run_sampler(32, "skrock", num_samples=500 if quick else 4000, num_chains=4,
                            dtype=torch.float64)
    _CACHE["skrock32"] = post
    if "nuts32" in _CACHE:
        row["agreement_with_nuts"] = agreement(post, _CACHE["nuts32"])
    return row


def row_tv_skrock_128(quick: bool = False) -> dict:
    """SK-ROCK at 128x128."""
    row, _ = run_sampler(128, "skrock", num_samples=200 if quick else 800, num_chains=4)
    return row


def row_tv_skrock_512(quick: bool = False) -> dict:
    """SK-ROCK at 512x512 (fewer draws; ESS on a 128x128 grid of pixels)."""
    row, _ = run_sampler(512, "skrock", num_samples=50 if quick else 300, num_chains=2,
                         ess_stride=4)
    return row


def _row_exact(size: int, repeats: int) -> dict:
    from bayes_restore.infer import gaussian_posterior_std

    gaussian_posterior_std((size, size), SIGMA, SCALE, dtype=torch.float32)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        std = gaussian_posterior_std((size, size), SIGMA, SCALE, dtype=torch.float32)
        times.append(time.perf_counter() - start)
    return {"row": f"exact std {size}x{size}", "seconds": float(np.median(times)),
            "std_mean": float(std.mean()), "target_seconds": 0.05 if size == 512 else 1.0}


def row_exact_512(quick: bool = False) -> dict:
    """Exact per-pixel std of the Gaussian-gradient posterior, 512x512 (float32)."""
    return _row_exact(512, 3 if quick else 7)


def row_exact_2048(quick: bool = False) -> dict:
    """Exact per-pixel std, 2048x2048 (float32)."""
    return _row_exact(2048, 1 if quick else 3)


def row_vi_256(quick: bool = False) -> dict:
    """Mean-field VI to convergence on 256x256 (Gaussian-gradient prior: exact std known)."""
    import warnings

    from bayes_restore import ConvergenceWarning
    from bayes_restore.infer import exact_posterior, variational
    from bayes_restore.models import restoration_model
    from bayes_restore.priors import GaussianGradient

    size = 64 if quick else 256
    y = noisy(size)
    prior = GaussianGradient(SCALE, shape=(size, size))
    exact = exact_posterior(restoration_model, y, prior=prior, sigma=SIGMA)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        post = variational(restoration_model, y, prior=prior, sigma=SIGMA, num_samples=0,
                           engine="svi", generator=torch.Generator().manual_seed(0))
    seconds = time.perf_counter() - start
    return {"row": f"VI mean field {size}x{size}", "seconds": seconds,
            "steps": post.info.iterations, "converged": post.info.converged,
            "std_ratio_to_exact": float((post.std / exact.std).mean()),
            "mean_abs_diff_to_exact": float((post.mean - exact.mean).abs().mean())}


def _blur():
    from bayes_restore.operators import Blur, gaussian_psf

    return Blur(gaussian_psf(9, 1.5))  # reflective boundary (the default)


def row_vi_structured_256(quick: bool = False) -> dict:
    """``method="vi"``'s structured engine on the Gaussian-gradient model, 256x256, A = I
    and a reflective blur: it is the exact posterior (mean and std against the exact
    engine)."""
    from bayes_restore.infer import exact_posterior, variational
    from bayes_restore.models import restoration_model
    from bayes_restore.priors import GaussianGradient

    size = 64 if quick else 256
    prior = GaussianGradient(SCALE, shape=(size, size))
    out = {"row": f"VI structured Gaussian {size}x{size}"}
    for name, op in (("identity", None), ("blur", _blur())):
        y = noisy(size)
        y = y if op is None else op(y)
        exact = exact_posterior(restoration_model, y, prior=prior, sigma=SIGMA, operator=op)
        start, start_cpu = time.perf_counter(), time.process_time()
        post = variational(restoration_model, y, prior=prior, sigma=SIGMA, operator=op,
                           num_samples=0)
        out[f"seconds_{name}"] = time.perf_counter() - start
        out[f"cpu_seconds_{name}"] = time.process_time() - start_cpu
        out[f"max_mean_diff_{name}"] = float((post.mean - exact.mean).abs().max())
        out[f"std_ratio_{name}"] = float((post.std / exact.std).mean())
    out["seconds"] = out["seconds_identity"]
    return out


def _vi_tv(size: int, operator, repeats: int) -> dict:
    from bayes_restore.infer import variational
    from bayes_restore.models import restoration_model

    y = noisy(size, dtype=torch.float32)
    y = y if operator is None else operator(y)
    prior = TotalVariation(torch.tensor(SCALE, dtype=torch.float32), shape=(size, size))

    def run():
        return variational(restoration_model, y, prior=prior, sigma=SIGMA, operator=operator,
                           num_samples=0)

    run()  # warm-up (the TV MAP's compiled kernels)
    times, cpu, post = [], [], None
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        post = run()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    name = "A = I" if operator is None else "blur"
    return {"row": f"VI TV {size}x{size} ({name})", "seconds": float(np.median(times)),
            "seconds_all": times, "cpu_seconds": float(np.median(cpu)), "cpu_seconds_all": cpu,
            "iterations": post.info.iterations,
            "cg_iterations": post.diagnostics["cg_iterations"],
            "converged": post.info.converged, "std_mean": float(post.std.mean()),
            "start": "TV MAP" if operator is None else "stationary Gaussian mean",
            "map_returned": post.map is not None,
            "target_seconds": 2.0 if operator is None else 6.0}


def row_vi_tv_512(quick: bool = False) -> dict:
    """TV variational Bayes with per-pixel std, 512x512 denoising, float32 (target 2 s)."""
    return _vi_tv(128 if quick else 512, None, 1 if quick else 3)


def row_vi_tv_blur_512(quick: bool = False) -> dict:
    """TV variational Bayes with a reflective Gaussian blur, 512x512, float32 (target 6 s)."""
    return _vi_tv(128 if quick else 512, _blur(), 1 if quick else 3)


def rows() -> list[Callable[..., dict]]:
    """The rows in order."""
    return [row_exact_512, row_exact_2048, row_vi_256, row_vi_structured_256, row_vi_tv_512,
            row_vi_tv_blur_512, row_tv_nuts_32, row_tv_skrock_32, row_tv_skrock_128,
            row_tv_skrock_512]


def print_table(results: list[dict]) -> None:
    """Print one line per row: time, ESS (min / median) and seconds per effective sample."""
    head = (f"{'row':<30} {'seconds':>8} {'ESS min':>9} {'ESS med':>9} {'s/minESS':>9} "
            f"{'s/medESS':>9} {'R-hat max':>9}")
    print(head)
    print("-" * len(head))
    for r in results:
        if "ess_min" in r:
            print(f"{r['row']:<30} {r['seconds']:8.1f} {r['ess_min']:9.1f} "
                  f"{r['ess_median']:9.1f} {r['s_per_min_ess']:9.4f} "
                  f"{r['s_per_median_ess']:9.4f} {r['rhat_max']:9.3f}")
        else:
            extra = ""
            if "std_ratio_to_exact" in r:
                extra = (f"  {r['steps']} steps, std / exact {r['std_ratio_to_exact']:.3f}, "
                         f"mean |diff| {r['mean_abs_diff_to_exact']:.4f}")
            elif "std_ratio_blur" in r:
                extra = (f"  max |mean - exact| {r['max_mean_diff_identity']:.1e} / "
                         f"{r['max_mean_diff_blur']:.1e} (blur), std / exact "
                         f"{r['std_ratio_identity']:.4f} / {r['std_ratio_blur']:.4f}, blur "
                         f"{r['seconds_blur']:.3f} s")
            elif "cg_iterations" in r:
                extra = (f"  CPU {r['cpu_seconds']:.3f} s, {r['iterations']} VB sweeps, "
                         f"{r['cg_iterations']} CG iterations (target {r['target_seconds']} s)")
            print(f"{r['row']:<30} {r.get('seconds', float('nan')):8.3f}{extra}")
    by_name = {r["row"]: r for r in results}
    nuts, ours = by_name.get("TV sampling nuts 32x32"), by_name.get("TV sampling skrock 32x32")
    if nuts and ours:
        speedup = ours["min_ess_per_s"] / nuts["min_ess_per_s"]
        print(f"\n32x32: SK-ROCK min-ESS per second = {speedup:.1f} x NUTS's (target >= 10)")
        if "agreement_with_nuts" in ours:
            a = ours["agreement_with_nuts"]
            print(f"32x32 agreement with NUTS: mean |diff| max {a['mean_abs_diff_max']:.4f}, "
                  f"avg {a['mean_abs_diff_avg']:.4f} (target 0.01); std relative diff avg "
                  f"{a['std_rel_diff_avg']:.3f} (target 0.15), std ratio avg "
                  f"{a['std_ratio_avg']:.3f}")
    r128 = by_name.get("TV sampling skrock 128x128")
    if r128:
        print(f"128x128: {r128['s_per_min_ess']:.4f} s per min-ESS sample (target <= 0.05)")


def main(argv: list[str] | None = None) -> list[dict]:
    """Run every row, print the table, write the JSON file.

    With ``--only`` the rows run are merged into an existing file (same row name:
    replaced; the others kept), each row carrying the command that measured it.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny run (smoke test)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--only", nargs="*", default=None,
                        help="run only the rows whose function name contains one of these")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 is fastest on a shared 2-core machine)")
    opts = parser.parse_args(argv)
    torch.set_num_threads(opts.threads)
    results = []
    selected = [fn for fn in rows()
                if opts.only is None or any(key in fn.__name__ for key in opts.only)]
    for fn in selected:
        row = fn(quick=opts.quick)
        results.append(row)
        print(f"done: {row['row']} ({row.get('seconds', 0):.1f} s)", file=sys.stderr, flush=True)
    print_table(results)
    command = ("python benchmarks/uncertainty_speed.py" + (" --quick" if opts.quick else "")
               + f" --threads {opts.threads}"
               + (" --only " + " ".join(opts.only) if opts.only else ""))
    load = [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None
    for row in results:
        row["command"] = command
        row["load_average_1_5_15_min"] = load  # at the end of the run: a shared machine
    if opts.only and opts.output.exists():  # merge: keep the rows not run now
        previous = json.loads(opts.output.read_text())
        old = previous.get("rows", [])
        command = previous.get("command", command)  # the file's; each row has its own
        new = {r["row"]: r for r in results}
        merged = [new.pop(r["row"], r) for r in old]
        results = merged + list(new.values())
    payload = {
        "command": command,
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "processor": platform.processor()},
        "settings": {"sigma": SIGMA, "scale": SCALE, "image": "skimage camera crops"},
        "rows": results,
    }
    opts.output.parent.mkdir(parents=True, exist_ok=True)
    opts.output.write_text(json.dumps(payload, indent=2))
    return results


if __name__ == "__main__":
    main()
