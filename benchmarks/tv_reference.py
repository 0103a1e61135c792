"""Reference draws of the TV posterior: long SK-ROCK chains run to R-hat <= 1.01, summarised.

The reference against which the approximate engines (variational, short MCMC, MAP) are
judged on the total-variation model ``x ~ TV(b)``, ``y ~ N(A x, sigma^2 I)``:

- cases: fixed crops (64 x 64 and 128 x 128, same centre) of scikit-image sample images
  (``camera``: flat sky and sharp edges; ``astronaut`` grey: face and hair, textured;
  ``brick``: low-contrast texture; ``coins``: flat background and round edges),
  ``sigma`` 0.05 and 0.1, denoising (``A = I``) and a Gaussian blur
  (``Blur(gaussian_psf(9, 1.5))``, reflective boundary, the package's default);
- observation ``y = A x + sigma z`` with ``z`` from ``numpy.random.default_rng(SEED)``;
- prior scale ``b``: the package's parameter-free TV weight at the known ``sigma``
  (``restore(y, "tv", sigma=sigma, operator=A, method="map").diagnostics["parameters"]
  ["scale"]``), fixed once per case and recorded;
- sampler: SK-ROCK (the kernels of :mod:`bayes_restore.infer.langevin`, the ones
  ``mcmc(..., sampler="skrock")`` runs), ``smoothing`` (Moreau-Yosida ``lambda_MY L_f``)
  and ``step_size`` recorded; for a reflective blur of a symmetric kernel preconditioned as
  ``mcmc``'s default (``preconditioner="auto"``) does, by ``diagonal_metric`` (the diffusion
  ``dx = -M grad U dt + sqrt(2 M) dW``, same target, ``M = 2 / (1 + a^2 / ||A||^2)`` per DCT
  frequency: twice the step where the blur leaves only the prior; ``--preconditioner none``
  for the plain chains). The loop is the benchmark's own rather than ``mcmc``'s because
  ``mcmc`` starts every chain at ``A^T y``, and R-hat needs dispersed starts:
  ``NUM_CHAINS`` chains started at dispersed points (the data,
  the MAP, and both plus ``2 sigma`` white noise), run in blocks and lengthened
  (by half each time) until every pixel has rank-normalised split R-hat <= 1.01 and bulk ESS >= 400
  over the second half of the run (the first half is warm-up), or the case's time cap;
- stored per case in ``results/tv_reference/<case>.npz`` (compressed): ``y``, the clean
  crop ``x``, ``b``, ``sigma``, the operator (``operator`` text and ``psf``), per-pixel
  ``mean`` and ``std`` (float32) and the per-pixel quantiles at ``levels`` (0.01, 0.03,
  ..., 0.99) as float16 offsets from the mean (``quantile_offsets``; their rounding error
  is recorded), the convergence summary and the run's settings; an index in
  ``results/tv_reference.json``.

Cost (one thread, on a machine at load 7-13): a 64 x 64 denoising case converges in
2250-3400 steps of 8 chains, 7-12 min; a 128 x 128 one needs more than the default cap of
18 min there (R-hat 1.010-1.013). With the blur the posterior is wide (the blur leaves the
mid and high frequencies to the prior alone) and the plain chains mixed slowly there: SAPG's
``b`` (``camera64_blur_*``) gave R-hat 1.15-1.27 after 3000 steps, and the oracle weight
(``*_bluroracle_*``, ``*_blur1oracle_*``: ``b`` from the PSNR-best TV MAP weight,
:func:`oracle_scale`, bulk ESS target 1000), about as large as SAPG's (0.25 against 0.28 at
sigma 0.05 on camera 64 x 64; 0.32 against 0.50 at 0.1), R-hat 1.029 and 1.024 after
17083 and 31000 steps (66 and 55 min, load 12-15). Preconditioned (``diagonal_metric``),
the worst pixel's ESS per step about doubled at the same cost per step, and all three
converged in 25624 steps of 8 chains (6 stages a step): ``camera32_bluroracle_s0.1`` R-hat
1.0090, min bulk ESS 1194 in 19 min (load 9-11); ``camera64_bluroracle_s0.05`` 1.0081, 1317
in 42 min (load 9-11, then 4); ``camera64_blur_s0.05`` 1.0098, 1093 in 28 min (load 11,
then 1-4).

Run: ``python benchmarks/tv_reference.py`` (all cases: hours; the cap bounds each),
``--cases camera64_s0.05,...`` to select (``--list`` to list), ``--quick`` (a tiny case,
seconds, written to a temporary folder or ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results"
SEED = 0
NUM_CHAINS = 8
SMOOTHING = 0.01  # lambda_MY * L_f: mcmc's default, the setting compared with NUTS (about 1 %
# on the std; 0.005 costs 7 stages a step instead of 5)
STEP_SIZE = 0.25  # SK-ROCK step in units of 1 / L_f (mcmc's default; std ~2 % low there)
PROX_ITER = 5
RHAT_TARGET = 1.01
ESS_TARGET = 400.0
MAX_KEPT = 1000  # stored draws per chain (whole run): beyond, every other is dropped
LEVELS = np.round(np.arange(0.01, 1.0, 0.02), 2)  # 0.01, 0.03, ..., 0.99 (50 levels)
BLUR_PSF = (9, 1.5)  # gaussian_psf(size, std)

#: image -> (loader, crop centre (row, col), what the crop shows)
IMAGES = {
    "camera": ("camera", (150, 260), "head and coat against the flat sky: flat + sharp edges"),
    "astronaut": ("astronaut", (100, 200), "face and hair (grey): textured, few flat pixels"),
    "brick": ("brick", (256, 256), "brick wall: low-contrast texture"),
    "coins": ("coins", (200, 150), "coins on a flat background: flat + round edges"),
}


def case_list() -> dict[str, dict]:
    """All cases, in the order they are run (64 x 64 and blur first, then 128 x 128)."""
    cases: dict[str, dict] = {}

    def add(image: str, size: int, sigma: float, op: str) -> None:
        name = f"{image}{size}_{'blur_' if op == 'blur' else ''}s{sigma:g}"
        cases[name] = {"image": image, "size": size, "sigma": sigma, "operator": op}

    for image in ("camera", "astronaut", "brick"):
        for sigma in (0.05, 0.1):
            add(image, 64, sigma, "identity")
    for sigma in (0.05, 0.1):
        add("camera", 64, sigma, "blur")
    for image in ("camera", "astronaut", "brick"):
        for sigma in (0.05, 0.1):
            add(image, 128, sigma, "identity")
    for sigma in (0.05, 0.1):
        add("coins", 64, sigma, "identity")
    for sigma in (0.05, 0.1):
        add("camera", 128, sigma, "blur")
    # blur with the oracle weight (the PSNR-best TV MAP weight; see ``oracle_scale``): the
    # posterior a user with a good weight samples. SAPG's ``b`` above is 3-7x larger with
    # the blur, and its chains do not converge.
    for image, size, sigma in (("camera", 64, 0.05), ("coins", 64, 0.05), ("camera", 64, 0.1),
                               ("coins", 64, 0.1), ("camera", 128, 0.05),
                               ("astronaut", 128, 0.1), ("camera", 32, 0.1),
                               ("coins", 32, 0.1)):
        name = f"{image}{size}_bluroracle_s{sigma:g}"
        cases[name] = {"image": image, "size": size, "sigma": sigma, "operator": "blur",
                       "scale_rule": "oracle"}
    # a milder blur (7 x 7, std 1): fewer frequencies left to the prior alone, chains that mix
    for image, size, sigma in (("camera", 64, 0.05), ("coins", 64, 0.1), ("camera", 64, 0.1),
                               ("coins", 64, 0.05), ("camera", 128, 0.05)):
        name = f"{image}{size}_blur1oracle_s{sigma:g}"
        cases[name] = {"image": image, "size": size, "sigma": sigma, "operator": "blur",
                       "psf": [7, 1.0], "scale_rule": "oracle"}
    return cases


#: w / sigma grid of the oracle weight (scikit-image units ``w = lambda / 2``), refined
ORACLE_GRID = tuple(0.05 * 2 ** (k / 2) for k in range(13))  # 0.05 ... 3.2


def oracle_scale(y: np.ndarray, x_true: np.ndarray, sigma: float, operator) -> dict:
    """The PSNR-best TV MAP weight on a log grid of ``w / sigma`` (then a finer one) and its ``b``.

    ``b = scale_from_weight(sigma, 2 w)`` (``lambda = 2 sigma^2 / b``); MAPs by
    ``tv_map_pdhg`` at a relative gap of 1e-4.
    """
    from bayes_restore import scale_from_weight
    from bayes_restore.infer.tv import tv_map_pdhg

    yt = torch.from_numpy(y)

    def score(r: float) -> float:
        x, _ = tv_map_pdhg(yt, 2 * r * sigma, operator, tol=1e-4, max_iter=50000)
        mse = float(np.mean((x.numpy() - x_true) ** 2))
        return -10 * np.log10(mse)

    scores = {r: score(r) for r in ORACLE_GRID}
    grid = sorted(scores)
    i = grid.index(max(scores, key=scores.get))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    for r in np.exp(np.linspace(np.log(lo), np.log(hi), 9)[1:-1]):
        scores[float(r)] = score(float(r))
    best = max(scores, key=scores.get)
    weight = 2 * best * sigma
    return {"b": float(scale_from_weight(sigma, weight)), "weight": weight,
            "weight_method": "oracle", "oracle_psnr": scores[best],
            "oracle_w_over_sigma": best}


def load_crop(image: str, size: int) -> np.ndarray:
    """The fixed ``size x size`` crop of a scikit-image sample image, float64 in [0, 1]."""
    import skimage.data
    from skimage.color import rgb2gray

    loader, (r, c), _ = IMAGES[image]
    im = getattr(skimage.data, loader)()
    im = rgb2gray(im) if im.ndim == 3 else im / 255.0
    h = size // 2
    return np.ascontiguousarray(im[r - h : r + h, c - h : c + h], dtype=np.float64)


def make_operator(op: str, psf: tuple[int, float] = BLUR_PSF):
    """The case's operator (``None`` for denoising) and its description."""
    if op == "identity":
        return None, "identity"
    from bayes_restore.operators import Blur, gaussian_psf

    size, std = psf
    return Blur(gaussian_psf(size, std)), f"Blur(gaussian_psf({size}, {std})), reflect boundary"


def observe(x: np.ndarray, sigma: float, operator) -> np.ndarray:
    """``y = A x + sigma z``, ``z`` from the fixed seed."""
    ax = x if operator is None else operator.forward(torch.from_numpy(x)).numpy()
    z = np.random.default_rng(SEED).standard_normal(ax.shape)
    return ax + sigma * z


def rhat_ess(draws: np.ndarray) -> dict:
    """Per-pixel rank-normalised split R-hat, bulk and tail ESS (ArviZ) of (chain, draw, ...)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import arviz as az

        ds = az.convert_to_dataset(draws.astype(np.float64))
        rhat = np.asarray(az.rhat(ds, method="rank")["x"])
        bulk = np.asarray(az.ess(ds, method="bulk")["x"])
        tail = np.asarray(az.ess(ds, method="tail")["x"])
    return {
        "max_rhat": float(np.nanmax(rhat)),
        "frac_rhat_above": float(np.mean(rhat > RHAT_TARGET)),
        "min_ess_bulk": float(np.nanmin(bulk)),
        "median_ess_bulk": float(np.nanmedian(bulk)),
        "min_ess_tail": float(np.nanmin(tail)),
        "median_ess_tail": float(np.nanmedian(tail)),
    }


def run_case(name: str, spec: dict, *, time_cap: float, first_check: int, thin0: int,
             num_chains: int, out_dir: Path, log, ess_target: float = ESS_TARGET,
             preconditioner: str = "auto", step_size: float = STEP_SIZE) -> dict:
    """Run one case's chains to convergence (or the cap) and store its summaries.

    ``preconditioner``: ``"auto"`` preconditions a reflective symmetric blur by
    ``diagonal_metric`` (the chains of ``mcmc``'s default), ``"none"`` never.
    """
    import bayes_restore
    from bayes_restore.infer.langevin import (
        SmoothedPotential,
        diagonal_metric,
        skrock_schedule,
        skrock_step,
    )
    from bayes_restore.infer.problem import recognise
    from bayes_restore.infer.prox import tv_prox_dual
    from bayes_restore.models import restoration_model
    from bayes_restore.priors import TotalVariation

    start = time.perf_counter()
    sigma = spec["sigma"]
    x_true = load_crop(spec["image"], spec["size"])
    operator, op_text = make_operator(spec["operator"], tuple(spec.get("psf", BLUR_PSF)))
    y = observe(x_true, sigma, operator)
    kw = {} if operator is None else {"operator": operator}
    if spec.get("scale_rule", "auto") == "oracle":
        params = oracle_scale(y, x_true, sigma, operator)
        b = params["b"]
        map_post = bayes_restore.restore(y, "tv", sigma=sigma, scale=b, method="map", **kw)
    else:
        map_post = bayes_restore.restore(y, "tv", sigma=sigma, method="map", **kw)
        params = map_post.diagnostics["parameters"]
        b = float(params["scale"])
    x_map = np.asarray(map_post.point, dtype=np.float64)
    log(f"  {name}: b {b:.4f} ({params.get('weight_method')}), {time.perf_counter() - start:.0f} s")
    t_param = time.perf_counter() - start

    dtype = torch.float32
    yt = torch.as_tensor(y, dtype=dtype)
    shape = tuple(x_true.shape)
    problem = recognise(restoration_model, (yt,),
                        {"prior": TotalVariation(b, shape=shape), "sigma": sigma, **kw})
    if problem is None:
        raise RuntimeError("the TV restoration model was not recognised")
    l_f = problem.operator.norm_bound**2 / problem.sigma.square()
    lambda_my = SMOOTHING / l_f
    metric = (None if preconditioner == "none" or operator is None
              else diagonal_metric(operator, yt))
    if metric is None:
        lip = l_f + 1.0 / lambda_my
    else:  # || M^1/2 (A^T A / sigma^2 + grad^2 g) M^1/2 || <= max(M a^2) L_f + max(M) L_g
        gain, peak, apply_metric, apply_root = metric
        lip = gain * l_f + peak / lambda_my
    ratio = float((lip / l_f).max())
    stages, coef, delta = skrock_schedule(step_size, None, l_f, lip, ratio, lambda_my,
                                          SMOOTHING)
    delta = delta.to(dtype)
    sqrt_2delta = torch.sqrt(2 * delta)
    potential = SmoothedPotential(problem, lambda_my, PROX_ITER)
    gradient = potential.grad  # the fused kernels run the whole step
    if metric is not None:  # dx = -M grad U dt + sqrt(2 M) dW: the same target

        def gradient(v: torch.Tensor) -> torch.Tensor:
            return apply_metric(potential.grad(v))

    # dispersed starts: data (A^T y), MAP, and both plus 2 sigma white noise
    gen = torch.Generator().manual_seed(SEED + 1)
    aty = yt if operator is None else operator.adjoint(yt.to(torch.float64)).to(dtype)
    bases = [aty, torch.as_tensor(x_map, dtype=dtype)]
    starts = []
    for c in range(num_chains):
        base = bases[c % 2]
        if (c // 2) % 2 == 1 or c >= 4:
            base = base + 2 * sigma * torch.randn(shape, generator=gen, dtype=dtype)
        starts.append(base)
    x = torch.stack(starts).contiguous()
    potential.dual = tv_prox_dual(x, potential.prox_weight.to(dtype),
                                  isotropic=problem.isotropic, num_iter=50)

    thin = thin0
    kept = torch.empty((num_chains, MAX_KEPT) + shape, dtype=torch.float32)
    n_kept = 0
    steps = 0
    check_at = first_check
    history = []
    converged = False
    capped = False
    while True:
        with torch.no_grad():
            while steps < check_at:
                z = torch.randn(x.shape, generator=gen, dtype=dtype)
                q = sqrt_2delta * (z if metric is None else apply_root(z))
                x = skrock_step(x, gradient, delta, q, coef, stages)
                steps += 1
                if steps % thin == 0:
                    if n_kept == MAX_KEPT:  # drop every other stored draw, double the thinning
                        half = kept[:, 1::2].clone()
                        kept[:, : half.shape[1]] = half
                        n_kept = half.shape[1]
                        thin *= 2
                        if steps % thin != 0:
                            continue
                    kept[:, n_kept] = x
                    n_kept += 1
                if steps % 50 == 0 and time.perf_counter() - start > time_cap:
                    capped = True
                    break
        if not bool(torch.isfinite(x).all()):
            raise FloatingPointError(f"{name}: the chains diverged")
        second = kept[:, n_kept // 2 : n_kept].numpy()
        diag = rhat_ess(second)
        diag.update(steps=steps, thin=thin, draws_per_chain=int(second.shape[1]),
                    elapsed=round(time.perf_counter() - start, 1))
        history.append(diag)
        log(f"  {name}: {steps} steps, {second.shape[1]} draws/chain, max R-hat "
            f"{diag['max_rhat']:.4f}, min/median bulk ESS {diag['min_ess_bulk']:.0f}/"
            f"{diag['median_ess_bulk']:.0f}, min tail ESS {diag['min_ess_tail']:.0f}, "
            f"{diag['elapsed']:.0f} s")
        if diag["max_rhat"] <= RHAT_TARGET and diag["min_ess_bulk"] >= ess_target:
            converged = True
            break
        if capped or time.perf_counter() - start > time_cap:
            capped = True
            break
        # lengthen by half (the cap stops the chains mid-way when the time is out)
        check_at = int(check_at * 1.5)

    draws = torch.from_numpy(second).reshape((-1,) + shape).to(torch.float64)
    mean = draws.mean(0)
    std = draws.std(0)
    quant = torch.quantile(draws, torch.as_tensor(LEVELS, dtype=torch.float64), dim=0)
    offsets = (quant - mean).to(torch.float16)
    offset_error = float((offsets.to(torch.float64) + mean - quant).abs().max())
    wall = time.perf_counter() - start
    diag = history[-1]
    settings = {
        "sampler": "skrock",
        "smoothing": SMOOTHING,
        "lambda_MY": float(lambda_my),
        "step_size": step_size,
        "delta": float(delta),
        "preconditioner": "none" if metric is None else "diagonal: DCT, 2 / (1 + a^2 / |A|^2)",
        "stages": stages,
        "prox_iter": PROX_ITER,
        "num_chains": num_chains,
        "starts": "A^T y, MAP, A^T y + 2 sigma z, MAP + 2 sigma z (repeating, more noise)",
        "num_steps": steps,
        "warmup_steps": steps // 2,
        "thin": thin,
        "draws_per_chain": int(second.shape[1]),
        "dtype": "float32",
        "seed": SEED,
    }
    summary = {
        "case": name,
        **spec,
        "crop_centre": list(IMAGES[spec["image"]][1]),
        "crop_note": IMAGES[spec["image"]][2],
        "operator_text": op_text,
        "b": b,
        "weight": float(params.get("weight", float("nan"))),
        "weight_method": params.get("weight_method"),
        "scale_rule": spec.get("scale_rule", "auto"),
        **{k: params[k] for k in ("oracle_psnr", "oracle_w_over_sigma") if k in params},
        "ess_target": ess_target,
        "converged": converged,
        "capped": capped,
        **{k: diag[k] for k in ("max_rhat", "frac_rhat_above", "min_ess_bulk",
                                "median_ess_bulk", "min_ess_tail", "median_ess_tail")},
        "settings": settings,
        "history": history,
        "mean_std": float(std.mean()),
        "quantile_offset_error": offset_error,
        "parameter_time": round(t_param, 1),
        "wall_time": round(wall, 1),
        "file": f"tv_reference/{name}.npz" if out_dir.name == "tv_reference" else None,
        "torch_threads": torch.get_num_threads(),
        "load_average": os.getloadavg()[0],
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    psf = np.zeros((0, 0), np.float32)
    if operator is not None:
        from bayes_restore.operators import gaussian_psf

        psf = gaussian_psf(*spec.get("psf", BLUR_PSF)).numpy().astype(np.float32)
    np.savez_compressed(
        out_dir / f"{name}.npz",
        y=y.astype(np.float32),
        x=x_true.astype(np.float32),
        b=np.float64(b),
        sigma=np.float64(sigma),
        operator=np.array(op_text),
        psf=psf,
        mean=mean.numpy().astype(np.float32),
        std=std.numpy().astype(np.float32),
        levels=LEVELS.astype(np.float32),
        quantile_offsets=offsets.numpy(),
        summary=np.array(json.dumps(summary)),
    )
    return summary


def stored(out_dir: Path) -> dict:
    """The summaries of the cases stored in ``out_dir`` (without their run history)."""
    entries = {}
    for path in sorted(out_dir.glob("*.npz")):
        with np.load(path) as f:
            s = json.loads(str(f["summary"]))
        entries[s["case"]] = {k: v for k, v in s.items() if k != "history"}
    return entries


def write_index(index: Path, entries: dict, order: list[str]) -> None:
    """The index JSON of the stored cases (in the run order of :func:`case_list`)."""
    result = {
        "description": "TV posterior reference: SK-ROCK chains to R-hat <= 1.01 and "
                       "bulk ESS >= 400 per pixel (benchmarks/tv_reference.py)",
        "command": "python benchmarks/tv_reference.py [--cases ...]",
        "rhat_target": RHAT_TARGET,
        "ess_target": ESS_TARGET,
        "levels": LEVELS.tolist(),
        "cases": sorted(entries.values(),
                        key=lambda e: order.index(e["case"]) if e["case"] in order else 99),
    }
    index.parent.mkdir(parents=True, exist_ok=True)
    index.write_text(json.dumps(result, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one tiny case, seconds")
    parser.add_argument("--cases", default=None, help="comma-separated case names")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument("--reindex", action="store_true",
                        help="rebuild the index JSON from the stored .npz files and exit")
    parser.add_argument("--time-cap", type=float, default=None,
                        help="seconds per case (default 600 at 64 x 64, 1080 at 128 x 128)")
    parser.add_argument("--chains", type=int, default=NUM_CHAINS)
    parser.add_argument("--ess-target", type=float, default=None,
                        help="min bulk ESS per pixel (default 400; 1000 for the oracle-weight "
                             "blur cases, whose std is larger)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--preconditioner", choices=("auto", "none"), default="auto",
                        help="auto: the DCT-diagonal preconditioner of mcmc for a reflective "
                             "symmetric blur (default); none: plain SK-ROCK")
    parser.add_argument("--step-size", type=float, default=STEP_SIZE,
                        help="SK-ROCK step in units of 1 / L_f")
    parser.add_argument("--out", default=None,
                        help="folder for the results (default benchmarks/results; --quick: a "
                             "temporary folder)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cases = case_list()
    if args.list:
        for name, spec in cases.items():
            print(name, spec)
        return 0
    if args.quick:
        cases = {"quick_camera16_s0.1": {"image": "camera", "size": 16, "sigma": 0.1,
                                         "operator": "identity"}}
        base = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="tv_reference_"))
        out_dir, index = base / "tv_reference_quick", base / "tv_reference_quick.json"
    else:
        if args.cases:
            wanted = [c.strip() for c in args.cases.split(",") if c.strip()]
            unknown = [c for c in wanted if c not in cases]
            if unknown:
                parser.error(f"unknown cases {unknown}; --list lists them")
            cases = {c: cases[c] for c in wanted}
        base = Path(args.out) if args.out else RESULTS
        out_dir, index = base / "tv_reference", base / "tv_reference.json"

    def log(msg: str) -> None:
        print(msg, flush=True)

    order = list(case_list()) if not args.quick else list(cases)
    if args.reindex:
        cases = {}
        write_index(index, stored(out_dir), order)
    for name, spec in cases.items():
        cap = args.time_cap or (600.0 if spec["size"] <= 64 else 1080.0)
        first = 200 if args.quick else 1500
        log(f"{name}: {spec}, load {os.getloadavg()[0]:.2f}")
        s = run_case(name, spec, time_cap=10.0 if args.quick else cap, first_check=first,
                     thin0=2 if args.quick else 4, num_chains=args.chains, out_dir=out_dir,
                     log=log, ess_target=args.ess_target or (
                         1000.0 if spec.get("scale_rule") == "oracle" else ESS_TARGET),
                     preconditioner=args.preconditioner, step_size=args.step_size)
        log(f"{name}: {'converged' if s['converged'] else 'NOT converged (time cap)'}, "
            f"max R-hat {s['max_rhat']:.4f}, min bulk ESS {s['min_ess_bulk']:.0f}, "
            f"b {s['b']:.4f}, {s['wall_time']:.0f} s")
        # every stored case (earlier runs, other processes) goes into the index
        write_index(index, stored(out_dir), order)
    print(f"wrote {index}")
    print(f"\n{'case':28s} {'b':>7s} {'R-hat':>7s} {'ESS min':>8s} {'steps':>7s} "
          f"{'time s':>7s} conv")
    for e in json.loads(index.read_text())["cases"]:
        print(f"{e['case']:28s} {e['b']:7.4f} {e['max_rhat']:7.4f} {e['min_ess_bulk']:8.0f} "
              f"{e['settings']['num_steps']:7d} {e['wall_time']:7.0f} {e['converged']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
