"""The parameters of parameter-free TV denoising: the noise level, then the TV weight."""

from __future__ import annotations

import time
from typing import Any

import torch

from bayes_restore._validation import as_float, check_positive

from ._common import image_tensor
from .gibbs import tv_scale_gibbs
from .noise import estimate_sigma
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
    scheme = {"sure": tv_weight_sure, "sapg": tv_scale_sapg, "hierarchical": tv_scale_gibbs}
    est = scheme[method](t, sigma, isotropic=isotropic, generator=generator, **options)
    info = est.as_dict()
    info.update(sigma_estimated=estimated, time=time.perf_counter() - start, estimate=est)
    return sigma, est.weight, info
