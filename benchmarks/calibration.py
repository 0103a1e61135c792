"""Calibration of the uncertainty engines: coverage of credible intervals on prior draws.

Images are drawn from a proper Gaussian-gradient prior (the GMRF on the non-constant
modes, plus a level of 0.5), observed with Gaussian noise, and restored by every engine
under the true model. An engine is calibrated when its p-intervals cover a fraction p of
the true pixels. The exact engine must; mean-field VI (Pyro SVI, ``engine="svi"``) is known
to be too narrow, and this measures by how much. ``method="vi"``'s structured engine (the
default for this model) returns the exact Gaussian posterior: its rows check that, with
``A = I`` and with a reflective Gaussian blur, against the exact engine (largest mean
difference, std ratio, bit-identical reruns). Optional rows for the samplers (``--mcmc``)
use ``bayes_restore.infer.mcmc`` when it is available.

Run:  python benchmarks/calibration.py            (about a minute on a quiet machine;
                                                  the SVI rows take most of it)
      python benchmarks/calibration.py --quick    (seconds; smaller)
      python benchmarks/calibration.py --no-svi   (the exact and structured rows only)
Writes benchmarks/results/calibration.json (``--out``) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from bayes_restore import ConvergenceWarning
from bayes_restore.differences import idct2, laplacian_eigenvalues
from bayes_restore.infer import exact_posterior, variational
from bayes_restore.models import restoration_model
from bayes_restore.operators import Blur, gaussian_psf
from bayes_restore.priors import GaussianGradient

PROBS = (0.5, 0.9, 0.95)
RESULTS = Path(__file__).parent / "results" / "calibration.json"


def prior_draws(n: int, size: int, scale: float, gen: torch.Generator) -> torch.Tensor:
    """Draws of the Gaussian-gradient prior on its non-constant modes, level 0.5."""
    mu = laplacian_eigenvalues(size, size)
    z = torch.randn(n, size, size, generator=gen, dtype=torch.float64)
    coeff = torch.where(mu > 0, scale * z / mu.clamp_min(1e-30).sqrt(), torch.zeros_like(z))
    return idct2(coeff) + 0.5


def evaluate(name: str, run, truths, observations, exact_stds, exact_means=None,
             rerun: bool = False) -> dict:
    """Coverage at PROBS and the std ratio to the exact posterior, pooled over images.

    With ``exact_means``: the largest ``|mean - exact mean|`` and the range of the per-pixel
    std ratio; with ``rerun``: whether a second run gives bit-identical mean and std.
    """
    covers = {p: [] for p in PROBS}
    ratios, seconds, mean_err, lo, hi, identical = [], 0.0, 0.0, math.inf, 0.0, True
    for i, (x, y, std_exact) in enumerate(zip(truths, observations, exact_stds, strict=True)):
        start = time.perf_counter()
        post = run(y)
        seconds += time.perf_counter() - start
        for p in PROBS:
            covers[p].append(post.coverage(x, p))
        ratio = post.std / std_exact
        ratios.append(float(ratio.mean()))
        lo, hi = min(lo, float(ratio.min())), max(hi, float(ratio.max()))
        if exact_means is not None:
            mean_err = max(mean_err, float((post.mean - exact_means[i]).abs().max()))
        if rerun:
            again = run(y)
            identical &= bool(torch.equal(again.mean, post.mean)
                              and torch.equal(again.std, post.std))
    extra = {}
    if exact_means is not None:
        extra.update(max_mean_error=mean_err, std_ratio_min=lo, std_ratio_max=hi)
    if rerun:
        extra["bit_identical"] = identical
    return {
        "engine": name,
        "images": len(truths),
        **{f"coverage_{int(p * 100)}": float(np.mean(covers[p])) for p in PROBS},
        "std_ratio_to_exact": float(np.mean(ratios)),
        "seconds_per_image": seconds / len(truths),
        **extra,
    }


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--mcmc", action="store_true", help="add the sampler rows")
    parser.add_argument("--no-svi", action="store_true",
                        help="skip the Pyro SVI rows (minutes per image under load)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results file")
    args = parser.parse_args(argv)
    size, n_images, n_vi = (32, 4, 1) if args.quick else (64, 16, 3)
    sigma, scale = 0.1, 0.05
    gen = torch.Generator().manual_seed(2024)
    truths = prior_draws(n_images, size, scale, gen)
    observations = truths + sigma * torch.randn(truths.shape, generator=gen, dtype=torch.float64)
    prior = GaussianGradient(scale, shape=(size, size))
    exact = [exact_posterior(restoration_model, y, prior=prior, sigma=sigma) for y in observations]
    exact_stds = [p.std for p in exact]

    def vi(guide):
        def run(y):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                return variational(restoration_model, y, prior=prior, sigma=sigma, guide=guide,
                                   engine="svi", num_samples=0,
                                   generator=torch.Generator().manual_seed(0))
        return run

    rows = [
        evaluate("exact (DCT)", lambda y: exact_posterior(restoration_model, y, prior=prior,
                                                          sigma=sigma),
                 truths, observations, exact_stds),
        evaluate("VI structured", lambda y: variational(restoration_model, y, prior=prior,
                                                        sigma=sigma, num_samples=0),
                 truths, observations, exact_stds, [p.mean for p in exact], rerun=True),
        *blur_rows(truths, gen, prior, sigma),
    ]
    if not args.no_svi:
        rows += [
            evaluate("SVI mean field", vi("normal"), truths[:n_vi], observations[:n_vi],
                     exact_stds[:n_vi]),
            evaluate("SVI low rank (10)", vi("lowrank"), truths[:n_vi], observations[:n_vi],
                     exact_stds[:n_vi]),
        ]
    if args.mcmc:
        rows.extend(
            mcmc_rows(truths[:n_vi], observations[:n_vi], exact_stds[:n_vi], prior, sigma)
        )
    header = (f"{'engine':<20}{'images':>7}{'50 %':>8}{'90 %':>8}{'95 %':>8}"
              f"{'std/exact':>11}{'s/image':>9}{'max|dm|':>10}{'ratio range':>16}")
    print(f"Gaussian-gradient prior, {size}x{size}, sigma = {sigma}, b = {scale}")
    print(header)
    for r in rows:
        print(f"{r['engine']:<20}{r['images']:>7}{r['coverage_50']:>8.3f}{r['coverage_90']:>8.3f}"
              f"{r['coverage_95']:>8.3f}{r['std_ratio_to_exact']:>11.3f}"
              f"{r['seconds_per_image']:>9.2f}"
              + (f"{r['max_mean_error']:>10.1e}{r['std_ratio_min']:>8.4f}-{r['std_ratio_max']:.4f}"
                 if "max_mean_error" in r else "")
              + (f"  bit-identical: {r['bit_identical']}" if "bit_identical" in r else ""))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"size": size, "sigma": sigma, "scale": scale, "rows": rows,
                                    "command": "python benchmarks/calibration.py "
                                               + " ".join(argv if argv is not None
                                                          else sys.argv[1:]),
                                    "threads": torch.get_num_threads(),
                                    "load": list(os.getloadavg())}, indent=2))
    print(f"wrote {args.out}")
    return rows


def blur_rows(truths, gen, prior, sigma) -> list[dict]:
    """Exact and structured-VI rows for a reflective Gaussian blur (closed forms, DCT)."""
    op = Blur(gaussian_psf(7, 1.2))  # boundary="reflect": diagonal in the DCT basis
    observations = op(truths) + sigma * torch.randn(truths.shape, generator=gen,
                                                    dtype=torch.float64)
    kw = dict(prior=prior, sigma=sigma, operator=op)
    exact = [exact_posterior(restoration_model, y, **kw) for y in observations]
    stds, means = [p.std for p in exact], [p.mean for p in exact]
    return [
        evaluate("exact, blur", lambda y: exact_posterior(restoration_model, y, **kw),
                 truths, observations, stds),
        evaluate("VI structured, blur", lambda y: variational(restoration_model, y,
                                                              num_samples=0, **kw),
                 truths, observations, stds, means, rerun=True),
    ]


def mcmc_rows(truths, observations, exact_stds, prior, sigma) -> list[dict]:
    """Rows for the samplers of ``bayes_restore.infer.mcmc`` on the same Gaussian model."""
    from bayes_restore.infer.mcmc import mcmc

    rows = []
    for sampler in ("skrock", "myula", "lm"):
        def run(y, sampler=sampler):
            return mcmc(restoration_model, y, prior=prior, sigma=sigma, sampler=sampler,
                        num_samples=2000, generator=torch.Generator().manual_seed(0))

        try:
            rows.append(evaluate(f"MCMC {sampler}", run, truths, observations, exact_stds))
        except ValueError as err:  # the sampler may not take this prior
            print(f"MCMC {sampler}: skipped ({err})")
    return rows


if __name__ == "__main__":
    main()
