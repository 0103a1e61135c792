"""Fused CPU kernels (numba) for the TV Langevin stage: warm-started FGP prox and drift in one pass.

One SK-ROCK stage (or one gradient) of :class:`~bayes_restore.infer.langevin.SmoothedPotential`
in eager torch is ``prox_iter`` iterations of the fast dual projected gradient of
:func:`~bayes_restore.infer.prox.tv_prox_dual` (each about 8 passes over image-sized arrays:
``div``, the primal point, ``grad``, the step, the projection, the momentum) followed by
the drift ``(v - y) / sigma^2 - div(p) / b`` and the stage's combination
``beta a + gamma b - eps drift``, some 50 passes over memory in all. :func:`stage_images`
does the same arithmetic, pixel by pixel, in one pass over the rows: the ``K`` iterations run as a
wavefront, iteration ``k`` one row behind iteration ``k - 1`` (it needs the rows ``i`` and
``i + 1`` of the previous iteration's extrapolated dual ``r``), each iteration's primal rows
and ``r`` rows living in two-row ring buffers; the dual ``p`` is updated in place, and the
drift and the stage's output are written one row behind the last iteration. Memory is read
and written about once per stage (``a``, ``q``, ``b``, ``y``, ``p`` in; ``p``, ``out`` out).

The layout: images flattened to ``(N, H, W)`` (chains and batch first), the dual to
``(N, 2, H, W)`` (the torch layout of ``grad``: component 0 along ``H``, 1 along ``W``),
``y`` to ``(M, H, W)`` with image ``n`` observed by ``y[n % M]`` (the chains share the
observation). Per-image scalars are ``(N,)`` arrays in the images' dtype, as are the stage
scalars (a literal ``1.0`` would promote float32 arithmetic to float64). The kernels release
the GIL: :func:`run_stage` splits the images over threads (whole images; no halos).

:func:`prox_dual` runs the iterations alone (the prox of
:func:`~bayes_restore.infer.prox.tv_prox_dual`, e.g. the converged dual a chain starts from).
At 512 x 512 one stage costs about 2.3 ms of one core per chain with the default 5 iterations
(eager torch: about 18 ms).

Compiled on first use and cached on disk (``cache=True``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from bayes_restore._numba_pool import jit_disabled as jit_disabled
from bayes_restore._numba_pool import run_all

from ._dual_ball import project

_JIT = {"nogil": True, "cache": True, "fastmath": True, "boundscheck": False,
        "error_model": "numpy"}



def _over_images(fn, args: tuple, n: int, k: int) -> None:
    """``fn(*args, n0, n1)`` over the images ``[0, n)`` in ``k`` whole-image parts, the first
    on this thread and the others on the pool (:func:`~bayes_restore._numba_pool.run_all`:
    returns when every part is done)."""
    if k == 1:
        fn(*args, 0, n)
        return
    run_all([(fn, (*args, n * t // k, n * (t + 1) // k)) for t in range(k)])

@njit(**_JIT)
def _primal_row(a, q, i, alpha, r, rc, ru, fd, ft, wt, xs, k, slot):  # pragma: no cover
    """Primal row ``i`` of iteration ``k``: ``xs[k, slot] = a[i] + alpha q[i] + wt div(r)[i]``.

    ``r[:, rc]`` is the row ``i`` of the dual ``r`` and ``r[0, ru]`` component 0 of the row
    above (``r``: the full dual, or a two-row ring). ``fd`` (``ft``) is 1 or 0: whether
    ``r[0, rc]`` (``r[0, ru]``) counts -- the Neumann divergence ignores component 0 on the
    last row and component 1 on the last column.
    """
    w = a.shape[1]
    xs[k, slot, 0] = a[i, 0] + alpha * q[i, 0] + wt * (fd * r[0, rc, 0] - ft * r[0, ru, 0]
                                                       + r[1, rc, 0])
    for j in range(1, w - 1):
        xs[k, slot, j] = a[i, j] + alpha * q[i, j] + wt * (
            fd * r[0, rc, j] - ft * r[0, ru, j] + r[1, rc, j] - r[1, rc, j - 1])
    j = w - 1
    xs[k, slot, j] = a[i, j] + alpha * q[i, j] + wt * (fd * r[0, rc, j] - ft * r[0, ru, j]
                                                       - r[1, rc, j - 1])


@njit(**_JIT)
def _dual_row(xs, k, si, sn, r, ri, p, i, rs, slot, st, m, iso, one,
              keep):  # pragma: no cover - compiled
    """Row ``i`` of FGP's dual step: ``p_new = proj(r + st grad x)``, ``p[:, i] <- p_new``
    and, when ``keep``, the next ``r = p_new + m (p_new - p)`` into ``rs[k, :, slot]``.

    ``xs[k, si]``, ``xs[k, sn]``: the primal rows ``i`` and ``i + 1`` (on the last row
    ``sn = si``: its difference along ``H`` is zero, as is the last column's along ``W``).
    ``r[:, ri]``: row ``i`` of the current ``r`` (a ring of iteration ``k - 1``).
    """
    w = p.shape[2]
    for j in range(w - 1):
        x = xs[k, si, j]
        a0, a1 = project(r[0, ri, j] + st * (xs[k, sn, j] - x),
                          r[1, ri, j] + st * (xs[k, si, j + 1] - x), iso, one)
        if keep:
            rs[k, 0, slot, j] = a0 + m * (a0 - p[0, i, j])
            rs[k, 1, slot, j] = a1 + m * (a1 - p[1, i, j])
        p[0, i, j] = a0
        p[1, i, j] = a1
    j = w - 1
    a0, a1 = project(r[0, ri, j] + st * (xs[k, sn, j] - xs[k, si, j]), r[1, ri, j], iso, one)
    if keep:
        rs[k, 0, slot, j] = a0 + m * (a0 - p[0, i, j])
        rs[k, 1, slot, j] = a1 + m * (a1 - p[1, i, j])
    p[0, i, j] = a0
    p[1, i, j] = a1


@njit(**_JIT)
def _dual_row_first(xs, si, sn, p, i, rs, slot, st, iso, one,
                    keep):  # pragma: no cover - compiled
    """:func:`_dual_row` of the first iteration: ``r = p`` (each pixel read before it is
    written) and no momentum (``r_1 = p_1``)."""
    w = p.shape[2]
    for j in range(w - 1):
        x = xs[0, si, j]
        a0, a1 = project(p[0, i, j] + st * (xs[0, sn, j] - x),
                          p[1, i, j] + st * (xs[0, si, j + 1] - x), iso, one)
        if keep:
            rs[0, 0, slot, j] = a0
            rs[0, 1, slot, j] = a1
        p[0, i, j] = a0
        p[1, i, j] = a1
    j = w - 1
    a0, a1 = project(p[0, i, j] + st * (xs[0, sn, j] - xs[0, si, j]), p[1, i, j], iso, one)
    if keep:
        rs[0, 0, slot, j] = a0
        rs[0, 1, slot, j] = a1
    p[0, i, j] = a0
    p[1, i, j] = a1


@njit(**_JIT)
def _output_row(a, q, b, y, g, wd, pm, p, out, i, alpha, beta, gamma, eps, inv_var, inv_scale,
                identity, weighted, metric):  # pragma: no cover - compiled
    """Row ``i`` of the stage: ``out = beta a + gamma b - eps m (data - div(p) inv_scale)``,
    the data gradient made here, ``(v - y) inv_var`` (``identity``, ``v = a + alpha q``) or
    ``(wd v - y) inv_var`` (``identity`` and ``weighted``: a pixel-diagonal ``A = diag(d)``,
    ``wd = d^2``, ``y = A^T y``), or read from ``g``; ``m = pm`` (a per-pixel Langevin
    metric) when ``metric``, else 1."""
    h, w = a.shape
    down = i < h - 1
    top = i > 0
    for j in range(w):
        d = p[1, i, j] if j < w - 1 else p[1, i, j] - p[1, i, j]
        if j > 0:
            d -= p[1, i, j - 1]
        if down:
            d += p[0, i, j]
        if top:
            d -= p[0, i - 1, j]
        if identity:
            v = a[i, j] + alpha * q[i, j]
            if weighted:
                v = wd[i, j] * v
            data = (v - y[i, j]) * inv_var
        else:
            data = g[i, j]
        drift = data - d * inv_scale
        if metric:
            drift = pm[i, j] * drift
        out[i, j] = beta * a[i, j] + gamma * b[i, j] - eps * drift


@njit(**_JIT)
def _image(a, q, b, y, g, wd, pm, p, out, alpha, beta, gamma, eps, wt, st, inv_var, inv_scale,
           mom, iso, identity, weighted, metric, xs, rs):  # pragma: no cover - compiled
    """One image: ``K = len(mom)`` warm FGP iterations on ``p``, then the stage's output.

    Iteration ``k`` works on row ``t - k`` at wavefront step ``t``: it makes its primal row
    ``i + 1`` (from rows ``i``, ``i + 1`` of the ``r`` of iteration ``k - 1``, which that
    iteration made in this step or the one before), updates the dual on row ``i`` and, but
    for the last iteration, keeps its own ``r`` of row ``i``. ``xs``: ``(K, 2, W)`` primal
    rings, ``rs``: ``(K, 2, 2, W)`` rings of ``r`` (component, slot ``i % 2``). The first
    iteration reads ``r = p`` itself: rows ``i`` and ``i + 1`` of ``p`` are still the warm
    start when it reads them. The output of row ``i`` follows the last iteration's update of
    row ``i`` (it needs the final ``p`` on rows ``i - 1`` and ``i``).
    """
    h = a.shape[0]
    kk = mom.shape[0]
    one = st / st
    zero = one - one
    for t in range(h + kk - 1):
        for k in range(kk):
            i = t - k
            if i < 0:
                break
            if i >= h:
                continue
            for row in range(0 if i == 0 else i + 1, min(i + 2, h)):  # primal rows to make
                fd = one if row < h - 1 else zero
                ft = one if row > 0 else zero
                above = row - 1 if row > 0 else row
                if k == 0:
                    _primal_row(a, q, row, alpha, p, row, above, fd, ft, wt, xs, k, row % 2)
                else:
                    _primal_row(a, q, row, alpha, rs[k - 1], row % 2, above % 2, fd, ft, wt,
                                xs, k, row % 2)
            sn = (i + 1) % 2 if i < h - 1 else i % 2
            keep = k < kk - 1
            if k == 0:
                _dual_row_first(xs, i % 2, sn, p, i, rs, i % 2, st, iso, one, keep)
            else:
                _dual_row(xs, k, i % 2, sn, rs[k - 1], i % 2, p, i, rs, i % 2, st, mom[k], iso,
                          one, keep)
            if k == kk - 1:
                _output_row(a, q, b, y, g, wd, pm, p, out, i, alpha, beta, gamma, eps, inv_var,
                            inv_scale, identity, weighted, metric)


@njit(**_JIT)
def stage_images(a, q, b, y, g, wd, pm, p, out, alpha, beta, gamma, eps, wt, st, inv_var,
                 inv_scale, mom, iso, identity, weighted, metric, n0, n1):  # pragma: no cover
    """:func:`_image` for the images ``[n0, n1)`` (one thread); image ``n`` is observed by
    ``y[n % len(y)]`` with the weights ``wd[n % len(wd)]`` (read when ``weighted``) and the
    metric ``pm[n % len(pm)]`` (read when ``metric``); ``g`` (the data gradient, one image
    per ``n``) is read only when not ``identity``."""
    w = a.shape[2]
    kk = mom.shape[0]
    xs = np.zeros((kk, 2, w), a.dtype)
    rs = np.zeros((kk, 2, 2, w), a.dtype)
    m = y.shape[0]
    mw = wd.shape[0]
    mp = pm.shape[0]
    for n in range(n0, n1):
        _image(a[n], q[n], b[n], y[n % m], g[n], wd[n % mw], pm[n % mp], p[n], out[n], alpha,
               beta, gamma, eps[n], wt[n], st[n], inv_var[n], inv_scale[n], mom, iso, identity,
               weighted, metric, xs, rs)


def momenta(num_iter: int) -> list[float]:
    """FGP's momentum weights ``(t_k - 1) / t_{k+1}`` (``t_1 = 1``), as :func:`tv_prox_dual`
    computes them; the first is 0."""
    t, out = 1.0, []
    for _ in range(num_iter):
        t_new = (1.0 + math.sqrt(1.0 + 4.0 * t * t)) / 2.0
        out.append((t - 1.0) / t_new)
        t = t_new
    return out


def run_stage(a, q, b, y, g, p, out, alpha, beta, gamma, eps, wt, st, inv_var, inv_scale,
              mom, iso: bool, identity: bool, threads: int, wd=None, pm=None) -> None:
    """:func:`stage_images` over all images, split in whole images over ``threads`` threads
    (this one and ``threads - 1`` workers); returns when every part is done. ``wd``: the
    weights ``d^2`` of a pixel-diagonal operator (``(M, H, W)``; with ``identity``, ``y`` is
    then ``A^T y``), ``None`` for none. ``pm``: a per-pixel Langevin metric ``m`` (``(M, H,
    W)``) that multiplies the drift, ``None`` for none."""
    n = a.shape[0]
    k = max(1, min(int(threads), n))
    weighted = wd is not None
    if not weighted:
        wd = y[:1]  # not read
    metric = pm is not None
    if not metric:
        pm = y[:1]  # not read
    args = (a, q, b, y, g, wd, pm, p, out, alpha, beta, gamma, eps, wt, st, inv_var, inv_scale,
            mom, iso, identity, weighted, metric)
    _over_images(stage_images, args, n, k)


def prox_dual(v, p, wt, st, mom, iso: bool, threads: int) -> None:
    """``len(mom)`` FGP iterations of the prox of ``wt TV`` at ``v`` on the dual ``p`` (in
    place), without the stage's output: :func:`run_stage` with ``beta = gamma = eps = 0``
    into a scratch image."""
    zero = v.dtype.type(0.0)
    eps = np.zeros(v.shape[0], v.dtype)
    run_stage(v, v, v, v, v, p, np.empty_like(v), zero, zero, zero, eps, wt, st, eps, eps, mom,
              iso, True, threads)


@njit(**_JIT)
def _spectral_images(a, q, b, g, m, w1, c, out, alpha, beta, gamma, eps, n0,
                     n1):  # pragma: no cover - compiled
    """:func:`spectral_stage` on the images ``[n0, n1)``."""
    h, w = a.shape[1], a.shape[2]
    mm, mw, mc = m.shape[0], w1.shape[0], c.shape[0]
    for n in range(n0, n1):
        mn, wn, cn = m[n % mm], w1[n % mw], c[n % mc]
        e = eps[n]
        for i in range(h):
            for j in range(w):
                v = a[n, i, j] + alpha * q[n, i, j]
                drift = mn[i, j] * g[n, i, j] + wn[i, j] * v - cn[i, j]
                out[n, i, j] = beta * a[n, i, j] + gamma * b[n, i, j] - e * drift


def spectral_stage(a, q, b, g, m, w1, c, out, alpha, beta, gamma, eps, threads: int) -> None:
    """One SK-ROCK stage on DCT coefficients: ``out = beta a + gamma b - eps (m g + w1 (a +
    alpha q) - c)``, all ``(N, H, W)`` but ``m``, ``w1``, ``c`` (``(M, H, W)``, image ``n``
    reads ``[n % M]``) and ``eps`` (``(N,)``); ``out`` may be ``b`` or ``g``. The images are
    split over ``threads`` threads."""
    n = a.shape[0]
    k = max(1, min(int(threads), n))
    args = (a, q, b, g, m, w1, c, out, alpha, beta, gamma, eps)
    _over_images(_spectral_images, args, n, k)


@njit(**_JIT)
def _block_images(a, q, b, gp, aty, out, alpha, beta, gamma, eps, inv_var, f, scale, n0,
                  n1):  # pragma: no cover - compiled
    """:func:`block_stage` on the images ``[n0, n1)``."""
    h, w = a.shape[1], a.shape[2]
    hb, wb = (h // f) * f, (w // f) * f
    my = aty.shape[0]
    inv_f2 = 1.0 / (f * f)
    for n in range(n0, n1):
        e, iv, yn = eps[n], inv_var[n], aty[n % my]
        for bi in range(0, hb, f):
            for bj in range(0, wb, f):
                sv = a[n, bi, bj] - a[n, bi, bj]
                sp = sv
                for i in range(bi, bi + f):
                    for j in range(bj, bj + f):
                        sv += a[n, i, j] + alpha * q[n, i, j]
                        sp += gp[n, i, j]
                mv, mp = sv * inv_f2, sp * inv_f2  # the block means of v and of the prior's term
                for i in range(bi, bi + f):
                    for j in range(bj, bj + f):
                        data = (mv * inv_f2 - yn[i, j]) * iv
                        drift = scale * data + gp[n, i, j] + (scale - 1) * mp
                        out[n, i, j] = beta * a[n, i, j] + gamma * b[n, i, j] - e * drift
        for i in range(h):  # rows and columns outside the blocks: not observed, M = 1
            for j in range(w):
                if i >= hb or j >= wb:
                    drift = gp[n, i, j] - yn[i, j] * iv
                    out[n, i, j] = beta * a[n, i, j] + gamma * b[n, i, j] - e * drift


def block_stage(a, q, b, gp, aty, out, alpha, beta, gamma, eps, inv_var, factor: int, scale,
                threads: int) -> None:
    """One SK-ROCK stage of box decimation by ``factor`` (``A^T A = P / f^2``, ``P`` the
    block means) with the metric ``M = I + (scale - 1) P``: ``out = beta a + gamma b - eps M
    grad U(v)``, ``v = a + alpha q``, ``M grad U = scale (P v / f^2 - A^T y) / sigma^2 + gp
    + (scale - 1) P gp`` (``gp``: the prior's term at ``v``; the data term is in the range
    of ``P``). ``aty``: ``(M, H, W)``, image ``n`` reads ``[n % M]``; ``eps``, ``inv_var``:
    ``(N,)``; ``out`` may be ``b`` or ``gp``. The images are split over ``threads`` threads."""
    n = a.shape[0]
    k = max(1, min(int(threads), n))
    args = (a, q, b, gp, aty, out, alpha, beta, gamma, eps, inv_var, int(factor), scale)
    _over_images(_block_images, args, n, k)


@njit(**_JIT)
def block_project(v, out, f, scale):  # pragma: no cover - compiled
    """``out = v + (scale - 1) P v`` with ``P`` the means of the ``f x f`` blocks (``(N, H,
    W)``; rows and columns outside whole blocks copied); ``out`` may be ``v``."""
    n, h, w = v.shape
    hb, wb = (h // f) * f, (w // f) * f
    c = (scale - 1) / (f * f)
    for k in range(n):
        for i in range(h):
            for j in range(w):
                if i >= hb or j >= wb:
                    out[k, i, j] = v[k, i, j]
        for bi in range(0, hb, f):
            for bj in range(0, wb, f):
                s = v[k, bi, bj] - v[k, bi, bj]
                for i in range(bi, bi + f):
                    for j in range(bj, bj + f):
                        s += v[k, i, j]
                s *= c
                for i in range(bi, bi + f):
                    for j in range(bj, bj + f):
                        out[k, i, j] = v[k, i, j] + s
