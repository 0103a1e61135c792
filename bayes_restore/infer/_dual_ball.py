"""The projection of a dual pair onto TV's unit ball, shared by the fused numba kernels."""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["project"]


@njit(inline="always", nogil=True, cache=True, fastmath=True, boundscheck=False,
      error_model="numpy")
def project(a0, a1, iso, one):  # pragma: no cover - compiled
    """``(a0, a1)`` on the unit ball (``iso``, isotropic TV) or the box ``[-1, 1]^2``.

    Examples
    --------
    >>> project(3.0, 4.0, True, 1.0)
    (0.6000000000000001, 0.8)
    >>> project(3.0, -0.5, False, 1.0)
    (1.0, -0.5)
    """
    if iso:
        s = one / np.sqrt(max(a0 * a0 + a1 * a1, one))
        return a0 * s, a1 * s
    return min(max(a0, -one), one), min(max(a1, -one), one)
