"""The parameters of parameter-free TV denoising: the noise level, then the TV weight."""

from __future__ import annotations

import time
from typing import Any

import torch

from bayes_restore._validation import as_float, check_positive

from ._common import image_tensor
from .gibbs import tv_scale_gibbs
from .noise import estimate_sigma, sigma_low_ratio
from .sapg import tv_scale_sapg
from .sure import tv_weight_sure

__all__ = ["choose_tv_weight", "TV_METHODS"]

#: accepted values of ``choose_tv_weight(..., method=...)``
TV_METHODS = ("sure", "sapg", "hierarchical")


def choose_tv_weight(
    y: Any,
    sigma: float | None = None,
    *,
    method: str = "sure",
    isotropic: bool = True,
    generator: torch.Generator | None = None,
    guard: bool | None = None,
    **options: Any,
) -> tuple[float, float, dict[str, Any]]:
    r"""The parameters of parameter-free TV denoising: ``(sigma, weight, info)``.

    ``sigma`` is estimated by :func:`estimate_sigma` when ``None`` (the root mean square
    of the per-channel estimates: one noise level for the whole input, as
    :func:`~bayes_restore.denoise` takes), then the TV weight by ``method``:

    - ``"sure"`` (default): :func:`tv_weight_sure`, within a few hundredths of a dB of the
      oracle weight's PSNR on natural images, and the fastest.
    - ``"sapg"``: :func:`tv_scale_sapg`, empirical Bayes (maximum marginal likelihood):
      about 0.2 dB below the oracle on average, several times slower.
    - ``"hierarchical"``: :func:`tv_scale_gibbs`, the posterior mean of ``theta`` under
      :func:`hierarchical_tv_model`: as SAPG.

    The benchmark behind these numbers is on the Parameter-free restoration page of the
    documentation.

    **The texture guard** (``guard``, on when ``sigma`` is estimated; ``"sure"`` only).
    At low noise levels, clean pixel-scale texture is read as noise and ``sigma`` is
    over-estimated (1.4 to 3.1 times on the sweep's textures at ``sigma <= 0.02``); SURE
    then picks a weight that erases the texture, worse than the noisy input. The tilt of
    the fine-scale spectrum (:func:`~bayes_restore.hyper.noise.sigma_low_ratio`: white
    noise is flat, texture is not; trusted only where the finest band is more than white
    noise, as texture is and sharp edges are not) gives a plausible lower noise level
    ``sigma_low = sigma * ratio`` (the root mean square over channels), and the weight
    must also be an estimated improvement on the input at ``sigma_low``
    (:func:`tv_weight_sure`'s ``sigma_low``; skipped where SURE itself estimates a risk
    below ``0.25 sigma^2``, a piecewise-smooth image). Under-smoothing costs much less
    than over-smoothing, so the guard only ever lowers the weight. Measured on the
    2 x 1125 small noisy images of the sweep on the Hyperparameters page of the
    documentation: parameter-free denoising worse than its input on 0 cases instead of
    52; 79 gains lowered by more than 0.1 dB (up to 2.5 dB, the Hubble field and text at
    ``sigma <= 0.02``; 92 and up to 5.7 dB, on sharp-edged binary blobs, with the tilt
    alone) and 73 raised; no change on the 512 x 512 benchmark (``sigma >= 0.05``, the
    ratio is 1). Details on the Hyperparameters page of the documentation.

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
    guard : bool, optional
        The texture guard (above). ``None``: on when ``sigma`` is estimated here (pass
        ``True`` for a ``sigma`` estimated elsewhere, ``False`` to trust it).
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
        (``b``), ``time``, ``num_solves``, ``sigma_low`` (the guard's noise level, or
        ``None``) and ``estimate`` (the :class:`ScaleEstimate`).

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
    t, _ = image_tensor(y)
    estimated = sigma is None
    if estimated:
        per_channel = estimate_sigma(t.detach())
        sigma = float(per_channel.to(torch.float64).square().mean().sqrt())
        if not sigma > 0:
            raise ValueError("the estimated noise level is 0 (a noise-free image?): give sigma")
    else:
        check_positive(sigma, "sigma")
        sigma = as_float(sigma, "sigma")
    if guard is None:
        guard = estimated
    sigma_low = None
    if guard and method == "sure":
        ratio = sigma_low_ratio(t.detach().to(torch.float64))  # as estimate_sigma takes it
        sigma_low = sigma * float(ratio.square().mean().sqrt())
        options["sigma_low"] = sigma_low
    scheme = {"sure": tv_weight_sure, "sapg": tv_scale_sapg, "hierarchical": tv_scale_gibbs}
    est = scheme[method](t, sigma, isotropic=isotropic, generator=generator, **options)
    info = est.as_dict()
    info.update(sigma_estimated=estimated, time=time.perf_counter() - start, estimate=est,
                sigma_low=sigma_low)
    return sigma, est.weight, info
