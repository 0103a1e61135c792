"""Total-variation MAP by primal-dual iterations, certified by a primal-dual gap.

Three solvers share one workspace of preallocated buffers:

- :func:`tv_denoise_pdhg`, ``A = I`` (ROF): Chambolle & Pock's accelerated algorithm;
- :func:`tv_map_pdhg`, any :class:`~bayes_restore.operators.LinearOperator` ``A``:
  Chambolle & Pock with the data term in the primal prox where that is closed-form
  (masks, box decimation, periodic blur), else with ``K = [grad; A]`` (``A`` in the
  dual, no inner solve);
- :func:`tv_l1_pdhg`, TV-L1 (Laplace likelihood, ``A = I``): Chambolle & Pock with the
  shrinkage towards ``y`` as the primal prox.

Implementation notes (``shared/design.md`` section 7: eager torch costs a fixed
~20-30 us per elementwise pass over a 512x512 image, so the number of passes is
the cost):

- The problem is solved for ``u = x / w``: ``0.5 |A x - y|^2 + w TV(x) =
  w^2 (0.5 |A u - y / w|^2 + TV(u))``, so the dual constraint is ``|p| <= 1`` for
  every image of a batch, whatever its weight, and the iterations are exactly
  those of the unscaled problem (the scaling commutes with them).
- The dual field ``p`` lives in a zero-padded buffer ``(..., 2, H + 1, W + 1)``
  whose first row and column stay zero, so ``div p`` is three passes over shifted
  views (no boundary cases), and the gradient is written into an equally padded
  buffer whose last row (column) of the first (second) component stays zero.
- Every update is an in-place or ``out=`` operation; ``torch.lerp`` fuses the
  primal prox and the extrapolation. The isotropic projection is
  ``p *= rsqrt(max(|p|^2, 1))`` (five passes; ``torch.hypot`` is slower here).
"""

from __future__ import annotations

import functools
import math
import time
import warnings

import numpy as np
import torch

from bayes_restore.differences import dct2, dct_matrix, idct2, laplacian_eigenvalues
from bayes_restore.exceptions import ConvergenceWarning
from bayes_restore.operators import Blur, Downsample, Identity, LinearOperator, Mask
from bayes_restore.posterior import SolverInfo

__all__ = ["tv_denoise_pdhg", "tv_map_pdhg", "tv_l1_pdhg", "tv_energy"]

#: strong-convexity modulus used by the accelerated steps (the true one is 1: any
#: value in (0, 1] is covered by the convergence theory; 0.5 needed the fewest
#: iterations to a 1e-4 gap on the camera image for weights 0.03-0.2)
_GAMMA = 0.5
#: initial primal step of the accelerated algorithm (sigma0 = 1 / (8 tau0))
_TAU0 = 1.0
#: ||grad||^2 <= 8 (Neumann forward differences in two dimensions)
_GRAD_NORM2 = 8.0
_F64 = torch.float64
#: primal step of the primal splitting, times std(x0) / w (see tv_map_pdhg)
_TAU_PRIMAL = 0.1
#: primal step of the TV-L1 solver, times std(y) / w (see tv_l1_pdhg)
_TAU_L1 = 0.05
#: most iterations the fused kernels run in one pass over memory (their gain flattens
#: out near 8 at 2048 x 2048; the gap checks come every <= check_every iterations anyway)
_MAX_FUSED = 16
#: up to this size the certificate's Poisson solve uses dense DCT matrices
_DENSE_DCT_MAX = 256


# --------------------------------------------------------------------------------------
# public solvers
# --------------------------------------------------------------------------------------


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
    r"""Minimise the ROF energy ``0.5 |x - y|^2 + w TV(x)`` with a certified gap.

    Chambolle & Pock's accelerated primal-dual algorithm (2011, Algorithm 2: the
    data term is 1-strongly convex) on

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
        ``w = lambda / 2 = sigma^2 / b`` (scikit-image's weight), > 0; a tensor gives
        one weight per image: shape ``batch + (1,) * event_dim``.
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
        ``solver="pdhg"``, iterations, worst relative gap, objective (summed over
        the batch), wall time, the gap at each check in ``history``, and ``backend``.

    Examples
    --------
    >>> import torch
    >>> y = torch.rand(32, 32, dtype=torch.float64)
    >>> x, info = tv_denoise_pdhg(y, 0.1)
    >>> info.converged and info.gap <= 1e-4
    True
    """
    start = time.perf_counter()
    _check_options(y, event_dim, vectorial, tol, max_iter, check_every, isotropic)
    w = _check_weight(weight, y, event_dim)
    ws = _Workspace(y.shape, y.dtype, y.device, event_dim, isotropic, vectorial)
    ys = torch.div(y.detach(), w)
    w2 = ws.per_image(w).square()
    kernels = _fused_kernels(ys, ws, backend)
    run = _rof_accelerated if kernels is None else _rof_accelerated_fused
    u, gap, objective, it, history = run(
        ys, ws, w2, tol=tol, max_iter=max_iter, check_every=check_every, tau0=tau0,
        **({} if kernels is None else {"kernels": kernels}),
    )
    return _finish(u.mul_(w), "pdhg", it, gap, objective, history, tol, max_iter, start,
                   backend="torch" if kernels is None else "numba")


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
    splitting: str = "auto",
    init: torch.Tensor | None = None,
) -> tuple[torch.Tensor, SolverInfo]:
    r"""Minimise ``0.5 |A x - y|^2 + w TV(x)`` for any linear operator ``A``, gap-certified.

    Chambolle & Pock's primal-dual algorithm (2011, Algorithm 1) in one of two
    splittings (for ``A = I`` it runs :func:`tv_denoise_pdhg`, accelerated, instead):

    - ``"primal"``: the data term in the primal proximal step, ``K = grad`` only
      (``tau sigma 8 = 1``). Used when that step is closed-form: :class:`Mask`
      (diagonal), :class:`Downsample` with the box kernel (``A A^T = I / f^2``, so
      ``(I + t A^T A)^{-1} = I - t / (f^2 + t) A^T A``) and periodic :class:`Blur`
      (diagonal in the FFT). It needs several times fewer iterations.
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
    best ``s`` for ``D``) to satisfy ``|p| <= w``. For a :class:`Mask` a second, usually
    much tighter bound is used as well: a minimiser lies in the box ``[min y, max y]``
    of the observed values (per channel; clipping lowers both terms), so for any
    ``|p| <= w`` the separable minimum over that box of ``0.5 |A x - y|^2 - <x, div
    p>`` bounds the optimum from below. The best bound found so far counts; it is an
    exact lower bound (up to floating-point rounding), so the relative gap ``(P(x) -
    D) / P(x) <= tol`` certifies ``x``.

    Parameters
    ----------
    y : torch.Tensor
        Observation(s) of shape ``batch + A(event)``.
    weight : float or torch.Tensor
        ``w = lambda / 2 = sigma^2 / b``, > 0; one per image as for
        :func:`tv_denoise_pdhg`.
    operator : LinearOperator, optional
        ``A``; the identity when ``None``. The image's shape is that of ``A^T y``.
    isotropic, vectorial, event_dim, tol, check_every
        As for :func:`tv_denoise_pdhg`.
    max_iter : int, default 20000
        Iteration cap (the non-accelerated method converges as ``O(1/k)``).
    tau : float, optional
        Primal step. Primal splitting: default ``0.1 std(x0) / w`` (``x0`` the starting
        image; the iterations run on ``x / w``, whose scale is ``std(x0) / w``; the best
        steps on camera crops for masks, x2/x4 box decimation and Gaussian blur, weights
        5e-4 to 8e-3, were 0.07-0.15 times that), dual step ``1 / (8 tau)``. Dual
        splitting: default ``3 / sqrt(8 + ||A||^2)``, dual step
        ``1 / (tau (8 + ||A||^2))``.
    splitting : {"auto", "primal", "dual"}, default "auto"
        ``"auto"``: ``"primal"`` where the data term's proximal step is closed-form,
        ``"dual"`` otherwise; ``"primal"`` raises ``ValueError`` for other operators.
    init : torch.Tensor, optional
        Starting image, shape of ``A^T y``. Default: nearest-neighbour upsampling
        (``f^2 A^T y``) for :class:`Downsample`, the mean of the observed values at the
        unobserved pixels for :class:`Mask`, ``A^T y`` otherwise.

    Returns
    -------
    x : torch.Tensor
        The MAP image(s), shape of ``A^T y``.
    info : SolverInfo
        As for :func:`tv_denoise_pdhg`.

    Examples
    --------
    >>> import torch
    >>> from bayes_restore.operators import Downsample, LinearOperator
    >>> y = torch.rand(16, 16, dtype=torch.float64)
    >>> x, info = tv_map_pdhg(y, 0.005, Downsample(2))  # x2 super-resolution
    >>> x.shape, info.converged and info.gap <= 1e-4
    (torch.Size([32, 32]), True)
    >>> class Half(LinearOperator):  # A = 0.5 I: no closed-form prox here, A in the dual
    ...     norm_bound = 0.5
    ...     def forward(self, x):
    ...         return 0.5 * x
    ...     def adjoint(self, y):
    ...         return 0.5 * y
    >>> x, info = tv_map_pdhg(y, 0.02, Half())
    >>> info.converged and info.gap <= 1e-4
    True
    """
    if operator is None or isinstance(operator, Identity):
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
    if splitting not in ("auto", "primal", "dual"):
        raise ValueError(f"splitting must be 'auto', 'primal' or 'dual', got {splitting!r}")
    y = y.detach()
    x0 = operator.adjoint(y)
    _check_options(x0, event_dim, vectorial, tol, max_iter, check_every, isotropic)
    w = _check_weight(weight, x0, event_dim)
    if tau is not None and not tau > 0:
        raise ValueError(f"tau must be > 0, got {tau!r}")
    if init is not None:
        if not isinstance(init, torch.Tensor) or init.shape != x0.shape:
            raise ValueError(
                f"init must be a tensor of the image's shape {tuple(x0.shape)}, got "
                f"{getattr(init, 'shape', type(init).__name__)}"
            )
        x0 = init.detach().to(dtype=x0.dtype, device=x0.device)
    ws = _Workspace(x0.shape, x0.dtype, x0.device, event_dim, isotropic, vectorial)
    ys = torch.div(y, w)
    w2 = ws.per_image(w).square()
    data = _DataProx.make(operator, ys, x0.shape) if splitting != "dual" else None
    if splitting == "primal" and data is None:
        raise ValueError(
            f"splitting='primal' needs a closed-form proximal step of the data term: Mask, "
            f"Downsample(kernel='box') or Blur(boundary='periodic'), not {operator!r}"
        )
    cert = _GeneralCertificate(operator, ws, ys, x0.shape)
    if data is not None:
        if init is None:
            x0 = data.initial_image(y, x0)
        if tau is None:
            spread = float(x0.double().std()) if x0.numel() > 1 else 0.0
            tau = _TAU_PRIMAL * (spread if spread > 0 else 1.0) / float(ws.per_image(w).mean())
        u, gap, objective, it, history = _pdhg_primal_prox(
            torch.div(x0, w), ws, w2, data, cert, tau=tau, tol=tol, max_iter=max_iter,
            check_every=check_every,
        )
    else:
        norm2 = _GRAD_NORM2 + float(operator.norm_bound) ** 2
        u, gap, objective, it, history = _pdhg_operator_in_dual(
            torch.div(x0, w), ys, ws, w2, operator, cert, norm2=norm2,
            tau=3.0 / math.sqrt(norm2) if tau is None else tau, tol=tol, max_iter=max_iter,
            check_every=check_every,
        )
    return _finish(u.mul_(w), "pdhg", it, gap, objective, history, tol, max_iter, start)


def tv_l1_pdhg(
    y: torch.Tensor,
    weight: float | torch.Tensor,
    *,
    isotropic: bool = True,
    vectorial: bool = False,
    event_dim: int = 2,
    tol: float = 1e-4,
    max_iter: int = 20000,
    check_every: int = 10,
    tau: float | None = None,
) -> tuple[torch.Tensor, SolverInfo]:
    r"""Minimise the TV-L1 energy ``|x - y|_1 + w TV(x)`` with a certified gap.

    The MAP of a Laplace likelihood (``y ~ Laplace(x, b_l)``) under a TV prior of
    scale ``b`` is this minimiser with ``w = b_l / b``: robust to impulse
    (salt-and-pepper) noise. Chambolle & Pock's algorithm (2011, Algorithm 1) with
    ``K = grad`` and the L1 term in the primal prox (a shrinkage towards ``y``),
    run on ``|x - y|_1 / w + TV(x)`` so that the dual constraint is ``|p| <= 1``.

    Certificate: a minimiser lies in ``[min y, max y]`` (per channel: clipping lowers
    both terms), and for ``|p| <= 1`` ``TV(x) >= -<x, div p>``, so the separable
    minimum over that box of ``|x - y|_1 / w - <x, div p>`` (at ``lo``, ``hi`` or
    ``y`` for each pixel) is a lower bound of the optimum; the best one so far counts.

    Parameters
    ----------
    y : torch.Tensor
        Observed image(s), shape ``(..., H, W)`` (or ``(..., C, H, W)`` with
        ``event_dim=3``).
    weight : float or torch.Tensor
        ``w > 0``; a tensor gives one weight per image (``batch + (1,) * event_dim``).
    isotropic, vectorial, event_dim, tol, max_iter, check_every
        As for :func:`tv_map_pdhg`.
    tau : float, optional
        Primal step, default ``0.05 std(y) / w`` (about the best of a grid on a camera
        crop with 20 % salt and pepper, ``w`` from 0.5 to 1.5); the dual step is
        ``1 / (8 tau)``.

    Returns
    -------
    x : torch.Tensor
        The minimiser, shape, dtype and device of ``y``.
    info : SolverInfo
        ``solver="pdhg"``; ``objective`` is ``|x - y|_1 + w TV(x)`` summed over images.

    Examples
    --------
    >>> import torch
    >>> y = torch.full((16, 16), 0.5, dtype=torch.float64)
    >>> y[3, 4] = 1.0  # one salt pixel: TV-L1 removes it exactly
    >>> x, info = tv_l1_pdhg(y, 0.5)
    >>> info.converged, round(float(x[3, 4]), 3)
    (True, 0.5)
    """
    start = time.perf_counter()
    _check_options(y, event_dim, vectorial, tol, max_iter, check_every, isotropic)
    w = _check_weight(weight, y, event_dim)
    y = y.detach()
    if tau is None:
        spread = float(y.double().std()) if y.numel() > 1 else 0.0
        tau = _TAU_L1 * (spread if spread > 0 else 1.0) / float(w.double().mean())
    if not tau > 0:
        raise ValueError(f"tau must be > 0, got {tau!r}")
    ws = _Workspace(y.shape, y.dtype, y.device, event_dim, isotropic, vectorial)
    threshold = torch.div(tau, w)
    inv_w64 = 1.0 / ws.per_image(w)
    y64 = y.to(_F64)
    lo = y64.amin((-2, -1), keepdim=True)
    hi = y64.amax((-2, -1), keepdim=True)
    sigma = 1.0 / (_GRAD_NORM2 * tau)
    u, u_new, u_bar = y.clone(), torch.empty_like(y), y.clone()
    d, r = torch.empty_like(y), torch.empty_like(y)
    inv_w = inv_w64.reshape(inv_w64.shape + (1,) * event_dim)
    history: list[float] = []
    best = None
    gap, objective, it, next_check = math.inf, math.nan, 0, check_every
    while it < max_iter:
        it += 1
        ws.ascend(u_bar, sigma)
        ws.div_into(ws.p, d)
        d.mul_(tau).add_(u)  # v = u + tau div p
        torch.sub(d, y, out=r)  # prox: y + shrink(v - y) = v - clamp(v - y, -t, t)
        torch.sub(d, r.clamp_(min=-threshold, max=threshold), out=u_new)
        torch.sub(u_new, u, out=u_bar)
        u_bar.add_(u_new)  # 2 u_new - u
        u, u_new = u_new, u
        if it == next_check or it == max_iter:
            next_check = it + max(check_every, it // 20)
            primal = ws.sum_image((u - y).abs()) * inv_w64 + ws.tv(u)
            ws.div_into(ws.p, d)
            dd = d.to(_F64)
            # the separable minimum over [lo, hi] of |x - y| / w - x d: at lo, hi or y
            cands = [(t - y64).abs_().mul_(inv_w).sub_(t * dd) for t in (lo, hi)]
            cands.append(-y64 * dd)
            own = ws.sum_image(torch.minimum(torch.minimum(cands[0], cands[1]), cands[2]))
            best = own if best is None else torch.maximum(best, own)
            gap, objective = _relative_gap(primal, best, ws.per_image(w))
            history.append(gap)
            if gap <= tol:
                break
    return _finish(u, "pdhg", it, gap, objective, history, tol, max_iter, start)


def tv_energy(
    x: torch.Tensor,
    *,
    isotropic: bool = True,
    vectorial: bool = False,
    event_dim: int = 2,
) -> torch.Tensor:
    """TV of image(s) as the solvers define it, one value per image (float64).

    Isotropic: sum over pixels (and channels) of ``sqrt(dy^2 + dx^2)``; anisotropic:
    ``|dy| + |dx|``; vectorial (``event_dim=3``): sum over pixels of the Euclidean
    norm over channels and both directions.

    Examples
    --------
    >>> import torch
    >>> float(tv_energy(torch.tensor([[0., 1.], [2., 4.]]), isotropic=False))
    8.0
    """
    _check_options(x, event_dim, vectorial, 1.0, 1, 1, isotropic)
    ws = _Workspace(x.shape, x.dtype, x.device, event_dim, isotropic, vectorial)
    return ws.tv(x.detach())


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
    tau, sigma = tau0, 1.0 / (_GRAD_NORM2 * tau0)
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
            gap, objective = _relative_gap(*ws.rof_primal_dual(u, d, ys), w2)
            history.append(gap)
            if gap <= tol:
                break
            next_check = it + _next_interval(it, gap, tol, check_every)
    return u, gap, objective, it, history


_BACKENDS = ("auto", "numba", "torch")


def _fused_kernels(ys: torch.Tensor, ws: _Workspace, backend: str):
    """The fused numba kernels (module ``_rof_numba``) if they run this problem, else None."""
    if backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
    if backend == "torch":
        return None
    if ys.device.type != "cpu" or ws.vectorial or ys.dtype not in (torch.float32, _F64):
        if backend == "numba":
            raise ValueError(
                "backend='numba' runs float32/float64 CPU tensors and non-vectorial TV only; "
                f"got device={ys.device.type!r}, dtype={ys.dtype}, vectorial={ws.vectorial}"
            )
        return None
    try:
        from bayes_restore.infer import _rof_numba
    except Exception as err:  # numba missing, broken, or unable to cache on this machine
        if backend == "numba":
            raise ImportError(f"backend='numba' needs numba ({err})") from err
        return None
    if backend == "auto" and _rof_numba.jit_disabled():  # NUMBA_DISABLE_JIT: Python loops
        return None
    return _rof_numba


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
            gap, objective = _relative_gap(primal, dual_value, w2)
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


def _relative_gap(primal: torch.Tensor, dual: torch.Tensor, w2: torch.Tensor):
    """Worst relative gap over the images, and the objective in the user's units."""
    rel = (primal - dual) / primal.clamp_min(torch.finfo(_F64).tiny)
    return float(rel.max()), float((primal * w2).sum())


def _finish(x, solver, it, gap, objective, history, tol, max_iter, start, backend="torch"):
    converged = gap <= tol
    if not converged:
        warnings.warn(
            f"TV primal-dual solver stopped at max_iter={max_iter} with relative gap "
            f"{gap:.2e} > tol={tol:.1e}",
            ConvergenceWarning,
            stacklevel=3,
        )
    info = SolverInfo(
        solver=solver,
        iterations=it,
        converged=converged,
        time=time.perf_counter() - start,
        gap=gap,
        objective=objective,
        history=tuple(history),
        backend=backend,
    )
    return x, info


# --------------------------------------------------------------------------------------
# A != I: the data term in the primal prox (closed forms), or A in the dual
# --------------------------------------------------------------------------------------


def _pdhg_primal_prox(u, ws, w2, data, cert, *, tau, tol, max_iter, check_every):
    """Chambolle-Pock with ``K = grad`` and ``G(u) = 0.5 |A u - y|^2`` in the primal prox.

    Per iteration: ``p <- proj(p + sigma grad u_bar)``, ``u_new = prox_{tau G}(u + tau
    div p)``, ``u_bar = 2 u_new - u``. At a check the dual candidates are the residual
    ``q = A u - y`` (with the Poisson correction of :class:`_GeneralCertificate`) and the
    operator's own bound (:meth:`_DataProx.lower_bound`); the best bound so far counts.
    """
    sigma = 1.0 / (_GRAD_NORM2 * tau)
    data.set_step(tau)
    u_new = torch.empty_like(u)
    u_bar = u.clone()
    d = torch.empty_like(u)
    history: list[float] = []
    best = None
    gap, objective, it, next_check = math.inf, math.nan, 0, check_every
    while it < max_iter:
        it += 1
        ws.ascend(u_bar, sigma)
        ws.div_into(ws.p, d)
        d.mul_(tau).add_(u)  # u + tau div p
        data.prox(d, u_new)
        torch.sub(u_new, u, out=u_bar)
        u_bar.add_(u_new)  # 2 u_new - u
        u, u_new = u_new, u
        if it == next_check or it == max_iter:
            # O(1/k): a check every 5 % of the iterations done costs little overshoot
            next_check = it + max(check_every, it // 20)
            primal = cert.primal(u)
            dual = cert.dual(data.residual(u))
            own = data.lower_bound(ws, d)
            if own is not None:
                dual = torch.maximum(dual, own)
            best = dual if best is None else torch.maximum(best, dual)
            gap, objective = _relative_gap(primal, best, w2)
            history.append(gap)
            if gap <= tol:
                break
    return u, gap, objective, it, history


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
            best = dual if best is None else torch.maximum(best, dual)
            gap, objective = _relative_gap(primal, best, w2)
            history.append(gap)
            if gap <= tol:
                break
    return u, gap, objective, it, history


class _DataProx:
    """``prox_{tau G}`` of ``G(u) = 0.5 |A u - y|^2`` where it is closed-form.

    ``make`` returns the subclass for the operator, or ``None`` (then ``A`` goes in
    the dual). ``prox(v, out)`` writes ``(I + tau A^T A)^{-1} (v + tau A^T y)``.
    """

    def __init__(self, operator, ys):
        self.op, self.ys = operator, ys

    @staticmethod
    def make(operator, ys, x_shape):
        if isinstance(operator, Mask):
            return _MaskProx(operator, ys, x_shape)
        if isinstance(operator, Downsample) and operator.kernel == "box":
            return _BoxDownsampleProx(operator, ys)
        if isinstance(operator, Blur) and operator.boundary == "periodic":
            return _PeriodicBlurProx(operator, ys)
        return None

    def set_step(self, tau: float) -> None:
        raise NotImplementedError

    def prox(self, v: torch.Tensor, out: torch.Tensor) -> None:
        raise NotImplementedError

    def residual(self, u: torch.Tensor) -> torch.Tensor:
        """``A u - y``: the dual candidate ``q``."""
        return self.op.forward(u) - self.ys

    def initial_image(self, y: torch.Tensor, aty: torch.Tensor) -> torch.Tensor:
        return aty

    def lower_bound(self, ws, scratch):  # noqa: ARG002
        """A lower bound of the optimum from the dual field alone, or ``None``."""
        return None


class _MaskProx(_DataProx):
    """``A = diag(m)``: ``prox = v + m c (y - v)`` with ``c = tau / (1 + tau)``."""

    def __init__(self, operator, ys, x_shape):
        super().__init__(operator, ys)
        self.m = operator.mask.to(device=ys.device, dtype=ys.dtype).expand(x_shape)
        observed = self.m > 0
        big = torch.finfo(ys.dtype).max
        ys64 = ys.to(_F64)
        lo = torch.where(observed, ys64, big).amin((-2, -1), keepdim=True)
        hi = torch.where(observed, ys64, -big).amax((-2, -1), keepdim=True)
        empty = lo > hi  # a channel with no observed pixel: constant 0 is as good as any
        self.lo, self.hi = lo.masked_fill(empty, 0.0), hi.masked_fill(empty, 0.0)
        self.observed, self.ys64 = observed, ys64
        self.mc = None

    def set_step(self, tau):
        self.mc = self.m * (tau / (1.0 + tau))

    def prox(self, v, out):
        torch.sub(self.ys, v, out=out)
        out.mul_(self.mc).add_(v)

    def initial_image(self, y, aty):
        m = self.m
        count = m.sum((-2, -1), keepdim=True).clamp_min(1.0)
        mean = (aty * m).sum((-2, -1), keepdim=True) / count
        return torch.where(m > 0, aty, mean)

    def lower_bound(self, ws, scratch):
        """``min over the box of 0.5 |m (x - y)|^2 - <x, div p>``, separable per pixel.

        A minimiser lies in ``[lo, hi]`` (the observed values' range per channel):
        clipping to it shrinks every difference and every data misfit. For ``|p| <= 1``,
        ``TV(x) >= -<x, div p>``, so this minimum is at most the optimum.
        """
        ws.div_into(ws.p, scratch)
        d = scratch.to(_F64)
        t = (self.ys64 + d).clamp_(min=self.lo, max=self.hi)
        seen = 0.5 * (t - self.ys64).square_() - t * d
        unseen = torch.minimum(-self.lo * d, -self.hi * d)
        return ws.sum_image(torch.where(self.observed, seen, unseen))


class _BoxDownsampleProx(_DataProx):
    """Box decimation: ``A^T A = M / f^2`` with ``M`` the block-mean projection.

    ``(I + tau A^T A)^{-1} = I - c M`` with ``c = tau / (f^2 + tau)`` (Woodbury), and
    ``M A^T y = A^T y``, so ``prox(v) = v - c M v + tau (1 - c) A^T y``.
    """

    def __init__(self, operator, ys):
        super().__init__(operator, ys)
        self.f = operator.factor
        self.aty = operator.adjoint(ys)
        self.c = self.scaled_aty = None

    def set_step(self, tau):
        f2 = self.f**2
        self.c = tau / (f2 + tau)
        self.scaled_aty = self.aty * (tau * (1.0 - self.c))

    def prox(self, v, out):
        f = self.f
        h, w = v.shape[-2:]
        # block means by avg_pool2d (several times faster than a mean over strided views)
        means = torch.nn.functional.avg_pool2d(v.reshape(-1, 1, h, w), f)
        shape = (-1, h // f, 1, w // f, 1)
        torch.sub(v.view(-1, h // f, f, w // f, f), means.view(shape), alpha=self.c,
                  out=out.view(-1, h // f, f, w // f, f))
        out.add_(self.scaled_aty)

    def initial_image(self, y, aty):
        return aty * self.f**2  # nearest-neighbour upsampling, A's pseudo-inverse


class _PeriodicBlurProx(_DataProx):
    """Periodic convolution: ``prox(v) = F^-1 [(F v + tau conj(H) F y) / (1 + tau |H|^2)]``."""

    def __init__(self, operator, ys):
        super().__init__(operator, ys)
        h, w = ys.shape[-2:]
        self.shape = (h, w)
        transfer = operator._transfer(h, w, ys)
        self.f_aty = torch.fft.rfft2(ys) * transfer.conj()
        self.h2 = transfer.abs().square()
        self.inv = self.num = None

    def set_step(self, tau):
        self.inv = 1.0 / (1.0 + tau * self.h2)
        self.num = self.f_aty * tau

    def prox(self, v, out):
        spectrum = torch.fft.rfft2(v).add_(self.num).mul_(self.inv)
        out.copy_(torch.fft.irfft2(spectrum, s=self.shape))

    def initial_image(self, y, aty):
        return y.clone()


# --------------------------------------------------------------------------------------
# the workspace: padded dual field, fused differences, projections, TV
# --------------------------------------------------------------------------------------


class _Workspace:
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
        return _sum_rows(t, self.event_dim - 1)

    def per_image(self, w: torch.Tensor) -> torch.Tensor:
        """A weight broadcasting against the image as one value per image (float64)."""
        return w.to(_F64).expand(self.shape)[(...,) + (0,) * self.event_dim]

    def _sum_field(self, t: torch.Tensor) -> torch.Tensor:
        """Per-image sum of a ``lead + (k, H+1, W+1)`` (or vectorial) padded buffer."""
        return _sum_rows(t, self.event_dim if not self.vectorial else 3)

    def _max_field(self, t: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(-(self.event_dim + 1), 0)) if not self.vectorial else (-4, -3, -2, -1)
        return t.amax(dims).to(_F64)

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
            return p.abs().amax(dims).to(_F64)
        n = self._norm2_into(p, torch.empty_like(self.n))
        return self._max_field(n).sqrt()

    def tv(self, u: torch.Tensor) -> torch.Tensor:
        """Per-image TV of ``u`` (float64); uses ``g`` and ``n`` as scratch."""
        self.grad_into(u, self.g)
        if not self.isotropic:
            return self._sum_field(torch.abs(self.g, out=self.g))
        return self._sum_field(self._norm2_into(self.g, self.n).sqrt_())


def _sum_rows(t: torch.Tensor, more_dims: int) -> torch.Tensor:
    """Sum the last dimension in ``t``'s dtype, then ``more_dims`` more in float64."""
    rows = t.sum(-1)
    if more_dims == 0:
        return rows.to(_F64)
    return rows.to(_F64).sum(tuple(range(-more_dims, 0)))


class _GeneralCertificate:
    """Primal and dual values of ``0.5 |A u - y|^2 + TV(u)`` for the general solver."""

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
            along = (q * self.c).sum((-2, -1), keepdim=True, dtype=_F64) / self.c2
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
        best = (-qy / q2.clamp_min(torch.finfo(_F64).tiny)).clamp(min=0.0)
        s = torch.minimum(best, scale_max)
        return -0.5 * s.square() * q2 - s * qy


# --------------------------------------------------------------------------------------
# argument checks
# --------------------------------------------------------------------------------------


def _check_options(y, event_dim, vectorial, tol, max_iter, check_every, isotropic=True) -> None:
    if not isinstance(y, torch.Tensor) or not y.is_floating_point():
        raise ValueError("y must be a floating-point torch.Tensor")
    if event_dim not in (2, 3):
        raise ValueError(f"event_dim must be 2 or 3, got {event_dim!r}")
    if y.dim() < event_dim:
        raise ValueError(f"y must have at least event_dim={event_dim} dimensions, got {y.dim()}")
    if vectorial and event_dim != 3:
        raise ValueError("vectorial=True couples channels: it needs event_dim=3 (C, H, W)")
    if vectorial and not isotropic:
        raise ValueError("vectorial TV is isotropic (a norm over channels and directions)")
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol!r}")
    if not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
    if not isinstance(check_every, int) or check_every < 1:
        raise ValueError(f"check_every must be a positive integer, got {check_every!r}")


def _check_weight(weight, y: torch.Tensor, event_dim: int) -> torch.Tensor:
    """The weight as a tensor broadcasting against ``y``, one value per image."""
    w = torch.as_tensor(weight, dtype=y.dtype, device=y.device)
    trailing = w.shape[max(0, w.dim() - event_dim):]
    if w.dim() > y.dim() or any(s != 1 for s in trailing) or (
        torch.broadcast_shapes(w.shape, y.shape) != y.shape
    ):
        raise ValueError(
            f"weight must be a number or one per image, shape batch + (1,) * {event_dim}, "
            f"broadcasting against y {tuple(y.shape)}; got shape {tuple(w.shape)}"
        )
    if not bool(torch.isfinite(w).all()) or bool((w <= 0).any()):
        raise ValueError("weight must be finite and > 0")
    return w
