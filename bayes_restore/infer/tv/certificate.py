"""The gap certificate of ``0.5 |A x - y|^2 + w TV(x)`` (``w = lambda / 2``), any ``A``."""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from bayes_restore.differences import dct_matrix, laplacian_eigenvalues

from ._common import F64
from ._dct import scaled_dct_solve
from ._workspace import Workspace

__all__ = ["GeneralCertificate"]

#: up to this size the certificate's Poisson solve uses dense DCT matrices
_DENSE_DCT_MAX = 256


class GeneralCertificate:
    """Primal and dual values of ``0.5 |A u - y|^2 + TV(u)`` (scaled problem), any ``A``.

    ``dual(q)`` turns a candidate ``q`` (the dual iterate, or a residual ``A u - y``) and
    the workspace's dual field ``p`` into a feasible pair of the Fenchel dual ``D(p, q)
    = -0.5 |q|^2 - <q, y>`` on ``A^T q = div p``, ``|p| <= 1``: ``q`` loses its
    component along ``A 1`` (so that ``A^T q`` sums to zero), ``p`` gains ``grad phi``
    with ``div grad phi = A^T q - div p`` (a Neumann Poisson solve by the DCT), and the
    pair is scaled by ``s <= 1``, the best for ``D`` among those that keep ``|p| <= 1``.
    Its value bounds the optimum from below.

    A float32 problem on the CPU is certified in float64 (its own workspace, ``p``
    copied in at each call; ``u``, ``q`` promoted): in float32 the rounding noise of
    ``A^T q`` (~1e-7 of ``|A u|``, ~1e-4 in the units of ``p``) goes through the Poisson
    solve into ``grad phi``, whose largest value over the image then caps the certified
    gap (measured: ~6e-4 on the 256x256 blur however long the solver ran).
    """

    def __init__(self, operator, ws, ys, x_shape):
        self.source = ws
        if ys.dtype == torch.float32 and ys.device.type == "cpu":
            ws = Workspace(ws.shape, F64, ys.device, ws.event_dim, ws.isotropic, ws.vectorial)
            ys = ys.to(F64)
        self.promoted = ws is not self.source
        self.op, self.ws, self.ys = operator, ws, ys
        self.x_shape = tuple(x_shape)
        self.scratch = torch.empty(x_shape, dtype=ys.dtype, device=ys.device)

    # made on first use (the spectral bound of the ADMM needs none of them)
    @functools.cached_property
    def c(self) -> torch.Tensor:
        """``A 1``: ``q`` must be orthogonal to it."""
        h, w = self.x_shape[-2:]
        return self.op.forward(torch.ones((h, w), dtype=self.ys.dtype, device=self.ys.device))

    @functools.cached_property
    def c2(self) -> float:
        return float(self.c.double().square().sum())

    @functools.cached_property
    def inv_mu(self) -> torch.Tensor:
        """``1 / mu`` of the Neumann Laplacian's DCT eigenvalues (0 for the constant:
        zero-mean right-hand sides only)."""
        h, w = self.x_shape[-2:]
        mu = laplacian_eigenvalues(h, w, dtype=self.ys.dtype, device=self.ys.device)
        mu[0, 0] = math.inf
        return 1.0 / mu

    @functools.cached_property
    def dct(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Small images: the DCT as two matrix products (the FFT's plans cost ms a call)."""
        h, w = self.x_shape[-2:]
        if max(h, w) > _DENSE_DCT_MAX:
            return None
        return (dct_matrix(h, dtype=self.ys.dtype, device=self.ys.device),
                dct_matrix(w, dtype=self.ys.dtype, device=self.ys.device))

    def _poisson(self, r: torch.Tensor) -> torch.Tensor:
        """``phi`` with ``div grad phi = r`` (Neumann), for ``r`` of zero mean per channel."""
        if self.dct is None:
            return scaled_dct_solve(r, self.inv_mu).neg_()  # scipy's DCT on the CPU
        ch, cw = self.dct
        r_hat = ch @ r @ cw.T
        return (ch.T @ r_hat.mul_(self.inv_mu) @ cw).neg_()

    def _field(self, p: torch.Tensor | None) -> torch.Tensor:
        """The dual field to certify (default: the solver's ``p``), in the certificate's dtype."""
        p = self.source.p if p is None else p
        if not self.promoted:
            return p
        return self.ws.p.copy_(p)

    def residual(self, u: torch.Tensor) -> torch.Tensor:
        """``A u - y`` in the certificate's dtype: the dual candidate ``q``."""
        return self.op.forward(u.to(self.ys.dtype)) - self.ys

    def primal(self, u: torch.Tensor) -> torch.Tensor:
        return self.primal_residual(u)[0]

    def primal_residual(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The primal value at ``u`` and the residual ``A u - y`` (one ``A`` for both)."""
        u = u.to(self.ys.dtype)
        r = self.op.forward(u) - self.ys
        return 0.5 * self.ws.sum_image(r.square()) + self.ws.tv(u), r

    def _centre(self, q: torch.Tensor) -> torch.Tensor:
        """``q`` without its component along ``A 1`` (then ``A^T q`` sums to zero)."""
        if self.c2 > 0:
            along = (q * self.c).sum((-2, -1), keepdim=True, dtype=F64) / self.c2
            q = q - along.to(q.dtype) * self.c
        return q

    def dual(self, q: torch.Tensor, p: torch.Tensor | None = None) -> torch.Tensor:
        """The dual value of the feasible pair made from ``q`` and ``p`` (default ``ws.p``)."""
        ws = self.ws
        p = self._field(p)
        q = self._centre(q.to(self.ys.dtype))
        r = self.op.adjoint(q).clone()
        ws.div_into(p, self.scratch)
        r.sub_(self.scratch)  # A^T q - div p, zero mean per channel
        phi = self._poisson(r)
        ws.grad_into(phi, ws.g)
        p_feasible = ws.g.add_(p)
        return self._scaled_value(q, p_feasible)

    def _scaled_value(self, q: torch.Tensor, p_feasible: torch.Tensor) -> torch.Tensor:
        """``max D(s p, s q)`` over ``0 <= s <= 1 / max |p|`` (a pair with ``A^T q = div p``)."""
        ws = self.ws
        scale_max = 1.0 / ws.dual_norm_max(p_feasible).clamp_min(1.0)
        q2 = ws.sum_image(q.square())
        qy = ws.sum_image(q * self.ys)
        best = (-qy / q2.clamp_min(torch.finfo(F64).tiny)).clamp(min=0.0)
        s = torch.minimum(best, scale_max)
        return -0.5 * s.square() * q2 - s * qy

    def dual_polished(self, q: torch.Tensor, steps: int, kernels) -> torch.Tensor:
        """:meth:`dual` after ``steps`` FISTA steps that move a copy of ``ws.p`` towards
        ``div p = A^T q`` inside ``|p| <= 1`` (``kernels.polish_dual``, fused numba).

        The Poisson correction of :meth:`dual` is a smooth field added everywhere; where
        ``|p| = 1`` already (most pixels at small weights) it pushes ``|p|`` over 1 and
        the pair must be scaled down, by the largest excess: a relative gap of that size.
        The projected steps first remove most of the residual where the constraint
        allows it. At a periodic blur the certified gap of the primal splitting reaches
        1e-4 in less than half the iterations (256x256 camera).
        """
        ws = self.ws
        h, w = ws.h, ws.w
        q = q.to(self.ys.dtype)
        g = self.op.adjoint(self._centre(q)).contiguous()
        field = self._field(None).clone()
        dtype = g.numpy().dtype.type
        kernels.polish_dual(field.view(-1, 2, h + 1, w + 1).numpy(), g.view(-1, h, w).numpy(),
                            steps, dtype(0.125), dtype(1.0), ws.isotropic)
        return self.dual(q, field)

    def dual_block(self, factor: int, steps: int, kernels) -> torch.Tensor | None:
        """A dual bound for box decimation (``A^T A = M / f^2``, ``M`` the block mean) from
        ``ws.p`` alone; ``None`` unless ``f`` divides both sides of the image.

        ``A^T q = div p`` asks ``div p`` to be constant on each ``f x f`` block, and then
        fixes ``q = f^2 A div p`` (``A^T q = M div p``). The residual ``q = A u - y`` and a
        global Poisson correction (:meth:`dual`) certify slowly here: the field's
        block-wise deviation ``(I - M) div p`` is what lags, and the correction of it
        spreads over the image. Instead a copy of ``p`` is moved towards ``(I - M) div p
        = 0`` inside ``|p| <= 1`` by ``steps`` projected FISTA steps
        (``kernels.polish_dual`` with ``f``), the rest is removed exactly inside each
        block (a Neumann Poisson solve on the ``f x f`` block, by its DCT, added to the
        block's interior edges only, so that the block means of ``div p`` are kept), and
        the pair ``(p, f^2 A div p)`` is scaled as in :meth:`dual`. Measured (x2, 128x128
        camera): at the check where the iterate was 1.8e-4 from the optimum, the dual of
        :meth:`dual` was 1.3e-3 below it and this one 8e-5.
        """
        ws = self.ws
        h, w = ws.h, ws.w
        f = int(factor)
        if h % f or w % f or ws.vectorial:
            return None
        field = self.source.p.clone()
        if kernels is not None and field.device.type == "cpu" and steps > 0:
            # in the solver's dtype (a float32 field: half the memory traffic); any field
            # is as valid a start as another, feasibility comes below in float64
            zero = torch.zeros(ws.shape, dtype=field.dtype).view(-1, h, w)
            dtype = zero.numpy().dtype.type
            kernels.polish_dual(field.view(-1, 2, h + 1, w + 1).numpy(), zero.numpy(), steps,
                                dtype(0.125), dtype(1.0), ws.isotropic, f)
        field = field.to(self.ys.dtype)
        ws.project(field)
        if kernels is not None and field.device.type == "cpu":
            q = torch.empty(ws.shape[:-2] + (h // f, w // f), dtype=field.dtype)
            kernels.block_correct(field.view(-1, 2, h + 1, w + 1).numpy(),
                                  q.view(-1, h // f, w // f).numpy(), f,
                                  _block_pinv(f, field).numpy())
            return self._scaled_value(q, field)
        g = self.scratch
        ws.div_into(field, g)
        lead = g.shape[:-2]
        blocks = g.reshape(lead + (h // f, f, w // f, f))
        r = blocks - blocks.mean((-3, -1), keepdim=True)
        ch, inv_mu = _block_poisson(f, g)
        r_hat = torch.einsum("ka,...iajb,lb->...ikjl", ch, r, ch) * inv_mu
        phi = torch.einsum("ka,...ikjl,lb->...iajb", ch, r_hat, ch).reshape(g.shape)
        # div grad phi = -r inside each block: add grad phi on the blocks' interior edges
        gy = phi[..., 1:, :] - phi[..., :-1, :]
        gx = phi[..., :, 1:] - phi[..., :, :-1]
        gy[..., f - 1 :: f, :] = 0.0
        gx[..., :, f - 1 :: f] = 0.0
        field[..., 0, 1:h, 1:] += gy
        field[..., 1, 1:, 1:w] += gx
        ws.div_into(field, g)
        q = self.op.forward(g).mul_(f * f)
        return self._scaled_value(q, field)


def _towards(rof_kernels, kernels, p: np.ndarray, g: np.ndarray, steps: int,
             isotropic: bool) -> None:
    """``steps`` projected gradient steps (step 1/4) on ``0.5 |div p - g|^2`` over ``|p| <=
    1``, ``p`` in place: the ROF dual for the data ``-g``, so the fused ROF sweep
    (``_rof_numba.sweep_many`` with the primal weights 1) runs them, all in one pass over
    memory (``kernels``: ``_admm_numba``, for ``div p``)."""
    y = np.negative(g)
    start = np.empty_like(y)
    kernels.div(p, start)
    start += y
    a = start.copy()
    dtype = y.dtype.type
    sizes = np.full(steps, 0.25, y.dtype)
    ones = np.ones(steps, y.dtype)
    rof_kernels.sweep_many(a, start, y, p, sizes, ones, ones, dtype(1.0), isotropic,
                           np.zeros((0, 2)), 0, 0)


def _block_poisson(f: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``f``-point orthonormal DCT matrix and ``1 / mu`` of the ``f x f`` Neumann
    Laplacian (``-Lap = C^T diag(mu) C``; the constant's ``1 / mu`` set to 0)."""
    ch = dct_matrix(f, dtype=like.dtype, device=like.device)
    mu = laplacian_eigenvalues(f, f, dtype=like.dtype, device=like.device).clone()
    mu[0, 0] = math.inf
    return ch, (1.0 / mu)[:, None, :]


def _block_pinv(f: int, like: torch.Tensor) -> torch.Tensor:
    """The ``f^2 x f^2`` pseudo-inverse of the ``f x f`` negative Neumann Laplacian
    (row-major pixels): ``phi = P r`` solves ``div grad phi = -r`` for zero-mean ``r``."""
    ch, inv_mu = _block_poisson(f, like)
    c2 = torch.kron(ch, ch)
    return (c2.T * inv_mu.reshape(-1)) @ c2


class SpectralBound:
    """The certified gap's two values at an iterate, for an operator diagonal in a
    transform (``spec``, a :class:`~.admm.Spectral`: ``A = T^-1 diag(H) T``), from the
    residual ``q = A u - y`` and the solver's dual field ``ws.p``; the transforms in the
    operator's basis.

    ``A^T q = div p`` is restored on both sides, each where it is cheap. At the
    frequencies where ``|H|^2 >= low max |H|^2`` (and at the constant, unless ``H`` is
    zero there) the residual ``r = A^T q - div p`` is removed from ``q`` (``q -= A^-T
    r_low``, exact in the transform: a small change of ``q`` there); the rest, high
    frequencies only, by ``p``: a copy of ``p`` is moved towards ``div p = A^T q`` by
    projected gradient steps (``schedule``: rounds of steps, the low-frequency part
    removed again before each round, so that the local steps face only the local
    residual they remove well); then a field ``f`` with ``div f = r`` closes what
    remains (``_admm_numba.closed_norm_max``: line integrals of ``r`` along rows and
    columns, one pass, where a Neumann Poisson correction ``grad phi`` would cost a DCT
    pair; for a residual of high frequencies only both stay small), and the pair is
    scaled into ``|p + f| <= 1`` as in :meth:`GeneralCertificate.dual`. Measured
    (512x512 camera, periodic Gaussian blur, an ADMM iterate 1.5e-5 from the optimum):
    the plain correction certified 1.1e-2, 20 polishing steps
    (:meth:`GeneralCertificate.dual_polished`) 3.3e-3, the rounds with the Poisson
    closure 1.0e-4. On iterates of the 512x512 run the line integrals certified within
    0.6 % of the Poisson closure at four of five iterates and 6 % looser at the fifth.

    Only the closing step decides feasibility, so only it runs in float64: ``u``'s
    transform and the primal value, ``div p``, the two transforms of the residual and
    ``max |p + f|``. The rounds that make the candidate field (their transforms and the
    projected steps) run in float32: any field is as valid a start as another. ``|q|^2``
    and ``<q, y>`` are sums over the transform (Parseval), so ``q`` never returns to
    pixels. Same 512x512 iterate, float32 problem: a check took 29 ms (95 ms in float64
    with the Poisson closure and rounds of 20/20/10 steps), certifying 9.13e-5
    (8.88e-5).
    """

    def __init__(self, cert: GeneralCertificate, spec, kernels,
                 schedule: tuple[int, ...] = (20, 20, 10), low: float = 1e-4):
        self.rof, self.fused = kernels
        ws = self.ws = cert.ws
        self.cert, self.schedule = cert, tuple(int(s) for s in schedule)
        h, w = ws.h, ws.w
        self.flat = (-1, h, w)
        self.spec, self.fast = spec.astype(np.float64), spec.astype(np.float32)
        self.parseval = spec.parseval()
        transfer = self.spec.transfer
        self.conj = np.conj(transfer)
        power = spec.power
        keep = power >= low * float(power.max())
        keep[0, 0] = power[0, 0] > 0  # the constant: then r has zero mean
        self.keep = keep
        self.inv_conj = np.where(keep, 1.0 / np.where(keep, self.conj, 1.0), 0.0)
        self.y_hat = self.spec.forward(cert.ys.reshape(self.flat).numpy().astype(np.float64))
        field = (-1, 2, h + 1, w + 1)
        self.p32 = np.empty(cert.source.p.reshape(field).shape, np.float32)
        self.p64 = np.empty(self.p32.shape, np.float64)
        self.div32 = np.empty(self.y_hat.shape[:1] + (h, w), np.float32)
        self.div64 = np.empty(self.div32.shape, np.float64)

    def _per_image(self, values: np.ndarray, reduce: str = "sum") -> torch.Tensor:
        """Flat-image values ``(B,)`` as the workspace's per-image values (over the
        channels of an image with ``event_dim = 3``: their sum, or ``"amax"``)."""
        t = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float64))
        t = t.reshape(self.ws.shape[:-2])
        if self.ws.event_dim > 2:
            t = getattr(t, reduce)(-1)
        return t

    def __call__(self, u: torch.Tensor, u_hat: np.ndarray | None = None):
        """``(primal, dual)`` per image at ``u`` (the solver's dtype), with ``u``'s
        transform ``u_hat`` in float64 if the caller has it."""
        spec, fast, rof, fused = self.spec, self.fast, self.rof, self.fused
        iso = self.ws.isotropic
        u = u.reshape(self.flat).numpy()
        if u_hat is None:
            u_hat = spec.forward(u.astype(np.float64))
        q_hat = spec.transfer * u_hat
        q_hat -= self.y_hat
        sums = np.empty((u.shape[0], 2))
        fused.spectral_sums(q_hat, self.y_hat, self.parseval, sums)
        tv = np.empty(u.shape[0])
        fused.tv(u, iso, tv)
        primal = 0.5 * sums[:, 0] + tv
        g_hat = self.conj * q_hat  # A^T q
        # the candidate field, in float32
        p, div = self.p32, self.div32
        np.copyto(p, self.cert.source.p.reshape(p.shape).numpy())
        g_low = np.empty(g_hat.shape, np.complex64 if spec.kind == "fft" else np.float32)
        for steps in self.schedule:
            fused.div(p, div)
            r_hat = fast.forward(div)
            np.subtract(g_hat, r_hat, out=r_hat, casting="same_kind")  # A^T q - div p
            fused.low_fix(r_hat, self.keep, self.inv_conj, q_hat, g_hat, g_low, False)
            if steps:
                _towards(rof, fused, p, fast.inverse(g_low), steps, iso)
        # feasibility, in float64: A^T q - div p removed at low frequencies by q, the
        # rest by a field f with div f = r, added to p
        p64, div = self.p64, self.div64
        np.copyto(p64, p)
        fused.div(p64, div)
        r_hat = spec.forward(div)
        np.subtract(g_hat, r_hat, out=r_hat)  # A^T q - div p
        fused.low_fix(r_hat, self.keep, self.inv_conj, q_hat, g_hat, g_low, True)
        r = np.ascontiguousarray(spec.inverse(r_hat))  # high frequencies, zero mean
        largest = np.empty(u.shape[0])
        fused.closed_norm_max(p64, r, iso, largest)  # |p + f|, div f = r
        fused.spectral_sums(q_hat, self.y_hat, self.parseval, sums)
        primal, q2, qy = (self._per_image(v) for v in (primal, sums[:, 0], sums[:, 1]))
        scale_max = 1.0 / self._per_image(largest, "amax").clamp_min(1.0)
        best = (-qy / q2.clamp_min(torch.finfo(F64).tiny)).clamp(min=0.0)
        s = torch.minimum(best, scale_max)
        return primal, -0.5 * s.square() * q2 - s * qy
