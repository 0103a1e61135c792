"""ROF denoising (``A = I``): Chambolle & Pock's accelerated iteration and its backends.

The public ``weight`` is ``lambda`` of ``|x - y|^2 + lambda TV(x)``; the iterations run on
half that energy, ``0.5 |x - y|^2 + w TV(x)`` with ``w = lambda / 2`` (kept internal),
and for ``u = x / w``: ``0.5 |x - y|^2 + w TV(x) = w^2 (0.5 |u - y / w|^2 + TV(u))``, so
the dual constraint is ``|p| <= 1`` for every image of a batch, whatever its weight, and
the iterations are exactly those of the unscaled problem (the scaling commutes with
them). In eager torch each elementwise operation is one pass over memory
and costs a fixed ~20-30 us at 512x512, so the number of passes is the cost: the
iteration is written as 15 in-place passes, ``torch.lerp`` fusing the primal prox and
the extrapolation. On the CPU, the fused numba kernels of the sibling module
``_rof_numba`` run the same iteration in one pass over memory for several iterations
(the Benchmarks page of the documentation measures both).
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from bayes_restore._numba_pool import torch_threads
from bayes_restore.posterior import SolverInfo

from ._common import (
    GRAD_NORM2,
    check_options,
    check_weight,
    energy_unit,
    finish,
    fused_kernels,
    half_weight,
    relative_gap,
)
from ._workspace import Workspace

__all__ = ["tv_denoise_pdhg"]

#: strong-convexity modulus used by the accelerated steps (the true one is 1: any
#: value in (0, 1] is covered by the convergence theory; 0.5 needed the fewest
#: iterations to a 1e-4 gap on the camera image for weights 0.03-0.2)
_GAMMA = 0.5
#: initial primal step of the accelerated algorithm (sigma0 = 1 / (8 tau0))
_TAU0 = 1.0
#: most iterations the fused kernels run in one pass over memory (their gain flattens
#: out near 8 at 2048 x 2048; the gap checks come every <= check_every iterations anyway)
_MAX_FUSED = 16


def tv_denoise_pdhg(
    y: torch.Tensor,
    weight: float | torch.Tensor,
    *,
    isotropic: bool = True,
    vectorial: bool = False,
    event_dim: int = 2,
    tol: float = 1e-4,
    max_iter: int = 5000,
    check_every: int = 10,
    tau0: float = _TAU0,
    backend: str = "auto",
) -> tuple[torch.Tensor, SolverInfo]:
    r"""Minimise the ROF energy ``|x - y|^2 + lambda TV(x)`` with a certified gap.

    ``weight`` is ``lambda``, the package's energy weight (that of
    :func:`~bayes_restore.denoise` and :func:`~bayes_restore.energy.energy`; scikit-image's
    ``denoise_tv_chambolle`` weight is ``lambda / 2``). Chambolle & Pock's accelerated
    primal-dual algorithm (2011, Algorithm 2: the data term is 1-strongly convex) on half
    that energy, with ``w = lambda / 2``,

    .. math::

        \min_x \max_{|p_{ij}| \le w} \langle \nabla x, p \rangle + \tfrac12 |x - y|^2 .

    The dual ``D(p) = 0.5 |y|^2 - 0.5 |y + div p|^2`` bounds the primal from below,
    so ``(P(x) - D(p)) / P(x) <= tol`` certifies that ``x`` is within ``tol`` of
    the optimum in relative objective (per image; the worst image counts).

    Parameters
    ----------
    y : torch.Tensor
        Noisy image(s) of shape ``(..., H, W)`` (or ``(..., C, H, W)`` with
        ``event_dim=3``), float32 or float64, on any device.
    weight : float or torch.Tensor
        ``lambda = 2 sigma^2 / b`` of ``|x - y|^2 + lambda TV(x)`` (twice scikit-image's
        weight), > 0; a tensor gives one weight per image: shape
        ``batch + (1,) * event_dim``.
    isotropic : bool, default True
        Isotropic TV (Euclidean norm of the two differences per pixel and channel)
        or anisotropic (``|dx| + |dy|``).
    vectorial : bool, default False
        Colour images (``event_dim=3``): couple the channels, TV being the sum over
        pixels of the Euclidean norm over channels and directions. By default each
        channel has its own TV (the package's prior).
    event_dim : int, default 2
        Trailing dimensions of one image (2 or 3): the gap is checked per image.
    tol : float, default 1e-4
        Relative primal-dual gap at which to stop.
    max_iter : int, default 5000
        Iteration cap; a :class:`~bayes_restore.exceptions.ConvergenceWarning` says
        when it is hit.
    check_every : int, default 10
        Evaluate the gap every this many iterations (a check costs about one
        iteration).
    tau0 : float, default 1.0
        Initial primal step (the dual step is ``1 / (8 tau0)``).
    backend : {"auto", "numba", "torch"}, default "auto"
        What runs the iterations. ``"numba"``: fused CPU kernels that run all the
        iterations between two gap checks in one pass over memory (3-6x faster than
        eager torch; from half a megapixel, images are split across
        ``torch.get_num_threads()`` threads, by image or in strips); float32 and float64 CPU
        tensors and non-vectorial TV only; compiled once and cached on disk.
        ``"torch"``: eager tensor operations, any device and dtype. ``"auto"``: numba
        where it applies and loads, else torch. Both run the same iteration (tested to
        agree).

    Returns
    -------
    x : torch.Tensor
        The MAP image(s), same shape, dtype and device as ``y``.
    info : SolverInfo
        ``solver="pdhg"``, iterations, worst relative gap (the same for the energy and
        its half), ``objective`` the energy ``|x - y|^2 + lambda TV(x)`` (summed over
        the batch), wall time, the gap at each check in ``history``, and ``backend``.

    Examples
    --------
    >>> import torch
    >>> y = torch.rand(32, 32, dtype=torch.float64)
    >>> x, info = tv_denoise_pdhg(y, 0.2)  # lambda = 0.2: scikit-image's weight 0.1
    >>> info.converged and info.gap <= 1e-4
    True
    """
    start = time.perf_counter()
    check_options(y, event_dim, vectorial, tol, max_iter, check_every, isotropic)
    w = half_weight(check_weight(weight, y, event_dim))
    ws = Workspace(y.shape, y.dtype, y.device, event_dim, isotropic, vectorial)
    ys = torch.div(y.detach(), w)
    w2 = energy_unit(ws.per_image(w))
    kernels = _fused_kernels(ys, ws, backend)
    run = _rof_accelerated if kernels is None else _rof_accelerated_fused
    u, gap, objective, it, history = run(
        ys, ws, w2, tol=tol, max_iter=max_iter, check_every=check_every, tau0=tau0,
        **({} if kernels is None else {"kernels": kernels}),
    )
    return finish(u.mul_(w), "pdhg", it, gap, objective, history, tol, max_iter, start,
                   backend="torch" if kernels is None else "numba")


# --------------------------------------------------------------------------------------
# the accelerated ROF iteration
# --------------------------------------------------------------------------------------


def _accelerated_steps(tau0: float):
    """Per iteration of Algorithm 2 (modulus ``_GAMMA``), ``(sigma, c, (1 + theta) c)``: the
    dual step and the lerp weights of the new and the extrapolated primal iterates (see
    :func:`_rof_accelerated`). Both backends draw their steps from here."""
    if not tau0 > 0:
        raise ValueError(f"tau0 must be > 0, got {tau0!r}")
    return _step_sequence(tau0)


def _step_sequence(tau0: float):
    tau, sigma = tau0, 1.0 / (GRAD_NORM2 * tau0)
    while True:
        c = tau / (1.0 + tau)
        theta = 1.0 / math.sqrt(1.0 + 2.0 * _GAMMA * tau)
        yield sigma, c, (1.0 + theta) * c
        tau *= theta
        sigma /= theta


def _rof_accelerated(ys, ws, w2, *, tol, max_iter, check_every, tau0):
    """Chambolle-Pock Algorithm 2 on the scaled problem: 15 passes per iteration.

    ``d = y + div p`` is the dual's own primal point; both the new iterate and the
    extrapolated one are lerps of ``u`` towards ``d``:
    ``u_new = lerp(u, d, c)`` with ``c = tau / (1 + tau)`` (the prox of the data
    term) and ``u_bar = u_new + theta (u_new - u) = lerp(u, d, (1 + theta) c)``.
    """
    steps = _accelerated_steps(tau0)
    u = ys.clone()
    u_bar = ys.clone()
    d = torch.empty_like(ys)
    # every view the loop touches, made once (slicing costs ~1 us a call)
    h, w, p = ws.h, ws.w, ws.p
    grad_targets = (
        (p[..., 0, 1:h, 1:], u_bar[..., 1:, :], u_bar[..., :-1, :]),
        (p[..., 1, 1:, 1:w], u_bar[..., :, 1:], u_bar[..., :, :-1]),
    )
    p0, p0_prev, p1, p1_prev = ws.div_views(p)
    project = ws.project
    history: list[float] = []
    gap, objective, it, next_check = math.inf, math.nan, 0, check_every
    while it < max_iter:
        it += 1
        sigma, c, c_bar = next(steps)
        # dual: p <- proj(p + sigma grad u_bar), the differences added in place
        for target, ahead, here in grad_targets:
            target.add_(ahead, alpha=sigma).sub_(here, alpha=sigma)
        project(p)
        # d = y + div p
        torch.sub(p0, p0_prev, out=d)
        d.add_(p1).sub_(p1_prev).add_(ys)
        # primal prox and extrapolation, both lerps of u towards d
        torch.lerp(u, d, c_bar, out=u_bar)
        u.lerp_(d, c)
        if it == next_check or it == max_iter:
            gap, objective = relative_gap(*ws.rof_primal_dual(u, d, ys), w2)
            history.append(gap)
            if gap <= tol:
                break
            next_check = it + _next_interval(it, gap, tol, check_every)
    return u, gap, objective, it, history


def _fused_kernels(ys: torch.Tensor, ws: Workspace, backend: str):
    """The fused numba kernels (module ``_rof_numba``) if they run this problem, else None."""
    return fused_kernels("_rof_numba", ys, ws.vectorial, backend)


def _rof_accelerated_fused(ys, ws, w2, *, tol, max_iter, check_every, tau0, kernels):
    """:func:`_rof_accelerated` with the fused kernels: the same steps, the iterations
    between two gap checks (at most ``_MAX_FUSED``) in one pass over memory."""
    steps = _accelerated_steps(tau0)
    k = kernels
    h, w = ws.h, ws.w
    ys = ys.contiguous()
    u, u_bar = ys.clone(), ys.clone()
    y_np, u_np, ubar_np = (t.view(-1, h, w).numpy() for t in (ys, u, u_bar))
    p_np = ws.p.view(-1, 2, h + 1, w + 1).numpy()
    dtype = y_np.dtype
    threads = torch.get_num_threads()
    plan = k.Plan(y_np, threads, _MAX_FUSED + 1)
    lead = ys.shape[:-2]
    history: list[float] = []
    gap, objective, it, next_check = math.inf, math.nan, 0, check_every
    with torch_threads(1):  # the kernels take the threads; torch's own would only spin
        while it < max_iter:
            m = min(_MAX_FUSED, next_check - it, max_iter - it)
            chunk = np.array([next(steps) for _ in range(m)], dtype=dtype).T  # (3, m)
            certify = it + m == next_check or it + m == max_iter
            sums = k.iterate(plan, u_np, ubar_np, y_np, p_np, *chunk, ws.isotropic, certify)
            it += m
            if certify:
                sums = torch.from_numpy(sums)
                primal, dual_value = (sums[:, i].reshape(lead) for i in (0, 1))
                if ws.event_dim == 3:
                    primal, dual_value = primal.sum(-1), dual_value.sum(-1)
                gap, objective = relative_gap(primal, dual_value, w2)
                history.append(gap)
                if gap <= tol:
                    break
                next_check = it + _next_interval(it, gap, tol, check_every)
    k.finish(plan, u_np, ubar_np, p_np)
    return u, gap, objective, it, history


def _next_interval(it: int, gap: float, tol: float, check_every: int) -> int:
    """Iterations to the next gap check: the predicted remainder, at most ``check_every``.

    The accelerated gap falls about like ``k^-3`` here (between ``k^-2.6`` and
    ``k^-2.8`` measured on the camera image), so ``k (gap / tol)^(1/3)`` predicts the
    crossing slightly early: checks cluster just before it instead of overshooting.
    """
    remaining = it * ((gap / tol) ** (1.0 / 3.0) - 1.0)
    return int(min(check_every, max(1, math.ceil(remaining))))
