"""TV MAP for an operator diagonal in a transform (a periodic or reflective blur) by ADMM.

``min 0.5 |A u - y|^2 + TV(u)`` (the scaled problem of ``splitting.py``) split as ``u =
v``: the ``u``-update is the operator's exact solve in its own basis (one transform pair,
:class:`Spectral`), the ``v``-update the ROF prox ``prox_{TV / rho}`` by a few
warm-started projected-gradient steps on the ROF dual, over-relaxed (Eckstein &
Bertsekas). Everything between two transforms is one pass over memory
(``_admm_numba.iterate``: the relaxation, all the inner steps one row behind each other,
and the multiplier update). The stopping rule is the certified primal-dual gap of the
original problem (:class:`~.certificate.SpectralBound`): the residual ``q = A u - y``
and the inner ROF's dual field ``p``, made exactly feasible (``A^T q = div p``, ``|p| <=
1``).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from bayes_restore.operators import DCTDiagonal, FourierDiagonal

from ._common import iterations_to_tol, record_check
from .certificate import SpectralBound

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
#: the certificate's rounds of steps towards feasibility (:class:`SpectralBound`); on
#: the same 512x512 iterates (20, 20, 10) certified 2-3 % tighter gaps at about 1.1x the cost
POLISH = (10, 10, 10)
#: a check comes once the residual forecasts the gap below this share of tol (the ratio
#: of the gap to the residual drifted by 2-4 % between the first check and the stop on
#: the benchmark's blur, by up to 20 % over runs of 50-80 iterations at other weights)
_AIM = 0.9
#: the first gap check (outer iterations); later ones come from the measured decay
FIRST_CHECK = 20
#: a gap check costs about this many outer iterations (512x512: 4-5, ~25-30 ms)
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
        self._cast = {}

    def astype(self, dtype) -> Spectral:
        """The same operator with ``transfer`` in the precision of ``dtype`` (float32/64);
        made once per precision."""
        single = np.dtype(dtype) == np.float32
        if single not in self._cast:
            if self.kind == "fft":
                t = self.transfer.astype(np.complex64 if single else np.complex128)
            else:
                t = self.transfer.astype(np.float32 if single else np.float64)
            cast = Spectral.__new__(Spectral)
            cast.kind, cast.shape, cast.threads = self.kind, self.shape, self.threads
            cast.transfer, cast.power, cast._cast = t, self.power, self._cast
            self._cast[single] = cast
        return self._cast[single]

    def parseval(self) -> np.ndarray:
        """Weights ``c`` (float64, the transform's shape) with ``<a, b> = sum c Re(A
        conj(B))`` for ``A``, ``B`` the transforms of real images ``a``, ``b``: for
        ``rfft2`` ``1 / (H W)``, doubled on the columns that stand for two (all but the
        first and, for an even width, the last); for the orthonormal DCT 1."""
        h, w = self.shape
        if self.kind == "dct":
            return np.ones((h, w))
        c = np.full((h, w // 2 + 1), 2.0 / (h * w))
        c[:, 0] = 1.0 / (h * w)
        if w % 2 == 0:
            c[:, -1] = 1.0 / (h * w)
        return c

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
    gap is certified at ``u`` with the field ``p`` (:class:`SpectralBound`), first at
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
    bound = SpectralBound(cert, spec, (rof, fused), schedule=POLISH)
    spec64, y_hat = bound.spec, bound.y_hat
    denom = spec.power + rho
    aty_hat = (np.conj(spec64.transfer) * y_hat / denom).astype(
        np.complex64 if dtype is np.float32 else np.complex128)
    if work.kind == "dct":
        aty_hat = aty_hat.real.astype(y.dtype)
    gain = (rho / denom).astype(y.dtype)
    v = u0.contiguous().reshape(flat).numpy().copy()
    d = np.zeros_like(v)
    rhs = v.copy()
    a = np.empty_like(v)
    p = ws.p.view(-1, 2, h + 1, w + 1).numpy()
    steps = np.full(inner, INNER_STEP, y.dtype)
    moved = np.zeros(v.shape[0])
    r_, al, inv_r = dtype(rho), dtype(alpha), dtype(1.0 / rho)
    history: list[float] = []
    checks: list[tuple[int, float]] = []
    best = None
    x = v
    gap, objective, it = math.inf, math.nan, 0
    next_check = FIRST_CHECK
    ratio = None
    while it < max_iter:
        it += 1
        x_hat = work.forward(rhs)
        fused.solve_in_place(x_hat, aty_hat, gain)
        x = np.ascontiguousarray(work.inverse(x_hat).astype(y.dtype, copy=False))
        fused.iterate(x, v, d, p, a, rhs, steps, al, r_, inv_r, ws.isotropic, moved)
        residual = math.sqrt(float(moved.sum()))
        if ratio is not None and it < next_check and ratio * residual <= _AIM * tol:
            next_check = it  # the residual's forecast: the gap is likely below tol now
        if it == next_check or it == max_iter:
            # in float64 the iteration's transform of x is the certificate's
            primal, dual = bound(torch.from_numpy(x), x_hat if dtype is np.float64 else None)
            best, gap, objective = record_check(primal, dual, best, w2, it, history, checks)
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
    ``CHECK_COST / 2`` and at most the iterations done later (the run at most doubles
    past a check whose forecast was wrong)."""
    it = checks[-1][0]
    remaining = iterations_to_tol(checks, tol)
    floor = math.ceil(CHECK_COST / 2)
    return int(min(max(floor, it), max(floor, math.ceil(remaining))))
