"""Exact empirical Bayes for the Gaussian-gradient prior: the scale that maximises the evidence
(denoising, and the operators that share the prior's DCT-II basis)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from bayes_restore._validation import as_float, check_positive
from bayes_restore.differences import dct2, laplacian_eigenvalues
from bayes_restore.infer.gaussian_spectral import observed_prior_gain
from bayes_restore.operators import LinearOperator

from ._common import golden, image_tensor

__all__ = ["gaussian_empirical_bayes"]


def gaussian_empirical_bayes(
    y: Any, sigma: float | None = None, *, operator: LinearOperator | None = None
) -> tuple[float, float]:
    r"""Empirical Bayes for the Gaussian-gradient prior: ``(sigma, b)`` maximising the evidence.

    In the DCT basis the coefficients of ``y = x + n`` are independent,
    ``y_hat_kl ~ N(0, sigma^2 + b^2 / mu_kl)`` for ``mu_kl > 0``
    (:func:`~bayes_restore.infer.gaussian.gaussian_log_evidence`); with an operator that
    shares that basis (a reflective blur by a symmetric kernel, a box decimation whose
    factor divides the image) those of ``y = A x + n`` are too,
    ``y_hat_k' ~ N(0, sigma^2 + b^2 nu_k')``, ``nu = 1 / mu`` for ``A = I``. With the ratio
    ``r = b^2 / sigma^2`` fixed, the best ``sigma^2`` is explicit,
    ``mean_k'(y_hat_k'^2 / (1 + r nu_k'))``, so the joint maximisation is a 1-D search
    over ``log r`` (a log-grid, then golden sections); with ``sigma`` given, a 1-D search
    over ``log b``. One ``(sigma, b)`` for the whole input: the channels and images of
    ``y`` share them, as in :func:`~bayes_restore.denoise`.

    Parameters
    ----------
    y : numpy.ndarray or torch.Tensor
        Observation(s), shape ``(H, W)``, ``(C, H, W)`` or ``(N, C, H, W)``.
    sigma : float, optional
        Known noise level; estimated jointly with ``b`` when ``None``.
    operator : LinearOperator, optional
        ``A`` (``None``: the identity). ``ValueError`` for one whose evidence has no closed
        form (a periodic blur, a mask, a Gaussian decimation, ...).

    Returns
    -------
    sigma : float
        The given or the maximum-evidence noise level.
    scale : float
        The maximum-evidence prior scale ``b``; the MAP weight is ``sigma^2 / b^2``.

    Raises
    ------
    ValueError
        For a bad image or ``sigma`` (naming it), an image without non-constant modes, or
        an operator without a closed-form evidence.

    Examples
    --------
    >>> import torch
    >>> from bayes_restore.differences import idct2, laplacian_eigenvalues
    >>> from bayes_restore.operators import Downsample
    >>> g = torch.Generator().manual_seed(0)
    >>> mu = laplacian_eigenvalues(128, 128)
    >>> z = torch.randn(128, 128, generator=g, dtype=torch.float64)
    >>> x = idct2(torch.where(mu > 0, 0.02 * z / mu.clamp_min(1e-12).sqrt(), 0 * z))
    >>> y = x + 0.1 * torch.randn(128, 128, generator=g, dtype=torch.float64)
    >>> s, b = gaussian_empirical_bayes(y)
    >>> round(s, 2), round(b, 2)
    (0.1, 0.02)
    >>> op = Downsample(2)
    >>> y2 = op.forward(x) + 0.01 * torch.randn(64, 64, generator=g, dtype=torch.float64)
    >>> s, b = gaussian_empirical_bayes(y2, operator=op)
    >>> round(s, 3), round(b, 2)
    (0.01, 0.02)
    """
    t, _ = image_tensor(y)
    c2, nu = _dct_power(t.detach().to(torch.float64), operator)
    if c2.numel() == 0:
        raise ValueError("y must have at least two pixels per image (a non-constant mode)")
    if sigma is not None:
        check_positive(sigma, "sigma")
        s2 = as_float(sigma, "sigma") ** 2

        def neg_evidence_b(log_b: float) -> float:
            var = s2 + math.exp(2 * log_b) * nu
            return float(0.5 * (c2 / var + torch.log(var)).sum())

        scale = math.exp(_minimise_1d(neg_evidence_b, _log_range(c2, nu)))
        return math.sqrt(s2), scale

    def profile(log_r: float) -> tuple[float, float]:
        v = 1 + math.exp(log_r) * nu
        s2 = float((c2 / v).mean())
        return 0.5 * (c2.numel() * math.log(s2) + float(torch.log(v).sum())), s2

    log_r = _minimise_1d(lambda t: profile(t)[0], _log_ratio_range(nu))
    s2 = profile(log_r)[1]
    return math.sqrt(s2), math.sqrt(s2 * math.exp(log_r))


def _dct_power(
    y: torch.Tensor, operator: LinearOperator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared DCT coefficients of every 2-D slice and their prior gains ``nu``, constant out.

    ``y_hat ~ N(0, sigma^2 + b^2 nu)``: ``nu = 1 / mu`` for ``A = I``, from the operator's
    aliasing in the DCT-II basis otherwise.
    """
    h, w = y.shape[-2:]
    if operator is None or operator.is_identity:
        mu = laplacian_eigenvalues(h, w, dtype=y.dtype, device=y.device)
        keep = mu > 0
        nu = 1.0 / torch.where(keep, mu, torch.ones_like(mu))
    else:
        nu = observed_prior_gain(operator, y)
        keep = torch.ones_like(nu, dtype=torch.bool)
        keep[0, 0] = False
    c2 = dct2(y).square().reshape(-1, h, w)
    return c2[:, keep].reshape(-1), nu[keep].expand(c2.shape[0], -1).reshape(-1)


def _log_range(c2: torch.Tensor, nu: torch.Tensor) -> tuple[float, float]:
    """A bracket for ``log b`` wide enough for any image: from the data's own spread."""
    seen = nu > 0
    spread = float((c2[seen] / nu[seen]).mean().clamp_min(1e-300)) if bool(seen.any()) else 1.0
    centre = 0.5 * math.log(spread)
    return centre - 25.0, centre + 10.0


def _log_ratio_range(nu: torch.Tensor) -> tuple[float, float]:
    seen = nu[nu > 0]
    if seen.numel() == 0:
        return -20.0, 20.0
    return -math.log(float(seen.max())) - 20.0, -math.log(float(seen.min())) + 20.0


def _minimise_1d(
    f: Callable[[float], float], bounds: tuple[float, float], *, num: int = 41, xtol: float = 1e-6
) -> float:
    """Global-ish 1-D minimiser: the best point of a grid, refined by golden sections."""
    grid = np.linspace(bounds[0], bounds[1], num)
    values = [f(float(t)) for t in grid]
    i = int(np.argmin(values))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, num - 1)]
    return golden(f, float(lo), float(hi), xtol=xtol)[0]

