"""Noise level and prior-scale estimation: the parameters of restoration, read from the data.

Three questions, three tools (``shared/design.md`` sections 3-4):

- **Noise level** ``sigma``: :func:`estimate_sigma`, a robust estimate from the finest
  frequencies, where images have the least energy and white noise as much as anywhere,
  told from fine texture by its kurtosis (Gaussian noise has none).
- **Gaussian-gradient prior scale**: :func:`gaussian_empirical_bayes`, exact empirical Bayes
  on the closed-form evidence.
- **Total-variation weight**: :func:`tv_weight_sure` (Stein's unbiased risk estimate, the
  default of :func:`choose_tv_weight`), :func:`tv_scale_sapg` (maximum marginal likelihood
  by stochastic approximation) and the hierarchical model :func:`hierarchical_tv_model`
  with a Gamma hyperprior on ``theta = 1 / b``, sampled by :func:`tv_scale_gibbs`
  (proximal Langevin steps for ``x`` and the exact Gamma conditional :func:`gibbs_theta`).

Conventions: ``weight`` is the package's energy weight ``lambda`` of
``|y - x|^2 + lambda TV(x)`` (what :func:`~bayes_restore.denoise` takes); scikit-image's
``denoise_tv_chambolle`` weight, the ``w`` of
:func:`~bayes_restore.infer.tv.tv_denoise_pdhg`, is ``w = lambda / 2 = sigma^2 / b``.
The joint-MAP fixed point ``theta = (N - 1) / TV(x_MAP)`` is deliberately absent: on
natural images it collapses towards a constant image (design page, section 4).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyro
import pyro.distributions as dist
import torch

from ._validation import as_float, check_finite, check_positive, to_tensor
from .differences import dct2, dct_matrix, gradient_energy, laplacian_eigenvalues
from .likelihoods import GaussianLikelihood
from .models import X_SITE, Y_SITE
from .priors import TotalVariation

__all__ = [
    "THETA_SITE",
    "THETA_HYPERPRIOR",
    "ScaleEstimate",
    "estimate_sigma",
    "gaussian_empirical_bayes",
    "tv_weight_sure",
    "tv_sure_risk",
    "tv_scale_sapg",
    "tv_scale_gibbs",
    "hierarchical_tv_model",
    "gibbs_theta",
    "choose_tv_weight",
    "TV_METHODS",
]

#: name of the precision site ``theta = 1 / b`` of :func:`hierarchical_tv_model`
THETA_SITE = "theta"
#: default ``(alpha, beta0)`` of the Gamma hyperprior on ``theta = 1 / b``: an exponential of
#: mean ``theta = 100`` (``b = 0.01``), weak against the ``N - 1`` of any real image
THETA_HYPERPRIOR = (1.0, 0.01)
#: seed of SURE's Monte Carlo probe when no generator is given
_SURE_PROBE_SEED = 0
#: accepted values of ``choose_tv_weight(..., method=...)``
TV_METHODS = ("sure", "sapg", "hierarchical")

# --- noise level ----------------------------------------------------------------------------

#: Phi^{-1}(3/4): the median of |N(0, 1)|
_MAD_TO_STD = 0.6744897501960817
#: block size and stride of the local estimator, and the first kept DCT frequency
_BLOCK, _STRIDE, _KMIN = 16, 8, 12
#: quantile of the block energies and scipy.stats.chi2.ppf(0.1, 16) / 16: the same quantile
#: of the mean of 16 squared N(0, 1) (the 4 x 4 kept coefficients of a pure-noise block)
_QUANTILE, _CHI2_QUANTILE = 0.1, 0.5820147721122504
#: smallest image side for the block and kurtosis estimators (fewer than ~225 blocks below it)
_MIN_BLOCK_SIDE = 128
#: kurtosis estimator: 8 x 8 DCT blocks at stride 2, the bands with u + v >= 6 (43 of 64),
#: and the grid of sigma^2 values, 400 points on [0, smallest band variance]
_ZW_BLOCK, _ZW_STRIDE, _ZW_MIN_FREQ, _ZW_GRID = 8, 2, 6, 400
#: standard error of one band's excess kurtosis on pure noise, measured on 512 x 512 images
#: (253^2 blocks); it scales as 1 / sqrt(number of blocks)
_ZW_KURTOSIS_SE, _ZW_REF_BLOCKS = 0.025, 253**2
#: blocks transformed at a time (their 64 coefficients in float64: 32 MiB), and about the
#: most blocks used (a 1024 x 1024 image at stride 2: larger ones get a wider stride)
_ZW_CHUNK_BLOCKS, _ZW_MAX_BLOCKS = 1 << 16, 1 << 18
#: the fit replaces "blocks" only if its weighted residual sum of squares at the blocks value
#: exceeds its minimum by more than this (the data clearly prefer the lower noise level) ...
_ZW_MIN_DROP = 10.0
#: ... and only if the fine-scale power is spatially homogeneous: the blocks estimate at least
#: this share of the weakest band's mean power. Below it the image has regions quieter than
#: its average, where "blocks" reads the noise itself (0.58-0.84 on coins, coffee and page at
#: sigma = 0.02, where the fit is 7-22 % low; 1.03-1.06 on grass at sigma >= 0.05)
_ZW_MIN_HOMOGENEITY = 0.9
#: ... and only if the fitted clean-band kurtosis ``kappa`` is at least this many standard
#: errors of one band's kurtosis, at a noise level above 0. Without heavy tails to see (kappa
#: within noise: Gaussian-like fine texture, or no texture at all) the kurtosis cannot tell
#: texture from noise and the fit drifts to ``sigma = 0``: it did on 29 of 1125 small
#: (128-256 px) noisy images, where the fitted kappa was 0.4-9.8 standard errors; where the
#: fit is right (grass, coins, coffee at sigma >= 0.05) it is 16 to over 1000
_ZW_MIN_KURTOSIS = 10.0
_SIGMA_METHODS = ("auto", "kurtosis", "blocks", "mad")


def estimate_sigma(image: Any, *, method: str = "auto") -> Any:
    r"""Estimate the standard deviation of additive white Gaussian noise, per 2-D slice.

    Three estimators, all on the finest frequencies, where natural images have the least
    energy and white noise as much as anywhere:

    - ``"mad"``: Donoho's (1995) wavelet median absolute deviation on the finest diagonal
      (Haar ``HH``) band, ``sigma = median(|HH|) / 0.6745``. Texture and edges leak into
      the band and bias it upwards.
    - ``"blocks"``: the same idea made local, so the flattest parts of the image decide.
      Overlapping 16 x 16 blocks (stride 8) are transformed by the orthonormal DCT; the
      mean square of each block's 4 x 4 highest-frequency coefficients is
      ``sigma^2 chi^2_16 / 16`` where the image is smooth and larger where it is not; the
      10 % quantile over blocks, divided by the same quantile of ``chi^2_16 / 16``, is
      ``sigma^2``. Biased upwards where the clean image has pixel-scale texture everywhere
      (no estimator of the fine-scale *power* tells such texture from noise).
    - ``"kurtosis"``: ``"blocks"``, corrected downwards by the *shape* of the fine-scale
      coefficients (Zoran & Weiss 2009). Natural textures are heavy-tailed, noise is not:
      for the 43 bands ``u + v >= 6`` of the 8 x 8 DCT (all blocks, stride 2), of variance
      ``v_s`` and excess kurtosis ``k_s``, ``k_s = kappa (1 - sigma^2 / v_s)^2`` if the clean
      image has the same kurtosis ``kappa`` in these bands. ``sigma^2`` is fitted on a grid
      over ``[0, min_s v_s]`` by least squares weighted by the kurtosis estimates' standard
      errors (``kappa`` in closed form). The fit replaces the blocks estimate only when it is
      lower, the data prefer it clearly (residual drop > 10), the fine-scale power is
      spatially homogeneous (the blocks estimate >= 0.9 of the weakest band's variance) and
      the fit has seen heavy tails: ``kappa`` at least 10 standard errors, at a noise level
      above 0. Otherwise (Gaussian-like or no fine texture, as on small or downscaled images)
      it is the blocks estimate. About 0.1 s per 512 x 512 slice (``"blocks"``: 4 ms);
      beyond 1024 x 1024 the blocks are spaced wider, so that about 2^18 of them are used.

    ``"auto"`` takes ``"kurtosis"`` when both sides are at least 128 pixels, else ``"mad"``
    (the kurtosis and block estimates need enough blocks). ``"kurtosis"`` and ``"blocks"``
    raise below 16 x 16. All are exact for pure noise and piecewise-constant images away
    from edges. A constant slice gets exactly 0; any other slice gets a finite estimate
    > 0: where the robust statistic is exactly 0 (a noise-free image with flat regions) the
    estimate falls back to ``"mad"``, then to the mean absolute difference of neighbouring
    pixels (an upper bound). Accuracy, measured on scikit-image's images at several sizes
    and noise levels: see the Hyperparameters page of the documentation.

    Parameters
    ----------
    image : numpy.ndarray or torch.Tensor
        Floating-point image(s), shape ``(H, W)``, ``(C, H, W)`` or ``(N, C, H, W)``,
        noise not clipped. Each 2-D slice (channel) gets its own estimate.
    method : {"auto", "kurtosis", "blocks", "mad"}, default "auto"

    Returns
    -------
    float, numpy.ndarray or torch.Tensor
        Shape ``image.shape[:-2]``: a Python float for a 2-D numpy array, a numpy array
        for more dimensions; a tensor (of the input's dtype and device) for tensor input.

    Raises
    ------
    ValueError
        Naming the argument: a non-float, NaN or infinite image, one of the wrong number of
        dimensions or smaller than 2 x 2 (16 x 16 for ``"kurtosis"`` and ``"blocks"``), an
        unknown ``method``.

    References
    ----------
    D. L. Donoho, "De-noising by soft-thresholding", IEEE Trans. Inf. Theory 41(3), 1995.

    D. Zoran, Y. Weiss, "Scale invariance and noise in natural images", ICCV 2009.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> clean = np.zeros((256, 256)); clean[64:192, 64:192] = 1.0
    >>> noisy = clean + 0.1 * rng.standard_normal(clean.shape)
    >>> abs(estimate_sigma(noisy) / 0.1 - 1) < 0.05
    True
    >>> estimate_sigma(np.stack([noisy, 2 * noisy])).round(1)  # one value per channel
    array([0.1, 0.2])
    >>> [round(estimate_sigma(noisy, method=m), 2) for m in ("kurtosis", "blocks", "mad")]
    [0.1, 0.1, 0.1]
    >>> estimate_sigma(np.full((64, 64), 0.5)), estimate_sigma(clean) > 0  # constant, noise-free
    (0.0, True)
    """
    y, as_numpy = _image_tensor(image)
    if method not in _SIGMA_METHODS:
        raise ValueError(f"method must be one of {_SIGMA_METHODS}, got {method!r}")
    h, w = y.shape[-2:]
    if min(h, w) < 2:
        raise ValueError(f"image must be at least 2 x 2 to estimate the noise, got {h} x {w}")
    if method == "auto":
        method = "kurtosis" if min(h, w) >= _MIN_BLOCK_SIDE else "mad"
    if method in ("kurtosis", "blocks") and min(h, w) < _BLOCK:
        raise ValueError(
            f"method={method!r} needs an image of at least {_BLOCK} x {_BLOCK}, got {h} x {w}"
        )
    sigma = _sigma_slices(y.detach().to(torch.float64), method)
    if as_numpy:
        out = sigma.cpu().numpy()
        return float(out) if out.ndim == 0 else out
    return sigma.to(dtype=y.dtype, device=y.device)


def _image_tensor(image: Any) -> tuple[torch.Tensor, bool]:
    y, as_numpy = to_tensor(image, "image")
    if y.dim() not in (2, 3, 4):
        raise ValueError(
            f"image must be (H, W), (C, H, W) or (N, C, H, W), got {y.dim()} dimensions"
        )
    if y.numel() == 0:
        raise ValueError(f"image must not be empty, got shape {tuple(y.shape)}")
    check_finite(y, "image")
    return y, as_numpy


def _sigma_slices(z: torch.Tensor, method: str) -> torch.Tensor:
    """One estimate per 2-D slice of the float64 ``z``: 0 exactly for a constant slice, else > 0.

    The estimators run at unit scale (each slice divided by its largest magnitude: no overflow
    or underflow of the squares). A non-constant slice whose robust statistic is exactly 0
    (more than 10 % of the blocks or half of the Haar coefficients exactly 0: a noise-free
    image with flat regions) falls back to ``"mad"``, then to :func:`_sigma_differences`.
    """
    scale = z.abs().amax((-2, -1), keepdim=True)
    z = z / torch.where(scale > 0, scale, torch.ones_like(scale))
    estimators = {"kurtosis": _sigma_kurtosis, "blocks": _sigma_blocks, "mad": _sigma_mad}
    sigma = estimators[method](z)
    constant = (z == z[..., :1, :1]).flatten(-2).all(-1)
    for fallback in (_sigma_mad, _sigma_differences):
        missing = ~(sigma > 0) & ~constant  # also catches a NaN
        if not bool(missing.any()):
            break
        sigma = torch.where(missing, fallback(z), sigma)
    return torch.where(constant, torch.zeros_like(sigma), sigma) * scale[..., 0, 0]


def _sigma_differences(z: torch.Tensor) -> torch.Tensor:
    """``sqrt(pi) / 2`` times the mean absolute difference of neighbouring pixels, both axes.

    Exact for white noise (a difference is ``N(0, 2 sigma^2)``), an upper bound otherwise, and
    > 0 on every non-constant slice: the last resort of :func:`_sigma_slices`.
    """
    dy = (z[..., 1:, :] - z[..., :-1, :]).abs().flatten(-2)
    dx = (z[..., :, 1:] - z[..., :, :-1]).abs().flatten(-2)
    return torch.cat([dy, dx], -1).mean(-1) * (math.sqrt(math.pi) / 2)


def _sigma_mad(z: torch.Tensor) -> torch.Tensor:
    """Donoho's MAD on the finest diagonal Haar band: ``(a - b - c + d) / 2`` per 2 x 2 block."""
    h, w = z.shape[-2:]
    z = z[..., : h // 2 * 2, : w // 2 * 2]
    hh = (z[..., 0::2, 0::2] - z[..., 0::2, 1::2] - z[..., 1::2, 0::2] + z[..., 1::2, 1::2]) / 2
    return hh.abs().flatten(-2).median(dim=-1).values / _MAD_TO_STD


def _sigma_blocks(z: torch.Tensor) -> torch.Tensor:
    """The low quantile of local high-frequency energies, corrected by the chi^2 quantile."""
    blocks = z.unfold(-2, _BLOCK, _STRIDE).unfold(-2, _BLOCK, _STRIDE)  # (..., nh, nw, B, B)
    c = dct_matrix(_BLOCK, dtype=z.dtype, device=z.device)[_KMIN:]  # the top frequencies
    coeff = c @ blocks @ c.T  # (..., nh, nw, k, k)
    energy = coeff.square().mean((-2, -1)).flatten(-2)
    q = torch.quantile(energy, _QUANTILE, dim=-1)
    return torch.sqrt(q / _CHI2_QUANTILE)


def _sigma_kurtosis(z: torch.Tensor) -> torch.Tensor:
    """The blocks estimate, lowered to the Zoran-Weiss fit where the data clearly prefer it."""
    # both estimates scale with the image: work at unit scale, where fourth powers of the
    # coefficients cannot overflow (they would beyond values of ~1e75)
    scale = z.abs().amax((-2, -1), keepdim=True)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return _sigma_kurtosis_unit(z / scale) * scale[..., 0, 0]


def _sigma_kurtosis_unit(z: torch.Tensor) -> torch.Tensor:
    s2_blocks = _sigma_blocks(z).square()
    s2, rss, v_min, kappa, se = _zoran_weiss_profile(z)
    best = rss.argmin(-1, keepdim=True)
    s2_fit, rss_fit = s2.gather(-1, best).squeeze(-1), rss.gather(-1, best).squeeze(-1)
    kappa_fit = kappa.gather(-1, best).squeeze(-1)
    tiny = torch.finfo(z.dtype).tiny  # a constant image: v_min = 0, and "blocks" says 0
    at_blocks = (s2_blocks / v_min.clamp_min(tiny)).clamp(0, 1) * (_ZW_GRID - 1)  # on the grid
    rss_blocks = rss.gather(-1, at_blocks.round().long().unsqueeze(-1)).squeeze(-1)
    use = (
        (s2_fit < s2_blocks)
        & (rss_blocks - rss_fit > _ZW_MIN_DROP)
        & (s2_blocks >= _ZW_MIN_HOMOGENEITY * v_min)
        & (s2_fit > 0)
        & (kappa_fit >= _ZW_MIN_KURTOSIS * se)
    )
    return torch.where(use, s2_fit, s2_blocks).sqrt()


def _zoran_weiss_profile(z: torch.Tensor) -> tuple[torch.Tensor, ...]:
    r"""Weighted residual sum of squares of ``k_s = kappa (1 - s2 / v_s)^2`` on a grid of ``s2``.

    Returns the grid ``(..., G)``, the residuals ``(..., G)`` (``kappa >= 0`` profiled out by
    least squares), the smallest band variance ``(...)``, the fitted ``kappa >= 0`` on the
    grid ``(..., G)`` and the standard error of one band's kurtosis on pure noise (a float).
    """
    n = _ZW_BLOCK
    c = dct_matrix(n, dtype=z.dtype, device=z.device)
    # stride 2, or wider on large images so that about _ZW_MAX_BLOCKS blocks are used
    stride = max(_ZW_STRIDE, math.ceil(math.sqrt(z.shape[-2] * z.shape[-1] / _ZW_MAX_BLOCKS)))
    blocks = z.unfold(-2, n, stride).unfold(-2, n, stride)  # (..., nh, nw, n, n)
    u = torch.arange(n, device=z.device)
    keep = u[:, None] + u[None, :] >= _ZW_MIN_FREQ
    # the second and fourth moments per band, a few block rows at a time: the coefficients
    # of all blocks would take 128 bytes per pixel (8 GiB for a 8192 x 8192 image)
    nh, nw = blocks.shape[-4], blocks.shape[-3]
    rows = max(1, _ZW_CHUNK_BLOCKS // (nw * math.prod(z.shape[:-2])))  # all slices at once
    m2 = m4 = 0.0
    for r in range(0, nh, rows):
        coeff = (c @ blocks[..., r : r + rows, :, :, :] @ c.T)[..., keep]  # (..., r, nw, bands)
        sq = coeff.square_()
        m2 = m2 + sq.sum((-3, -2))
        m4 = m4 + sq.square_().sum((-3, -2))
    count = nh * nw
    var = m2 / count
    kurt = m4 / count / var.square() - 3  # excess kurtosis per band
    v_min = var.min(-1).values
    s2 = torch.linspace(0, 1, _ZW_GRID, dtype=z.dtype, device=z.device) * v_min.unsqueeze(-1)
    shape = (1 - s2.unsqueeze(-1) / var.unsqueeze(-2)).clamp_min(0).square()  # (..., G, bands)
    kappa = (shape * kurt.unsqueeze(-2)).sum(-1) / shape.square().sum(-1).clamp_min(1e-300)
    se = _ZW_KURTOSIS_SE * math.sqrt(_ZW_REF_BLOCKS / count)
    weight = 1 / (se * (1 + kurt.clamp_min(0))).square()  # heavier tails: noisier estimate
    kappa = kappa.clamp_min(0)
    resid = kurt.unsqueeze(-2) - kappa.unsqueeze(-1) * shape
    return s2, (weight.unsqueeze(-2) * resid.square()).sum(-1), v_min, kappa, se


# --- Gaussian-gradient prior: exact empirical Bayes ------------------------------------------


def gaussian_empirical_bayes(
    y: Any, *, sigma: float | None = None
) -> tuple[float, float]:
    r"""Empirical Bayes for the Gaussian-gradient prior: ``(sigma, b)`` maximising the evidence.

    In the DCT basis the coefficients of ``y = x + n`` are independent,
    ``y_hat_kl ~ N(0, sigma^2 + b^2 / mu_kl)`` for ``mu_kl > 0``
    (:func:`~bayes_restore.infer.gaussian.gaussian_log_evidence`). With the ratio
    ``r = b^2 / sigma^2`` fixed, the best ``sigma^2`` is explicit,
    ``mean_kl(y_hat_kl^2 / (1 + r / mu_kl))``, so the joint maximisation is a 1-D search
    over ``log r`` (a log-grid, then golden sections); with ``sigma`` given, a 1-D search
    over ``log b``. One ``(sigma, b)`` for the whole input: the channels and images of
    ``y`` share them, as in :func:`~bayes_restore.denoise`.

    Parameters
    ----------
    y : numpy.ndarray or torch.Tensor
        Observation(s), shape ``(H, W)``, ``(C, H, W)`` or ``(N, C, H, W)``.
    sigma : float, optional
        Known noise level; estimated jointly with ``b`` when ``None``.

    Returns
    -------
    sigma : float
        The given or the maximum-evidence noise level.
    scale : float
        The maximum-evidence prior scale ``b``; the MAP weight is ``sigma^2 / b^2``.

    Raises
    ------
    ValueError
        For a bad image or ``sigma`` (naming it), or an image without non-constant modes.

    Examples
    --------
    >>> import torch
    >>> from bayes_restore.differences import idct2, laplacian_eigenvalues
    >>> g = torch.Generator().manual_seed(0)
    >>> mu = laplacian_eigenvalues(128, 128)
    >>> z = torch.randn(128, 128, generator=g, dtype=torch.float64)
    >>> x = idct2(torch.where(mu > 0, 0.02 * z / mu.clamp_min(1e-12).sqrt(), 0 * z))
    >>> y = x + 0.1 * torch.randn(128, 128, generator=g, dtype=torch.float64)
    >>> s, b = gaussian_empirical_bayes(y)
    >>> round(s, 2), round(b, 2)
    (0.1, 0.02)
    """
    t, _ = _image_tensor(y)
    c2, mu = _dct_power(t.detach().to(torch.float64))
    if c2.numel() == 0:
        raise ValueError("y must have at least two pixels per image (a non-constant mode)")
    if sigma is not None:
        check_positive(sigma, "sigma")
        s2 = as_float(sigma, "sigma") ** 2

        def neg_evidence_b(log_b: float) -> float:
            var = s2 + math.exp(2 * log_b) / mu
            return float(0.5 * (c2 / var + torch.log(var)).sum())

        scale = math.exp(_minimise_1d(neg_evidence_b, _log_range(c2, mu)))
        return math.sqrt(s2), scale

    def profile(log_r: float) -> tuple[float, float]:
        v = 1 + math.exp(log_r) / mu
        s2 = float((c2 / v).mean())
        return 0.5 * (c2.numel() * math.log(s2) + float(torch.log(v).sum())), s2

    log_r = _minimise_1d(lambda t: profile(t)[0], _log_ratio_range(c2, mu))
    s2 = profile(log_r)[1]
    return math.sqrt(s2), math.sqrt(s2 * math.exp(log_r))


def _dct_power(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared DCT coefficients of every 2-D slice and their eigenvalues, constant modes out."""
    h, w = y.shape[-2:]
    mu = laplacian_eigenvalues(h, w, dtype=y.dtype, device=y.device)
    c2 = dct2(y).square().reshape(-1, h, w)
    keep = mu > 0
    return c2[:, keep].reshape(-1), mu[keep].expand(c2.shape[0], -1).reshape(-1)


def _log_range(c2: torch.Tensor, mu: torch.Tensor) -> tuple[float, float]:
    """A bracket for ``log b`` wide enough for any image: from the data's own spread."""
    spread = float((c2 * mu).mean().clamp_min(1e-300))
    centre = 0.5 * math.log(spread)
    return centre - 25.0, centre + 10.0


def _log_ratio_range(c2: torch.Tensor, mu: torch.Tensor) -> tuple[float, float]:
    lo, hi = float(mu.min()), float(mu.max())
    return math.log(lo) - 20.0, math.log(hi) + 20.0


def _minimise_1d(
    f: Callable[[float], float], bounds: tuple[float, float], *, num: int = 41, xtol: float = 1e-6
) -> float:
    """Global-ish 1-D minimiser: the best point of a grid, refined by golden sections."""
    grid = np.linspace(bounds[0], bounds[1], num)
    values = [f(float(t)) for t in grid]
    i = int(np.argmin(values))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, num - 1)]
    return _golden(f, float(lo), float(hi), xtol=xtol)[0]


def _golden(
    f: Callable[[float], float], lo: float, hi: float, *, xtol: float,
    cache: dict[float, float] | None = None,
) -> tuple[float, float]:
    """Golden-section search for a minimum of a unimodal ``f`` on ``[lo, hi]``."""
    cache = {} if cache is None else cache

    def fc(t: float) -> float:
        if t not in cache:
            cache[t] = f(t)
        return cache[t]

    inv_phi = (math.sqrt(5) - 1) / 2
    a, b = lo, hi
    c, d = b - inv_phi * (b - a), a + inv_phi * (b - a)
    while b - a > xtol:
        if fc(c) <= fc(d):
            b, d = d, c
            c = b - inv_phi * (b - a)
        else:
            a, c = c, d
            d = a + inv_phi * (b - a)
    best = min(cache.items(), key=lambda kv: kv[1]) if cache else ((a + b) / 2, fc((a + b) / 2))
    return best


# --- total variation: one record for every scheme ------------------------------------------


@dataclass(frozen=True)
class ScaleEstimate:
    """The TV weight a scheme chose, and what it cost.

    Attributes
    ----------
    method : str
        ``"sure"``, ``"sapg"`` or ``"hierarchical"``.
    sigma : float
        Noise level used (given or estimated).
    weight : float
        The energy weight ``lambda = 2 sigma^2 / b`` of ``|y - x|^2 + lambda TV(x)``
        (:func:`~bayes_restore.denoise`'s ``weight``).
    skimage_weight : float
        ``w = lambda / 2 = sigma^2 / b``: scikit-image's weight, the ``weight`` of
        :func:`~bayes_restore.infer.tv.tv_denoise_pdhg`.
    scale : float
        The prior scale ``b`` (``theta = 1 / b``).
    time : float
        Wall time in seconds.
    num_solves : int
        TV-MAP solves (SURE) or Langevin steps (SAPG, hierarchical).
    trace : dict
        What the scheme looked at: SURE's ``weights`` (skimage units) and ``risks``
        (per-pixel estimated MSE); the ``theta`` iterates or draws of the samplers.
    x : torch.Tensor or None
        SURE's MAP at the chosen weight (at the search's tolerance), else ``None``.
    """

    method: str
    sigma: float
    weight: float
    skimage_weight: float
    scale: float
    time: float
    num_solves: int
    trace: dict = field(default_factory=dict)
    x: torch.Tensor | None = None

    def as_dict(self) -> dict[str, Any]:
        """The scalar fields (for ``info`` dicts and JSON)."""
        return {
            "method": self.method, "sigma": self.sigma, "weight": self.weight,
            "skimage_weight": self.skimage_weight, "scale": self.scale, "time": self.time,
            "num_solves": self.num_solves,
        }


def _estimate(method, sigma, w, start, num_solves, trace, x=None) -> ScaleEstimate:
    return ScaleEstimate(
        method=method, sigma=sigma, weight=2 * w, skimage_weight=w, scale=sigma**2 / w,
        time=time.perf_counter() - start, num_solves=num_solves, trace=trace, x=x,
    )


def _tv_problem(y: Any, sigma: Any) -> tuple[torch.Tensor, int, float]:
    """The observation as a float tensor, its TV event dimension, and sigma as a float."""
    t, _ = _image_tensor(y)
    check_positive(sigma, "sigma")
    sigma = as_float(sigma, "sigma")
    event_dim = 2 if t.dim() == 2 else 3
    return t.detach(), event_dim, sigma


# --- total variation: SURE ------------------------------------------------------------------


def tv_weight_sure(
    y: Any,
    sigma: float,
    *,
    isotropic: bool = True,
    bounds: tuple[float, float] = (0.1, 4.0),
    rtol: float = 0.03,
    tol: float = 1e-3,
    eps: float | None = None,
    dtype: torch.dtype = torch.float32,
    generator: torch.Generator | None = None,
) -> ScaleEstimate:
    r"""TV weight minimising Stein's unbiased risk estimate, with a Monte Carlo divergence.

    For the ROF denoiser ``f_w(y) = argmin_x 0.5 |x - y|^2 + w TV(x)``,

    .. math::

        \mathrm{SURE}(w) = \frac{1}{N}\Big(|y - f_w(y)|^2 - N \sigma^2
                           + 2 \sigma^2 \operatorname{div} f_w(y)\Big),
        \qquad
        \operatorname{div} f_w(y) \approx \frac{1}{\varepsilon}
            \langle b, f_w(y + \varepsilon b) - f_w(y) \rangle

    is an unbiased estimate of the per-pixel MSE ``|f_w(y) - x|^2 / N`` (Stein 1981;
    the divergence by one Rademacher probe ``b``, Ramani, Blu & Unser 2008). Both images
    go through one batched :func:`~bayes_restore.infer.tv.tv_denoise_pdhg` call, so they
    see the same iterations: the divergence is that of the map actually computed.
    ``SURE`` is minimised over ``log w`` by golden sections on ``sigma * bounds``
    (about 10 solves); the bracket is widened when the minimum sits at an end.

    Parameters
    ----------
    y : numpy.ndarray or torch.Tensor
        Noisy image(s) ``(H, W)``, ``(C, H, W)`` or ``(N, C, H, W)``: one weight for all
        (each channel has its own TV, as the package's prior).
    sigma : float
        Noise standard deviation (e.g. from :func:`estimate_sigma`).
    isotropic : bool, default True
    bounds : (float, float), default (0.1, 4.0)
        Initial search bracket for ``w / sigma`` (the best ``w / sigma`` of natural
        images lies in 0.3-1.5).
    rtol : float, default 0.03
        Relative precision of the weight (PSNR is flat to 0.01 dB within +-5 %).
    tol : float, default 1e-3
        Relative primal-dual gap of the solves (1e-3 and 1e-4 pick the same weights).
    eps : float, optional
        Finite-difference step; ``2 sigma / N^0.3`` by default (Deledalle et al. 2014).
    dtype : torch.dtype, default torch.float32
        Precision of the solves (float32 is twice as fast; the risk is summed in float64).
    generator : torch.Generator, optional
        Source of the probe ``b``; by default a fixed seed, so that the same image always
        gets the same weight (and ``restore`` / ``denoise`` the same result).

    Returns
    -------
    ScaleEstimate
        ``method="sure"``; ``trace["weights"]`` (scikit-image units) and
        ``trace["risks"]``; ``x`` the MAP at the chosen weight.

    References
    ----------
    S. Ramani, T. Blu, M. Unser, "Monte-Carlo SURE: a black-box optimization of
    regularization parameters for general denoising algorithms", IEEE TIP 17(9), 2008.

    Examples
    --------
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> clean = torch.zeros(64, 64); clean[16:48, 16:48] = 1.0
    >>> noisy = clean + 0.1 * torch.randn(64, 64, generator=g)
    >>> est = tv_weight_sure(noisy, 0.1, generator=g)
    >>> 0.03 < est.skimage_weight < 0.3
    True
    """
    start = time.perf_counter()
    t, event_dim, sigma = _tv_problem(y, sigma)
    if not (len(bounds) == 2 and 0 < bounds[0] < bounds[1]):
        raise ValueError(f"bounds must be (low, high) with 0 < low < high, got {bounds!r}")
    check_positive(rtol, "rtol")
    check_positive(tol, "tol")
    risks: dict[float, tuple[float, torch.Tensor]] = {}
    sure = _SureProblem(t, sigma, event_dim, isotropic, tol, eps, dtype, generator)

    def risk(log_w: float) -> float:
        if log_w not in risks:
            risks[log_w] = sure.risk(math.exp(log_w))
        return risks[log_w][0]

    lo, hi = math.log(sigma * bounds[0]), math.log(sigma * bounds[1])
    cache: dict[float, float] = {}
    xtol = math.log1p(rtol)
    for _ in range(6):  # widen the bracket while the minimum sits at one end
        best, _ = _golden(risk, lo, hi, xtol=xtol, cache=cache)
        if best - lo < 2 * xtol:
            lo, hi = lo - 2.0, lo + 2 * xtol
        elif hi - best < 2 * xtol:
            lo, hi = hi - 2 * xtol, hi + 2.0
        else:
            break
    log_w = min(risks, key=lambda k: risks[k][0])
    order = sorted(risks)
    trace = {"weights": [math.exp(k) for k in order], "risks": [risks[k][0] for k in order],
             "eps": sure.eps}
    x_best = risks[log_w][1].to(t.dtype, copy=True)
    return _estimate("sure", sigma, math.exp(log_w), start, len(risks), trace, x_best)


class _SureProblem:
    """The pair ``(y, y + eps b)`` and the SURE of the ROF denoiser at any weight."""

    def __init__(self, t, sigma, event_dim, isotropic, tol, eps, dtype, generator) -> None:
        z = t.to(dtype)
        n = z.numel()
        self.eps = 2 * sigma / n**0.3 if eps is None else as_float(eps, "eps")
        check_positive(self.eps, "eps")
        check_positive(tol, "tol")
        if generator is None:  # a fixed probe: the same image always gets the same weight
            generator = torch.Generator().manual_seed(_SURE_PROBE_SEED)
        probe = torch.randint(0, 2, z.shape, generator=generator, dtype=torch.int8)
        self.probe = (2 * probe - 1).to(dtype=torch.float64, device=z.device)
        self.pair = torch.stack([z, z + self.eps * self.probe.to(z.dtype)])
        self.y64 = z.to(torch.float64)
        self.n, self.sigma, self.event_dim = n, sigma, event_dim
        self.isotropic, self.tol = isotropic, tol

    def risk(self, w: float) -> tuple[float, torch.Tensor]:
        from .infer.tv import tv_denoise_pdhg

        x, _ = tv_denoise_pdhg(self.pair, w, isotropic=self.isotropic,
                               event_dim=self.event_dim, tol=self.tol)
        x0 = x[0].to(torch.float64)
        div = float((self.probe * (x[1].to(torch.float64) - x0)).sum()) / self.eps
        s2, n = self.sigma**2, self.n
        return float((self.y64 - x0).square().sum()) / n - s2 + 2 * s2 * div / n, x[0]


def tv_sure_risk(
    y: Any,
    sigma: float,
    skimage_weight: float,
    *,
    isotropic: bool = True,
    tol: float = 1e-3,
    eps: float | None = None,
    dtype: torch.dtype = torch.float32,
    generator: torch.Generator | None = None,
) -> tuple[float, torch.Tensor]:
    r"""Stein's unbiased estimate of the per-pixel MSE of the ROF denoiser at one weight.

    See :func:`tv_weight_sure` for the estimate; this evaluates it at scikit-image's weight
    ``w = sigma^2 / b`` (half the energy weight ``lambda``).

    Parameters
    ----------
    y : numpy.ndarray or torch.Tensor
        Noisy image(s) ``(H, W)``, ``(C, H, W)`` or ``(N, C, H, W)``.
    sigma : float
        Noise standard deviation.
    skimage_weight : float
        ``w > 0`` of ``0.5 |x - y|^2 + w TV(x)``.
    isotropic, tol, eps, dtype, generator
        As in :func:`tv_weight_sure`.

    Returns
    -------
    risk : float
        The estimate of ``|f_w(y) - x|^2 / N``.
    x : torch.Tensor
        ``f_w(y)`` (in ``dtype``).

    Examples
    --------
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> clean = torch.zeros(64, 64); clean[16:48, 16:48] = 1.0
    >>> noisy = clean + 0.1 * torch.randn(64, 64, generator=g)
    >>> risk, x = tv_sure_risk(noisy, 0.1, 0.1, generator=g)
    >>> bool(risk < 0.1**2)  # far better than the noise
    True
    """
    t, event_dim, sigma = _tv_problem(y, sigma)
    check_positive(skimage_weight, "skimage_weight")
    sure = _SureProblem(t, sigma, event_dim, isotropic, tol, eps, dtype, generator)
    return sure.risk(as_float(skimage_weight, "skimage_weight"))


# --- total variation: proximal Langevin with a moving theta -----------------------------------


def _langevin_theta(
    t: torch.Tensor,
    sigma: float,
    event_dim: int,
    update: Callable[[int, float, float], float],
    *,
    theta0: float,
    num_iter: int,
    isotropic: bool,
    smoothing: float,
    prox_iter: int,
    dtype: torch.dtype,
    generator: torch.Generator | None,
) -> list[float]:
    """MYULA on ``x | y, theta`` with ``theta <- update(k, theta, TV(x_k))`` after each step.

    ``U(x) = |y - x|^2 / (2 sigma^2) + theta TV(x)``; the TV term is replaced by its
    Moreau-Yosida envelope of parameter ``lam = smoothing * sigma^2``, whose gradient is
    ``(x - prox_{lam theta TV}(x)) / lam``; the prox is the warm-started
    :func:`~bayes_restore.infer.prox.tv_prox`. Step ``0.9 / L`` with ``L = 1/sigma^2 + 1/lam``.
    """
    from .infer.prox import tv_prox

    y = t.to(dtype)
    lam = smoothing * sigma**2
    step = 0.9 / (1 / sigma**2 + 1 / lam)
    noise_scale = math.sqrt(2 * step)
    x = y.clone()
    dual = None
    theta = theta0
    thetas = []
    for k in range(1, num_iter + 1):
        px, dual = tv_prox(x, lam * theta, isotropic=isotropic, dual=dual, num_iter=prox_iter)
        drift = (x - y).div_(sigma**2).add_((x - px).div_(lam))
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        x = x.sub_(drift, alpha=step).add_(noise, alpha=noise_scale)
        tv = float(gradient_energy(x, 1.0, isotropic=isotropic, event_dim=event_dim).sum())
        theta = update(k, theta, tv)
        thetas.append(theta)
    return thetas


def _degrees_of_freedom(t: torch.Tensor, event_dim: int) -> int:
    """``N - C`` summed over the images: the exponent of ``theta`` in the TV normaliser."""
    channels = 1 if event_dim == 2 else t.shape[-3]
    per_image = t.shape[-1] * t.shape[-2] * channels - channels
    return per_image * (t.numel() // (t.shape[-1] * t.shape[-2] * channels))


def tv_scale_sapg(
    y: Any,
    sigma: float,
    *,
    num_iter: int = 400,
    burn_in: int = 200,
    step0: float = 2.0,
    theta0: float | None = None,
    isotropic: bool = True,
    smoothing: float = 0.03,
    prox_iter: int = 5,
    dtype: torch.dtype = torch.float32,
    generator: torch.Generator | None = None,
) -> ScaleEstimate:
    r"""Empirical Bayes for the TV scale: maximum marginal likelihood by SAPG.

    ``log p(y | theta)`` with ``theta = 1 / b`` has the gradient
    ``(N - 1) / theta - E[TV(x) | y, theta]`` (the TV prior's normaliser is
    ``theta^{-(N-1)}`` by homogeneity). The stochastic approximation proximal gradient
    scheme of Vidal, De Bortoli, Pereyra & Durmus (2020) follows it with one Langevin
    draw per step; here in ``log theta``,

    .. math::

        \log\theta_{k+1} = \log\theta_k + \gamma_k \Big(1 - \frac{\theta_k TV(x_k)}{N - 1}\Big),
        \qquad \gamma_k = \gamma_0 k^{-0.8},

    with ``x_k`` from MYULA on ``p(x | y, theta_k)``. The estimate is the average of
    ``theta_k`` after ``burn_in``.

    Parameters
    ----------
    y : numpy.ndarray or torch.Tensor
        Noisy image(s), as in :func:`tv_weight_sure`.
    sigma : float
        Noise standard deviation.
    num_iter : int, default 400
        Langevin steps (one ``theta`` update each).
    burn_in : int, default 200
        Steps left out of the average; ``theta`` stays at ``theta0`` for the first half of
        them while ``x`` settles.
    step0 : float, default 2.0
        ``gamma_0``.
    theta0 : float, optional
        Start; ``1 / sigma`` (scikit-image weight ``w = sigma``) when ``None``.
    isotropic : bool, default True
    smoothing : float, default 0.03
        Moreau-Yosida parameter ``lambda_MY`` in units of ``sigma^2``. It biases the answer:
        on camera at ``sigma = 0.1`` the estimated ``w / sigma`` was 0.63, 0.80, 0.96 and
        1.05 for 0.3, 0.1, 0.03 and 0.01. 0.03 is the design page's largest value for
        which MYULA's posterior agreed with NUTS.
    prox_iter : int, default 5
        Warm-started dual iterations of the TV prox per step.
    dtype : torch.dtype, default torch.float32
    generator : torch.Generator, optional
        Source of the Langevin noise.

    Returns
    -------
    ScaleEstimate
        ``method="sapg"``, ``trace["theta"]`` the iterates.

    References
    ----------
    A. F. Vidal, V. De Bortoli, M. Pereyra, A. Durmus, "Maximum likelihood estimation of
    regularisation parameters in high-dimensional inverse problems: an empirical Bayesian
    approach", SIAM J. Imaging Sci. 13(4), 2020.

    Examples
    --------
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> clean = torch.zeros(32, 32); clean[8:24, 8:24] = 1.0
    >>> noisy = clean + 0.1 * torch.randn(32, 32, generator=g)
    >>> est = tv_scale_sapg(noisy, 0.1, num_iter=100, burn_in=20, generator=g)
    >>> est.skimage_weight > 0
    True
    """
    start = time.perf_counter()
    t, event_dim, sigma = _tv_problem(y, sigma)
    _check_iterations(num_iter, burn_in)
    check_positive(step0, "step0")
    theta0 = 1.0 / sigma if theta0 is None else as_float(theta0, "theta0")
    check_positive(theta0, "theta0")
    dof = _degrees_of_freedom(t, event_dim)

    def update(k: int, theta: float, tv: float) -> float:
        if k <= burn_in // 2:  # let x settle at theta0 first
            return theta
        gamma = step0 * (k - burn_in // 2) ** -0.8
        return theta * math.exp(gamma * max(min(1 - theta * tv / dof, 1.0), -1.0))

    thetas = _langevin_theta(
        t, sigma, event_dim, update, theta0=theta0, num_iter=num_iter, isotropic=isotropic,
        smoothing=smoothing, prox_iter=prox_iter, dtype=dtype, generator=generator,
    )
    theta = float(np.mean(thetas[burn_in:]))
    return _estimate("sapg", sigma, sigma**2 * theta, start, num_iter, {"theta": thetas})


# --- total variation: the hierarchical model --------------------------------------------------


def hierarchical_tv_model(
    y: torch.Tensor,
    *,
    sigma: float | torch.Tensor,
    alpha: float = THETA_HYPERPRIOR[0],
    beta0: float = THETA_HYPERPRIOR[1],
    isotropic: bool = True,
) -> torch.Tensor:
    r"""Pyro model of TV denoising with a Gamma hyperprior on the prior's precision.

    .. math::

        \theta = 1 / b \sim \mathrm{Gamma}(\alpha, \beta_0), \qquad
        x \mid \theta \sim \mathrm{TotalVariation}(b = 1 / \theta), \qquad
        y \mid x \sim \mathcal{N}(x, \sigma^2 I)

    ``log p(x | theta) = -theta TV(x) + (N - 1) log theta + const`` (homogeneity of TV),
    so ``theta | x ~ Gamma(alpha + N - 1, beta0 + TV(x))``: :func:`gibbs_theta` draws it,
    :func:`tv_scale_gibbs` samples the model, and
    ``infer.mcmc(restoration_model, ..., sample_scale=True)`` samples it with any operator
    (the defaults ``THETA_HYPERPRIOR`` are shared). The defaults ``alpha = 1``,
    ``beta0 = 0.01`` (an exponential prior of mean ``theta = 100``, i.e. ``b = 0.01``) are
    weak against the ``N - 1`` of any real image. Change any line: the engines only need
    the sites ``"theta"``, ``"x"`` and ``"y"``. Pyro's NUTS samples it on small crops
    (``NUTS(hierarchical_tv_model, max_plate_nesting=0, init_strategy=init_to_value(
    values={"x": y, "theta": ...}))``: the TV prior is improper, design page section 7).

    Parameters
    ----------
    y : torch.Tensor
        One observed image, ``(H, W)`` or ``(C, H, W)`` (each channel its own TV).
    sigma : float or torch.Tensor
        Noise standard deviation.
    alpha, beta0 : float
        Shape and rate of the Gamma hyperprior on ``theta``.
    isotropic : bool, default True

    Returns
    -------
    torch.Tensor
        The latent image ``x``.

    Examples
    --------
    >>> import torch, pyro.poutine as poutine
    >>> y = torch.zeros(8, 8, dtype=torch.float64)
    >>> tr = poutine.trace(poutine.condition(
    ...     hierarchical_tv_model, {"theta": torch.tensor(20.0, dtype=torch.float64), "x": y}
    ... )).get_trace(y, sigma=0.1)
    >>> [name for name in tr.nodes if name in ("theta", "x", "y")]
    ['theta', 'x', 'y']
    """
    if not isinstance(y, torch.Tensor) or y.dim() not in (2, 3):
        raise ValueError("y must be a torch.Tensor of shape (H, W) or (C, H, W)")
    check_positive(alpha, "alpha")
    check_positive(beta0, "beta0")
    hyperprior = dist.Gamma(y.new_tensor(float(alpha)), y.new_tensor(float(beta0)))
    theta = pyro.sample(THETA_SITE, hyperprior)
    x = pyro.sample(X_SITE, TotalVariation(1.0 / theta, shape=y.shape, isotropic=isotropic))
    pyro.sample(Y_SITE, GaussianLikelihood(x, sigma, event_dim=y.dim()), obs=y)
    return x


def gibbs_theta(
    x: torch.Tensor,
    alpha: float,
    beta0: float,
    generator: torch.Generator | None = None,
    *,
    isotropic: bool = True,
    event_dim: int = 2,
) -> torch.Tensor:
    r"""Draw ``theta = 1 / b`` from its conditional in :func:`hierarchical_tv_model`.

    ``theta | x ~ Gamma(alpha + N - C, beta0 + TV(x))`` with ``N`` the values of one image
    and ``C`` its channels (``N - 1`` for a grey image): the Gamma hyperprior is conjugate
    to the TV prior because ``TV`` is 1-homogeneous (design page, section 4). The Gamma
    variate is drawn by Marsaglia & Tsang's (2000) method from ``generator``'s normals and
    uniforms.

    Parameters
    ----------
    x : torch.Tensor
        Image(s), shape ``batch + event`` (event ``(H, W)`` or ``(C, H, W)``).
    alpha, beta0 : float
        Shape and rate of the hyperprior.
    generator : torch.Generator, optional
    isotropic : bool, default True
    event_dim : int, default 2
        2 for ``(H, W)`` images, 3 for ``(C, H, W)``.

    Returns
    -------
    torch.Tensor
        One draw per image, shape ``x.shape[:-event_dim]``, float64.

    Examples
    --------
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.rand(2, 16, 16, generator=g, dtype=torch.float64)
    >>> gibbs_theta(x, 1.0, 0.01, g).shape
    torch.Size([2])
    """
    if event_dim not in (2, 3) or x.dim() < event_dim:
        raise ValueError(f"event_dim must be 2 or 3 and at most x.dim(), got {event_dim}")
    check_positive(alpha, "alpha")
    check_positive(beta0, "beta0")
    check_finite(x, "x")
    channels = 1 if event_dim == 2 else x.shape[-3]
    n = math.prod(x.shape[-event_dim:])
    tv = gradient_energy(x.detach().to(torch.float64), 1.0, isotropic=isotropic,
                         event_dim=event_dim)
    shape = torch.full_like(tv, float(alpha) + n - channels)
    return _standard_gamma(shape, generator) / (float(beta0) + tv)


def _standard_gamma(shape: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Gamma(shape, 1) draws for ``shape >= 1``, Marsaglia & Tsang (2000), vectorised."""
    if bool((shape < 1).any()):
        raise ValueError("shape must be >= 1")
    d = shape - 1.0 / 3.0
    c = 1.0 / torch.sqrt(9.0 * d)
    out = torch.empty_like(shape)
    todo = torch.ones_like(shape, dtype=torch.bool)
    while bool(todo.any()):
        z = torch.randn(shape.shape, generator=generator, dtype=shape.dtype, device=shape.device)
        u = torch.rand(shape.shape, generator=generator, dtype=shape.dtype, device=shape.device)
        v = (1 + c * z) ** 3
        ok = (v > 0) & (torch.log(u) < 0.5 * z**2 + d - d * v + d * torch.log(v.clamp_min(1e-300)))
        take = ok & todo
        out = torch.where(take, d * v, out)
        todo = todo & ~ok
    return out


def tv_scale_gibbs(
    y: Any,
    sigma: float,
    *,
    alpha: float = THETA_HYPERPRIOR[0],
    beta0: float = THETA_HYPERPRIOR[1],
    num_iter: int = 400,
    burn_in: int = 200,
    isotropic: bool = True,
    smoothing: float = 0.03,
    prox_iter: int = 5,
    dtype: torch.dtype = torch.float32,
    generator: torch.Generator | None = None,
) -> ScaleEstimate:
    r"""Sample ``theta`` of :func:`hierarchical_tv_model` by Langevin-within-Gibbs.

    Alternates one MYULA step on ``x | y, theta`` (as in :func:`tv_scale_sapg`) with an exact
    draw ``theta | x ~ Gamma(alpha + N - 1, beta0 + TV(x))`` (:func:`gibbs_theta`). The
    estimate is the posterior mean of ``theta`` (draws after ``burn_in``); with ``N`` in
    the hundreds of thousands the hyperprior hardly matters and it sits near the
    marginal-likelihood estimate of SAPG. ``trace["theta"]`` holds the draws: the
    posterior of the scale, not only a point.

    Parameters
    ----------
    y : numpy.ndarray or torch.Tensor
        Noisy image(s), as in :func:`tv_weight_sure`.
    sigma : float
        Noise standard deviation.
    alpha, beta0 : float
        The hyperprior (see :func:`hierarchical_tv_model`).
    num_iter : int, default 400
    burn_in : int, default 200
    isotropic, smoothing, prox_iter, dtype
        As in :func:`tv_scale_sapg`.
    generator : torch.Generator, optional
        Source of the Langevin noise and of the Gamma draws.

    Returns
    -------
    ScaleEstimate
        ``method="hierarchical"``; ``trace["theta"]`` the draws.

    Examples
    --------
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> clean = torch.zeros(32, 32); clean[8:24, 8:24] = 1.0
    >>> noisy = clean + 0.1 * torch.randn(32, 32, generator=g)
    >>> est = tv_scale_gibbs(noisy, 0.1, num_iter=100, burn_in=20, generator=g)
    >>> len(est.trace["theta"])
    100
    """
    start = time.perf_counter()
    t, event_dim, sigma = _tv_problem(y, sigma)
    _check_iterations(num_iter, burn_in)
    check_positive(alpha, "alpha")
    check_positive(beta0, "beta0")
    dof = _degrees_of_freedom(t, event_dim)

    def update(k: int, theta: float, tv: float) -> float:
        shape = torch.tensor([float(alpha) + dof], dtype=torch.float64)
        return float(_standard_gamma(shape, generator)[0]) / (float(beta0) + tv)

    thetas = _langevin_theta(
        t, sigma, event_dim, update, theta0=1.0 / sigma, num_iter=num_iter,
        isotropic=isotropic, smoothing=smoothing, prox_iter=prox_iter, dtype=dtype,
        generator=generator,
    )
    theta = float(np.mean(thetas[burn_in:]))
    return _estimate("hierarchical", sigma, sigma**2 * theta, start, num_iter, {"theta": thetas})


def _check_iterations(num_iter: Any, burn_in: Any) -> None:
    if not isinstance(num_iter, int) or num_iter < 1:
        raise ValueError(f"num_iter must be an integer >= 1, got {num_iter!r}")
    if not isinstance(burn_in, int) or not 0 <= burn_in < num_iter:
        raise ValueError(f"burn_in must be an integer in [0, num_iter), got {burn_in!r}")


# --- defaults -----------------------------------------------------------------------------------


def choose_tv_weight(
    y: Any,
    sigma: float | None = None,
    *,
    method: str = "sure",
    isotropic: bool = True,
    generator: torch.Generator | None = None,
    **options: Any,
) -> tuple[float, float, dict[str, Any]]:
    r"""The parameters of parameter-free TV denoising: ``(sigma, weight, info)``.

    ``sigma`` is estimated by :func:`estimate_sigma` when ``None`` (the root mean square
    of the per-channel estimates: one noise level for the whole input, as
    :func:`~bayes_restore.denoise` takes), then the TV weight by ``method``:

    - ``"sure"`` (default): :func:`tv_weight_sure`. On the benchmark of
      ``docs/hyperparameters.md`` (seven 512 x 512 images, three noise levels, sigma
      estimated) it is 0.01 dB below the oracle weight's PSNR on average and 0.08 dB at
      worst, at 0.8 s per image.
    - ``"sapg"``: :func:`tv_scale_sapg`, empirical Bayes (maximum marginal likelihood):
      0.21 dB below the oracle on average, 3 s per image.
    - ``"hierarchical"``: :func:`tv_scale_gibbs`, the posterior mean of ``theta`` under
      :func:`hierarchical_tv_model`: as SAPG.

    Parameters
    ----------
    y : numpy.ndarray or torch.Tensor
        Noisy image(s) ``(H, W)``, ``(C, H, W)`` or ``(N, C, H, W)``.
    sigma : float, optional
        Noise standard deviation; estimated when ``None``.
    method : {"sure", "sapg", "hierarchical"}, default "sure"
    isotropic : bool, default True
    generator : torch.Generator, optional
        Source of randomness (SURE's probe, the samplers' noise).
    **options
        Passed to the scheme's function.

    Returns
    -------
    sigma : float
        The noise level used.
    weight : float
        The energy weight ``lambda`` of ``|y - x|^2 + lambda TV(x)``: pass it as
        ``denoise(y, "tv", sigma=sigma, weight=weight)``.
    info : dict
        ``method``, ``sigma_estimated``, ``skimage_weight`` (``lambda / 2``), ``scale``
        (``b``), ``time``, ``num_solves``, and ``estimate`` (the :class:`ScaleEstimate`).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> clean = np.zeros((64, 64)); clean[16:48, 16:48] = 1.0
    >>> noisy = clean + 0.1 * rng.standard_normal(clean.shape)
    >>> sigma, weight, info = choose_tv_weight(noisy)
    >>> info["method"], info["sigma_estimated"], round(sigma, 1)
    ('sure', True, 0.1)
    """
    if method not in TV_METHODS:
        raise ValueError(f"method must be one of {TV_METHODS}, got {method!r}")
    start = time.perf_counter()
    t, _ = _image_tensor(y)
    estimated = sigma is None
    if estimated:
        per_channel = estimate_sigma(t.detach())
        sigma = float(per_channel.to(torch.float64).square().mean().sqrt())
        if not sigma > 0:
            raise ValueError("the estimated noise level is 0 (a noise-free image?): give sigma")
    else:
        check_positive(sigma, "sigma")
        sigma = as_float(sigma, "sigma")
    scheme = {"sure": tv_weight_sure, "sapg": tv_scale_sapg, "hierarchical": tv_scale_gibbs}
    est = scheme[method](t, sigma, isotropic=isotropic, generator=generator, **options)
    info = est.as_dict()
    info.update(sigma_estimated=estimated, time=time.perf_counter() - start, estimate=est)
    return sigma, est.weight, info
