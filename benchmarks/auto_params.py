"""Parameter-free TV denoising: estimated noise and weight against the oracle weight.

Run from the repository root::

    python benchmarks/auto_params.py            # 7 images x 3 noise levels, ~7 min on 2 cores
    python benchmarks/auto_params.py --quick    # camera, sigma 0.1, no samplers (smoke test;
                                                # writes results/auto_params_quick.json)
    python benchmarks/auto_params.py --sigma-only   # noise estimators only, 5 seeds, ~1 min
    python benchmarks/auto_params.py --markdown     # the tables of docs/hyperparameters.md
    python benchmarks/auto_params.py --sigma-only --markdown   # ... and the noise tables

For each grey 512 x 512 image that scikit-image ships (camera, astronaut in grey, coins
reflect-padded from 303 x 384, moon, brick, gravel, and grass as a stress case: pixel-scale
texture that no noise estimator tells from noise) and each noise level ``sigma`` in 0.05,
0.1, 0.2 (Gaussian, seeded, not clipped), it reports:

- the error of :func:`bayes_restore.hyper.estimate_sigma` (default ``method="auto"``, the
  kurtosis estimator at this size), and that of ``method="blocks"`` for comparison;
- the oracle: the PSNR-best TV weight (a 25-point log-grid of ``w / sigma`` in [0.15, 3],
  refined by 8 points around the best), knowing the clean image;
- every parameter-free scheme, with the *estimated* sigma, then the TV MAP
  (:func:`~bayes_restore.infer.tv.tv_denoise_pdhg`, relative gap 1e-4, float32) at the
  chosen weight: ``sure`` (the default of :func:`~bayes_restore.hyper.choose_tv_weight`,
  with its texture guard, ``sigma_low`` from :func:`~bayes_restore.hyper.noise.sigma_low_ratio`),
  ``sapg`` (maximum marginal likelihood), ``hier`` (posterior mean of ``theta`` in the
  hierarchical model); and ``sure*``, SURE with the true sigma, to separate the two errors;
- ``gmrf``: the Gaussian-gradient prior with ``(sigma, b)`` by exact empirical Bayes, its
  exact MAP (what the Gaussian prior costs against TV);
- ``skimage``: ``denoise_tv_chambolle`` at its default weight 0.1 and default stopping rule
  (``eps=2e-4``, which may stop it after a few iterations, far from the minimum);
- ``w0.1``: the same weight 0.1 solved to a 1e-4 gap by our solver;
- seconds per image of each scheme (noise estimation + weight + final MAP).

PSNR is ``10 log10(1 / MSE)`` against the clean image in [0, 1]. Torch runs on
``--threads`` threads (default 1). Results go to ``benchmarks/results/auto_params.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch

from bayes_restore.hyper import (
    estimate_sigma,
    gaussian_empirical_bayes,
    tv_scale_gibbs,
    tv_scale_sapg,
    tv_weight_sure,
)
from bayes_restore.hyper.noise import sigma_low_ratio
from bayes_restore.infer import dct_map, tv_denoise_pdhg

IMAGES = ("camera", "astronaut", "coins", "moon", "brick", "gravel", "grass")
#: images whose clean version has white-noise-like pixel texture (excluded from "natural" means)
STRESS = ("grass",)
SIGMAS = (0.05, 0.1, 0.2)
SCHEMES = ("sure", "sure*", "sapg", "hier", "gmrf", "skimage", "w0.1")
#: noise estimators compared by --sigma-only ("auto" is "kurtosis" at 512 x 512), their noise
#: levels, and scikit-image images never used to tune them (coloured ones in grey)
SIGMA_METHODS = ("auto", "blocks", "mad")
SIGMA_LEVELS = (0.02, 0.05, 0.1, 0.2)
HELDOUT = ("chelsea", "coffee", "rocket", "hubble_deep_field", "retina",
           "immunohistochemistry", "text", "page", "clock", "checkerboard")
MAP_TOL = 1e-4
OUT = Path(__file__).parent / "results" / "auto_params.json"
OUT_SIGMA = Path(__file__).parent / "results" / "auto_params_sigma.json"
OUT_QUICK = Path(__file__).parent / "results" / "auto_params_quick.json"


def load(name: str, size: int = 512) -> np.ndarray:
    """A grey float64 ``size x size`` crop in [0, 1] (reflect-padded when smaller)."""
    import skimage

    img = getattr(skimage.data, name)()
    img = skimage.color.rgb2gray(img) if img.ndim == 3 else skimage.img_as_float(img)
    h, w = img.shape
    img = np.pad(img, ((0, max(0, size - h)), (0, max(0, size - w))), mode="reflect")
    h, w = img.shape
    i, j = (h - size) // 2, (w - size) // 2
    return np.ascontiguousarray(img[i : i + size, j : j + size], dtype=np.float64)


def psnr(x: np.ndarray | torch.Tensor, clean: np.ndarray) -> float:
    x = x.double().numpy() if isinstance(x, torch.Tensor) else x
    return 10 * math.log10(1.0 / float(np.mean((x - clean) ** 2)))


def tv_map(y32: torch.Tensor, w: float) -> torch.Tensor:
    """TV MAP at scikit-image's weight ``w`` (the solver's energy weight is ``lambda = 2 w``)."""
    return tv_denoise_pdhg(y32, 2 * w, tol=MAP_TOL)[0]


def oracle(y32: torch.Tensor, clean: np.ndarray, sigma: float) -> tuple[float, float, int]:
    """PSNR-best weight: a coarse log-grid of w / sigma, then a finer one around its best."""
    scores: dict[float, float] = {}
    for r in np.exp(np.linspace(math.log(0.15), math.log(3.0), 25)):
        scores[float(r)] = psnr(tv_map(y32, float(r) * sigma), clean)
    grid = sorted(scores)
    i = grid.index(max(scores, key=scores.get))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    for r in np.exp(np.linspace(math.log(lo), math.log(hi), 10)[1:-1]):
        scores[float(r)] = psnr(tv_map(y32, float(r) * sigma), clean)
    best = max(scores, key=scores.get)
    return best * sigma, scores[best], len(scores)


def run_pair(name: str, clean: np.ndarray, sigma: float, schemes: tuple[str, ...],
             seed: int) -> dict:
    rng = np.random.default_rng(seed)
    noisy = clean + sigma * rng.standard_normal(clean.shape)
    y = torch.from_numpy(noisy)
    y32 = y.float()
    gen = torch.Generator().manual_seed(seed)
    rec: dict = {"image": name, "sigma": sigma, "psnr_noisy": psnr(noisy, clean)}

    start = time.perf_counter()
    sigma_hat = float(estimate_sigma(noisy))
    t_sigma = time.perf_counter() - start
    rec.update(sigma_hat=sigma_hat, sigma_error=sigma_hat / sigma - 1, time_sigma=t_sigma)
    rec["sigma_error_blocks"] = estimate_sigma(noisy, method="blocks") / sigma - 1

    start = time.perf_counter()
    w_or, p_or, n_or = oracle(y32, clean, sigma)
    rec["oracle"] = {"w_over_sigma": w_or / sigma, "psnr": p_or, "solves": n_or,
                     "time": time.perf_counter() - start}

    for scheme in schemes:
        start = time.perf_counter()
        entry: dict = {}
        if scheme == "skimage":
            from skimage.restoration import denoise_tv_chambolle

            x = denoise_tv_chambolle(noisy, weight=0.1)
            entry["w_over_sigma"] = 0.1 / sigma
        elif scheme == "w0.1":
            x = tv_map(y32, 0.1)
            entry["w_over_sigma"] = 0.1 / sigma
        elif scheme == "gmrf":
            s_eb, b_eb = gaussian_empirical_bayes(y)
            x = dct_map(y, s_eb**2 / b_eb**2)
            entry.update(sigma_eb=s_eb, scale_eb=b_eb)
        else:
            s_used = sigma if scheme == "sure*" else sigma_hat
            if scheme == "sure":  # as choose_tv_weight with sigma estimated: the texture guard
                ratio = float(sigma_low_ratio(noisy))
                est = tv_weight_sure(y32, s_used, generator=gen, sigma_low=ratio * s_used)
                entry.update(sigma_low_ratio=ratio, guarded=est.trace["guarded"])
            elif scheme == "sure*":
                est = tv_weight_sure(y32, s_used, generator=gen)
            elif scheme == "sapg":
                est = tv_scale_sapg(y32, s_used, generator=gen)
            else:
                est = tv_scale_gibbs(y32, s_used, generator=gen)
            x = tv_map(y32, est.skimage_weight)
            entry.update(w_over_sigma=est.skimage_weight / sigma, num_solves=est.num_solves)
        elapsed = time.perf_counter() - start
        if scheme not in ("sure*", "skimage", "w0.1"):
            elapsed += t_sigma
        entry.update(psnr=psnr(x, clean), time=elapsed)
        entry["delta"] = entry["psnr"] - p_or
        rec[scheme] = entry
    return rec


def summarise(records: list[dict], schemes: tuple[str, ...]) -> dict:
    out = {}
    for subset, keep in (("all", lambda r: True), ("natural", lambda r: r["image"] not in STRESS)):
        recs = [r for r in records if keep(r)]
        if not recs:
            continue
        errs = [abs(r["sigma_error"]) for r in recs]
        out[subset] = {
            "pairs": len(recs),
            "sigma_abs_error_mean": float(np.mean(errs)),
            "sigma_abs_error_max": float(np.max(errs)),
            "oracle_psnr_mean": float(np.mean([r["oracle"]["psnr"] for r in recs])),
        }
        for s in schemes:
            d = [r[s]["delta"] for r in recs]
            out[subset][s] = {"delta_mean": float(np.mean(d)), "delta_min": float(np.min(d)),
                              "time_mean": float(np.mean([r[s]["time"] for r in recs]))}
    return out


def print_row(r: dict, schemes: tuple[str, ...]) -> None:
    cells = " ".join(f"{r[s]['delta']:+7.2f}" for s in schemes)
    times = " ".join(f"{r[s]['time']:5.1f}" for s in schemes)
    print(f"{r['image']:9s} {r['sigma']:4.2f} {100 * r['sigma_error']:+6.1f}% "
          f"{r['oracle']['psnr']:6.2f} {r['oracle']['w_over_sigma']:5.2f} "
          f"{r['sure']['w_over_sigma']:5.2f} | {cells} | {times}", flush=True)


def sigma_table(images: tuple[str, ...], heldout: tuple[str, ...] = HELDOUT,
                seeds: int = 5) -> None:
    """Relative error of the noise estimators: mean and worst over ``seeds`` noise draws.

    ``"auto"`` (the default, ``"kurtosis"`` at 512 x 512), ``"blocks"`` and ``"mad"``, on the
    benchmark images and on scikit-image images never used to tune the estimator.
    """
    rows = []
    for group, names in (("benchmark", images), ("held-out", heldout)):
        print(f"\n{group}: relative error %, mean / worst over {seeds} draws")
        print(f"{'image':21s} sigma " + "".join(f"{m:>17s}" for m in SIGMA_METHODS)
              + "   s/img " + " ".join(f"{m[:6]:>6s}" for m in SIGMA_METHODS))
        for name in names:
            clean = load(name)
            for sigma in SIGMA_LEVELS:
                errs: dict[str, list[float]] = {m: [] for m in SIGMA_METHODS}
                secs = dict.fromkeys(SIGMA_METHODS, 0.0)
                for seed in range(seeds):
                    rng = np.random.default_rng(seed)
                    noisy = clean + sigma * rng.standard_normal(clean.shape)
                    for method in SIGMA_METHODS:
                        start = time.perf_counter()
                        est = estimate_sigma(noisy, method=method)
                        secs[method] += (time.perf_counter() - start) / seeds
                        errs[method].append(est / sigma - 1)
                row: dict = {"set": group, "image": name, "sigma": sigma}
                for method, e in errs.items():
                    e = np.asarray(e)
                    row[method] = {"mean": float(e.mean()),
                                   "worst": float(e[np.argmax(np.abs(e))]),
                                   "time": secs[method]}
                rows.append(row)
                print(f"{name:21s} {sigma:4.2f} " + "".join(
                    f"{100 * row[m]['mean']:+8.1f} {100 * row[m]['worst']:+7.1f}"
                    for m in SIGMA_METHODS)
                    + "   " + " ".join(f"{secs[m]:6.3f}" for m in SIGMA_METHODS), flush=True)
    OUT_SIGMA.parent.mkdir(parents=True, exist_ok=True)
    OUT_SIGMA.write_text(json.dumps(
        {"command": "python benchmarks/auto_params.py --sigma-only", "seeds": seeds,
         "methods": list(SIGMA_METHODS), "rows": rows}, indent=1))
    print(f"\nwrote {OUT_SIGMA}")


def markdown_sigma(path: Path) -> None:
    """Print the noise-estimator tables of ``docs/hyperparameters.md`` (means over the draws)."""
    res = json.loads(path.read_text())
    methods = res["methods"]
    for group in dict.fromkeys(r["set"] for r in res["rows"]):
        rows = [r for r in res["rows"] if r["set"] == group]
        levels = list(dict.fromkeys(r["sigma"] for r in rows))
        print(f"\n{group}: relative error, mean over {res['seeds']} draws, "
              + " / ".join(methods) + "\n")
        print("| image | " + " | ".join(f"sigma {s:g}" for s in levels) + " |")
        print("|---" * (1 + len(levels)) + "|")
        for name in dict.fromkeys(r["image"] for r in rows):
            cells = [" / ".join(f"{100 * r[m]['mean']:+.1f}" for m in methods) + " %"
                     for s in levels for r in rows if r["image"] == name and r["sigma"] == s]
            print(f"| {name} | " + " | ".join(cells) + " |")
    times = {m: np.mean([r[m]["time"] for r in res["rows"]]) for m in methods}
    print("\nseconds per 512 x 512 image: "
          + ", ".join(f"{m} {t:.3f}" for m, t in times.items()))


def markdown(path: Path) -> None:
    """Print the tables of ``docs/hyperparameters.md`` from a results file."""
    res = json.loads(path.read_text())
    schemes = [s for s in SCHEMES if s in res["records"][0]]
    blocks = "sigma_error_blocks" in res["records"][0]
    print("| image | sigma | sigma err. | " + ("blocks err. | " if blocks else "")
          + "oracle PSNR | oracle w/sigma | SURE w/sigma | " + " | ".join(schemes) + " |")
    print("|---" * (6 + blocks + len(schemes)) + "|")
    for r in res["records"]:
        err_b = f"{100 * r['sigma_error_blocks']:+.1f} % | " if blocks else ""
        print(f"| {r['image']} | {r['sigma']:.2f} | {100 * r['sigma_error']:+.1f} % | {err_b}"
              f"{r['oracle']['psnr']:.2f} | {r['oracle']['w_over_sigma']:.2f} | "
              f"{r['sure']['w_over_sigma']:.2f} | "
              + " | ".join(f"{r[s]['delta']:+.2f}" for s in schemes) + " |")
    print("\n| subset | scheme | mean dB vs oracle | worst dB | seconds / image |")
    print("|---|---|---|---|---|")
    for subset, summ in res["summary"].items():
        for s in schemes:
            e = summ[s]
            print(f"| {subset} ({summ['pairs']}) | {s} | {e['delta_mean']:+.3f} | "
                  f"{e['delta_min']:+.3f} | {e['time_mean']:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="camera, sigma 0.1, no samplers")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--images", default=",".join(IMAGES))
    parser.add_argument("--schemes", default=",".join(SCHEMES))
    parser.add_argument("--out", type=Path, default=None,
                        help="results file (default auto_params.json, _quick.json with --quick)")
    parser.add_argument("--sigma-only", action="store_true", help="noise estimators only")
    parser.add_argument("--markdown", action="store_true", help="print tables from --out")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.out is None:
        args.out = OUT_QUICK if args.quick else OUT
    if args.markdown and args.sigma_only:
        return markdown_sigma(OUT_SIGMA)
    if args.markdown:
        return markdown(args.out)
    if args.sigma_only:
        return sigma_table(tuple(args.images.split(",")))
    images = ("camera",) if args.quick else tuple(args.images.split(","))
    sigmas = (0.1,) if args.quick else SIGMAS
    schemes = tuple(
        s for s in args.schemes.split(",") if not (args.quick and s in ("sapg", "hier"))
    )
    if "sure" not in schemes:
        raise SystemExit("the table needs the 'sure' scheme")

    print("PSNR differences to the oracle weight (dB), then seconds per image, per scheme")
    print(f"{'image':9s} sigma  s-err  oracle w/s*  w/s  | "
          + " ".join(f"{s:>7s}" for s in schemes) + " | " + " ".join(f"{s:>5.5s}" for s in schemes))
    records = []
    start = time.perf_counter()
    for i, name in enumerate(images):
        clean = load(name)
        for j, sigma in enumerate(sigmas):
            rec = run_pair(name, clean, sigma, schemes, seed=1000 * i + j)
            records.append(rec)
            print_row(rec, schemes)
    summary = summarise(records, schemes)
    for subset, s in summary.items():
        print(f"\n{subset} ({s['pairs']} pairs): |sigma error| mean "
              f"{100 * s['sigma_abs_error_mean']:.1f}%, max {100 * s['sigma_abs_error_max']:.1f}%;"
              f" oracle PSNR mean {s['oracle_psnr_mean']:.2f}")
        for scheme in schemes:
            e = s[scheme]
            print(f"  {scheme:8s} mean {e['delta_mean']:+.3f} dB, worst {e['delta_min']:+.3f} dB,"
                  f" {e['time_mean']:.2f} s/image")
    result = {
        "command": "python benchmarks/auto_params.py" + (" --quick" if args.quick else ""),
        "threads": args.threads, "machine": platform.platform(), "torch": torch.__version__,
        "map_tol": MAP_TOL, "wall_time": time.perf_counter() - start,
        "records": records, "summary": summary,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
