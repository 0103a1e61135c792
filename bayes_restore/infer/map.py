"""``map_estimate``: MAP of any Pyro model, through a fast exact solver when one fits the model."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import torch

from bayes_restore._validation import check_seed
from bayes_restore.models import X_SITE
from bayes_restore.operators import LinearOperator
from bayes_restore.posterior import MAPDiagnostics, Posterior, SolverInfo

from .gaussian import dct_map
from .generic import DEFAULT_SEED, generic_map, model_arguments
from .problem import RestorationProblem, recognise
from .tv import tv_l1_pdhg, tv_map_pdhg

__all__ = ["map_estimate", "SOLVERS"]

#: accepted values of ``map_estimate(..., solver=...)``
SOLVERS = ("auto", "generic", "dct", "pdhg")


def map_estimate(
    model: Callable,
    *args: Any,
    solver: str = "auto",
    tol: float | None = None,
    max_iter: int | None = None,
    progress: bool = False,
    init: torch.Tensor | None = None,
    optimizer: str = "lbfgs",
    seed: int | None = DEFAULT_SEED,
    model_kwargs: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> Posterior:
    """Maximum a posteriori image of a Pyro model whose latent image site is ``"x"``.

    The model is traced once. When it is the package's own linear-Gaussian model
    (``x ~ GradientPrior``, ``y ~ GaussianLikelihood(x, sigma, A)`` and nothing
    else) and an exact fast solver exists for the pair, that solver runs:

    - ``"dct"``: Gaussian-gradient prior, ``A = I``: the DCT closed form (see the
      Derivations page of the documentation);
    - ``"pdhg"``: total variation (isotropic or anisotropic), any linear operator:
      accelerated Chambolle-Pock for ``A = I``, Chambolle-Pock with the data term in
      the primal prox on fused numba kernels (every operator with an exact
      ``solve_normal``: masks, box decimation, blur) or with
      ``K = [grad; A]`` otherwise, all stopped by a certified relative primal-dual gap
      (:func:`~bayes_restore.infer.tv_map_pdhg`); and TV with a
      :class:`~bayes_restore.likelihoods.LaplaceLikelihood` and any linear operator
      (TV-L1, :func:`~bayes_restore.infer.tv_l1_pdhg`: Chambolle-Pock with the L1 prox
      for ``A = I``, pixel-diagonal operators and box decimation, ADMM for a blur
      diagonal in the FFT or the DCT, ``K = [grad; A]`` otherwise, all certified).

    Otherwise the generic path maximises Pyro's log joint of all latent sites
    (L-BFGS, or Adam) until the objective settles.

    Parameters
    ----------
    model : callable
        A Pyro model with a latent site ``"x"``.
    *args, **kwargs
        Passed to the model. The keywords below are the engine's own and are not
        passed on.
    model_kwargs : mapping, optional
        More keyword arguments of the model, kept apart from the engine's options (for a
        model that has its own ``tol``, ``seed``, ...).
    solver : {"auto", "generic", "dct", "pdhg"}, default "auto"
        ``"generic"`` forces the Pyro path (to compare with the fast one); naming a
        fast solver that does not fit the model raises ``ValueError``.
    tol : float, optional
        Stopping tolerance: relative primal-dual gap for ``"pdhg"`` (default 1e-4),
        relative objective decrease for the generic path (default 1e-9).
    max_iter : int, optional
        Iteration cap (default 5000 for ``"pdhg"`` with ``A = I``, 20000 with another
        ``A``, 2000 for the generic path).
    progress : bool, default False
        Progress bar for the generic path.
    init : torch.Tensor, optional
        Starting image of the generic path (default: the data, ``A^T y``).
    optimizer : {"lbfgs", "adam"}, default "lbfgs"
        Optimiser of the generic path.
    seed : int or None, default 0
        The fast solvers draw nothing (deterministic). The generic path draws the starting
        point of latent sites other than the image (their prior median, from prior draws)
        from this seed: the same call gives the same result every time. ``None``: fresh
        entropy from the operating system. The global RNG state is left untouched.

    Returns
    -------
    Posterior
        ``method="map"``, ``.map`` the MAP image (a tensor), ``.info`` a
        :class:`~bayes_restore.posterior.SolverInfo`, ``.diagnostics["latents"]`` the
        MAP of any other latent site (generic path).

    Examples
    --------
    >>> import torch
    >>> from bayes_restore.models import restoration_model
    >>> from bayes_restore.priors import TotalVariation
    >>> y = torch.rand(16, 16, dtype=torch.float64)
    >>> post = map_estimate(restoration_model, y, prior=TotalVariation(0.2, shape=(16, 16)),
    ...                     sigma=0.1)
    >>> post.info.solver, post.info.converged
    ('pdhg', True)
    """
    kwargs = model_arguments(kwargs, model_kwargs)
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    if tol is not None and not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol!r}")
    if max_iter is not None and (not isinstance(max_iter, int) or max_iter < 1):
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
    check_seed(seed)  # on every path, drawing or not
    if solver != "generic":
        problem = recognise(model, args, kwargs)
        fast = _fast_solver(problem)
        if solver in ("dct", "pdhg") and fast != solver:
            raise ValueError(
                f"solver={solver!r} does not fit this model (fits: {fast or 'generic only'})"
            )
        if fast is not None:
            return _run_fast(fast, problem, tol, max_iter)
    values, info = generic_map(
        model,
        args,
        kwargs,
        init=init,
        optimizer=optimizer,
        tol=1e-9 if tol is None else tol,
        max_iter=2000 if max_iter is None else max_iter,
        progress=progress,
        seed=seed,
    )
    x = values.pop(X_SITE)
    return Posterior(method="map", map=x, info=info, diagnostics=MAPDiagnostics(latents=values))


def _fast_solver(problem: RestorationProblem | None) -> str | None:
    if problem is None:
        return None
    identity = problem.operator.is_identity
    if problem.noise == "laplace":  # TV-L1, any linear operator; nothing fast otherwise
        return "pdhg" if problem.beta == 1.0 else None
    if problem.beta == 2.0 and identity:
        return "dct"
    if problem.beta == 1.0:
        return "pdhg"  # any linear operator
    return None


def _run_fast(name: str, problem: RestorationProblem, tol, max_iter) -> Posterior:
    y = problem.y.detach()
    if name == "dct":
        start = time.perf_counter()
        x = dct_map(y, problem.weight)
        info = SolverInfo(solver="dct", iterations=0, converged=True,
                          time=time.perf_counter() - start, gap=0.0)
    elif problem.noise == "laplace":
        # -log p(x | y) b_l = |A x - y|_1 + lambda TV(x) + const, lambda = b_l / b: TV-L1
        # (the splitting chosen by the operator's declared structure)
        x, info = tv_l1_pdhg(
            y,
            problem.weight,
            operator=None if problem.operator.is_identity else problem.operator,
            isotropic=problem.isotropic,
            event_dim=problem.event_dim,
            tol=1e-4 if tol is None else tol,
            max_iter=20000 if max_iter is None else max_iter,
        )
    else:
        # E = |A x - y|^2 + lambda TV(x); tv_map_pdhg runs the accelerated ROF solver
        # for A = I, else its fast path: the primal splitting on fused kernels where A
        # solves its normal equations exactly, the primal-dual method with K = [grad; A]
        # otherwise
        x, info = tv_map_pdhg(
            y,
            problem.weight,
            problem.operator,
            isotropic=problem.isotropic,
            event_dim=problem.event_dim,
            tol=1e-4 if tol is None else tol,
            max_iter=_pdhg_max_iter(problem.operator) if max_iter is None else max_iter,
        )
    return Posterior(method="map", map=x, info=info, diagnostics=MAPDiagnostics())


def _pdhg_max_iter(operator: LinearOperator) -> int:
    """Default cap: accelerated O(1/k^2) for ``A = I``, plain O(1/k) otherwise."""
    return 5000 if operator.is_identity else 20000
