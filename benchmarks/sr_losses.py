"""Super-resolution losses at work: L1, L2, cross-entropy (CS) and frequency-split (FCS) networks
against bicubic and TV-MAP, with the calibration of the CE heads' predictive intervals.

Run from the repository root::

    python benchmarks/sr_losses.py            # x2 and x4, 4 test images 256x256
    python benchmarks/sr_losses.py --quick    # a smoke test (40 steps, 2 images 128x128)

For each factor (2, 4) one :class:`~bayes_restore.learning.SRNet` per loss is trained
(:func:`~bayes_restore.learning.train`: the same seed, hence the same patches, for every
loss; Adam, cosine-decayed learning rate; 48x48 high-resolution patches of the training
images of :data:`~bayes_restore.learning.TRAIN_IMAGES`, low resolution by the package's
``Downsample(factor)`` (box), Gaussian noise of std ``SIGMA = 0.01``, flips and
rotations). Then, on centre crops of the held-out :data:`~bayes_restore.learning.TEST_IMAGES`
(``y = Downsample(f) x + noise``, seeded):

- ``bicubic``: ``skimage.transform.resize(y, order=3, mode="edge", anti_aliasing=False)``,
  as ``benchmarks/superres.py``;
- ``tv``: TV-MAP with the operator, ``tv_map_pdhg(y, 2 w, Downsample(f), tol=1e-4)``, at
  ``benchmarks/superres.py``'s fixed rule (its camera oracle weight: ``w = 0.0012`` at
  x2, ``0.0006`` at x4);
- ``l1``, ``l2``: the regression networks' output; ``cs``, ``fcs``: the predictive mean of
  the classification networks (and, as ``cs_mode`` / ``fcs_mode``, the most probable
  class).

Scores on the crops with ``factor`` border pixels shaved, images clipped to [0, 1]:
PSNR, SSIM (``skimage.metrics.structural_similarity``, ``data_range=1``) and GMSD
(gradient magnitude similarity deviation, Xue et al. 2014; lower is better; a perceptual
score that needs no learned weights; LPIPS, the paper's perceptual score, needs network
weights from the internet, which this benchmark does not fetch). For CS and FCS: the
fraction of true high-resolution pixels inside the 50 % and 90 % predictive intervals
(from the softmax), the mean std and Spearman's rank correlation of the std with the
absolute error of the predictive mean (``scipy.stats.spearmanr`` over all pixels: is the
per-pixel uncertainty informative?).

Results: ``benchmarks/results/sr_losses.json`` (with a checksum of each trained
network's weights: a rerun with the same seed and ``--threads`` reproduces them) and the
figure ``docs/_static/sr_losses.png``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bayes_restore.infer.tv import tv_map_pdhg
from bayes_restore.learning import (
    HEADS,
    TEST_IMAGES,
    TRAIN_IMAGES,
    PatchSampler,
    SRNet,
    degrade,
    load_image,
    predict,
    train,
)
from bayes_restore.operators import Downsample

SIGMA = 0.01
FACTORS = (2, 4)
#: benchmarks/superres.py's fixed rule: the camera image's oracle TV weight per factor
TV_WEIGHT = {2: 0.0012, 4: 0.0006}
ROOT = Path(__file__).resolve().parent


def gmsd(x: np.ndarray, ref: np.ndarray, c: float = 170 / 255**2) -> float:
    """Gradient magnitude similarity deviation (Xue, Zhang, Mou, Bovik, IEEE TIP 2014).

    As the authors' MATLAB code: 2x2 mean and decimation by 2, Prewitt gradients
    (``conv2(..., 'same')``), similarity ``(2 m_x m_r + c) / (m_x^2 + m_r^2 + c)``, its std.
    ``c = 170`` for [0, 255] images, ``170 / 255^2`` for [0, 1].
    """
    from scipy.signal import convolve2d

    def grad_mag(img: np.ndarray) -> np.ndarray:
        img = convolve2d(img, np.full((2, 2), 0.25), mode="same")[::2, ::2]
        dx = np.array([[1, 0, -1]] * 3) / 3.0
        gx = convolve2d(img, dx, mode="same")
        gy = convolve2d(img, dx.T, mode="same")
        return np.hypot(gx, gy)

    mx, mr = grad_mag(x), grad_mag(ref)
    return float(np.std((2 * mx * mr + c) / (mx**2 + mr**2 + c), ddof=1))


def scores(x: np.ndarray, clean: np.ndarray, shave: int) -> dict:
    from skimage.metrics import structural_similarity

    x = np.clip(np.asarray(x, dtype=np.float64), 0, 1)[shave:-shave, shave:-shave]
    ref = clean[shave:-shave, shave:-shave]
    return {"psnr": float(10 * np.log10(1 / np.mean((x - ref) ** 2))),
            "ssim": float(structural_similarity(x, ref, data_range=1.0)),
            "gmsd": gmsd(x, ref)}


def checksum(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, value in model.state_dict().items():
        h.update(name.encode())
        h.update(value.detach().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (``scipy.stats.spearmanr``, ties averaged)."""
    from scipy.stats import spearmanr

    return float(spearmanr(np.ravel(a), np.ravel(b)).statistic)


def low_pass_check(model: SRNet, y: np.ndarray, clean: np.ndarray, post) -> dict:
    """Where the FCS intervals lose coverage: the low-pass output ``y_L`` is a point.

    ``coverage_90_given_low``: how often the 90 % interval of the high-pass distribution
    alone holds the true high-pass ``g(t) = t - f(t)`` (the coverage the intervals would
    have if ``y_L`` were exactly ``f(t)``); ``low_rms_error``: the rms of ``y_L - f(t)``,
    against ``rms_std``, the rms predictive std.
    """
    from bayes_restore.likelihoods import gaussian_low_pass

    with torch.no_grad():
        lr = torch.from_numpy(y.astype(np.float32))[None, None]
        low = model.low(model.hr_maps(lr))[0, 0].double().numpy()
    t = torch.from_numpy(clean)
    f_t = gaussian_low_pass(model.cutoff_sigma).forward(t).numpy()
    lo, hi = post.interval(0.9)
    g_t = clean - f_t
    inside = (g_t >= lo - low) & (g_t <= hi - low)
    return {"coverage_90_given_low": float(inside.mean()),
            "low_rms_error": float(np.sqrt(np.mean((low - f_t) ** 2))),
            "rms_std": float(np.sqrt(np.mean(post.std**2)))}


def train_models(factor: int, sampler: PatchSampler, args, ckpt_dir: Path) -> tuple[dict, dict]:
    models, info = {}, {}
    for head in HEADS:
        model = SRNet(factor, head, seed=args.seed)
        res = train(model, sampler, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                    seed=args.seed, checkpoint=ckpt_dir / f"x{factor}_{head}.pt",
                    progress=not args.no_progress, num_threads=args.threads)
        tail = res.losses[-max(1, len(res.losses) // 10):]
        info[head] = {"parameters": model.num_parameters, "steps": res.step,
                      "train_time_s": res.total_time, "resumed_from": res.resumed_from,
                      "first_loss": res.losses[0],
                      "final_loss_mean_last10pct": float(np.mean(tail)),
                      "checksum": checksum(model)}
        print(f"  x{factor} {head:>3}: {model.num_parameters} parameters, {res.step} steps, "
              f"loss {res.losses[0]:.4g} -> {np.mean(tail):.4g}, {res.total_time:.0f} s",
              flush=True)
        models[head] = model
    return models, info


def evaluate(factor: int, models: dict, images: dict, args) -> tuple[dict, dict]:
    from skimage.transform import resize

    op = Downsample(factor)
    rows: dict = {}
    examples: dict = {}
    for i, (name, clean) in enumerate(images.items()):
        g = torch.Generator().manual_seed(1000 * factor + i)
        y = degrade(clean, factor, "box", sigma=SIGMA, generator=g)
        out = {"bicubic": resize(y, clean.shape, order=3, mode="edge", anti_aliasing=False)}
        t0 = time.perf_counter()
        x_tv, _ = tv_map_pdhg(torch.from_numpy(y), 2 * TV_WEIGHT[factor], op, tol=1e-4,
                              max_iter=50000)
        out["tv"] = x_tv.numpy()
        times = {"tv": time.perf_counter() - t0}
        calib = {}
        for head, model in models.items():
            t0 = time.perf_counter()
            post = predict(model, y.astype(np.float32), probs=(0.5, 0.9),
                           num_threads=args.threads)
            times[head] = time.perf_counter() - t0
            out[head] = post.point.astype(np.float64)
            if post.std is not None:
                out[f"{head}_mode"] = post.map.astype(np.float64)
                err = np.abs(post.mean - clean)
                calib[head] = {
                    "coverage_50": post.coverage(clean, 0.5),
                    "coverage_90": post.coverage(clean, 0.9),
                    "mean_std": float(post.std.mean()),
                    "rms_error": float(np.sqrt(np.mean(err**2))),
                    "mean_width_90": float(np.mean(np.subtract(*post.interval(0.9)[::-1]))),
                    "spearman_std_abs_error": spearman(post.std.ravel(), err.ravel()),
                }
                if head == "fcs":
                    calib[head].update(low_pass_check(model, y, clean, post))
                examples.setdefault(name, {})[f"{head}_std"] = post.std
        rows[name] = {"scores": {k: scores(v, clean, factor) for k, v in out.items()},
                      "calibration": calib, "time_s": times}
        examples.setdefault(name, {}).update(out)
        s = rows[name]["scores"]
        print(f"  x{factor} {name:>8}: " + ", ".join(
            f"{k} {s[k]['psnr']:.2f}" for k in ("bicubic", "tv", *models)) + " dB | cov90, rho " +
            ", ".join(f"{h} {c['coverage_90']:.3f}, {c['spearman_std_abs_error']:.3f}"
                      for h, c in calib.items()), flush=True)
    return rows, examples


def summarise(rows: dict) -> dict:
    methods = next(iter(rows.values()))["scores"].keys()
    summary = {m: {k: float(np.mean([r["scores"][m][k] for r in rows.values()]))
                   for k in ("psnr", "ssim", "gmsd")} for m in methods}
    heads = next(iter(rows.values()))["calibration"].keys()
    for h in heads:
        for k in next(iter(rows.values()))["calibration"][h]:
            summary[h][k] = float(np.mean([r["calibration"][h][k] for r in rows.values()]))
    return summary


def figure(examples: dict, clean: np.ndarray, factor: int, path: Path, box) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    top, left, size = box
    crop = lambda a: a[top : top + size, left : left + size]  # noqa: E731
    panels = [("HR", clean), ("bicubic", examples["bicubic"]), ("TV-MAP", examples["tv"]),
              ("L1", examples["l1"]), ("L2", examples["l2"]),
              ("CS (mean)", examples["cs"]), ("FCS (mean)", examples["fcs"]),
              ("CS std", examples["cs_std"]), ("FCS std", examples["fcs_std"]),
              ("|CS error|", np.abs(examples["cs"] - clean))]
    fig, axes = plt.subplots(2, 5, figsize=(11, 4.8))
    vmax = float(np.percentile(crop(examples["cs_std"]), 99))
    for ax, (title, img) in zip(axes.ravel(), panels, strict=True):
        if "std" in title or "error" in title:
            ax.imshow(crop(img), cmap="magma", vmin=0, vmax=vmax)
        else:
            ax.imshow(np.clip(crop(img), 0, 1), cmap="gray", vmin=0, vmax=1)
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
    fig.suptitle(f"x{factor}: networks trained with each loss; std of the CE heads' "
                 f"predictive distribution (same colour scale as the error)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=72)
    plt.close(fig)


def table(results: dict) -> str:
    lines = ["| factor | method | PSNR (dB) | SSIM | GMSD | 50 % coverage | 90 % coverage | "
             "mean std | Spearman(std, abs error) |", "|---|---|---|---|---|---|---|---|---|"]
    for factor, res in results["factors"].items():
        for m, s in res["summary"].items():
            cov = (f"{s['coverage_50']:.3f} | {s['coverage_90']:.3f} | {s['mean_std']:.4f} | "
                   f"{s['spearman_std_abs_error']:.3f}" if "coverage_90" in s else "| | |")
            lines.append(f"| x{factor} | {m} | {s['psnr']:.2f} | {s['ssim']:.4f} | "
                         f"{s['gmsd']:.4f} | {cov} |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="40 steps, 2 test images 128x128")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default 400)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--size", type=int, default=256, help="test crop side")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--checkpoint-dir", default=None,
                        help="keep the trained networks here (a rerun resumes / reuses them)")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--out", default=None,
                        help="default results/sr_losses.json (--quick: sr_losses_quick.json)")
    parser.add_argument("--figure", default=str(ROOT.parent / "docs" / "_static" / "sr_losses.png"))
    args = parser.parse_args(argv)
    if args.steps is None:
        args.steps = 40 if args.quick else 400
    if args.out is None:
        args.out = str(ROOT / "results" / f"sr_losses{'_quick' if args.quick else ''}.json")
    size = 128 if args.quick else args.size
    test_names = TEST_IMAGES[:2] if args.quick else TEST_IMAGES
    t_start = time.perf_counter()
    train_images = [load_image(n) for n in TRAIN_IMAGES]
    test_images = {n: load_image(n, size=size) for n in test_names}
    results: dict = {
        "config": {"sigma": SIGMA, "steps": args.steps, "batch_size": args.batch_size,
                   "patch_size": 48, "lr": args.lr, "seed": args.seed, "threads": args.threads,
                   "degradation": "box (Downsample)", "test_size": size,
                   "train_images": TRAIN_IMAGES, "test_images": test_names,
                   "tv_weight": TV_WEIGHT, "quick": args.quick,
                   "machine": platform.platform(), "torch": torch.__version__},
        "factors": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        ckpt_dir = Path(args.checkpoint_dir or tmp)
        for factor in FACTORS:
            sampler = PatchSampler(train_images, factor, "box", patch_size=48, sigma=SIGMA)
            models, info = train_models(factor, sampler, args, ckpt_dir)
            rows, examples = evaluate(factor, models, test_images, args)
            results["factors"][str(factor)] = {"training": info, "images": rows,
                                               "summary": summarise(rows)}
            if factor == 4 and not args.quick and "camera" in examples:
                figure(examples["camera"], test_images["camera"], factor, Path(args.figure),
                       box=(0, 80, 112))
    results["total_time_s"] = time.perf_counter() - t_start
    print()
    print(table(results))
    print(f"\ntotal {results['total_time_s']:.0f} s")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
