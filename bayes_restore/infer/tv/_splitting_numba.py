"""Fused CPU kernels (numba) for the primal splitting of Chambolle & Pock with an operator.

One iteration of :func:`~bayes_restore.infer.tv.tv_map_pdhg`'s primal splitting is

    p <- p + rho (proj(p + sigma grad(2 uh - u)) - p),   u <- u + rho (uh - u),
    v = u + tau div p,   uh = prox(v)

(over-relaxed by ``rho``; ``rho = 1`` is the plain iteration, ``uh`` the next ``u``). In
eager torch that is about 20 passes over memory; here the dual ascent, its projection,
the extrapolation, the relaxation and ``v`` are one pass (:func:`dual_div`), the
extrapolated image never stored. When the data term's proximal step is pointwise affine
(``prox(v) = a v + c``, a pixel-diagonal operator) it joins the same pass
(:func:`iterate_affine`; TV-L1's shrinkage towards ``y / d``: :func:`iterate_shrink`),
and several iterations share one pass over memory, each a row behind the previous; its
gap check, the primal value and the data term's own bound, is one more pass
(:func:`affine_bounds`). Box decimation's block-mean step joins the pass too, several
iterations per pass as well (:func:`iterate_block`, each a row of blocks
behind the previous); other steps (an FFT) run between two passes.

Layout as in ``_rof_numba``: images ``(B, H, W)`` and the zero-padded dual field ``(B, 2,
H + 1, W + 1)``, zero-copy numpy views of the solver's torch buffers; scalars in the
arrays' dtype. Rows are streamed: row ``i`` of ``p`` needs the extrapolated rows ``i`` and
``i + 1``, and ``div p`` at row ``i`` needs the new ``p`` of rows ``i`` and ``i - 1``, so
one sweep top to bottom does all of it, and ``u`` (and a pointwise ``uh``) may be
rewritten row by row (nothing later reads a row above the current one).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from bayes_restore.infer._dual_ball import project

#: as the ROF kernels (``_rof_numba``): compiled once and cached on disk, no GIL, no
#: division checks (they stop vectorisation)
_JIT = {"nogil": True, "cache": True, "fastmath": True, "boundscheck": False,
        "error_model": "numpy"}


@njit(**_JIT)
def _dual_row(uh, u, p, b, i, s, rho, one, iso, ub0, ub1, fresh=True):  # pragma: no cover
    """Row ``i`` of image ``b``: ``p <- p + rho (proj(p + s grad u_bar) - p)``, ``u_bar =
    2 uh - u`` (``rho = 1``: the plain step).

    ``ub0`` and ``ub1`` are row buffers: ``ub0`` receives ``u_bar`` of row ``i`` (unless
    ``fresh`` is false: then it holds it already, the ``ub1`` of row ``i - 1``) and ``ub1``
    that of row ``i + 1``, computed on the fly.
    """
    h, w = u.shape[1], u.shape[2]
    p0 = p[b, 0, i + 1]
    p1 = p[b, 1, i + 1]
    if fresh:
        a = uh[b, i]
        ao = u[b, i]
        for j in range(w):
            ub0[j] = a[j] + (a[j] - ao[j])
    if i < h - 1:
        c = uh[b, i + 1]
        co = u[b, i + 1]
        for j in range(w):
            ub1[j] = c[j] + (c[j] - co[j])
        if iso:
            for j in range(w - 1):
                q0 = p0[j + 1] + s * (ub1[j] - ub0[j])
                q1 = p1[j + 1] + s * (ub0[j + 1] - ub0[j])
                rr = one / np.sqrt(max(q0 * q0 + q1 * q1, one))
                p0[j + 1] += rho * (q0 * rr - p0[j + 1])
                p1[j + 1] += rho * (q1 * rr - p1[j + 1])
            q0 = p0[w] + s * (ub1[w - 1] - ub0[w - 1])
            p0[w] += rho * (q0 / max(abs(q0), one) - p0[w])
        else:
            for j in range(w):
                q0 = min(max(p0[j + 1] + s * (ub1[j] - ub0[j]), -one), one)
                p0[j + 1] += rho * (q0 - p0[j + 1])
            for j in range(w - 1):
                q1 = min(max(p1[j + 1] + s * (ub0[j + 1] - ub0[j]), -one), one)
                p1[j + 1] += rho * (q1 - p1[j + 1])
    else:
        for j in range(w - 1):
            q1 = p1[j + 1] + s * (ub0[j + 1] - ub0[j])
            q1 = q1 / max(abs(q1), one) if iso else min(max(q1, -one), one)
            p1[j + 1] += rho * (q1 - p1[j + 1])


@njit(inline="always", **_JIT)
def _dual_div_row(uh, u, p, vv, b, i, s, tau, rho, one, iso, ub0, ub1):  # pragma: no cover
    """Row ``i`` of :func:`dual_div`: its dual step, then ``u <- u + rho (uh - u)`` and
    ``v = u + tau div p`` into the row ``vv`` (``div p`` of row ``i`` needs only rows
    ``i`` and ``i - 1`` of ``p``, both updated by now)."""
    w = u.shape[2]
    _dual_row(uh, u, p, b, i, s, rho, one, iso, ub0, ub1)
    p0 = p[b, 0, i + 1]
    p0_up = p[b, 0, i]
    p1 = p[b, 1, i + 1]
    a = uh[b, i]
    uu = u[b, i]
    for j in range(w):
        un = uu[j] + rho * (a[j] - uu[j])
        uu[j] = un
        vv[j] = un + tau * (p0[j + 1] - p0_up[j + 1] + p1[j + 1] - p1[j])


@njit(**_JIT)
def dual_div(uh, u, p, v, s, tau, rho, one, iso):  # pragma: no cover - compiled
    """One relaxed dual step, ``u <- u + rho (uh - u)`` and ``v = u + tau div p`` in one
    pass (``p`` and ``u`` updated in place); the caller then sets ``uh = prox(v)``."""
    nb, h, w = u.shape
    ub0 = np.empty(w, u.dtype)
    ub1 = np.empty(w, u.dtype)
    for b in range(nb):
        for i in range(h):
            _dual_div_row(uh, u, p, v[b, i], b, i, s, tau, rho, one, iso, ub0, ub1)


@njit(**_JIT)
def _sweep_pointwise(uh, u, p, first, second, s, tau, rho, one, iso, count,
                     shrink):  # pragma: no cover - compiled
    """The lagged row sweep of :func:`iterate_affine` (``shrink`` False: ``first, second =
    gain, offset``) and :func:`iterate_shrink` (True: ``target, thr``)."""
    nb, h, w = u.shape
    ubar = np.empty((count, 2, w), u.dtype)
    rows = nb * h
    for step in range(rows + count - 1):
        for k in range(count):
            r = step - k
            if r < 0:
                break
            if r >= rows:
                continue
            b = r // h
            i = r - b * h
            _dual_row(uh, u, p, b, i, s, rho, one, iso, ubar[k, i & 1], ubar[k, 1 - (i & 1)],
                      i == 0)
            p0 = p[b, 0, i + 1]
            p0_up = p[b, 0, i]
            p1 = p[b, 1, i + 1]
            a = uh[b, i]
            uu = u[b, i]
            g = first[b, i]
            f = second[b, i]
            if shrink:  # uh = v - clip(v - target, +-thr)
                for j in range(w):
                    un = uu[j] + rho * (a[j] - uu[j])
                    uu[j] = un
                    v = un + tau * (p0[j + 1] - p0_up[j + 1] + p1[j + 1] - p1[j])
                    a[j] = v - min(max(v - g[j], -f[j]), f[j])
            else:  # u <- u + rho (uh - u), v = u + tau div p, uh = gain v + offset
                for j in range(w):
                    un = uu[j] + rho * (a[j] - uu[j])
                    uu[j] = un
                    a[j] = g[j] * (un + tau * (p0[j + 1] - p0_up[j + 1] + p1[j + 1]
                                               - p1[j])) + f[j]


@njit(**_JIT)
def iterate_affine(uh, u, p, gain, offset, s, tau, rho, one, iso, count):  # pragma: no cover
    """``count`` iterations of :func:`dual_div` with the pointwise prox ``uh = gain v +
    offset``, all in one pass over the rows.

    Per row, the row of :func:`dual_div` and then the prox (row ``i`` of ``uh`` is
    rewritten once the dual step of row ``i`` has used it: later rows read only rows
    below); ``v`` is never stored. Iteration ``k + 1`` runs one row behind iteration
    ``k``, as in the ROF kernel (``_rof_numba.sweep_many``): at each step it updates row
    ``r - 1`` when iteration ``k`` has just updated row ``r``. That row's inputs are then
    ready (iteration ``k``'s ``u`` and ``uh`` of rows ``r - 1`` and ``r``, iteration ``k +
    1``'s ``p`` of row ``r - 2``), and iteration ``k`` no longer reads its old values
    (its row ``r`` read ``p`` of row ``r - 1`` before this). So each row goes through all
    ``count`` iterations while it is in cache, memory is read and written about once per
    call, and the arithmetic, pixel by pixel, is that of ``count`` plain iterations. Each
    iteration keeps its own two rows of ``u_bar`` (row ``i + 1``'s, made for the dual step
    of row ``i``, serves row ``i + 1``). Images of a batch follow each other in the sweep.
    """
    _sweep_pointwise(uh, u, p, gain, offset, s, tau, rho, one, iso, count, False)


@njit(**_JIT)
def affine_bounds(u, p, d, y, lo, hi, iso, out):  # pragma: no cover - compiled
    """Per image, ``P(u) = 0.5 |d u - y|^2 + TV(u)`` into ``out[b, 0]`` and the box bound
    of the projected field into ``out[b, 1]`` (float64), in one pass.

    The bound (``PixelDiagonalProx.lower_bound``): with ``p'`` the projection of ``p``
    onto ``|p| <= 1`` and ``e = div p'``, the sum over pixels of the minimum over ``t``
    in ``[lo, hi]`` of ``0.5 (d t - y)^2 - t e``, which is ``min(-lo e, -hi e) + 0.5
    y^2`` where ``d = 0``. ``u``, ``d``, ``y``: ``(B, H, W)``; ``p``: ``(B, 2, H + 1, W +
    1)`` as :func:`dual_div`; ``lo``, ``hi``: ``(B,)`` float64. Everything is promoted to
    float64 before it is used, the projection included.
    """
    nb, h, w = u.shape
    q0 = np.zeros(w + 1)  # projected component 0 of the row above (its padding zero)
    n0 = np.zeros(w + 1)  # projected component 0 of this row
    n1 = np.zeros(w + 1)  # and component 1; n0[0] and n1[0] stay zero
    for b in range(nb):
        a, c = lo[b], hi[b]
        prim = 0.0
        bound = 0.0
        for j in range(w + 1):
            q0[j] = 0.0
        for i in range(h):
            r0 = p[b, 0, i + 1]
            r1 = p[b, 1, i + 1]
            for j in range(1, w + 1):
                x0 = np.float64(r0[j])
                x1 = np.float64(r1[j])
                if iso:
                    f = 1.0 / np.sqrt(max(x0 * x0 + x1 * x1, 1.0))
                    x0 *= f
                    x1 *= f
                else:
                    x0 = min(max(x0, -1.0), 1.0)
                    x1 = min(max(x1, -1.0), 1.0)
                n0[j] = x0
                n1[j] = x1
            uu = u[b, i]
            un = u[b, i + 1] if i < h - 1 else u[b, i]
            dd = d[b, i]
            yy = y[b, i]
            for j in range(w):
                e = n0[j + 1] - q0[j + 1] + n1[j + 1] - n1[j]
                dj = np.float64(dd[j])
                yj = np.float64(yy[j])
                uj = np.float64(uu[j])
                if dj != 0.0:
                    t = min(max((dj * yj + e) / (dj * dj), a), c)
                    r = dj * t - yj
                    bound += 0.5 * r * r - t * e
                else:
                    bound += min(-a * e, -c * e) + 0.5 * yj * yj
                r = dj * uj - yj
                gy = np.float64(un[j]) - uj
                gx = np.float64(uu[j + 1]) - uj if j < w - 1 else 0.0
                tv = np.sqrt(gy * gy + gx * gx) if iso else abs(gy) + abs(gx)
                prim += 0.5 * r * r + tv
            for j in range(w + 1):
                q0[j] = n0[j]
        out[b, 0] = prim
        out[b, 1] = bound


@njit(inline="always", **_JIT)
def _block_row_means(a, g0, g1, cols, f, cf):  # pragma: no cover - compiled
    """``cols[j]``: ``cf`` times the sum of ``a[g0:g1]`` over the ``f``-wide block of
    column ``j`` (column sums first, then the blocks); 0 beyond the last whole block."""
    w = cols.shape[0]
    for j in range(w):
        cols[j] = 0.0
    for i in range(g0, g1):
        row = a[i]
        for j in range(w):
            cols[j] += row[j]
    for jb in range(w // f):
        acc = cols[jb * f]
        for q in range(1, f):
            acc += cols[jb * f + q]
        acc *= cf
        for q in range(f):
            cols[jb * f + q] = acc
    for j in range((w // f) * f, w):
        cols[j] = 0.0


@njit(**_JIT)
def _sweep_block(uh, u, p, v, aty_scaled, yb, thr, f, cf, s, tau, rho, one, iso, count,
                 shrink):  # pragma: no cover - compiled
    """The lagged group sweep of :func:`iterate_block` (``shrink`` False: ``uh = v - c M v +
    aty_scaled`` with ``cf`` as there; ``yb``, ``thr`` unused) and
    :func:`iterate_block_shrink` (True: each block shifted by ``-clip(m - y_b, +-thr)``,
    ``cf = 1 / f^2``; ``aty_scaled`` unused)."""
    nb, h, w = u.shape
    ub0 = np.empty(w, u.dtype)
    ub1 = np.empty(w, u.dtype)
    cols = np.empty(w, u.dtype)
    groups = (h + f - 1) // f
    total = nb * groups
    wb = w // f
    for step in range(total + count - 1):
        for k in range(count):
            gi = step - k
            if gi < 0:
                break
            if gi >= total:
                continue
            b = gi // groups
            g0 = (gi - b * groups) * f
            g1 = min(g0 + f, h)
            for i in range(g0, g1):
                _dual_div_row(uh, u, p, v[b, i], b, i, s, tau, rho, one, iso, ub0, ub1)
            if g1 - g0 < f:  # no whole block row
                for i in range(g0, g1):
                    for j in range(w):
                        uh[b, i, j] = v[b, i, j] if shrink else v[b, i, j] + aty_scaled[b, i, j]
                continue
            _block_row_means(v[b], g0, g1, cols, f, cf)
            if shrink:
                c = thr[b]
                yr = yb[b, g0 // f]
                for jb in range(wb):
                    e = min(max(cols[jb * f] - yr[jb], -c), c)
                    for q in range(f):
                        cols[jb * f + q] = e
                for i in range(g0, g1):
                    row = v[b, i]
                    o = uh[b, i]
                    for j in range(w):
                        o[j] = row[j] - cols[j]
            else:
                for i in range(g0, g1):
                    row = v[b, i]
                    o = uh[b, i]
                    t = aty_scaled[b, i]
                    for j in range(w):
                        o[j] = row[j] - cols[j] + t[j]


@njit(**_JIT)
def iterate_block(uh, u, p, v, aty_scaled, f, cf, s, tau, rho, one, iso,
                  count=1):  # pragma: no cover - compiled
    """``count`` iterations of :func:`dual_div` with box decimation's prox in the same
    pass.

    Rows go in groups of ``f`` (one row of blocks): their dual steps, ``u`` and ``v``
    first, then ``uh = v - c M v + aty_scaled`` (:func:`block_prox`) over the group (the
    dual step of the group's last row has read the first row of the next group, which
    is rewritten only later). Rows beyond the last whole block row: ``uh = v +
    aty_scaled``. As in :func:`iterate_affine`, iteration ``k + 1`` runs one group behind
    iteration ``k``: its inputs are then ready (iteration ``k``'s ``u`` and ``uh`` of the
    group and of the next group's first row) and iteration ``k`` no longer needs their old
    values (its next group has read ``p`` of this group's last row). ``v`` is scratch
    (each row holds the last iteration that passed it).
    """
    none = np.empty((1, 1, 1), u.dtype)
    _sweep_block(uh, u, p, v, aty_scaled, none, none[0, 0], f, cf, s, tau, rho, one, iso,
                 count, False)


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
def polish_dual(p, g, count, s, one, iso, f=1):  # pragma: no cover - compiled
    """``count`` FISTA steps on ``0.5 |B (div p - g)|^2`` over ``|p| <= 1``, ``p`` in place.

    ``B`` is the identity for ``f = 1``: the gap certificate's dual field, moved towards
    ``div p = g = A^T q`` before the Poisson correction closes the rest (which then
    costs less of the scaling). For ``f >= 2``, ``B = I - M`` with ``M`` the mean over
    each ``f x f`` block (``h`` and ``w`` multiples of ``f``): ``div p`` is moved towards
    the block-constant images, the range of a box decimation's ``A^T`` (``g = 0``
    then). ``s``: the step (``1 / 8``, ``||grad||^2 <= 8``, ``||B|| = 1``). Layouts as
    :func:`dual_div`; the Neumann zeros of ``p`` stay zero. The inner loops have no
    branches (the last row and column apart), so that they vectorise.
    """
    nb, h, w = g.shape
    d = np.empty((h, w), g.dtype)
    cols = np.empty(w, g.dtype)
    cf = g.dtype.type(1.0 / (f * f))
    y = p.copy()  # the extrapolated point
    t = 1.0
    zero = g.dtype.type(0.0)
    for _ in range(count):
        t_new = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t * t))
        beta = g.dtype.type((t - 1.0) / t_new)
        t = t_new
        for b in range(nb):
            y0 = y[b, 0]
            y1 = y[b, 1]
            gb = g[b]
            for i in range(h):
                a0 = y0[i + 1]
                a0u = y0[i]
                a1 = y1[i + 1]
                gi = gb[i]
                di = d[i]
                for j in range(w):
                    di[j] = a0[j + 1] - a0u[j + 1] + a1[j + 1] - a1[j] - gi[j]
            if f > 1:  # d <- d - M d, a row of blocks at a time
                for g0 in range(0, h, f):
                    _block_row_means(d, g0, g0 + f, cols, f, cf)
                    for i in range(g0, g0 + f):
                        di = d[i]
                        for j in range(w):
                            di[j] -= cols[j]
            p0 = p[b, 0]
            p1 = p[b, 1]
            for i in range(h):
                di = d[i]
                dn = d[i + 1] if i < h - 1 else d[i]
                r0 = p0[i + 1]
                r1 = p1[i + 1]
                z0 = y0[i + 1]
                z1 = y1[i + 1]
                last = i == h - 1
                for j in range(w - 1):
                    q0 = zero if last else z0[j + 1] + s * (dn[j] - di[j])
                    q1 = z1[j + 1] + s * (di[j + 1] - di[j])
                    q0, q1 = project(q0, q1, iso, one)
                    o0 = r0[j + 1]
                    o1 = r1[j + 1]
                    r0[j + 1] = q0
                    r1[j + 1] = q1
                    z0[j + 1] = q0 + beta * (q0 - o0)
                    z1[j + 1] = q1 + beta * (q1 - o1)
                q0 = zero if last else z0[w] + s * (dn[w - 1] - di[w - 1])
                q0, q1 = project(q0, zero, iso, one)
                o0 = r0[w]
                r0[w] = q0
                z0[w] = q0 + beta * (q0 - o0)


@njit(**_JIT)
def block_correct(p, q, f, pmat):  # pragma: no cover - compiled
    """Make ``div p`` constant on each ``f x f`` block, in place, and ``q = f^2 A div p``.

    Per block: ``r = (I - M) div p`` (``M`` the block mean), ``phi = pmat r`` (``pmat``
    the ``f^2 x f^2`` pseudo-inverse of the block's negative Neumann Laplacian, so that
    ``div grad phi = -r``), ``grad phi`` added to the block's interior edges (the edges
    on block borders, and so the block sums of ``div p``, are kept); ``q`` receives the
    block sums of ``div p``, ``f^2`` times its block means. ``p`` as :func:`dual_div`,
    ``q`` of shape ``(B, H / f, W / f)`` (``f`` divides ``H`` and ``W``).
    """
    nb, hb, wb = q.shape
    n = f * f
    r = np.empty(n, p.dtype)
    phi = np.empty(n, p.dtype)
    inv = p.dtype.type(1.0 / n)
    for b in range(nb):
        p0 = p[b, 0]
        p1 = p[b, 1]
        for bi in range(hb):
            i0 = bi * f
            for bj in range(wb):
                j0 = bj * f
                total = p.dtype.type(0.0)
                for a in range(f):
                    i = i0 + a
                    for c in range(f):
                        j = j0 + c
                        d = p0[i + 1, j + 1] - p0[i, j + 1] + p1[i + 1, j + 1] - p1[i + 1, j]
                        r[a * f + c] = d
                        total += d
                q[b, bi, bj] = total
                mean = total * inv
                for k in range(n):
                    r[k] -= mean
                for k in range(n):
                    acc = p.dtype.type(0.0)
                    for m in range(n):
                        acc += pmat[k, m] * r[m]
                    phi[k] = acc
                for a in range(f - 1):
                    for c in range(f):
                        p0[i0 + a + 1, j0 + c + 1] += phi[(a + 1) * f + c] - phi[a * f + c]
                for a in range(f):
                    for c in range(f - 1):
                        p1[i0 + a + 1, j0 + c + 1] += phi[a * f + c + 1] - phi[a * f + c]


@njit(**_JIT)
def iterate_shrink(uh, u, p, target, thr, s, tau, rho, one, iso, count):  # pragma: no cover
    """``count`` iterations of TV-L1's primal splitting with a pointwise data term: the
    prox of ``tau theta |d x - y|_1`` is the shrinkage ``uh = v - clip(v - target, +-thr)``
    (``target = y / d``, ``thr = tau theta |d|``, 0 where ``d = 0``: the identity), in one
    pass over the rows, in the order of :func:`iterate_affine`."""
    _sweep_pointwise(uh, u, p, target, thr, s, tau, rho, one, iso, count, True)


@njit(**_JIT)
def iterate_block_shrink(uh, u, p, v, yb, thr, f, s, tau, rho, one, iso,
                         count=1):  # pragma: no cover - compiled
    """``count`` iterations of TV-L1's primal splitting with box decimation: the prox of
    ``tau theta |A x - y|_1`` shifts each ``f x f`` block of ``v`` by ``-clip(m - y_b,
    +-thr)`` (``m`` its mean, ``y_b`` its observation; ``thr = tau theta / f^2`` per image,
    ``yb`` of shape ``(B, H / f, W / f)``, ``thr`` ``(B,)``); rows and columns beyond the
    last whole block: ``uh = v``. The order of :func:`iterate_block`."""
    _sweep_block(uh, u, p, v, v, yb, thr, f, one / (f * f), s, tau, rho, one, iso, count,
                 True)
