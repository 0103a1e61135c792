"""Closed forms for the Gaussian-gradient prior with ``A = I`` (the DCT diagonalises everything)."""

from __future__ import annotations

import math

import torch

from bayes_restore.differences import dct2, dct_matrix, idct2, laplacian_eigenvalues

__all__ = ["dct_map", "gaussian_posterior_std", "gaussian_log_evidence"]


def dct_map(y: torch.Tensor, ratio: float | torch.Tensor) -> torch.Tensor:
    r"""Exact MAP (= posterior mean) of the Gaussian-gradient prior for denoising.

    .. math::

        x = \mathrm{IDCT}\left(\frac{\mathrm{DCT}(y)}{1 + (\sigma^2 / b^2)\, \mu}\right),
        \qquad \mu_{kl} = 4 \sin^2\frac{\pi k}{2H} + 4 \sin^2\frac{\pi l}{2W}

    i.e. the minimiser of ``|y - x|^2 + lambda |grad x|^2`` with ``lambda = sigma^2 / b^2``.

    Parameters
    ----------
    y : torch.Tensor
        Noisy image(s), shape ``(..., H, W)``.
    ratio : float or torch.Tensor
        ``sigma^2 / b^2`` (the energy weight ``lambda``); a tensor broadcasts against ``y``.

    Returns
    -------
    torch.Tensor
        The MAP image(s), same shape, dtype and device as ``y``.

    Examples
    --------
    >>> import torch
    >>> y = torch.ones(4, 4)
    >>> bool(torch.allclose(dct_map(y, 10.0), y))  # constants are not penalised
    True
    """
    mu = laplacian_eigenvalues(y.shape[-2], y.shape[-1], dtype=y.dtype, device=y.device)
    ratio = torch.as_tensor(ratio, dtype=y.dtype, device=y.device)
    return idct2(dct2(y) / (1 + ratio * mu))


def gaussian_posterior_std(
    shape: tuple[int, int],
    sigma: float,
    scale: float,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    r"""Exact per-pixel posterior standard deviation of the Gaussian-gradient model, ``A = I``.

    The posterior covariance is ``C^T diag(d) C`` with ``d_kl = 1 / (1/sigma^2 + mu_kl / b^2)``
    and ``C`` the orthonormal 2-D DCT, so the marginal variance of pixel ``(i, j)`` is
    ``sum_kl d_kl C_ki^2 C_lj^2``: two small matrix products with the squared 1-D DCT
    matrices. No sampling. It does not depend on the data.

    Parameters
    ----------
    shape : (int, int)
        Image size ``(H, W)``.
    sigma : float
        Noise standard deviation.
    scale : float
        Prior scale ``b``.

    Returns
    -------
    torch.Tensor
        Shape ``(H, W)``.

    Examples
    --------
    >>> std = gaussian_posterior_std((16, 16), 0.1, 0.05)
    >>> bool((std < 0.1).all())  # never more uncertain than the noise itself
    True
    """
    h, w = shape
    mu = laplacian_eigenvalues(h, w, dtype=dtype, device=device)
    d = 1.0 / (1.0 / sigma**2 + mu / scale**2)
    ch = dct_matrix(h, dtype=dtype, device=device) ** 2
    cw = dct_matrix(w, dtype=dtype, device=device) ** 2
    return torch.sqrt(ch.T @ d @ cw)


def gaussian_log_evidence(y: torch.Tensor, sigma, scale) -> torch.Tensor:
    r"""Log marginal likelihood ``log p(y | sigma, b)`` of the Gaussian-gradient model, ``A = I``.

    In the DCT basis the coefficients are independent, ``y_hat_kl ~ N(0, sigma^2 + b^2 / mu_kl)``
    for ``mu_kl > 0``; the constant coefficient (flat prior) is left out. Exact and
    differentiable in ``sigma`` and ``b``: maximise it for empirical Bayes.

    Parameters
    ----------
    y : torch.Tensor
        Image(s), shape ``(..., H, W)``.
    sigma, scale : float or torch.Tensor
        Noise level and prior scale (broadcast against the leading dimensions).

    Returns
    -------
    torch.Tensor
        Shape ``y.shape[:-2]``.

    Examples
    --------
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> y = 0.1 * torch.randn(32, 32, generator=g, dtype=torch.float64)  # pure noise
    >>> bool(gaussian_log_evidence(y, 0.1, 1e-3) > gaussian_log_evidence(y, 0.1, 1.0))
    True
    """
    h, w = y.shape[-2:]
    mu = laplacian_eigenvalues(h, w, dtype=y.dtype, device=y.device)
    coeff = dct2(y)
    sigma = torch.as_tensor(sigma, dtype=y.dtype, device=y.device)[..., None, None]
    scale = torch.as_tensor(scale, dtype=y.dtype, device=y.device)[..., None, None]
    mu_pos = torch.where(mu > 0, mu, torch.ones_like(mu))
    var = sigma**2 + scale**2 / mu_pos
    terms = -0.5 * (coeff**2 / var + torch.log(2 * math.pi * var))
    return torch.where(mu > 0, terms, torch.zeros_like(terms)).sum((-2, -1))
