"""
Deblurring, super-resolution and inpainting with one model
==========================================================

The same Bayesian model restores far more than noisy images: only the operator ``A`` of
``y = A x + noise`` changes. Here a total-variation prior restores a crop of
scikit-image's coins from four observations, all with noise of std 0.01:

- a Gaussian blur (std 1.5 pixels, ``Blur``);
- a 2x and a 4x smaller image (block means, ``Downsample``), compared with bicubic
  interpolation;
- half of the pixels missing at random (``Mask``).

Each restoration is a MAP estimate, ``restore(y, "tv", sigma=0.01, weight=lam,
operator=A)``: the minimiser of ``|y - A x|^2 + lam TV(x)``, certified by a primal-dual
gap. The weights are fixed here (chosen on the camera image by
``benchmarks/superres.py``, whose table in the docs covers seven images).

The posterior also says where the x2 super-resolved image is unsure:
``restore(..., method="mcmc")`` draws from the TV posterior (SK-ROCK) and its per-pixel
standard deviation is largest along edges and in textures, where many fine images
share the same block means.
"""

from __future__ import annotations

import numpy as np
import torch

from bayes_restore import restore
from bayes_restore.operators import Blur, Downsample, Mask, gaussian_psf

SIGMA = 0.01
#: energy weights lambda = 2 w (w of 0.5 |A x - y|^2 + w TV(x)), per task
WEIGHTS = {"deblur": 1.2e-3, "sr2": 2.4e-3, "sr4": 1.2e-3, "inpaint": 2.4e-3}


def _psnr(x, clean) -> float:
    from skimage.metrics import peak_signal_noise_ratio

    return float(peak_signal_noise_ratio(clean, np.asarray(x, dtype=clean.dtype),
                                         data_range=1.0))


def main(size: int = 192, out: str | None = "restoration_tasks.png",
         num_samples: int = 200) -> dict:
    """Run the four tasks on a ``size x size`` crop; return the PSNRs (dB) and timings."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from skimage import data, img_as_float, transform

    clean = img_as_float(data.coins())[40 : 40 + size, 100 : 100 + size]
    size = clean.shape[0]
    rng = np.random.default_rng(0)
    x = torch.from_numpy(clean)
    results: dict = {}

    # deblurring
    blur = Blur(gaussian_psf(9, 1.5))
    y_blur = blur.forward(x).numpy() + SIGMA * rng.standard_normal(clean.shape)
    deblurred = restore(y_blur, "tv", sigma=SIGMA, weight=WEIGHTS["deblur"], operator=blur).map
    results["psnr_blurred"], results["psnr_deblurred"] = _psnr(y_blur, clean), _psnr(
        deblurred, clean)

    # super-resolution x2 and x4, against bicubic interpolation
    upscaled = {}
    for f in (2, 4):
        down = Downsample(f)
        small = down.forward(x).numpy() + SIGMA * rng.standard_normal((size // f, size // f))
        bicubic = transform.resize(small, clean.shape, order=3, mode="edge",
                                   anti_aliasing=False)
        post = restore(small, "tv", sigma=SIGMA, weight=WEIGHTS[f"sr{f}"], operator=down)
        upscaled[f] = (small, bicubic, post.map)
        results[f"psnr_bicubic_x{f}"] = _psnr(bicubic, clean)
        results[f"psnr_tv_x{f}"] = _psnr(post.map, clean)
        results[f"iterations_x{f}"] = post.info.iterations

    # where is the x2 image unsure? the TV posterior by SK-ROCK
    small2 = upscaled[2][0]
    samples = restore(small2, "tv", sigma=SIGMA, weight=WEIGHTS["sr2"], operator=Downsample(2),
                      method="mcmc", num_samples=num_samples, num_chains=1, seed=0)
    std = np.asarray(samples.std)
    edges = np.hypot(*np.gradient(clean))
    strong = edges > np.quantile(edges, 0.9)
    flat = edges < np.quantile(edges, 0.5)
    results["std_edges"] = float(std[strong].mean())
    results["std_flat"] = float(std[flat].mean())

    # inpainting
    observed = rng.random(clean.shape) < 0.5
    mask = Mask(torch.from_numpy(observed))
    y_mask = np.where(observed, clean + SIGMA * rng.standard_normal(clean.shape), 0.0)
    inpainted = restore(y_mask, "tv", sigma=SIGMA, weight=WEIGHTS["inpaint"], operator=mask).map
    results["psnr_masked"], results["psnr_inpainted"] = _psnr(y_mask, clean), _psnr(
        inpainted, clean)

    fig, axes = plt.subplots(3, 4, figsize=(13, 10), layout="constrained")
    panels = [
        (clean, "clean"),
        (y_blur, f"blurred + noise, {results['psnr_blurred']:.1f} dB"),
        (deblurred, f"TV deblurred, {results['psnr_deblurred']:.1f} dB"),
        (std, "x2 posterior std (SK-ROCK)"),
        (upscaled[2][1], f"x2 bicubic, {results['psnr_bicubic_x2']:.1f} dB"),
        (upscaled[2][2], f"x2 TV MAP, {results['psnr_tv_x2']:.1f} dB"),
        (upscaled[4][1], f"x4 bicubic, {results['psnr_bicubic_x4']:.1f} dB"),
        (upscaled[4][2], f"x4 TV MAP, {results['psnr_tv_x4']:.1f} dB"),
        (y_mask, f"50 % of the pixels, {results['psnr_masked']:.1f} dB"),
        (inpainted, f"TV inpainted, {results['psnr_inpainted']:.1f} dB"),
        (upscaled[4][0], "x4 observation"),
        (np.abs(upscaled[2][2] - clean), "x2 TV MAP: |error|"),
    ]
    for ax, (img, title) in zip(axes.ravel(), panels, strict=True):
        if "std" in title or "error" in title:
            ax.imshow(img, cmap="magma")
        else:
            ax.imshow(np.clip(img, 0, 1), cmap="gray", vmin=0, vmax=1)
        ax.set_title(title, fontsize=10)
        ax.set_axis_off()
    if out is not None:
        fig.savefig(out, dpi=80)
    plt.close(fig)
    for key, value in results.items():
        print(f"{key:>18}: {value:.4g}")
    return results


if __name__ == "__main__":
    main()
