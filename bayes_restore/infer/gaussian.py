"""Closed forms for the Gaussian-gradient prior with ``A = I`` (the DCT diagonalises everything)."""

from __future__ import annotations

import torch

from bayes_restore.differences import dct2, idct2, laplacian_eigenvalues

__all__ = ["dct_map"]


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
