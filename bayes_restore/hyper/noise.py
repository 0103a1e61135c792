"""The noise level of an image: :func:`estimate_sigma` and its three estimators."""

from __future__ import annotations

import math
from typing import Any

import torch

from bayes_restore._validation import as_image
from bayes_restore.differences import dct_matrix

__all__ = ["estimate_sigma", "sigma_low_ratio"]

#: Phi^{-1}(3/4): the median of |N(0, 1)|
_MAD_TO_STD = 0.6744897501960817
#: block size and stride of the texture guard's blocks, and the first kept DCT frequency
_BLOCK, _STRIDE, _KMIN = 16, 8, 12
#: stride of the "blocks" estimator's blocks on small images: 4, four times as many blocks as
#: at stride 8, so a less variable quantile (on grass resized to 128 px at sigma = 0.05, 20
#: seeds: error +13.6 +- 3.1 %, worst +19.4 %, against +13.9 +- 3.7 %, worst +20.6 %); only
#: while that is at most 2^13 blocks (up to ~370 x 370), beyond which stride 8 gives 2000 or
#: more (the 512 x 512 estimates are those of stride 8)
_BLOCKS_STRIDE, _BLOCKS_MAX = 4, 1 << 13
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
#: the texture guard (:func:`sigma_low_ratio`): 16 x 16 DCT blocks at stride 8, the 4 x 4
#: coefficients from frequency 6 against the top 4 x 4 (from 12), and the quantile over blocks
#: of the ratio of their mean squares (on white noise the ratio is F(16, 16): 10 % quantile 0.52)
_TILT_KMIN, _TILT_QUANTILE = 6, 0.1
#: tilt above which the noise level is doubted, the power of the doubt and its cap: the
#: plausible over-estimate is ``min(3.5, max(1, tilt / 1.1)^3)`` (the largest over-estimate
#: seen on the 2250-case small-image sweep is 3.1; see :func:`sigma_low_ratio`)
_TILT_FREE, _TILT_POWER, _TILT_MAX_DOUBT = 1.1, 3.0, 3.5
#: ... and only where the finest band is more than white noise: the coefficient of variation
#: of the top-band block energies (``sqrt(2 / 16)`` for white noise, the energies being
#: ``chi^2_16 / 16``; its standard deviation over blocks of white noise is about
#: ``0.38 / sqrt(number of blocks)``, measured at 128-256 px) at least this many standard
#: deviations above ``sqrt(2 / 16)``. Sharp edges of an anti-aliased image (resized binary
#: blobs) tilt the spectrum but leave the top band white (0.14-0.21 standard deviations at
#: sigma = 0.05); the 52 sweep cases made worse than the input had 0.43 or more
_WHITE_CV, _WHITE_CV_SD, _WHITE_MIN_Z = math.sqrt(2 / 16), 0.38, 0.3


def estimate_sigma(image: Any, *, method: str = "auto", channel_axis: int | None = None) -> Any:
    r"""Estimate the standard deviation of additive white Gaussian noise, per 2-D slice.

    Three estimators, all on the finest frequencies, where natural images have the least
    energy and white noise as much as anywhere:

    - ``"mad"``: Donoho's (1995) wavelet median absolute deviation on the finest diagonal
      (Haar ``HH``) band, ``sigma = median(|HH|) / 0.6745``. Texture and edges leak into
      the band and bias it upwards.
    - ``"blocks"``: the same idea made local, so the flattest parts of the image decide.
      Overlapping 16 x 16 blocks (stride 4 up to ~370 x 370 pixels, where stride 8 would
      give fewer than ~2000 blocks, 225 at 128 x 128, and a noisier quantile; stride 8
      beyond) are transformed by the orthonormal DCT; the mean square of each block's
      4 x 4 highest-frequency coefficients is ``sigma^2 chi^2_16 / 16`` where the image is
      smooth and larger where it is not; the
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
        Image(s), shape ``(H, W)``, ``(C, H, W)`` or ``(N, C, H, W)``, noise not clipped
        (dtypes as :func:`~bayes_restore.restore` takes them: integers are scaled to
        ``[0, 1]`` first). Each 2-D slice (channel) gets its own estimate.
    method : {"auto", "kurtosis", "blocks", "mad"}, default "auto"
    channel_axis : int, optional
        The colour axis, as in scikit-image (``-1`` for ``(H, W, 3)``); ``None``: channels
        first, and an ``(H, W, 3)``-like array is refused as ambiguous.

    Returns
    -------
    float, numpy.ndarray or torch.Tensor
        One value per 2-D slice, the channels-first shape without ``(H, W)`` (``(3,)`` for
        an ``(H, W, 3)`` image with ``channel_axis=-1``): a Python float for a 2-D numpy
        array, a numpy array for more dimensions; a tensor for tensor input (in its float
        dtype, on its device).

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
    y, layout = as_image(image, "image", channel_axis=channel_axis)
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
    if layout.as_numpy:
        out = sigma.cpu().numpy()
        return float(out) if out.ndim == 0 else out
    return sigma.to(dtype=layout.result_dtype or y.dtype, device=y.device)



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
    h, w = z.shape[-2:]
    stride = _BLOCKS_STRIDE
    if ((h - _BLOCK) // stride + 1) * ((w - _BLOCK) // stride + 1) > _BLOCKS_MAX:
        stride = _STRIDE
    blocks = z.unfold(-2, _BLOCK, stride).unfold(-2, _BLOCK, stride)  # (..., nh, nw, B, B)
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



def sigma_low_ratio(image: Any, *, channel_axis: int | None = None) -> Any:
    r"""How far below an estimated noise level the true one may plausibly be: a ratio in (0, 1].

    Every estimator of :func:`estimate_sigma` reads the finest frequencies, and clean texture
    at the pixel scale (grass, gravel, a scan's own grain) is read as noise: at low noise
    levels the estimate can be 1.4 to 3 times too high. White noise has the same power at
    every frequency; natural texture has more power at lower frequencies. So the *tilt* of
    the fine-scale spectrum tells whether the finest band holds more than noise: over the
    16 x 16 DCT blocks of the ``"blocks"`` estimator (at stride 8), the ratio of the mean
    square of the 4 x 4 coefficients from frequency 6 to that of the top 4 x 4 (from 12),
    its 10 % quantile over the blocks (the flattest-spectrum blocks decide; 0.52 on pure
    noise, the 10 % quantile of ``F(16, 16)``). The ratio returned is
    ``1 / min(3.5, max(1, tilt / 1.1)^3)``: 1 (no doubt) up to a tilt of 1.1, 0.38 at a
    tilt of 1.5, at least 1 / 3.5 (the largest over-estimate seen was 3.1 times).

    Sharp edges tilt the spectrum too (an anti-aliased edge has its power at the lower of
    the fine frequencies), and there the estimate is right. What tells them apart is the
    finest band itself: where it holds only white noise, the top-band energies of the
    blocks are ``sigma^2 chi^2_16 / 16`` everywhere, with a coefficient of variation of
    ``sqrt(2 / 16)``; natural texture varies in strength over the image and makes them
    vary more. So the ratio is 1 unless that coefficient of variation is at least 0.3 of
    its white-noise standard deviation (about ``0.38 / sqrt(number of blocks)``) above
    ``sqrt(2 / 16)``. A weak test, its threshold chosen on the sweep: texture of one
    strength everywhere is caught by chance only (its finest band is as even as noise),
    and a finest band of pure white noise is taken for more about four times in ten (then
    the tilt decides, as without the test).

    Used by :func:`choose_tv_weight` when it estimates ``sigma``: the TV weight must then
    also be an estimated improvement on the input at the lower noise level
    (``sigma_low`` of :func:`tv_weight_sure`). The constants were chosen on the 2 x 1125
    small noisy images of the sweep on the Hyperparameters page of the documentation
    (where the estimate was 1.4-3.1 times too high on the 52 cases that parameter-free
    denoising made worse than its input, the ratio needed was 0.37-0.75 and the one given
    is at most 0.86 of it; the finest band's excess was 0.43 standard deviations or more
    there, 0.14-0.21 on the resized binary blobs at ``sigma = 0.05`` that the tilt alone
    doubted); on 512 x 512 natural images at ``sigma >= 0.05`` the tilt is at most 1.0
    (ratio 1).

    Parameters
    ----------
    image : numpy.ndarray or torch.Tensor
        Noisy image(s), as :func:`estimate_sigma` takes them.
    channel_axis : int, optional
        As in :func:`estimate_sigma`.

    Returns
    -------
    float, numpy.ndarray or torch.Tensor
        One ratio per 2-D slice, shaped as :func:`estimate_sigma`'s result; 1 for slices
        smaller than 16 x 16 and for constant ones.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> clean = np.zeros((128, 128)); clean[32:96, 32:96] = 1.0
    >>> sigma_low_ratio(clean + 0.05 * rng.standard_normal(clean.shape))  # noise: no doubt
    1.0
    >>> rng = np.random.default_rng(2)
    >>> w = rng.standard_normal((129, 129))  # 2 x 2 box-filtered noise: a tilted spectrum,
    >>> box = 0.05 * (w[1:, 1:] + w[:-1, 1:] + w[1:, :-1] + w[:-1, :-1]) / 4
    >>> strength = np.kron(rng.uniform(0.5, 2, (8, 8)), np.ones((16, 16)))  # uneven strength
    >>> texture = strength * box
    >>> round(sigma_low_ratio(texture + 0.01 * rng.standard_normal(texture.shape)), 3)
    0.286
    """
    y, layout = as_image(image, "image", channel_axis=channel_axis)
    ratio = _sigma_low_ratio(y.detach().to(torch.float64))
    if layout.as_numpy:
        out = ratio.cpu().numpy()
        return float(out) if out.ndim == 0 else out
    return ratio.to(dtype=layout.result_dtype or y.dtype, device=y.device)


def _sigma_low_ratio(z: torch.Tensor) -> torch.Tensor:
    """``1 / min(3.5, max(1, tilt / 1.1)^3)`` per 2-D slice of the float64 ``z``; 1 where the
    finest band looks like white noise."""
    tilt, excess = _fine_scale_stats(z)
    doubt = (tilt / _TILT_FREE).clamp_min(1).pow(_TILT_POWER).clamp_max(_TILT_MAX_DOUBT)
    return torch.where(excess >= _WHITE_MIN_Z, 1 / doubt, torch.ones_like(doubt))


def _fine_scale_stats(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The spectral tilt and the top band's excess dispersion, per 2-D slice.

    The tilt: the 10 % quantile over 16 x 16 blocks of (band-6 power) / (band-12 power);
    blocks whose top band is exactly 0 count as 0 (flat). The excess: how many white-noise
    standard deviations the coefficient of variation of the top-band block energies is above
    its white-noise value ``sqrt(2 / 16)``. Both 0 for slices smaller than a block and for
    constant ones.
    """
    if min(z.shape[-2:]) < _BLOCK:
        zero = torch.zeros(z.shape[:-2], dtype=z.dtype, device=z.device)
        return zero, zero
    scale = z.abs().amax((-2, -1), keepdim=True)
    z = z / torch.where(scale > 0, scale, torch.ones_like(scale))
    blocks = z.unfold(-2, _BLOCK, _STRIDE).unfold(-2, _BLOCK, _STRIDE)  # (..., nh, nw, B, B)
    c = dct_matrix(_BLOCK, dtype=z.dtype, device=z.device)
    mid, top = c[_TILT_KMIN : _TILT_KMIN + 4], c[_KMIN:]
    e_mid = (mid @ blocks @ mid.T).square().mean((-2, -1)).flatten(-2)
    e_top = (top @ blocks @ top.T).square().mean((-2, -1)).flatten(-2)
    tiny = torch.finfo(z.dtype).tiny
    ratio = torch.where(e_top > 0, e_mid / e_top.clamp_min(tiny), torch.zeros_like(e_mid))
    mean = e_top.mean(-1)
    cv = torch.where(mean > 0, e_top.std(-1) / mean.clamp_min(tiny), torch.zeros_like(mean))
    excess = (cv - _WHITE_CV) * math.sqrt(e_top.shape[-1]) / _WHITE_CV_SD
    return torch.quantile(ratio, _TILT_QUANTILE, dim=-1), torch.where(mean > 0, excess, 0 * mean)
