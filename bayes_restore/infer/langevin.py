"""Proximal Langevin kernels: the MYULA, Leimkuhler-Matthews and SK-ROCK steps and their sizes.

The one implementation of the unadjusted Langevin steps of the package:
:func:`~bayes_restore.infer.mcmc` runs them on the linear-Gaussian restoration model (the
potential :class:`SmoothedPotential`), and the scale estimators of
:mod:`bayes_restore.hyper` run :func:`myula_step` inside their chains
(:func:`~bayes_restore.infer.scale.tv_scale_chain`). The derivations (Moreau-Yosida
smoothing, the SK-ROCK recursion and its stable range) are on the Derivations page of the
documentation; the measured accuracy of the steps on the Uncertainty page.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from bayes_restore.differences import dct2, div, grad, idct2
from bayes_restore.operators.structures import BlockMean, DCTDiagonal, PixelDiagonal

from .problem import RestorationProblem
from .prox import tv_prox_dual

__all__ = [
    "SmoothedPotential",
    "myula_step",
    "lm_step",
    "skrock_step",
    "skrock_coefficients",
    "stages_for",
    "skrock_schedule",
    "diagonal_metric",
    "LangevinMetric",
    "euler_step_size",
    "scalar_or_list",
    "MAX_STAGES",
    "SKROCK_MAX_STEP",
]

#: SK-ROCK damping parameter (Pereyra, Vargas Mieles & Zygalakis 2020 use 0.05): the
#: smaller damping narrows the std bias at the same cost (32 x 32 against NUTS, 2 x 10000
#: draws: std ratio 0.957 -> 0.974 blur, 0.966 -> 0.987 x2 decimation, 0.956 -> 0.985 50 %
#: mask, with the blur's metric peak below; denoising 0.981 -> 0.989), every pixel's mean
#: still within 0.01; the stable range grows 3 %
_ETA = 0.01
#: default SK-ROCK step in units of ``1 / max(L_f, 1 / b^2)`` (the weakest curvature of a denoising
#: posterior where ``b <= sigma``; see :func:`skrock_schedule`)
_SKROCK_STEP = 0.25
#: largest SK-ROCK step (its units: :func:`skrock_schedule`): the TV std is already 11 %
#: low at 1 (16 x 16 TV denoising, against Leimkuhler-Matthews: -2 % at 0.25, -4 % at 0.5,
#: -11 % at 1, -16 % at 2), and the cost per step grows like the stages,
#: ``~ 7 sqrt(step_size)`` at the default smoothing (a step of 1e6 needed 7229 stages and gave
#: a std 2-3 times too large)
SKROCK_MAX_STEP = 1.0
#: the pixel metric where a pixel-diagonal operator observes nothing (1 where it observes
#: fully): the prior alone holds those pixels, and TV's hold is nearly flat between the
#: neighbours' values, crossed by diffusion at a rate ``M delta`` (50 % mask, 128 x 128:
#: the worst pixel's bulk ESS 32-174 over four seeds with 2, 203-250 with 4, for 8 stages
#: instead of 6)
_UNSEEN_PIXEL = 4.0
#: most SK-ROCK stages per step: a stable step of ``ell_100 = 19667 / L``, enough for the
#: default step down to ``smoothing ~ 1.3e-5``; each stage costs one gradient (and TV prox)
MAX_STAGES = 100
#: the DCT metric where a blur observes nothing (1 where it observes fully): the frequencies
#: the blur removes, held by the prior alone, are its chain's slowest directions (128 x 128,
#: worst-pixel bulk ESS of 2 x 1000 draws, seeds 0 and 3: 91-124 at 1, 230-252 at 2, 319-364
#: at 3); 3.25 is the largest (at ``sigma = b``, eta 0.01) that keeps the default step on 7
#: stages (2.25 kept 6): with the whole step in one kernel call a seventh stage costs less
#: than the ESS gained (128 x 128, worst bulk ESS of 2 x 2000 draws 785-863 at 3.19 against
#: 564-644 at 2.25); the std pays about 2 % per unit at eta 0.05 (32 x 32 against NUTS:
#: 0.963 on average at 2, 0.942 at 3), which eta 0.01 more than gives back (0.974 at 3.25)
_DCT_PEAK = 3.25
#: box decimation's metric off the block means, ``M = c (I - P) + f^2 P``: once the block
#: means move as a denoised pixel does, the within-block detail (held by the prior alone) is
#: the slowest (128 x 128, worst bulk ESS 203-237 at c = 1, 353-375 at 2, 527-548 at 4, all on
#: 5 stages while ``c <= f^2``); the std pays 1.3 % at 2 and 4.9 % at 4 against 1 (32 x 32,
#: 2 x 10000 draws each)
_BLOCK_BASE = 2.0


# --- the potential ---------------------------------------------------------------------------


@dataclass
class SmoothedPotential:
    """Gradient of ``U = |y - A x|^2 / (2 sigma^2) + g_lambda(x)`` for batched chains.

    ``g_lambda`` is the Moreau-Yosida envelope of parameter ``lambda_my`` of ``TV / b``
    (order 1), or the Gaussian-gradient energy ``|grad x|^2 / (2 b^2)`` itself
    (order 2, ``lambda_my=None``). ``evaluations`` counts the gradients.

    ``backend`` runs the TV gradient: ``"numba"``, fused CPU kernels (the warm-started prox
    iterations, the data term and, in :func:`skrock_step`, the stage's combination in one
    pass over memory; the data term of an operator other than the identity or a
    pixel-diagonal one (a mask: ``weights = d^2``) comes from torch; float32/float64 CPU
    tensors of images at least 2 x 2, chains split
    over ``threads`` threads, ``torch.get_num_threads()`` when ``None``), ``"torch"``, eager
    tensor operations (any device), ``"auto"``: numba where it runs, else torch. Both do the
    same arithmetic (equal to rounding); a rerun of either is bit-identical.

    ``metric``: a Langevin preconditioner ``M`` (a :class:`LangevinMetric`, or its ``apply``
    as :func:`diagonal_metric` returns it; any other callable ``v -> M v`` is applied to
    the gradient): :meth:`grad` is then ``M grad U``, and :func:`skrock_step` runs the
    stages of the preconditioned diffusion -- a per-pixel ``M`` inside the fused pass, a
    per-DCT-frequency one of an operator diagonal in that basis in the DCT domain (the
    chain's coefficients kept between stages: one transform each way per stage instead of
    four; on the CPU the whole step in one kernel call with a numba DCT), box decimation's
    block-mean one in one kernel call per step.
    """

    problem: RestorationProblem
    lambda_my: torch.Tensor | None  # per image, None for the smooth (beta = 2) prior
    prox_iter: int
    dual: torch.Tensor | None = None
    evaluations: int = 0
    backend: str = "auto"
    threads: int | None = None
    metric: Any = None

    def __post_init__(self) -> None:
        if self.backend not in ("auto", "numba", "torch"):
            raise ValueError(f"backend must be 'auto', 'numba' or 'torch', got {self.backend!r}")
        # a LangevinMetric (or its bound ``apply``, as diagonal_metric returns it) is run in
        # the stages; any other callable v -> M v multiplies the gradient
        m, owner = self.metric, getattr(self.metric, "__self__", None)
        if m is not None and not callable(m):
            raise TypeError(f"metric must be a LangevinMetric or a callable, got {type(m)!r}")
        self._metric = (m if isinstance(m, LangevinMetric)
                        else owner if isinstance(owner, LangevinMetric) else None)
        self._metric_fn = (None if m is None
                           else self._metric.apply if self._metric is not None else m)
        self._spectral: tuple = ()  # (key, m, w1, c, their arrays) of the DCT-metric recursion
        self._spectral_state: tuple | None = None  # (x, its version, dct2(x)) of the last step
        self._spectral_y_state: tuple | None = None  # the same in the fast DCT's layout
        pr = self.problem
        self.y = pr.y.detach()
        self.inv_var = 1.0 / pr.sigma.square()
        self.scale = pr.scale
        self.identity = pr.operator.is_identity
        self.aty = self.y if self.identity else pr.operator.adjoint(self.y)
        # a pixel-diagonal A = diag(d) (a mask, pointwise gains): its data term
        # (d^2 v - A^T y) / sigma^2 is made inside the fused pass, from the weights d^2
        self.weights = None
        structure = (None if self.identity or not hasattr(pr.operator, "structure")
                     else pr.operator.structure())
        if isinstance(structure, PixelDiagonal):
            d2 = structure.diagonal(self.aty).square()
            try:
                self.weights = torch.broadcast_to(d2, self.aty.shape)
            except RuntimeError:  # d does not broadcast to the observation: eager data term
                self.weights = None
        if self.lambda_my is not None:
            self.prox_weight = self.lambda_my / self.scale  # the ROF weight of the prox
        self._fused_key: tuple | None = None  # what the per-image constants were made for
        self._fused_consts: tuple = ()
        self._own_dual: torch.Tensor | None = None  # the dual the kernels may update in place

    def set_theta(self, theta: torch.Tensor) -> None:
        """Move the TV prior to ``b = 1 / theta`` (``theta``: one per chain and image).

        The smoothed potential is ``|y - A x|^2 / (2 sigma^2) + M(x)`` with ``M`` the
        Moreau-Yosida envelope of ``g = theta TV`` of parameter ``lambda_MY``; its gradient
        ``(x - prox_{lambda_MY g}(x)) / lambda_MY`` is ``1 / lambda_MY``-Lipschitz *whatever
        theta*, so ``lambda_MY``, ``L`` and the step ``delta`` stay fixed and only the prox
        weight ``lambda_MY theta`` and the factor ``theta`` of ``-div(p)`` change. The warm
        dual ``p`` stays feasible (``|p| <= 1``) and is kept.
        """
        self.scale = (1.0 / theta).reshape(theta.shape + (1,) * self.problem.event_dim)
        self.prox_weight = self.lambda_my / self.scale

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        """``grad U(x)`` (``M grad U(x)`` with a ``metric``), one chain (and image) per
        leading index of ``x``."""
        self.evaluations += 1
        kernels = self._kernels(x)
        if kernels is not None and (self._metric_fn is None or self._fused_metric(x) is not None):
            return self._fused_stage(kernels, x, x, 0.0, x, 0.0, 0.0, -1.0, None,
                                     metric=self._metric_fn is not None)
        g = self._plain_grad(x, kernels)
        return g if self._metric_fn is None else self._metric_fn(g)

    def _plain_grad(self, x: torch.Tensor, kernels) -> torch.Tensor:
        """``grad U(x)`` without the metric (not counted)."""
        if kernels is not None:
            return self._fused_stage(kernels, x, x, 0.0, x, 0.0, 0.0, -1.0, None)
        pr = self.problem
        if self.identity:
            g = (x - self.y) * self.inv_var
        else:
            g = (pr.operator.normal(x) - self.aty) * self.inv_var
        return g + self._prior_grad(x, None)

    def _prior_grad(self, x: torch.Tensor, kernels) -> torch.Tensor:
        """The prior's term of the gradient alone (fused when ``kernels``)."""
        if self.lambda_my is None:  # beta = 2: |grad x|^2 / (2 b^2)
            return -div(grad(x)) / self.scale.square()
        if kernels is not None:
            return self._fused_stage(kernels, x, x, 0.0, x, 0.0, 0.0, -1.0, None,
                                     prior_only=True)
        # beta = 1: grad of the Moreau-Yosida envelope (x - prox(x)) / lambda = -div(p) / b
        self.dual = tv_prox_dual(x, self.prox_weight, isotropic=self.problem.isotropic,
                                 dual=self.dual, num_iter=self.prox_iter, backend=self.backend)
        return -div(self.dual) / self.scale

    def skrock(self, x: torch.Tensor, delta: torch.Tensor, q: torch.Tensor,
               coef: dict[str, Any], stages: int, *,
               noise: tuple | None = None, white: bool = False) -> torch.Tensor | None:
        """:func:`skrock_step` on this potential with every stage fused, or in the DCT
        domain for a DCT metric of exact eigenvalues (``None``: neither runs these tensors;
        the caller takes the eager recursion).

        ``white``: ``q`` is ``sqrt(2 delta) z`` (``z`` standard normal) and the step's noise
        is ``B q`` with ``B B^T = M`` (the metric's :meth:`LangevinMetric.noise`), made here:
        the DCT metric's path takes ``q`` as DCT coefficients (``C B q = m^1/2 q``: no
        transform). Only that path takes it (``None`` elsewhere, ``q`` untouched).

        ``noise``: ``(key, counter, scale)`` of
        :func:`~bayes_restore.infer._langevin_numba.gaussian_noise` (``scale``: one per
        image): ``q`` (C-contiguous) is not yet drawn, and the fused step fills it with that
        draw itself, each image's before its stages (the same values). Only the whole-step
        kernel takes it: ``None`` is returned, with ``q`` untouched, where it does not run.
        """
        if noise is not None:
            return self._whole_step(x, delta, q, coef, stages, noise)
        met = self._metric
        if self._metric_fn is not None and met is None:
            return None
        if met is not None and met.kind == "dct":
            if (met.a2 is None or q.shape != x.shape or q.dtype != x.dtype
                    or (white and self._kernels(x) is None)):
                return None
            return self._spectral_skrock(x, delta, q, coef, stages, white)
        if white:
            return None
        kernels = self._kernels(x)
        if kernels is None or q.shape != x.shape or q.dtype != x.dtype:
            return None
        if met is not None and met.kind == "range" and met.factor is not None:
            return self._block_skrock(kernels, x, delta, q, coef, stages)
        if met is not None and self._fused_metric(x) is None:  # not per pixel
            return None
        whole = self._whole_step(x, delta, q, coef, stages, None)
        if whole is not None:
            return whole
        metric = met is not None
        mu, nu, kappa = coef["mu"], coef["nu"], coef["kappa"]
        q = q.contiguous()
        step = self._per_image(x, delta, "delta")  # mu_j delta, as the eager recursion rounds it
        self.evaluations += 1
        x_prev = x
        x_cur = self._fused_stage(kernels, x, q, nu[1], q, 1.0, kappa[1], step * mu[1], None,
                                  metric=metric)
        for j in range(2, stages + 1):
            self.evaluations += 1
            # x_prev is read only by this stage's output: overwrite it, unless it is the input
            out = None if x_prev is x else x_prev
            x_next = self._fused_stage(kernels, x_cur, x_cur, 0.0, x_prev, nu[j], kappa[j],
                                       step * mu[j], out, metric=metric)
            x_prev, x_cur = x_cur, x_next
        return x_cur

    def _whole_step(self, x, delta, q, coef, stages, noise):
        """The step in one kernel call
        (:func:`~bayes_restore.infer._langevin_numba.run_skrock`: each chain's noise, when
        ``noise``, and its stages on one thread, no wait between stages), or ``None`` where
        it does not run (a metric not per pixel, a data term from torch, other tensors):
        the same arithmetic as the stage-by-stage passes."""
        met = self._metric
        if (self._metric_fn is not None and (met is None or met.kind != "pixel")) or stages < 1:
            return None
        kernels = self._kernels(x)
        if (kernels is None or q.shape != x.shape or q.dtype != x.dtype
                or (noise is not None and not q.is_contiguous())):
            return None
        metric = met is not None
        if metric and self._fused_metric(x) is None:
            return None
        wt, st, inv_var, inv_scale, mom, y_np, wd_np, pm_np = self._constants(kernels, x)
        if y_np is None:  # the data term is torch's (an operator that is not pixel-diagonal)
            return None
        h, w = x.shape[-2:]
        n = x.numel() // (h * w)
        if noise is not None and len(noise[2]) != n:
            # the noise's images are not the kernel's (a colour image: one scale and one
            # stream of words per (C, H, W) image, the kernel's images are its channels)
            return None
        if self.dual is None or self.dual is not self._own_dual:  # ours, updated in place
            self.dual = (x.new_zeros(x.shape[:-2] + (2, h, w)) if self.dual is None
                         else self.dual.detach().to(x.dtype).contiguous().clone())
            self._own_dual = self.dual
        mu, nu, kappa = coef["mu"], coef["nu"], coef["kappa"]
        dtype = mom.dtype
        step = self._per_image(x, delta, "delta")
        # the stages' eps as the stage-by-stage path rounds them: (delta in x's dtype) * mu_j
        eps = np.stack([step * mu[j] if j else np.zeros_like(step) for j in range(stages + 1)])
        x_c = x.contiguous()
        q_c = q if noise is not None else q.contiguous()
        out_a, out_b = torch.empty_like(x_c), torch.empty_like(x_c)
        kernels.run_skrock(x_c.view(n, h, w).numpy(), q_c.view(n, h, w).numpy(),
                           out_a.view(n, h, w).numpy(), out_b.view(n, h, w).numpy(), y_np,
                           self.dual.view(n, 2, h, w).numpy(),
                           np.array(nu[: stages + 1], dtype), np.array(kappa[: stages + 1], dtype),
                           eps, wt, st, inv_var, inv_scale, mom, self.problem.isotropic,
                           self.threads or torch.get_num_threads(), wd=wd_np,
                           pm=pm_np if metric else None, noise=noise)
        self.evaluations += stages
        return out_a if stages % 2 else out_b

    def _block_skrock(self, kernels, x, delta, q, coef, stages):
        """SK-ROCK for box decimation with the metric ``M = base (I + (scale - 1) P)``, the
        whole step in one kernel call
        (:func:`~bayes_restore.infer._langevin_numba.run_block_skrock`: per stage the
        prior's term, then the data term, the block means and the combination in one pass;
        each chain's stages on one thread)."""
        mu, nu, kappa = coef["mu"], coef["nu"], coef["kappa"]
        h, w = x.shape[-2:]
        n = x.numel() // (h * w)
        met = self._metric
        wt, st, inv_var, inv_scale, mom, _, _, _ = self._constants(kernels, x)
        if self.dual is None or self.dual is not self._own_dual:  # ours, updated in place
            self.dual = (x.new_zeros(x.shape[:-2] + (2, h, w)) if self.dual is None
                         else self.dual.detach().to(x.dtype).contiguous().clone())
            self._own_dual = self.dual
        aty = self.aty.to(x.dtype).contiguous().view(-1, h, w).numpy()
        dtype = mom.dtype
        one = dtype.type
        scale = one(float(met.m) / met.base)  # M = base (I + (scale - 1) P)
        step = self._per_image(x, delta, "delta") * one(met.base)
        eps = np.stack([step * mu[j] if j else np.zeros_like(step) for j in range(stages + 1)])
        x_c, q_c = x.contiguous(), q.contiguous()
        out_a, out_b, gp = (torch.empty_like(x_c) for _ in range(3))
        kernels.run_block_skrock(
            x_c.view(n, h, w).numpy(), q_c.view(n, h, w).numpy(), out_a.view(n, h, w).numpy(),
            out_b.view(n, h, w).numpy(), gp.view(n, h, w).numpy(), aty,
            self.dual.view(n, 2, h, w).numpy(), np.array(nu[: stages + 1], dtype),
            np.array(kappa[: stages + 1], dtype), eps, wt, st, inv_var, inv_scale, mom,
            self.problem.isotropic, met.factor, scale, self.threads or torch.get_num_threads())
        self.evaluations += stages
        return out_a if stages % 2 else out_b

    def _spectral_skrock(self, x, delta, q, coef, stages, white=False):
        """SK-ROCK with the metric ``M = C^T diag(m) C`` of an operator with ``A^T A = C^T
        diag(a^2) C`` (``C`` the orthonormal 2-D DCT): the recursion is linear, so it runs
        on the chain's DCT coefficients,

        ``x^_j = nu_j x^_{j-1} + kappa_j x^_{j-2} - mu_j delta m (a^2 x^_{j-1} / sigma^2 -
        C A^T y / sigma^2 + C grad g(x_{j-1}))``,

        and each stage needs the prior's gradient in pixels (one DCT) and its own point in
        pixels (one inverse); the data term and the metric are a product in the DCT domain.
        The coefficients of the step's output are kept for the next step (while the chain
        is not modified in place)."""
        mu, nu, kappa = coef["mu"], coef["nu"], coef["kappa"]
        m, w1, c = self._spectral_constants(x)
        kernels = self._kernels(x)
        state = self._spectral_state
        cached = state is not None and state[0] is x and state[1] == x._version
        if kernels is not None:
            return self._spectral_skrock_cpu(kernels, x, delta, q, coef, stages,
                                             state[2] if cached else None, white)
        xh = state[2] if cached else dct2(x)
        qh = dct2(q)
        step = torch.as_tensor(delta, dtype=x.dtype, device=x.device)

        def stage(g, a, q_, b, alpha, beta, gamma, eps):
            v = a if alpha == 0.0 else a + alpha * q_
            drift = g.mul_(m).addcmul_(w1, v).sub_(c)
            return beta * a + gamma * b - eps * drift

        self.evaluations += 1
        v = x if nu[1] == 0.0 else x + nu[1] * q
        cur_h = stage(dct2(self._prior_grad(v, None)), xh, qh, qh, nu[1], 1.0, kappa[1],
                      step * mu[1])
        cur = idct2(cur_h)
        prev_h = xh
        for j in range(2, stages + 1):
            self.evaluations += 1
            nxt_h = stage(dct2(self._prior_grad(cur, None)), cur_h, cur_h, prev_h, 0.0,
                          nu[j], kappa[j], step * mu[j])
            prev_h, cur_h = cur_h, nxt_h
            cur = idct2(cur_h)
        self._spectral_state = (cur, cur._version, cur_h)
        return cur

    def _spectral_skrock_cpu(self, kernels, x, delta, q, coef, stages, xh, white=False):
        """:meth:`_spectral_skrock` on CPU arrays: the prior's term by the fused kernels,
        scipy's DCTs and one pass per stage for the combination (``xh``: the cached
        coefficients of ``x``, or ``None``). ``white``: ``q`` is white noise, its DCT
        coefficients ``m^1/2 q`` (:meth:`skrock`), and stage 1's point ``x + nu_1 B q`` is
        the inverse transform of ``x^ + nu_1 m^1/2 q``: one transform instead of the two
        each way of ``B q`` made in pixels."""
        import scipy.fft as sfft

        fast = self._spectral_layout(kernels, x)
        if fast is not None:
            return self._spectral_whole(kernels, x, delta, q, coef, stages, white, fast)
        mu, nu, kappa = coef["mu"], coef["nu"], coef["kappa"]
        h, w = x.shape[-2:]
        n = x.numel() // (h * w)
        threads = self.threads or torch.get_num_threads()
        consts = self._spectral[4]
        wt, st, _, inv_scale, mom, _, _, _ = self._constants(kernels, x)
        if self.dual is None or self.dual is not self._own_dual:  # ours, updated in place
            self.dual = (x.new_zeros(x.shape[:-2] + (2, h, w)) if self.dual is None
                         else self.dual.detach().to(x.dtype).contiguous().clone())
            self._own_dual = self.dual
        dual = self.dual.view(n, 2, h, w).numpy()
        one = mom.dtype.type
        zero = one(0.0)
        no_data = np.zeros(n, mom.dtype)
        minus = np.full(n, -1.0, mom.dtype)
        iso = self.problem.isotropic
        step = self._per_image(x, delta, "delta")

        def prior(a):  # grad g(a) = -div(p) / b, the dual warm-started in place
            out = np.empty_like(a)
            kernels.run_stage(a, a, a, a, a, dual, out, zero, zero, zero, minus, wt, st,
                              no_data, inv_scale, mom, iso, True, threads)
            return out

        def dct(a, overwrite=False):
            return sfft.dctn(a, type=2, norm="ortho", axes=(-2, -1), overwrite_x=overwrite,
                             workers=threads)

        x_np = x.contiguous().view(n, h, w).numpy()
        q_np = q.contiguous().view(n, h, w).numpy()
        if xh is None:
            xh = dct(x_np)
        self.evaluations += 1
        if white:
            root = consts[3]  # m^1/2, (M, H, W): image n reads [n % M]
            reps = n // root.shape[0]
            qh = q_np * (root if reps == 1 else np.tile(root, (reps, 1, 1)))
            v = sfft.idctn(xh + one(nu[1]) * qh, type=2, norm="ortho", axes=(-2, -1),
                           overwrite_x=True, workers=threads)
        else:
            qh = dct(q_np)
            v = x_np if nu[1] == 0.0 else x_np + one(nu[1]) * q_np
        cur_h = dct(prior(v), True)
        kernels.spectral_stage(xh, qh, qh, cur_h, *consts[:3], cur_h, one(nu[1]), one(1.0),
                               one(kappa[1]), step * mu[1], threads)
        cur = sfft.idctn(cur_h, type=2, norm="ortho", axes=(-2, -1), workers=threads)
        prev_h = xh
        for j in range(2, stages + 1):
            self.evaluations += 1
            nxt_h = dct(prior(cur), True)
            kernels.spectral_stage(cur_h, cur_h, prev_h, nxt_h, *consts[:3], nxt_h, zero,
                                   one(nu[j]), one(kappa[j]), step * mu[j], threads)
            prev_h, cur_h = cur_h, nxt_h
            cur = sfft.idctn(cur_h, type=2, norm="ortho", axes=(-2, -1), workers=threads)
        out = torch.from_numpy(cur).view(x.shape)
        self._spectral_state = (out, out._version, cur_h)
        return out

    def _spectral_layout(self, kernels, x):
        """The fast DCT's tables and the DCT metric's constants in its layout
        (:func:`~bayes_restore.infer._langevin_numba.spectral_skrock_images`), or ``None``
        where it is slower than scipy's (an odd factor of a side above 16: its blocks are
        dense)."""
        h, w = x.shape[-2:]
        key = self._spectral[0]
        if getattr(self, "_layout_key", None) != key:
            self._layout_key, self._layout = key, None
            odd = [n // (n & -n) for n in (h, w)]
            if max(odd) <= 16:
                dtype = np.dtype(str(x.dtype)[6:])
                th, tw = kernels.dct_tables(h, dtype), kernels.dct_tables(w, dtype)
                dd = th[4][:, None] * tw[4][None, :]
                m, w1, c, root = (a.astype(np.float64) for a in self._spectral[4])
                # orthonormal coefficient X at (kh, kw) = d_h d_w times the unscaled one
                consts = [kernels.y_layout(a, th, tw).astype(dtype)
                          for a in (m, w1, c / dd, np.broadcast_to(dd * dd, m.shape),
                                    root / dd)]
                self._layout = (th, tw, consts)
        return self._layout

    def _spectral_whole(self, kernels, x, delta, q, coef, stages, white, fast):
        """:meth:`_spectral_skrock_cpu` in one kernel call per step
        (:func:`~bayes_restore.infer._langevin_numba.run_spectral_skrock`: the fast DCT, the
        prior's term and the recursion of each chain on one thread)."""
        th, tw, consts = fast
        mu, nu, kappa = coef["mu"], coef["nu"], coef["kappa"]
        h, w = x.shape[-2:]
        n = x.numel() // (h * w)
        wt, st, _, inv_scale, mom, _, _, _ = self._constants(kernels, x)
        if self.dual is None or self.dual is not self._own_dual:  # ours, updated in place
            self.dual = (x.new_zeros(x.shape[:-2] + (2, h, w)) if self.dual is None
                         else self.dual.detach().to(x.dtype).contiguous().clone())
            self._own_dual = self.dual
        dtype = mom.dtype
        step = self._per_image(x, delta, "delta")
        eps = np.stack([step * mu[j] if j else np.zeros_like(step) for j in range(stages + 1)])
        state = self._spectral_y_state
        cached = state is not None and state[0] is x and state[1] == x._version
        xy = state[2] if cached else np.empty((n, w, h), dtype)
        x_np = x.contiguous().view(n, h, w).numpy()
        q_np = q.contiguous().view(n, h, w).numpy()
        out = torch.empty((n, h, w), dtype=x.dtype)
        out_y = np.empty((n, w, h), dtype)
        kernels.run_spectral_skrock(
            x_np, xy, q_np, out.numpy(), out_y, self.dual.view(n, 2, h, w).numpy(), consts,
            np.array(nu[: stages + 1], dtype), np.array(kappa[: stages + 1], dtype), eps, wt,
            st, inv_scale, mom, self.problem.isotropic, white, cached, th, tw,
            self.threads or torch.get_num_threads())
        self.evaluations += stages
        out = out.view(x.shape)
        self._spectral_y_state = (out, out._version, out_y)
        return out

    def _spectral_constants(self, x):
        """``m``, ``m a^2 / sigma^2`` and ``m C A^T y / sigma^2`` in ``x``'s dtype."""
        key = (x.dtype, x.device, tuple(x.shape[-2:]), id(self._metric))
        if not self._spectral or self._spectral[0] != key:
            met = self._metric
            m = met.m.to(dtype=x.dtype, device=x.device)
            inv_var = self.inv_var.to(x.dtype)
            w1 = m * met.a2.to(dtype=x.dtype, device=x.device) * inv_var
            c = m * dct2(self.aty.to(x.dtype)) * inv_var
            h, w = x.shape[-2:]
            root = met.root.to(dtype=x.dtype, device=x.device)
            arrays = [t.broadcast_to(self.aty.shape[:-2] + t.shape[-2:]).contiguous()
                      .view(-1, h, w).numpy() for t in (m, w1, c, root)]  # for the kernels
            self._spectral = (key, m, w1, c, arrays)
        return self._spectral[1:4]

    def _fused_metric(self, x: torch.Tensor):
        """The per-pixel metric as the kernels read it, ``(M, H, W)``, or None."""
        met = self._metric
        if met is None or met.kind != "pixel":
            return None
        try:
            pm = torch.broadcast_to(met.m.to(dtype=x.dtype, device=x.device),
                                    self.aty.shape)
        except RuntimeError:
            return None
        h, w = x.shape[-2:]
        return pm.contiguous().view(-1, h, w)

    # --- the fused path ------------------------------------------------------------------

    def _kernels(self, x: torch.Tensor):
        """The fused kernel module if it runs the TV gradient at ``x``, else None."""
        if self.backend == "torch" or self.lambda_my is None:
            return None
        y = self.y if self.identity else self.aty
        runs = (x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)
                and x.dim() >= 2 and x.shape[-1] >= 2 and x.shape[-2] >= 2
                and x.dim() >= y.dim() and x.shape[x.dim() - y.dim():] == y.shape
                and y.dtype == x.dtype and not x.requires_grad
                and (self.dual is None or self.dual.shape == x.shape[:-2] + (2,) + x.shape[-2:]))
        if runs:
            try:
                from . import _langevin_numba as kernels
            except Exception as err:  # numba missing or broken
                if self.backend == "numba":
                    raise ImportError(f"backend='numba' needs numba ({err})") from err
                return None
            if self.backend == "numba" or not kernels.jit_disabled():
                return kernels
            return None
        if self.backend == "numba":
            raise ValueError(
                "backend='numba' runs float32/float64 CPU tensors of images at least 2 x 2 "
                "with the observation's shape and dtype (and a dual of the chains' shape); got "
                f"device={x.device.type!r}, dtype={x.dtype}, shape={tuple(x.shape)} "
                f"(y: {tuple(self.y.shape)})"
            )
        return None

    def runs_fused(self, x: torch.Tensor) -> bool:
        """Whether the fused kernels run the gradient at ``x`` (else eager torch)."""
        return self._kernels(x) is not None

    @staticmethod
    def _per_image(x: torch.Tensor, value, name: str) -> np.ndarray:
        """``value`` (a number or a per-image tensor) as one entry per image of ``x``."""
        t = torch.as_tensor(value).detach().to(x.dtype)
        try:
            t = torch.broadcast_to(t, x.shape[:-2] + (1, 1))
        except RuntimeError as err:
            raise ValueError(f"{name} of shape {tuple(t.shape)} is not one number per image "
                             f"of x {tuple(x.shape)}") from err
        return t.reshape(-1).contiguous().numpy()

    def _constants(self, kernels, a: torch.Tensor) -> tuple:
        """The per-image constants of the kernels, remade when the shape, the dtype, the prior
        (:meth:`set_theta`) or ``prox_iter`` change."""
        key = (tuple(a.shape), a.dtype, id(self.prox_weight), id(self.scale), self.prox_iter)
        if key != self._fused_key:
            h, w = a.shape[-2:]
            self._fused_consts = (
                self._per_image(a, self.prox_weight, "prox_weight"),
                self._per_image(a, 1.0 / (8.0 * self.prox_weight), "prox_weight"),
                self._per_image(a, self.inv_var, "sigma"),
                self._per_image(a, 1.0 / self.scale, "scale"),
                np.array(kernels.momenta(self.prox_iter), dtype=np.dtype(str(a.dtype)[6:])),
                (self.y.contiguous().view(-1, h, w).numpy() if self.identity
                 else self.aty.to(a.dtype).contiguous().view(-1, h, w).numpy()
                 if self.weights is not None else None),
                (None if self.weights is None
                 else self.weights.to(a.dtype).contiguous().view(-1, h, w).numpy()),
                None if (pm := self._fused_metric(a)) is None else pm.numpy(),
            )
            self._fused_key = key
            self._fused_alive = (self.prox_weight, self.scale)  # the ids stay theirs
        return self._fused_consts

    def _fused_stage(self, kernels, a, q, alpha, b, beta, gamma, eps, out, *, metric=False,
                     prior_only=False):
        """``beta a + gamma b - eps grad U(a + alpha q)`` in one fused pass (``eps``: a number
        or one per image); ``out`` (``None``: a new tensor) may be ``b``, not ``a`` or ``q``.
        ``metric``: ``M grad U`` with the per-pixel metric; ``prior_only``: the prior's term
        of the gradient alone (no data term)."""
        h, w = a.shape[-2:]
        n = a.numel() // (h * w)
        wt, st, inv_var, inv_scale, mom, y_np, wd_np, pm_np = self._constants(kernels, a)
        if self.dual is None or self.dual is not self._own_dual:  # ours, updated in place
            self.dual = (a.new_zeros(a.shape[:-2] + (2, h, w)) if self.dual is None
                         else self.dual.detach().to(a.dtype).contiguous().clone())
            self._own_dual = self.dual
        a_c, q_c, b_c = a.contiguous(), q.contiguous(), b.contiguous()
        if out is None:
            out = torch.empty_like(a_c)
        a_np = a_c.view(n, h, w).numpy()
        g_np = a_np  # the identity's (or diag(d)'s) data term is made in the pass: g is not read
        fused_data = self.identity or wd_np is not None
        if prior_only:  # a data term (v - v) * 0
            fused_data, y_np, wd_np, inv_var = True, a_np, None, inv_var * 0
        elif not fused_data:
            v = a_c if alpha == 0.0 else a_c + alpha * q_c
            g = (self.problem.operator.normal(v) - self.aty) * self.inv_var
            g_np = g.to(a.dtype).contiguous().view(n, h, w).numpy()
            y_np = g_np  # not read
        one = mom.dtype.type
        eps_np = eps if isinstance(eps, np.ndarray) else np.full(n, eps, mom.dtype)
        kernels.run_stage(a_np, q_c.view(n, h, w).numpy(), b_c.view(n, h, w).numpy(), y_np,
                          g_np, self.dual.view(n, 2, h, w).numpy(), out.view(n, h, w).numpy(),
                          one(alpha), one(beta), one(gamma), eps_np, wt, st, inv_var,
                          inv_scale, mom, self.problem.isotropic, fused_data,
                          self.threads or torch.get_num_threads(), wd=wd_np,
                          pm=pm_np if metric else None)
        return out


# --- the steps -------------------------------------------------------------------------------


def myula_step(
    x: torch.Tensor,
    drift: torch.Tensor,
    delta: float | torch.Tensor,
    noise: torch.Tensor,
    noise_scale: float | torch.Tensor,
) -> torch.Tensor:
    r"""One MYULA step, the Euler step of the Langevin diffusion.

    .. math::

        x_{k+1} = x_k - \delta \nabla U_\lambda(x_k) + \sqrt{2 \delta}\, z_k

    (Durmus, Moulines & Pereyra 2018), with ``drift`` the gradient at ``x``, ``noise`` the
    standard normal ``z_k`` and ``noise_scale = sqrt(2 delta)``. A float ``delta`` (one step
    for the whole batch) updates ``x`` in place, without temporaries (each product fused
    into its sum); a tensor ``delta`` (one step per image) broadcasts, out of place.

    Examples
    --------
    >>> import torch
    >>> x = torch.zeros(3)
    >>> myula_step(x, torch.ones(3), 0.5, torch.zeros(3), 1.0)
    tensor([-0.5000, -0.5000, -0.5000])
    """
    if isinstance(delta, float):
        return x.sub_(drift, alpha=delta).add_(noise, alpha=noise_scale)
    return x - delta * drift + noise_scale * noise


def lm_step(
    x: torch.Tensor,
    drift: torch.Tensor,
    delta: torch.Tensor,
    noise: torch.Tensor,
    noise_prev: torch.Tensor,
) -> torch.Tensor:
    r"""One Leimkuhler-Matthews step: MYULA with the noise ``sqrt(delta / 2) (z_k + z_{k+1})``.

    Its stationary law is exact on Gaussian targets at any stable step (``delta L < 2``),
    where MYULA's is too wide. ``noise`` is ``z_{k+1}``, ``noise_prev`` the ``z_k`` of the
    previous step (the caller keeps it).

    Examples
    --------
    >>> import torch
    >>> lm_step(torch.zeros(2), torch.ones(2), torch.tensor(2.0), torch.ones(2), torch.ones(2))
    tensor([0., 0.])
    """
    return x - delta * drift + torch.sqrt(delta / 2) * (noise + noise_prev)


def skrock_step(
    x: torch.Tensor,
    gradient: Callable[[torch.Tensor], torch.Tensor],
    delta: torch.Tensor,
    q: torch.Tensor,
    coef: dict[str, Any],
    stages: int,
) -> torch.Tensor:
    r"""One SK-ROCK step of ``stages`` gradient evaluations; ``q = sqrt(2 delta) z``.

    .. math::

        x^{(1)} = x_k - \mu_1\delta\,\nabla U(x_k + \nu_1 q) + \kappa_1 q, \qquad
        x^{(j)} = -\mu_j\delta\,\nabla U(x^{(j-1)}) + \nu_j x^{(j-1)} + \kappa_j x^{(j-2)},

    ``x_{k+1} = x^{(s)}`` (Pereyra, Vargas Mieles & Zygalakis 2020), with the coefficients
    of :func:`skrock_coefficients`. Stable while ``delta L <= ell_s``.

    When ``gradient`` is a :class:`SmoothedPotential`'s own ``grad`` and its fused kernels
    run ``x``, each stage (gradient and combination) is one fused pass
    (:meth:`SmoothedPotential.skrock`); any other callable takes this recursion as written.

    Examples
    --------
    >>> import torch
    >>> coef = skrock_coefficients(3)
    >>> x = skrock_step(torch.ones(2), lambda v: v, torch.tensor(0.1), torch.zeros(2), coef, 3)
    >>> bool((x > 0.9).all() and (x < 1).all())  # a contraction towards 0 of the quadratic
    True
    """
    owner = getattr(gradient, "__self__", None)
    if isinstance(owner, SmoothedPotential) and gradient == owner.grad:
        fused = owner.skrock(x, delta, q, coef, stages)
        if fused is not None:
            return fused
    mu, nu, kappa = coef["mu"], coef["nu"], coef["kappa"]
    x_prev = x
    x_cur = x - (mu[1] * delta) * gradient(x + nu[1] * q) + kappa[1] * q
    for j in range(2, stages + 1):
        x_next = (nu[j] * x_cur + kappa[j] * x_prev) - (mu[j] * delta) * gradient(x_cur)
        x_prev, x_cur = x_cur, x_next
    return x_cur


def skrock_coefficients(stages: int, eta: float = _ETA) -> dict[str, Any]:
    """Coefficients of the ``s``-stage SK-ROCK step and its stable range ``ell_s``.

    ``delta * L <= ell_s = (s - 1/2)^2 (2 - 4 eta / 3) - 3/2`` keeps the step
    stable for a potential with ``L``-Lipschitz gradient.

    Examples
    --------
    >>> round(skrock_coefficients(10)["ell"], 1)
    177.8
    """
    w0 = 1.0 + eta / stages**2
    t = [1.0, w0]
    for _ in range(2, stages + 1):
        t.append(2 * w0 * t[-1] - t[-2])
    u = [1.0, 2 * w0]  # Chebyshev polynomials of the second kind: T_s' = s U_{s-1}
    for _ in range(2, stages):
        u.append(2 * w0 * u[-1] - u[-2])
    w1 = t[stages] / (stages * u[stages - 1])
    mu = [0.0, w1 / w0] + [2 * w1 * t[j - 1] / t[j] for j in range(2, stages + 1)]
    nu = [0.0, stages * w1 / 2] + [2 * w0 * t[j - 1] / t[j] for j in range(2, stages + 1)]
    kappa = [0.0, stages * w1 / w0] + [-t[j - 2] / t[j] for j in range(2, stages + 1)]
    ell = (stages - 0.5) ** 2 * (2 - 4 * eta / 3) - 1.5
    return {"mu": mu, "nu": nu, "kappa": kappa, "ell": ell}


def stages_for(ratio: float, eta: float = _ETA) -> int:
    """The fewest SK-ROCK stages (>= 2) whose stable range ``ell_s`` covers ``ratio``
    (damping ``eta``, :func:`skrock_coefficients`'s).

    From the closed form of ``ell_s`` (no loop over ``s``: any ``ratio`` is answered at once).

    Examples
    --------
    >>> s = stages_for(100.0)
    >>> s, skrock_coefficients(s)["ell"] >= 100.0 > skrock_coefficients(s - 1)["ell"]
    (8, True)
    """
    c = 2 - 4 * eta / 3
    s = max(2, math.ceil(0.5 + math.sqrt(max(ratio + 1.5, 0.0) / c)) - 1)
    while (s - 0.5) ** 2 * c - 1.5 < ratio:  # at most a step or two of rounding
        s += 1
    return s


@dataclass(eq=False)
class LangevinMetric:
    """A Langevin preconditioner ``M`` (symmetric positive definite) that the stages can run.

    ``kind``: ``"pixel"``, ``M = diag(m)``; ``"dct"``, ``M = C^T diag(m) C`` with ``C`` the
    orthonormal 2-D DCT-II (``a2``: the exact eigenvalues of ``A^T A`` in that basis when the
    operator is diagonal there, else ``None``); ``"range"``, ``M = base (I - P) + m P`` with
    ``P = project`` the orthogonal projection on the range of ``A^T`` (an operator with
    ``A A^T`` a multiple of the identity: box decimation), ``m`` and ``base`` numbers.

    Examples
    --------
    >>> import torch
    >>> met = LangevinMetric("pixel", torch.tensor([1.0, 4.0]))
    >>> met.apply(torch.ones(2)).tolist(), met.noise(torch.ones(2)).tolist()
    ([1.0, 4.0], [1.0, 2.0])
    """

    kind: str
    m: torch.Tensor
    a2: torch.Tensor | None = None
    project: Callable[[torch.Tensor], torch.Tensor] | None = None
    factor: int | None = None
    base: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in ("pixel", "dct", "range"):
            raise ValueError(f"kind must be 'pixel', 'dct' or 'range', got {self.kind!r}")
        if self.kind == "range" and self.project is None:
            raise ValueError("a 'range' metric needs project")
        self.m = torch.as_tensor(self.m)
        self.root = self.m.sqrt()

    def apply(self, v: torch.Tensor) -> torch.Tensor:
        """``M v``."""
        if self.kind == "pixel":
            return self.m.to(v.dtype) * v
        if self.kind == "dct":
            return idct2(self.m.to(v.dtype) * dct2(v))
        c = self.base  # M = c (I + (m / c - 1) P)
        fast = self._block(v, self.m / c)
        if fast is not None:
            return fast if c == 1.0 else c * fast
        return c * (v + (self.m.to(v.dtype) / c - 1) * self.project(v))

    def noise(self, z: torch.Tensor) -> torch.Tensor:
        """``B z`` with ``B B^T = M``: a draw of ``N(0, M)`` from a standard normal ``z``.

        ``B = M^1/2`` but for the DCT metric, where it is ``C^T diag(m^1/2)`` (``C z`` is
        standard normal too: one transform instead of two).
        """
        if self.kind == "pixel":
            return self.root.to(z.dtype) * z
        if self.kind == "dct":
            return idct2(self.root.to(z.dtype) * z)
        c = math.sqrt(self.base)  # M^1/2 = c (I + (m^1/2 / c - 1) P)
        fast = self._block(z, self.root / c)
        if fast is not None:
            return fast if c == 1.0 else c * fast
        return c * (z + (self.root.to(z.dtype) / c - 1) * self.project(z))

    def _block(self, v: torch.Tensor, scale: torch.Tensor) -> torch.Tensor | None:
        """``v + (scale - 1) P v`` in one pass for box decimation on the CPU, else None."""
        if (self.factor is None or v.device.type != "cpu" or v.dim() < 2
                or v.dtype not in (torch.float32, torch.float64) or v.requires_grad):
            return None
        try:
            from . import _langevin_numba as kernels
        except Exception:  # numba missing or broken
            return None
        if kernels.jit_disabled():
            return None
        h, w = v.shape[-2:]
        src = v.contiguous()
        out = torch.empty_like(src)
        kernels.block_project(src.view(-1, h, w).numpy(), out.view(-1, h, w).numpy(),
                              int(self.factor), float(scale))
        return out


def diagonal_metric(operator, like: torch.Tensor, *, prior_ratio: float | None = None):
    """The Langevin preconditioner ``M`` diagonal in the operator's own basis, or ``None``.

    ``M = k / (1 + (k - 1) a^2 / ||A||^2)`` with ``a^2`` the eigenvalues of ``A^T A``: 1
    where the operator observes fully, ``k`` where it observes nothing (only the prior's
    curvature left). Per pixel (``a = d``, ``k = max(4, prior_ratio)``) for a
    :class:`~bayes_restore.operators.PixelDiagonal` structure ``diag(d)`` (a mask), per DCT
    frequency (``k = max(3.25, prior_ratio)``) for a
    :class:`~bayes_restore.operators.DCTDiagonal` one (a reflective blur by a symmetric
    kernel). For a :class:`~bayes_restore.operators.BlockMean` (box decimation by ``f``,
    ``A^T A = P / f^2`` with ``P`` the projection on block-constant images) ``M = c (I - P) +
    f^2 P``, ``c = max(2, prior_ratio)``:
    the block means, which the data hold with the curvature ``1 / (f^2 sigma^2)``
    only (and the prior hardly at low frequencies), move as a denoised pixel does
    (``M A^T A = P``); the within-block detail, which the prior alone holds, at twice the
    step (with ``f = 2`` at no more stages: ``max M = f^2`` either way). ``None``
    for any other operator, or a constant ``d``: nothing to gain. The diffusion ``dx = -M
    grad U dt + sqrt(2 M) dW`` has the same target, and its potential's Lipschitz constant
    is at most ``gain L_f + peak L_g``.

    ``prior_ratio``: ``b^2 / sigma^2``, the curvature of what the operator sees (``1 /
    sigma^2`` once preconditioned) over the prior's (``1 / b^2``); ``None``: the constants
    above. The step is ``~ sigma^2``, and what the operator does not see, held by the
    prior alone (posterior std ``~ b``, not ``sigma``), would move ``b^2 / sigma^2`` times
    slower than what it sees: with ``k = b^2 / sigma^2`` it moves as a denoised pixel with
    ``b = sigma`` does, while SK-ROCK's stages grow only like ``sqrt(k)`` (128 x 128 camera,
    ``sigma = 0.0102``, ``b = 0.094``, worst pixel's bulk ESS per CPU second: Gaussian blur
    0.22 -> 1.8, x2 decimation 0.44 -> 4.0, 50 % mask 0.66 -> 1.7).

    Returns
    -------
    tuple or None
        ``(gain, peak, apply, noise)`` with ``gain = max(M a^2) / ||A||^2``, ``peak =
        max(M)``, ``apply`` the :meth:`LangevinMetric.apply` ``v -> M v`` and ``noise`` its
        :meth:`LangevinMetric.noise` ``z -> B z`` (``B B^T = M``); ``apply.__self__`` is the
        :class:`LangevinMetric` (pass ``apply`` to :class:`SmoothedPotential`'s ``metric``).

    Examples
    --------
    >>> import torch
    >>> from bayes_restore.operators import Mask
    >>> seen = torch.tensor([[True, False], [False, True]])
    >>> gain, peak, apply, _ = diagonal_metric(Mask(seen), torch.zeros(2, 2))
    >>> gain, peak, apply(torch.ones(2, 2)).tolist()
    (1.0, 4.0, [[1.0, 4.0], [4.0, 1.0]])
    """
    structure = operator.structure() if hasattr(operator, "structure") else None
    n2 = float(operator.norm_bound) ** 2
    if isinstance(structure, PixelDiagonal) and structure.d.numel() > 1:
        a2 = structure.diagonal(like).square()
        k = max(_UNSEEN_PIXEL, float(prior_ratio or 0.0))
        m = k / (1.0 + (k - 1.0) * a2 / n2)
        metric = LangevinMetric("pixel", m)
    elif isinstance(structure, BlockMean):
        f2 = structure.factor ** 2
        base = max(_BLOCK_BASE, float(prior_ratio or 0.0))
        metric = LangevinMetric("range", torch.tensor(float(f2), dtype=like.dtype),
                                project=lambda v: f2 * operator.normal(v),
                                factor=structure.factor, base=base)
        # on the block means M a^2 = f^2 / f^2 = 1 (A A^T = I / f^2), elsewhere a = 0
        return 1.0 / n2, max(float(f2), base), metric.apply, metric.noise
    elif isinstance(structure, DCTDiagonal) and hasattr(operator, "dct_symbol"):
        a2 = operator.dct_symbol(like.shape[-2], like.shape[-1], like)
        k = max(_DCT_PEAK, float(prior_ratio or 0.0))
        m = k / (1.0 + (k - 1.0) * a2 / n2)
        metric = LangevinMetric("dct", m, a2=a2)
    else:
        return None
    return float((m * a2).max()) / n2, float(m.max()), metric.apply, metric.noise


# --- the step sizes and their bounds ---------------------------------------------------------


def skrock_schedule(step_size, stages, l_f, lip, ratio, lambda_my, smoothing, *,
                   l_prior=None):
    """SK-ROCK's stages, coefficients and step ``delta`` (per image), within the bounds.

    ``step_size`` and ``stages`` are :func:`~bayes_restore.infer.mcmc`'s options (``None``:
    the defaults), ``l_f`` and ``lip`` the Lipschitz constants of the likelihood term and of
    the whole smoothed potential (per image), ``ratio`` the largest ``lip / l_f``.

    ``l_prior`` (per image, optional): the prior's own curvature scale, ``1 / b^2`` for a
    prior of scale ``b``. The step is then ``step_size / max(L_f, l_prior)``: in units of the
    larger of the data's and the prior's curvature, so that it does not grow in absolute
    terms where the operator observes little (``||A|| < 1``: decimation, ``L_f`` shrinks like
    ``||A||^2``) or where the prior is the stiffer term (``b < sigma / ||A||``). In the
    directions the data do not see only the prior's curvature is left; a step set by ``L_f``
    alone took the TV std 9 % low with x2 decimation and 8 % low for denoising with
    ``b = sigma / 2`` (32 x 32, against a 16 times smaller step), 1.6 % and 1.4 % at this
    step, as for denoising with ``b = sigma`` (where the two units agree). The stages are
    those of this step, but a potential too stiff for the step ``step_size / L_f`` is refused
    as without ``l_prior``. Without ``l_prior`` the unit is ``1 / L_f``.

    The step is at most ``SKROCK_MAX_STEP`` units (accuracy: a larger one warns and uses the
    bound) and the stages at most ``MAX_STAGES`` (cost: a potential so stiff that the step
    needs more is a ``ValueError``). The warnings point at the caller of ``mcmc``.

    Examples
    --------
    >>> import torch
    >>> l_f = torch.tensor(25.0)  # x2 box decimation, sigma = 0.1: ||A||^2 / sigma^2
    >>> lip = l_f + l_f / 0.01  # + 1 / lambda_MY at smoothing 0.01
    >>> s, coef, delta = skrock_schedule(None, None, l_f, lip, float(lip / l_f), 0.01 / l_f,
    ...                                  0.01, l_prior=torch.tensor(100.0))  # b = 0.1
    >>> s, round(float(delta), 6)  # 0.25 / max(L_f, 1 / b^2), as for denoising
    (3, 0.0025)
    """
    l_ref = l_f if l_prior is None else torch.maximum(torch.as_tensor(l_f),
                                                       torch.as_tensor(l_prior))
    unit = "1 / L_f" if l_prior is None else "1 / max(L_f, 1 / b^2)"
    rel = _SKROCK_STEP if step_size is None else float(step_size)
    if rel > SKROCK_MAX_STEP:
        warnings.warn(
            f"step_size={rel:g} is beyond SK-ROCK's accuracy limit: used step_size="
            f"{SKROCK_MAX_STEP:g} (units of {unit}; the TV std was 11 % low at 1 and 2-3 "
            "times too high at 1e6)",
            UserWarning,
            stacklevel=4,
        )
        rel = SKROCK_MAX_STEP
    if stages is not None:
        s = stages
    else:
        # refused as before, on the step rel / L_f: a potential that stiff against the data
        # leaves directions the data alone hold (e.g. the image mean) that barely move
        s = stages_for(rel * ratio)
        if s > MAX_STAGES:  # capping would leave a chain that barely moves: refuse
            ell = skrock_coefficients(MAX_STAGES)["ell"]
            if lambda_my is not None:
                fix = (f"use smoothing >= {1 / (ell / rel - 1):.2g}"
                       + ("" if step_size is None else " or a smaller step_size")
                       + " (or sampler='lm')")
                what = f"smoothing={smoothing:g}"
            else:
                fix = "use sampler='lm' (exact on this Gaussian model) or a smaller step_size"
                what = "the prior scale (far below sigma)"
            raise ValueError(
                f"{what} makes the potential too stiff for SK-ROCK (L = {ratio:.3g} L_f): a "
                f"step of {rel:g} / L_f needs {s} stages per step, more than {MAX_STAGES}; "
                + fix
            )
        if l_prior is not None:  # the stages of the step rel / L_ref (at most as many)
            s = stages_for(rel * float((lip / l_ref).max()))
    coef = skrock_coefficients(s)
    delta = torch.minimum(rel / l_ref, coef["ell"] / lip)
    if step_size is not None and stages is not None and bool(
            (rel / l_ref > coef["ell"] / lip).any()):
        warnings.warn(
            f"step_size={rel:g} is not stable with stages={s}: used step_size="
            f"{scalar_or_list(delta * l_ref)!r} (units of {unit}), the largest it keeps "
            "stable; give more stages or omit stages",
            UserWarning,
            stacklevel=4,
        )
    return s, coef, delta


def euler_step_size(sampler: str, step_size, l_f, lip, ratio) -> torch.Tensor:
    """The step ``delta`` (per image) of ``"myula"`` or ``"lm"``, within its stability limit.

    Default ``1 / L`` (MYULA) or ``1.5 / L`` (LM); a ``step_size`` (units of ``1 / L_f``)
    beyond ``1 / L`` or ``1.9 / L`` is reduced to it with a ``UserWarning`` that points at
    the caller of ``mcmc``.
    """
    limit = (1.0 if sampler == "myula" else 1.9) / lip
    default = (1.0 if sampler == "myula" else 1.5) / lip
    delta = default if step_size is None else torch.minimum(step_size / l_f, limit)
    if step_size is not None and bool((step_size / l_f > limit).any()):
        used = scalar_or_list(delta * l_f)
        warnings.warn(
            f"step_size={step_size:g} is beyond {sampler.upper()}'s stability limit "
            f"({'1' if sampler == 'myula' else '1.9'} / L, L = {ratio:.4g} L_f the "
            f"Lipschitz constant of the smoothed potential); used step_size={used!r} "
            "(units of 1 / L_f)",
            UserWarning,
            stacklevel=4,
        )
    return delta


def scalar_or_list(t: torch.Tensor) -> float | list:
    """A per-image quantity for the diagnostics: one float if all images share it, else a list."""
    t = torch.as_tensor(t).detach().to(torch.float64)
    flat = t.flatten()
    if flat.numel() == 1 or bool((flat == flat[0]).all()):
        return float(flat[0])
    return t.squeeze().tolist()
