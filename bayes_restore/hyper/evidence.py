"""Exact empirical Bayes for the Gaussian-gradient prior: the scale that maximises the evidence."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from bayes_restore._validation import as_float, check_positive
from bayes_restore.differences import dct2, laplacian_eigenvalues

from ._common import golden, image_tensor

__all__ = ["gaussian_empirical_bayes"]


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
    t, _ = image_tensor(y)
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
    return golden(f, float(lo), float(hi), xtol=xtol)[0]

