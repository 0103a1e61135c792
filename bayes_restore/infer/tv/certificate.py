"""The gap certificate of ``0.5 |A x - y|^2 + w TV(x)`` (``w = lambda / 2``), any ``A``."""

from __future__ import annotations

import math

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
