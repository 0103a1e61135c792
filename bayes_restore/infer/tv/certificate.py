"""The gap certificate of ``0.5 |A x - y|^2 + w TV(x)`` (``w = lambda / 2``), any ``A``."""

from __future__ import annotations

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
        h, w = x_shape[-2:]
        ones = torch.ones((h, w), dtype=ys.dtype, device=ys.device)
        self.c = operator.forward(ones)  # A 1: q must be orthogonal to it
        self.c2 = float(self.c.double().square().sum())
        mu = laplacian_eigenvalues(h, w, dtype=ys.dtype, device=ys.device)
        mu[0, 0] = math.inf  # the constant: zero-mean right-hand sides only
        self.inv_mu = 1.0 / mu
        # small images: the DCT as two matrix products (the FFT's plans cost ms a call)
        self.dct = None
        if max(h, w) <= _DENSE_DCT_MAX:
            self.dct = (dct_matrix(h, dtype=ys.dtype, device=ys.device),
                        dct_matrix(w, dtype=ys.dtype, device=ys.device))
        self.scratch = torch.empty(x_shape, dtype=ys.dtype, device=ys.device)

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


    def dual_spectral(self, u: torch.Tensor, spec, kernels,
                      schedule: tuple[int, ...] = (20, 20, 10), low: float = 1e-4):
        """The primal value at ``u`` and a dual bound for an operator diagonal in a
        transform (``spec``, a :class:`~.admm.Spectral`: ``A = T^-1 diag(H) T``) from
        ``ws.p`` and the residual ``q = A u - y``.

        ``A^T q = div p`` is restored on both sides, each where it is cheap. At the
        frequencies where ``|H|^2 >= low max |H|^2`` the residual ``r = A^T q - div p`` is
        removed from ``q`` (``q -= A^-T r_low``, exact in the transform: a small change
        of ``q`` there); the rest, high frequencies only, by ``p``: a copy of ``p`` is
        moved towards ``div p = A^T q`` by projected FISTA steps (``schedule``, the
        low-frequency part removed again before each round, so that the local steps
        face only the local residual they remove well), then the Poisson correction and
        the scaling of :meth:`dual` close it exactly. Measured (512x512 camera, periodic
        Gaussian blur, an ADMM iterate 1.5e-5 from the optimum): the plain correction
        certified 1.1e-2, the polished one (:meth:`dual_polished`, 20 steps) 3.3e-3,
        this one 1.0e-4.
        """
        ws = self.ws
        h, w = ws.h, ws.w
        flat = (-1, h, w)
        u = u.to(self.ys.dtype).reshape(flat).numpy()
        ys = self.ys.reshape(flat).numpy()
        q = spec.inverse(spec.transfer * spec.forward(u)) - ys
        primal = 0.5 * ws.sum_image(torch.from_numpy(q * q).reshape(ws.shape)) + self.ws.tv(
            torch.from_numpy(u).reshape(ws.shape))
        q = self._centre(torch.from_numpy(q).reshape(ws.shape)).reshape(flat).numpy()
        keep = spec.power >= low * float(spec.power.max())
        conj = np.where(keep, np.conj(spec.transfer), 1.0)
        q_hat = spec.forward(q)
        g_hat = np.conj(spec.transfer) * q_hat
        field = self._field(None).clone().reshape((-1, 2, h + 1, w + 1))
        p = field.numpy()
        g = spec.inverse(g_hat)
        div = np.empty_like(g)
        rounds = list(schedule) + [0]
        for steps in rounds:
            _div_np(p, div)
            r_hat = spec.forward(g - div) * keep
            q_hat -= r_hat / conj
            g_hat -= r_hat
            g = spec.inverse(g_hat)
            if steps and kernels is not None:
                _towards(kernels, p, g, steps, ws.isotropic)
        field = field.reshape(ws.p.shape)
        r = torch.from_numpy(g - div).reshape(ws.shape)  # high frequencies, zero mean
        phi = self._poisson(r)
        ws.grad_into(phi, ws.g)
        p_feasible = ws.g.add_(field)
        q = torch.from_numpy(spec.inverse(q_hat)).reshape(ws.shape)
        return primal, self._scaled_value(q, p_feasible)


def _towards(rof_kernels, p: np.ndarray, g: np.ndarray, steps: int, isotropic: bool) -> None:
    """``steps`` projected gradient steps (step 1/4) on ``0.5 |div p - g|^2`` over ``|p| <=
    1``, ``p`` in place: the ROF dual for the data ``-g``, so the fused ROF sweep
    (``_rof_numba.sweep_many`` with the primal weights 1) runs them, all in one pass over
    memory."""
    y = np.ascontiguousarray(-g)
    start = np.empty_like(y)
    _div_np(p, start)
    start += y
    a = start.copy()
    dtype = y.dtype.type
    sizes = np.full(steps, 0.25, y.dtype)
    ones = np.ones(steps, y.dtype)
    rof_kernels.sweep_many(a, start, y, p, sizes, ones, ones, dtype(1.0), isotropic,
                           np.zeros((0, 2)), 0, 0)


def _div_np(p: np.ndarray, out: np.ndarray) -> None:
    """``out <- div p`` on numpy views of the padded layout (``(B, 2, H+1, W+1)`` to
    ``(B, H, W)``)."""
    np.subtract(p[:, 0, 1:, 1:], p[:, 0, :-1, 1:], out=out)
    out += p[:, 1, 1:, 1:]
    out -= p[:, 1, 1:, :-1]


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
