"""TV MAP for an operator diagonal in a transform (a periodic or reflective blur) by ADMM.

``min 0.5 |A u - y|^2 + TV(u)`` (the scaled problem of ``splitting.py``) split as ``u =
v``: the ``u``-update is the operator's exact solve in its own basis (one transform pair,
:class:`Spectral`), the ``v``-update the ROF prox ``prox_{TV / rho}`` by a few
warm-started dual steps of the fused ROF kernels (``_rof_numba.sweep_many``, all of them
in one pass over memory), over-relaxed (Eckstein & Bertsekas). The stopping rule is the
certified primal-dual gap of the original problem
(:meth:`~.certificate.GeneralCertificate.dual_spectral`): the residual ``q = A u - y``
and the inner ROF's dual field ``p``, made exactly feasible (``A^T q = div p``, ``|p| <=
1``).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from bayes_restore.operators import DCTDiagonal, FourierDiagonal

from ._common import iterations_to_tol, relative_gap

__all__ = ["Spectral", "spectral_of", "admm_spectral"]

#: ADMM's penalty ``rho = RHO w / std(x0)`` (``w = lambda / 2``, ``x0`` the starting
#: image: in the scaled problem ``RHO / std(u0)``), over-relaxation, inner ROF steps per
#: outer iteration and their step. Measured on the 512x512 camera (std 0.28), periodic 9x9
#: Gaussian blur of std 1.5, noise 0.01, ``w = 6e-4``, float32, outer iterations to a
#: certified gap of 1e-4 (inner steps, relaxation, rho): (12, 1.6, 0.03) 34, (12, 1.6,
#: 0.02) 30, (10, 1.6, 0.02) 32, (12, 1.4, 0.02) 32, (12, 1.75, 0.02) 28, (16, 1.6, 0.015)
#: 26, (20, 1.6, 0.01) 26, (24, 1.7, 0.01) 24; a relaxation of 1.9 needed 56, a step of
#: 0.125 1.2-2x more iterations than 0.25. At 3x the weight rho 0.005 / 0.015 / 0.05 needed
#: > 300 / 124 / 48 iterations, at 0.3x the weight 28 / 78 / 262: rho follows ``w``.
RHO = 7.0
RELAXATION = 1.6
INNER_STEPS = 16
INNER_STEP = 0.25
#: the certificate's rounds of steps towards feasibility (``dual_spectral``)
POLISH = (20, 20, 10)
#: a check comes once the residual forecasts the gap below this share of tol
_AIM = 0.8
#: the first gap check (outer iterations); later ones come from the measured decay
FIRST_CHECK = 20
#: a gap check costs about this many outer iterations (transforms, 50 polishing steps)
CHECK_COST = 5.0


class Spectral:
    """``A = T^-1 diag(transfer) T`` for a real transform pair ``T`` of 2-D images.

    ``kind="fft"``: ``T`` is ``rfft2`` (``transfer`` complex, ``rfft2`` layout: a periodic
    convolution); ``kind="dct"``: the orthonormal 2-D DCT-II (``transfer`` real: a
    symmetric kernel with reflective boundaries). The transforms are scipy's, over the
    last two axes, in the precision of their input.

    Examples
    --------
    >>> import numpy as np
    >>> s = Spectral("dct", np.full((4, 4), 0.5), (4, 4))
    >>> x = np.arange(16.0).reshape(4, 4)
    >>> bool(np.allclose(s.inverse(s.transfer * s.forward(x)), 0.5 * x))
    True
    """

    def __init__(self, kind: str, transfer: np.ndarray, shape, threads: int = 1):
        if kind not in ("fft", "dct"):
            raise ValueError(f"kind must be 'fft' or 'dct', got {kind!r}")
        self.kind, self.shape, self.threads = kind, tuple(shape), int(threads)
        self.transfer = transfer
        self.power = np.abs(transfer).astype(np.float64) ** 2

    def astype(self, dtype) -> Spectral:
        """The same operator with ``transfer`` in the precision of ``dtype`` (float32/64)."""
        single = np.dtype(dtype) == np.float32
        if self.kind == "fft":
            t = self.transfer.astype(np.complex64 if single else np.complex128)
        else:
            t = self.transfer.astype(np.float32 if single else np.float64)
        return Spectral(self.kind, t, self.shape, self.threads)

    def forward(self, a: np.ndarray) -> np.ndarray:
        import scipy.fft as sfft

        if self.kind == "fft":
            return sfft.rfft2(a, axes=(-2, -1), workers=self.threads)
        return sfft.dctn(a, type=2, norm="ortho", axes=(-2, -1), workers=self.threads)

    def inverse(self, c: np.ndarray) -> np.ndarray:
        import scipy.fft as sfft

        if self.kind == "fft":
            return sfft.irfft2(c, s=self.shape, axes=(-2, -1), workers=self.threads)
        return sfft.idctn(c, type=2, norm="ortho", axes=(-2, -1), workers=self.threads)


def spectral_of(structure, shape, threads: int = 1) -> Spectral | None:
    """The :class:`Spectral` form of an operator's declared structure, or ``None``.

    :class:`~bayes_restore.operators.FourierDiagonal` (a periodic convolution) and
    :class:`~bayes_restore.operators.DCTDiagonal` (a symmetric kernel, reflective
    boundaries) have one, in float64; other structures (and ``None``) do not.
    """
    h, w = int(shape[-2]), int(shape[-1])
    like = torch.zeros((), dtype=torch.float64)
    if isinstance(structure, FourierDiagonal):
        return Spectral("fft", structure.transfer(h, w, like).cpu().numpy(), (h, w), threads)
    if isinstance(structure, DCTDiagonal):
        return Spectral("dct", structure.eigenvalues(h, w, like).cpu().numpy(), (h, w),
                        threads)
    return None


def admm_spectral(u0, ys, ws, w2, spec, cert, kernels, *, rho, alpha, inner, tol, max_iter,
                  check_every):
    """Over-relaxed ADMM on ``u = v`` for ``0.5 |A u - y|^2 + TV(u)`` (scaled problem).

    Per outer iteration, from ``(v, d)``: ``u = (A^T A + rho I)^-1 (A^T y + rho (v -
    d))`` in the transform; ``z = alpha u + (1 - alpha) v + d``; ``v = prox_{TV / rho}(z)
    = a / rho`` with ``a`` the ROF solution for ``rho z`` after ``inner`` dual steps of
    ``INNER_STEP`` warm-started from the last ``p`` (``a = rho z + div p``); ``d = z -
    v``. ``kernels``: the modules ``(_rof_numba, _splitting_numba, _admm_numba)``. The
    gap is certified at ``u`` with the field ``p`` (:meth:`dual_spectral`), first at
    ``FIRST_CHECK`` (or at ``max_iter``), then on a schedule predicted from its measured
    decay (a check costs several outer iterations: ``check_every`` is not used). Returns
    ``(u, gap, objective, iterations, history)``.
    """
    rof, split, fused = kernels
    h, w = ws.h, ws.w
    flat = (-1, h, w)
    y = ys.contiguous().reshape(flat).numpy()
    dtype = y.dtype.type
    work = spec.astype(y.dtype)
    spec64 = spec.astype(np.float64)
    y_hat = spec64.forward(y.astype(np.float64))
    denom = spec.power + rho
    aty_hat = (np.conj(spec64.transfer) * y_hat / denom).astype(
        np.complex64 if dtype is np.float32 else np.complex128)
    if work.kind == "dct":
        aty_hat = aty_hat.real.astype(y.dtype)
    gain = (rho / denom).astype(y.dtype)
    v = u0.contiguous().reshape(flat).numpy().copy()
    d = np.zeros_like(v)
    rhs = v.copy()
    yk, ub, a = np.empty_like(v), np.empty_like(v), np.empty_like(v)
    p = ws.p.view(-1, 2, h + 1, w + 1).numpy()
    steps = np.full(inner, INNER_STEP, y.dtype)
    ones = np.ones(inner, y.dtype)
    no_out = np.zeros((0, 2))
    moved = np.zeros(v.shape[0])
    one, r_, al, inv_r = dtype(1.0), dtype(rho), dtype(alpha), dtype(1.0 / rho)
    history: list[float] = []
    checks: list[tuple[int, float]] = []
    best = None
    x = v
    gap, objective, it = math.inf, math.nan, 0
    next_check = FIRST_CHECK
    ratio = None
    while it < max_iter:
        it += 1
        x = work.inverse(aty_hat + gain * work.forward(rhs)).astype(y.dtype, copy=False)
        x = np.ascontiguousarray(x)
        fused.prepare(x, v, d, p, yk, ub, a, al, r_)
        rof.sweep_many(a, ub, yk, p, steps, ones, ones, one, ws.isotropic, no_out, 0, 0)
        fused.finish(a, d, v, rhs, inv_r, moved)
        residual = math.sqrt(float(moved.sum()))
        if ratio is not None and it < next_check and ratio * residual <= _AIM * tol:
            next_check = it  # the residual's forecast: the gap is likely below tol now
        if it == next_check or it == max_iter:
            primal, dual = cert.dual_spectral(torch.from_numpy(x).reshape(ws.shape), spec64,
                                              rof, schedule=POLISH)
            best = dual if best is None else torch.maximum(best, dual)
            gap, objective = relative_gap(primal, best, w2)
            history.append(gap)
            checks.append((it, gap))
            if gap <= tol:
                break
            # the certified gap stays nearly proportional to the ADMM's dual residual
            # |v - v_old| (within 30 % over a run, measured): checks come when the
            # residual forecasts it below tol, or on the decay's schedule at the latest
            ratio = gap / max(residual, 1e-300)
            next_check = it + _next_interval(checks, tol)
    return torch.from_numpy(x).reshape(ws.shape), gap, objective, it, history


def _next_interval(checks, tol: float) -> int:
    """Outer iterations to the next gap check at the latest (the residual's forecast
    usually comes first): the certified gap falls about like ``k^-a`` (``a`` from the
    last two checks, at least 1); the predicted crossing of ``tol``, at least
    ``CHECK_COST / 2`` and at most half the iterations done later."""
    it = checks[-1][0]
    remaining = iterations_to_tol(checks, tol)
    floor = math.ceil(CHECK_COST / 2)
    return int(min(max(floor, it // 2), max(floor, math.ceil(remaining))))
