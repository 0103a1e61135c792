"""Fused CPU kernels (numba) for the passes of the spectral ADMM (``admm.py``) around its
transforms and its inner ROF sweeps.

Layout as in ``_rof_numba``: images ``(B, H, W)``, the zero-padded dual field ``(B, 2, H +
1, W + 1)``; scalars in the arrays' dtype.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ._rof_numba import dual_row_aniso, dual_row_iso

_JIT = {"nogil": True, "cache": True, "fastmath": True, "boundscheck": False,
        "error_model": "numpy"}


@njit(**_JIT)
def _start_row(x, v, d, p, a, b, i, alpha, beta, rho):  # pragma: no cover - compiled
    """Row ``i``: ``z = alpha x + (1 - alpha) v + d`` (kept in ``d``) and the inner ROF's
    start ``a = rho z + div p``."""
    p0 = p[b, 0, i + 1]
    p0u = p[b, 0, i]
    p1 = p[b, 1, i + 1]
    xr = x[b, i]
    vr = v[b, i]
    dr = d[b, i]
    ar = a[b, i]
    for j in range(xr.shape[0]):
        z = alpha * xr[j] + beta * vr[j] + dr[j]
        dr[j] = z
        ar[j] = rho * z + p0[j + 1] - p0u[j + 1] + p1[j + 1] - p1[j]


@njit(**_JIT)
def _dual_row(a, p, b, i, s, one, iso):  # pragma: no cover - compiled
    """Row ``i``: ``p <- proj(p + s grad a)`` (isotropic: onto ``|p| <= 1``; else each
    component onto ``[-1, 1]``), the ROF kernels' own row step."""
    if iso:
        dual_row_iso(a, p, b, i, s, one)
    else:
        dual_row_aniso(a, p, b, i, s, one)


@njit(**_JIT)
def _primal_row(a, d, p, b, i, rho):  # pragma: no cover - compiled
    """Row ``i``: ``a = rho z + div p`` (``z`` in ``d``)."""
    p0 = p[b, 0, i + 1]
    p0u = p[b, 0, i]
    p1 = p[b, 1, i + 1]
    ar = a[b, i]
    dr = d[b, i]
    for j in range(ar.shape[0]):
        ar[j] = rho * dr[j] + p0[j + 1] - p0u[j + 1] + p1[j + 1] - p1[j]


@njit(**_JIT)
def _end_row(a, d, v, rhs, b, i, inv_rho):  # pragma: no cover - compiled
    """Row ``i``: ``v = a / rho``, ``d = z - v``, ``rhs = v - d``; returns the row's sum
    of ``(v - v_old)^2`` (float64)."""
    ar = a[b, i]
    dr = d[b, i]
    vr = v[b, i]
    rr = rhs[b, i]
    acc = 0.0
    for j in range(ar.shape[0]):
        vn = ar[j] * inv_rho
        e = vn - vr[j]
        acc += e * e
        dn = dr[j] - vn
        vr[j] = vn
        dr[j] = dn
        rr[j] = vn - dn
    return acc


@njit(**_JIT)
def iterate(x, v, d, p, a, rhs, steps, alpha, rho, inv_rho, iso, out):  # pragma: no cover
    """One ADMM iteration after the x-update ``x``, in one pass over memory.

    ``z = alpha x + (1 - alpha) v + d``; ``len(steps)`` projected-gradient steps on the
    dual of the ROF problem for the data ``rho z`` (``p <- proj(p + s grad a)``, ``a =
    rho z + div p``), warm-started from ``p``; then ``v = a / rho``, ``d = z - v`` and
    the next x-update's ``rhs = v - d``. ``out[b]`` (float64) receives image ``b``'s sum
    of ``(v - v_old)^2``, the ADMM's dual residual.

    As in ``_rof_numba.sweep_many``, step ``k`` runs one row behind step ``k - 1``, so a
    row goes through all of them while it is in cache; the first stage (``z`` and the
    start ``a``) and the last (``v``, ``d``, ``rhs``) ride in the same pass. ``a``
    holds the inner primal iterate: row ``i`` of step ``k`` overwrites row ``i`` of step
    ``k - 1``, which no later stage reads.
    """
    nb, h, w = x.shape
    m = steps.shape[0]
    one = rho / rho
    beta = one - alpha
    for b in range(nb):
        acc = 0.0
        for t in range(h + m):
            for k in range(m + 1):
                r = t - k
                if r < 0:
                    break
                if r < h:
                    if k == 0:
                        _start_row(x, v, d, p, a, b, r, alpha, beta, rho)
                    else:
                        _dual_row(a, p, b, r, steps[k - 1], one, iso)
                        _primal_row(a, d, p, b, r, rho)
                        if k == m:
                            acc += _end_row(a, d, v, rhs, b, r, inv_rho)
        out[b] = acc


@njit(**_JIT)
def div(p, out):  # pragma: no cover - compiled
    """``out <- div p`` (``(B, 2, H + 1, W + 1)`` padded field to ``(B, H, W)``), one pass."""
    nb, h, w = out.shape
    for b in range(nb):
        for i in range(h):
            p0 = p[b, 0, i + 1]
            p0u = p[b, 0, i]
            p1 = p[b, 1, i + 1]
            o = out[b, i]
            for j in range(w):
                o[j] = p0[j + 1] - p0u[j + 1] + p1[j + 1] - p1[j]


@njit(**_JIT)
def tv(u, iso, out):  # pragma: no cover - compiled
    """``out[b] <- TV(u_b)`` (float64 sums; isotropic or anisotropic, Neumann forward
    differences: none across the last row and column)."""
    nb, h, w = u.shape
    for b in range(nb):
        acc = 0.0
        for i in range(h):
            ur = u[b, i]
            un = u[b, i + 1] if i < h - 1 else u[b, i]
            for j in range(w - 1):
                c = np.float64(ur[j])
                gy = np.float64(un[j]) - c
                gx = np.float64(ur[j + 1]) - c
                if iso:
                    acc += math.sqrt(gy * gy + gx * gx)
                else:
                    acc += abs(gy) + abs(gx)
            acc += abs(np.float64(un[w - 1]) - np.float64(ur[w - 1]))
        out[b] = acc


@njit(**_JIT)
def closed_norm_max(p, r, iso, out):  # pragma: no cover - compiled
    """``out[b] <- max |p + f|`` over image ``b`` (the pointwise dual norm: Euclidean if
    ``iso``, else the largest component), ``f`` a field with ``div f = r`` for a
    zero-mean ``r``, made by integrating ``r`` and never stored.

    ``f`` is the mean of two line integrals. Along rows: the first component carries
    the cumulative row sums (``F_i / W``, ``F_i`` the sum of rows ``0..i``), the second
    the cumulative sums along each row of ``r`` minus its row mean. Along columns: the
    same with the axes swapped. Each has ``div f = r`` exactly (their mean too), with
    the Neumann zeros (no first component on the last row, no second on the last
    column). For a residual of high frequencies only, these sums stay small, like the
    gradient of the Poisson solution of ``div grad phi = r``, at one pass instead of a
    DCT pair.
    """
    nb, h, w = r.shape
    col = np.empty(w)
    acc = np.empty(w)
    for b in range(nb):
        col[:] = 0.0
        rows = np.empty(h)
        for i in range(h):
            s = 0.0
            for j in range(w):
                s += r[b, i, j]
                col[j] += r[b, i, j]
            rows[i] = s
        for j in range(w):
            col[j] /= h  # column means
        acc[:] = 0.0
        big = 0.0
        total = 0.0  # F_i
        for i in range(h):
            total += rows[i]
            mean = rows[i] / w
            f0_rows = total / w if i < h - 1 else 0.0
            running = 0.0  # cumulative sum along the row of r - mean
            cumcol = 0.0  # G_j / h: cumulative column sums (of r) over h
            p0 = p[b, 0, i + 1]
            p1 = p[b, 1, i + 1]
            for j in range(w):
                e = r[b, i, j]
                acc[j] += e - col[j]
                running += e - mean
                cumcol += col[j]
                f0 = 0.5 * (f0_rows + (acc[j] if i < h - 1 else 0.0))
                f1 = 0.5 * (running + cumcol) if j < w - 1 else 0.0
                a0 = p0[j + 1] + f0
                a1 = p1[j + 1] + f1
                if iso:
                    n = a0 * a0 + a1 * a1
                else:
                    n = max(a0 * a0, a1 * a1)
                big = max(big, n)
        out[b] = math.sqrt(big)


@njit(**_JIT)
def low_fix(r_hat, keep, inv_conj, q_hat, g_hat, g_out, closing):  # pragma: no cover
    """The residual's transform ``r_hat`` removed at the kept frequencies by ``q``:
    there ``q_hat -= r_hat / conj(H)`` (``inv_conj``) and ``g_hat -= r_hat`` (``g_hat =
    conj(H) q_hat``, the transform of ``A^T q``). A round (``closing`` false) also
    writes ``g_hat`` into ``g_out`` (the rounds' lower precision); the closing step
    instead zeroes ``r_hat`` there, leaving the rest for the field."""
    nb, h, w = r_hat.shape
    for b in range(nb):
        for i in range(h):
            for j in range(w):
                r = r_hat[b, i, j]
                if keep[i, j]:
                    q_hat[b, i, j] -= r * inv_conj[i, j]
                    g_hat[b, i, j] -= r
                    if closing:
                        r_hat[b, i, j] = 0
                if not closing:
                    g_out[b, i, j] = g_hat[b, i, j]


@njit(**_JIT)
def spectral_sums(q_hat, y_hat, weights, out):  # pragma: no cover - compiled
    """``out[b] <- (|q|^2, <q, y>)`` of image ``b`` from the transforms (Parseval's
    ``weights``; float64)."""
    nb, h, w = q_hat.shape
    for b in range(nb):
        s2 = 0.0
        sy = 0.0
        for i in range(h):
            for j in range(w):
                q = q_hat[b, i, j]
                c = weights[i, j]
                s2 += c * (q.real * q.real + q.imag * q.imag)
                sy += c * (q.real * y_hat[b, i, j].real + q.imag * y_hat[b, i, j].imag)
        out[b, 0] = s2
        out[b, 1] = sy


@njit(**_JIT)
def solve_in_place(f_hat, aty_hat, gain):  # pragma: no cover - compiled
    """The x-update in the transform, in place: ``f_hat <- aty_hat + gain f_hat``
    (``f_hat`` the transform of ``v - d``, ``aty_hat`` that of ``(A^T A + rho I)^-1 A^T
    y`` per image, ``gain = rho / (|H|^2 + rho)``)."""
    nb, h, w = f_hat.shape
    for b in range(nb):
        for i in range(h):
            for j in range(w):
                f_hat[b, i, j] = aty_hat[b, i, j] + gain[i, j] * f_hat[b, i, j]
