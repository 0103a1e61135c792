"""A DCT-diagonal solve ``C^T diag(factor) C r`` for the gap certificate's Poisson step."""

from __future__ import annotations

import torch

from bayes_restore.differences import dct2, idct2

__all__ = ["scaled_dct_solve"]


def scaled_dct_solve(r: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``C^T diag(factor) C r`` (``C`` the orthonormal 2-D DCT-II): a DCT-diagonal solve.

    ``factor`` broadcasts against ``r``'s DCT (the inverse eigenvalues of the system). On
    the CPU the transforms are scipy's (see :func:`~bayes_restore.differences.dct2`).

    Examples
    --------
    >>> import torch
    >>> r = torch.randn(8, 8, dtype=torch.float64)
    >>> bool(torch.allclose(scaled_dct_solve(r, torch.ones(8, 8, dtype=torch.float64)), r))
    True
    """
    return idct2(dct2(r).mul_(factor))
