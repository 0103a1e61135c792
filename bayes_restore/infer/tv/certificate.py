"""The gap certificate of ``0.5 |A x - y|^2 + w TV(x)`` (``w = lambda / 2``), any ``A``."""

from __future__ import annotations

import math

import torch

from bayes_restore.differences import dct2, dct_matrix, idct2, laplacian_eigenvalues

from ._common import F64

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
    """

    def __init__(self, operator, ws, ys, x_shape):
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
            return idct2(dct2(r).mul_(self.inv_mu)).neg_()
        ch, cw = self.dct
        r_hat = ch @ r @ cw.T
        return (ch.T @ r_hat.mul_(self.inv_mu) @ cw).neg_()

    def primal(self, u: torch.Tensor) -> torch.Tensor:
        r = self.op.forward(u) - self.ys
        return 0.5 * self.ws.sum_image(r.square_()) + self.ws.tv(u)

    def dual(self, q: torch.Tensor) -> torch.Tensor:
        ws = self.ws
        if self.c2 > 0:
            along = (q * self.c).sum((-2, -1), keepdim=True, dtype=F64) / self.c2
            q = q - along.to(q.dtype) * self.c
        r = self.op.adjoint(q).clone()
        ws.div_into(ws.p, self.scratch)
        r.sub_(self.scratch)  # A^T q - div p, zero mean per channel
        phi = self._poisson(r)
        ws.grad_into(phi, ws.g)
        p_feasible = ws.g.add_(ws.p)
        scale_max = 1.0 / ws.dual_norm_max(p_feasible).clamp_min(1.0)
        q2 = ws.sum_image(q.square())
        qy = ws.sum_image(q * self.ys)
        best = (-qy / q2.clamp_min(torch.finfo(F64).tiny)).clamp(min=0.0)
        s = torch.minimum(best, scale_max)
        return -0.5 * s.square() * q2 - s * qy
