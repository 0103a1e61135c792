"""Approximate engines against the TV posterior reference: mean, std and interval coverage.

For every case stored by ``benchmarks/tv_reference.py`` (``results/tv_reference/*.npz``:
long SK-ROCK chains run to R-hat <= 1.01, summarised by per-pixel mean, std and quantiles)
this runs, on the same observation, prior scale ``b``, ``sigma`` and operator:

- ``vi``: ``restore(y, "tv", sigma=, scale=, operator=, method="vi")`` as it is when run;
- ``vi-uncorrected``: the same with ``mean_correction="none"``: ``q``'s own mean, without
  the first-order correction by the tilted distributions that ``vi`` applies with an
  operator;
- ``vi-isotropic``: the same with ``gradient_covariance="isotropic"``: each pixel's two
  differences read as independent with equal variances (the Rice moments), the engine
  before it read their full ``2 x 2`` covariance;
- ``vi-svi``: the same with Pyro's SVI and its mean-field guide (``engine="svi",
  guide="normal"``) when the variational engine has another default (read from
  ``bayes_restore.infer.vi.variational``'s signature at run time; skipped, with the
  reason, otherwise); ``--svi-kwargs`` overrides;
- ``mcmc``: ``method="mcmc"``, a short fixed budget: ``num_samples=1000`` draws per
  chain (SK-ROCK, the engine's other defaults: 2 chains, 250 warm-up steps, smoothing 0.01);
  ``--mcmc-kwargs '{}'`` gives the engine's own default instead (run to convergence);
- ``map``: ``method="map"`` (its point as the mean: no std, no interval),
- ``vi-dense`` (not by default; images of at most 4096 pixels): the exact variational
  fixed point of the same family and weights, with the exact covariance ``Q^-1`` (dense
  Cholesky) in place of the engine's locally stationary variances, started at the
  engine's fit and iterated until the mean moves by less than 1e-6: what is left of the
  engine's error with its variance approximation removed,
- ``vi-dense-2x2`` (not by default; same sizes): the same with the expectations of TV's
  gradient and Hessian under the full 2 x 2 covariance of each pixel's two differences
  (correlated under ``q``; ``vi-dense`` and ``vi-isotropic`` read them as independent with
  equal variances, the Rice moments; ``vi``, the engine, takes them by a 1-D quadrature per
  pixel) by quasi-Monte Carlo (16384 scrambled Sobol points shared by
  all pixels; folded-normal closed forms on the last row and column), the precision with
  the full 2 x 2 blocks, iterated as Newton steps ``m <- m - Q^-1 E_q grad U`` (8 sweeps),
- ``vi-dense-2x2-iso`` (not by default; same sizes): the same with the precision's blocks
  read by their isotropic part (half the trace, one weight per pixel),

and reports per engine (averaged over pixels unless said):

- ``mae``/``max_ae``: mean and largest ``|mean - mean_ref|``; ``frac>0.01``: the fraction of
  pixels where it exceeds 0.01 (the target: none);
- ``std_ratio``/``std_ratio_med``: mean and median of ``std / std_ref`` (target: within
  20 % on average); ``frac_std_off``: pixels outside [0.8, 1.25];
- ``cov90``/``cov50``: the fraction of the reference draws inside the engine's equal-tailed
  90 % (50 %) interval (``Posterior.interval``), from the reference CDF interpolated between
  its stored quantiles (0.01, 0.03, ..., 0.99; beyond them 0.005 or 0.995), averaged over
  pixels (target for 90 %: 0.85-0.95); for a Gaussian engine that also returns draws
  (``vi``: 100 by default, whose quantiles ``Posterior.interval`` reads) also
  ``cov90_gaussian``/``cov50_gaussian``, of its ``mean +- z std`` interval;
- whether the targets are met, over the cases whose reference reached max R-hat <= 1.02
  (the others are listed as not judged: their reference is not converged);
- wall time of the engine (one thread by default; the machine may be loaded: see ``load``);
- ``misses``: where the pixels off by more than 0.01 are (the outer two rows and columns;
  the top quartile of the reference mean's gradient magnitude; their signs), the number
  expected from the reference's own Monte Carlo error alone (``sum_i P(|N(0, e_i)| >
  0.01)``), how many are off by more than ``0.01 + k e_i`` (``beyond_2_se``,
  ``beyond_3_se``: beyond the reference's noise), ``excess_rms``, the rms error left after
  removing that error's share (``sqrt(rms^2 - mean e_i^2)``), ``z2_mean`` (the mean of
  ``(error / e_i)^2``: 1 when the reference's noise explains all of it) and the rms error
  over the outer two rows / columns, the interior's top gradient quartile and the rest.
  ``e_i`` is the reference mean's Monte Carlo standard error: stored per pixel
  (``mean_se``) in the extended references (``*_long``: the stored blur references with
  more chains, see ``summary["extension"]``), else ``std_i / sqrt(median bulk ESS)``.
  The targets table adds "no pixel beyond ``0.01 + 2 e_i``" next to the raw criterion.

Run: ``python benchmarks/tv_vi_reference.py`` (all stored cases), ``--cases`` to select,
``--engines vi,mcmc`` to select engines, ``--quick`` (one 64 x 64 case, the fast engines
only; on a checkout without stored reference it makes a tiny one first).
Writes ``results/tv_vi_reference.json`` (``--quick``: a temporary folder).
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results"
REF_DIR = RESULTS / "tv_reference"
ENGINES = ("vi", "vi-uncorrected", "vi-isotropic", "vi-svi", "mcmc", "map", "vi-dense",
           "vi-dense-2x2", "vi-dense-2x2-iso")
#: largest image (pixels) of the dense variational fixed point (``vi-dense``)
DENSE_MAX = 4096


def load_case(path: Path) -> dict:
    """A stored reference case: arrays and its summary."""
    with np.load(path) as f:
        case = {k: f[k] for k in f.files}
    case["summary"] = json.loads(str(case["summary"]))
    case["name"] = path.stem
    case["quantiles"] = case["quantile_offsets"].astype(np.float64) + case["mean"].astype(
        np.float64)
    return case


def operator_of(case: dict):
    """The case's operator (``None`` for denoising), rebuilt from the stored PSF."""
    if str(case["operator"]) == "identity":
        return None
    from bayes_restore.operators import Blur

    return Blur(torch.as_tensor(case["psf"], dtype=torch.float64))


def reference_cdf(quantiles: np.ndarray, levels: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Per-pixel reference CDF at ``v``: linear between the stored quantiles.

    ``quantiles`` has shape ``(L, *image)``, ``levels`` ``(L,)``; below the first quantile
    the CDF is taken as ``levels[0] / 2``, above the last as ``(1 + levels[-1]) / 2``.
    """
    q = np.sort(quantiles.reshape(len(levels), -1), axis=0)  # float16 rounding can swap
    v = v.reshape(-1)
    n_lev = len(levels)
    idx = (q <= v).sum(0)  # number of quantiles at or below v: 0..L
    cols = np.arange(q.shape[1])
    lo_i = np.clip(idx - 1, 0, n_lev - 1)
    hi_i = np.clip(idx, 0, n_lev - 1)
    q_lo, q_hi = q[lo_i, cols], q[hi_i, cols]
    width = q_hi - q_lo
    frac = np.where(width > 0, (v - q_lo) / np.where(width > 0, width, 1.0), 1.0)
    cdf = levels[lo_i] + np.clip(frac, 0.0, 1.0) * (levels[hi_i] - levels[lo_i])
    cdf = np.where(idx == 0, levels[0] / 2, cdf)
    cdf = np.where(idx == n_lev, (1 + levels[-1]) / 2, cdf)
    return cdf


def coverage_of_reference(case: dict, lo: np.ndarray, hi: np.ndarray) -> float:
    """Fraction of the reference draws inside ``[lo, hi]``, averaged over pixels."""
    levels = case["levels"].astype(np.float64)
    q = case["quantiles"]
    inside = reference_cdf(q, levels, hi) - reference_cdf(q, levels, lo)
    return float(np.mean(np.clip(inside, 0.0, 1.0)))


def gaussian_interval(mean: np.ndarray, std: np.ndarray, prob: float):
    z = math.sqrt(2) * float(torch.special.erfinv(torch.tensor(prob)))
    return mean - z * std, mean + z * std


def svi_kwargs_default() -> tuple[dict | None, str]:
    """The keywords that select Pyro's SVI in ``variational``, or ``None`` and why not."""
    from bayes_restore.infer import vi

    params = inspect.signature(vi.variational).parameters
    engine = params.get("engine")
    if engine is not None:
        choices = getattr(vi, "VI_ENGINES", ())
        if "svi" in choices and engine.default != "svi":
            return ({"engine": "svi", "guide": "normal"},
                    f"variational(engine={engine.default!r}) by default: SVI row with "
                    "engine='svi', guide='normal'")
        return None, f"variational() has engine= (choices {choices!r}): pass --svi-kwargs"
    guide = params.get("guide")
    if guide is None:
        return None, "variational() has no guide keyword"
    if guide.default == "normal":
        return None, "the default vi is already Pyro's SVI guide (guide='normal')"
    return {"guide": "normal"}, f"guide default is {guide.default!r}: SVI with guide='normal'"


#: the targets are judged only on cases whose reference reached this max R-hat
RHAT_JUDGED = 1.02
#: the short MCMC run of the ``mcmc`` row
MCMC_KWARGS = {"num_samples": 1000}


def run_engine(engine: str, case: dict, svi_kwargs: dict | None, seed: int,
               mcmc_kwargs: dict | None = None) -> dict:
    """One engine on one case: its errors against the reference."""
    import bayes_restore

    y = case["y"].astype(np.float64)
    sigma, b = float(case["sigma"]), float(case["b"])
    op = operator_of(case)
    kw: dict = {"sigma": sigma, "scale": b, "seed": seed}
    if op is not None:
        kw["operator"] = op
    method = {"vi": "vi", "vi-uncorrected": "vi", "vi-isotropic": "vi", "vi-svi": "vi",
              "mcmc": "mcmc", "map": "map", "vi-dense": "vi", "vi-dense-2x2": "vi",
              "vi-dense-2x2-iso": "vi"}[engine]
    if engine == "vi-isotropic":
        kw["gradient_covariance"] = "isotropic"
    if engine == "vi-uncorrected":
        kw["mean_correction"] = "none"
    if engine == "vi-svi":
        kw.update(svi_kwargs or {})
    if engine == "mcmc":
        kw.update(MCMC_KWARGS if mcmc_kwargs is None else mcmc_kwargs)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if engine == "vi-dense":
            post = dense_fixed_point(y, sigma, b, op)
        elif engine in ("vi-dense-2x2", "vi-dense-2x2-iso"):
            post = dense_fixed_point_2x2(y, sigma, b, op,
                                         precision_blocks=engine == "vi-dense-2x2")
        else:
            post = bayes_restore.restore(y, "tv", method=method, **kw)
    wall = time.perf_counter() - start
    ref_mean = case["mean"].astype(np.float64)
    ref_std = case["std"].astype(np.float64)
    if post.mean is not None:
        mean = np.asarray(post.mean, dtype=np.float64)
    else:
        mean = np.asarray(post.point, dtype=np.float64)
    err = np.abs(mean - ref_mean)
    row: dict = {
        "engine": engine,
        "case": case["name"],
        "reference_max_rhat": float(case["summary"]["max_rhat"]),
        "mae": float(err.mean()),
        "max_ae": float(err.max()),
        "frac_mean_above_0.01": float(np.mean(err > 0.01)),
        "wall_time": round(wall, 2),
        "warnings": sorted({f"{w.category.__name__}: {str(w.message)[:120]}" for w in caught}),
        "engine_info": {k: jsonable(post.diagnostics.get(k)) for k in
                        ("engine", "guide", "sampler", "num_steps", "converged", "iterations",
                         "num_chains", "num_draws")
                        if post.diagnostics.get(k) is not None},
    }
    row["misses"] = misses(case, mean)
    if engine == "vi-svi":
        row["kwargs"] = svi_kwargs
    if engine == "mcmc":
        row["kwargs"] = MCMC_KWARGS if mcmc_kwargs is None else mcmc_kwargs
    if post.std is None:
        return row
    std = np.asarray(post.std, dtype=np.float64)
    ratio = std / ref_std
    row.update({
        "std_ratio": float(ratio.mean()),
        "std_ratio_median": float(np.median(ratio)),
        "frac_std_off": float(np.mean((ratio < 0.8) | (ratio > 1.25))),
    })
    for prob, key in ((0.9, "cov90"), (0.5, "cov50")):
        try:
            lo, hi = (np.asarray(t, dtype=np.float64) for t in post.interval(prob))
            row[f"{key}_source"] = "Posterior.interval"
        except ValueError:
            lo, hi = gaussian_interval(mean, std, prob)
            row[f"{key}_source"] = "mean +- z std"
        row[key] = coverage_of_reference(case, lo, hi)
        if post.samples is not None and post.diagnostics.get("gaussian"):
            # a Gaussian q with draws: Posterior.interval reads the draws' quantiles (100
            # draws by default: a Monte Carlo interval, narrow on average); its own
            # mean +- z std interval too
            glo, ghi = gaussian_interval(mean, std, prob)
            row[f"{key}_gaussian"] = coverage_of_reference(case, glo, ghi)
    return row


#: multiples k of the reference's Monte Carlo error: a pixel counts as off beyond it when
#: ``|mean - mean_ref| > 0.01 + k e_i``
MC_K = (2, 3)


def reference_error(case: dict) -> np.ndarray:
    """The Monte Carlo standard error of the reference mean per pixel: stored (``mean_se``,
    the extended references) or ``std_i / sqrt(median bulk ESS)``."""
    if "mean_se" in case:
        return case["mean_se"].astype(np.float64)
    return case["std"].astype(np.float64) / math.sqrt(case["summary"]["median_ess_bulk"])


def misses(case: dict, mean: np.ndarray) -> dict:
    """Where the pixels off by more than 0.01 are, and the reference's share of the error."""
    from scipy.stats import norm

    ref = case["mean"].astype(np.float64)
    err = mean - ref
    bad = np.abs(err) > 0.01
    h, w = ref.shape
    rows, cols = np.mgrid[:h, :w]
    border = np.minimum(np.minimum(rows, h - 1 - rows), np.minimum(cols, w - 1 - cols)) < 2
    gy = np.diff(ref, axis=0, append=ref[-1:])
    gx = np.diff(ref, axis=1, append=ref[:, -1:])
    grad = np.hypot(gy, gx)
    edge = grad > np.percentile(grad, 75)
    mc = reference_error(case)
    return {
        "count": int(bad.sum()), "pixels": int(bad.size),
        "reference_error": "per pixel (mean_se)" if "mean_se" in case
        else "std / sqrt(median bulk ESS)",
        **{f"beyond_{k}_se": int((np.abs(err) > 0.01 + k * mc).sum()) for k in MC_K},
        "reference_error_median": float(np.median(mc)),
        "reference_error_max": float(mc.max()),
        "expected_from_reference_error": float((2 * norm.sf(0.01 / mc)).sum()),
        "outer_two_rows_cols": int((bad & border).sum()),
        "outer_two_share_of_pixels": float(border.mean()),
        "top_gradient_quartile": int((bad & edge).sum()),
        "positive": int((bad & (err > 0)).sum()), "negative": int((bad & (err < 0)).sum()),
        "rms": float(np.sqrt(np.mean(err**2))),
        # where the error is: rms over the outer two rows / columns, the top gradient
        # quartile (interior), the rest; and its mean square in units of the reference's
        # error (1 when the reference's noise explains all of it)
        "rms_outer_two": float(np.sqrt(np.mean(err[border] ** 2))),
        "rms_top_gradient_quartile": float(np.sqrt(np.mean(err[edge & ~border] ** 2))),
        "rms_rest": float(np.sqrt(np.mean(err[~edge & ~border] ** 2))),
        "z2_mean": float(np.mean((err / mc) ** 2)),
        "reference_error_rms": float(np.sqrt(np.mean(mc**2))),
        "excess_rms": float(np.sqrt(max(np.mean(err**2) - np.mean(mc**2), 0.0))),
    }


def _rice_weights(g: torch.Tensor, v: torch.Tensor, valid: torch.Tensor):
    """The exact Gaussian ELBO's weights of the mean and the precision (scipy's Bessel
    functions; two differences: Rice moments, one: folded normal), ``(2, N)`` inputs."""
    from scipy import special

    n = valid.sum(0).numpy()
    g2 = (g**2 * valid).sum(0).numpy()
    var = np.maximum(((v * valid).sum(0) / valid.sum(0).clamp_min(1)).numpy(), 1e-300)
    z, t = g2 / (4 * var), np.sqrt(g2 / var)
    c = math.sqrt(math.pi / 8) / np.sqrt(var)
    with np.errstate(divide="ignore", invalid="ignore"):
        one_mean = np.where(t < 1e-6, math.sqrt(2 / math.pi) / np.sqrt(var),
                            special.erf(t / math.sqrt(2)) / (t * np.sqrt(var)))
    one_prec = 2 * np.exp(-t**2 / 2) / np.sqrt(2 * math.pi * var)
    two_mean, two_prec = c * (special.i0e(z) + special.i1e(z)), c * special.i0e(z)
    pick = lambda a, b1: np.where(n > 1.5, a, np.where(n > 0.5, b1, 0.0))  # noqa: E731
    return (torch.from_numpy(pick(two_mean, one_mean)),
            torch.from_numpy(pick(two_prec, one_prec)))


def dense_setup(y: np.ndarray, sigma: float, b: float, op, name: str):
    """What both dense engines start from: the engine's fit with
    ``gradient_covariance="isotropic"`` (``tv_variational``: its mean and its one weight per
    pixel the start) and the dense difference matrix ``D`` ``(2N, N)``, ``A^T A`` and
    ``A^T y``, float64."""
    from types import SimpleNamespace

    from bayes_restore.differences import grad
    from bayes_restore.infer.problem import recognise
    from bayes_restore.infer.variational_tv import tv_variational
    from bayes_restore.models import restoration_model
    from bayes_restore.operators import Identity
    from bayes_restore.priors import TotalVariation

    h, w = y.shape
    n = h * w
    if n > DENSE_MAX:
        raise ValueError(f"{name} is for images of at most {DENSE_MAX} pixels, got {n}")
    yt = torch.as_tensor(y, dtype=torch.float64)
    op = op if op is not None else Identity()
    problem = recognise(restoration_model, (yt,), {"prior": TotalVariation(b, shape=(h, w)),
                                                  "sigma": sigma, "operator": op})
    eye = torch.eye(n, dtype=torch.float64).reshape(n, h, w)
    return SimpleNamespace(
        h=h, w=w, n=n, q=tv_variational(problem, gradient_covariance="isotropic"),
        dmat=torch.stack([grad(e).reshape(-1) for e in eye], dim=1),
        ata=torch.stack([op.adjoint(op.forward(e)).reshape(-1) for e in eye], dim=1),
        aty=op.adjoint(yt).reshape(-1))


def dense_fixed_point(y: np.ndarray, sigma: float, b: float, op, tol: float = 1e-6,
                      max_sweeps: int = 30):
    """The exact-weights variational fixed point with the exact covariance (dense), each
    pixel's two differences read as independent with equal variances (the Rice moments),
    started at the engine's fit; a ``Posterior``-like object."""
    from types import SimpleNamespace

    import scipy.sparse as sp

    d = dense_setup(y, sigma, b, op, "vi-dense")
    h, w, n, dmat, ata = d.h, d.w, d.n, d.dmat, d.ata
    dsp = sp.csr_matrix(dmat.numpy())
    valid = (dmat.abs().sum(1) > 0).to(torch.float64).reshape(2, n)
    rhs = d.aty / sigma**2
    m, wp = d.q.mean.reshape(-1).clone(), d.q.weights.reshape(-1)

    def with_weights(wv: torch.Tensor) -> torch.Tensor:
        dwd = dsp.T @ sp.diags(torch.cat([wv, wv]).numpy()) @ dsp
        return ata / sigma**2 + torch.from_numpy(dwd.toarray()) / b

    sweeps, change = 0, float("inf")
    while sweeps < max_sweeps and change > tol:
        sweeps += 1
        cov = torch.cholesky_inverse(torch.linalg.cholesky(with_weights(wp)))
        vg = torch.from_numpy(np.einsum("ij,ij->i", dsp @ cov.numpy(), dmat.numpy()))
        wm, wp = _rice_weights((dmat @ m).reshape(2, n), vg.reshape(2, n), valid)
        m_new = torch.linalg.solve(with_weights(wm), rhs)
        change = float((m_new - m).norm() / m_new.norm())
        m = m_new
    cov = torch.cholesky_inverse(torch.linalg.cholesky(with_weights(wp)))
    return SimpleNamespace(mean=m.reshape(h, w).numpy(),
                           std=cov.diagonal().sqrt().reshape(h, w).numpy(), samples=None,
                           diagnostics={"iterations": sweeps, "converged": change <= tol,
                                        "engine": "dense"},
                           interval=_no_interval)


def dense_fixed_point_2x2(y: np.ndarray, sigma: float, b: float, op, sweeps: int = 8,
                          points: int = 14, precision_blocks: bool = True):
    """The exact Gaussian ELBO's fixed point with the full 2 x 2 covariance of each pixel's
    differences (dense ``Q^-1``, quasi-Monte Carlo expectations), started at the engine's
    fit; a ``Posterior``-like object. ``precision_blocks=False``: the precision takes each
    block's isotropic part (half its trace), one weight per pixel."""
    from types import SimpleNamespace

    import scipy.sparse as sp
    from scipy import special
    from scipy.stats import norm, qmc

    d = dense_setup(y, sigma, b, op, "vi-dense-2x2")
    h, w, n = d.h, d.w, d.n
    dmat, ata, aty = d.dmat.numpy(), d.ata.numpy(), d.aty.numpy()
    dsp = sp.csr_matrix(dmat)
    has_v, has_h = np.abs(dmat[:n]).sum(1) > 0, np.abs(dmat[n:]).sum(1) > 0
    both = np.nonzero(has_v & has_h)[0]
    z = norm.ppf(qmc.Sobol(d=2, scramble=True, seed=0).random_base2(m=points))
    z = z - z.mean(0)
    m = d.q.mean.reshape(-1).numpy().copy()
    wp = d.q.weights.reshape(-1).numpy()
    blocks = sp.diags(np.concatenate([wp, wp]))

    def precision(bl):
        return ata / sigma**2 + (dsp.T @ bl @ dsp).toarray() / b

    for _ in range(sweeps):
        cov = np.linalg.inv(precision(blocks))
        dc = dsp @ cov
        svv = np.einsum("ij,ij->i", dc[:n], dmat[:n])
        shh = np.einsum("ij,ij->i", dc[n:], dmat[n:])
        svh = np.einsum("ij,ij->i", dc[:n], dmat[n:])
        g = dsp @ m
        l11 = np.sqrt(np.maximum(svv, 0))
        l21 = np.where(l11 > 0, svh / np.maximum(l11, 1e-300), 0.0)
        l22 = np.sqrt(np.maximum(shh - l21**2, 0))
        ev, eh, hvv, hhh, hvh = (np.zeros(n) for _ in range(5))
        for c in range(0, len(both), 256):
            k = both[c:c + 256]
            gv = g[k, None] + l11[k, None] * z[None, :, 0]
            gh = g[n + k, None] + l21[k, None] * z[None, :, 0] + l22[k, None] * z[None, :, 1]
            r = np.maximum(np.sqrt(gv**2 + gh**2), 1e-12)
            ev[k], eh[k] = (gv / r).mean(1), (gh / r).mean(1)
            hvv[k], hhh[k] = ((1 - gv**2 / r**2) / r).mean(1), ((1 - gh**2 / r**2) / r).mean(1)
            hvh[k] = (-(gv * gh) / r**3).mean(1)
        for sel, mu, var, e, hd in ((has_h & ~has_v, g[n:], shh, eh, hhh),
                                    (has_v & ~has_h, g[:n], svv, ev, hvv)):
            sd = np.sqrt(np.maximum(var[sel], 1e-300))
            e[sel] = special.erf(mu[sel] / sd / math.sqrt(2))
            hd[sel] = 2 * norm.pdf(mu[sel] / sd) / sd
        grad_u = (ata @ m - aty) / sigma**2 + dsp.T @ np.concatenate([ev, eh]) / b
        if precision_blocks:
            blocks = sp.bmat([[sp.diags(hvv), sp.diags(hvh)],
                              [sp.diags(hvh), sp.diags(hhh)]]).tocsr()
        else:  # the isotropic part, half the trace (on one-difference pixels, the one)
            iso = np.where(has_v & has_h, (hvv + hhh) / 2, hvv + hhh)
            blocks = sp.diags(np.concatenate([iso, iso]))
        m = m - np.linalg.solve(precision(blocks), grad_u)
    std = np.sqrt(np.diag(np.linalg.inv(precision(blocks))))
    return SimpleNamespace(mean=m.reshape(h, w), std=std.reshape(h, w), samples=None,
                           diagnostics={"iterations": sweeps, "engine": "dense-2x2"},
                           interval=_no_interval)


def _no_interval(prob: float):
    """``vi-dense`` has no draws: the comparison takes ``mean +- z std``."""
    raise ValueError("no draws")


def quick_reference(tmp: Path) -> Path:
    """A tiny stored reference (for ``--quick`` on a checkout without one)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import tv_reference

    tv_reference.main(["--quick", "--out", str(tmp)])
    return tmp / "tv_reference_quick"


def jsonable(v):
    """``v`` if JSON can hold it, else its text (e.g. a Pyro guide object)."""
    return v if isinstance(v, (bool, int, float, str, type(None))) else str(v)[:80]


def fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def run_cases(paths: list[Path], engines: list[str], svi_kwargs: dict | None,
              seed: int, mcmc_kwargs: dict | None = None) -> list[dict]:
    """Every engine on every stored case, printing a line per run."""
    rows = []
    for path in paths:
        case = load_case(path)
        s = case["summary"]
        print(f"{case['name']}: b {float(case['b']):.4f}, reference max R-hat "
              f"{s['max_rhat']:.4f}, min bulk ESS {s['min_ess_bulk']:.0f}"
              f"{'' if s['converged'] else ' (NOT converged)'}", flush=True)
        for engine in engines:
            if engine == "vi-svi" and svi_kwargs is None:
                continue
            try:
                row = run_engine(engine, case, svi_kwargs, seed, mcmc_kwargs)
            except Exception as exc:  # report and go on: the engines are being edited
                row = {"engine": engine, "case": case["name"],
                       "error": f"{type(exc).__name__}: {exc}"[:400]}
            row["load_average"] = round(os.getloadavg()[0], 2)
            rows.append(row)
            if "error" in row:
                print(f"  {engine:12s} FAILED: {row['error']}", flush=True)
            else:
                print(f"  {engine:12s} mae {row['mae']:.4f} max {row['max_ae']:.4f} "
                      f">0.01 {row['frac_mean_above_0.01']:.3f} std ratio "
                      f"{fmt(row.get('std_ratio'), '.3f')}/"
                      f"{fmt(row.get('std_ratio_median'), '.3f')}"
                      f" cov90 {fmt(row.get('cov90'), '.3f')} cov50 {fmt(row.get('cov50'), '.3f')}"
                      + (f" (mean +- z std: cov90 {row['cov90_gaussian']:.3f} cov50 "
                         f"{row['cov50_gaussian']:.3f})" if "cov90_gaussian" in row else "")
                      + f" {row['wall_time']:.1f} s", flush=True)
                mi = row.get("misses")
                if mi:
                    print(f"          >0.01: {mi['count']} (from the reference's MC error "
                          f"alone: {mi['expected_from_reference_error']:.1f}; beyond 0.01 + "
                          f"2 / 3 MC s.e.: {mi['beyond_2_se']} / {mi['beyond_3_se']}, "
                          f"reference s.e. median {mi['reference_error_median']:.4f}, max "
                          f"{mi['reference_error_max']:.4f}), outer two "
                          f"rows/cols {mi['outer_two_rows_cols']}, top gradient quartile "
                          f"{mi['top_gradient_quartile']}, +/- {mi['positive']}/"
                          f"{mi['negative']}, excess rms {mi['excess_rms']:.4f}, mean (err / "
                          f"s.e.)^2 {mi['z2_mean']:.2f}; rms border / edges / rest "
                          f"{mi['rms_outer_two']:.4f} / {mi['rms_top_gradient_quartile']:.4f} / "
                          f"{mi['rms_rest']:.4f}", flush=True)
    return rows


def report(rows: list[dict], svi_note: str, out: Path,
           index: Path = RESULTS / "tv_reference.json") -> None:
    """Print the table and whether the targets are met; write the JSON."""
    header = (f"{'case':28s} {'engine':14s} {'mae':>7s} {'max_ae':>7s} {'>0.01':>6s} "
              f"{'>+2se':>6s} {'>+3se':>6s} {'std/ref':>7s} {'(med)':>6s} {'cov90':>6s} "
              f"{'cov50':>6s} {'time s':>7s}")
    print("\n" + header)
    for r in rows:
        if "error" in r:
            print(f"{r['case']:28s} {r['engine']:14s} FAILED: {r['error'][:80]}")
            continue
        mi = r.get("misses", {})
        print(f"{r['case']:28s} {r['engine']:14s} {r['mae']:7.4f} {r['max_ae']:7.4f} "
              f"{mi.get('count', -1):6d} {mi.get('beyond_2_se', -1):6d} "
              f"{mi.get('beyond_3_se', -1):6d} {fmt(r.get('std_ratio'), '7.3f'):>7s} "
              f"{fmt(r.get('std_ratio_median'), '6.3f'):>6s} {fmt(r.get('cov90'), '6.3f'):>6s} "
              f"{fmt(r.get('cov50'), '6.3f'):>6s} {r['wall_time']:7.1f}")
    targets = {"mean": "|mean - ref| <= 0.01 on every pixel",
               "mean_mc": "no pixel beyond 0.01 + 2 reference MC standard errors",
               "std": "std / ref within 20 % on average",
               "cov90": "0.85 <= cov90 <= 0.95"}
    # judged only where the reference itself is (nearly) converged: max R-hat <= RHAT_JUDGED
    # (``index``: the index JSON next to the reference folder)
    refs = ({e["case"]: e for e in json.loads(index.read_text())["cases"]}
            if index.exists() else {})
    judged = {c for c, e in refs.items() if e["max_rhat"] <= RHAT_JUDGED}
    # cases outside the index (the extended references): their own summary's R-hat
    judged |= {r["case"] for r in rows if r["case"] not in refs
               and r.get("reference_max_rhat", math.inf) <= RHAT_JUDGED}
    not_judged = sorted({r["case"] for r in rows} - judged)
    if not_judged:
        print(f"not judged (reference max R-hat > {RHAT_JUDGED}): {', '.join(not_judged)}")
    ok = {}
    for engine in dict.fromkeys(r["engine"] for r in rows):
        mine = [r for r in rows
                if r["engine"] == engine and "error" not in r and r["case"] in judged]
        if not mine or engine == "map":
            continue
        ok[engine] = {
            "mean": all(r["max_ae"] <= 0.01 for r in mine),
            "mean_mc": all(r.get("misses", {}).get("beyond_2_se", 1) == 0 for r in mine),
            "std": all(abs(r.get("std_ratio", 0) - 1) <= 0.2 for r in mine),
            "cov90": all(0.85 <= r.get("cov90", 0) <= 0.95 for r in mine),
            "cases": len(mine),
            "failed_runs": sum(1 for r in rows if r["engine"] == engine and "error" in r),
        }
        print(f"{engine}: " + ", ".join(f"{targets[k]}: {'met' if ok[engine][k] else 'NOT met'}"
                                        for k in targets)
              + f" ({len(mine)} cases)")
    result = {
        "description": "Approximate engines against the SK-ROCK reference of the TV posterior "
                       "(benchmarks/tv_vi_reference.py)",
        "command": "python " + " ".join(["benchmarks/tv_vi_reference.py"] + sys.argv[1:]),
        "torch_threads": torch.get_num_threads(),
        "svi": svi_note,
        "targets": targets,
        "targets_met": ok,
        "judged_cases": sorted(judged & {r["case"] for r in rows}),
        "not_judged_cases": not_judged,
        "rows": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(f"wrote {out}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="one small case, engines vi and map (seconds to a minute)")
    parser.add_argument("--cases", default=None, help="comma-separated case names")
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--svi-kwargs", default=None,
                        help="JSON keywords that select Pyro's SVI in method='vi'")
    parser.add_argument("--mcmc-kwargs", default=None,
                        help="JSON keywords of the mcmc row (default: num_samples=1000)")
    parser.add_argument("--ref-dir", default=str(REF_DIR),
                        help="folder of the stored reference cases")
    parser.add_argument("--out", default=None, help="result JSON (default "
                        "results/tv_vi_reference.json; --quick: a temporary folder)")
    parser.add_argument("--combine", default=None,
                        help="comma-separated result JSONs of runs on disjoint cases: "
                             "merge them into --out (no engine is run)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    default_out = RESULTS / "tv_vi_reference.json"
    if args.combine:
        parts = [json.loads(Path(p).read_text()) for p in args.combine.split(",") if p]
        rows = [r for part in parts for r in part["rows"]]
        index = RESULTS / "tv_reference.json"
        order = ([e["case"] for e in json.loads(index.read_text())["cases"]]
                 if index.exists() else [])
        rows.sort(key=lambda r: (order.index(r["case"]) if r["case"] in order else len(order),
                                 ENGINES.index(r["engine"])))
        report(rows, parts[0]["svi"] if parts else "", Path(args.out or default_out))
        return 0
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    bad = [e for e in engines if e not in ENGINES]
    if bad:
        parser.error(f"unknown engines {bad}; choose from {ENGINES}")
    tmp = Path(tempfile.mkdtemp(prefix="tv_vi_reference_")) if args.quick else None
    ref_dir = Path(args.ref_dir)
    paths = sorted(ref_dir.glob("*.npz"))
    if args.quick:
        engines = [e for e in engines if e in ("vi", "map")]
        small = [p for p in paths if "64_s" in p.stem]
        paths = small[:1] if small else sorted(quick_reference(tmp).glob("*.npz"))
    if args.cases:
        wanted = {c.strip() for c in args.cases.split(",") if c.strip()}
        paths = [p for p in paths if p.stem in wanted]
    if not paths:
        parser.error(f"no stored reference cases in {ref_dir}: run benchmarks/tv_reference.py")
    index = RESULTS / "tv_reference.json"
    order = ([e["case"] for e in json.loads(index.read_text())["cases"]]
             if index.exists() else [])
    paths.sort(key=lambda p: order.index(p.stem) if p.stem in order else len(order))

    if args.svi_kwargs:
        svi_kwargs, svi_note = json.loads(args.svi_kwargs), "from --svi-kwargs"
    else:
        try:
            svi_kwargs, svi_note = svi_kwargs_default()
        except Exception as exc:  # the live module may be mid-edit
            svi_kwargs, svi_note = None, f"could not read variational(): {exc!r}"
    print(f"vi-svi: {svi_note}", flush=True)
    mcmc_kwargs = json.loads(args.mcmc_kwargs) if args.mcmc_kwargs else None
    rows = run_cases(paths, engines, svi_kwargs, args.seed, mcmc_kwargs)
    out = Path(args.out) if args.out else (tmp if args.quick else RESULTS) / "tv_vi_reference.json"
    report(rows, svi_note, out, ref_dir.parent / f"{ref_dir.name}.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
