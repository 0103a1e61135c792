"""Shared constants, argument checks and result bookkeeping of the TV solvers."""

from __future__ import annotations

import math
import time
import warnings

import torch

from bayes_restore._validation import broadcasts_to
from bayes_restore.exceptions import ConvergenceWarning
from bayes_restore.posterior import SolverInfo

__all__ = [
    "F64",
    "GRAD_NORM2",
    "check_options",
    "check_weight",
    "half_weight",
    "energy_unit",
    "relative_gap",
    "finish",
    "BACKENDS",
    "fused_kernels",
    "relaxed_primal_step",
]

F64 = torch.float64
#: ||grad||^2 <= 8 (Neumann forward differences in two dimensions)
GRAD_NORM2 = 8.0


def check_options(y, event_dim, vectorial, tol, max_iter, check_every, isotropic=True) -> None:
    """Validate the options every solver shares (``ValueError`` with the reason)."""
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


def check_weight(weight, y: torch.Tensor, event_dim: int) -> torch.Tensor:
    """The weight as a tensor broadcasting against ``y``, one value per image."""
    w = torch.as_tensor(weight, dtype=y.dtype, device=y.device)
    trailing = w.shape[max(0, w.dim() - event_dim):]
    if w.dim() > y.dim() or any(s != 1 for s in trailing) or not broadcasts_to(w.shape, y.shape):
        raise ValueError(
            f"weight must be a number or one per image, shape batch + (1,) * {event_dim}, "
            f"broadcasting against y {tuple(y.shape)}; got shape {tuple(w.shape)}"
        )
    if not bool(torch.isfinite(w).all()) or bool((w <= 0).any()):
        raise ValueError("weight must be finite and > 0")
    return w


def half_weight(weight: torch.Tensor) -> torch.Tensor:
    """``w = lambda / 2``: the weight of the half energy ``0.5 |A x - y|^2 + w TV(x)`` the
    quadratic-data solvers iterate on, from the public ``lambda`` of ``|A x - y|^2 +
    lambda TV(x)``. Internal: no public signature takes ``w``."""
    return weight * 0.5


def energy_unit(w: torch.Tensor) -> torch.Tensor:
    """Per image, the factor from the scaled problem's value (``u = x / w``: ``0.5 |A u -
    y / w|^2 + TV(u)``) to the public energy ``|A x - y|^2 + lambda TV(x) = 2 w^2 (...)``."""
    return 2.0 * w.square()


def relative_gap(primal: torch.Tensor, dual: torch.Tensor, unit: torch.Tensor):
    """Worst relative gap over the images, and the objective in the user's units.

    ``primal`` and ``dual`` are per-image values of the problem the solver iterates on;
    ``unit`` (per image) turns them into the public energy (the gap is scale-free).
    """
    rel = (primal - dual) / primal.clamp_min(torch.finfo(F64).tiny)
    return float(rel.max()), float((primal * unit).sum())


def record_check(primal: torch.Tensor, dual: torch.Tensor, best, unit: torch.Tensor, it: int,
                 history: list, checks: list | None = None):
    """One gap check's bookkeeping: the best dual value so far (``best``, ``None`` at the
    first check), the relative gap and objective against it (:func:`relative_gap`), the gap
    appended to ``history`` and ``(it, gap)`` to ``checks`` (if given). Returns ``(best,
    gap, objective)``."""
    best = dual if best is None else torch.maximum(best, dual)
    gap, objective = relative_gap(primal, best, unit)
    history.append(gap)
    if checks is not None:
        checks.append((it, gap))
    return best, gap, objective


def finish(x, solver, it, gap, objective, history, tol, max_iter, start, backend="torch"):
    """``(x, SolverInfo)``, with a :class:`ConvergenceWarning` at the iteration cap.

    Called by the public solvers themselves: the warning points at their caller.
    """
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


#: accepted values of the solvers' ``backend``
BACKENDS = ("auto", "numba", "torch")


def fused_kernels(module: str, like: torch.Tensor, vectorial: bool, backend: str):
    """The numba kernel module ``module`` (of this package) if it runs the problem, else None.

    ``backend="torch"``: None. ``"numba"``: the module, or an error saying why it cannot
    run (a device other than the CPU, a dtype other than float32/float64, vectorial TV,
    numba missing). ``"auto"``: the module where it runs and the JIT is on, else None.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "torch":
        return None
    if like.device.type != "cpu" or vectorial or like.dtype not in (torch.float32, F64):
        if backend == "numba":
            raise ValueError(
                "backend='numba' runs float32/float64 CPU tensors and non-vectorial TV only; "
                f"got device={like.device.type!r}, dtype={like.dtype}, vectorial={vectorial}"
            )
        return None
    try:
        package = __import__(__package__, fromlist=(module, "_rof_numba"))
        kernels, rof_kernels = getattr(package, module), package._rof_numba
    except Exception as err:  # numba missing, broken, or unable to cache on this machine
        if backend == "numba":
            raise ImportError(f"backend='numba' needs numba ({err})") from err
        return None
    if backend == "auto" and rof_kernels.jit_disabled():  # NUMBA_DISABLE_JIT: Python loops
        return None
    return kernels


def iterations_to_tol(checks: list[tuple[int, float]], tol: float) -> float:
    """Iterations after the last gap check until the certified gap reaches ``tol``, if it
    falls like ``k^-a`` (``checks``: ``(iteration, gap)`` pairs; ``a`` from the last two, at
    least 1, the non-accelerated rate)."""
    it, gap = checks[-1]
    a = 1.0
    if len(checks) >= 2:
        (k0, g0), (k1, g1) = checks[-2], checks[-1]
        if g1 < g0 and k1 > k0:
            a = max(1.0, math.log(g0 / g1) / math.log(k1 / k0))
    return it * ((gap / tol) ** (1.0 / a) - 1.0)


def relaxed_primal_step(ws, prox, u, uh, u_bar, v, p_old, tau: float, sigma: float,
                        rho: float) -> None:
    """One over-relaxed Chambolle-Pock step of the primal splitting (``K = grad``, the data
    term in the primal prox), in place: from ``(u, p)`` and ``uh = prox(u + tau div p)``,
    ``p <- p + rho (proj(p + sigma grad(2 uh - u)) - p)``, ``u <- u + rho (uh - u)``,
    ``v = u + tau div p``, ``uh = prox(v)``. ``p_old`` is scratch for ``p`` (``None`` when
    ``rho = 1``), ``u_bar`` scratch for ``2 uh - u``."""
    torch.sub(uh, u, out=u_bar)
    u_bar.add_(uh)  # 2 uh - u
    if p_old is not None:
        p_old.copy_(ws.p)
    ws.ascend(u_bar, sigma)
    if p_old is not None:
        ws.p.lerp_(p_old, 1.0 - rho)
    u.lerp_(uh, rho)
    ws.div_into(ws.p, v)
    v.mul_(tau).add_(u)  # v = u + tau div p
    prox.prox(v, uh)
