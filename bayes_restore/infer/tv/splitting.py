"""TV MAP for any linear operator ``A``: the primal and the dual splittings of Chambolle & Pock.

The data term goes in the primal proximal step where the operator solves its normal
equations exactly (a declared structure, or its own ``solve_normal``: ``_data_prox.py``),
else ``A`` goes in the dual (``K = [grad; A]``, only ``A`` and ``A^T`` applied). The
primal splitting is over-relaxed (``rho = 1.9``: 1.5-1.9x fewer iterations) and runs on
fused numba kernels on the CPU (``_splitting_numba.py``: the dual step, its projection,
the extrapolation, the relaxation and ``u + tau div p`` in one pass, and a pointwise or
block-mean data step in the same pass). The public ``weight`` is ``lambda`` of ``|A x -
y|^2 + lambda TV(x)``; both splittings iterate on half that energy with ``w = lambda /
2``, on ``u = x / w`` as the ROF solver does, and are certified by ``certificate.py``.
"""

from __future__ import annotations

import math
import time

import torch

from bayes_restore.operators import LinearOperator
from bayes_restore.posterior import SolverInfo

from ._common import (
    BACKENDS,
    GRAD_NORM2,
    check_options,
    check_weight,
    energy_unit,
    finish,
    fused_kernels,
    half_weight,
    iterations_to_tol,
    record_check,
    relative_gap,
    relaxed_primal_step,
)
from ._data_prox import make_data_prox
from ._workspace import Workspace
from .admm import INNER_STEPS as ADMM_INNER_STEPS
from .admm import RELAXATION as ADMM_RELAXATION
from .admm import RHO as ADMM_RHO
from .admm import admm_spectral, spectral_of
from .certificate import GeneralCertificate
from .rof import tv_denoise_pdhg

__all__ = ["tv_map_pdhg"]

#: primal step of the primal splitting, times std(x0) / w, w = lambda / 2 (see tv_map_pdhg);
#: None: the data step's own ``tau_scale`` (measured per structure)
_TAU_PRIMAL = None
#: over-relaxation of the primal splitting (see tv_map_pdhg)
_RELAXATION = 1.9


def tv_map_pdhg(
    y: torch.Tensor,
    weight: float | torch.Tensor,
    operator: LinearOperator | None = None,
    *,
    isotropic: bool = True,
    vectorial: bool = False,
    event_dim: int = 2,
    tol: float = 1e-4,
    max_iter: int = 20000,
    check_every: int = 10,
    tau: float | None = None,
    relaxation: float | None = None,
    splitting: str = "auto",
    init: torch.Tensor | None = None,
    backend: str = "auto",
) -> tuple[torch.Tensor, SolverInfo]:
    r"""Minimise ``|A x - y|^2 + lambda TV(x)`` for any linear operator ``A``, gap-certified.

    ``weight`` is ``lambda`` (as for :func:`tv_denoise_pdhg`); the iterations and the
    certificate below work on half the energy, ``0.5 |A x - y|^2 + w TV(x)`` with
    ``w = lambda / 2`` (the same minimiser and relative gap).
    Chambolle & Pock's primal-dual algorithm (2011, Algorithm 1) in one of two
    splittings, or ADMM for an operator diagonal in a transform (for ``A = I`` it runs
    :func:`tv_denoise_pdhg`, accelerated, instead):

    - ``"admm"``: for a declared
      :class:`~bayes_restore.operators.FourierDiagonal` (periodic blur) or
      :class:`~bayes_restore.operators.DCTDiagonal` (symmetric kernel, reflective
      boundaries) structure, on the fused kernels: over-relaxed ADMM on ``x = v``, the
      ``x``-update the exact solve in the operator's own basis (one transform pair), the
      ``v``-update the ROF prox by warm-started steps of the fused ROF kernels
      (``admm.py``); certified by the same primal-dual gap, from the residual ``A x - y``
      and the inner ROF's dual field, made feasible where each is cheap
      (:class:`~.certificate.SpectralBound`). 512x512 periodic blur: 26 outer
      iterations against 260 of the primal splitting, 4.5-5.5x less CPU time.
      ``SolverInfo.solver`` is ``"admm"``.

    - ``"primal"``: the data term in the primal proximal step, ``K = grad`` only
      (``tau sigma 8 = 1``), over-relaxed (``relaxation``). Used when that step is
      closed-form: the operator's exact
      :meth:`~bayes_restore.operators.LinearOperator.solve_normal` gives it
      (``(I + tau A^T A)^{-1} (v + tau A^T y) = solve_normal(v / tau + A^T y, 1 / tau)``),
      available for every declared
      :meth:`~bayes_restore.operators.LinearOperator.structure`, with specialised steps for
      :class:`~bayes_restore.operators.PixelDiagonal` (masks, pointwise gains),
      :class:`~bayes_restore.operators.BlockMean` (box decimation, ``A A^T = I / f^2``,
      so ``(I + t A^T A)^{-1} = I - t / (f^2 + t) A^T A``) and
      :class:`~bayes_restore.operators.FourierDiagonal` (periodic blur, diagonal in
      the FFT). It needs several times fewer iterations.
    - ``"dual"``: ``A`` in the dual, ``K = [grad; A]``, the saddle point

      .. math::

          \min_x \max_{|p| \le w,\ q} \langle \nabla x, p \rangle + \langle A x, q \rangle
          - \tfrac12 |q|^2 - \langle q, y \rangle

      with ``tau sigma (8 + ||A||^2) = 1`` (``||A||`` from ``operator.norm_bound``):
      only ``A`` and ``A^T`` are applied, so any operator works.

    Certificate: the Fenchel dual is ``D(p, q) = -0.5 |q|^2 - <q, y>`` on the set
    ``A^T q = div p``, ``|p| <= w``. At each check a feasible pair is built from the
    iterates (``q`` the dual iterate, or the residual ``A x - y`` in the primal
    splitting): ``q`` loses its component along ``A 1`` (per channel) so that
    ``A^T q`` sums to zero, ``p`` gains ``grad phi`` with ``div grad phi = A^T q - div
    p`` (a Neumann Poisson solve by the DCT), and the pair is scaled by ``s <= 1`` (the
    best ``s`` for ``D``) to satisfy ``|p| <= w``. For a pixel-diagonal ``A = diag(d)``
    (a mask: ``d`` in ``{0, 1}``) a second, usually much tighter bound is used as well:
    a minimiser lies in the box ``[min y / d, max y / d]`` over the observed pixels
    (``d != 0``; per channel; clipping lowers both terms), so for any ``|p| <= w`` the
    separable minimum over that box of ``0.5 |A x - y|^2 - <x, div p>`` bounds the
    optimum from below (512x512 camera, 50 % mask: it certifies 1e-4 at 264 iterations,
    where the scaled pair alone took 977). On the fused path it is one pass with the
    primal value, and the scaled pair (a Poisson solve) is evaluated only where it may
    be the tighter near the end, and when the iterations have grown eightfold since it
    last ran. On the fused path with an FFT or generic data step, ``p`` is
    also polished first (a copy moved towards ``div p = A^T q`` inside ``|p| <= w`` by
    projected FISTA steps, 20 for a periodic blur and 50 for a generic step, one numba
    kernel): the Poisson correction alone pushes
    ``|p|`` over ``w`` wherever it is already at ``w``, and the scaling then costs a gap of
    that size. For a block mean (box decimation, on whole blocks) the pair is built the
    other way round, on the fused path: ``A^T q = div p`` asks ``div p`` to be constant on
    each ``f x f`` block, and then ``q = f^2 A div p``; a copy of ``p`` is moved towards
    that by ``10 f`` projected FISTA steps (near the end), the rest removed exactly inside
    each block (a Poisson solve on the block's interior edges), and the pair scaled as
    above. The residual-based pair certified x2 and x4 decimation 2.4x and 2.1x later
    (512x512 camera, the same step) although the iterate was as close. Float32 problems on
    the CPU are certified in float64. The best bound found so far counts; it is an exact
    lower bound (up to floating-point rounding), so the relative gap ``(P(x) - D) / P(x)
    <= tol`` certifies ``x``.

    Parameters
    ----------
    y : torch.Tensor
        Observation(s) of shape ``batch + A(event)``.
    weight : float or torch.Tensor
        ``lambda = 2 sigma^2 / b`` of ``|A x - y|^2 + lambda TV(x)``, > 0; one per image
        as for :func:`tv_denoise_pdhg`.
    operator : LinearOperator, optional
        ``A``; the identity when ``None``. The image's shape is that of ``A^T y``.
    isotropic, vectorial, event_dim, tol, check_every
        As for :func:`tv_denoise_pdhg`.
    max_iter : int, default 20000
        Iteration cap (the non-accelerated method converges as ``O(1/k)``).
    tau : float, optional
        Primal step. Primal splitting: default ``c std(x0) / w`` (``x0`` the starting
        image, ``w = lambda / 2``; the iterations run on ``x / w``, whose scale is ``std(x0)
        / w``), ``c`` measured per structure on camera crops (256x256 and 512x512, masks,
        x2/x4 box decimation, Gaussian blur, the over-relaxed iteration): 0.1, 0.05 for a
        periodic blur, 0.07 for x2 and 0.05 for coarser box decimation; dual step ``1 / (8
        tau)``. Dual splitting: default ``3 / sqrt(8 + ||A||^2)``, dual step ``1 / (tau (8
        + ||A||^2))``.
    relaxation : float, optional
        Over-relaxation ``rho`` in ``(0, 2)`` of the primal splitting (Chambolle & Pock,
        Acta Numerica 2016, section 5.1: each step moves ``rho`` times the plain
        primal-dual step); default 1.9, which needed 1.5-1.9x fewer iterations than
        ``rho = 1`` (the plain iteration) on every operator measured.
    splitting : {"auto", "primal", "dual", "admm"}, default "auto"
        ``"auto"``: ``"admm"`` for an operator diagonal in a transform when the fused
        kernels run the problem, else ``"primal"`` where the data term's proximal step is
        closed-form, ``"dual"`` otherwise; ``"primal"`` and ``"admm"`` raise
        ``ValueError`` for other operators. ``relaxation`` is ADMM's over-relaxation
        there (default 1.6).
    init : torch.Tensor, optional
        Starting image, shape of ``A^T y``. Default: nearest-neighbour upsampling
        (``f^2 A^T y``) for a block mean, ``y / d`` at the observed pixels of a pixel
        diagonal (their mean elsewhere), ``y`` for a periodic blur, ``A^T y`` otherwise.
    backend : {"auto", "numba", "torch"}, default "auto"
        What runs the primal splitting. ``"numba"``: fused CPU kernels, one pass over
        memory per iteration (the data step included when it is pointwise, a masked or
        pixel-diagonal ``A``, or a block mean; a periodic blur's step is an FFT pair;
        with a pointwise or block-mean step, several iterations per pass, each a row or a
        row of blocks behind the last);
        float32/float64 CPU tensors and non-vectorial TV only. ``"torch"``: eager tensor
        operations, any device, dtype and TV. ``"auto"``: numba where it
        applies and loads. Both run the same iteration (tested to agree); the gap is
        checked on a schedule predicted from its measured decay (at least every
        ``check_every`` iterations and at most an eighth of those done apart). The dual
        splitting runs on torch.

    Returns
    -------
    x : torch.Tensor
        The MAP image(s), shape of ``A^T y``.
    info : SolverInfo
        As for :func:`tv_denoise_pdhg`: ``objective`` is ``|A x - y|^2 + lambda TV(x)``
        summed over the batch; ``backend`` says what ran.

    Examples
    --------
    >>> import torch
    >>> from bayes_restore.operators import Downsample, LinearOperator
    >>> y = torch.rand(16, 16, dtype=torch.float64)
    >>> x, info = tv_map_pdhg(y, 0.01, Downsample(2))  # x2 super-resolution
    >>> x.shape, info.converged and info.gap <= 1e-4
    (torch.Size([32, 32]), True)
    >>> class Half(LinearOperator):  # A = 0.5 I: no closed-form prox here, A in the dual
    ...     norm_bound = 0.5
    ...     def forward(self, x):
    ...         return 0.5 * x
    ...     def adjoint(self, y):
    ...         return 0.5 * y
    >>> x, info = tv_map_pdhg(y, 0.04, Half())
    >>> info.converged and info.gap <= 1e-4
    True
    >>> from bayes_restore.operators import PixelDiagonal
    >>> class HalfDiagonal(Half):  # the same A, declared pixel-diagonal: the primal splitting
    ...     def structure(self):
    ...         return PixelDiagonal(torch.tensor(0.5))
    >>> x2, info2 = tv_map_pdhg(y, 0.04, HalfDiagonal(), splitting="primal")
    >>> info2.converged and float((x2 - x).abs().max()) < 1e-2
    True
    """
    if operator is None or (isinstance(operator, LinearOperator) and operator.is_identity):
        if init is not None:
            raise ValueError("init is for A != I (the ROF solver starts at the data)")
        return tv_denoise_pdhg(
            y, weight, isotropic=isotropic, vectorial=vectorial, event_dim=event_dim,
            tol=tol, max_iter=max_iter, check_every=check_every,
        )
    start = time.perf_counter()
    if not isinstance(operator, LinearOperator):
        raise ValueError(
            f"operator must be a LinearOperator or None, got {type(operator).__name__}"
        )
    if splitting not in ("auto", "primal", "dual", "admm"):
        raise ValueError(
            f"splitting must be 'auto', 'primal', 'dual' or 'admm', got {splitting!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    y = y.detach()
    x0 = operator.adjoint(y)
    check_options(x0, event_dim, vectorial, tol, max_iter, check_every, isotropic)
    w = half_weight(check_weight(weight, x0, event_dim))
    if tau is not None and not tau > 0:
        raise ValueError(f"tau must be > 0, got {tau!r}")
    rho = _RELAXATION if relaxation is None else relaxation
    if relaxation is not None and not 0.0 < relaxation < 2.0:
        raise ValueError(f"relaxation must be in (0, 2), got {relaxation!r}")
    if init is not None:
        if not isinstance(init, torch.Tensor) or init.shape != x0.shape:
            raise ValueError(
                f"init must be a tensor of the image's shape {tuple(x0.shape)}, got "
                f"{getattr(init, 'shape', type(init).__name__)}"
            )
        x0 = init.detach().to(dtype=x0.dtype, device=x0.device)
    ws = Workspace(x0.shape, x0.dtype, x0.device, event_dim, isotropic, vectorial)
    ys = torch.div(y, w)
    w2 = energy_unit(ws.per_image(w))
    data = make_data_prox(operator, ys, x0.shape) if splitting != "dual" else None
    if splitting == "primal" and data is None:
        raise ValueError(
            "splitting='primal' needs a closed-form proximal step of the data term, from "
            "an operator that solves its normal equations exactly (a declared structure(), "
            "e.g. Mask, Downsample(kernel='box'), Blur(boundary='periodic'), or its own "
            f"solve_normal); {operator!r} has neither"
        )
    cert = GeneralCertificate(operator, ws, ys, x0.shape)
    spec = None
    if data is not None and splitting in ("auto", "admm"):
        spec = spectral_of(operator.structure(), x0.shape, torch.get_num_threads())
        admm_kernels = _admm_kernels(x0, ws, backend) if spec is not None else None
        if admm_kernels is None:
            spec = None
    if splitting == "admm" and spec is None:
        raise ValueError(
            "splitting='admm' needs an operator diagonal in a transform (a declared "
            "FourierDiagonal or DCTDiagonal structure, e.g. Blur(boundary='periodic') or "
            "a symmetric Blur(boundary='reflect')) and the fused kernels (float32/float64 "
            f"CPU tensors, non-vectorial TV); got {operator!r}"
        )
    if spec is not None:
        if init is None:
            x0 = data.initial_image(y, x0)
        # the penalty in units of the scaled image's spread (as tau below): the best
        # rho moved with the weight, 3x the weight 3x rho (see admm.RHO)
        spread = float(x0.double().std()) if x0.numel() > 1 else 0.0
        penalty = ADMM_RHO * float(ws.per_image(w).mean()) / (spread if spread > 0 else 1.0)
        u, gap, objective, it, history = admm_spectral(
            torch.div(x0, w), ys, ws, w2, spec, cert, admm_kernels, rho=penalty,
            alpha=ADMM_RELAXATION if relaxation is None else relaxation,
            inner=ADMM_INNER_STEPS, tol=tol, max_iter=max_iter, check_every=check_every,
        )
        return finish(u.mul_(w), "admm", it, gap, objective, history, tol, max_iter, start,
                      backend="numba")
    if data is not None:
        if init is None:
            x0 = data.initial_image(y, x0)
        if tau is None:
            spread = float(x0.double().std()) if x0.numel() > 1 else 0.0
            scale = data.tau_scale if _TAU_PRIMAL is None else _TAU_PRIMAL
            tau = scale * (spread if spread > 0 else 1.0) / float(ws.per_image(w).mean())
        kernels = _fused_kernels(x0, ws, backend)
        run = _pdhg_primal_prox if kernels is None else _pdhg_primal_fused
        u, gap, objective, it, history = run(
            torch.div(x0, w), ws, w2, data, cert, tau=tau, rho=rho, tol=tol, max_iter=max_iter,
            check_every=check_every,
            **({} if kernels is None else {"kernels": kernels}),
        )
        used = "torch" if kernels is None else "numba"
    else:
        norm2 = GRAD_NORM2 + float(operator.norm_bound) ** 2
        u, gap, objective, it, history = _pdhg_operator_in_dual(
            torch.div(x0, w), ys, ws, w2, operator, cert, norm2=norm2,
            tau=3.0 / math.sqrt(norm2) if tau is None else tau, tol=tol, max_iter=max_iter,
            check_every=check_every,
        )
        used = "torch"
    return finish(u.mul_(w), "pdhg", it, gap, objective, history, tol, max_iter, start,
                  backend=used)


# --------------------------------------------------------------------------------------
# the two splittings
# --------------------------------------------------------------------------------------


def _pdhg_primal_prox(u, ws, w2, data, cert, *, tau, rho, tol, max_iter, check_every):
    """Chambolle-Pock with ``K = grad`` and ``G(u) = 0.5 |A u - y|^2`` in the primal prox,
    over-relaxed by ``rho`` (Chambolle & Pock 2016, section 5.1; ``rho = 1``: plain).

    Per iteration, from ``(u, p)`` and ``uh = prox_{tau G}(u + tau div p)``: ``p <- p + rho
    (proj(p + sigma grad(2 uh - u)) - p)``, ``u <- u + rho (uh - u)``, ``v = u + tau div
    p``, ``uh = prox(v)``. At a check ``uh`` is certified: the dual candidates are the
    residual ``q = A uh - y`` (with the Poisson correction of ``GeneralCertificate``) and
    the operator's own bound (``DataProx.lower_bound``); the best bound so far counts.
    """
    sigma = 1.0 / (GRAD_NORM2 * tau)
    data.set_step(tau)
    uh = torch.empty_like(u)
    data.prox(u, uh)  # p = 0: v = u
    u_bar = torch.empty_like(u)
    p_old = torch.empty_like(ws.p) if rho != 1.0 else None
    d = torch.empty_like(u)
    history: list[float] = []
    best = None
    gap, objective, it, next_check = math.inf, math.nan, 0, check_every
    while it < max_iter:
        it += 1
        relaxed_primal_step(ws, data, u, uh, u_bar, d, p_old, tau, sigma, rho)
        if it == next_check or it == max_iter:
            # O(1/k): a check every 5 % of the iterations done costs little overshoot
            next_check = it + max(check_every, it // 20)
            primal, q = cert.primal_residual(uh)
            dual = cert.dual(q)
            own = data.lower_bound(ws, d)
            if own is not None:
                dual = torch.maximum(dual, own)
            best, gap, objective = record_check(primal, dual, best, w2, it, history)
            if gap <= tol:
                break
    return uh, gap, objective, it, history


def _pdhg_operator_in_dual(u, ys, ws, w2, operator, cert, *, norm2, tau, tol, max_iter,
                           check_every):
    """Chambolle-Pock with ``K = [grad; A]``: only ``A`` and ``A^T`` are applied."""
    sigma = 1.0 / (tau * norm2)
    u_bar = u.clone()
    q = torch.zeros_like(ys)
    d = torch.empty_like(u)
    history: list[float] = []
    best = None
    gap, objective, it = math.inf, math.nan, 0
    while it < max_iter:
        it += 1
        ws.ascend(u_bar, sigma)
        residual = operator.forward(u_bar) - ys
        q.lerp_(residual, sigma / (1.0 + sigma))  # prox of sigma F*, F* = 0.5|q|^2 + <q, y>
        ws.div_into(ws.p, d)
        d.sub_(operator.adjoint(q))  # -K^T (p, q)
        torch.add(u, d, alpha=2.0 * tau, out=u_bar)  # u_bar = 2 u_new - u
        u.add_(d, alpha=tau)
        if it % check_every == 0 or it == max_iter:
            primal, dual = cert.primal(u), cert.dual(q)
            best, gap, objective = record_check(primal, dual, best, w2, it, history)
            if gap <= tol:
                break
    return u, gap, objective, it, history


# --------------------------------------------------------------------------------------
# the primal splitting on fused numba kernels
# --------------------------------------------------------------------------------------

#: most iterations one call of the fused pointwise kernel runs (between two gap checks)
_MAX_FUSED = 16


def _admm_kernels(x0: torch.Tensor, ws: Workspace, backend: str):
    """The kernel modules ``(_rof_numba, _splitting_numba, _admm_numba)`` of the spectral
    ADMM if they run this problem, else ``None``."""
    found = [fused_kernels(name, x0, ws.vectorial, backend)
             for name in ("_rof_numba", "_splitting_numba", "_admm_numba")]
    return None if any(k is None for k in found) else tuple(found)


def _fused_kernels(x0: torch.Tensor, ws: Workspace, backend: str):
    """The module ``_splitting_numba`` if its kernels run this problem, else ``None``."""
    return fused_kernels("_splitting_numba", x0, ws.vectorial, backend)


def _pdhg_primal_fused(u, ws, w2, data, cert, *, tau, rho, tol, max_iter, check_every,
                       kernels):
    """:func:`_pdhg_primal_prox` on the fused kernels: the same iteration.

    A pointwise data step (pixel-diagonal ``A``) runs inside the kernel's pass, several
    iterations per pass (:func:`~._splitting_numba.iterate_affine`), its checks one more
    pass (``DataProx.fused_bounds``); a block mean's step also joins the pass, several
    iterations per pass (:func:`~._splitting_numba.iterate_block`); any other runs
    between two passes of
    :func:`~._splitting_numba.dual_div`, on the ``v = u + tau div p`` it writes.
    """
    sigma = 1.0 / (GRAD_NORM2 * tau)
    data.set_step(tau)
    data.kernels = kernels
    h, w = ws.h, ws.w
    u = u.contiguous()
    uh = torch.empty_like(u)
    v = torch.empty_like(u)
    data.prox(u, uh)  # p = 0: v = u
    flat = (-1, h, w)
    dtype = u.numpy().dtype.type
    p_np = ws.p.view(-1, 2, h + 1, w + 1).numpy()
    un, uhn, vn = (t.view(flat).numpy() for t in (u, uh, v))
    affine, block = data.affine(), data.block()
    if affine is not None:
        gain, offset = (t.view(flat).numpy() for t in affine)
    elif block is not None:
        f, cf, aty = block[0], dtype(block[1]), block[2].view(flat).numpy()
    s, t, r, one, iso = dtype(sigma), dtype(tau), dtype(rho), dtype(1.0), ws.isotropic
    history: list[float] = []
    best = None
    gap, objective, it, next_check = math.inf, math.nan, 0, check_every
    checks: list[tuple[int, float]] = []
    # fused_bounds: when the plain dual was last evaluated, and whether it was the tighter
    plain_at, plain_tighter = check_every, True
    while it < max_iter:
        m = min(_MAX_FUSED, next_check - it, max_iter - it)
        if affine is not None:
            kernels.iterate_affine(uhn, un, p_np, gain, offset, s, t, r, one, iso, m)
        elif block is not None:
            kernels.iterate_block(uhn, un, p_np, vn, aty, f, cf, s, t, r, one, iso, m)
        else:
            for _ in range(m):
                kernels.dual_div(uhn, un, p_np, vn, s, t, r, one, iso)
                data.prox(v, uh)
        it += m
        if it != next_check and it != max_iter:
            continue
        fused = data.fused_bounds(ws, uh)
        if fused is not None:
            # the primal value and the data step's own bound in one pass; the plain dual
            # (a Poisson solve, ~40 iterations' worth) only where it may decide
            primal, dual = fused
            if _plain_due(it, plain_at, plain_tighter, history, tol, it == max_iter):
                plain_dual = cert.dual(cert.residual(uh))
                plain_at, plain_tighter = it, bool((plain_dual > dual).any())
                dual = torch.maximum(dual, plain_dual)
        else:
            primal, q = cert.primal_residual(uh)
            # the plain dual, unless the data step has a bound of its own that replaces it
            dual = cert.dual(q) if data.plain_dual else None
            near = (relative_gap(primal, dual, w2)[0] if dual is not None
                    else (history[-1] if history else math.inf)) <= data.polish_below * tol
            # polishing costs ~2 passes a step: only near the end, where it decides
            if data.polish_steps and (near or dual is None):
                polished = data.polished_dual(cert, q, kernels, data.polish_steps if near else 0)
                if polished is not None:
                    dual = polished if dual is None else torch.maximum(dual, polished)
            if dual is None:
                dual = cert.dual(q)
            own = data.lower_bound(ws, v)
            if own is not None:  # either can be the tighter one
                dual = torch.maximum(dual, own)
        best, gap, objective = record_check(primal, dual, best, w2, it, history, checks)
        if gap <= tol:
            break
        next_check = it + _next_interval(checks, tol, check_every, data.check_cost)
    data.kernels = None
    return uh, gap, objective, it, history


def _plain_due(it: int, last: int, tighter: bool, history: list[float], tol: float,
               final: bool) -> bool:
    """Whether a check with the data step's own bound (``DataProx.fused_bounds``) also
    evaluates the plain dual (``GeneralCertificate.dual``), which costs tens of fused
    iterations.

    At every check while the plain dual was the tighter at its last evaluation and the
    run is within reach of ``tol`` (best gap so far at most ``_PLAIN_REACH`` times
    ``tol``); otherwise once the iterations have grown ``_PLAIN_RETRY``-fold since its
    last evaluation (the first after ``_PLAIN_RETRY * check_every``), and at the last
    iteration. On the 50 % mask the own bound is the tighter from about 40 iterations on
    (512x512 camera): the plain dual then runs once, at about 80 iterations.
    """
    if final or it >= _PLAIN_RETRY * last:
        return True
    return tighter and bool(history) and history[-1] <= _PLAIN_REACH * tol


#: see _plain_due
_PLAIN_RETRY = 8
_PLAIN_REACH = 1000.0


def _next_interval(checks, tol: float, check_every: int, cost: float = 0.0) -> int:
    """Iterations to the next gap check, from the gap's measured decay and a check's cost.

    The gap falls about like ``k^-a``; ``a`` from the last two checks (at least 1, the
    non-accelerated rate) predicts the crossing of ``tol``; the next check comes at 80 %
    of the way there, at least ``check_every`` and at most an eighth of the iterations done
    later. ``cost`` is what a check costs in iterations (an ``A``, an ``A^T``, a Poisson
    solve by the DCT and a few reductions; ``DataProx.check_cost``, measured: 3 for a
    pixel-diagonal step, whose check is one fused pass, 5 for a generic ``solve_normal``,
    10 with an FFT pair in the iteration, 40 for a block mean; fixed numbers, not
    timings, so that the iterates do not depend on the machine's load): the
    interval is at least ``cost / _CHECK_SHARE`` (the checks take at most about that
    share of the time), but no more than half the
    iterations done (at most 50 % overshoot).
    """
    it = checks[-1][0]
    remaining = iterations_to_tol(checks, tol)
    interval = min(max(check_every, it // 8), max(check_every, math.ceil(0.8 * remaining)))
    floor = min(math.ceil(cost / _CHECK_SHARE), it // 2) if cost > 0 else 0
    return int(max(interval, floor))


#: the share of the run time the gap checks may take (see _next_interval)
_CHECK_SHARE = 0.25
