"""
Where can the restored image be trusted?
========================================

A MAP image says nothing about how sure each pixel is. The posterior does. Here:

1. total-variation denoising of a crop of scikit-image's camera image, with the posterior
   sampled by SK-ROCK (proximal Langevin): mean, per-pixel std and the width of the 90 %
   credible interval, then the errors against the std (we know the truth here) and the
   posterior of single pixels, one in a flat region and one on an edge. A std map from
   finitely many draws has a Monte Carlo error of its own (grain): the sampler estimates it
   from the draws' effective sample sizes, and the figure states it;
2. calibration: on images drawn from a Gaussian-gradient prior, the exact posterior's
   intervals cover what they claim; Pyro SVI's mean-field guide (``engine="svi"``) is too
   narrow (``method="vi"`` on the package's own model is the exact posterior here).
"""

from __future__ import annotations

import numpy as np
import torch

from bayes_restore import restore
from bayes_restore.differences import idct2, laplacian_eigenvalues
from bayes_restore.plot import (
    calibration_curve,
    error_vs_std,
    pixel_histograms,
    uncertainty_panel,
)


def main(size: int = 128, num_samples: int = 400, out_prefix: str | None = None) -> dict:
    """Run both parts; return the coverages and the std at the two chosen pixels."""
    import matplotlib

    matplotlib.use("Agg")
    from skimage import data, img_as_float

    # TV posterior of a noisy crop
    clean = img_as_float(data.camera())[80 : 80 + size, 200 : 200 + size]
    rng = np.random.default_rng(0)
    sigma = 0.1
    noisy = clean + sigma * rng.standard_normal(clean.shape)
    # the TV scale fixed at SURE's estimate (restore's default); sample_scale=True would
    # sample it with the image (the hierarchical model: docs/hyperparameters.md)
    post = restore(noisy, "tv", sigma=sigma, method="mcmc", num_samples=num_samples,
                   num_chains=2, sampler="skrock", sample_scale=False,
                   generator=torch.Generator().manual_seed(0))
    mc_error = post.diagnostics["std_mc_error"]  # relative, at the median pixel
    panel = uncertainty_panel(post, noisy)
    panel.suptitle(f"posterior std from {post.samples.shape[0] * num_samples} draws: Monte "
                   f"Carlo error {100 * mc_error:.1f} % at the median pixel")
    figures = [panel, error_vs_std(post, clean)]
    grad_mag = np.hypot(*np.gradient(clean))
    flat = np.unravel_index(np.argmin(grad_mag + (clean < 0.2)), clean.shape)
    edge = np.unravel_index(np.argmax(grad_mag), clean.shape)
    figures.append(pixel_histograms(post, [flat, edge]))

    # calibration on data drawn from the model
    n, b = 64, 0.05
    mu = laplacian_eigenvalues(n, n)
    z = torch.randn(n, n, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    truth = idct2(torch.where(mu > 0, b * z / mu.clamp_min(1e-30).sqrt(), 0 * z)) + 0.5
    y = (truth + sigma * torch.randn(n, n, generator=torch.Generator().manual_seed(2),
                                     dtype=torch.float64)).numpy()
    exact = restore(y, "gaussian", sigma=sigma, scale=b, method="exact")
    import warnings

    from bayes_restore import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        vi = restore(y, "gaussian", sigma=sigma, scale=b, method="vi", engine="svi",
                     num_samples=0, generator=torch.Generator().manual_seed(0))
    figures.append(calibration_curve({"exact": exact, "Pyro SVI, mean field": vi}, truth.numpy()))
    if out_prefix is not None:
        for i, fig in enumerate(figures):
            fig.savefig(f"{out_prefix}{i}.png", dpi=80)
    result = {
        "std_flat": float(post.std[flat]),
        "std_edge": float(post.std[edge]),
        "coverage_exact_90": exact.coverage(truth.numpy(), 0.9),
        "coverage_vi_90": vi.coverage(truth.numpy(), 0.9),
        "mean_std": float(post.std.mean()),
        "std_mc_error": mc_error,
    }
    print(f"std map Monte Carlo error: {100 * mc_error:.1f} % at the median pixel")
    print(f"posterior std: flat pixel {result['std_flat']:.3f}, edge pixel "
          f"{result['std_edge']:.3f}; 90 % coverage: exact {result['coverage_exact_90']:.3f}, "
          f"mean-field VI {result['coverage_vi_90']:.3f}")
    return result


if __name__ == "__main__":
    main()
