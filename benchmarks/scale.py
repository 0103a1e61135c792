"""Scale: in-memory vs tiled vs Dask TV MAP from 1 to 64 megapixels; the tiling error.

Run from the repository root::

    python benchmarks/scale.py              # about 10 minutes on 2 cores
    python benchmarks/scale.py --quick      # 1 and 4 MP, no 64 MP (a smoke test)

The images are mosaics of scikit-image's grey 512 x 512 images (camera, moon, brick,
grass, gravel, astronaut, immunohistochemistry: randomly chosen, flipped and
transposed, seeded) with Gaussian noise ``sigma = 0.1``, float32; TV MAP at energy weight
``lambda = 0.16`` (scikit-image's ``w = 0.08``) to the default certified relative gap 1e-4.
Each configuration runs in a fresh subprocess (``--repeats`` of them, default 3: the median
time is reported) so that its peak resident set (``VmHWM``, reset through
``/proc/self/clear_refs`` after the input is loaded) is its own:

- ``memory``: :func:`bayes_restore.restore` on the whole image (torch on 2 threads);
- ``tiled``: :func:`bayes_restore.restore_tiled` (tiles 1024, overlap 32, torch on 2
  threads);
- ``dask``: :func:`bayes_restore.distributed.restore_dask` on a ``LocalCluster`` of 2
  worker processes with one thread each (``threads=1``), the input read from a zarr
  store (chunks 1024 x 1024) and the result written to another: the driver's peak and
  each worker's peak resident set are reported (and the workers' peaks beyond their
  state after warm-up); at the largest size also with chunks of 512 and 2048
  (``dask:512``, ``dask:2048``), to show the worker memory following the chunk size.

The 64 MP image (8192 x 8192) is written to zarr chunk by chunk, so no process ever
holds it whole except the ``memory`` run. Also (float64, one thread): the largest
difference between the tiled / Dask results and the whole-image MAP at 2048 x 2048, and
of each from the exact MAP (certified gap 1e-9), at the default tolerance 1e-4, at 1e-6
and at 1e-8 (which isolates the tiling error from the solver's); and how the tiling error
decays with the overlap (TV at sigma 0.05, 0.1, 0.2 and the Gaussian-gradient prior).
Results go to ``benchmarks/results/scale.json``; ``--markdown`` prints the tables of
``docs/scale.md`` from it.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SIGMA = 0.1
WEIGHT = 0.16  # the energy weight lambda: scikit-image's weight w = lambda / 2 = 0.08
TILE = 1024
OVERLAP = 32
NAMES = ("camera", "moon", "brick", "grass", "gravel", "astronaut", "immunohistochemistry")


@functools.lru_cache(maxsize=1)
def _sources() -> list[np.ndarray]:
    import skimage

    out = []
    for name in NAMES:
        img = skimage.img_as_float32(getattr(skimage.data, name)())
        if img.ndim == 3:
            img = skimage.color.rgb2gray(img).astype(np.float32)
        out.append(img[:512, :512])
    return out


def mosaic_block(rows: slice, cols: slice, seed: int = 0, sigma: float = SIGMA) -> np.ndarray:
    """Rows and columns of the noisy mosaic (512-pixel cells chosen from the seed)."""
    sources = _sources()
    out = np.empty((rows.stop - rows.start, cols.stop - cols.start), np.float32)
    for r in range(rows.start // 512 * 512, rows.stop, 512):
        for c in range(cols.start // 512 * 512, cols.stop, 512):
            rng = np.random.default_rng([seed, r // 512, c // 512])
            cell = sources[rng.integers(len(sources))]
            if rng.random() < 0.5:
                cell = cell[::-1]
            if rng.random() < 0.5:
                cell = cell.T
            cell = cell + sigma * rng.standard_normal(cell.shape, dtype=np.float32)
            r0, r1 = max(r, rows.start), min(r + 512, rows.stop)
            c0, c1 = max(c, cols.start), min(c + 512, cols.stop)
            out[r0 - rows.start:r1 - rows.start, c0 - cols.start:c1 - cols.start] = \
                cell[r0 - r:r1 - r, c0 - c:c1 - c]
    return out


def write_zarr(path: str, side: int) -> None:
    import zarr

    z = zarr.open(path, mode="w", shape=(side, side), chunks=(TILE, TILE), dtype="f4")
    for r in range(0, side, TILE):
        for c in range(0, side, TILE):
            z[r:r + TILE, c:c + TILE] = mosaic_block(slice(r, min(r + TILE, side)),
                                                     slice(c, min(c + TILE, side)))


# -- one configuration, in a fresh process ------------------------------------------------

def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def _reset_peak() -> int:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status("VmRSS:")


def _worker_peak() -> int:
    return _status("VmHWM:")


def _worker_reset() -> int:
    return _reset_peak()


def run_one(kind: str, store: str, out_store: str) -> dict:
    import torch
    import zarr

    import bayes_restore
    from bayes_restore.distributed import restore_dask

    torch.set_num_threads(2)
    result: dict = {"kind": kind}
    if kind in ("memory", "tiled"):
        y = np.asarray(zarr.open(store, mode="r")[:])
        # warm-up at a megapixel: the code paths of the timed call (threads, strips)
        bayes_restore.restore(y[:1024, :1024], sigma=SIGMA, weight=WEIGHT)
        base = _reset_peak()
        start = time.perf_counter()
        if kind == "memory":
            post = bayes_restore.restore(y, sigma=SIGMA, weight=WEIGHT)
        else:
            post = bayes_restore.restore_tiled(y, sigma=SIGMA, weight=WEIGHT, tile=TILE,
                                               overlap=OVERLAP)
        result["time"] = time.perf_counter() - start
        result["peak_beyond_input"] = _status("VmHWM:") - base
        result["iterations"] = post.info.iterations
        result["gap"] = post.info.gap
        np.save(out_store, post.map)
        return result
    import dask.array as da
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, memory_limit="8GiB") as cluster, \
            Client(cluster) as client:
        client.run(lambda: __import__("bayes_restore").restore(
            np.zeros((64, 64), np.float32), sigma=SIGMA, weight=WEIGHT))  # warm-up
        worker_base = client.run(_worker_reset)
        base = _reset_peak()
        start = time.perf_counter()
        y = da.from_zarr(store)
        tile = int(kind.split(":")[1]) if ":" in kind else None  # rechunk the zarr chunks
        x = restore_dask(y, sigma=SIGMA, weight=WEIGHT, overlap=OVERLAP, threads=1, tile=tile)
        x.to_zarr(out_store, overwrite=True)
        result["time"] = time.perf_counter() - start
        result["driver_peak"] = _status("VmHWM:")
        result["driver_peak_beyond_start"] = _status("VmHWM:") - base
        peaks = client.run(_worker_peak)
        result["worker_peaks"] = sorted(peaks.values())
        result["worker_peaks_beyond_start"] = sorted(peaks[w] - worker_base[w] for w in peaks)
        result["chunk"] = tile or TILE
        result["chunks"] = int(np.prod(x.numblocks))
    return result


# -- the driver ------------------------------------------------------------------------------

def child(kind: str, store: str, out: str) -> dict:
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import json, "
            f"scale; print(json.dumps(scale.run_one({kind!r}, {store!r}, {out!r})))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _load(path: str) -> np.ndarray:
    if path.endswith(".npy"):
        return np.load(path)
    import zarr

    return np.asarray(zarr.open(path, mode="r")[:])


def sizes_table(sides: list[int], workdir: str, kinds_for, repeats: int) -> list[dict]:
    rows = []
    for side in sides:
        store = os.path.join(workdir, f"in_{side}.zarr")
        write_zarr(store, side)
        mp = side * side / 1e6
        outs = {}
        for kind in kinds_for(side):
            dask_kind = kind.startswith("dask")
            out = os.path.join(workdir, f"out_{side}_{kind.replace(':', '_')}"
                               + (".zarr" if dask_kind else ".npy"))
            runs = [child(kind, store, out) for _ in range(repeats)]
            r = dict(runs[-1])
            r["times"] = [run["time"] for run in runs]
            r["time"] = float(np.median(r["times"]))
            r.update(side=side, megapixels=mp, us_per_pixel=r["time"] / (side * side) * 1e6)
            outs[kind] = out
            rows.append(r)
            peak = r.get("peak_beyond_input", r.get("driver_peak"))
            its = f"{r['iterations']:4d} it" if "iterations" in r else f"{r['chunks']:3d} ch"
            print(f"{side:>6} {mp:6.1f} MP {kind:>9}: {r['time']:8.2f} s {its} "
                  f"{r['us_per_pixel']:6.3f} us/px  peak {peak / 2**20:8.1f} MiB"
                  + (f"  workers {[round(p / 2**20) for p in r['worker_peaks']]} MiB"
                     if dask_kind else ""), flush=True)
        if "memory" in outs:
            ref = _load(outs["memory"])
            for r in rows[-len(outs):]:
                if r["kind"] != "memory":
                    r["max_abs_diff_vs_memory"] = float(np.abs(_load(outs[r["kind"]]) - ref).max())
        for path in outs.values():
            subprocess.run(["rm", "-rf", path], check=True)
        subprocess.run(["rm", "-rf", store], check=True)
    return rows


def tiling_error(side: int = 2048) -> dict:
    """Largest |tiled - whole| and |dask - whole| at 2048 x 2048 for several tolerances, and
    how far each is from the exact MAP (a whole-image solve to a certified gap of 1e-9)."""
    import dask
    import dask.array as da
    import torch

    import bayes_restore
    from bayes_restore.distributed import restore_dask

    torch.set_num_threads(1)  # not timed: one thread is immune to other processes' load
    # float64: a float32 solve cannot certify a relative gap of 1e-8
    y = mosaic_block(slice(0, side), slice(0, side)).astype(np.float64)
    kwargs = dict(sigma=SIGMA, weight=WEIGHT, max_iter=100000)
    exact = bayes_restore.restore(y, tol=1e-9, **kwargs).map
    out = {}
    for tol in (1e-4, 1e-6, 1e-8):
        whole = bayes_restore.restore(y, tol=tol, **kwargs).map
        tiled = bayes_restore.restore_tiled(y, tol=tol, **kwargs).map
        with dask.config.set(scheduler="threads"):
            dk = restore_dask(da.from_array(y, chunks=TILE), tol=tol, **kwargs).compute()
        row = {"tiled": float(np.abs(tiled - whole).max()),
               "dask": float(np.abs(dk - whole).max()),
               "whole_vs_exact": float(np.abs(whole - exact).max()),
               "tiled_vs_exact": float(np.abs(tiled - exact).max())}
        out[f"tol={tol:g}"] = row
        print(f"2048^2 tol {tol:g}: " + ", ".join(f"{k} {v:.2e}" for k, v in row.items()),
              flush=True)
    return out


def overlap_decay() -> list[dict]:
    """Error of a tiled MAP against the whole-image MAP as the overlap grows (converged)."""
    import torch

    import bayes_restore

    torch.set_num_threads(1)
    rows = []
    # lambda = 1.6 sigma: scikit-image's w = 0.8 sigma, the middle of the PSNR-best range
    cases = [("tv", s, dict(weight=1.6 * s)) for s in (0.05, 0.1, 0.2)]
    cases += [("gaussian", 0.1, dict(scale=b)) for b in (0.05, 0.02, 0.01)]
    for prior, sigma, kw in cases:
        y = mosaic_block(slice(0, 512), slice(0, 512), sigma=sigma).astype(np.float64)
        whole = bayes_restore.restore(y, prior, sigma=sigma, tol=1e-9, max_iter=100000,
                                      **kw).map
        row = {"prior": prior, "sigma": sigma, **kw}
        for ov in (0, 4, 8, 16, 24, 32, 48, 64, 96):
            t = bayes_restore.restore_tiled(y, prior, sigma=sigma, tile=128, overlap=ov,
                                            tol=1e-9, max_iter=100000, **kw).map
            row[f"overlap={ov}"] = float(np.abs(t - whole).max())
        rows.append(row)
        print(" ".join(f"{k}={v:.1e}" if isinstance(v, float) and k.startswith("overlap")
                       else f"{k}={v}" for k, v in row.items()), flush=True)
    return rows


def markdown(result: dict) -> str:
    """The tables of ``docs/scale.md`` from a result of this script."""
    lines = ["| size | how | time (s) | us / pixel | iterations or chunks | peak memory (MiB) "
             "| max abs diff vs whole |", "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        if r["kind"].startswith("dask"):
            peak = (f"driver {r['driver_peak'] / 2**20:.0f}; workers "
                    + ", ".join(f"{p / 2**20:.0f}" for p in r["worker_peaks"])
                    + " (beyond start: "
                    + ", ".join(f"{p / 2**20:.0f}" for p in r.get("worker_peaks_beyond_start",
                                                                     []))
                    + ")")
            count = f"{r['chunks']} chunks of {r.get('chunk', TILE)}"
        else:
            peak = f"{r['peak_beyond_input'] / 2**20:.0f} beyond the input"
            count = f"{r['iterations']} it"
        diff = r.get("max_abs_diff_vs_memory")
        lines.append(f"| {r['side']}^2 ({r['megapixels']:.0f} MP) | {r['kind']} | "
                     f"{r['time']:.2f} | {r['us_per_pixel']:.3f} | {count} | {peak} | "
                     f"{'' if diff is None else f'{diff:.1e}'} |")
    out = ["\n".join(lines)]
    if "overlap_decay" in result:
        rows = result["overlap_decay"]
        keys = [k for k in rows[0] if k.startswith("overlap=")]
        head = "| prior | sigma | parameter | " + " | ".join(k.split("=")[1] for k in keys) + " |"
        table = [head, "|" + "---|" * (3 + len(keys))]
        for row in rows:
            par = (f"lambda {row['weight']:.2g}" if "weight" in row
                   else f"b {row['scale']:g}")
            table.append(f"| {row['prior']} | {row['sigma']:g} | {par} | "
                         + " | ".join(f"{row[k]:.1e}" for k in keys) + " |")
        out.append("\n".join(table))
    if "tiling_error_2048" in result:
        table = ["| solver tolerance | tiled - whole | Dask - whole | whole - exact MAP "
                 "| tiled - exact MAP |", "|---|---|---|---|---|"]
        for tol, v in result["tiling_error_2048"].items():
            table.append(f"| {tol.split('=')[1]} | {v['tiled']:.1e} | {v['dask']:.1e} | "
                         f"{v.get('whole_vs_exact', float('nan')):.1e} | "
                         f"{v.get('tiled_vs_exact', float('nan')):.1e} |")
        out.append("\n".join(table))
    return "\n\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 and 4 MP only")
    parser.add_argument("--out", default="benchmarks/results/scale.json")
    parser.add_argument("--repeats", type=int, default=3,
                        help="fresh processes per configuration (median time)")
    parser.add_argument("--markdown", metavar="JSON",
                        help="only print the tables of docs/scale.md from a results file")
    parser.add_argument("--errors-only", nargs="?", const="all",
                        choices=["all", "tiling", "decay"],
                        help="only the tiling-error and/or overlap-decay studies (into --out)")
    parser.add_argument("--skip-errors", action="store_true",
                        help="skip the tiling-error and overlap-decay studies")
    args = parser.parse_args()
    if args.markdown:
        print(markdown(json.loads(Path(args.markdown).read_text())))
        return

    if args.errors_only:
        result = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {}
        if args.errors_only in ("all", "tiling"):
            result["tiling_error_2048"] = tiling_error()
        if args.errors_only in ("all", "decay"):
            result["overlap_decay"] = overlap_decay()
        Path(args.out).write_text(json.dumps(result, indent=2))
        print(f"wrote {args.out}")
        return
    sides = [1024, 2048] if args.quick else [1024, 2048, 4096, 8192]
    with tempfile.TemporaryDirectory() as workdir:
        def kinds(side):  # at the largest size, Dask also with smaller and larger chunks
            extra = ("dask:512", "dask:2048") if side == max(sides) else ()
            return ("memory", "tiled", "dask") + extra

        rows = sizes_table(sides, workdir, kinds, args.repeats)
    result = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "python": platform.python_version()},
        "sigma": SIGMA, "weight": WEIGHT, "tile": TILE, "overlap": OVERLAP,
        "rows": rows, "repeats": args.repeats,
    }
    by = {(r["side"], r["kind"]): r for r in rows}
    small, large = min(sides), max(s for s in sides if s <= 4096)
    result["cost_per_pixel_ratio"] = {
        kind: by[(large, kind)]["us_per_pixel"] / by[(small, kind)]["us_per_pixel"]
        for kind in ("memory", "tiled", "dask")
    }
    print(f"cost per pixel {large * large / 1e6:.0f} MP / {small * small / 1e6:.0f} MP: "
          + ", ".join(f"{k} {v:.2f}x" for k, v in result["cost_per_pixel_ratio"].items()))
    if not args.skip_errors:
        result["tiling_error_2048"] = tiling_error()
        result["overlap_decay"] = overlap_decay()
    elif Path(args.out).exists():  # keep the error studies of an earlier run
        earlier = json.loads(Path(args.out).read_text())
        result.update({k: earlier[k] for k in ("tiling_error_2048", "overlap_decay")
                       if k in earlier})
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
