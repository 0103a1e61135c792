"""Fused CPU kernels (numba) for the primal splitting of Chambolle & Pock with an operator.

One iteration of :func:`~bayes_restore.infer.tv.tv_map_pdhg`'s primal splitting is

    p <- proj(p + sigma grad(2 u - u_old)),   v = u + tau div p,   u_next = prox(v)

In eager torch that is about 20 passes over memory; here the dual ascent, its projection,
the extrapolation and ``v`` are one pass (:func:`dual_div`), the extrapolated image never
stored. When the data term's proximal step is pointwise affine (``prox(v) = a v + c``,
a pixel-diagonal operator) it joins the same pass (:func:`iterate_affine`), which runs
several iterations per call; other steps (a block mean, an FFT) run between two passes.

Layout as in ``_rof_numba``: images ``(B, H, W)`` and the zero-padded dual field ``(B, 2,
H + 1, W + 1)``, zero-copy numpy views of the solver's torch buffers; scalars in the
arrays' dtype. Rows are streamed: row ``i`` of ``p`` needs the extrapolated rows ``i`` and
``i + 1``, and ``div p`` at row ``i`` needs the new ``p`` of rows ``i`` and ``i - 1``, so
one sweep top to bottom does all of it, and ``u_next`` may overwrite ``u_old`` row by
row (nothing later reads an ``u_old`` row above the current one).
"""

from __future__ import annotations

import numpy as np
from numba import njit

#: as the ROF kernels (``_rof_numba``): compiled once and cached on disk, no GIL, no
#: division checks (they stop vectorisation)
_JIT = {"nogil": True, "cache": True, "fastmath": True, "boundscheck": False,
        "error_model": "numpy"}


@njit(**_JIT)
def _dual_row(un, uo, p, b, i, s, one, iso, ub0, ub1):  # pragma: no cover - compiled
    """Row ``i`` of image ``b``: ``p <- proj(p + s grad u_bar)``, ``u_bar = 2 un - uo``.

    ``ub0`` and ``ub1`` are row buffers: ``ub0`` receives ``u_bar`` of row ``i`` (and
    ``ub1`` that of row ``i + 1``), computed on the fly.
    """
    h, w = un.shape[1], un.shape[2]
    p0 = p[b, 0, i + 1]
    p1 = p[b, 1, i + 1]
    a = un[b, i]
    ao = uo[b, i]
    for j in range(w):
        ub0[j] = a[j] + (a[j] - ao[j])
    if i < h - 1:
        c = un[b, i + 1]
        co = uo[b, i + 1]
        for j in range(w):
            ub1[j] = c[j] + (c[j] - co[j])
        if iso:
            for j in range(w - 1):
                q0 = p0[j + 1] + s * (ub1[j] - ub0[j])
                q1 = p1[j + 1] + s * (ub0[j + 1] - ub0[j])
                rr = one / np.sqrt(max(q0 * q0 + q1 * q1, one))
                p0[j + 1] = q0 * rr
                p1[j + 1] = q1 * rr
            q0 = p0[w] + s * (ub1[w - 1] - ub0[w - 1])
            p0[w] = q0 / max(abs(q0), one)
        else:
            for j in range(w):
                p0[j + 1] = min(max(p0[j + 1] + s * (ub1[j] - ub0[j]), -one), one)
            for j in range(w - 1):
                p1[j + 1] = min(max(p1[j + 1] + s * (ub0[j + 1] - ub0[j]), -one), one)
    else:
        for j in range(w - 1):
            q1 = p1[j + 1] + s * (ub0[j + 1] - ub0[j])
            p1[j + 1] = q1 / max(abs(q1), one) if iso else min(max(q1, -one), one)


@njit(**_JIT)
def dual_div(un, uo, p, v, s, tau, one, iso):  # pragma: no cover - compiled
    """One dual step and ``v = un + tau div p`` in one pass (``p`` updated in place)."""
    nb, h, w = un.shape
    ub0 = np.empty(w, un.dtype)
    ub1 = np.empty(w, un.dtype)
    for b in range(nb):
        for i in range(h):
            _dual_row(un, uo, p, b, i, s, one, iso, ub0, ub1)
            p0 = p[b, 0, i + 1]
            p0_up = p[b, 0, i]
            p1 = p[b, 1, i + 1]
            a = un[b, i]
            vv = v[b, i]
            for j in range(w):
                vv[j] = a[j] + tau * (p0[j + 1] - p0_up[j + 1] + p1[j + 1] - p1[j])


@njit(**_JIT)
def iterate_affine(un, uo, p, gain, offset, s, tau, one, iso, count):  # pragma: no cover
    """``count`` iterations with the pointwise prox ``prox(v) = gain v + offset``.

    Each writes ``u_next`` over ``uo`` and swaps the roles: after an odd ``count`` the
    newest iterate is in ``uo`` (the caller swaps its references then).
    """
    nb, h, w = un.shape
    ub0 = np.empty(w, un.dtype)
    ub1 = np.empty(w, un.dtype)
    for k in range(count):
        cur, old = (un, uo) if k % 2 == 0 else (uo, un)
        for b in range(nb):
            for i in range(h):
                _dual_row(cur, old, p, b, i, s, one, iso, ub0, ub1)
                p0 = p[b, 0, i + 1]
                p0_up = p[b, 0, i]
                p1 = p[b, 1, i + 1]
                a = cur[b, i]
                o = old[b, i]
                g = gain[b, i]
                f = offset[b, i]
                for j in range(w):
                    vj = a[j] + tau * (p0[j + 1] - p0_up[j + 1] + p1[j + 1] - p1[j])
                    o[j] = g[j] * vj + f[j]


@njit(**_JIT)
def block_prox(v, out, aty_scaled, f, cf):  # pragma: no cover - compiled
    """Box decimation's prox: ``out = v - c M v + aty_scaled`` (``M`` the block mean over
    ``f x f`` blocks, ``cf = c / f^2``; rows and columns beyond the last whole block:
    ``out = v + aty_scaled``, there ``A^T y`` is zero)."""
    nb, h, w = v.shape
    hb, wb = h // f, w // f
    sums = np.empty(wb, v.dtype)
    for b in range(nb):
        for bi in range(hb):
            for jb in range(wb):
                sums[jb] = 0.0
            for r in range(f):
                row = v[b, bi * f + r]
                for jb in range(wb):
                    acc = sums[jb]
                    for q in range(f):
                        acc += row[jb * f + q]
                    sums[jb] = acc
            for jb in range(wb):
                sums[jb] *= cf
            for r in range(f):
                i = bi * f + r
                row = v[b, i]
                o = out[b, i]
                t = aty_scaled[b, i]
                for jb in range(wb):
                    m = sums[jb]
                    for q in range(f):
                        j = jb * f + q
                        o[j] = row[j] - m + t[j]
                for j in range(wb * f, w):
                    o[j] = row[j] + t[j]
        for i in range(hb * f, h):
            for j in range(w):
                out[b, i, j] = v[b, i, j] + aty_scaled[b, i, j]


@njit(**_JIT)
def polish_dual(p, g, count, s, one, iso):  # pragma: no cover - compiled
    """``count`` FISTA steps on ``0.5 |div p - g|^2`` over ``|p| <= 1``, ``p`` in place.

    The gap certificate's dual field, moved towards ``div p = g = A^T q`` before the
    Poisson correction closes the rest (which then costs less of the scaling). ``s``:
    the step (``1 / 8``, ``||grad||^2 <= 8``). Layouts as :func:`dual_div`; the Neumann
    zeros of ``p`` stay zero.
    """
    nb, h, w = g.shape
    d = np.empty((h, w), g.dtype)
    y = p.copy()  # the extrapolated point
    t = 1.0
    for _ in range(count):
        t_new = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t * t))
        beta = g.dtype.type((t - 1.0) / t_new)
        t = t_new
        for b in range(nb):
            y0 = y[b, 0]
            y1 = y[b, 1]
            for i in range(h):
                for j in range(w):
                    d[i, j] = (y0[i + 1, j + 1] - y0[i, j + 1] + y1[i + 1, j + 1]
                               - y1[i + 1, j] - g[b, i, j])
            p0 = p[b, 0]
            p1 = p[b, 1]
            for i in range(h):
                for j in range(w):
                    q0 = y0[i + 1, j + 1] + s * (d[i + 1, j] - d[i, j]) if i < h - 1 else 0.0
                    q1 = y1[i + 1, j + 1] + s * (d[i, j + 1] - d[i, j]) if j < w - 1 else 0.0
                    if iso:
                        rr = one / np.sqrt(max(q0 * q0 + q1 * q1, one))
                        q0 *= rr
                        q1 *= rr
                    else:
                        q0 = min(max(q0, -one), one)
                        q1 = min(max(q1, -one), one)
                    o0 = p0[i + 1, j + 1]
                    o1 = p1[i + 1, j + 1]
                    p0[i + 1, j + 1] = q0
                    p1[i + 1, j + 1] = q1
                    y0[i + 1, j + 1] = q0 + beta * (q0 - o0)
                    y1[i + 1, j + 1] = q1 + beta * (q1 - o1)
