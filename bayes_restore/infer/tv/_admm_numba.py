"""Fused CPU kernels (numba) for the passes of the spectral ADMM (``admm.py``) around its
transforms and its inner ROF sweeps.

Layout as in ``_rof_numba``: images ``(B, H, W)``, the zero-padded dual field ``(B, 2, H +
1, W + 1)``; scalars in the arrays' dtype.
"""

from __future__ import annotations

from numba import njit

_JIT = {"nogil": True, "cache": True, "fastmath": True, "boundscheck": False,
        "error_model": "numpy"}


@njit(**_JIT)
def prepare(x, v, d, p, yk, ub, a, alpha, rho):  # pragma: no cover - compiled
    """From the x-update ``x``: ``z = alpha x + (1 - alpha) v + d`` (kept in ``d``), the
    ROF data ``yk = rho z``, and ``ub = a = yk + div p`` (the inner iteration's start)."""
    nb, h, w = x.shape
    beta = 1 - alpha
    for b in range(nb):
        for i in range(h):
            p0 = p[b, 0, i + 1]
            p0u = p[b, 0, i]
            p1 = p[b, 1, i + 1]
            xr = x[b, i]
            vr = v[b, i]
            dr = d[b, i]
            yr = yk[b, i]
            ur = ub[b, i]
            ar = a[b, i]
            for j in range(w):
                z = alpha * xr[j] + beta * vr[j] + dr[j]
                dr[j] = z
                t = rho * z
                yr[j] = t
                e = t + p0[j + 1] - p0u[j + 1] + p1[j + 1] - p1[j]
                ur[j] = e
                ar[j] = e


@njit(**_JIT)
def finish(a, d, v, rhs, inv_rho, out):  # pragma: no cover - compiled
    """After the inner sweeps (``a`` the ROF solution for ``yk``, ``d`` holding ``z``):
    ``v = a / rho``, ``d = z - v`` and the next x-update's ``rhs = v - d``; ``out[b]``
    (float64) receives image ``b``'s sum of ``(v - v_old)^2``, the ADMM's dual residual."""
    nb, h, w = a.shape
    for b in range(nb):
        acc = 0.0
        for i in range(h):
            ar = a[b, i]
            dr = d[b, i]
            vr = v[b, i]
            rr = rhs[b, i]
            for j in range(w):
                vn = ar[j] * inv_rho
                e = vn - vr[j]
                acc += e * e
                dn = dr[j] - vn
                vr[j] = vn
                dr[j] = dn
                rr[j] = vn - dn
        out[b] = acc
