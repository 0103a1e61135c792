"""Variational inference with Pyro's SVI: mean-field or low-rank Gaussian guides over the image."""

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

__all__ = ["variational", "GUIDES"]

#: accepted values of ``variational(..., guide=...)``
GUIDES = ("normal", "lowrank")


def variational(
    model: Callable,
    *args: Any,
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
    **kwargs: Any,
) -> Posterior:
    r"""Approximate the posterior of a Pyro model with SVI and a Gaussian guide.

    ``guide="normal"`` is Pyro's ``AutoNormal`` (mean field: independent pixels);
    ``"lowrank"`` is ``AutoLowRankMultivariateNormal`` (diagonal plus rank ``rank``
    covariance). The guide's mean starts at the MAP (``init="map"``, computed by
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

    Returns
    -------
    Posterior
        ``method="vi"``, ``mean``, ``std`` (analytic from the guide), ``samples``
        ``(1, num_samples, *image)`` float32, ``diagnostics["elbo"]`` (the loss trace),
        ``diagnostics["guide"]`` (the fitted guide), ``info.converged``.

    Examples
    --------
    >>> import torch
    >>> from bayes_restore.models import restoration_model
    >>> from bayes_restore.priors import GaussianGradient
    >>> y = torch.rand(8, 8, dtype=torch.float64)
    >>> post = variational(restoration_model, y, prior=GaussianGradient(0.1, shape=(8, 8)),
    ...                    sigma=0.1, max_steps=2000, window=50, num_samples=10, seed=0)
    >>> post.std.shape, post.samples.shape
    (torch.Size([8, 8]), torch.Size([1, 10, 8, 8]))
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

    start = time.perf_counter()
    gen = make_generator(seed, generator, data_device(args, kwargs))
    svi_seed = draw_seed(gen)  # the first draw: the stream of the former generator= runs
    trace = initial_trace(model, args, kwargs)
    if isinstance(init, torch.Tensor):
        x0 = init.detach()
    elif init == "map":
        from bayes_restore.infer.map import map_estimate

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            x0 = map_estimate(model, *args, seed=draw_seed(gen), **kwargs).map.detach()
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
        diagnostics=VIDiagnostics(elbo=tuple(-v for v in losses), guide=g, observed=observed),
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
