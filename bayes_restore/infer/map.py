"""``map_estimate``: MAP of any Pyro model, through a fast exact solver when one fits the model."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyro.poutine as poutine
import torch
from pyro.poutine.util import site_is_subsample

from bayes_restore._validation import check_seed
from bayes_restore.likelihoods import GaussianLikelihood, LaplaceLikelihood
from bayes_restore.models import X_SITE, Y_SITE
from bayes_restore.operators import Identity, LinearOperator
from bayes_restore.posterior import Posterior, SolverInfo
from bayes_restore.priors import GradientPrior

from .gaussian import dct_map
from .generic import DEFAULT_SEED, generic_map, initial_trace
from .tv import tv_l1_pdhg, tv_map_pdhg

__all__ = ["map_estimate", "SOLVERS"]

#: accepted values of ``map_estimate(..., solver=...)``
SOLVERS = ("auto", "generic", "dct", "pdhg")


@dataclass(frozen=True)
class _LinearGaussianProblem:
    """A traced model that is exactly ``x ~ GradientPrior``, ``y ~ N(A x, sigma^2)``.

    With ``noise="laplace"`` it is ``y ~ Laplace(A x, sigma)`` instead (``sigma`` then
    the Laplace scale ``b_l``).
    """

    y: torch.Tensor
    prior: GradientPrior
    operator: LinearOperator
    sigma: torch.Tensor  # batch + (1,) * event_dim
    scale: torch.Tensor  # batch + (1,) * event_dim
    event_dim: int
    noise: str = "gaussian"

    @property
    def weight(self) -> torch.Tensor:
        """Gaussian: ``lambda = 2 sigma^2 / (beta b^beta)``; Laplace (TV): ``b_l / b``."""
        beta = self.prior.beta
        if self.noise == "laplace":
            return self.sigma / self.scale**beta
        return 2 * self.sigma**2 / (beta * self.scale**beta)


def _match_linear_gaussian(model: Callable, args: tuple, kwargs: dict):
    """Recognise the package's own prior + Gaussian (or Laplace) likelihood, else ``None``."""
    first = initial_trace(model, args, kwargs)
    sites = {
        n: s
        for n, s in first.nodes.items()
        if s["type"] == "sample" and not site_is_subsample(s)
    }
    if set(sites) != {X_SITE, Y_SITE} or not sites[Y_SITE]["is_observed"]:
        return None
    if not isinstance(sites[X_SITE]["fn"], GradientPrior):
        return None
    # trace again at a random image: the likelihood must observe the image itself
    x0 = sites[X_SITE]["value"]
    probe = torch.rand(x0.shape, generator=torch.Generator().manual_seed(0), dtype=x0.dtype)
    with poutine.block():
        trace = poutine.trace(poutine.condition(model, {X_SITE: probe.to(x0.device)})).get_trace(
            *args, **kwargs
        )
    prior, lik = trace.nodes[X_SITE]["fn"], trace.nodes[Y_SITE]["fn"]
    if not isinstance(prior, GradientPrior) or type(lik) not in _NOISE:
        return None
    x_value = trace.nodes[X_SITE]["value"]
    if lik.x.shape != x_value.shape or not torch.equal(lik.x, x_value):
        return None
    y = trace.nodes[Y_SITE]["value"]
    event_dim = len(prior.event_shape)
    if lik.event_dim != event_dim or y.shape != lik.batch_shape + lik.event_shape:
        return None
    noise = _NOISE[type(lik)]
    sigma = _per_image(lik.sigma if noise == "gaussian" else lik.scale, y.shape, event_dim, y)
    scale = _per_image(prior.scale.reshape(prior.scale.shape + (1,) * event_dim), y.shape,
                       event_dim, y)
    if sigma is None or scale is None:
        return None
    return _LinearGaussianProblem(y, prior, lik.operator, sigma, scale, event_dim, noise)


#: likelihood classes with a fast path (exact classes: a subclass may change the law)
_NOISE = {GaussianLikelihood: "gaussian", LaplaceLikelihood: "laplace"}


def _per_image(value: torch.Tensor, shape: torch.Size, event_dim: int, like: torch.Tensor):
    """``value`` as one number per image (``batch + (1,) * event_dim``), or None if it varies."""
    value = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    full = value.expand(torch.broadcast_shapes(value.shape, shape))
    if full.shape != shape:
        return None
    dims = tuple(range(-event_dim, 0))
    first = full.amax(dims, keepdim=True)
    if not torch.equal(full.amin(dims, keepdim=True), first):
        return None
    return first


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
    **kwargs: Any,
) -> Posterior:
    """Maximum a posteriori image of a Pyro model whose latent image site is ``"x"``.

    The model is traced once. When it is the package's own linear-Gaussian model
    (``x ~ GradientPrior``, ``y ~ GaussianLikelihood(x, sigma, A)`` and nothing
    else) and an exact fast solver exists for the pair, that solver runs:

    - ``"dct"``: Gaussian-gradient prior, ``A = I``: the closed form of the design page;
    - ``"pdhg"``: total variation (isotropic or anisotropic), any linear operator:
      accelerated Chambolle-Pock for ``A = I``, Chambolle-Pock with the data term in
      the primal prox (masks, box decimation, periodic blur) or with ``K = [grad; A]``
      otherwise, all stopped by a certified relative primal-dual gap
      (:func:`~bayes_restore.infer.tv_map_pdhg`); and TV with a
      :class:`~bayes_restore.likelihoods.LaplaceLikelihood` and ``A = I`` (TV-L1,
      :func:`~bayes_restore.infer.tv_l1_pdhg`).

    Otherwise the generic path maximises Pyro's log joint of all latent sites
    (L-BFGS, or Adam) until the objective settles.

    Parameters
    ----------
    model : callable
        A Pyro model with a latent site ``"x"``.
    *args, **kwargs
        Passed to the model. The keywords below are the engine's own and are not
        passed on.
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
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    if tol is not None and not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol!r}")
    if max_iter is not None and (not isinstance(max_iter, int) or max_iter < 1):
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
    check_seed(seed)  # on every path, drawing or not
    if solver != "generic":
        problem = _match_linear_gaussian(model, args, kwargs)
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
    return Posterior(method="map", map=x, info=info, diagnostics={"latents": values})


def _fast_solver(problem: _LinearGaussianProblem | None) -> str | None:
    if problem is None:
        return None
    if problem.noise == "laplace":  # TV-L1 for A = I; nothing fast otherwise
        identity = isinstance(problem.operator, Identity)
        return "pdhg" if problem.prior.beta == 1.0 and identity else None
    if problem.prior.beta == 2.0 and isinstance(problem.operator, Identity):
        return "dct"
    if problem.prior.beta == 1.0:
        return "pdhg"  # any linear operator: A in the dual
    return None


def _run_fast(name: str, problem: _LinearGaussianProblem, tol, max_iter) -> Posterior:
    y = problem.y.detach()
    if name == "dct":
        start = time.perf_counter()
        x = dct_map(y, problem.weight)
        info = SolverInfo(solver="dct", iterations=0, converged=True,
                          time=time.perf_counter() - start, gap=0.0)
    elif problem.noise == "laplace":
        # -log p(x | y) b_l = |x - y|_1 + (b_l / b) TV(x) + const: TV-L1
        x, info = tv_l1_pdhg(
            y,
            problem.weight,
            isotropic=problem.prior.isotropic,
            event_dim=problem.event_dim,
            tol=1e-4 if tol is None else tol,
            max_iter=20000 if max_iter is None else max_iter,
        )
    else:
        # E / 2 = 0.5 |A x - y|^2 + (lambda / 2) TV(x); tv_map_pdhg runs the accelerated
        # ROF solver for A = I and the primal-dual method with K = [grad; A] otherwise
        x, info = tv_map_pdhg(
            y,
            problem.weight / 2,
            problem.operator,
            isotropic=problem.prior.isotropic,
            event_dim=problem.event_dim,
            tol=1e-4 if tol is None else tol,
            max_iter=_pdhg_max_iter(problem.operator) if max_iter is None else max_iter,
        )
    return Posterior(method="map", map=x, info=info)


def _pdhg_max_iter(operator: LinearOperator) -> int:
    """Default cap: accelerated O(1/k^2) for ``A = I``, plain O(1/k) otherwise."""
    return 5000 if isinstance(operator, Identity) else 20000
