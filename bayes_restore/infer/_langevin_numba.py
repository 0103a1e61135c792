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

:func:`gaussian_noise` draws the chains' Gaussian noise from a counter-based generator
(SplitMix64 words, the ziggurat), the same values whatever the number of threads.
:func:`run_skrock` runs a whole SK-ROCK step per image (its noise, then its stages) in one
call: one dispatch to the threads per step instead of one per stage and one for the noise.
:func:`run_block_skrock` does the same for box decimation's block-mean metric and
:func:`run_spectral_skrock` for a DCT metric (a reflective blur): the latter with its own
fast DCT-II (:func:`dct_tables`; 128 x 128 float32, one core, loaded machine: 51 us per
transform against 71-91 us for scipy's ``dctn`` of one image, before scipy's call overhead),
the chain's coefficients kept between stages and steps, the white noise taken as
coefficients (``m^1/2 z``: no transform).

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


@njit(**_JIT)
def skrock_images(x, q, out_a, out_b, y, wd, pm, p, nu, kappa, eps, wt, st, inv_var, inv_scale,
                  mom, iso, weighted, metric, unit, noise, base, scale, signed, inner, zx, zf,
                  n0, n1):  # pragma: no cover - compiled
    """A whole SK-ROCK step of ``s = len(nu) - 1`` stages for the images ``[n0, n1)`` (one
    thread), each image's stages one after the other (the chains do not meet between
    stages: no wait for the other threads).

    With ``noise``, first ``q[n]`` is filled with image ``n``'s words of
    :func:`gaussian_noise` (``base``: its stream's start, ``scale``: per image; the same
    values as a separate call). Stage 1 is :func:`_image` of ``(x, q, alpha = nu[1], b = q,
    beta = unit, gamma = kappa[1], eps[1])`` into ``out_a``, stage ``j >= 2`` of ``(x_{j-1},
    alpha = 0, b = x_{j-2}, nu[j], kappa[j], eps[j])`` into ``out_b`` (``j = 2``) or over
    ``x_{j-2}`` (``j > 2``): the step ends in ``out_a`` for an odd ``s``, else in ``out_b``.
    The data term is made in the pass (the identity, or ``weighted`` by ``wd``)."""
    h, w = x.shape[1], x.shape[2]
    kk = mom.shape[0]
    xs = np.zeros((kk, 2, w), x.dtype)
    rs = np.zeros((kk, 2, 2, w), x.dtype)
    m, mw, mp = y.shape[0], wd.shape[0], pm.shape[0]
    stages = nu.shape[0] - 1
    per = h * w
    m2 = per - per // 2
    zero = unit - unit
    for n in range(n0, n1):
        if noise:
            _noise_part(q.reshape(q.shape[0], per), base, scale, signed, inner, zx, zf, n * m2,
                        (n + 1) * m2)
        yn, wn, pn = y[n % m], wd[n % mw], pm[n % mp]
        _image(x[n], q[n], q[n], yn, x[n], wn, pn, p[n], out_a[n], nu[1], unit, kappa[1],
               eps[1, n], wt[n], st[n], inv_var[n], inv_scale[n], mom, iso, True, weighted,
               metric, xs, rs)
        prev = x[n]
        cur = out_a[n]
        for j in range(2, stages + 1):
            out = out_b[n] if j == 2 else prev
            _image(cur, cur, prev, yn, cur, wn, pn, p[n], out, zero, nu[j], kappa[j], eps[j, n],
                   wt[n], st[n], inv_var[n], inv_scale[n], mom, iso, True, weighted, metric, xs,
                   rs)
            prev = cur
            cur = out


def _optional_images(y, wd, pm):
    """``(weighted, wd, metric, pm)``: the kernels' flags for the optional data weights and
    metric, each absent one replaced by a slice of ``y`` that is not read."""
    weighted, metric = wd is not None, pm is not None
    return weighted, (wd if weighted else y[:1]), metric, (pm if metric else y[:1])


def run_skrock(x, q, out_a, out_b, y, p, nu, kappa, eps, wt, st, inv_var, inv_scale, mom,
               iso: bool, threads: int, wd=None, pm=None, noise=None) -> None:
    """:func:`skrock_images` over all images ``(N, H, W)`` (C-contiguous), split in whole
    images over ``threads`` threads; returns when every part is done. ``wd``, ``pm``: as
    :func:`run_stage`. ``noise``: ``(key, counter, scale)``, fill ``q`` first with the
    ``counter``-th draw of :func:`gaussian_noise`'s stream ``key`` times ``scale`` (per
    image): the same values as that call, whatever ``threads``."""
    n, h, w = x.shape
    k = max(1, min(int(threads), n))
    weighted, wd, metric, pm = _optional_images(y, wd, pm)
    unit = nu.dtype.type(1.0)
    if noise is None:
        base, scale = np.uint64(0), inv_var  # not read
    else:
        key, counter, scale = noise
        if not q.flags.c_contiguous:
            raise ValueError("q must be C-contiguous to take the noise in place")
        words = n * ((h * w + 1) // 2)
        base = np.uint64((int(key) + int(counter) * words * _GAMMA) & _MASK64)
        scale = scale.astype(x.dtype, copy=False)
    args = (x, q, out_a, out_b, y, wd, pm, p, nu, kappa, eps, wt, st, inv_var, inv_scale, mom,
            iso, weighted, metric, unit, noise is not None, base, scale, _ZIG_SIGNED,
            _ZIG_INNER, _ZIG_X, _ZIG_F)
    _over_images(skrock_images, args, n, k)


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
    weighted, wd, metric, pm = _optional_images(y, wd, pm)
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
def _block_image(a, q, b, gp, yn, out, alpha, beta, gamma, e, iv, f,
                 scale):  # pragma: no cover - compiled
    """:func:`block_stage` on one image ``(H, W)`` (``yn``: its ``A^T y``; ``e``, ``iv``: its
    ``eps`` and ``1 / sigma^2``). Per row of blocks: the column sums of ``v = a + alpha q`` and
    of ``gp`` over its ``f`` rows, the block means spread back over the columns, then the
    output rows (whole rows: vectorised)."""
    h, w = a.shape
    hb, wb = (h // f) * f, (w // f) * f
    inv_f2 = 1.0 / (f * f)
    zero = a[0, 0] - a[0, 0]
    sv = np.empty(w, a.dtype)
    sp = np.empty(w, a.dtype)
    for bi in range(0, hb, f):
        for j in range(w):
            sv[j] = zero
            sp[j] = zero
        for i in range(bi, bi + f):
            ra, rq, rg = a[i], q[i], gp[i]
            for j in range(w):
                sv[j] += ra[j] + alpha * rq[j]
                sp[j] += rg[j]
        for bj in range(0, wb, f):  # the block sums, spread over the block's columns
            tv, tp = zero, zero
            for j in range(bj, bj + f):
                tv += sv[j]
                tp += sp[j]
            tv *= inv_f2 * inv_f2  # the block mean of v over f^2 (A^T A = P / f^2)
            tp *= inv_f2
            for j in range(bj, bj + f):
                sv[j] = tv
                sp[j] = tp
        for i in range(bi, bi + f):
            ra, rb, rg, ry, ro = a[i], b[i], gp[i], yn[i], out[i]
            for j in range(wb):
                drift = scale * ((sv[j] - ry[j]) * iv) + rg[j] + (scale - 1) * sp[j]
                ro[j] = beta * ra[j] + gamma * rb[j] - e * drift
    for i in range(h):  # rows and columns outside the blocks: not observed, M = 1
        for j in range(w):
            if i >= hb or j >= wb:
                drift = gp[i, j] - yn[i, j] * iv
                out[i, j] = beta * a[i, j] + gamma * b[i, j] - e * drift


@njit(**_JIT)
def _block_images(a, q, b, gp, aty, out, alpha, beta, gamma, eps, inv_var, f, scale, n0,
                  n1):  # pragma: no cover - compiled
    """:func:`block_stage` on the images ``[n0, n1)``."""
    my = aty.shape[0]
    for n in range(n0, n1):
        _block_image(a[n], q[n], b[n], gp[n], aty[n % my], out[n], alpha, beta, gamma, eps[n],
                     inv_var[n], f, scale)


@njit(**_JIT)
def block_skrock_images(x, q, out_a, out_b, gp, aty, p, nu, kappa, eps, wt, st, inv_var,
                        inv_scale, mom, iso, f, scale, n0, n1):  # pragma: no cover - compiled
    """A whole SK-ROCK step of box decimation by ``f`` with the metric ``M = I + (scale - 1)
    P`` (:func:`block_stage`'s) for the images ``[n0, n1)`` (one thread): per stage the
    prior's term at ``v = a + alpha q`` (:func:`_image` without a data term, into ``gp``,
    ``(N, H, W)`` scratch), then :func:`_block_image`. The stages' buffers as
    :func:`skrock_images` (the step ends in ``out_a`` for an odd ``s``, else ``out_b``);
    ``eps``: ``(s + 1, N)`` (the metric's ``base`` in it)."""
    w = x.shape[2]
    kk = mom.shape[0]
    xs = np.zeros((kk, 2, w), x.dtype)
    rs = np.zeros((kk, 2, 2, w), x.dtype)
    my = aty.shape[0]
    stages = nu.shape[0] - 1
    unit = nu.dtype.type(1.0)
    zero = unit - unit
    minus = -unit
    for n in range(n0, n1):
        yn, g = aty[n % my], gp[n]
        # the prior's term alone: beta = gamma = 0, eps = -1 and a data term (v - v) * 0
        _image(x[n], q[n], q[n], x[n], x[n], x[n], x[n], p[n], g, nu[1], zero, zero, minus,
               wt[n], st[n], zero, inv_scale[n], mom, iso, True, False, False, xs, rs)
        _block_image(x[n], q[n], q[n], g, yn, out_a[n], nu[1], unit, kappa[1], eps[1, n],
                     inv_var[n], f, scale)
        prev = x[n]
        cur = out_a[n]
        for j in range(2, stages + 1):
            out = out_b[n] if j == 2 else prev
            _image(cur, cur, cur, cur, cur, cur, cur, p[n], g, zero, zero, zero, minus, wt[n],
                   st[n], zero, inv_scale[n], mom, iso, True, False, False, xs, rs)
            _block_image(cur, cur, prev, g, yn, out, zero, nu[j], kappa[j], eps[j, n],
                         inv_var[n], f, scale)
            prev = cur
            cur = out


def run_block_skrock(x, q, out_a, out_b, gp, aty, p, nu, kappa, eps, wt, st, inv_var,
                     inv_scale, mom, iso: bool, factor: int, scale, threads: int) -> None:
    """:func:`block_skrock_images` over all images ``(N, H, W)``, split in whole images over
    ``threads`` threads; returns when every part is done. Checks the shapes first (the
    kernels run without bounds checks)."""
    n, h, w = x.shape
    for name, arr in (("q", q), ("out_a", out_a), ("out_b", out_b), ("gp", gp)):
        if arr.shape != x.shape:
            raise ValueError(f"{name} has shape {arr.shape}, the images {x.shape}")
    if p.shape != (n, 2, h, w):
        raise ValueError(f"the dual has shape {p.shape}, expected {(n, 2, h, w)}")
    if aty.ndim != 3 or aty.shape[1:] != (h, w) or aty.shape[0] < 1:
        raise ValueError(f"A^T y has shape {aty.shape}, expected (M, {h}, {w})")
    if eps.shape != (len(nu), n) or len(kappa) != len(nu):
        raise ValueError(f"eps has shape {eps.shape}, expected {(len(nu), n)}")
    for name, arr in (("wt", wt), ("st", st), ("inv_var", inv_var), ("inv_scale", inv_scale)):
        if arr.shape != (n,):
            raise ValueError(f"{name} has shape {arr.shape}: one per image ({n})")
    k = max(1, min(int(threads), n))
    args = (x, q, out_a, out_b, gp, aty, p, nu, kappa, eps, wt, st, inv_var, inv_scale, mom,
            iso, int(factor), scale)
    _over_images(block_skrock_images, args, n, k)


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


# --- Gaussian noise from a counter-based generator ------------------------------------------

#: layers of the ziggurat (Marsaglia & Tsang 2000): ``r`` the start of the tail, ``v`` the
#: area of every layer (of the unnormalised density ``exp(-x^2 / 2)``)
_ZIG_LAYERS = 128
_ZIG_R = 3.442619855899
_ZIG_V = 9.91256303526217e-3
_GAMMA = 0x9E3779B97F4A7C15  # SplitMix64's increment (the golden ratio's 64 bits)
_MASK64 = (1 << 64) - 1


def _ziggurat_tables() -> tuple[np.ndarray, np.ndarray]:
    """The layers' right ends ``x[0..128]`` (``x[0] = v / f(r)``, the base strip's width
    with its tail; ``x[1] = r``; ``x[128] = 0``) and ``f(x) = exp(-x^2 / 2)`` at them."""
    x = np.empty(_ZIG_LAYERS + 1)
    x[0] = _ZIG_V / math.exp(-0.5 * _ZIG_R * _ZIG_R)
    x[1] = _ZIG_R
    for i in range(1, _ZIG_LAYERS - 1):
        x[i + 1] = math.sqrt(-2.0 * math.log(_ZIG_V / x[i] + math.exp(-0.5 * x[i] * x[i])))
    x[_ZIG_LAYERS] = 0.0
    return x, np.exp(-0.5 * x * x)


_ZIG_X, _ZIG_F = _ziggurat_tables()
#: per 8 bits ``b`` (layer ``b & 127``, sign bit 7): the signed width of the layer over
#: 2^24 (times a 24-bit integer ``k``: the point ``k 2^-24 x[layer]``), and the ``k`` below
#: which the point is inside the layer's inner rectangle (``k 2^-24 x[layer] < x[layer +
#: 1]``). float64 for both dtypes: float32 draws are the float64 ones rounded.
_ZIG_SIGNED = np.concatenate([_ZIG_X[:-1], -_ZIG_X[:-1]]) * 2.0**-24
_ZIG_INNER = np.tile(np.ceil(_ZIG_X[1:] / _ZIG_X[:-1] * 2.0**24), 2).astype(np.int64)
#: the noise kernels' options (no fastmath: nothing to reassociate)
_NOISE_JIT = {"nogil": True, "cache": True, "boundscheck": False, "error_model": "numpy"}


@njit(**_NOISE_JIT)
def _mix64(z):  # pragma: no cover - compiled
    """SplitMix64's output function (a bijection of the 64-bit words; Steele, Lea & Flood
    2014): ``_mix64(key + (c + 1) * gamma)`` is the ``c``-th output of the stream ``key``."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(**_NOISE_JIT)
def _zig_slow(bits, h, zx, zf):  # pragma: no cover - compiled
    """The ziggurat's rare path for the 32 random ``bits`` (layer ``bits & 127``, sign bit 7,
    the point ``k = bits >> 8``) whose point fell outside its layer's inner rectangle: the
    tail (layer 0, Marsaglia 1964) or the wedge test; a rejection draws a new point (the
    fast test first), all from the hash chain of ``h`` (the draw's own 64-bit word: the
    same inputs give the same normal)."""
    gamma = np.uint64(_GAMMA)
    unit = 1.1102230246251565e-16  # 2^-53
    lay = bits & 127
    sign = (bits >> 7) & 1
    x = (bits >> 8) * 5.9604644775390625e-08 * zx[lay]
    for _ in range(1 << 20):
        if lay == 0:  # beyond r: r + t, t ~ Exp(r) accepted with probability exp(-t^2 / 2)
            while True:
                h = _mix64(h + gamma)
                u1 = (np.int64(h >> np.uint64(11)) + 0.5) * unit
                h = _mix64(h + gamma)
                u2 = (np.int64(h >> np.uint64(11)) + 0.5) * unit
                t = -math.log(u1) / zx[1]
                if -2.0 * math.log(u2) > t * t:
                    x = zx[1] + t
                    break
            return -x if sign else x
        h = _mix64(h + gamma)
        w = (np.int64(h >> np.uint64(11)) + 0.5) * unit
        if zf[lay] + w * (zf[lay + 1] - zf[lay]) < math.exp(-0.5 * x * x):  # under f
            return -x if sign else x
        h = _mix64(h + gamma)  # a new point, anywhere
        bits = np.int64(h >> np.uint64(32))
        lay = bits & 127
        sign = (bits >> 7) & 1
        x = (bits >> 8) * 5.9604644775390625e-08 * zx[lay]
        if x < zx[lay + 1]:
            return -x if sign else x
    return x  # not reached (an attempt fails with probability below 0.02)


@njit(**_NOISE_JIT)
def _normal(bits, h, signed, inner, zx, zf):  # pragma: no cover - compiled
    """A standard normal from 32 random ``bits`` (an int64 below ``2^32``): inside its
    layer's inner rectangle (about 97 % of the draws) a table lookup and a product, else
    :func:`_zig_slow` (``h``: the draw's 64-bit word)."""
    k = bits >> 8
    if k < inner[bits & 255]:
        return k * signed[bits & 255]
    return _zig_slow(bits, h, zx, zf)


@njit(**_NOISE_JIT)
def _noise_part(out, base, scale, signed, inner, zx, zf, q0, q1):  # pragma: no cover
    """The words ``[q0, q1)`` of :func:`gaussian_noise`: word ``q = n * m2 + p`` (image
    ``n``, ``m2 = ceil(per / 2)`` words per image) is ``_mix64(base + (q + 1) gamma)``; its
    low half gives the value ``p`` of image ``n``, its high half the value ``m + p``
    (``m = per // 2``; for an odd ``per`` the last word's high half is not used)."""
    per = out.shape[1]
    m = per // 2
    m2 = per - m
    gamma = np.uint64(_GAMMA)
    lo32 = np.uint64(0xFFFFFFFF)
    for n in range(q0 // m2, (q1 - 1) // m2 + 1):
        p0 = max(q0 - n * m2, 0)
        p1 = min(q1 - n * m2, m2)
        row = out[n]
        s = scale[n]
        q = n * m2
        for p in range(p0, min(p1, m)):  # _normal inline (a call per value costs here)
            h = _mix64(base + np.uint64(q + p + 1) * gamma)
            b = np.int64(h & lo32)
            c = np.int64(h >> np.uint64(32))
            kb = b >> 8
            kc = c >> 8
            if kb < inner[b & 255]:
                row[p] = s * (kb * signed[b & 255])
            else:
                row[p] = s * _zig_slow(b, h, zx, zf)
            if kc < inner[c & 255]:
                row[m + p] = s * (kc * signed[c & 255])
            else:
                row[m + p] = s * _zig_slow(c, ~h, zx, zf)
        if p1 == m2 and m2 > m:  # the odd last value
            h = _mix64(base + np.uint64(q + m + 1) * gamma)
            row[per - 1] = s * _normal(np.int64(h & lo32), h, signed, inner, zx, zf)


def noise_key(generator) -> int:
    """A 64-bit key for :func:`gaussian_noise`, drawn from a ``torch.Generator`` (the run's
    one source of randomness: the same seed gives the same key)."""
    import torch

    words = torch.randint(0, 1 << 16, (4,), generator=generator,
                          device=generator.device).tolist()
    return int(words[0] | words[1] << 16 | words[2] << 32 | words[3] << 48)


def gaussian_noise(out: np.ndarray, key: int, counter: int, scale: np.ndarray,
                   threads: int) -> None:
    """Fill ``out`` (a C-contiguous float32/float64 array of ``len(scale)`` images) with
    independent standard normal draws times each image's ``scale``: the ``counter``-th
    draw of the stream ``key``.

    A counter-based generator: the values are a function of ``(key, counter, image,
    index)`` alone. Each image takes ``ceil(per / 2)`` 64-bit words (``per`` values per
    image), word ``q`` of the ``counter``-th call being SplitMix64's output (Steele, Lea &
    Flood 2014) at ``key + (counter * words + q + 1) * gamma``; its two 32-bit halves give
    two normals by the 128-layer ziggurat (Marsaglia & Tsang 2000: 7 bits pick the layer, 1
    the sign, 24 the point; the rare tail and wedge draws hash the word further). So the
    draws are the same whatever ``threads`` (the words are split over them) and on every
    rerun, and no draw is kept between calls.
    """
    images = scale.shape[0]
    if not out.flags.c_contiguous:
        raise ValueError("out must be C-contiguous (it is written in place)")
    if images < 1 or out.size % images:
        raise ValueError(f"scale has {images} entries for {out.size} values: one per image")
    rows = out.reshape(images, -1)
    per = rows.shape[1]
    m2 = (per + 1) // 2
    words = images * m2
    base = np.uint64((int(key) + int(counter) * words * _GAMMA) & _MASK64)
    dtype = rows.dtype
    args = (rows, base, scale.astype(dtype, copy=False), _ZIG_SIGNED, _ZIG_INNER, _ZIG_X,
            _ZIG_F)
    k = max(1, min(int(threads), words // 16384 + 1))
    if k == 1:
        _noise_part(*args, 0, words)
        return
    run_all([(_noise_part, (*args, words * t // k, words * (t + 1) // k)) for t in range(k)])


# --- the DCT metric's whole step: a fast DCT-II in numba ------------------------------------
#
# The 2-D orthonormal DCT-II of an (H, W) image as a product of sparse factors (Lee 1984):
# along an axis of length n = 2^L r (r odd), ``L`` butterfly levels (block of size s: ``u =
# a[k] + a[s-1-k]``, ``v = (a[k] - a[s-1-k]) / (2 cos(pi (2k+1) / (2s)))``), an ``r x r``
# DCT-II of each odd block, then ``L`` post-addition levels (``V'[k] = V[k] + V[k+1]`` on each
# block's second half). The outputs are left unscaled and in the order the recursion leaves
# them (the even-index half of each block first): a position ``p`` holds the frequency
# ``perm[p]`` times ``1 / d[perm[p]]`` (``d``: the orthonormal scale). Every step is a whole
# row of the (N, W) array (a vector the compiler vectorises). The second axis is the first of
# the transposed array: the coefficients live as a (W, H) array, "y-layout" below, where an
# elementwise recursion runs with its constants laid out (and scaled) the same way. The
# inverse is the transpose of each factor in reverse order, after the scale ``d^2``.


def dct_tables(n: int, dtype) -> tuple:
    """Tables of the fast DCT-II along an axis of length ``n``: ``(cs, base, ip, perm, d)``
    (the butterflies' factors level by level, the odd block's DCT-II matrix, the positions of
    each frequency within the blocks of sizes ``r, 2r, ..., n/2``, the frequency at each
    position, the orthonormal scale of each frequency)."""
    r = n
    while r % 2 == 0 and r > 1:
        r //= 2
    cs, s = [], n
    while s > r:
        k = np.arange(s // 2)
        cs.append(0.5 / np.cos(np.pi * (2 * k + 1) / (2 * s)))
        s //= 2
    k, i = np.arange(r)[:, None], np.arange(r)[None, :]
    base = np.cos(np.pi * (2 * i + 1) * k / (2 * r))

    def order(s):  # the frequency at each position of a block of size s
        if s == r:
            return np.arange(r)
        p = order(s // 2)
        return np.concatenate([2 * p, 2 * p + 1])

    ip, s = [], r
    while s < n:
        inv = np.empty(s, np.int64)
        inv[order(s)] = np.arange(s)
        ip.append(inv)
        s *= 2
    d = np.full(n, math.sqrt(2.0 / n))
    d[0] = math.sqrt(1.0 / n)
    return (np.concatenate(cs).astype(dtype) if cs else np.zeros(1, dtype), base.astype(dtype),
            np.concatenate(ip) if ip else np.zeros(1, np.int64), order(n), d)


@njit(**_JIT)
def _fly(a, t, s, cs, off):  # pragma: no cover - compiled
    """One butterfly level (blocks of size ``s``) from ``a`` into ``t``."""
    n, w = a.shape
    half = s // 2
    for o in range(0, n, s):
        for k in range(half):
            c = cs[off + k]
            ra, rb, d0, d1 = a[o + k], a[o + s - 1 - k], t[o + k], t[o + half + k]
            for j in range(w):
                u, v = ra[j], rb[j]
                d0[j] = u + v
                d1[j] = (u - v) * c


@njit(**_JIT)
def _fly_t(t, a, s, cs, off):  # pragma: no cover - compiled
    """The transpose of :func:`_fly`: from ``t`` into ``a``."""
    n, w = a.shape
    half = s // 2
    for o in range(0, n, s):
        for k in range(half):
            c = cs[off + k]
            r0, r1, d0, d1 = t[o + k], t[o + half + k], a[o + k], a[o + s - 1 - k]
            for j in range(w):
                u, v = r0[j], r1[j] * c
                d0[j] = u + v
                d1[j] = u - v


@njit(**_JIT)
def _post(a, s, ip, ioff, transposed):  # pragma: no cover - compiled
    """One post-addition level in place (blocks of size ``s``; the second half's frequency
    ``k`` at ``ip[ioff + k]``): ``V[k] += V[k + 1]``, or its transpose ``V[k] += V[k - 1]``."""
    n, w = a.shape
    half = s // 2
    for o in range(0, n, s):
        base = o + half
        if transposed:
            for k in range(half - 1, 0, -1):
                r0, r1 = a[base + ip[ioff + k]], a[base + ip[ioff + k - 1]]
                for j in range(w):
                    r0[j] += r1[j]
        else:
            for k in range(half - 1):
                r0, r1 = a[base + ip[ioff + k]], a[base + ip[ioff + k + 1]]
                for j in range(w):
                    r0[j] += r1[j]


@njit(**_JIT)
def _odd(a, t, base, transposed):  # pragma: no cover - compiled
    """The odd blocks' DCT-II (or its transpose) from ``a`` into ``t``."""
    n, w = a.shape
    r = base.shape[0]
    for o in range(0, n, r):
        for k in range(r):
            d = t[o + k]
            for j in range(w):
                d[j] = 0.0
            for i in range(r):
                b = base[i, k] if transposed else base[k, i]
                s = a[o + i]
                for j in range(w):
                    d[j] += b * s[j]


@njit(**_JIT)
def _copy_rows(a, t):  # pragma: no cover - compiled
    n, w = a.shape
    for i in range(n):
        ra, rt = a[i], t[i]
        for j in range(w):
            rt[j] = ra[j]


@njit(**_JIT)
def _lee(a, t, cs, base, ip):  # pragma: no cover - compiled
    """The unscaled DCT-II along axis 0 of ``a`` (in place, ``t``: scratch of its shape)."""
    n = a.shape[0]
    r = base.shape[0]
    s, off, flip = n, 0, False
    while s > r:
        if flip:
            _fly(t, a, s, cs, off)
        else:
            _fly(a, t, s, cs, off)
        flip = not flip
        off += s // 2
        s //= 2
    if r > 1:
        if flip:
            _odd(t, a, base, False)
        else:
            _odd(a, t, base, False)
        flip = not flip
    if flip:
        _copy_rows(t, a)
    s, ioff = 2 * r, 0
    while s <= n:
        _post(a, s, ip, ioff, False)
        ioff += s // 2
        s *= 2


@njit(**_JIT)
def _lee_t(a, t, cs, base, ip):  # pragma: no cover - compiled
    """The transpose of :func:`_lee` (in place on ``a``)."""
    n = a.shape[0]
    r = base.shape[0]
    levels, total, s = 0, 0, n
    while s > r:
        levels += 1
        total += s // 2
        s //= 2
    ioff = n - r  # the offsets of the post levels: r + 2r + ... + n/2 = n - r
    s = n
    while s > r:
        ioff -= s // 2
        _post(a, s, ip, ioff, True)
        s //= 2
    flip = False
    if r > 1:
        _odd(a, t, base, True)
        flip = True
    s, off = 2 * r, total
    while s <= n:
        off -= s // 2
        if flip:
            _fly_t(t, a, s, cs, off)
        else:
            _fly_t(a, t, s, cs, off)
        flip = not flip
        s *= 2
    if flip:
        _copy_rows(t, a)


@njit(**_JIT)
def _transpose(a, out):  # pragma: no cover - compiled
    """``out = a.T`` in 8 x 8 tiles."""
    n, w = a.shape
    nb, wb = n - n % 8, w - w % 8
    for i0 in range(0, nb, 8):
        for j0 in range(0, wb, 8):
            for i in range(8):
                for j in range(8):
                    out[j0 + j, i0 + i] = a[i0 + i, j0 + j]
    for i in range(n):
        for j in range(w):
            if i >= nb or j >= wb:
                out[j, i] = a[i, j]


@njit(**_JIT)
def _dct_y(img, out, bh, th, tw, th_tab, tw_tab):  # pragma: no cover - compiled
    """``img`` (H, W) -> ``out`` (W, H): its DCT-II coefficients in y-layout (``bh``,
    ``th``: (H, W) scratch, ``tw``: (W, H))."""
    _copy_rows(img, bh)
    _lee(bh, th, th_tab[0], th_tab[1], th_tab[2])
    _transpose(bh, out)
    _lee(out, tw, tw_tab[0], tw_tab[1], tw_tab[2])


@njit(**_JIT)
def _idct_y(coef, d2, out, bw, th, tw, th_tab, tw_tab):  # pragma: no cover - compiled
    """``coef`` (W, H) y-layout coefficients -> ``out`` (H, W) pixels (``d2``: the scale
    ``d^2`` of each position; ``bw``, ``tw``: (W, H) scratch, ``th``: (H, W))."""
    w, h = coef.shape
    for i in range(w):
        rc, rd, rb = coef[i], d2[i], bw[i]
        for j in range(h):
            rb[j] = rc[j] * rd[j]
    _lee_t(bw, tw, tw_tab[0], tw_tab[1], tw_tab[2])
    _transpose(bw, out)
    _lee_t(out, th, th_tab[0], th_tab[1], th_tab[2])


def dct_y(img: np.ndarray, h_tab: tuple, w_tab: tuple) -> np.ndarray:
    """The y-layout DCT-II coefficients ``(N, W, H)`` of the images ``img`` ``(N, H, W)``
    (tables of :func:`dct_tables`; a test and set-up helper)."""
    n, h, w = img.shape
    out = np.empty((n, w, h), img.dtype)
    bh, th, tw = np.empty((h, w), img.dtype), np.empty((h, w), img.dtype), np.empty((w, h),
                                                                                   img.dtype)
    for k in range(n):
        _dct_y(img[k], out[k], bh, th, tw, h_tab[:3], w_tab[:3])
    return out


def idct_y(coef: np.ndarray, d2: np.ndarray, h_tab: tuple, w_tab: tuple) -> np.ndarray:
    """The inverse of :func:`dct_y` (``d2``: :func:`y_layout`'s scale)."""
    n, w, h = coef.shape
    out = np.empty((n, h, w), coef.dtype)
    bw, th, tw = np.empty((w, h), coef.dtype), np.empty((h, w), coef.dtype), np.empty((w, h),
                                                                                     coef.dtype)
    for k in range(n):
        _idct_y(coef[k], d2, out[k], bw, th, tw, h_tab[:3], w_tab[:3])
    return out


def y_layout(values: np.ndarray, h_tab: tuple, w_tab: tuple) -> np.ndarray:
    """Arrays ``(..., H, W)`` indexed by (orthonormal) DCT frequency, in y-layout ``(..., W,
    H)``: position ``(pw, ph)`` holds the frequency ``(perm_h[ph], perm_w[pw])``."""
    return np.ascontiguousarray(np.swapaxes(values[..., h_tab[3], :][..., :, w_tab[3]], -1, -2))


@njit(**_JIT)
def _spectral_step_image(x, xy, qw, out, out_y, g, ya, yb, yc, vy, bh, th, tw, bw, p, m, w1,
                         c, d2, rq, gh, gw, nu, kappa, eps, wt, st, inv_scale, mom, iso, white,
                         cached, xs, rs):  # pragma: no cover - compiled
    """One image's SK-ROCK step with the DCT metric (:func:`spectral_skrock_images`)."""
    h, w = x.shape
    unit = nu[0] - nu[0] + 1
    zero = unit - unit
    minus = -unit
    stages = nu.shape[0] - 1
    if not cached:
        _dct_y(x, xy, bh, th, tw, (gh[0], gh[1], gh[2]), (gw[0], gw[1], gw[2]))
    # the noise's coefficients: white, m^1/2 q (gathered into y-layout); else the transform
    if white:
        ph, pw = gh[3], gw[3]
        for a in range(w):
            for b in range(h):
                ya[a, b] = rq[a, b] * qw[ph[b], pw[a]]
    else:
        _dct_y(qw, ya, bh, th, tw, (gh[0], gh[1], gh[2]), (gw[0], gw[1], gw[2]))
    a1 = nu[1]
    for a in range(w):
        for b in range(h):
            vy[a, b] = xy[a, b] + a1 * ya[a, b]
    # stage 1 at v = x + nu_1 q: its pixels by one inverse transform
    _idct_y(vy, d2, out, bw, th, tw, (gh[0], gh[1], gh[2]), (gw[0], gw[1], gw[2]))
    _image(out, out, out, out, out, out, out, p, g, zero, zero, zero, minus, wt, st, zero,
           inv_scale, mom, iso, True, False, False, xs, rs)
    _dct_y(g, bw, bh, th, tw, (gh[0], gh[1], gh[2]), (gw[0], gw[1], gw[2]))
    e = eps[1]
    k1 = kappa[1]
    for a in range(w):
        for b in range(h):  # x^_1 = x^ + kappa_1 q^ - eps_1 (m g^ + w1 v^ - c)
            yb[a, b] = xy[a, b] + k1 * ya[a, b] - e * (m[a, b] * bw[a, b] + w1[a, b] * vy[a, b]
                                                        - c[a, b])
    prev, cur, spare = xy, yb, yc
    for j in range(2, stages + 1):
        _idct_y(cur, d2, out, bw, th, tw, (gh[0], gh[1], gh[2]), (gw[0], gw[1], gw[2]))
        _image(out, out, out, out, out, out, out, p, g, zero, zero, zero, minus, wt, st, zero,
               inv_scale, mom, iso, True, False, False, xs, rs)
        _dct_y(g, bw, bh, th, tw, (gh[0], gh[1], gh[2]), (gw[0], gw[1], gw[2]))
        e, nj, kj = eps[j], nu[j], kappa[j]
        for a in range(w):
            for b in range(h):
                spare[a, b] = nj * cur[a, b] + kj * prev[a, b] - e * (
                    m[a, b] * bw[a, b] + w1[a, b] * cur[a, b] - c[a, b])
        if j == 2:
            prev, cur, spare = cur, spare, ya  # ya (the noise) is no longer read
        else:
            prev, cur, spare = cur, spare, prev
    _idct_y(cur, d2, out, bw, th, tw, (gh[0], gh[1], gh[2]), (gw[0], gw[1], gw[2]))
    for a in range(w):
        for b in range(h):
            out_y[a, b] = cur[a, b]


@njit(**_JIT)
def spectral_skrock_images(x, xy, qw, out, out_y, p, m, w1, c, d2, rq, nu, kappa, eps, wt, st,
                           inv_scale, mom, iso, white, cached, ch, bh_, ih, ph, dh, cw, bw_,
                           iw, pw, dw, n0, n1):  # pragma: no cover - compiled
    """A whole SK-ROCK step with the DCT metric ``M = C^T diag(m) C`` for the images ``[n0,
    n1)`` (one thread), on y-layout coefficients (``(N, W, H)``; the constants ``m``, ``w1 =
    m a^2 / sigma^2``, ``c = m C A^T y / sigma^2`` (scaled by ``1 / d``), ``d2`` and ``rq =
    m^1/2 / d`` in that layout, ``(M, W, H)``, image ``n`` reading ``[n % M]``). Per stage:
    the prior's term at the stage's pixels (:func:`_image` without a data term), its
    transform, the recursion on the coefficients, the inverse transform. ``xy``: the
    coefficients of ``x`` (made here unless ``cached``); ``qw``: the white draw ``sqrt(2
    delta) z`` (``white``) or the pixel noise ``q``. Writes the step's pixels into ``out`` and
    its coefficients into ``out_y``."""
    h, w = x.shape[1], x.shape[2]
    kk = mom.shape[0]
    dt = x.dtype
    xs = np.zeros((kk, 2, w), dt)
    rs = np.zeros((kk, 2, 2, w), dt)
    g = np.empty((h, w), dt)
    bh, th = np.empty((h, w), dt), np.empty((h, w), dt)
    tw, bw = np.empty((w, h), dt), np.empty((w, h), dt)
    ya, yb, yc, vy = (np.empty((w, h), dt), np.empty((w, h), dt), np.empty((w, h), dt),
                      np.empty((w, h), dt))
    mm = m.shape[0]
    gh = (ch, bh_, ih, ph)
    gw = (cw, bw_, iw, pw)
    for n in range(n0, n1):
        k = n % mm
        _spectral_step_image(x[n], xy[n], qw[n], out[n], out_y[n], g, ya, yb, yc, vy, bh, th,
                             tw, bw, p[n], m[k], w1[k], c[k], d2[k], rq[k], gh, gw, nu, kappa,
                             eps[:, n], wt[n], st[n], inv_scale[n], mom, iso, white, cached, xs,
                             rs)


def run_spectral_skrock(x, xy, qw, out, out_y, p, consts, nu, kappa, eps, wt, st, inv_scale,
                        mom, iso: bool, white: bool, cached: bool, h_tab, w_tab,
                        threads: int) -> None:
    """:func:`spectral_skrock_images` over all images ``(N, H, W)`` (C-contiguous), split in
    whole images over ``threads`` threads; returns when every part is done. ``consts``:
    ``(m, w1, c, d2, rq)`` in y-layout, ``(M, W, H)``; ``h_tab``, ``w_tab``:
    :func:`dct_tables` of ``H`` and ``W``. Checks the shapes first (the kernels run without
    bounds checks)."""
    n, h, w = x.shape
    for name, arr in (("qw", qw), ("out", out)):
        if arr.shape != x.shape:
            raise ValueError(f"{name} has shape {arr.shape}, the images {x.shape}")
    for name, arr in (("xy", xy), ("out_y", out_y)):
        if arr.shape != (n, w, h):
            raise ValueError(f"{name} has shape {arr.shape}, expected {(n, w, h)}")
    if p.shape != (n, 2, h, w):
        raise ValueError(f"the dual has shape {p.shape}, expected {(n, 2, h, w)}")
    mm = consts[0].shape[0]
    for arr in consts:
        if arr.ndim != 3 or arr.shape != (mm, w, h) or mm < 1:
            raise ValueError(f"a constant has shape {arr.shape}, expected (M, {w}, {h})")
    if eps.shape != (len(nu), n) or len(kappa) != len(nu):
        raise ValueError(f"eps has shape {eps.shape}, expected {(len(nu), n)}")
    for name, arr in (("wt", wt), ("st", st), ("inv_scale", inv_scale)):
        if arr.shape != (n,):
            raise ValueError(f"{name} has shape {arr.shape}: one per image ({n})")
    if len(h_tab[3]) != h or len(w_tab[3]) != w:
        raise ValueError("the DCT tables are not of the images' size")
    k = max(1, min(int(threads), n))
    args = (x, xy, qw, out, out_y, p, *consts, nu, kappa, eps, wt, st, inv_scale, mom, iso,
            bool(white), bool(cached), *h_tab[:4], h_tab[4], *w_tab[:4], w_tab[4])
    _over_images(spectral_skrock_images, args, n, k)
