"""Total-variation MAP by primal-dual iterations, certified by a primal-dual gap.

Two solvers share one workspace of preallocated buffers:

- :func:`tv_denoise_pdhg`, ``A = I`` (ROF): Chambolle & Pock's accelerated algorithm;
- :func:`tv_map_pdhg`, any :class:`~bayes_restore.operators.LinearOperator` ``A``:
  Chambolle & Pock with ``K = [grad; A]`` (``A`` in the dual, no inner solve).

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

import math
import time
import warnings

import torch

from bayes_restore.differences import dct2, dct_matrix, idct2, laplacian_eigenvalues
from bayes_restore.exceptions import ConvergenceWarning
from bayes_restore.operators import Identity, LinearOperator
from bayes_restore.posterior import SolverInfo

__all__ = ["tv_denoise_pdhg", "tv_map_pdhg", "tv_energy"]

#: strong-convexity modulus used by the accelerated steps (the true one is 1: any
#: value in (0, 1] is covered by the convergence theory; 0.5 needed the fewest
#: iterations to a 1e-4 gap on the camera image for weights 0.03-0.2)
_GAMMA = 0.5
#: initial primal step of the accelerated algorithm (sigma0 = 1 / (8 tau0))
_TAU0 = 1.0
#: ||grad||^2 <= 8 (Neumann forward differences in two dimensions)
_GRAD_NORM2 = 8.0
_F64 = torch.float64
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

    Returns
    -------
    x : torch.Tensor
        The MAP image(s), same shape, dtype and device as ``y``.
    info : SolverInfo
        ``solver="pdhg"``, iterations, worst relative gap, objective (summed over
        the batch), wall time, and the gap at each check in ``history``.

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
    u, gap, objective, it, history = _rof_accelerated(
        ys, ws, w2, tol=tol, max_iter=max_iter, check_every=check_every, tau0=tau0
    )
    return _finish(u.mul_(w), "pdhg", it, gap, objective, history, tol, max_iter, start)


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
) -> tuple[torch.Tensor, SolverInfo]:
    r"""Minimise ``0.5 |A x - y|^2 + w TV(x)`` for any linear operator ``A``, gap-certified.

    Chambolle & Pock's primal-dual algorithm (2011, Algorithm 1) on the saddle point

    .. math::

        \min_x \max_{|p| \le w,\ q} \langle \nabla x, p \rangle + \langle A x, q \rangle
        - \tfrac12 |q|^2 - \langle q, y \rangle

    with ``K = [grad; A]`` and steps ``tau sigma (8 + ||A||^2) = 1`` (``||A||`` from
    ``operator.norm_bound``): only ``A`` and ``A^T`` are applied, never inverted.
    For ``A = I`` it runs :func:`tv_denoise_pdhg` (accelerated) instead.

    Certificate: the Fenchel dual is ``D(p, q) = -0.5 |q|^2 - <q, y>`` on the set
    ``A^T q = div p``, ``|p| <= w``. At each check the iterates are made feasible:
    ``q`` loses its component along ``A 1`` (per channel) so that ``A^T q`` sums to
    zero, ``p`` gains ``grad phi`` with ``div grad phi = A^T q - div p`` (a Neumann
    Poisson solve by the DCT), and the pair is scaled by ``s <= 1`` (the best ``s``
    for ``D``) to satisfy ``|p| <= w``. ``D`` at that point is an exact lower bound of
    the optimum (up to floating-point rounding), so the relative gap
    ``(P(x) - D) / P(x) <= tol`` certifies ``x``.

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
        Primal step, default ``3 / sqrt(8 + ||A||^2)`` (1 for ``||A|| = 1``, the best of
        0.3-30 on blur and mask tests); the dual step is
        ``1 / (tau (8 + ||A||^2))``.

    Returns
    -------
    x : torch.Tensor
        The MAP image(s), shape of ``A^T y``.
    info : SolverInfo
        As for :func:`tv_denoise_pdhg`.

    Examples
    --------
    >>> import torch
    >>> from bayes_restore.operators import LinearOperator
    >>> class Half(LinearOperator):  # A = 0.5 I
    ...     norm_bound = 0.5
    ...     def forward(self, x):
    ...         return 0.5 * x
    ...     def adjoint(self, y):
    ...         return 0.5 * y
    >>> y = torch.rand(16, 16, dtype=torch.float64)
    >>> x, info = tv_map_pdhg(y, 0.02, Half())
    >>> info.converged and info.gap <= 1e-4
    True
    """
    if operator is None or isinstance(operator, Identity):
        return tv_denoise_pdhg(
            y, weight, isotropic=isotropic, vectorial=vectorial, event_dim=event_dim,
            tol=tol, max_iter=max_iter, check_every=check_every,
        )
    start = time.perf_counter()
    if not isinstance(operator, LinearOperator):
        raise ValueError(
            f"operator must be a LinearOperator or None, got {type(operator).__name__}"
        )
    y = y.detach()
    x0 = operator.adjoint(y)
    _check_options(x0, event_dim, vectorial, tol, max_iter, check_every, isotropic)
    w = _check_weight(weight, x0, event_dim)
    norm2 = _GRAD_NORM2 + float(operator.norm_bound) ** 2
    if tau is None:
        tau = 3.0 / math.sqrt(norm2)
    if not tau > 0:
        raise ValueError(f"tau must be > 0, got {tau!r}")
    sigma = 1.0 / (tau * norm2)
    ws = _Workspace(x0.shape, x0.dtype, x0.device, event_dim, isotropic, vectorial)
    ys = torch.div(y, w)
    w2 = ws.per_image(w).square()
    cert = _GeneralCertificate(operator, ws, ys, x0.shape)

    u = torch.div(x0, w)
    u_bar = u.clone()
    q = torch.zeros_like(ys)
    d = torch.empty_like(u)
    history: list[float] = []
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
            gap, objective = _relative_gap(primal, dual, w2)
            history.append(gap)
            if gap <= tol:
                break
    return _finish(u.mul_(w), "pdhg", it, gap, objective, history, tol, max_iter, start)


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


def _rof_accelerated(ys, ws, w2, *, tol, max_iter, check_every, tau0):
    """Chambolle-Pock Algorithm 2 on the scaled problem: 15 passes per iteration.

    ``d = y + div p`` is the dual's own primal point; both the new iterate and the
    extrapolated one are lerps of ``u`` towards ``d``:
    ``u_new = lerp(u, d, c)`` with ``c = tau / (1 + tau)`` (the prox of the data
    term) and ``u_bar = u_new + theta (u_new - u) = lerp(u, d, (1 + theta) c)``.
    """
    if not tau0 > 0:
        raise ValueError(f"tau0 must be > 0, got {tau0!r}")
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
    tau, sigma = tau0, 1.0 / (_GRAD_NORM2 * tau0)
    history: list[float] = []
    gap, objective, it, next_check = math.inf, math.nan, 0, check_every
    while it < max_iter:
        it += 1
        # dual: p <- proj(p + sigma grad u_bar), the differences added in place
        for target, ahead, here in grad_targets:
            target.add_(ahead, alpha=sigma).sub_(here, alpha=sigma)
        project(p)
        # d = y + div p
        torch.sub(p0, p0_prev, out=d)
        d.add_(p1).sub_(p1_prev).add_(ys)
        # primal prox and extrapolation, both lerps of u towards d
        c = tau / (1.0 + tau)
        theta = 1.0 / math.sqrt(1.0 + 2.0 * _GAMMA * tau)
        torch.lerp(u, d, (1.0 + theta) * c, out=u_bar)
        u.lerp_(d, c)
        tau *= theta
        sigma /= theta
        if it == next_check or it == max_iter:
            gap, objective = _relative_gap(*ws.rof_primal_dual(u, d, ys), w2)
            history.append(gap)
            if gap <= tol:
                break
            next_check = it + _next_interval(it, gap, tol, check_every)
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


def _finish(x, solver, it, gap, objective, history, tol, max_iter, start):
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
    )
    return x, info


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
        self.g = torch.zeros_like(self.p)
        self._p0, self._p1 = self.p[..., 0:1, :, :], self.p[..., 1:2, :, :]
        if self.vectorial:
            self.n = torch.empty(lead[:-1] + (1, 1, self.h + 1, self.w + 1), dtype=dtype,
                                 device=device)
        else:
            self.n = torch.empty(lead + (1, self.h + 1, self.w + 1), dtype=dtype, device=device)

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
