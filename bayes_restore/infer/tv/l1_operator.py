"""TV-L1 with a linear operator (``|A x - y|_1 + lambda TV(x)``): three splittings, one certificate.

The solvers iterate on the energy divided by ``lambda``, ``E(x) = theta |A x - y|_1 +
TV(x)`` with ``theta = 1 / lambda`` per image, so that the TV dual field lives in
``|p| <= 1`` whatever the weight. Its Fenchel dual is

    ``max -<q, y>``  over  ``|q|_inf <= theta``, ``|p| <= 1`` pointwise, ``A^T q = div p``:

for such a pair and any ``x``, ``theta |A x - y|_1 >= <q, A x - y>`` (Hoelder) and
``TV(x) >= <grad x, p> = -<x, div p>``, so ``E(x) >= <A^T q - div p, x> - <q, y> =
-<q, y>``. :class:`L1Certificate` turns the solvers' iterates into such a pair (clip
``q``, restore ``<q, A 1> = 0`` where ``q`` has room, close ``div p = A^T q`` by a field
added to ``p``, scale the pair into the constraints) and, for a pixel-diagonal ``A``,
adds a bound that needs ``p`` only (a minimiser lies in a known box).

The splittings (:func:`tv_l1_operator` chooses by the operator's declared structure):

- ``"primal"`` (pixel-diagonal ``A``, box decimation): Chambolle & Pock with ``K =
  grad`` and the data term in the primal prox, closed-form pointwise (a shrinkage
  towards ``y / d`` with threshold ``tau theta |d|``; identity where ``d = 0``) or per
  block (``A A^T = I / f^2``, so ``prox_{g o A}(v) = v + f^2 A^T (prox_{g / f^2}(A v) -
  A v)``: each block shifted by the shrinkage of its mean);
- ``"admm"`` (an operator diagonal in the FFT or the DCT: blur): ADMM in the style of
  FTVd (Yang, Zhang & Yin 2009), ``z = A x - y`` by a shrinkage, ``w = x`` by the ROF prox
  (warm-started fused ROF steps, ``_admm_numba.iterate``), the ``x``-update exact in the
  transform;
- ``"dual"`` (anything else, only ``A`` and ``A^T``): Chambolle & Pock with ``K = [grad;
  A]``, the L1 conjugate's prox a clip.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from bayes_restore.differences import laplacian_eigenvalues
from bayes_restore.operators import BlockMean, LinearOperator, PixelDiagonal

from ._common import (
    BACKENDS,
    F64,
    GRAD_NORM2,
    check_options,
    check_weight,
    finish,
    fused_kernels,
    iterations_to_tol,
    record_check,
    relaxed_primal_step,
)
from ._dct import scaled_dct_solve
from ._workspace import Workspace
from .admm import spectral_of

__all__ = ["tv_l1_operator", "L1Certificate", "SPLITTINGS"]

#: accepted values of ``splitting``
SPLITTINGS = ("auto", "primal", "dual", "admm")
#: primal step of the primal splitting, times std(x0) theta; None: the prox's own
#: ``tau_scale`` (measured per structure)
TAU_PRIMAL = None
#: over-relaxation of the primal splitting (512x512 camera, 10 % impulses, iterations to a
#: certified 1e-4 at rho = 1 / 1.5 / 1.9: x2 decimation, tau_scale 0.01: 2135 / 1412 /
#: 2400; 0.02: 2044 / 2467 / 1854; 50 % mask, tau_scale 0.1: 739 / 522 / 529)
RELAXATION_PRIMAL = 1.5
#: the dual splitting's primal step, times std(x0) theta / sqrt(8 + ||A||^2)
TAU_DUAL = 0.5
#: ADMM (blur): penalties ``BETA_DATA theta / std(y)`` (data split) and ``BETA_TV / std(y)``
#: (TV split), over-relaxation, inner ROF steps and their step. 128x128 camera, periodic
#: 9x9 blur of std 1.5, lambda 0.05, certified gap after 3000 iterations for (BETA_DATA,
#: BETA_TV) in {0.3, 1, 3}^2 x {1, 3, 10}: 1.1e-4 (3, 3) to 3.4e-4 (0.3, 10); 16 or 32
#: inner steps and a relaxation of 1.0 changed nothing at (3, 3)
BETA_DATA = 3.0
BETA_TV = 3.0
ADMM_RELAXATION = 1.6
ADMM_INNER = 8
ADMM_INNER_STEP = 0.25
#: with a box bound, the plain dual runs at every this-many-th gap check
PLAIN_EVERY = 8
#: projected (FISTA) steps that move the dual field towards div p = A^T q before the
#: closure: the Chambolle-Pock splittings (512x512 x2 decimation, 20 / 300 steps: 1412 /
#: 1025 iterations, 3.5 / 8.4 s of CPU: the steps cost more than they save there)
POLISH_STEPS = 20
#: the same for the ADMM, whose checks are rarer and whose bound the steps decide (128x128
#: blur, float64, lambda 0.05, iterations to 1e-4 and CPU s: 20 / 100 / 300 / 1000 / 3000
#: steps, 5197 / 3753 / 2019 / 2143 / 1372 iterations, 7.9 / 5.3 / 3.0 / 4.7 / 6.2 s)
ADMM_POLISH = 300


def _flat_theta(theta: torch.Tensor, shape, event_dim: int) -> torch.Tensor:
    """``theta`` (``batch + (1,) * event_dim``) as one value per flat ``(H, W)`` image."""
    lead = tuple(shape[:-2])
    return theta.to(F64).expand(tuple(shape))[(...,) + (0, 0)].reshape(lead).contiguous()


class L1Certificate:
    """Primal value and certified lower bounds of ``E(x) = theta |A x - y|_1 + TV(x)``.

    ``dual(q, p)``: the dual value of a feasible pair made from any candidate ``q`` (an
    observation-shaped tensor) and field ``p`` (the workspace's padded layout):

    1. ``q`` clipped to ``[-theta, theta]`` and ``p`` projected onto ``|p| <= 1``;
    2. ``<q, A 1> = 0`` per channel (``div p`` sums to zero, so ``A^T q`` must): ``q <- q
       - t c r`` with ``c = A 1`` and ``r = theta - |q|`` the room left, so that ``|q| <=
       theta`` survives wherever ``|t c| <= 1`` (the plain projection along ``c`` where
       no room is left);
    3. ``p <- p + grad phi`` with ``div grad phi = A^T q - div p`` (a Neumann Poisson
       solve by the DCT), after ``polish`` projected gradient steps that move ``p``
       towards ``div p = A^T q`` inside ``|p| <= 1`` (the correction then has less to
       add where ``|p| = 1`` already);
    4. the pair scaled by ``s = 1 / max(1, max |p|, max |q| / theta)`` per image: then
       ``-s <q, y>`` (or 0, the pair ``(0, 0)``, if that is larger) is a lower bound of
       the optimum (module docstring).

    ``box(p)``: for ``A = diag(d)`` a minimiser lies in the box ``[lo, hi]`` of the
    observed pixels' own minimisers ``y / d`` (per channel: clipping to it lowers both
    terms), so the separable minimum over that box of ``theta |d x - y| - x div p`` (at
    ``lo``, ``hi`` or ``y / d``; at the better end where ``d = 0``) is a lower bound for
    any ``|p| <= 1``; where ``d = 0`` the data term is the constant ``theta |y|``.

    Examples
    --------
    >>> import torch
    >>> from bayes_restore.operators import Mask
    >>> y = torch.tensor([[0.0, 1.0], [0.0, 1.0]], dtype=torch.float64)
    >>> ws = Workspace((2, 2), torch.float64, "cpu", 2, True, False)
    >>> cert = L1Certificate(Mask(torch.ones(2, 2, dtype=torch.bool)), ws, y,
    ...                      torch.tensor(1.0, dtype=torch.float64), (2, 2))
    >>> float(cert.primal(y)), float(cert.box()) <= float(cert.primal(y))  # TV(y) = 2
    (2.0, True)
    """

    def __init__(self, operator: LinearOperator, ws: Workspace, y: torch.Tensor,
                 theta: torch.Tensor, x_shape, polish: int | None = None):
        self.op, self.ws, self.x_shape = operator, ws, tuple(x_shape)
        self.polish = POLISH_STEPS if polish is None else polish
        self.y = y
        self.promote = y.dtype != F64 and y.device.type == "cpu"
        self.y64 = y.to(F64)
        self.theta = theta  # batch + (1,) * event_dim, y's dtype
        self.theta64 = theta.to(F64)
        h, w = self.x_shape[-2:]
        ones = torch.ones((h, w), dtype=F64, device=y.device)
        self.c = operator.forward(ones)  # A 1
        self.c_sq = self.c.square()
        mu = laplacian_eigenvalues(h, w, dtype=F64, device=y.device).clone()
        mu[0, 0] = math.inf
        self.inv_mu = 1.0 / mu
        self.wsd = Workspace(ws.shape, F64, y.device, ws.event_dim, ws.isotropic,
                             ws.vectorial)
        self.scratch = torch.empty(ws.shape, dtype=F64, device=y.device)
        self.box_data = None
        #: the fused kernels (``_splitting_numba``) for the polishing steps, if they run
        self.kernels = fused_kernels("_splitting_numba", self.y64, ws.vectorial, "auto")
        structure = operator.structure()
        if isinstance(structure, PixelDiagonal):
            self._make_box(structure)

    # ------------------------------------------------------------------ primal
    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """``A x - y`` (float64)."""
        return self.op.forward(x.to(F64)) - self.y64

    def primal(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        """``E(x)`` per image (float64)."""
        r = self.residual(x) if residual is None else residual
        data = self.wsd.sum_image(r.abs()) if r.shape == self.x_shape else _sum_obs(
            r.abs(), self.ws.event_dim)
        return data * self.wsd.per_image(self.theta64) + self.wsd.tv(x.to(F64))

    def plain_due(self, history, tol) -> bool:  # noqa: ARG002
        """Whether a check with the box bound also evaluates :meth:`dual` (a Poisson solve
        and the polishing steps, tens of iterations' worth): every ``PLAIN_EVERY``-th
        check (512x512 camera, 50 % mask: the box bound was the tighter at every check)."""
        return len(history) % PLAIN_EVERY == 0

    # ------------------------------------------------------------------ duals
    def feasible_q(self, q: torch.Tensor) -> torch.Tensor:
        """Steps 1-2: ``q`` clipped and made orthogonal to ``A 1`` per channel (float64)."""
        th = self.theta64
        q = q.to(F64)
        q = torch.maximum(torch.minimum(q, th), -th)
        c = self.c
        along = (q * c).sum((-2, -1), keepdim=True)
        room = (th - q.abs()).clamp_min_(0.0)
        denom = (self.c_sq * room).sum((-2, -1), keepdim=True)
        plain = self.c_sq.sum()
        if float(plain) == 0.0:
            return q
        has_room = denom > 1e-12 * plain
        t_room = along / torch.where(has_room, denom, torch.ones_like(denom))
        t_plain = along / plain
        return torch.where(has_room, q - t_room * c * room, q - t_plain * c)

    def dual(self, q: torch.Tensor, p: torch.Tensor | None = None) -> torch.Tensor:
        """Steps 1-4: a certified lower bound of ``min E`` per image (float64)."""
        wsd = self.wsd
        q = self.feasible_q(q)
        g = self.op.adjoint_as(q, self.x_shape) if hasattr(self.op, "adjoint_as") \
            else self.op.adjoint(q)
        field = wsd.p
        field.copy_(self.ws.p if p is None else p)
        wsd.project(field)
        if self.polish and self.kernels is not None:  # FISTA steps, one numba kernel
            h, w = wsd.h, wsd.w
            gc = g.contiguous()
            self.kernels.polish_dual(field.view(-1, 2, h + 1, w + 1).numpy(),
                                     gc.view(-1, h, w).numpy(), self.polish,
                                     np.float64(0.125), np.float64(1.0), wsd.isotropic)
        elif self.polish:
            _polish_torch(wsd, field, g, self.polish, self.scratch)
        wsd.div_into(field, self.scratch)
        r = g - self.scratch
        r = r - r.mean((-2, -1), keepdim=True)  # rounding only: zero by step 2
        phi = scaled_dct_solve(r, self.inv_mu).neg_()
        wsd.grad_into(phi, wsd.g)
        field.add_(wsd.g)
        return self._scaled(q, wsd.dual_norm_max(field))

    def _scaled(self, q: torch.Tensor, p_max: torch.Tensor) -> torch.Tensor:
        """``max(0, -s <q, y>)`` with ``s = 1 / max(1, p_max, max |q| / theta)`` per image."""
        ev = self.ws.event_dim
        th = self.wsd.per_image(self.theta64)
        q_max = _max_obs(q.abs(), ev) / th
        s = 1.0 / torch.maximum(torch.maximum(p_max, q_max), torch.ones_like(q_max))
        value = -_sum_obs(q * self.y64, ev)
        return (s * value).clamp_min(0.0)

    def _make_box(self, structure: PixelDiagonal) -> None:
        d = structure.diagonal(self.y64).expand(self.x_shape)
        observed = d != 0
        target = torch.where(observed, self.y64 / torch.where(observed, d, 1.0), 0.0)
        big = torch.finfo(F64).max
        lo = torch.where(observed, target, big).amin((-2, -1), keepdim=True)
        hi = torch.where(observed, target, -big).amax((-2, -1), keepdim=True)
        empty = lo > hi
        # the data term's constant part: theta |y| at the pixels A does not see (d = 0)
        unseen = torch.where(observed, 0.0, self.y64.abs() * self.theta64)
        self.box_data = (observed, target, d.abs() * self.theta64,
                         lo.masked_fill(empty, 0.0), hi.masked_fill(empty, 0.0), unseen)

    def box(self, p: torch.Tensor | None = None) -> torch.Tensor | None:
        """The box bound for a pixel-diagonal ``A`` (class docstring), or ``None``."""
        if self.box_data is None:
            return None
        observed, target, weight, lo, hi, unseen = self.box_data
        wsd = self.wsd
        field = wsd.p
        field.copy_(self.ws.p if p is None else p)
        wsd.project(field)
        e = self.scratch
        wsd.div_into(field, e)
        # per pixel min over t in [lo, hi] of weight |t - target| - t e: at lo, hi or target
        c_lo = (lo - target).abs_().mul_(weight).sub_(lo * e)
        c_hi = (hi - target).abs_().mul_(weight).sub_(hi * e)
        c_t = torch.where(observed, -target * e, math.inf)
        return wsd.sum_image(torch.minimum(torch.minimum(c_lo, c_hi), c_t).add_(unseen))


def _sum_obs(t: torch.Tensor, event_dim: int) -> torch.Tensor:
    """Per-image sum of an observation-shaped tensor (float64)."""
    return t.to(F64).sum(tuple(range(-event_dim, 0)))


def _max_obs(t: torch.Tensor, event_dim: int) -> torch.Tensor:
    return t.to(F64).amax(tuple(range(-event_dim, 0)))


def _polish_torch(ws: Workspace, field: torch.Tensor, g: torch.Tensor, steps: int,
                  scratch: torch.Tensor) -> None:
    """``steps`` projected gradient steps (step 1/8) on ``0.5 |div p - g|^2`` over ``|p| <= 1``,
    ``field`` in place (eager torch: any device, vectorial TV)."""
    for _ in range(steps):
        ws.div_into(field, scratch)
        scratch.sub_(g)  # div p - g; the gradient of 0.5 |div p - g|^2 in p is -grad(...)
        h, w = ws.h, ws.w
        field[..., 0, 1:h, 1:].add_(scratch[..., 1:, :], alpha=0.125).sub_(
            scratch[..., :-1, :], alpha=0.125)
        field[..., 1, 1:, 1:w].add_(scratch[..., :, 1:], alpha=0.125).sub_(
            scratch[..., :, :-1], alpha=0.125)
        ws.project(field)


# --------------------------------------------------------------------------------------
# the data term's proximal steps of the primal splitting
# --------------------------------------------------------------------------------------


class PixelShrink:
    """``prox_{tau theta |d x - y|_1}``: ``x = t + shrink(v - t, tau theta |d|)``, ``t = y / d``
    where ``d != 0``; ``x = v`` where ``d = 0`` (threshold 0)."""

    #: the primal step in units of ``std(x0) theta`` (128x128 camera, 50 % mask, 10 %
    #: impulses, iterations to 1e-4, rho = 1: 0.02 / 0.05 / 0.1 / 0.3 / 1: 2423 / 1115 /
    #: 919 / 1565 / > 4000; 512x512, lambda 0.5: 0.05 / 0.1: 499 / 739)
    tau_scale = 0.05

    def __init__(self, structure: PixelDiagonal, y, theta, x_shape):
        d = structure.diagonal(y).expand(x_shape)
        observed = d != 0
        self.target = torch.where(observed, y / torch.where(observed, d, 1.0), 0.0)
        self.unit = (d.abs() * theta).contiguous()
        self.observed = observed
        self.d_safe = torch.where(observed, d, 1.0)
        self.unseen_q = -torch.sign(y) * theta
        self.thr = None

    def set_step(self, tau: float) -> None:
        self.thr = (self.unit * tau).contiguous()

    def prox(self, v: torch.Tensor, out: torch.Tensor) -> None:
        torch.sub(v, self.target, out=out)
        torch.sub(v, out.clamp_(min=-self.thr, max=self.thr), out=out)

    def dual_candidate(self, v, u, tau):
        """``q`` with ``A^T q = (v - u) / tau``: ``(v - u) / (tau d)`` where observed; where
        ``d = 0`` ``A^T`` does not see ``q``, and ``-theta sign(y)`` is its best value."""
        return torch.where(self.observed, (v - u) / (tau * self.d_safe), self.unseen_q)

    def initial_image(self, aty: torch.Tensor) -> torch.Tensor:
        count = self.observed.sum((-2, -1), keepdim=True).clamp_min(1)
        mean = (self.target * self.observed).sum((-2, -1), keepdim=True) / count
        return torch.where(self.observed, self.target, mean)


class BlockShrink:
    """Box decimation (``A A^T = I / f^2``): ``prox_{tau theta |A x - y|_1}(v) = v + f^2 A^T
    (prox(A v) - A v)``, each block shifted by ``-clip(m - y, +-tau theta / f^2)`` (``m``
    its mean); rows and columns beyond the last whole block are not observed (identity)."""

    #: as :attr:`PixelShrink.tau_scale` (x2, 128x128, rho = 1: 0.02 / 0.05 / 0.1 / 0.3:
    #: 1725 / 2544 / 3942 / > 4000 iterations; 512x512 see RELAXATION_PRIMAL)
    tau_scale = 0.01

    def __init__(self, structure: BlockMean, y, theta, x_shape):
        self.f = structure.factor
        self.y = y
        self.theta = theta
        self.x_shape = tuple(x_shape)
        self.thr = None

    def set_step(self, tau: float) -> None:
        self.thr = self.theta * (tau / self.f**2)

    def prox(self, v: torch.Tensor, out: torch.Tensor) -> None:
        f = self.f
        hb, wb = self.y.shape[-2:]
        out.copy_(v)
        lead = v.shape[:-2]
        means = torch.nn.functional.avg_pool2d(
            v[..., : hb * f, : wb * f].reshape(-1, 1, hb * f, wb * f), f).reshape(
            lead + (hb, wb))
        shift = (means - self.y).clamp_(min=-self.thr, max=self.thr)
        out[..., : hb * f, : wb * f].view(lead + (hb, f, wb, f)).sub_(
            shift.reshape(lead + (hb, 1, wb, 1)))

    def dual_candidate(self, v, u, tau):
        """``q = f^2 A (v - u) / tau`` (each block's shift, a multiple of its clip)."""
        f = self.f
        hb, wb = self.y.shape[-2:]
        diff = (v - u)[..., : hb * f, : wb * f]
        lead = diff.shape[:-2]
        means = torch.nn.functional.avg_pool2d(diff.reshape(-1, 1, hb * f, wb * f), f)
        return means.reshape(lead + (hb, wb)) * (f**2 / tau)

    def initial_image(self, aty: torch.Tensor) -> torch.Tensor:
        return aty * self.f**2


def make_l1_prox(operator: LinearOperator, y, theta, x_shape):
    """The closed-form prox of ``tau theta |A x - y|_1`` from the declared structure, or
    ``None`` (pixel-diagonal: pointwise; block mean: per block)."""
    structure = operator.structure()
    if isinstance(structure, PixelDiagonal):
        return PixelShrink(structure, y, theta, x_shape)
    if isinstance(structure, BlockMean):
        return BlockShrink(structure, y, theta, x_shape)
    return None


# --------------------------------------------------------------------------------------
# the public entry (called by tv_l1_pdhg with an operator)
# --------------------------------------------------------------------------------------


def tv_l1_operator(y, weight, operator, *, isotropic=True, vectorial=False, event_dim=2,
                   tol=1e-4, max_iter=20000, check_every=10, tau=None, splitting="auto",
                   backend="auto"):
    """``argmin |A x - y|_1 + lambda TV(x)`` with a certified gap; see :func:`tv_l1_pdhg`
    (its ``operator=`` path: the same arguments, ``operator`` not the identity).

    Examples
    --------
    >>> import torch
    >>> from bayes_restore.operators import Downsample
    >>> y = torch.zeros(4, 4, dtype=torch.float64)
    >>> y[1, 2] = 1.0  # one impulse in the low-resolution image
    >>> x, info = tv_l1_operator(y, 2.0, Downsample(2))
    >>> x.shape, info.converged, round(float(x.abs().max()), 6)
    (torch.Size([8, 8]), True, 0.0)
    """
    start = time.perf_counter()
    if not isinstance(operator, LinearOperator):
        raise ValueError(
            f"operator must be a LinearOperator or None, got {type(operator).__name__}")
    if splitting not in SPLITTINGS:
        raise ValueError(f"splitting must be one of {SPLITTINGS}, got {splitting!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if tau is not None and not tau > 0:
        raise ValueError(f"tau must be > 0, got {tau!r}")
    y = y.detach()
    aty = operator.adjoint(y)
    check_options(aty, event_dim, vectorial, tol, max_iter, check_every, isotropic)
    if y.dim() < event_dim:
        raise ValueError(f"y must have at least event_dim={event_dim} dimensions")
    lam = check_weight(weight, aty, event_dim)
    theta = 1.0 / lam
    x_shape = tuple(aty.shape)
    ws = Workspace(x_shape, aty.dtype, aty.device, event_dim, isotropic, vectorial)
    unit = ws.per_image(lam)
    prox = make_l1_prox(operator, y, theta, x_shape) if splitting in ("auto", "primal") \
        else None
    if splitting == "primal" and prox is None:
        raise ValueError(
            "splitting='primal' needs a closed-form prox of |A x - y|_1: a pixel-diagonal "
            f"(PixelDiagonal) or box-decimation (BlockMean) structure; {operator!r} has none")
    spec = kernels = None
    if prox is None and splitting in ("auto", "admm"):
        spec = spectral_of(operator.structure(), x_shape, 1)
        if spec is not None:
            kernels = _admm_kernels(aty, vectorial, backend if splitting == "auto" else
                                    ("numba" if backend == "auto" else backend))
            if kernels is None:
                spec = None
        if splitting == "admm" and spec is None:
            raise ValueError(
                "splitting='admm' needs an operator diagonal in a transform (a declared "
                "FourierDiagonal or DCTDiagonal structure) and the fused kernels "
                f"(float32/float64 CPU tensors, non-vectorial TV); got {operator!r}")
    if spec is not None and y.dtype != F64:
        # float32 ADMM iterates stalled at a certified 7e-4 to 1e-3 (512x512 blur, 10000-20000
        # iterations; float64: 1e-4 at 7037): the ADMM runs in float64, the result is cast
        x, info = tv_l1_operator(
            y.to(F64), lam.to(F64), operator, isotropic=isotropic, vectorial=vectorial,
            event_dim=event_dim, tol=tol, max_iter=max_iter, check_every=check_every,
            tau=tau, splitting="admm", backend=backend)
        return x.to(y.dtype), info
    theta_flat = _flat_theta(theta, x_shape, event_dim)
    cert = L1Certificate(operator, ws, y, theta, x_shape,
                         polish=ADMM_POLISH if spec is not None else None)
    if prox is not None:
        x0 = prox.initial_image(aty)
        spread = float(x0.double().std()) if x0.numel() > 1 else 0.0
        scale = prox.tau_scale if TAU_PRIMAL is None else TAU_PRIMAL
        t = tau if tau is not None else scale * (spread or 1.0) * float(theta_flat.mean())
        kernels = fused_kernels("_splitting_numba", x0, vectorial, backend)
        run = _primal_cp if kernels is None else _primal_cp_fused
        x, gap, obj, it, hist = run(x0.contiguous(), ws, cert, prox, unit, tau=t,
                                    tol=tol, max_iter=max_iter, check_every=check_every,
                                    **({} if kernels is None else {"kernels": kernels}))
        return finish(x, "pdhg", it, gap, obj, hist, tol, max_iter, start,
                      backend="torch" if kernels is None else "numba")
    if spec is not None:
        x, gap, obj, it, hist = _admm(y, aty, ws, cert, spec, kernels, theta_flat, unit,
                                      tol=tol, max_iter=max_iter)
        return finish(x, "admm", it, gap, obj, hist, tol, max_iter, start, backend="numba")
    x0 = y.clone() if y.shape == aty.shape else aty
    spread = float(x0.double().std()) if x0.numel() > 1 else 0.0
    norm2 = GRAD_NORM2 + float(operator.norm_bound) ** 2
    t = tau if tau is not None else TAU_DUAL * (spread or 1.0) * float(
        theta_flat.mean()) / math.sqrt(norm2)
    x, gap, obj, it, hist = _dual_cp(x0.contiguous(), y, ws, cert, operator, theta, unit,
                                     tau=t, norm2=norm2, tol=tol, max_iter=max_iter,
                                     check_every=check_every)
    return finish(x, "pdhg", it, gap, obj, hist, tol, max_iter, start)


def _admm_kernels(like, vectorial, backend):
    found = [fused_kernels(name, like, vectorial, backend)
             for name in ("_rof_numba", "_splitting_numba", "_admm_numba")]
    return None if any(k is None for k in found) else tuple(found)


def _interval(checks, tol: float, check_every: int) -> int:
    """Iterations to the next gap check: 80 % of the predicted way to ``tol`` (the gap
    falling like ``k^-a``, ``a >= 1`` from the last two checks), at least ``check_every``
    and a tenth of the iterations done, at most half of them."""
    it = checks[-1][0]
    ahead = 0.8 * iterations_to_tol(checks, tol)
    low, high = max(check_every, it // 10), max(check_every, it // 2)
    return int(min(max(math.ceil(ahead), low), high))


def _primal_bound(cert, prox, uh, make_v, tau, history, tol):
    """The primal splittings' lower bound at a check: the box bound (pixel-diagonal ``A``),
    and the dual pair made feasible from the prox's candidate (``make_v()`` gives the point
    the last prox was taken at) when there is no box bound or it is due."""
    dual = cert.box()
    if dual is None or cert.plain_due(history, tol):
        plain = cert.dual(prox.dual_candidate(make_v(), uh, tau))
        dual = plain if dual is None else torch.maximum(dual, plain)
    return dual


def _primal_cp(u, ws, cert, prox, unit, *, tau, tol, max_iter, check_every):
    """Chambolle-Pock, ``K = grad``, the L1 data term in the primal prox (eager torch),
    over-relaxed by ``RELAXATION_PRIMAL`` (``rho``; 1 is the plain iteration).

    From ``(u, p)`` and ``uh = prox(u + tau div p)``: ``p <- p + rho (proj(p + sigma grad(2
    uh - u)) - p)``, ``u <- u + rho (uh - u)``, ``v = u + tau div p``, ``uh = prox(v)``
    (the iteration of the fused kernels). At a check ``uh`` is certified, with the prox's
    own dual candidate: ``A^T q = (v - uh) / tau`` (``q`` in ``[-theta, theta]`` by the
    prox's optimality), so that ``A^T q - div p = (u - uh) / tau`` vanishes as the
    iterates settle.
    """
    sigma = 1.0 / (GRAD_NORM2 * tau)
    rho = RELAXATION_PRIMAL
    prox.set_step(tau)
    uh, u_bar, v = torch.empty_like(u), torch.empty_like(u), torch.empty_like(u)
    prox.prox(u, uh)  # p = 0: v = u
    p_old = torch.empty_like(ws.p) if rho != 1.0 else None
    history: list[float] = []
    checks: list[tuple[int, float]] = []
    best = None
    gap, objective, it, next_check = math.inf, math.nan, 0, check_every
    while it < max_iter:
        it += 1
        relaxed_primal_step(ws, prox, u, uh, u_bar, v, p_old, tau, sigma, rho)
        if it == next_check or it == max_iter:
            primal = cert.primal(uh)
            dual = _primal_bound(cert, prox, uh, lambda: v, tau, history, tol)
            best, gap, objective = record_check(primal, dual, best, unit, it, history, checks)
            if gap <= tol:
                break
            next_check = it + _interval(checks, tol, check_every)
    return uh, gap, objective, it, history


#: most iterations one call of the fused kernel runs (between two gap checks)
_MAX_FUSED = 16


def _primal_cp_fused(u, ws, cert, prox, unit, *, tau, tol, max_iter, check_every, kernels):
    """:func:`_primal_cp` on the fused kernel (``_splitting_numba.iterate_shrink``): the
    same iteration, several per pass over memory; at a check ``v = u_old + tau div p`` is
    made again from the kernel's state (``uh`` is the iterate)."""
    sigma = 1.0 / (GRAD_NORM2 * tau)
    prox.set_step(tau)
    h, w = ws.h, ws.w
    flat = (-1, h, w)
    u = u.contiguous()
    uh = torch.empty_like(u)
    prox.prox(u, uh)  # p = 0: v = u
    v = torch.empty_like(u)
    dtype = u.numpy().dtype.type
    p_np = ws.p.view(-1, 2, h + 1, w + 1).numpy()
    un, uhn = u.view(flat).numpy(), uh.view(flat).numpy()
    s_, t_, one, rho = dtype(sigma), dtype(tau), dtype(1.0), dtype(RELAXATION_PRIMAL)
    block = isinstance(prox, BlockShrink)
    if block:
        yb = prox.y.contiguous().view((-1,) + tuple(prox.y.shape[-2:])).numpy()
        thr = prox.thr.expand(ws.shape[:-2] + (1, 1)).reshape(-1).contiguous().numpy()
        scratch = torch.empty_like(u).view(flat).numpy()
    else:
        target = prox.target.expand(ws.shape).contiguous().view(flat).numpy()
        thr = prox.thr.expand(ws.shape).contiguous().view(flat).numpy()
    history: list[float] = []
    checks: list[tuple[int, float]] = []
    best = None
    gap, objective, it, next_check = math.inf, math.nan, 0, check_every
    while it < max_iter:
        m = min(_MAX_FUSED, next_check - it, max_iter - it)
        if block:
            kernels.iterate_block_shrink(uhn, un, p_np, scratch, yb, thr, prox.f, s_, t_, rho,
                                         one, ws.isotropic, m)
        else:
            kernels.iterate_shrink(uhn, un, p_np, target, thr, s_, t_, rho, one, ws.isotropic,
                                   m)
        it += m
        if it != next_check and it != max_iter:
            continue
        primal = cert.primal(uh)

        def remake_v() -> torch.Tensor:  # the kernel does not store v = u_old + tau div p
            ws.div_into(ws.p, v)
            return v.mul_(tau).add_(u)

        dual = _primal_bound(cert, prox, uh, remake_v, tau, history, tol)
        best, gap, objective = record_check(primal, dual, best, unit, it, history, checks)
        if gap <= tol:
            break
        next_check = it + _interval(checks, tol, check_every)
    return uh, gap, objective, it, history


def _dual_cp(u, y, ws, cert, operator, theta, unit, *, tau, norm2, tol, max_iter,
             check_every):
    """Chambolle-Pock with ``K = [grad; A]``: ``q <- clip(q + sigma (A u_bar - y), +-theta)``."""
    sigma = 1.0 / (tau * norm2)
    u_bar = u.clone()
    q = torch.zeros_like(y)
    d = torch.empty_like(u)
    th = theta.to(y.dtype)
    history: list[float] = []
    checks: list[tuple[int, float]] = []
    best = None
    gap, objective, it, next_check = math.inf, math.nan, 0, check_every
    while it < max_iter:
        it += 1
        ws.ascend(u_bar, sigma)
        q.add_(operator.forward(u_bar) - y, alpha=sigma)
        q = torch.maximum(torch.minimum(q, th), -th)
        ws.div_into(ws.p, d)
        d.sub_(operator.adjoint(q))
        torch.add(u, d, alpha=2.0 * tau, out=u_bar)
        u.add_(d, alpha=tau)
        if it == next_check or it == max_iter:
            primal = cert.primal(u)
            dual = cert.dual(q)
            box = cert.box()
            if box is not None:
                dual = torch.maximum(dual, box)
            best, gap, objective = record_check(primal, dual, best, unit, it, history, checks)
            if gap <= tol:
                break
            next_check = it + _interval(checks, tol, check_every)
    return u, gap, objective, it, history


def _admm(y, aty, ws, cert, spec, kernels, theta_flat, unit, *, tol, max_iter,
          beta_data=None, beta_tv=None, alpha=ADMM_RELAXATION, inner=ADMM_INNER):
    """ADMM (FTVd) for ``theta |z|_1 + TV(w)``, ``z = A x - y``, ``w = x``, ``A`` diagonal in
    the transform of ``spec``.

    Per iteration: ``x = (b1 A^T A + b2 I)^-1 (b1 A^T (y + z - d1) + b2 (w - d2))`` in the
    transform; ``h = alpha (A x - y) + (1 - alpha) z``, ``z = shrink(h + d1, theta / b1)``,
    ``d1 += h - z``; ``w = prox_{TV / b2}(alpha x + (1 - alpha) w + d2)`` by ``inner``
    warm-started ROF dual steps and ``d2`` updated (``_admm_numba.iterate``). At the
    optimum ``q = b1 d1`` and the inner ROF's field ``p`` satisfy ``A^T q = div p`` with
    ``|q| <= theta``, ``|p| <= 1``: the certificate's candidates.
    """
    rof, split, fused = kernels
    h, w = ws.h, ws.w
    flat = (-1, h, w)
    yn = y.contiguous().reshape(flat).numpy()
    dt = yn.dtype
    dtype = dt.type
    work = spec.astype(dt)
    th = theta_flat.reshape(-1).numpy().astype(dt)[:, None, None]
    spread = float(y.double().std()) if y.numel() > 1 else 1.0
    spread = spread or 1.0
    th_mean = float(theta_flat.mean())
    b1 = (BETA_DATA if beta_data is None else beta_data) * th_mean / spread
    b2 = (BETA_TV if beta_tv is None else beta_tv) / spread
    power = spec.power
    den = b1 * power + b2
    cplx = np.complex64 if dt == np.float32 else np.complex128
    if work.kind == "fft":
        coef_b = (b1 * np.conj(spec.transfer) / den).astype(cplx)
    else:
        coef_b = (b1 * spec.transfer / den).astype(dt)
    coef_r = (b2 / den).astype(dt)
    transfer = work.transfer
    thr = (th / b1).astype(dt)
    x = aty.contiguous().reshape(flat).numpy().copy()
    wv = x.copy()
    d2 = np.zeros_like(x)
    rhs = wv.copy()
    z = np.zeros_like(x)
    d1 = np.zeros_like(x)
    a = np.empty_like(x)
    p = ws.p.view(-1, 2, h + 1, w + 1).numpy()
    steps = np.full(inner, ADMM_INNER_STEP, dt)
    moved = np.zeros(x.shape[0])
    al, r2, inv_r2 = dtype(alpha), dtype(b2), dtype(1.0 / b2)
    history: list[float] = []
    best = None
    checks: list[tuple[int, float]] = []
    gap, objective, it, next_check = math.inf, math.nan, 0, 10
    while it < max_iter:
        it += 1
        bimg = yn + z - d1
        x_hat = coef_b * work.forward(bimg) + coef_r * work.forward(rhs)
        x = np.ascontiguousarray(work.inverse(x_hat).astype(dt, copy=False))
        ax = work.inverse(transfer * x_hat).astype(dt, copy=False)
        hres = alpha * (ax - yn) + (1.0 - alpha) * z
        t = hres + d1
        z = t - np.clip(t, -thr, thr)
        d1 = t - z
        fused.iterate(x, wv, d2, p, a, rhs, steps, al, r2, inv_r2, ws.isotropic, moved)
        if it == next_check or it == max_iter:
            xt = torch.from_numpy(x).reshape(ws.shape)
            primal = cert.primal(xt)
            q = torch.from_numpy(d1 * b1).reshape(y.shape)
            dual = cert.dual(q)
            best, gap, objective = record_check(primal, dual, best, unit, it, history, checks)
            if gap <= tol:
                break
            next_check = it + _interval(checks, tol, 10)
    return torch.from_numpy(x).reshape(ws.shape), gap, objective, it, history
