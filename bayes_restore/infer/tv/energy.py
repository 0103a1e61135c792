"""The total variation as the TV solvers define it (isotropic, anisotropic, vectorial)."""

from __future__ import annotations

import torch

from ._common import check_options
from ._workspace import Workspace

__all__ = ["tv_energy"]


def tv_energy(
    x: torch.Tensor,
    *,
    isotropic: bool = True,
    vectorial: bool = False,
    event_dim: int = 2,
) -> torch.Tensor:
    """TV of image(s) as the solvers define it, one value per image (float64).

    Isotropic: sum over pixels (and channels) of ``sqrt(dy^2 + dx^2)``; anisotropic:
    ``|dy| + |dx|``; vectorial (``event_dim=3``): sum over pixels of the Euclidean
    norm over channels and both directions.

    Examples
    --------
    >>> import torch
    >>> float(tv_energy(torch.tensor([[0., 1.], [2., 4.]]), isotropic=False))
    8.0
    """
    check_options(x, event_dim, vectorial, 1.0, 1, 1, isotropic)
    ws = Workspace(x.shape, x.dtype, x.device, event_dim, isotropic, vectorial)
    return ws.tv(x.detach())
