"""The TV solvers' workspace: the padded dual field, fused differences, projections, TV.

Layout (chosen so that the number of passes over memory, the cost of eager torch,
stays small):

- The dual field ``p`` lives in a zero-padded buffer ``(..., 2, H + 1, W + 1)`` whose
  first row and column stay zero, so ``div p`` is three passes over shifted views (no
  boundary cases), and the gradient is written into an equally padded buffer whose
  last row (column) of the first (second) component stays zero.
- Every update is an in-place or ``out=`` operation. The isotropic projection is
  ``p *= rsqrt(max(|p|^2, 1))`` (five passes; ``torch.hypot`` is slower here).
"""

from __future__ import annotations

import functools

import torch

from ._common import F64

__all__ = ["Workspace", "sum_rows"]


class Workspace:
    """Preallocated buffers and the difference operators on the padded layout.

    ``p`` and ``g`` have shape ``lead + (2, H + 1, W + 1)`` (``lead`` = all but the
    last two dimensions of the image): component 0 (along ``H``) of pixel ``(i, j)``
    is at ``[0, i + 1, j + 1]``, component 1 (along ``W``) at ``[1, i + 1, j + 1]``.
    Row 0 and column 0 are always zero, and so are the Neumann zeros (last row of
    component 0, last column of component 1), so every full-buffer operation keeps
    them and ``div`` needs no boundary case.
    """

    def __init__(self, shape, dtype, device, event_dim, isotropic, vectorial):
        self.h, self.w = int(shape[-2]), int(shape[-1])
        lead = tuple(shape[:-2])
        self.shape = tuple(shape)
        self.event_dim = event_dim
        self.isotropic = bool(isotropic)
        self.vectorial = bool(vectorial)
        self.p = torch.zeros(lead + (2, self.h + 1, self.w + 1), dtype=dtype, device=device)
        self._p0, self._p1 = self.p[..., 0:1, :, :], self.p[..., 1:2, :, :]
        self._lead = lead

    # scratch buffers, made on first use (the fused kernels never need them)
    @functools.cached_property
    def g(self) -> torch.Tensor:
        """A padded field like ``p`` (gradients, scratch)."""
        return torch.zeros_like(self.p)

    @functools.cached_property
    def n(self) -> torch.Tensor:
        """Pointwise squared norms of a padded field (over channels if vectorial)."""
        shape = (self._lead[:-1] + (1,) if self.vectorial else self._lead) + (
            1, self.h + 1, self.w + 1)
        return torch.empty(shape, dtype=self.p.dtype, device=self.p.device)

    # per-image reductions (float64 accumulation)
    def sum_image(self, t: torch.Tensor) -> torch.Tensor:
        """Per-image sum of an image-shaped tensor: rows in its dtype, then float64.

        (``sum(dtype=float64)`` would first copy the whole array to float64.)
        """
        return sum_rows(t, self.event_dim - 1)

    def per_image(self, w: torch.Tensor) -> torch.Tensor:
        """A weight broadcasting against the image as one value per image (float64)."""
        return w.to(F64).expand(self.shape)[(...,) + (0,) * self.event_dim]

    def _sum_field(self, t: torch.Tensor) -> torch.Tensor:
        """Per-image sum of a ``lead + (k, H+1, W+1)`` (or vectorial) padded buffer."""
        return sum_rows(t, self.event_dim if not self.vectorial else 3)

    def _max_field(self, t: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(-(self.event_dim + 1), 0)) if not self.vectorial else (-4, -3, -2, -1)
        return t.amax(dims).to(F64)

    # differences on the padded layout
    def grad_into(self, u: torch.Tensor, g: torch.Tensor) -> None:
        """``g <- grad u`` (padded); the zero rows and columns of ``g`` stay zero."""
        h, w = self.h, self.w
        torch.sub(u[..., 1:, :], u[..., :-1, :], out=g[..., 0, 1:h, 1:])
        torch.sub(u[..., :, 1:], u[..., :, :-1], out=g[..., 1, 1:, 1:w])

    def ascend(self, u: torch.Tensor, sigma: float) -> None:
        """``p <- proj(p + sigma grad u)``, the gradient added in place (no buffer)."""
        h, w, p = self.h, self.w, self.p
        p[..., 0, 1:h, 1:].add_(u[..., 1:, :], alpha=sigma).sub_(u[..., :-1, :], alpha=sigma)
        p[..., 1, 1:, 1:w].add_(u[..., :, 1:], alpha=sigma).sub_(u[..., :, :-1], alpha=sigma)
        self.project(p)

    def rof_primal_dual(self, u, d, ys):
        """Per-image ``P(u) = 0.5 |u - y|^2 + TV(u)`` and ``D(p) = 0.5 |y|^2 - 0.5 |d|^2``.

        ``d = y + div p``; the dual is evaluated as ``-<e, y + e / 2>`` with
        ``e = d - y = div p`` (no cancellation between ``|y|^2`` and ``|d|^2``).
        ``g`` is the scratch space (its interior views are image-shaped).
        """
        e, f = self.g[..., 0, 1:, 1:], self.g[..., 1, 1:, 1:]
        torch.sub(d, ys, out=e)
        torch.add(ys, e, alpha=0.5, out=f)
        dual = -self.sum_image(f.mul_(e))
        torch.sub(u, ys, out=e)
        primal = 0.5 * self.sum_image(e.mul_(e))
        self.g[..., 0, self.h, :].zero_()  # restore the Neumann zeros used as scratch
        self.g[..., 1, :, self.w].zero_()
        return primal + self.tv(u), dual

    @staticmethod
    def div_views(p: torch.Tensor):
        """``p_y``, ``p_y`` one row up, ``p_x``, ``p_x`` one column left (image-shaped)."""
        return p[..., 0, 1:, 1:], p[..., 0, :-1, 1:], p[..., 1, 1:, 1:], p[..., 1, 1:, :-1]

    def div_into(self, p: torch.Tensor, d: torch.Tensor) -> None:
        """``d <- div p = -grad^T p`` in three passes over shifted views."""
        p0, p0_prev, p1, p1_prev = self.div_views(p)
        torch.sub(p0, p0_prev, out=d)
        d.add_(p1).sub_(p1_prev)

    def _norm2_into(self, p: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        """``n <- |p|^2`` per pixel (per channel, or over channels if vectorial)."""
        if self.vectorial:
            n.zero_()
            for c in range(p.shape[-4]):
                for k in (0, 1):
                    comp = p[..., c : c + 1, k : k + 1, :, :]
                    n.addcmul_(comp, comp)
            return n
        torch.mul(p[..., 0:1, :, :], p[..., 0:1, :, :], out=n)
        return n.addcmul_(p[..., 1:2, :, :], p[..., 1:2, :, :])

    def project(self, p: torch.Tensor) -> None:
        """In place: ``p <- p / max(1, |p|)`` (isotropic, vectorial) or clamp to [-1, 1]."""
        if not self.isotropic:
            p.clamp_(-1.0, 1.0)
            return
        n = self.n
        if p is self.p and not self.vectorial:  # the hot path: views made once
            torch.mul(self._p0, self._p0, out=n)
            n.addcmul_(self._p1, self._p1)
        else:
            self._norm2_into(p, n)
        p.mul_(n.clamp_min_(1.0).rsqrt_())

    def dual_norm_max(self, p: torch.Tensor) -> torch.Tensor:
        """Per image, the largest pointwise dual norm of ``p`` (``max |p|`` or ``max |p_k|``)."""
        if not self.isotropic:
            dims = tuple(range(-(self.event_dim + 1), 0))
            return p.abs().amax(dims).to(F64)
        n = self._norm2_into(p, torch.empty_like(self.n))
        return self._max_field(n).sqrt()

    def tv(self, u: torch.Tensor) -> torch.Tensor:
        """Per-image TV of ``u`` (float64); uses ``g`` and ``n`` as scratch."""
        self.grad_into(u, self.g)
        if not self.isotropic:
            return self._sum_field(torch.abs(self.g, out=self.g))
        return self._sum_field(self._norm2_into(self.g, self.n).sqrt_())


def sum_rows(t: torch.Tensor, more_dims: int) -> torch.Tensor:
    """Sum the last dimension in ``t``'s dtype, then ``more_dims`` more in float64."""
    rows = t.sum(-1)
    if more_dims == 0:
        return rows.to(F64)
    return rows.to(F64).sum(tuple(range(-more_dims, 0)))
