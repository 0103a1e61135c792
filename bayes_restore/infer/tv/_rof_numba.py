"""Fused CPU kernels (numba) for the accelerated ROF primal-dual iteration (``rof.py``).

Eager torch makes one pass over memory per elementwise operation: the accelerated
iteration of :func:`~bayes_restore.infer.tv.tv_denoise_pdhg` moves 44 image-sized
arrays that way. :func:`sweep_many` does the same arithmetic row by row: per row, the
dual ascent with its projection (read ``u_bar``, ``p``; write ``p``) and then the primal
prox with the extrapolation (read ``y``, ``p``, ``u``; write ``u``, ``u_bar``): 9 arrays
per iteration. And it runs several iterations in the same pass, each one row behind
the previous, so that a row goes through all of them while it is in cache: when the
images outgrow the caches, memory traffic falls by that factor. When a gap check
follows, the primal and dual objectives of the certificate are summed in the same pass.

The layout is the solver's own (see ``Workspace`` in ``_workspace.py``): images flattened to
``(B, H, W)``, the dual field ``p`` zero-padded to ``(B, 2, H + 1, W + 1)``, so these
kernels work on zero-copy numpy views of the solver's torch buffers. Every kernel takes
its arrays and releases the GIL: large problems are split across threads by whole
images or, for one image, by strips with a halo (:class:`Plan`, :func:`iterate`). The
scalars are passed in the arrays' dtype (``one`` included: a literal ``1.0`` would
promote float32 arithmetic to float64), and ``error_model="numpy"`` drops the
division-by-zero checks that stop vectorisation.

Compiled on first use and cached on disk (``cache=True``): the first process pays a
few seconds once, later processes load the machine code in a fraction of a second.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from bayes_restore._numba_pool import jit_disabled as jit_disabled
from bayes_restore._numba_pool import run_all

_JIT = {"nogil": True, "cache": True, "fastmath": True, "boundscheck": False,
        "error_model": "numpy"}
#: below this many pixels a call runs on one thread: a thread hand-off costs ~20 us, the
#: strips' halos some more (two threads: no gain at 512 x 512, 1.13x at 724 x 724, 1.6x
#: at 1024 x 1024 and 2048 x 2048)
PARALLEL_MIN_PIXELS = 1 << 19


@njit(**_JIT)
def dual_row_iso(ubar, p, b, i, s, one):  # pragma: no cover - compiled
    """Row ``i`` of image ``b``: ``p <- p / max(1, |p|)`` after ``p += s grad u_bar``."""
    h, w = ubar.shape[1], ubar.shape[2]
    p0 = p[b, 0, i + 1]
    p1 = p[b, 1, i + 1]
    u = ubar[b, i]
    if i < h - 1:
        un = ubar[b, i + 1]
        for j in range(w - 1):
            q0 = p0[j + 1] + s * (un[j] - u[j])
            q1 = p1[j + 1] + s * (u[j + 1] - u[j])
            rr = one / np.sqrt(max(q0 * q0 + q1 * q1, one))
            p0[j + 1] = q0 * rr
            p1[j + 1] = q1 * rr
        q0 = p0[w] + s * (un[w - 1] - u[w - 1])  # last column: no x-difference
        p0[w] = q0 / max(abs(q0), one)
    else:  # last row: no y-difference
        for j in range(w - 1):
            q1 = p1[j + 1] + s * (u[j + 1] - u[j])
            p1[j + 1] = q1 / max(abs(q1), one)


@njit(**_JIT)
def dual_row_aniso(ubar, p, b, i, s, one):  # pragma: no cover - compiled
    """Row ``i`` of image ``b``: ``p <- clip(p + s grad u_bar, -1, 1)``."""
    h, w = ubar.shape[1], ubar.shape[2]
    p0 = p[b, 0, i + 1]
    p1 = p[b, 1, i + 1]
    u = ubar[b, i]
    if i < h - 1:
        un = ubar[b, i + 1]
        for j in range(w):
            p0[j + 1] = min(max(p0[j + 1] + s * (un[j] - u[j]), -one), one)
    for j in range(w - 1):
        p1[j + 1] = min(max(p1[j + 1] + s * (u[j + 1] - u[j]), -one), one)


@njit(**_JIT)
def _primal_row(u, ubar, y, p, b, i, c, a):  # pragma: no cover - compiled
    """Row ``i`` of image ``b``: ``d = y + div p``; ``u_bar <- lerp(u, d, a)``;
    ``u <- lerp(u, d, c)``."""
    w = u.shape[2]
    p0 = p[b, 0, i + 1]
    p0_up = p[b, 0, i]
    p1 = p[b, 1, i + 1]
    uu = u[b, i]
    ub = ubar[b, i]
    yy = y[b, i]
    for j in range(w):
        d = yy[j] + p0[j + 1] - p0_up[j + 1] + p1[j + 1] - p1[j]
        uo = uu[j]
        ub[j] = uo + a * (d - uo)
        uu[j] = uo + c * (d - uo)


@njit(**_JIT)
def sweep_many(u, ubar, y, p, s, c, a, one, iso, out, c0, c1):  # pragma: no cover
    """``len(s)`` iterations in one pass over the rows (one thread, all rows).

    Iteration ``k + j`` runs one row behind iteration ``k + j - 1``: at each step it
    updates row ``r - j``, whose inputs (the new ``u_bar`` of rows ``r - j`` and
    ``r - j + 1``, the new ``p`` of row ``r - j - 1``) the iterations before it have just
    made, and whose old values they no longer need. So the rows go through every
    iteration while they are in cache, and memory is read and written once per
    ``len(s)`` iterations; the arithmetic, pixel by pixel, is that of ``len(s)`` plain
    iterations.

    If ``out`` has a row per image, the objectives of the final state of rows
    ``[c0, c1)`` are added to it on the way (:func:`_objective_row` of row ``r - 1`` once
    the last iteration has updated row ``r``, the last row it reads), which saves the
    certificate's own pass.
    """
    h = u.shape[1]
    rows = u.shape[0] * h
    m = s.shape[0]
    certify = out.shape[0] == u.shape[0]
    for step in range(rows + m - 1):
        for j in range(m):
            r = step - j
            if r < 0:
                break
            if r < rows:
                b = r // h
                i = r - b * h
                if iso:
                    dual_row_iso(ubar, p, b, i, s[j], one)
                else:
                    dual_row_aniso(ubar, p, b, i, s[j], one)
                _primal_row(u, ubar, y, p, b, i, c[j], a[j])
                if certify and j == m - 1 and c0 < r <= c1:
                    q = r - 1
                    _objective_row(u, y, p, q // h, q - (q // h) * h, iso, out)
    if certify and c1 == rows:
        q = rows - 1
        _objective_row(u, y, p, q // h, q - (q // h) * h, iso, out)


@njit(**_JIT)
def strip_load(u, ubar, p, bu, bub, bp, e0):  # pragma: no cover - compiled
    """Copy rows ``[e0, e0 + n)`` of image 0 (and the padded ``p`` row above) into a strip."""
    n = bu.shape[1]
    bu[0] = u[0, e0 : e0 + n]
    bub[0] = ubar[0, e0 : e0 + n]
    bp[0] = p[0, :, e0 : e0 + n + 1]


@njit(**_JIT)
def strip_step(u, ubar, p, bu, bub, by, bp, s, c, a, one, iso, out, e0, r0, r1,
               halo):  # pragma: no cover - compiled
    """Iterate a strip in its own buffers, then publish its first and last ``halo``
    exact rows into the image for its neighbours' halos (:func:`strip_pull`).

    The strip's ends that are not the image's are wrong boundaries: the error they make
    moves one row per iteration, so with fewer than ``halo`` iterations per call the rows
    ``[r0, r1)``, ``halo`` away from them, stay exact, and so does the row below ``r1``
    that the certificate of row ``r1 - 1`` reads.
    """
    sweep_many(bu, bub, by, bp, s, c, a, one, iso, out, r0 - e0, r1 - e0)
    for a0, a1 in ((r0, min(r0 + halo, r1)), (max(r1 - halo, r0), r1)):
        u[0, a0:a1] = bu[0, a0 - e0 : a1 - e0]
        ubar[0, a0:a1] = bub[0, a0 - e0 : a1 - e0]
        p[0, :, a0 + 1 : a1 + 1] = bp[0, :, a0 - e0 + 1 : a1 - e0 + 1]


@njit(**_JIT)
def strip_pull(u, ubar, p, bu, bub, bp, e0, r0, r1):  # pragma: no cover - compiled
    """Refresh a strip's halo rows from the rows its neighbours published."""
    n = bu.shape[1]
    e1 = e0 + n
    bu[0, : r0 - e0] = u[0, e0:r0]
    bub[0, : r0 - e0] = ubar[0, e0:r0]
    bp[0, :, 1 : r0 - e0 + 1] = p[0, :, e0 + 1 : r0 + 1]
    bu[0, r1 - e0 :] = u[0, r1:e1]
    bub[0, r1 - e0 :] = ubar[0, r1:e1]
    bp[0, :, r1 - e0 + 1 :] = p[0, :, r1 + 1 : e1 + 1]


@njit(**_JIT)
def strip_store(u, ubar, p, bu, bub, bp, e0, r0, r1):  # pragma: no cover - compiled
    """Copy the rows ``[r0, r1)`` of a strip back into the image."""
    u[0, r0:r1] = bu[0, r0 - e0 : r1 - e0]
    ubar[0, r0:r1] = bub[0, r0 - e0 : r1 - e0]
    p[0, :, r0 + 1 : r1 + 1] = bp[0, :, r0 - e0 + 1 : r1 - e0 + 1]


@njit(**_JIT)
def _objective_row(u, y, p, b, i, iso, out):  # pragma: no cover - compiled
    """Add row ``i`` of image ``b``'s share of ``0.5 |u - y|^2 + TV(u)`` to ``out[b, 0]``
    and of the dual ``-<e, y + e / 2>`` (``e = div p``) to ``out[b, 1]`` (float64)."""
    h, w = u.shape[1], u.shape[2]
    p0 = p[b, 0, i + 1]
    p0_up = p[b, 0, i]
    p1 = p[b, 1, i + 1]
    uu = u[b, i]
    yy = y[b, i]
    un = u[b, i] if i == h - 1 else u[b, i + 1]
    prim = 0.0
    dual = 0.0
    for j in range(w):
        e = np.float64(p0[j + 1] - p0_up[j + 1] + p1[j + 1] - p1[j])
        yj = np.float64(yy[j])
        dual -= e * (yj + 0.5 * e)
        res = np.float64(uu[j]) - yj
        gy = np.float64(un[j]) - np.float64(uu[j])
        gx = np.float64(uu[j + 1]) - np.float64(uu[j]) if j < w - 1 else 0.0
        if iso:
            tv = math.sqrt(gy * gy + gx * gx)
        else:
            tv = abs(gy) + abs(gx)
        prim += 0.5 * res * res + tv
    out[b, 0] += prim
    out[b, 1] += dual


class Plan:
    """How :func:`iterate` spreads the rows of ``(B, H, W)`` images over threads.

    - ``"serial"``: one thread (small problems, or one thread asked for);
    - ``"images"``: groups of whole images, one per thread (no boundaries to handle);
    - ``"strips"``: one image cut into horizontal strips that live in their own buffers,
      with ``halo`` extra rows on each side, from the first call to :func:`finish`: each
      call refreshes the halos from the neighbours' published rows (:func:`strip_pull`)
      and iterates every strip (:func:`strip_step`); fewer than ``halo`` iterations per
      call.
    """

    def __init__(self, y: np.ndarray, threads: int, halo: int):
        b, h, w = y.shape
        self.halo = int(halo)
        self.loaded = False
        threads = max(1, int(threads)) if y.size >= PARALLEL_MIN_PIXELS else 1
        if threads == 1:
            self.kind, self.parts = "serial", [(0, b)]
        elif b > 1:
            k = min(threads, b)
            self.kind = "images"
            self.parts = [(b * t // k, b * (t + 1) // k) for t in range(k)]
        else:
            k = max(1, min(threads, h // (4 * self.halo + 1)))
            self.kind = "strips" if k > 1 else "serial"
            self.parts = [(h * t // k, h * (t + 1) // k) for t in range(k)]
            self.strips = []
            for r0, r1 in self.parts:
                e0, e1 = max(r0 - self.halo, 0), min(r1 + self.halo, h)
                n = e1 - e0
                by = np.ascontiguousarray(y[:, e0:e1])
                self.strips.append((e0, r0, r1, np.empty_like(by), np.empty_like(by), by,
                                    np.empty((1, 2, n + 1, w + 1), y.dtype)))
            if self.kind == "serial":
                self.parts, self.strips = [(0, b)], []


def iterate(plan: Plan, u, ubar, y, p, s, c, a, isotropic: bool,
            certify: bool = False) -> np.ndarray | None:
    """``len(s)`` accelerated iterations in place (steps ``s``, lerp weights ``c``, ``a``).

    With ``certify``, returns the final ``[P(u), D(p)]`` per image, shape ``(B, 2)``. With
    the ``"strips"`` plan the image's arrays are up to date only after :func:`finish`.
    """
    if len(s) >= plan.halo:
        raise ValueError(f"at most {plan.halo - 1} iterations per call, got {len(s)}")
    one = y.dtype.type(1.0)
    if plan.kind in ("serial", "images"):
        out = np.zeros((u.shape[0] if certify else 0, 2))
        run_all([(sweep_many, (u[b0:b1], ubar[b0:b1], y[b0:b1], p[b0:b1], s, c, a, one,
                                isotropic, out[b0:b1] if certify else out, 0,
                                (b1 - b0) * u.shape[1]))
                  for b0, b1 in plan.parts])
        return out if certify else None
    if not plan.loaded:
        run_all([(strip_load, (u, ubar, p, bu, bub, bp, e0))
                  for e0, _, _, bu, bub, _, bp in plan.strips])
        plan.loaded = True
    else:
        run_all([(strip_pull, (u, ubar, p, bu, bub, bp, e0, r0, r1))
                  for e0, r0, r1, bu, bub, _, bp in plan.strips])
    outs = np.zeros((len(plan.strips), 1 if certify else 0, 2))
    run_all([(strip_step, (u, ubar, p, bu, bub, by, bp, s, c, a, one, isotropic, outs[t],
                            e0, r0, r1, plan.halo))
              for t, (e0, r0, r1, bu, bub, by, bp) in enumerate(plan.strips)])
    return outs.sum(0) if certify else None


def finish(plan: Plan, u, ubar, p) -> None:
    """Bring the image's arrays up to date (the ``"strips"`` plan keeps the state in its
    strips between calls to :func:`iterate`)."""
    if plan.kind == "strips" and plan.loaded:
        run_all([(strip_store, (u, ubar, p, bu, bub, bp, e0, r0, r1))
                  for e0, r0, r1, bu, bub, _, bp in plan.strips])
        plan.loaded = False


