"""Calibration of the uncertainty engines: coverage of credible intervals on prior draws.

Images are drawn from a proper Gaussian-gradient prior (the GMRF on the non-constant
modes, plus a level of 0.5), observed with Gaussian noise, and restored by every engine
under the true model. An engine is calibrated when its p-intervals cover a fraction p of
the true pixels. The exact engine must; mean-field VI is known to be too narrow, and this
measures by how much. Optional rows for the samplers (``--mcmc``) use
``bayes_restore.infer.mcmc`` when it is available.

Run:  python benchmarks/calibration.py            (about a minute)
      python benchmarks/calibration.py --quick    (seconds; smaller)
Writes benchmarks/results/calibration.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from bayes_restore import ConvergenceWarning
from bayes_restore.differences import idct2, laplacian_eigenvalues
from bayes_restore.infer import exact_posterior, variational
from bayes_restore.models import restoration_model
from bayes_restore.priors import GaussianGradient

PROBS = (0.5, 0.9, 0.95)
RESULTS = Path(__file__).parent / "results" / "calibration.json"


def prior_draws(n: int, size: int, scale: float, gen: torch.Generator) -> torch.Tensor:
    """Draws of the Gaussian-gradient prior on its non-constant modes, level 0.5."""
    mu = laplacian_eigenvalues(size, size)
    z = torch.randn(n, size, size, generator=gen, dtype=torch.float64)
    coeff = torch.where(mu > 0, scale * z / mu.clamp_min(1e-30).sqrt(), torch.zeros_like(z))
    return idct2(coeff) + 0.5


def evaluate(name: str, run, truths, observations, exact_stds) -> dict:
    """Coverage at PROBS and the std ratio to the exact posterior, pooled over images."""
    covers = {p: [] for p in PROBS}
    ratios, seconds = [], 0.0
    for x, y, std_exact in zip(truths, observations, exact_stds, strict=True):
        start = time.perf_counter()
        post = run(y)
        seconds += time.perf_counter() - start
        for p in PROBS:
            covers[p].append(post.coverage(x, p))
        ratios.append(float((post.std / std_exact).mean()))
    return {
        "engine": name,
        "images": len(truths),
        **{f"coverage_{int(p * 100)}": float(np.mean(covers[p])) for p in PROBS},
        "std_ratio_to_exact": float(np.mean(ratios)),
        "seconds_per_image": seconds / len(truths),
    }


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--mcmc", action="store_true", help="add the sampler rows")
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
                                   num_samples=0, generator=torch.Generator().manual_seed(0))
        return run

    rows = [
        evaluate("exact (DCT)", lambda y: exact_posterior(restoration_model, y, prior=prior,
                                                          sigma=sigma),
                 truths, observations, exact_stds),
        evaluate("VI mean field", vi("normal"), truths[:n_vi], observations[:n_vi],
                 exact_stds[:n_vi]),
        evaluate("VI low rank (10)", vi("lowrank"), truths[:n_vi], observations[:n_vi],
                 exact_stds[:n_vi]),
    ]
    if args.mcmc:
        rows.extend(
            mcmc_rows(truths[:n_vi], observations[:n_vi], exact_stds[:n_vi], prior, sigma)
        )
    header = (f"{'engine':<20}{'images':>7}{'50 %':>8}{'90 %':>8}{'95 %':>8}"
              f"{'std/exact':>11}{'s/image':>9}")
    print(f"Gaussian-gradient prior, {size}x{size}, sigma = {sigma}, b = {scale}")
    print(header)
    for r in rows:
        print(f"{r['engine']:<20}{r['images']:>7}{r['coverage_50']:>8.3f}{r['coverage_90']:>8.3f}"
              f"{r['coverage_95']:>8.3f}{r['std_ratio_to_exact']:>11.3f}"
              f"{r['seconds_per_image']:>9.2f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"size": size, "sigma": sigma, "scale": scale, "rows": rows},
                                  indent=2))
    print(f"wrote {RESULTS}")
    return rows


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
