"""Noise-level sweep: ``estimate_sigma`` and parameter-free ``denoise`` on 1125 small images.

Run from the repository root::

    python benchmarks/sigma_sweep.py              # both protocols, estimates and denoising
    python benchmarks/sigma_sweep.py --quick      # 5 images, 1 seed, one protocol (smoke test;
                                                  # writes results/sigma_sweep_quick.json)
    python benchmarks/sigma_sweep.py --no-denoise # the noise estimates only (~1 min)
    python benchmarks/sigma_sweep.py --markdown   # the tables of docs/hyperparameters.md

The 25 two-dimensional images of ``skimage.data`` that load without a download (colour ones
in grey by ``rgb2gray``, RGBA ones through ``rgba2rgb`` first, binary ones as 0 / 1), as
float64 in [0, 1], at 128, 192 and 256 pixels square, plus Gaussian noise of std 0.01, 0.02,
0.05, 0.1 and 0.2 (not clipped), three seeds each: 25 x 3 x 5 x 3 = 1125 cases per protocol.
Two ways to make the small images:

- ``resize``: the whole image resized to ``size x size`` by ``skimage.transform.resize``
  (anti-aliased; the aspect ratio is not kept). Small, smooth at the pixel scale: the
  protocol on which the kurtosis estimator used to return 0.
- ``crop``: the centre ``size x size`` crop (reflect-padded where the image is smaller):
  full-resolution texture.

For each case it records ``estimate_sigma(noisy)`` (the default, ``method="auto"``, the
kurtosis estimator at these sizes) and the ``"blocks"`` and ``"mad"`` estimates, and runs
parameter-free denoising, ``bayes_restore.denoise(noisy)`` (TV, sigma estimated, weight by
SURE with the texture guard of ``choose_tv_weight``), with the PSNR of its output and of
its input against the clean image
(``skimage.metrics.peak_signal_noise_ratio(clean, x, data_range=1)``). The printed table gives,
per protocol, size and noise level, the median and worst relative error of each estimator,
the number of cases off by more than 20 %, the number of estimates that are 0, NaN or
infinite, and for denoising the number of cases worse than the input and the smallest gain.
Torch runs on one thread. Results go to ``benchmarks/results/sigma_sweep.json``.
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

import bayes_restore
from bayes_restore.hyper import estimate_sigma

#: the 2-D (or colour) images of skimage.data that ship with scikit-image (no download)
IMAGES = (
    "astronaut", "binary_blobs", "brick", "camera", "cat", "cell", "checkerboard", "chelsea",
    "clock", "coffee", "coins", "colorwheel", "grass", "gravel", "horse", "hubble_deep_field",
    "immunohistochemistry", "logo", "microaneurysms", "moon", "page", "retina", "rocket",
    "shepp_logan_phantom", "text",
)
QUICK_IMAGES = ("brick", "clock", "grass", "gravel", "coins")
SIZES = (128, 192, 256)
SIGMAS = (0.01, 0.02, 0.05, 0.1, 0.2)
SEEDS = (0, 1, 2)
PROTOCOLS = ("resize", "crop")
METHODS = ("auto", "blocks", "mad")
#: an estimate further than this (relative) from the truth counts as a miss
TOLERANCE = 0.2
OUT = Path(__file__).parent / "results" / "sigma_sweep.json"
OUT_QUICK = Path(__file__).parent / "results" / "sigma_sweep_quick.json"


def load(name: str) -> np.ndarray:
    """The full image as grey float64 in [0, 1]."""
    import skimage

    # binary_blobs draws a new image on every call: fix its generator (reproducible runs)
    img = skimage.data.binary_blobs(rng=0) if name == "binary_blobs" else getattr(
        skimage.data, name)()
    if img.ndim == 3:
        if img.shape[-1] == 4:
            img = skimage.color.rgba2rgb(img)
        img = skimage.color.rgb2gray(img)
    else:
        img = skimage.img_as_float(img)
    return np.asarray(img, dtype=np.float64)


def small(img: np.ndarray, size: int, protocol: str) -> np.ndarray:
    """``size x size``: the resized image, or its centre crop (reflect-padded if smaller)."""
    if protocol == "resize":
        from skimage.transform import resize

        out = resize(img, (size, size), anti_aliasing=True)
    else:
        h, w = img.shape
        out = np.pad(img, ((0, max(0, size - h)), (0, max(0, size - w))), mode="reflect")
        i, j = (out.shape[0] - size) // 2, (out.shape[1] - size) // 2
        out = out[i : i + size, j : j + size]
    return np.ascontiguousarray(out, dtype=np.float64)


def run_case(clean: np.ndarray, sigma: float, seed: int, denoise: bool) -> dict:
    from skimage.metrics import peak_signal_noise_ratio

    noisy = clean + sigma * np.random.default_rng(seed).standard_normal(clean.shape)
    rec: dict = {}
    for method in METHODS:
        start = time.perf_counter()
        rec[method] = float(estimate_sigma(noisy, method=method))
        rec[f"time_{method}"] = time.perf_counter() - start
    if denoise:
        start = time.perf_counter()
        try:
            out = bayes_restore.denoise(noisy)
            rec["psnr_out"] = float(peak_signal_noise_ratio(clean, out, data_range=1))
        except ValueError as err:  # e.g. an estimated sigma of 0
            rec["psnr_out"], rec["denoise_error"] = None, str(err)
        rec["time_denoise"] = time.perf_counter() - start
        rec["psnr_in"] = float(peak_signal_noise_ratio(clean, noisy, data_range=1))
    return rec


def bad(value: float) -> bool:
    """0, NaN or infinite."""
    return not (math.isfinite(value) and value > 0)


def summarise(records: list[dict]) -> list[dict]:
    """One row per protocol, size and noise level."""
    rows = []
    keys = dict.fromkeys((r["protocol"], r["size"], r["sigma"]) for r in records)
    for protocol, size, sigma in keys:
        recs = [r for r in records
                if (r["protocol"], r["size"], r["sigma"]) == (protocol, size, sigma)]
        row: dict = {"protocol": protocol, "size": size, "sigma": sigma, "cases": len(recs)}
        for method in METHODS:
            err = np.array([abs(r[method] / sigma - 1) for r in recs])
            row[method] = {"median": float(np.median(err)), "worst": float(err.max()),
                           "over": int((err > TOLERANCE).sum()),
                           "zero": sum(bad(r[method]) for r in recs)}
        if "psnr_in" in recs[0]:
            gain = [(r["psnr_out"] - r["psnr_in"]) if r["psnr_out"] is not None else -math.inf
                    for r in recs]
            row["denoise"] = {"worse": sum(g < 0 for g in gain), "min_gain": float(min(gain)),
                              "median_gain": float(np.median(gain))}
        rows.append(row)
    return rows


def print_table(rows: list[dict]) -> None:
    head = " ".join(f"{m + ' med/worst/>20%/0':>26s}" for m in METHODS)
    print(f"\n{'protocol':8s} {'size':>4s} {'sigma':>5s} {head} {'denoise worse/min dB':>21s}")
    for row in rows:
        cells = " ".join(
            f"{100 * row[m]['median']:7.1f}% {100 * row[m]['worst']:7.1f}% "
            f"{row[m]['over']:4d} {row[m]['zero']:3d}" for m in METHODS)
        den = (f"{row['denoise']['worse']:8d} {row['denoise']['min_gain']:+8.2f}"
               if "denoise" in row else "")
        print(f"{row['protocol']:8s} {row['size']:4d} {row['sigma']:5.2f} {cells} {den:>21s}")


def totals(records: list[dict]) -> dict:
    """Per protocol: misses and zeros of the default, split at sigma = 0.05; denoising."""
    out = {}
    for protocol in dict.fromkeys(r["protocol"] for r in records):
        recs = [r for r in records if r["protocol"] == protocol]
        entry: dict = {"cases": len(recs)}
        for method in METHODS:
            err = [(r["sigma"], abs(r[method] / r["sigma"] - 1)) for r in recs]
            entry[method] = {
                "zero": sum(bad(r[method]) for r in recs),
                "over_low": sum(e > TOLERANCE for s, e in err if s < 0.05),
                "over_high": sum(e > TOLERANCE for s, e in err if s >= 0.05),
                "worst_high": max(e for s, e in err if s >= 0.05),
            }
        if "psnr_in" in recs[0]:
            gain = [(r["psnr_out"] - r["psnr_in"]) if r["psnr_out"] is not None else -math.inf
                    for r in recs]
            entry["denoise"] = {
                "worse": sum(g < 0 for g in gain), "failed": sum(g == -math.inf for g in gain),
                "min_gain": float(min(gain)), "median_gain": float(np.median(gain)),
                "seconds": float(sum(r["time_denoise"] for r in recs)),
            }
        out[protocol] = entry
    return out


def markdown(path: Path) -> None:
    """Print the sweep tables of ``docs/hyperparameters.md`` from a results file."""
    res = json.loads(path.read_text())
    for protocol in dict.fromkeys(r["protocol"] for r in res["summary"]):
        rows = [r for r in res["summary"] if r["protocol"] == protocol]
        print(f"\n{protocol}: default (`auto`) median / worst relative error, cases over "
              f"{100 * TOLERANCE:.0f} % (of {rows[0]['cases']}), estimates 0 / NaN / inf; "
              "`blocks` worst; denoising: cases worse than the input, smallest gain\n")
        print("| size | sigma | median | worst | > 20 % | 0 | blocks worst | denoise worse | "
              "min gain |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            a = r["auto"]
            den = r.get("denoise", {"worse": "", "min_gain": math.nan})
            print(f"| {r['size']} | {r['sigma']:g} | {100 * a['median']:.1f} % | "
                  f"{100 * a['worst']:.1f} % | {a['over']} | {a['zero']} | "
                  f"{100 * r['blocks']['worst']:.1f} % | {den['worse']} | "
                  f"{den['min_gain']:+.2f} dB |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="5 images, seed 0, the resize protocol (smoke test)")
    parser.add_argument("--protocol", choices=(*PROTOCOLS, "both"), default="both")
    parser.add_argument("--no-denoise", action="store_true", help="noise estimates only")
    parser.add_argument("--markdown", action="store_true",
                        help="print the documentation tables from the results file")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    out_path = OUT_QUICK if args.quick else OUT
    if args.markdown:
        markdown(out_path)
        return
    torch.set_num_threads(args.threads)
    images = QUICK_IMAGES if args.quick else IMAGES
    seeds = SEEDS[:1] if args.quick else SEEDS
    protocols = PROTOCOLS if args.protocol == "both" else (args.protocol,)
    if args.quick and args.protocol == "both":
        protocols = ("resize",)
    denoise = not args.no_denoise

    records = []
    start = time.perf_counter()
    for protocol in protocols:
        for name in images:
            full = load(name)
            for size in SIZES:
                clean = small(full, size, protocol)
                for sigma in SIGMAS:
                    for seed in seeds:
                        rec = {"protocol": protocol, "image": name, "size": size,
                               "sigma": sigma, "seed": seed}
                        rec.update(run_case(clean, sigma, seed, denoise))
                        records.append(rec)
            print(f"{protocol:6s} {name:21s} done, {time.perf_counter() - start:6.0f} s",
                  flush=True)
    rows = summarise(records)
    print_table(rows)
    tot = totals(records)
    for protocol, entry in tot.items():
        a = entry["auto"]
        line = (f"{protocol}: default 0/NaN/inf {a['zero']}, > 20 % at sigma < 0.05: "
                f"{a['over_low']}, at sigma >= 0.05: {a['over_high']} "
                f"(worst {100 * a['worst_high']:.1f} %)")
        if "denoise" in entry:
            d = entry["denoise"]
            line += (f"; denoise worse than input: {d['worse']} (failed {d['failed']}), "
                     f"smallest gain {d['min_gain']:+.2f} dB, median {d['median_gain']:+.2f} dB")
        print(line)
    command = "python benchmarks/sigma_sweep.py" + (" --quick" if args.quick else "") + (
        f" --protocol {args.protocol}" if args.protocol != "both" else "") + (
        " --no-denoise" if args.no_denoise else "")
    result = {
        "command": command, "images": list(images), "sizes": list(SIZES),
        "sigmas": list(SIGMAS), "seeds": list(seeds), "protocols": list(protocols),
        "tolerance": TOLERANCE, "seconds": time.perf_counter() - start,
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "threads": args.threads},
        "totals": tot, "summary": rows, "records": records,
    }
    write(out_path, result, merge=not args.quick and args.protocol != "both")
    print(f"wrote {out_path}")


def write(path: Path, result: dict, merge: bool) -> None:
    """Write ``result``; with ``merge``, keep the other protocols' results already in ``path``.

    So ``--protocol resize`` and ``--protocol crop`` can run one after the other (or at the
    same time: the file is read again just before writing).
    """
    if merge and path.exists():
        old = json.loads(path.read_text())
        keep = [p for p in old.get("protocols", []) if p not in result["protocols"]]
        if keep:
            result["runs"] = [r for r in old.get("runs", [old]) if r.get("command")
                              and not set(r.get("protocols", [])) <= set(result["protocols"])]
            result["runs"] = [{k: r[k] for k in ("command", "protocols", "seconds")}
                              for r in result["runs"]]
            result["runs"].append({k: result[k] for k in ("command", "protocols", "seconds")})
            result["protocols"] = keep + result["protocols"]
            result["totals"] = {**{p: old["totals"][p] for p in keep}, **result["totals"]}
            result["summary"] = [r for r in old["summary"] if r["protocol"] in keep] + result[
                "summary"]
            result["records"] = [r for r in old["records"] if r["protocol"] in keep] + result[
                "records"]
            result["command"] = " && ".join(r["command"] for r in result["runs"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
