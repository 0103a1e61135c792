"""Preconditioned conjugate gradients, and the Gaussian-gradient posterior for any operator
by PCG (the mean) and perturb-and-optimise (the draws and the std)."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable

import torch

from bayes_restore.differences import dct2, div, grad, idct2, laplacian_eigenvalues
from bayes_restore.exceptions import ConvergenceWarning
from bayes_restore.posterior import ExactDiagnostics, Posterior, SolverInfo

__all__ = ["pcg", "pcg_posterior", "dct_preconditioner", "DRAW_BLOCK", "DEFAULT_STD_RTOL",
           "MAX_DRAWS", "MIN_DRAWS"]

#: the relative Monte Carlo error of the std to reach at the median pixel (about 200 draws)
DEFAULT_STD_RTOL = 0.05
#: the cap on convergence-controlled draws
MAX_DRAWS = 1000
#: the first batch of convergence-controlled draws (enough for the error estimate itself)
MIN_DRAWS = 32


def pcg(
    apply: Callable[[torch.Tensor], torch.Tensor],
    rhs: torch.Tensor,
    *,
    precondition: Callable[[torch.Tensor], torch.Tensor] | None = None,
    tol: float = 1e-6,
    max_iter: int = 1000,
    event_dim: int = 2,
    x0: torch.Tensor | None = None,
) -> tuple[torch.Tensor, int, torch.Tensor, tuple[float, ...]]:
    r"""Preconditioned conjugate gradients for ``Q x = rhs``, batched over leading dimensions.

    Each system (the last ``event_dim`` dimensions are one vector) has its own step sizes
    and stops when its relative residual ``|rhs - Q x| / |rhs|`` is at most ``tol``;
    the loop ends when all have, or after ``max_iter`` iterations (no warning here: the
    caller decides). ``Q`` and the preconditioner must be symmetric positive definite.

    Parameters
    ----------
    apply : callable
        ``v -> Q v`` on tensors of ``rhs``'s shape.
    rhs : torch.Tensor
        Right-hand side(s), shape ``batch + event``.
    precondition : callable, optional
        ``r -> M^{-1} r`` with ``M`` close to ``Q``; the identity when ``None``.
    tol : float, default 1e-6
        Relative residual to reach.
    max_iter : int, default 1000
        Iteration cap.
    event_dim : int, default 2
        Number of trailing dimensions forming one vector.
    x0 : torch.Tensor, optional
        Starting point (a warm start: the solution of a nearby system), ``rhs``'s shape;
        zero when ``None``.

    Returns
    -------
    x : torch.Tensor
        The solution(s), ``rhs``'s shape.
    iterations : int
        Iterations performed (the slowest system's).
    residual : torch.Tensor
        Final relative residual of each system, shape ``batch + (1,) * event_dim``.
    history : tuple of float
        The largest relative residual after each iteration (first entry: 1, the start).

    Examples
    --------
    >>> import torch
    >>> q = torch.tensor([[4.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
    >>> b = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    >>> x, it, res, _ = pcg(lambda v: v @ q, b, tol=1e-12, event_dim=1)
    >>> it, bool(torch.allclose(x @ q, b))
    (2, True)
    """
    dims = tuple(range(-event_dim, 0))

    def dot(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return (u * v).sum(dims, keepdim=True)

    def identity(r: torch.Tensor) -> torch.Tensor:
        return r

    prec = identity if precondition is None else precondition
    bnorm = dot(rhs, rhs).sqrt()
    bnorm = torch.where(bnorm > 0, bnorm, torch.ones_like(bnorm))  # rhs = 0: x = 0 at once
    if x0 is None:
        x = torch.zeros_like(rhs)
        r = rhs.clone()
    else:
        if x0.shape != rhs.shape:
            raise ValueError(f"x0 must have rhs's shape {tuple(rhs.shape)}, got "
                             f"{tuple(x0.shape)}")
        x = x0.clone()
        r = rhs - apply(x)
    z = prec(r)
    p = z.clone()
    rz = dot(r, z)
    rel = dot(r, r).sqrt() / bnorm
    history = [float(rel.max())]
    iterations = 0
    while iterations < max_iter and history[-1] > tol:
        active = rel > tol
        qp = apply(p)
        zero = torch.zeros((), dtype=rhs.dtype, device=rhs.device)
        alpha = torch.where(active, rz / dot(p, qp), zero)  # finished systems stand still
        x = x + alpha * p
        r = r - alpha * qp
        rel = dot(r, r).sqrt() / bnorm
        z = prec(r)
        rz_new = dot(r, z)
        p = z + torch.where(active, rz_new / rz, zero) * p
        rz = rz_new
        iterations += 1
        history.append(float(rel.max()))
    return x, iterations, rel, tuple(history)


def dct_preconditioner(
    operator, shape, sigma, scale, like: torch.Tensor, *, event_dim: int = 2
) -> Callable[[torch.Tensor], torch.Tensor]:
    r"""``r -> M^{-1} r`` for ``Q = A^T A / sigma^2 + L / b^2``, ``M`` diagonal in the DCT.

    ``M = c + mu / b^2``: ``mu`` the Laplacian's eigenvalues, ``c`` the operator's mean
    gain ``|A 1|^2 / (n sigma^2)`` shaped by its DCT symbol when it declares one (a
    convolution), so that the constant image keeps its exact precision.

    Parameters
    ----------
    operator : LinearOperator
        ``A``.
    shape : tuple of int
        The images' shape, ``batch + event``.
    sigma, scale : float or torch.Tensor
        Noise level and prior scale, broadcastable to ``batch + (1,) * event_dim``.
    like : torch.Tensor
        Gives the dtype and the device.
    event_dim : int, default 2
        Trailing dimensions forming one image.

    Returns
    -------
    callable
        ``r -> M^{-1} r``; its attribute ``inverse_diagonal`` is ``M^{-1}`` in the DCT basis.

    Raises
    ------
    ValueError
        When ``A 1 = 0`` (the posterior is improper).

    Examples
    --------
    >>> import torch
    >>> from bayes_restore.operators import Identity
    >>> prec = dct_preconditioner(Identity(), (8, 8), 0.1, 1.0, torch.zeros(()).double())
    >>> round(prec(torch.ones(8, 8, dtype=torch.float64))[0, 0].item(), 12)  # 1 / (1 / 0.1^2)
    0.01
    """
    h, w = shape[-2:]
    mu = laplacian_eigenvalues(h, w, dtype=like.dtype, device=like.device)
    ones = torch.ones(shape, dtype=like.dtype, device=like.device)
    dims = tuple(range(-event_dim, 0))
    n_pixels = math.prod(shape[-event_dim:])
    c = (operator.forward(ones) ** 2).sum(dims, keepdim=True) / (n_pixels * sigma**2)
    if not bool((c > 0).all()):
        raise ValueError(
            f"{operator!r} does not observe the constant image (A 1 = 0): the posterior is "
            "improper"
        )
    response = operator.dct_symbol(h, w, like)  # A^T A ~ diagonal in the DCT basis, if the
    if response is not None:                      # operator knows how (convolutions)
        c = c * response / response[0, 0]  # the constant image keeps its exact precision
    inv_m = 1.0 / (c + mu / scale**2)  # batch + (1,) * (event_dim - 2) + (H, W)

    def prec(r: torch.Tensor) -> torch.Tensor:
        return idct2(dct2(r) * inv_m)

    prec.inverse_diagonal = inv_m  # M^-1 in the DCT basis (a control variate's trace)
    return prec


#: draws solved together (bounded so that the PCG vectors stay within ~ 2^22 numbers each)
DRAW_BLOCK = 2**22


def pcg_posterior(problem, num_samples, generator, tol, max_iter, num_draws, precondition,
                  start, *, std_rtol=DEFAULT_STD_RTOL, max_draws=MAX_DRAWS) -> Posterior:
    """Mean by PCG, std and draws by perturb-and-optimise.

    See :func:`~bayes_restore.infer.exact_posterior`, whose ``solver="pcg"`` this is.
    ``num_draws=None``: draws are added until the std's relative Monte Carlo error at the
    median pixel is at most ``std_rtol`` (or ``max_draws`` are made); an integer fixes it.
    """
    y = problem.y.detach()
    op = problem.operator
    sigma, scale = problem.sigma, problem.scale  # batch + (1,) * event_dim
    event_dim = problem.event_dim
    batch = y.shape[: y.dim() - event_dim]
    shape = tuple(batch) + tuple(problem.prior.event_shape)  # the image's
    if tol is None:
        tol = 1e-5 if y.dtype in (torch.float32, torch.float16, torch.bfloat16) else 1e-6

    def adjoint(r: torch.Tensor) -> torch.Tensor:
        return op.adjoint_as(r, shape)  # a decimation's remainder rows included

    def apply_q(v: torch.Tensor) -> torch.Tensor:
        return adjoint(op.forward(v)) / sigma**2 - div(grad(v)) / scale**2

    prec = dct_preconditioner(op, shape, sigma, scale, y, event_dim=event_dim)
    solve_kw = dict(precondition=prec if precondition else None, tol=tol, max_iter=max_iter,
                    event_dim=event_dim)
    mean, iterations, residual, history = pcg(apply_q, adjoint(y) / sigma**2, **solve_kw)
    mean_ok = iterations < max_iter or float(residual.max()) <= tol

    fixed = num_draws is not None
    n_target = max(num_draws, num_samples) if fixed else max(MIN_DRAWS, num_samples)
    cap = n_target if fixed else max(max_draws, num_samples)
    block = max(1, DRAW_BLOCK // max(1, math.prod(shape)))
    noise_device = generator.device
    obs_shape, grad_shape = tuple(y.shape), shape[:-2] + (2,) + shape[-2:]
    sq = torch.zeros(shape, dtype=y.dtype, device=y.device)
    quad = torch.zeros(shape, dtype=y.dtype, device=y.device)
    kept, draw_iterations, draw_residual, n = [], 0, 0.0, 0
    error = math.inf
    while n < n_target:
        m = min(block, n_target - n)
        e1 = torch.randn((m,) + obs_shape, generator=generator, dtype=y.dtype,
                         device=noise_device).to(y.device)
        e2 = torch.randn((m,) + grad_shape, generator=generator, dtype=y.dtype,
                         device=noise_device).to(y.device)
        rhs = adjoint(e1) / sigma - div(e2) / scale  # covariance Q
        delta, it, res, _ = pcg(apply_q, rhs, **solve_kw)
        draw_iterations = max(draw_iterations, it)
        draw_residual = max(draw_residual, float(res.max()))
        d2 = delta**2
        sq += d2.sum(0)
        quad += (d2**2).sum(0)
        if n < num_samples:
            kept.append((mean + delta[: num_samples - n]).to(torch.float32))
        n += m
        error = _std_error(sq, quad, n, event_dim)
        if not fixed and n >= n_target and error > std_rtol and n < cap:
            # the error falls as 1 / sqrt(n): aim a little past the target
            n_target = min(cap, max(n + 1, math.ceil(1.1 * n * (error / std_rtol) ** 2)))
    std = torch.sqrt(sq / n)
    if not fixed and error > std_rtol:
        warnings.warn(
            f"perturb-and-optimise stopped at max_draws={cap} with a relative Monte Carlo "
            f"error of the std of {error:.3f} > std_rtol={std_rtol:g} at the median pixel",
            ConvergenceWarning,
            stacklevel=3,
        )
    draws_ok = draw_residual <= tol
    if not (mean_ok and draws_ok):
        warnings.warn(
            f"PCG stopped at max_iter={max_iter} with relative residual "
            f"{max(float(residual.max()), draw_residual):.2e} > tol={tol:g} "
            f"(mean: {iterations} iterations, draws: {draw_iterations})",
            ConvergenceWarning,
            stacklevel=3,
        )
    samples = torch.cat(kept).unsqueeze(0) if kept else None
    info = SolverInfo(solver="pcg", iterations=iterations, converged=mean_ok and draws_ok,
                      time=time.perf_counter() - start, gap=float(residual.max()),
                      history=history)
    return Posterior(
        method="exact", map=mean, mean=mean, std=std, samples=samples, info=info,
        diagnostics=ExactDiagnostics(
            observed=y, prior_scale=scale, sigma=sigma, std_method="perturb-optimise",
            num_draws=n,
            cg_iterations=iterations, cg_residual=float(residual.max()),
            draw_iterations=draw_iterations, draw_residual=draw_residual, tol=tol,
            preconditioner="dct" if precondition else None,
            std_mc_error=error, std_rtol=None if fixed else std_rtol,
        ),
    )


def _std_error(sq: torch.Tensor, quad: torch.Tensor, n: int, event_dim: int) -> float:
    """Relative standard error of the Monte Carlo std at the median pixel (worst image).

    With ``v = mean(d^2)`` and ``k = mean(d^4)`` over ``n`` draws, ``Var(v) ~ (k - v^2) / n``
    and the std ``sqrt(v)`` has the relative error ``sqrt((k / v^2 - 1) / n) / 2``
    (``sqrt(1 / (2 n))`` for Gaussian draws).
    """
    v = sq / n
    k = quad / n
    ratio = torch.where(v > 0, k / torch.where(v > 0, v * v, torch.ones_like(v)),
                        torch.full_like(v, 3.0))
    rel = 0.5 * torch.sqrt((ratio - 1).clamp_min(0) / n)
    per_image = rel.flatten(-event_dim).median(-1).values
    return float(per_image.max())
