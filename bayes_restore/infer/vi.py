"""Variational inference: structured Gaussian families for the package's models, Pyro SVI
(mean-field or low-rank Gaussian guides) for any other model."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import pyro
import pyro.poutine as poutine
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import AutoLowRankMultivariateNormal, AutoNormal
from pyro.infer.autoguide.initialization import init_to_median, init_to_value
from tqdm.auto import tqdm

from bayes_restore.exceptions import ConvergenceWarning
from bayes_restore.infer.generic import (
    DEFAULT_SEED,
    data_device,
    draw_seed,
    initial_trace,
    make_generator,
    model_arguments,
    seeded_global_rng,
)
from bayes_restore.models import X_SITE
from bayes_restore.posterior import Posterior, SolverInfo, VIDiagnostics

from .pcg import DEFAULT_STD_RTOL
from .problem import RestorationProblem, recognise

__all__ = ["variational", "GUIDES", "VI_ENGINES"]

#: accepted values of ``variational(..., guide=...)``
GUIDES = ("normal", "lowrank")
#: accepted values of ``variational(..., engine=...)``
VI_ENGINES = ("auto", "structured", "svi")


def variational(
    model: Callable,
    *args: Any,
    engine: str = "auto",
    learn: tuple[str, ...] = (),
    max_iter: int = 200,
    vb_tol: float = 1e-4,
    cg_tol: float | None = None,
    std_rtol: float = DEFAULT_STD_RTOL,
    guide: str = "normal",
    rank: int = 10,
    max_steps: int = 5000,
    lr: float = 0.01,
    tol: float = 0.02,
    window: int = 200,
    init: str | torch.Tensor = "map",
    num_samples: int = 100,
    init_scale: float | None = None,
    generator: torch.Generator | None = None,
    seed: int | None = DEFAULT_SEED,
    progress: bool = False,
    model_kwargs: Mapping[str, Any] | None = None,
    map_estimate: bool | None = None,
    confidence: tuple[float, float] | None = None,
    gradient_covariance: str | None = None,
    mean_correction: str | None = None,
    **kwargs: Any,
) -> Posterior:
    r"""Approximate the posterior of a Pyro model by a Gaussian: structured, or SVI's guide.

    Two engines (``engine="auto"`` takes the first whenever the model allows it):

    - ``"structured"``, for the package's own model (recognised by
      :func:`~bayes_restore.infer.problem.recognise`: a gradient prior and Gaussian noise
      with any operator). Deterministic (no Monte Carlo in the fit), fast, and with a
      family that holds the posterior or a close bound of it:

      - Gaussian-gradient prior (order 2): the posterior is Gaussian, so the best Gaussian
        *is* the posterior, ``N(m, Q^{-1})`` with ``Q = A^T A / sigma^2 + D^T D / b^2``:
        computed by :func:`~bayes_restore.infer.exact_posterior` (DCT closed forms for
        ``A = I``, a reflective symmetric blur, a box decimation; otherwise PCG for the
        mean and perturb-and-optimise draws, to ``std_rtol``, for the std).
      - Total variation (order 1): a Gaussian ``q(x) = N(m, Q^{-1})`` with
        ``Q = A^T A / sigma^2 + D^T W D / b``: ``W`` the ``2 x 2`` blocks per pixel of the
        exact Gaussian ELBO's stationary point (Opper & Archambeau 2009; expectations over
        each pixel's two correlated differences under ``q``) for isotropic TV, the per-pixel
        weights of TV's quadratic majoriser (Babacan, Molina & Katsaggelos 2008) otherwise;
        marginal variances by a locally stationary approximation
        (:func:`~bayes_restore.infer.variational_tv.tv_variational`). ``learn=("sigma",
        "scale")`` refines the noise level and the prior scale by VB-EM (on the bound).

    - ``"svi"``: Pyro's SVI with an autoguide, for any model with a latent ``"x"``.
      ``guide="normal"`` is Pyro's ``AutoNormal`` (mean field: independent pixels);
      ``"lowrank"`` is ``AutoLowRankMultivariateNormal`` (diagonal plus rank ``rank``
      covariance).

    SVI: the guide's mean starts at the MAP (``init="map"``, computed by
    :func:`~bayes_restore.infer.map_estimate`, fast for the package's own models), or at
    the data (``"data"``: ``A^T y``), never at prior draws (the priors are improper).
    Optimisation: Adam on the ELBO, its learning rate decaying to a tenth over
    ``max_steps``, until the mean loss of the last ``window`` steps improves on the
    window before by less than ``tol`` times the improvement since the first window.
    The stochastic ELBO leaves Monte Carlo noise in the mean (about 0.005 on a [0, 1]
    image at sigma = 0.1).

    Mean field is known to underestimate marginal variances when pixels are coupled
    (by the prior's gradients): compare with ``method="exact"`` on the Gaussian model.

    Parameters
    ----------
    model : callable
        A Pyro model with a latent image site ``"x"``.
    *args, **kwargs
        Passed to the model.
    model_kwargs : mapping, optional
        More keyword arguments of the model, kept apart from the engine's options (for a
        model that has its own ``tol``, ``seed``, ...).
    engine : {"auto", "structured", "svi"}, default "auto"
        ``"auto"``: the structured engine for the package's model (gradient prior of order
        1 or 2, Gaussian noise), SVI otherwise; ``"svi"`` forces SVI on any model;
        ``"structured"`` is a ``ValueError`` for a model it does not cover.
    learn : tuple of {"sigma", "scale"}, default ()
        Structured engine, TV prior: the parameters to refine by VB-EM (starting from the
        model's values); :func:`~bayes_restore.restore` passes them for the parameters it
        estimated. For the Gaussian-gradient prior use the exact evidence instead
        (:func:`~bayes_restore.hyper.gaussian_empirical_bayes`).
    max_iter : int, default 200
        Structured engine, TV: cap on the VB sweeps.
    vb_tol : float, default 1e-4
        Structured engine, TV: stop when the relative change of the mean (and of the
        learned parameters) between sweeps is at most this.
    cg_tol : float, optional
        Structured engine: relative residual of the conjugate-gradient solves (default
        ``1e-6`` in float64, ``1e-5`` in float32).
    std_rtol : float, default 0.05
        Structured engine, Gaussian prior with an operator without closed forms: the
        relative Monte Carlo error of the std (perturb-and-optimise draws).
    guide : {"normal", "lowrank"}, default "normal"
    rank : int, default 10
        Rank of the low-rank guide.
    max_steps : int, default 5000
    lr : float, default 0.01
        Adam's learning rate.
    tol : float, default 0.02
        Stop when the last window improves the mean loss by less than ``tol`` times the
        improvement since the first window.
    window : int, default 200
    init : {"map", "data"} or torch.Tensor, default "map"
        Starting mean of the guide.
    num_samples : int, default 100
        Guide draws kept in ``samples`` (one chain), for intervals and ArviZ.
    init_scale : float, optional
        Initial std of the guide (default: a tenth of the data's std).
    generator : torch.Generator, optional
        Source of randomness instead of ``seed`` (giving both is a ``ValueError``).
    seed : int or None, default 0
        Seeds every random draw of the run (the ELBO's Monte Carlo draws, the guide's
        draws, a generic MAP's starting point): the same call gives bit-identical results
        every time; another integer gives another independent run. ``None``: fresh entropy
        from the operating system (not reproducible). Pyro's SVI draws from torch's global
        RNG: it is seeded for the run and restored afterwards (CPU and the data's device),
        and the run uses a parameter store of its own, so neither the caller's global RNG
        state nor the caller's Pyro parameter store is changed. (Calling the returned
        ``diagnostics["guide"]`` later runs in the caller's store.)
    progress : bool, default False
        Progress bar over SVI steps.
    map_estimate : bool, optional
        Structured engine, TV: whether to return ``map``, the TV MAP at the final
        parameters, the restored image to read (at the TV posterior's own scale the
        posterior mean is a noisier image than the MAP). Default (``None``): yes, with any
        operator (for ``A = I`` the fused ROF solver, which also starts the sweeps; with an
        operator one certified primal-dual solve, 8-15 % more time with a blur);
        ``False`` skips it (``map`` is then ``None``). Ignored by the other families.
    confidence : (float, float), optional
        Structured engine, TV, with ``learn``: the confidence ``(gamma_sigma, gamma_b)`` in
        ``[0, 1)`` of the Gamma hyperpriors centred at the starting sigma and scale (each
        VB-EM update is ``gamma * start + (1 - gamma) * (maximum-likelihood update)``);
        default (``None``) the engine's,
        :data:`~bayes_restore.infer.variational_tv.DEFAULT_CONFIDENCE`.
    gradient_covariance : {"full", "isotropic"}, optional
        Structured engine, isotropic TV: what the weights read of the two differences at
        each pixel under ``q``: their full ``2 x 2`` covariance (the default, ``None``), or
        independent with equal variances (``"isotropic"``, the Rice moments: the engine
        before the full covariance, kept for comparison); see
        :func:`~bayes_restore.infer.variational_tv.tv_variational`.
    mean_correction : {"auto", "tilted", "none"}, optional
        Structured engine, TV: the first-order correction of ``q``'s mean by the tilted
        distributions (``"tilted"``), or ``q``'s mean (``"none"``); default (``None``) the
        engine's ``"auto"``: corrected with an operator, not for ``A = I``; see
        :func:`~bayes_restore.infer.variational_tv.tv_variational`.

    Returns
    -------
    Posterior
        ``method="vi"``, ``mean``, ``std``, ``samples`` ``(1, num_samples, *image)``
        float32, ``info.converged``, ``diagnostics["engine"]`` (``"structured"`` or
        ``"svi"``). SVI: ``std`` analytic from the guide, ``diagnostics["elbo"]`` (the
        loss trace), ``diagnostics["guide"]`` (the fitted guide). Structured:
        ``diagnostics["family"]`` (``"gaussian-exact"`` or ``"tv-majoriser"``),
        ``diagnostics["std_method"]``, ``diagnostics["sigma"]`` and
        ``diagnostics["prior_scale"]`` (per image, the learned values when ``learn``),
        ``diagnostics["learned"]``; TV also ``map`` (the TV MAP at the final parameters:
        at the TV posterior's own scale the posterior mean is a noisier image than the
        MAP; see ``map_estimate``), ``diagnostics["elbo"]`` (the bound per sweep) and
        ``diagnostics["cg_iterations"]``.

    Examples
    --------
    >>> import torch
    >>> from bayes_restore.models import restoration_model
    >>> from bayes_restore.priors import GaussianGradient
    >>> y = torch.rand(8, 8, dtype=torch.float64)
    >>> post = variational(restoration_model, y, prior=GaussianGradient(0.1, shape=(8, 8)),
    ...                    sigma=0.1, max_steps=2000, window=50, num_samples=10, seed=0)
    >>> post.std.shape, post.samples.shape, post.diagnostics["family"]
    (torch.Size([8, 8]), torch.Size([1, 10, 8, 8]), 'gaussian-exact')
    >>> svi = variational(restoration_model, y, prior=GaussianGradient(0.1, shape=(8, 8)),
    ...                   sigma=0.1, engine="svi", max_steps=300, window=20, tol=0.5,
    ...                   num_samples=0)
    >>> svi.diagnostics["engine"], svi.info.solver
    ('svi', 'svi-normal')
    """
    kwargs = model_arguments(kwargs, model_kwargs)
    if guide not in GUIDES:
        raise ValueError(f"guide must be one of {GUIDES}, got {guide!r}")
    for name, value in (("max_steps", max_steps), ("window", window), ("rank", rank)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not isinstance(num_samples, int) or num_samples < 0:
        raise ValueError(f"num_samples must be an integer >= 0, got {num_samples!r}")
    if not (lr > 0 and tol > 0):
        raise ValueError("lr and tol must be > 0")
    if not isinstance(init, torch.Tensor) and init not in ("map", "data"):
        raise ValueError(f"init must be 'map', 'data' or a tensor, got {init!r}")
    if engine not in VI_ENGINES:
        raise ValueError(f"engine must be one of {VI_ENGINES}, got {engine!r}")
    if engine != "svi":
        problem = recognise(model, args, kwargs)
        if _structured(problem):
            return _structured_posterior(
                model, args, kwargs, problem, learn=learn, max_iter=max_iter, vb_tol=vb_tol,
                cg_tol=cg_tol, std_rtol=std_rtol, num_samples=num_samples,
                generator=generator, seed=seed, map_estimate=map_estimate,
                confidence=confidence, gradient_covariance=gradient_covariance,
                mean_correction=mean_correction,
            )
        if engine == "structured":
            raise ValueError(
                "engine='structured' needs the package's model: a gradient prior of order 1 "
                "(TV) or 2 (Gaussian) with Gaussian noise; use engine='svi' for this model"
            )
    if learn:
        raise ValueError("learn= needs the structured engine (TV prior, Gaussian noise)")

    start = time.perf_counter()
    gen = make_generator(seed, generator, data_device(args, kwargs))
    svi_seed = draw_seed(gen)  # the first draw: the stream of the former generator= runs
    trace = initial_trace(model, args, kwargs)
    if isinstance(init, torch.Tensor):
        x0 = init.detach()
    elif init == "map":
        from bayes_restore.infer.map import map_estimate as map_solver

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            x0 = map_solver(model, *args, seed=draw_seed(gen), **kwargs).map.detach()
    elif init == "data":
        x0 = trace.nodes[X_SITE]["value"].detach()
    else:
        raise ValueError(f"init must be 'map', 'data' or a tensor, got {init!r}")
    dtype, device = x0.dtype, x0.device
    if init_scale is None:
        y_obs = _observed(trace)
        spread = float(y_obs.std()) if y_obs is not None and y_obs.numel() > 1 else 1.0
        init_scale = max(spread / 10, 1e-4)
    init_loc = init_to_value(values={X_SITE: x0}, fallback=init_to_median())

    with seeded_global_rng(svi_seed, device), pyro.get_param_store().scope():
        if guide == "normal":
            g = AutoNormal(model, init_loc_fn=init_loc, init_scale=init_scale)
        else:
            g = AutoLowRankMultivariateNormal(
                model, init_loc_fn=init_loc, init_scale=init_scale, rank=rank
            )
        decay = 0.1 ** (1.0 / max_steps)
        svi = SVI(model, g, pyro.optim.ClippedAdam({"lr": lr, "lrd": decay}), Trace_ELBO())
        losses: list[float] = []
        converged = False
        bar = tqdm(total=max_steps, desc=f"SVI ({guide})", disable=not progress, leave=False)
        try:
            for step in range(max_steps):
                loss = svi.step(*args, **kwargs)
                if not math.isfinite(loss):
                    raise FloatingPointError(f"the ELBO became {loss} at step {step}")
                losses.append(loss)
                bar.update(1)
                if step % 50 == 0:
                    bar.set_postfix(loss=f"{loss:.6g}", refresh=False)
                if len(losses) >= 3 * window and (step + 1) % window == 0:
                    first = sum(losses[:window]) / window
                    recent = sum(losses[-window:]) / window
                    before = sum(losses[-2 * window : -window]) / window
                    if before - recent <= tol * max(first - recent, 0.0):
                        converged = True
                        break
        finally:
            bar.close()
        mean, std = _guide_moments(g, model, args, kwargs, guide)
        samples = None
        if num_samples:
            with torch.no_grad():
                draws = [
                    poutine.trace(g).get_trace(*args, **kwargs).nodes[X_SITE]["value"]
                    for _ in range(num_samples)
                ]
            samples = torch.stack(draws).to(torch.float32).unsqueeze(0)
    if not converged:
        warnings.warn(
            f"SVI stopped at max_steps={max_steps} before the ELBO settled (tol={tol:.1e})",
            ConvergenceWarning,
            stacklevel=2,
        )
    info = SolverInfo(
        solver=f"svi-{guide}",
        iterations=len(losses),
        converged=converged,
        time=time.perf_counter() - start,
        objective=losses[-1] if losses else None,
        history=tuple(losses),
    )
    observed = _observed(trace)
    return Posterior(
        method="vi",
        mean=mean.to(dtype=dtype, device=device),
        std=std.to(dtype=dtype, device=device),
        samples=samples,
        info=info,
        diagnostics=VIDiagnostics(elbo=tuple(-v for v in losses), guide=g, observed=observed,
                                  extra={"engine": "svi"}),
    )


def _guide_moments(g, model, args, kwargs, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and marginal std of the image under the fitted guide (analytic)."""
    with torch.no_grad():
        if kind == "normal":
            return g.locs.x.detach().clone(), g.scales.x.detach().clone()
        posterior = g.get_posterior(*args, **kwargs)
        loc, var = posterior.loc, posterior.variance
        parts_mean = dict(
            (site["name"], v) for site, v in g._unpack_latent(loc)  # noqa: SLF001
        )
        parts_var = dict((site["name"], v) for site, v in g._unpack_latent(var))  # noqa: SLF001
        return parts_mean[X_SITE].clone(), parts_var[X_SITE].sqrt()


def _observed(trace) -> torch.Tensor | None:
    for site in trace.nodes.values():
        if site["type"] == "sample" and site["is_observed"] and torch.is_tensor(site["value"]):
            return site["value"].detach()
    return None


def _structured(problem: RestorationProblem | None) -> bool:
    """Whether the structured engine covers the recognised problem."""
    return (problem is not None and problem.noise == "gaussian"
            and problem.beta in (1.0, 2.0))


def _structured_posterior(model, args, kwargs, problem, *, learn, max_iter, vb_tol, cg_tol,
                          std_rtol, num_samples, generator, seed,
                          map_estimate=None, confidence=None,
                          gradient_covariance=None, mean_correction=None) -> Posterior:
    """The structured engine: the exact Gaussian (order 2) or VB with TV's majoriser (1)."""
    start = time.perf_counter()
    learn = tuple(learn)
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
    if not (isinstance(vb_tol, (int, float)) and vb_tol > 0):
        raise ValueError(f"vb_tol must be a number > 0, got {vb_tol!r}")
    if problem.beta == 2.0:
        if learn:
            raise ValueError(
                "learn= is for the TV prior: for the Gaussian-gradient prior the exact "
                "evidence gives sigma and the scale (hyper.gaussian_empirical_bayes)"
            )
        from .gaussian import exact_posterior

        post = exact_posterior(model, *args, num_samples=num_samples, generator=generator,
                               seed=seed, tol=cg_tol, std_rtol=std_rtol, **kwargs)
        d = post.diagnostics
        extra = {"engine": "structured", "family": "gaussian-exact",
                 "std_method": d["std_method"], "sigma": problem.sigma,
                 "prior_scale": problem.scale, "learned": ()}
        for key in ("num_draws", "std_mc_error", "aliasing"):
            if key in d:
                extra[key] = d[key]
        return Posterior(method="vi", mean=post.mean, std=post.std, samples=post.samples,
                         info=post.info,
                         diagnostics=VIDiagnostics(observed=problem.y.detach(), extra=extra))
    from .variational_tv import tv_variational

    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 0:
        raise ValueError(f"num_samples must be an integer >= 0, got {num_samples!r}")
    gen = make_generator(seed, generator, problem.y.device)
    extra_kw = {} if confidence is None else {"confidence": tuple(confidence)}
    if gradient_covariance is not None:
        extra_kw["gradient_covariance"] = gradient_covariance
    if mean_correction is not None:
        extra_kw["mean_correction"] = mean_correction
    q = tv_variational(problem, max_iter=max_iter, tol=vb_tol, learn=learn,
                       num_samples=num_samples, generator=gen, cg_tol=cg_tol,
                       map_estimate=map_estimate, **extra_kw)
    samples = None if q.samples is None else q.samples.to(torch.float32).unsqueeze(0)
    info = SolverInfo(solver="vb-tv", iterations=q.iterations, converged=q.converged,
                      time=time.perf_counter() - start, gap=q.history[-1] if q.history else None,
                      history=q.history)
    extra = {"engine": "structured", "family": "tv-majoriser",
             "weights": "exact" if problem.isotropic else "bound",
             "gradient_covariance": (gradient_covariance or "full") if problem.isotropic
             else None,
             "mean_correction": mean_correction or "auto",
             "std_method": "locally-stationary", "sigma": q.sigma, "prior_scale": q.scale,
             "learned": learn, "cg_iterations": q.cg_iterations}
    return Posterior(method="vi", map=q.map, mean=q.mean, std=q.std, samples=samples, info=info,
                     diagnostics=VIDiagnostics(elbo=q.elbo, observed=problem.y.detach(),
                                               extra=extra))
