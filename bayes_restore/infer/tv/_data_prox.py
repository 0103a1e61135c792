"""The data term's proximal step where it is closed-form, chosen by the operator's structure.

``prox_{tau G}`` of ``G(u) = 0.5 |A u - y|^2`` is ``(I + tau A^T A)^{-1} (v + tau A^T y)
= (A^T A + rho I)^{-1} (rho v + A^T y)`` with ``rho = 1 / tau``, that is
``operator.solve_normal(rho v + A^T y, rho)``: closed-form for every operator that can
solve its normal equations exactly
(:attr:`~bayes_restore.operators.LinearOperator.can_solve_normal`: every declared
:meth:`~bayes_restore.operators.LinearOperator.structure`, or an operator's own
``solve_normal``), which is the generic step (:class:`SolveNormalProx`). Specialised
versions run where they measure faster: pixel-diagonal (a pointwise affine map, fused
into the solver's numba pass), block mean (box decimation: one numba pass) and
Fourier-diagonal (periodic convolution: the transfer function cached, one FFT pair).
Nothing here looks at the operator's class: a new operator that declares a structure,
or solves its normal equations, gets the primal splitting.
"""

from __future__ import annotations

import numpy as np
import torch

from bayes_restore.operators import BlockMean, FourierDiagonal, LinearOperator, PixelDiagonal

from ._common import F64

__all__ = ["DataProx", "make_data_prox"]


class DataProx:
    """``prox_{tau G}`` of ``G(u) = 0.5 |A u - y|^2`` (``y`` the scaled observation).

    ``set_step(tau)`` once, then ``prox(v, out)`` writes ``(I + tau A^T A)^{-1} (v + tau
    A^T y)`` into ``out``.
    """

    #: the fused numba kernels (``_splitting_numba``), set by the solver when they run
    kernels = None
    #: what a gap check costs in fused iterations (512x512, measured): the solver spaces
    #: its checks by it (an FFT pair in the iteration: a check costs about 3 iterations,
    #: 5-10 with the polished dual)
    check_cost = 5.0
    #: FISTA steps that polish the certificate's dual field at a check (fused path; see
    #: ``GeneralCertificate.dual_polished``); 0 where they measured no gain
    polish_steps = 50
    #: the dual field is polished once the plain relative gap is below this times ``tol``
    polish_below = 50.0
    #: whether the certificate's plain dual (``GeneralCertificate.dual``) is evaluated at
    #: every check; ``False`` where :meth:`polished_dual` is a bound of its own that is
    #: always at least as tight (then it runs at every check, polished near the end)
    plain_dual = True
    #: the primal step in units of ``std(x0) / w`` (``tv_map_pdhg``'s default ``tau``):
    #: measured per structure, over-relaxed iteration, camera at 256x256 and 512x512
    tau_scale = 0.1

    def __init__(self, operator: LinearOperator, ys: torch.Tensor):
        self.op, self.ys = operator, ys

    def affine(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(gain, offset)`` with ``prox(v) = gain v + offset`` pointwise (image-shaped,
        contiguous; after :meth:`set_step`), or ``None`` when the step is not pointwise."""
        return None

    def block(self) -> tuple[int, float, torch.Tensor] | None:
        """``(f, c / f^2, scaled A^T y)`` when the step is box decimation's (fused into the
        solver's pass by ``_splitting_numba.iterate_block``; after :meth:`set_step`), else
        ``None``."""
        return None

    def set_step(self, tau: float) -> None:
        raise NotImplementedError

    def prox(self, v: torch.Tensor, out: torch.Tensor) -> None:
        raise NotImplementedError

    def residual(self, u: torch.Tensor) -> torch.Tensor:
        """``A u - y``: the dual candidate ``q``."""
        return self.op.forward(u) - self.ys

    def initial_image(self, y: torch.Tensor, aty: torch.Tensor) -> torch.Tensor:
        """The starting image from the (unscaled) observation and ``A^T y``."""
        return aty

    def lower_bound(self, ws, scratch):  # noqa: ARG002
        """A lower bound of the optimum from the dual field alone, or ``None``."""
        return None

    def fused_bounds(self, ws, u):  # noqa: ARG002
        """``(P(u), lower_bound)`` per image in one pass of the fused kernels (set in
        :attr:`kernels`), or ``None`` where there is no such pass."""
        return None

    def polished_dual(self, cert, q, kernels, steps):
        """The certificate's dual bound after ``steps`` polishing steps of its dual field
        (fused path), or ``None``: by default ``cert.dual_polished`` (the field moved
        towards ``div p = A^T q``)."""
        return cert.dual_polished(q, steps, kernels) if steps else None


class PixelDiagonalProx(DataProx):
    """``A = diag(d)``: ``prox(v) = (v + tau d y) / (1 + tau d^2)``.

    For a mask (``d`` in ``{0, 1}``) the same as ``v + d c (y - v)``, ``c = tau / (1 +
    tau)``, which is how it is computed then.
    """

    #: an iteration is one fused pass (several share one): a check is the one pass of
    #: fused_bounds, about one iteration (the plain dual and its DCT pair, ~40, run at
    #: a few checks only, see ``splitting._plain_due``)
    check_cost = 3.0
    #: its own box bound certifies; polishing costs more than it saves (512x512 mask,
    #: float64: 5 / 20 / 50 steps would certify at ~220 / 200 / 195 iterations, not ~255)
    polish_steps = 0

    def __init__(self, operator, structure: PixelDiagonal, ys, x_shape):
        super().__init__(operator, ys)
        self.binary = structure.binary
        self.d = structure.diagonal(ys).expand(x_shape)
        observed = self.d != 0
        # per pixel, the data term's own minimiser y / d (where observed)
        self.d64 = None if self.binary else self.d.to(F64)
        ys64 = ys.to(F64)
        target = ys64 if self.binary else torch.where(observed, ys64 / self.d64, 0.0)
        big = torch.finfo(ys.dtype).max
        lo = torch.where(observed, target, big).amin((-2, -1), keepdim=True)
        hi = torch.where(observed, target, -big).amax((-2, -1), keepdim=True)
        empty = lo > hi  # a channel with no observed pixel: constant 0 is as good as any
        self.lo, self.hi = lo.masked_fill(empty, 0.0), hi.masked_fill(empty, 0.0)
        self.observed, self.ys64 = observed, ys64
        self.flat = None  # the arrays of fused_bounds, made on first use
        # the data term's constant part: 0.5 y^2 at the pixels A does not see (d = 0)
        self.unseen_data = 0.5 * torch.where(observed, 0.0, ys64).square()
        self.mc = self.tdy = self.inv = None

    def set_step(self, tau):
        if self.binary:
            self.mc = self.d * (tau / (1.0 + tau))
        else:
            self.tdy = self.d * self.ys * tau
            self.inv = 1.0 / (1.0 + tau * self.d.square())

    def prox(self, v, out):
        if self.binary:
            torch.sub(self.ys, v, out=out)
            out.mul_(self.mc).add_(v)
        else:
            torch.add(v, self.tdy, out=out)
            out.mul_(self.inv)

    def affine(self):
        shape = self.d.shape
        if self.binary:
            gain = (1.0 - self.mc).expand(shape).contiguous()
            offset = (self.mc * self.ys).expand(shape).contiguous()
        else:
            gain = self.inv.expand(shape).contiguous()
            offset = (self.tdy * self.inv).expand(shape).contiguous()
        return gain, offset

    def initial_image(self, y, aty):
        """``y / d`` where observed (``A``'s pseudo-inverse), elsewhere their mean."""
        observed = self.observed
        if self.binary:
            target = aty
        else:
            d2 = torch.where(observed, self.d.square(), 1.0)
            target = torch.where(observed, aty / d2, 0.0)
        count = observed.sum((-2, -1), keepdim=True).clamp_min(1)
        mean = (target * observed).sum((-2, -1), keepdim=True) / count
        return torch.where(observed, target, mean)

    def lower_bound(self, ws, scratch):
        """``min over the box of 0.5 |d x - y|^2 - <x, div p>``, separable per pixel.

        A minimiser lies in ``[lo, hi]``, the range of the observed pixels' own
        minimisers ``y / d`` per channel: clipping to it lowers every difference and
        every data misfit. For ``|p| <= 1``, ``TV(x) >= -<x, div p>``, so this minimum is
        at most the optimum. Unobserved pixels (``d = 0``) take the better end of the box,
        and their data term is the constant ``0.5 y^2`` (``y`` need not be zero there).
        The over-relaxed iteration's ``p`` may leave ``|p| <= 1`` (``rho > 1`` steps past
        the projection): the bound uses a projected copy.
        """
        field = ws.p.clone()
        ws.project(field)
        ws.div_into(field, scratch)
        e = scratch.to(F64)
        if self.binary:
            t = (self.ys64 + e).clamp_(min=self.lo, max=self.hi)
            seen = 0.5 * (t - self.ys64).square_() - t * e
        else:
            d = self.d64
            d2 = torch.where(self.observed, d.square(), 1.0)
            t = ((d * self.ys64 + e) / d2).clamp_(min=self.lo, max=self.hi)
            seen = 0.5 * (d * t - self.ys64).square_() - t * e
        unseen = torch.minimum(-self.lo * e, -self.hi * e).add_(self.unseen_data)
        return ws.sum_image(torch.where(self.observed, seen, unseen))

    def fused_bounds(self, ws, u):
        """The primal value at ``u`` and :meth:`lower_bound`, both in one pass of
        ``kernels.affine_bounds`` (float64, the field projected on the fly)."""
        if self.kernels is None:
            return None
        h, w = ws.h, ws.w
        if self.flat is None:  # made once: the diagonal and the data as (B, H, W) arrays
            lead = ws.shape[:-2]
            self.flat = tuple(t.expand(ws.shape).contiguous().view(-1, h, w).numpy()
                              for t in (self.d.to(u.dtype), self.ys.to(u.dtype)))
            self.flat += tuple(t.expand(lead + (1, 1)).reshape(-1).contiguous().numpy()
                               for t in (self.lo, self.hi))
        d, ys, lo, hi = self.flat
        out = np.zeros((d.shape[0], 2))
        self.kernels.affine_bounds(u.view(-1, h, w).numpy(),
                                   ws.p.view(-1, 2, h + 1, w + 1).numpy(), d, ys, lo, hi,
                                   ws.isotropic, out)
        values = torch.from_numpy(out).view(ws.shape[:-2] + (2,))
        if ws.event_dim == 3:  # one value per (C, H, W) image
            values = values.sum(-2)
        return values[..., 0], values[..., 1]


class BlockMeanProx(DataProx):
    """Box decimation: ``A^T A = M / f^2`` with ``M`` the block-mean projection.

    ``(I + tau A^T A)^{-1} = I - c M`` with ``c = tau / (f^2 + tau)`` (Woodbury), and
    ``M A^T y = A^T y``, so ``prox(v) = v - c M v + tau (1 - c) A^T y``.
    """

    #: an iteration is one fused pass (``iterate_block``): a gap check costs ~20, ~40
    #: with the polished block bound
    check_cost = 40.0
    #: FISTA steps of the block bound (``GeneralCertificate.dual_block``): ``10 f``, set
    #: per factor in ``__init__`` (512x512 camera, float32, x4: 20 / 30 / 40 steps, 977 /
    #: 817 / 657 iterations; x2: 10 / 20 steps, 545 / 337)
    polish_steps = 20
    polish_below = 100.0
    plain_dual = False

    def __init__(self, operator, structure: BlockMean, ys, x_shape):  # noqa: ARG002
        super().__init__(operator, ys)
        self.f = structure.factor
        self.aty = operator.adjoint(ys)
        self.polish_steps = 10 * self.f
        # measured with the block bound (512x512 camera, float32, iterations to 1e-4):
        # x2: c = 0.05 / 0.07 / 0.1 / 0.15, 497 / 337 / 497 / 657; x4: c = 0.035 / 0.05 /
        # 0.07 / 0.1, 817 / 657 / 817 / 977 (checks every 160 iterations near the end)
        self.tau_scale = 0.07 if self.f <= 2 else 0.05
        self.c = self.scaled_aty = None

    def set_step(self, tau):
        f2 = self.f**2
        self.c = tau / (f2 + tau)
        self.scaled_aty = self.aty * (tau * (1.0 - self.c))
        self.scaled_aty_full = self.scaled_aty.contiguous()

    def block(self):
        return self.f, self.c / self.f**2, self.scaled_aty_full

    def prox(self, v, out):
        f = self.f
        h, w = v.shape[-2:]
        if self.kernels is not None:  # one pass (the solver checked dtype, device, layout)
            flat = (-1, h, w)
            self.kernels.block_prox(v.view(flat).numpy(), out.view(flat).numpy(),
                                    self.scaled_aty_full.view(flat).numpy(), f,
                                    v.numpy().dtype.type(self.c / f**2))
            return
        # block means by avg_pool2d (several times faster than a mean over strided views)
        means = torch.nn.functional.avg_pool2d(v.reshape(-1, 1, h, w), f)
        shape = (-1, h // f, 1, w // f, 1)
        torch.sub(v.view(-1, h // f, f, w // f, f), means.view(shape), alpha=self.c,
                  out=out.view(-1, h // f, f, w // f, f))
        out.add_(self.scaled_aty)

    def initial_image(self, y, aty):
        return aty * self.f**2  # nearest-neighbour upsampling, A's pseudo-inverse

    def polished_dual(self, cert, q, kernels, steps):  # noqa: ARG002
        """The block bound (``GeneralCertificate.dual_block``; ``q`` comes from the field),
        ``None`` where the factor does not divide the image (the plain dual then)."""
        return cert.dual_block(self.f, steps, kernels)


class FourierDiagonalProx(DataProx):
    """Periodic convolution: ``prox(v) = F^-1 [(F v + tau conj(H) F y) / (1 + tau |H|^2)]``.

    Computed as ``prox(y) + L (v - y)`` with ``L = F^-1 diag(1 / (1 + tau |H|^2)) F``
    (the step is affine): ``prox(y)`` once in float64, the FFT pair on ``v - y`` in the
    data's dtype. In float32 an FFT pair of ``v`` itself rounds at ~1e-7 of ``|v|``, and
    that noise capped the certified gap of a blur near 4e-4 however long the solver ran
    (256x256 camera); on the difference the rounding is that much smaller.
    """

    #: 512x512 blur, float32: 0.05 needed 205 iterations, 0.1 254, 0.2 445
    tau_scale = 0.05
    #: 512x512 blur, float32 (tau_scale 0.05): 0 / 10 / 20 / 50 steps, 438 / 283 / 232 /
    #: 205 iterations, 2.18 / 2.07 / 1.67 / 2.06 s of CPU
    polish_steps = 20
    #: an iteration is an FFT pair and a pass; a check with 20 polishing steps ~10
    check_cost = 10.0

    def __init__(self, operator, structure: FourierDiagonal, ys, x_shape):  # noqa: ARG002
        super().__init__(operator, ys)
        h, w = ys.shape[-2:]
        self.shape = (h, w)
        self.structure = structure
        self.f_y = self.f_aty = self.h2 = None  # on the first step (the ADMM never needs them)
        self.inv = self.base = None

    def set_step(self, tau):
        if self.f_y is None:
            ys64 = self.ys.to(F64)
            transfer = self.structure.transfer(*self.shape, ys64)
            self.f_y = torch.fft.rfft2(ys64)
            self.f_aty = self.f_y * transfer.conj()
            self.h2 = transfer.abs().square()
        inv = 1.0 / (1.0 + tau * self.h2)
        base = torch.fft.irfft2((self.f_y + tau * self.f_aty) * inv, s=self.shape)
        self.inv = inv.to(self.ys.dtype)
        self.base = base.to(self.ys.dtype)  # prox(y)

    def prox(self, v, out):
        spectrum = torch.fft.rfft2(v - self.ys).mul_(self.inv)
        torch.add(torch.fft.irfft2(spectrum, s=self.shape), self.base, out=out)

    def initial_image(self, y, aty):
        return y.clone()


class SolveNormalProx(DataProx):
    """Any operator that solves its normal equations exactly (``operator.solve_normal``):
    ``prox(v) = (A^T A + rho I)^{-1} (rho v + A^T y)`` with ``rho = 1 / tau``."""

    def __init__(self, operator, ys, x_shape):
        super().__init__(operator, ys)
        self.aty = operator.adjoint_as(ys, x_shape)
        self.rho = None

    def set_step(self, tau):
        self.rho = 1.0 / tau

    def prox(self, v, out):
        out.copy_(self.op.solve_normal(torch.add(self.aty, v, alpha=self.rho), self.rho))

    def initial_image(self, y, aty):
        # y itself where it is an image of the same shape (a blur), else A^T y
        return y.clone() if y.shape == aty.shape else aty


#: the specialised proximal steps, where they measure faster than the generic one
_PROX_OF = ((PixelDiagonal, PixelDiagonalProx), (BlockMean, BlockMeanProx),
            (FourierDiagonal, FourierDiagonalProx))


def make_data_prox(operator: LinearOperator, ys: torch.Tensor, x_shape) -> DataProx | None:
    """The closed-form ``prox_{tau G}`` of the operator, or ``None`` (no exact normal solve).

    A specialised step for the declared :meth:`structure` where there is one, else
    :class:`SolveNormalProx` when the operator :attr:`can_solve_normal`.
    """
    structure = operator.structure()
    for kind, prox in _PROX_OF:
        if isinstance(structure, kind):
            return prox(operator, structure, ys, x_shape)
    if operator.can_solve_normal:
        return SolveNormalProx(operator, ys, x_shape)
    return None
