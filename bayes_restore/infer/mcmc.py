"""``mcmc``: posterior sampling, by proximal Langevin (SK-ROCK, MYULA, LM) or Pyro's NUTS.

The public driver: it checks the options, recognises the model and runs the Langevin chains
(the kernels of :mod:`~bayes_restore.infer.langevin`, the scale draws of
:mod:`~bayes_restore.infer.scale`) or hands the model to NUTS
(:mod:`~bayes_restore.infer.nuts`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch
from tqdm.auto import tqdm

from bayes_restore._validation import check_int
from bayes_restore.models import THETA_HYPERPRIOR
from bayes_restore.posterior import MCMCDiagnostics, Posterior, sampler_info

from .draws import DrawStore
from .generic import DEFAULT_SEED, check_random_source, make_generator, model_arguments
from .langevin import (
    MAX_STAGES,
    SKROCK_MAX_STEP,
    SmoothedPotential,
    euler_step_size,
    lm_step,
    myula_step,
    scalar_or_list,
    skrock_coefficients,
    skrock_schedule,
    skrock_step,
)
from .nuts import MAX_TREE_DEPTH, run_nuts
from .problem import RestorationProblem, recognise
from .prox import tv_prox_dual
from .scale import gibbs_theta, scale_summary

__all__ = ["mcmc", "SAMPLERS", "skrock_coefficients"]

#: accepted values of ``mcmc(..., sampler=...)``
SAMPLERS = ("auto", "skrock", "myula", "lm", "nuts")

_DEFAULT_MAX_MEMORY = 1 << 30


def mcmc(
    model: Callable,
    *args: Any,
    sampler: str = "auto",
    num_samples: int = 1000,
    warmup: int | None = None,
    num_chains: int = 2,
    thin: int = 1,
    generator: torch.Generator | None = None,
    seed: int | None = DEFAULT_SEED,
    max_memory: int = _DEFAULT_MAX_MEMORY,
    progress: bool = False,
    smoothing: float = 0.01,
    step_size: float | None = None,
    stages: int | None = None,
    prox_iter: int = 5,
    target_accept: float = 0.8,
    max_tree_depth: int = 10,
    sample_scale: bool = False,
    scale_prior: tuple[float, float] = THETA_HYPERPRIOR,
    scale_every: int = 1,
    model_kwargs: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> Posterior:
    r"""Sample the posterior of a Pyro model whose latent image site is ``"x"``.

    Two families of samplers:

    - **Proximal Langevin** (``"skrock"``, ``"myula"``, ``"lm"``) for the package's own
      linear-Gaussian model with a gradient prior of order 1 (total variation,
      isotropic or anisotropic) or 2 (Gaussian gradient): ``x ~ GradientPrior``,
      ``y ~ GaussianLikelihood(x, sigma, A)`` with any operator ``A`` that has
      ``forward``, ``adjoint`` and ``norm_bound``. The non-smooth TV term is
      replaced by its Moreau-Yosida envelope of parameter
      ``lambda_MY = smoothing / L_f`` (``L_f = ||A||^2 / sigma^2``, so
      ``lambda_MY = smoothing * sigma^2`` for denoising), whose gradient is
      ``(x - prox_{lambda_MY g}(x)) / lambda_MY``; the prox is a warm-started TV
      prox (:func:`~bayes_restore.infer.prox.tv_prox`). MYULA (Durmus, Moulines &
      Pereyra 2018) is the Euler step of the Langevin diffusion

      .. math::

          x_{k+1} = x_k - \delta \nabla U_\lambda(x_k) + \sqrt{2 \delta}\, z_k ;

      SK-ROCK (Pereyra, Vargas Mieles & Zygalakis 2020) replaces it by an
      ``s``-stage stabilised Runge-Kutta-Chebyshev step whose stable step grows
      like ``s^2`` for ``s`` gradient evaluations (the fastest here, with a std a few
      percent low: see ``step_size``). ``"lm"`` is MYULA with the Leimkuhler-Matthews
      noise ``sqrt(delta / 2) (z_k + z_{k+1})``, whose stationary law is exact on
      Gaussian targets at any stable step (MYULA's Euler step is too wide there). All
      three are unadjusted: their bias comes from ``lambda_MY`` and ``delta``; keep
      ``smoothing <= 0.03`` (at 0.1 the std is about 10 % too high). Chains run in
      parallel as a batch.
    - **NUTS** (``"nuts"``): Pyro's No-U-Turn sampler for *any* Pyro model with a
      latent site ``"x"`` (small images: its cost grows quickly with the size).
      Chains run one after the other, each started at the data
      (``init_to_value``), with ``max_plate_nesting`` read from the model.

    ``"auto"`` picks ``"skrock"`` for TV, ``"lm"`` for the Gaussian-gradient prior
    (exact there; :func:`~bayes_restore.infer.gaussian_posterior_std` is exact and
    faster still for ``A = I``), else ``"nuts"``.

    With ``sample_scale=True`` (TV, Gaussian likelihood, Langevin samplers) the prior
    scale is sampled with the image: the model becomes the hierarchical one of
    :func:`~bayes_restore.models.hierarchical_tv_model` (any operator ``A``),

    .. math::

        \theta = 1 / b \sim \mathrm{Gamma}(\alpha, \beta_0), \quad
        x \mid \theta \sim \mathrm{TV}(b), \quad y \mid x \sim \mathcal{N}(A x, \sigma^2 I),

    sampled by Gibbs-within-Langevin: ``scale_every`` Langevin steps on ``x | y, theta``,
    then an exact draw ``theta | x ~ Gamma(alpha + N - C, beta0 + TV(x))``
    (:func:`~bayes_restore.infer.scale.gibbs_theta`), one ``theta`` per chain and image,
    started at ``1 / b`` of the model's prior. ``"auto"`` then picks ``"lm"``.

    Parameters
    ----------
    model : callable
        A Pyro model with a latent site ``"x"``.
    *args, **kwargs
        Passed to the model. The keywords below are the engine's own.
    model_kwargs : mapping, optional
        More keyword arguments of the model, kept apart from the engine's options (for a
        model that has its own ``tol``, ``seed``, ...).
    sampler : {"auto", "skrock", "myula", "lm", "nuts"}, default "auto"
        Forcing a Langevin sampler on a model it does not fit raises ``ValueError``.
    num_samples : int, default 1000
        Draws per chain after warm-up (a draw every ``thin`` steps).
    warmup : int, optional
        Steps discarded at the start of each chain (NUTS: adaptation steps).
        Default: ``num_samples // 4`` (at least 50) for Langevin, ``num_samples`` for NUTS.
    num_chains : int, default 2
        Independent chains.
    thin : int, default 1
        Keep every ``thin``-th step as a draw.
    generator : torch.Generator, optional
        Source of randomness instead of ``seed`` (giving both is a ``ValueError``); on the
        data's device for the Langevin samplers.
    seed : int or None, default 0
        Seeds every random draw of the run (Langevin noise, Gibbs draws of the scale, each
        NUTS chain): the same call gives bit-identical results every time; another integer
        gives another independent run. ``None``: fresh entropy from the operating system
        (not reproducible). The draws come from a generator of their own on the data's
        device; NUTS, which draws from torch's global RNG, runs with it seeded and restores
        it afterwards (CPU and the data's device): the caller's global RNG state is left
        untouched.
    max_memory : int, default 1 GiB
        Bound in bytes on the stored draws (float32). When all draws do not fit,
        every ``k``-th draw is stored; ``mean`` and ``std`` still use all draws. One draw
        of all chains must fit (this bounds ``num_chains``). NUTS keeps every draw of
        its chains (Pyro stores them): ``num_samples * (thin + num_chains)`` images must fit.
    progress : bool, default False
        Show a progress bar.
    smoothing : float, default 0.01
        Langevin/TV only: ``lambda_MY * L_f`` (``lambda_MY / sigma^2`` for denoising).
    step_size : float, optional
        Langevin only: the step ``delta`` in units of ``1 / L_f``. Default: SK-ROCK
        0.25 (with the fewest stages that keep it stable), MYULA ``1 / L`` and LM
        ``1.5 / L`` with ``L = L_f + 1 / lambda_MY`` (TV) or ``L_f + 8 / b^2``
        (Gaussian) the Lipschitz constant of the smoothed potential. SK-ROCK's std
        comes out low, on TV by up to about ``0.15 * step_size`` relative (the
        measurements are on the Uncertainty page of the documentation).
        Bounds, beyond which the step is reduced with a ``UserWarning`` that gives the
        step used: SK-ROCK 1 (its accuracy limit), MYULA ``1 / L`` and
        LM ``1.9 / L`` (their stability limits, ``1 / (1 + 1 / smoothing)`` and
        ``1.9 / (1 + 1 / smoothing)`` in units of ``1 / L_f`` for TV denoising).
    stages : int, optional
        SK-ROCK only: number of stages ``2 <= s <= 100`` (gradient evaluations per step);
        by default the fewest that keep the step stable. When those would exceed 100 (a
        ``smoothing`` below about ``1.3e-5`` at the default step, or a Gaussian prior
        scale below about ``sigma / 100``) it is a ``ValueError``: with the step that 100
        stages keep stable, the chains would barely move.
    prox_iter : int, default 5
        Langevin/TV only: dual iterations of each warm-started TV prox.
    target_accept : float, default 0.8
        NUTS only: target acceptance probability of the step-size adaptation, in (0, 1).
    max_tree_depth : int, default 10
        NUTS only: at most 15 (up to ``2^depth - 1`` gradient evaluations per draw).
    sample_scale : bool, default False
        Langevin/TV only: sample ``theta = 1 / b`` jointly with the image (above).
        ``theta`` is often weakly identified, so a small bias of the sampler's ``TV(x)``
        moves it far: SK-ROCK's TV, a few percent low at its default step, is enough to
        move it by a large factor, while ``"lm"`` (exact on Gaussian targets) finds it;
        hence ``"auto"`` -> ``"lm"``. The Moreau-Yosida smoothing biases it too. Both are
        measured on the Parameter-free restoration page of the documentation. The
        chain in ``theta`` moves slowly: use a long ``warmup`` and check
        ``to_arviz()``'s ``"scale"`` (ESS, R-hat).
    scale_prior : (float, float), default ``models.THETA_HYPERPRIOR`` = (1.0, 0.01)
        Shape ``alpha`` and rate ``beta0`` of the Gamma hyperprior on ``theta``, the
        defaults of :func:`~bayes_restore.models.hierarchical_tv_model`.
    scale_every : int, default 1
        Langevin steps between two Gamma draws of ``theta``.

    Returns
    -------
    Posterior
        ``method="mcmc"``; ``mean`` and ``std`` per pixel over all chains and draws
        (the data's dtype), ``samples`` a float32 tensor of shape
        ``(chain, draw, *image_shape)``, ``map=None``, and ``diagnostics``: the
        sampler, step size, ``lambda_MY``, stages, acceptance rate (NUTS), wall
        time, gradient and prox evaluations, draws kept, ``"gaussian": False``. With
        ``sample_scale``: ``"scale_samples"``, the draws of ``b`` (float64, shape
        ``(chain, draw)``, or ``(chain, draw, *batch)`` for a batch of images, thinned as
        ``samples``), and ``"scale"``, their summary over all draws: ``mean``, ``std``,
        ``interval`` (the equal-tailed 90 % interval), ``theta_mean``, ``scale_prior``,
        ``scale_every`` (floats for one image, lists per image for a batch).
        :meth:`Posterior.to_arviz` shows the draws as a variable ``"scale"``.

    Raises
    ------
    ValueError
        For a bad option, or a Langevin sampler forced on a model it does not fit.
    TypeError
        For a ``seed`` that is not an integer (or ``None``).

    Examples
    --------
    >>> import torch
    >>> from bayes_restore.models import restoration_model
    >>> from bayes_restore.priors import TotalVariation
    >>> y = torch.rand(16, 16, generator=torch.Generator().manual_seed(0))
    >>> post = mcmc(restoration_model, y, prior=TotalVariation(0.2, shape=(16, 16)),
    ...             sigma=0.1, num_samples=100, seed=0)
    >>> post.diagnostics["sampler"], tuple(post.samples.shape)
    ('skrock', (2, 100, 16, 16))

    The scale sampled with the image (the hierarchical model):

    >>> post = mcmc(restoration_model, y, prior=TotalVariation(0.2, shape=(16, 16)),
    ...             sigma=0.1, num_samples=100, seed=0, sample_scale=True)
    >>> tuple(post.diagnostics["scale_samples"].shape), sorted(post.diagnostics["scale"])[:3]
    ((2, 100), ['interval', 'mean', 'prob'])
    """
    model_kwargs = model_arguments(kwargs, model_kwargs)
    _check_options(sampler, num_samples, warmup, num_chains, thin, max_memory, smoothing,
                   step_size, stages, prox_iter, generator, seed, target_accept, max_tree_depth)
    scale_prior = _check_scale_options(sample_scale, scale_prior, scale_every, sampler)
    problem = None
    if sampler != "nuts":
        problem = recognise(model, args, model_kwargs)
        reason = _langevin_misfit(problem)
        if sample_scale:
            reason = reason or _scale_misfit(problem)
            if reason is not None:
                raise ValueError(f"sample_scale=True does not fit this model: {reason}; it "
                                 "needs a TV prior (beta = 1) with a Gaussian likelihood")
        if reason is not None and sampler in ("skrock", "myula", "lm"):
            raise ValueError(f"sampler={sampler!r} does not fit this model: {reason}; "
                             "use sampler='nuts' (any Pyro model, small images)")
        if sampler == "auto":
            if reason is not None:
                sampler = "nuts"
            elif sample_scale:  # SK-ROCK's small TV bias moves theta a lot: see sample_scale
                sampler = "lm"
            else:
                sampler = "skrock" if problem.beta == 1.0 else "lm"
    if sampler == "nuts":
        return run_nuts(model, args, model_kwargs, num_samples=num_samples, warmup=warmup,
                        num_chains=num_chains, thin=thin, generator=generator, seed=seed,
                        max_memory=max_memory, progress=progress,
                        target_accept=target_accept, max_tree_depth=max_tree_depth)
    assert problem is not None
    return _run_langevin(problem, sampler, num_samples=num_samples, warmup=warmup,
                         num_chains=num_chains, thin=thin, generator=generator, seed=seed,
                         max_memory=max_memory, progress=progress, smoothing=smoothing,
                         step_size=step_size, stages=stages, prox_iter=prox_iter,
                         scale_prior=scale_prior if sample_scale else None,
                         scale_every=scale_every)


# --- checks --------------------------------------------------------------------------------


def _check_options(sampler, num_samples, warmup, num_chains, thin, max_memory, smoothing,
                   step_size, stages, prox_iter, generator, seed, target_accept,
                   max_tree_depth) -> None:
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    check_int(num_samples, "num_samples", 1)
    if warmup is not None:
        check_int(warmup, "warmup", 0)
    check_int(num_chains, "num_chains", 1)
    check_int(thin, "thin", 1)
    check_int(max_memory, "max_memory", 1)
    check_int(prox_iter, "prox_iter", 1)
    if stages is not None and check_int(stages, "stages", 2) > MAX_STAGES:
        raise ValueError(
            f"stages must be an integer in [2, {MAX_STAGES}], got {stages!r} (each stage is "
            f"a gradient evaluation; the step is bounded by {SKROCK_MAX_STEP:g} / L_f anyway)"
        )
    if check_int(max_tree_depth, "max_tree_depth", 1) > MAX_TREE_DEPTH:
        raise ValueError(
            f"max_tree_depth must be an integer in [1, {MAX_TREE_DEPTH}], got "
            f"{max_tree_depth!r} (up to 2^depth - 1 gradient evaluations per draw)"
        )
    if not (isinstance(target_accept, (int, float)) and not isinstance(target_accept, bool)
            and 0 < target_accept < 1):
        raise ValueError(f"target_accept must be a number in (0, 1), got {target_accept!r}")
    if not (isinstance(smoothing, (int, float)) and 0 < smoothing < math.inf):
        raise ValueError(f"smoothing must be a positive number, got {smoothing!r}")
    if step_size is not None and not (
        isinstance(step_size, (int, float)) and 0 < step_size < math.inf
    ):
        raise ValueError(f"step_size must be a positive number, got {step_size!r}")
    check_random_source(seed, generator)


def _check_scale_options(sample_scale, scale_prior, scale_every, sampler) -> tuple[float, float]:
    if not isinstance(sample_scale, bool):
        raise ValueError(f"sample_scale must be True or False, got {sample_scale!r}")
    try:
        alpha, beta0 = (float(v) for v in scale_prior)
    except (TypeError, ValueError):
        raise ValueError(
            f"scale_prior must be a pair (alpha, beta0) of positive numbers, got {scale_prior!r}"
        ) from None
    if not (0 < alpha < math.inf and 0 < beta0 < math.inf):
        raise ValueError(
            f"scale_prior must be a pair (alpha, beta0) of positive numbers, got {scale_prior!r}"
        )
    check_int(scale_every, "scale_every", 1)
    if sample_scale and sampler == "nuts":
        raise ValueError(
            "sample_scale=True runs inside the Langevin samplers, not NUTS: to sample the "
            "scale with NUTS give it a model with a scale site, e.g. "
            "bayes_restore.models.hierarchical_tv_model"
        )
    return alpha, beta0


def _scale_misfit(problem: RestorationProblem) -> str | None:
    """Why the scale cannot be sampled with the image (``None`` if it can)."""
    if problem.beta != 1.0:
        return f"the prior has order beta={problem.beta:g}, not 1 (TV)"
    return None


def _langevin_misfit(problem: RestorationProblem | None) -> str | None:
    """Why the proximal Langevin samplers cannot run on the model (``None`` if they can)."""
    if problem is None:
        return ("it is not the package's linear-Gaussian model (x ~ GradientPrior, "
                "y ~ GaussianLikelihood(x, sigma, A), nothing else)")
    if problem.noise != "gaussian":
        return f"the likelihood is {problem.noise}, not Gaussian"
    if problem.beta not in (1.0, 2.0):
        return f"the prior has order beta={problem.beta:g} (supported: 1 = TV, 2 = Gaussian)"
    op = problem.operator
    if not all(hasattr(op, n) for n in ("forward", "adjoint", "norm_bound")):
        return "the operator lacks forward/adjoint/norm_bound"
    return None


def _make_generator(generator, seed, device: torch.device) -> torch.Generator:
    """The run's generator (``seed``'s on ``device``, or ``generator``, checked to be there)."""
    gen = make_generator(seed, generator, device)
    if gen.device != torch.device(device):
        raise ValueError(f"generator is on {gen.device} but the data are on {device}: the "
                         "Langevin draws need a generator on the data's device")
    return gen


# --- proximal Langevin -----------------------------------------------------------------------


def _run_langevin(problem: RestorationProblem, sampler: str, *, num_samples, warmup,
                  num_chains, thin, generator, seed, max_memory, progress, smoothing,
                  step_size, stages, prox_iter, scale_prior=None, scale_every=1) -> Posterior:
    """The Langevin chains of :func:`mcmc`, in parallel as a batch (options checked there)."""
    start = time.perf_counter()
    y = problem.y.detach()
    device, dtype = y.device, y.dtype
    gen = _make_generator(generator, seed, device)
    l_f = problem.operator.norm_bound**2 / problem.sigma.square()  # per image
    if problem.beta == 1.0:
        lambda_my = smoothing / l_f
        l_g = 1.0 / lambda_my
    else:
        lambda_my = None
        l_g = 8.0 / problem.scale.square()
    lip = l_f + l_g
    ratio = float((lip / l_f).max())  # condition bound L / L_f
    if sampler == "skrock":
        s, coef, delta = skrock_schedule(step_size, stages, l_f, lip, ratio, lambda_my,
                                         smoothing)
    else:
        s = 1
        coef = None
        delta = euler_step_size(sampler, step_size, l_f, lip, ratio)
    delta = delta.to(dtype)
    sqrt_2delta = torch.sqrt(2 * delta)
    potential = SmoothedPotential(problem, lambda_my, prox_iter)
    if warmup is None:
        warmup = max(50, num_samples // 4)

    x0 = _initial_x(problem)
    shape = tuple(x0.shape)  # the image's, not the observation's (decimation)
    # before the chains exist: an absurd num_chains is refused, not allocated
    store = DrawStore(num_chains, num_samples, shape, device, max_memory)
    x = x0.expand((num_chains,) + shape).clone()
    if lambda_my is not None:  # a converged dual at the start; later calls warm-start from it
        potential.dual = tv_prox_dual(x, potential.prox_weight.to(dtype),
                                      isotropic=problem.isotropic, num_iter=50)
    thetas: list[torch.Tensor] = []
    if scale_prior is not None:  # Gibbs: theta per chain and image, from the model's 1 / b
        batch = tuple(problem.scale.shape[: problem.scale.dim() - problem.event_dim])
        theta = (1.0 / problem.scale.to(torch.float64)).reshape(batch).expand(
            (num_chains,) + batch)
        potential.set_theta(theta.to(dtype))
    total = warmup + num_samples * thin
    bar = tqdm(total=total, desc=f"MCMC ({sampler})", disable=not progress, leave=False)

    def noise() -> torch.Tensor:
        return torch.randn(x.shape, generator=gen, device=device, dtype=dtype)

    xi_prev = noise() if sampler == "lm" else None
    with torch.no_grad():
        for step in range(total):
            if sampler == "lm":
                xi = noise()
                x = lm_step(x, potential.grad(x), delta, xi, xi_prev)
                xi_prev = xi
            elif coef is None:
                x = myula_step(x, potential.grad(x), delta, noise(), sqrt_2delta)
            else:
                x = skrock_step(x, potential.grad, delta, sqrt_2delta * noise(), coef, s)
            if scale_prior is not None and (step + 1) % scale_every == 0:
                # exact theta | x (the Gamma conditional of the hierarchical model, on the
                # un-smoothed TV of the current x); x's next steps target p(x | y, theta)
                theta = gibbs_theta(x, *scale_prior, gen, isotropic=problem.isotropic,
                                    event_dim=problem.event_dim)
                potential.set_theta(theta.to(dtype))
            if step >= warmup and (step - warmup + 1) % thin == 0:
                store.add(x)
                if scale_prior is not None:
                    thetas.append(theta)
            bar.update(1)
    bar.close()
    if not bool(torch.isfinite(x).all()):
        raise FloatingPointError("the Langevin chain diverged (non-finite values)")
    mean, std = store.moments(num_chains, dtype)
    info = {
        "sampler": sampler,
        "step_size": scalar_or_list(delta),
        "lambda_MY": None if lambda_my is None else scalar_or_list(lambda_my),
        "smoothing": None if lambda_my is None else smoothing,
        "lipschitz": scalar_or_list(lip),
        "stages": s,
        "prox_iter": prox_iter if lambda_my is not None else 0,
        "num_chains": num_chains,
        "warmup": warmup,
        "thin": thin,
        "num_steps": total,
        "gradient_evaluations": potential.evaluations,
        "prox_evaluations": potential.evaluations if lambda_my is not None else 0,
        "num_draws": num_samples,
        "num_draws_kept": store.kept,
        "storage_thin": store.every,
        "acceptance_rate": None,
        "wall_time": time.perf_counter() - start,
    }
    if scale_prior is not None:
        info.update(scale_summary(torch.stack(thetas, 1), store.every, scale_prior,
                                  scale_every))
    return Posterior(method="mcmc", mean=mean, std=std, samples=store.samples, map=None,
                     info=sampler_info(sampler, total, info["wall_time"]),
                     diagnostics=MCMCDiagnostics(**info))


def _initial_x(problem: RestorationProblem) -> torch.Tensor:
    """Starting image of the Langevin chains: ``A^T y`` (the data for denoising)."""
    y = problem.y.detach()
    op = problem.operator
    return y.clone() if op.is_identity else op.adjoint(y).clone()
