"""``mcmc``: posterior sampling, by proximal Langevin (SK-ROCK, MYULA, LM) or Pyro's NUTS.

The public driver: it checks the options, recognises the model and runs the Langevin chains
(the kernels of :mod:`~bayes_restore.infer.langevin`, the scale draws of
:mod:`~bayes_restore.infer.scale`) or hands the model to NUTS
(:mod:`~bayes_restore.infer.nuts`).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Mapping
from time import process_time
from typing import Any

import torch
from tqdm.auto import tqdm

from bayes_restore._numba_pool import torch_threads
from bayes_restore._validation import check_int
from bayes_restore.models import THETA_HYPERPRIOR
from bayes_restore.posterior import (
    MCMCDiagnostics,
    Posterior,
    sampler_info,
    with_diagnostics,
)

from .draws import (
    BlockSums,
    DrawStore,
    QuantisedDraws,
    ThinnedDraws,
    convergence_diagnostics,
    monte_carlo_errors,
)
from .generic import DEFAULT_SEED, check_random_source, make_generator, model_arguments
from .langevin import (
    MAX_STAGES,
    SKROCK_MAX_STEP,
    SmoothedPotential,
    diagonal_metric,
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
from .tv import tv_map_pdhg

__all__ = ["mcmc", "SAMPLERS", "PRECONDITIONERS", "skrock_coefficients"]

#: accepted values of ``mcmc(..., sampler=...)``
SAMPLERS = ("auto", "skrock", "myula", "lm", "nuts")
#: accepted values of ``mcmc(..., preconditioner=...)``
PRECONDITIONERS = ("auto", "none", "diagonal")

_DEFAULT_MAX_MEMORY = 1 << 30
#: draws per chain kept for the diagnostics of a run to convergence (at most; memory permitting)
DIAGNOSTIC_DRAWS = 512
#: fewest draws per chain before the first convergence check
_FIRST_CHECK = 64
#: fewest kept draws per chain before ``max_time`` can stop a run (the diagnostics need 8)
_MIN_DRAWS = 8
#: NUTS's draws per chain when ``num_samples`` is not given (it does not run to convergence)
_NUTS_DRAWS = 1000
#: at most this many pixels in the screening check of a large image (then all pixels)
_SCREEN_PIXELS = 1 << 14
#: a fixed budget's diagnostics cover every pixel up to this many values (chain x draw x
#: pixel), else a grid of pixels (their cost grows like it: ~1 s per 2^24 on one core)
_FULL_DIAGNOSTICS = 1 << 24
#: values (pixel x chain x draw) the diagnostics handle at a time (their temporaries are
#: about 12 float32 copies of it: ~50 MiB)
_DIAGNOSTIC_CHUNK = 1 << 20
#: the chains' own working memory, in float32 images per chain (chain states, SK-ROCK
#: stages, noise, TV dual, data), counted when every pixel's draws are kept in 16 bits
_WORKING_IMAGES = 16
#: bytes per pixel kept aside for the diagnostics' results (six float64 maps and their
#: copies), plus a fixed 64 KiB (score tables, scratch)
_DIAGNOSTIC_TEMP = 64
#: draws per chain in the streaming sums before the 16-bit levels of the stored draws are
#: set (from the sums' mean and std of each pixel)
_CODE_START = 16


def mcmc(
    model: Callable,
    *args: Any,
    sampler: str = "auto",
    num_samples: int | None = None,
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
    prox_iter: int = 3,
    target_accept: float = 0.8,
    max_tree_depth: int = 10,
    sample_scale: bool = False,
    scale_prior: tuple[float, float] = THETA_HYPERPRIOR,
    scale_every: int = 1,
    model_kwargs: Mapping[str, Any] | None = None,
    target_ess: float = 100.0,
    target_rhat: float = 1.01,
    max_time: float | None = 600.0,
    diagnostic_draws: int = DIAGNOSTIC_DRAWS,
    preconditioner: str = "auto",
    init: torch.Tensor | None = None,
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
      ``lambda_MY = smoothing / max(L_f, 1 / b^2)`` (``L_f = ||A||^2 / sigma^2``, so
      ``lambda_MY = smoothing * sigma^2`` for denoising with ``b >= sigma``; ``b`` the
      prior's scale: where the prior is the stiffer term, e.g. x2 decimation at
      ``b = sigma``, the envelope follows the prior), whose gradient is
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
    num_samples : int, optional
        Draws per chain after warm-up (a draw every ``thin`` steps): a fixed budget. Default
        (``None``): the Langevin chains run until they have converged (below: ``target_rhat``,
        ``target_ess``, ``max_time``); NUTS draws 1000.
    warmup : int, optional
        Steps discarded at the start of each chain (NUTS: adaptation steps).
        Default: ``num_samples // 4`` (at least 50) for Langevin, 100 when running to
        convergence, ``num_samples`` for NUTS.
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
        A run to convergence keeps its streaming sums (32 float32 images per chain up to
        about 512 x 512 with two chains, 16 or 8 on a larger image) and its stored draws
        (at most ``diagnostic_draws`` per chain) for the diagnostics of every pixel: in
        float32 when they fit in ``max_memory / 2`` with the sums (the other half left to
        the chains' working memory); else, as 16-bit levels per pixel (half the memory,
        the same ranks: the rank-normalised R-hat and ESS are those of the dequantised
        draws, ``diagnostics["diagnostic_values"]``), when they fit in ``max_memory`` with
        the sums and an allowance for the chains' working memory (16 float32 images per
        chain): 512 x 512 with two chains at the default, whose ``samples`` are then every
        ``k``-th of them in float32, as many as fit beside them; else (above about
        650 x 650 with two chains at the default) for a grid of pixels (every
        ``diagnostic_stride``-th row and column, float32, in a quarter of ``max_memory / 2``):
        the ESS and the Monte Carlo errors are then those of the grid's pixels, the R-hat
        that of every pixel (every 12th at 2048 x 2048).
    progress : bool, default False
        Show a progress bar.
    smoothing : float, default 0.01
        Langevin/TV only: ``lambda_MY * max(L_f, 1 / b^2)`` (``lambda_MY / sigma^2`` for
        denoising with ``b >= sigma``).
    step_size : float, optional
        Langevin only: the step ``delta`` in units of ``1 / L_f`` (SK-ROCK: of
        ``1 / max(L_f, 1 / b^2)``, the larger of the data's and the prior's curvature, so
        that the step does not grow where the operator observes little, e.g. decimation).
        Default: SK-ROCK 0.25 (with the fewest stages that keep it stable), MYULA ``1 / L`` and LM
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
    prox_iter : int, default 3
        Langevin/TV only: dual iterations of each warm-started TV prox (the dual carries
        over from one gradient to the next, so a few suffice: against 5, 3 moved the std by
        0.1 % on a 32 x 32 crop and left the ESS per step at 512 x 512 unchanged, at 20 %
        less time per step).
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
    target_ess : float, default 100
        Run to convergence (no ``num_samples``): the bulk and the tail effective sample
        sizes every pixel must reach.
    target_rhat : float, default 1.01
        Run to convergence: the rank-normalised split R-hat every pixel must be below.
        Over many pixels the largest R-hat is mostly estimation noise: with ``P`` pixels of
        independent draws, ``max R-hat <= 1.01`` takes roughly ``4 (q_P - 1) / 0.02``
        effective draws per pixel, ``q_P`` the ``1 - 1/P`` quantile of ``chi^2_3 / 3`` (about
        1700 at 512 x 512 with two chains), whatever the sampler.
    max_time : float or None, default 600
        Run to convergence: the seconds after which the chains stop anyway, with a
        ``UserWarning`` giving what was reached (``None``: no bound). Checked after every
        step once the warm-up and the first 8 draws per chain (the fewest the diagnostics
        need) are done; the final diagnostics then take a little longer.
    diagnostic_draws : int, default 512
        Run to convergence: draws per chain kept for the diagnostics and returned as
        ``samples``, at most (and at most ``max_memory``). When full every other one is
        dropped, so they stay evenly spaced over the whole run (``diagnostic_thin``).
        ``mean`` and ``std`` are streaming sums over every draw.
    init : torch.Tensor, optional
        Langevin samplers: the image every chain starts at (the shape of ``x``; e.g. an
        earlier run's mean). Default: the data for denoising; with an operator the TV MAP
        (to a certified gap of 1e-3) for TV, ``A^T y`` for the Gaussian-gradient prior.
    preconditioner : {"auto", "none", "diagonal"}, default "auto"
        Langevin samplers. ``"diagonal"``: the preconditioned diffusion
        ``dx = -M grad U dt + sqrt(2 M) dW`` (same target) with ``M`` from the operator's
        declared structure (:func:`~bayes_restore.infer.langevin.diagonal_metric`): per
        pixel for a pixel-diagonal operator (a mask: 1 on observed pixels, ``k`` on
        unobserved ones, whose only curvature is the prior's), per DCT frequency for a
        reflective symmetric blur (``k / (1 + (k - 1) a^2 / ||A||^2)``, ``a^2`` the
        eigenvalues of ``A^T A``: ``k`` at the frequencies it removes), ``c (I - P) + f^2 P``
        for a box decimation by ``f`` (``P`` the block means: they move as a denoised pixel);
        ``k`` is 4 (mask) or 3.25 (blur) and ``c`` 2, or, with SK-ROCK and its default
        stages, ``b^2 / sigma^2`` when larger (the curvature of what the operator sees over
        the prior's; at most ``smoothing * 19667``, what 100 stages keep stable). The stable
        step and SK-ROCK's stages are those of the preconditioned potential. Any other
        operator: no preconditioning. ``"auto"`` (the same as ``"diagonal"``): at 128 x 128,
        ``sigma = b = 0.1`` (fixed budget of 2 x 2000 draws, one thread, seeds 0-3) the
        median CPU seconds per minimum-ESS sample are 1.6 x denoising's for the blur
        (4.1-4.8 before), 1.3 x for the x2 decimation (9-13 x unpreconditioned at the
        accurate step) and 1.6 x for a 50 % mask, every seed under 2 x (measured under
        load); on 32 x 32 the mean is within 0.01 of NUTS's at every pixel and the std
        1.3-2.6 % low on average.

    The run to convergence (the default for the Langevin samplers): after ``warmup``, the
    chains draw until, on every pixel, the rank-normalised split R-hat is at most
    ``target_rhat`` and the bulk and tail effective sample sizes (Vehtari, Gelman, Simpson,
    Carpenter & Buerkner 2021) at least ``target_ess``, or ``max_time`` has passed. ``mean``
    and ``std`` are streaming sums over all draws; the diagnostics are computed on a
    bounded, evenly thinned subset of the draws (``diagnostic_draws`` per chain, the
    ``samples``), checked each time it grows by a quarter (first on a grid of pixels, then
    on all of them) and as soon as the all-draw R-hat, looked at whenever a block of the
    streaming sums is full (at most every 1/8 more draws), has just met its target.
    Thinned draws are nearly independent once the spacing exceeds the
    autocorrelation time, so their effective sample size is a slight underestimate of the
    whole chain's: the stopping rule errs on the long side. ``progress=True`` shows the
    worst pixel's ESS and R-hat.

    Returns
    -------
    Posterior
        ``method="mcmc"``; ``mean`` and ``std`` per pixel over all chains and draws
        (the data's dtype), ``mean_mcse`` and ``std_mcse`` their Monte Carlo standard
        errors, ``samples`` a float32 tensor of shape
        ``(chain, draw, *image_shape)``, ``map=None``, and ``diagnostics``: the
        sampler, step size, ``lambda_MY``, stages, acceptance rate (NUTS), wall
        time, gradient and prox evaluations, draws kept, ``"gaussian": False``. With
        ``sample_scale``: ``"scale_samples"``, the draws of ``b`` (float64, shape
        ``(chain, draw)``, or ``(chain, draw, *batch)`` for a batch of images, thinned as
        ``samples``), and ``"scale"``, their summary over all draws: ``mean``, ``std``,
        ``interval`` (the equal-tailed 90 % interval), ``theta_mean``, ``scale_prior``,
        ``scale_every`` (floats for one image, lists per image for a batch).
        :meth:`Posterior.to_arviz` shows the draws as a variable ``"scale"``. The
        convergence fields of :class:`~bayes_restore.posterior.MCMCDiagnostics`
        (``converged``, ``rhat_max``, ``ess_bulk_min``, ``std_mc_error``, ...); ``info``'s
        ``converged`` is whether the targets were met.

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

    Until converged (the default), with the Monte Carlo error of the std map:

    >>> post = mcmc(restoration_model, y[:8, :8], prior=TotalVariation(0.2, shape=(8, 8)),
    ...             sigma=0.1, target_rhat=1.05, target_ess=50, seed=0)
    >>> d = post.diagnostics
    >>> d["converged"], d["rhat_max"] <= 1.05, d["ess_bulk_min"] >= 50
    (True, True, True)
    >>> d["std_mc_error"] < 0.1, tuple(post.std_mcse.shape)
    (True, (8, 8))

    The scale sampled with the image (the hierarchical model):

    >>> post = mcmc(restoration_model, y, prior=TotalVariation(0.2, shape=(16, 16)),
    ...             sigma=0.1, num_samples=100, seed=0, sample_scale=True)
    >>> tuple(post.diagnostics["scale_samples"].shape), sorted(post.diagnostics["scale"])[:3]
    ((2, 100), ['interval', 'mean', 'prob'])
    """
    model_kwargs = model_arguments(kwargs, model_kwargs)
    _check_options(sampler, num_samples, warmup, num_chains, thin, max_memory, smoothing,
                   step_size, stages, prox_iter, generator, seed, target_accept, max_tree_depth)
    targets = _check_targets(target_ess, target_rhat, max_time, diagnostic_draws)
    scale_prior = _check_scale_options(sample_scale, scale_prior, scale_every, sampler)
    if preconditioner not in PRECONDITIONERS:
        raise ValueError(f"preconditioner must be one of {PRECONDITIONERS}, got "
                         f"{preconditioner!r}")
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
        if init is not None:
            raise ValueError("init is for the Langevin samplers; NUTS starts at the data")
        if num_samples is None:
            num_samples = _NUTS_DRAWS
        post = run_nuts(model, args, model_kwargs, num_samples=num_samples, warmup=warmup,
                        num_chains=num_chains, thin=thin, generator=generator, seed=seed,
                        max_memory=max_memory, progress=progress,
                        target_accept=target_accept, max_tree_depth=max_tree_depth)
        return with_convergence(post, post.samples, None)
    assert problem is not None
    return _run_langevin(problem, sampler, num_samples=num_samples, warmup=warmup,
                         num_chains=num_chains, thin=thin, generator=generator, seed=seed,
                         max_memory=max_memory, progress=progress, smoothing=smoothing,
                         step_size=step_size, stages=stages, prox_iter=prox_iter,
                         scale_prior=scale_prior if sample_scale else None,
                         scale_every=scale_every, targets=targets,
                         preconditioner=preconditioner, init=init)


# --- checks --------------------------------------------------------------------------------


def _check_options(sampler, num_samples, warmup, num_chains, thin, max_memory, smoothing,
                   step_size, stages, prox_iter, generator, seed, target_accept,
                   max_tree_depth) -> None:
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    if num_samples is not None:
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


def _check_targets(target_ess, target_rhat, max_time, diagnostic_draws) -> dict:
    """The stopping rule of a run to convergence, checked."""
    number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)  # noqa: E731
    if not (number(target_ess) and 0 < target_ess < math.inf):
        raise ValueError(f"target_ess must be a positive number, got {target_ess!r}")
    if not (number(target_rhat) and 1 < target_rhat < math.inf):
        raise ValueError(f"target_rhat must be a number above 1, got {target_rhat!r}")
    if max_time is not None and not (number(max_time) and 0 < max_time):
        raise ValueError(f"max_time must be a positive number of seconds or None, got "
                         f"{max_time!r}")
    check_int(diagnostic_draws, "diagnostic_draws", 16)
    return {"ess": float(target_ess), "rhat": float(target_rhat),
            "max_time": math.inf if max_time is None else float(max_time),
            "draws": int(diagnostic_draws)}


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


def _noise_source(x: torch.Tensor, gen: torch.Generator, event_dim: int,
                  sqrt_2delta: torch.Tensor, threads: int) -> Callable[[bool, bool], torch.Tensor]:
    """``draw(scaled, reuse)``: standard normal draws of ``x``'s shape (times ``sqrt_2delta``,
    one per image, when ``scaled``; ``reuse``: into the same buffer at every call).

    On CPU in float32/float64 with numba: the counter-based generator of
    :func:`~bayes_restore.infer._langevin_numba.gaussian_noise` (its key drawn from ``gen``,
    the ``k``-th call its ``k``-th draw), split over ``threads`` threads with the same
    values whatever their number; the scale is applied in the same pass. Elsewhere (another
    device, ``NUMBA_DISABLE_JIT``): ``torch.randn`` from ``gen``.

    The numba source with one scale per image also has ``draw.deferred()``: the next scaled
    draw's buffer, ``(key, counter, scale)`` and ``fill`` (SK-ROCK's whole-step kernel fills
    the buffer itself, image by image; ``fill()`` draws the same values here instead).
    """
    shape, dtype, device = tuple(x.shape), x.dtype, x.device
    kernels = None
    if device.type == "cpu" and dtype in (torch.float32, torch.float64) and x.numel():
        try:
            from . import _langevin_numba as kernels
        except ImportError:  # numba missing
            kernels = None
        if kernels is not None and kernels.jit_disabled():
            kernels = None
    if kernels is None:
        def torch_draw(scaled: bool, reuse: bool) -> torch.Tensor:
            z = torch.randn(shape, generator=gen, device=device, dtype=dtype)
            return sqrt_2delta * z if scaled else z
        return torch_draw
    images = shape[: max(len(shape) - event_dim, 0)]
    try:  # one scale per image
        per_image = torch.broadcast_to(sqrt_2delta.to(dtype),
                                       images + (1,) * (len(shape) - len(images)))
        scale = per_image.reshape(-1).contiguous().numpy()
    except RuntimeError:  # not one per image: scaled by torch after the draw
        scale = None
    ones = torch.ones(max(1, math.prod(images)), dtype=dtype).numpy()
    key = kernels.noise_key(gen)
    buffer = torch.empty(shape, dtype=dtype)
    calls = [0]

    def numba_draw(scaled: bool, reuse: bool) -> torch.Tensor:
        out = buffer if reuse else torch.empty(shape, dtype=dtype)
        fused = scaled and scale is not None
        kernels.gaussian_noise(out.numpy(), key, calls[0], scale if fused else ones, threads)
        calls[0] += 1
        return sqrt_2delta * out if scaled and not fused else out

    def deferred() -> tuple[torch.Tensor, tuple, Callable[[], torch.Tensor]]:
        """The next scaled draw, not drawn yet: ``(buffer, (key, counter, scale), fill)``
        for a kernel that fills ``buffer`` itself (``fill()`` draws it here instead: the
        same values). Only with one scale per image."""
        counter = calls[0]
        calls[0] += 1

        def fill() -> torch.Tensor:
            kernels.gaussian_noise(buffer.numpy(), key, counter, scale, threads)
            return buffer
        return buffer, (key, counter, scale), fill
    if scale is not None:
        numba_draw.deferred = deferred
    return numba_draw


# --- proximal Langevin -----------------------------------------------------------------------


def _run_langevin(problem: RestorationProblem, sampler: str, *, num_samples, warmup,
                  num_chains, thin, generator, seed, max_memory, progress, smoothing,
                  step_size, stages, prox_iter, scale_prior=None, scale_every=1,
                  targets=None, preconditioner="none", init=None) -> Posterior:
    """The Langevin chains of :func:`mcmc`, in parallel as a batch (options checked there).

    A fixed budget when ``num_samples`` is given, else until the ``targets`` are met.
    """
    start = time.perf_counter()
    y = problem.y.detach()
    device, dtype = y.device, y.dtype
    gen = _make_generator(generator, seed, device)
    l_f = problem.operator.norm_bound**2 / problem.sigma.square()  # per image
    if problem.beta == 1.0:
        # in units of the larger of the data's and the prior's curvature, as SK-ROCK's step:
        # smoothing / L_f alone smoothed x2 decimation's prior four times as much as
        # denoising's at b = sigma (L_f = ||A||^2 / sigma^2 = 1 / (4 sigma^2)), and its means
        # missed NUTS's by up to 0.011 (z RMS 1.37 against 1.11 with this rule; 32 x 32)
        lambda_my = smoothing / torch.maximum(l_f, 1.0 / problem.scale.square())
        l_g = 1.0 / lambda_my
    else:
        lambda_my = None
        l_g = 8.0 / problem.scale.square()
    x0 = _initial_x(problem) if init is None else _checked_init(init, problem)
    metric = None
    if preconditioner != "none":
        # SK-ROCK with its own stages: the metric where the operator sees nothing (a blur's
        # lost frequencies, a mask's hidden pixels, the detail within decimation's blocks) is
        # b^2 / sigma^2 (its stiffness costs ~ sqrt of it in stages; the Euler samplers'
        # stable step would only shrink), at most what MAX_STAGES keep stable at any step
        ratio_prior = None
        if sampler == "skrock" and stages is None:
            cap = smoothing * (skrock_coefficients(MAX_STAGES)["ell"] - 1) / SKROCK_MAX_STEP
            ratio_prior = min(float((problem.scale / problem.sigma).square().min()), cap)
        metric = diagonal_metric(problem.operator, x0, prior_ratio=ratio_prior)
    if metric is None:
        lip = l_f + l_g
    else:  # || M^1/2 (A^T A / sigma^2 + grad^2 g) M^1/2 || <= max(M d^2) / sigma^2 + max(M) L_g
        gain, peak, metric, sqrt_metric = metric
        lip = gain * l_f + peak * l_g
    ratio = float((lip / l_f).max())  # condition bound L / L_f
    if sampler == "skrock":
        # the step in units of the larger of the data's and the prior's curvature: 1 / b^2
        # (preconditioned: the data's curvature is gain L_f, e.g. 1 / sigma^2 on the block
        # means of a box decimation)
        s, coef, delta = skrock_schedule(step_size, stages,
                                         l_f if metric is None else gain * l_f, lip, ratio,
                                         lambda_my, smoothing,
                                         l_prior=1.0 / problem.scale.square())
    else:
        s = 1
        coef = None
        delta = euler_step_size(sampler, step_size, l_f, lip, ratio)
    delta = delta.to(dtype)
    sqrt_2delta = torch.sqrt(2 * delta)
    # with a metric: the chains of z = M^-1/2 x, written in x (drift M grad U(x)); the
    # potential runs M inside the stages (per pixel fused, per DCT frequency in the DCT
    # domain, box decimation's block means in one pass)
    potential = SmoothedPotential(problem, lambda_my, prox_iter, metric=metric)
    gradient = potential.grad
    converge = num_samples is None
    if warmup is None:
        warmup = 100 if converge else max(50, num_samples // 4)

    shape = tuple(x0.shape)  # the image's, not the observation's (decimation)
    # before the chains exist: an absurd num_chains is refused, not allocated
    grid = 1
    if converge:
        blocks, grid, capacity, coded = _diagnostic_layout(num_chains, shape, targets["draws"],
                                                           max_memory)
        if coded:  # every pixel's draws, 16 bits each (levels set after _CODE_START draws)
            store = QuantisedDraws(num_chains, shape, capacity, device)
        else:
            store = ThinnedDraws(num_chains, _grid_shape(shape, grid), capacity, device)
        moments = BlockSums(num_chains, shape, blocks=blocks, device=device)
    else:
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
    total = None if converge else warmup + num_samples * thin
    bar = tqdm(total=total, desc=f"MCMC ({sampler})", disable=not progress, leave=False)
    checks: list[dict] = []
    diag = None
    deadline = start + targets["max_time"] if converge else math.inf
    spent = [0.0, 0.0]  # wall and CPU seconds in the convergence diagnostics
    next_rhat = 0  # draws per chain before the all-draw R-hat is looked at again
    diag_draws = -1  # draws per chain when diag was computed
    cpu_start = process_time()

    threads = all_threads = torch.get_num_threads()  # the kernels below take all
    # the Langevin noise: on CPU from a counter-based generator in a numba kernel (split
    # over the threads, the same draws whatever their number; its key drawn from ``gen``),
    # else torch's
    draw = _noise_source(x, gen, problem.event_dim, sqrt_2delta, all_threads)
    if converge:  # the sums' and the store's kernels too (torch runs on one thread below)
        moments.threads = store.threads = all_threads

    def noise(scaled: bool = False) -> torch.Tensor:
        """A standard normal per value of the chains (times ``sqrt(2 delta)`` when
        ``scaled``), through the metric's square root when there is one."""
        if metric is None:
            return draw(scaled, sampler != "lm")
        z = sqrt_metric(draw(False, False))
        return sqrt_2delta * z if scaled else z

    xi_prev = noise() if sampler == "lm" else None
    # SK-ROCK without a metric, the counter-based noise: each step (noise and stages) in one
    # kernel call where the potential's fused kernels run it
    fused_noise = coef is not None and metric is None and hasattr(draw, "deferred")
    # SK-ROCK with a DCT metric on CPU: the step takes the white draw and makes its
    # coefficients m^1/2 q itself (no transform of the noise)
    white_noise = (coef is not None and metric is not None
                   and getattr(getattr(metric, "__self__", None), "kind", None) == "dct"
                   and potential.runs_fused(x))
    step = 0
    # the fused kernels split the chains over the threads themselves; torch's own threads
    # would only wait (spinning) for them between its small elementwise operations, so the
    # loop runs torch on one thread (on 2 cores: 28 against 34 ms per 512 x 512 step)
    if device.type == "cpu" and threads > 1 and potential.runs_fused(x):
        potential.threads = threads
        threads = 1
    with torch.no_grad(), torch_threads(threads):
        while total is None or step < total:
            if sampler == "lm":
                xi = noise()
                x = lm_step(x, gradient(x), delta, xi, xi_prev)
                xi_prev = xi
            elif coef is None:
                x = myula_step(x, gradient(x), delta, noise(), sqrt_2delta)
            elif fused_noise:  # the noise drawn inside the step's kernel, image by image
                q, spec, fill = draw.deferred()
                x_next = potential.skrock(x, delta, q, coef, s, noise=spec)
                x = skrock_step(x, gradient, delta, fill(), coef, s) if x_next is None else x_next
            elif white_noise:  # a DCT metric: the white draw taken as DCT coefficients
                qw = draw(True, True)
                x_next = potential.skrock(x, delta, qw, coef, s, white=True)
                x = (skrock_step(x, gradient, delta, sqrt_metric(qw), coef, s) if x_next is None
                     else x_next)
            else:
                x = skrock_step(x, gradient, delta, noise(True), coef, s)
            if scale_prior is not None and (step + 1) % scale_every == 0:
                # exact theta | x (the Gamma conditional of the hierarchical model, on the
                # un-smoothed TV of the current x); x's next steps target p(x | y, theta)
                theta = gibbs_theta(x, *scale_prior, gen, isotropic=problem.isotropic,
                                    event_dim=problem.event_dim)
                potential.set_theta(theta.to(dtype))
            step += 1
            bar.update(1)
            # the time cap, read every step (the checks are far apart on large images)
            late = converge and time.perf_counter() > deadline
            if late and step < warmup:
                warmup = step  # the warm-up ends here; the draws the diagnostics need follow
            if step <= warmup or (step - warmup) % thin != 0:
                continue
            if scale_prior is not None:
                thetas.append(theta)
            if not converge:
                store.add(x)
                continue
            moments.add(x)
            if coded and not store.ready:
                if moments.count < _CODE_START:
                    continue
                store.set_bounds(*moments.moments(torch.float32))
            kept = store.add(x if grid == 1 else x[..., ::grid, ::grid])
            if late and store.stored >= _MIN_DRAWS:
                break
            due, rhat = kept and _check_due(store), None
            if (not due and moments.filled == 0 and moments.count >= next_rhat
                    and store.stored >= min(_FIRST_CHECK, store.capacity // 2)):
                # a block of the sums is full, so the all-draw R-hat has moved: it is cheap
                # (between the subset's checks, at most every 1/8 more draws); the ESS
                # follows when it has just passed
                clock = _clocks()
                with torch_threads(all_threads):
                    rhat = moments.rhat()
                _add_clocks(spent, clock)
                next_rhat = moments.count + max(1, moments.count // 8)
                worst = math.inf if rhat is None else float(rhat.max())
                due = worst <= targets["rhat"] and (not checks
                                                    or checks[-1]["rhat_max"] > targets["rhat"])
                if not due:
                    checks.append({"draws": moments.count,
                                   "seconds": time.perf_counter() - start,
                                   "diagnostics_seconds": spent[0], "rhat_max": worst,
                                   "ess_bulk_min": math.nan, "ess_tail_min": math.nan})
                    bar.set_postfix_str(_progress_text(checks[-1], targets))
            if due:
                if not bool(torch.isfinite(x).all()):
                    break
                clock = _clocks()
                with torch_threads(all_threads):
                    diag = _check(store if coded else store.draws, targets,
                                  rhat=moments.rhat() if rhat is None else rhat, grid=grid)
                _add_clocks(spent, clock)
                diag_draws = moments.count
                next_rhat = moments.count + max(1, moments.count // 8)
                seconds = time.perf_counter() - start
                checks.append({"draws": moments.count, "seconds": seconds,
                               "diagnostics_seconds": spent[0], **diag["summary"]})
                bar.set_postfix_str(_progress_text(diag["summary"], targets))
                if diag["converged"]:
                    break
    bar.close()
    if not bool(torch.isfinite(x).all()):
        raise FloatingPointError("the Langevin chain diverged (non-finite values)")
    if converge:
        mean, std = moments.moments(dtype)
        num_draws, every, kept_draws = moments.count, store.every, store.stored
        store_every = store.every
        if diag is None or diag["maps"] is None or diag_draws != moments.count:
            clock = _clocks()
            diag = _check(store if coded else store.draws, targets, rhat=moments.rhat(),
                          screen=False, grid=grid)
            _add_clocks(spent, clock)
        if coded:  # as values, every k-th of them: what fits beside the codes
            room = max_memory - _layout_bytes(num_chains, shape, blocks, capacity)
            fit = max(1, room // (num_chains * math.prod(shape) * 4))
            samples = store.dequantise(math.ceil(store.stored / min(fit, store.stored)))
            every = every * math.ceil(store.stored / min(fit, store.stored))
            coding = {"diagnostic_values": "int16 levels",
                      "quantisation_clipped": store.clipped / max(1, store.encoded)}
            del store
        else:
            samples = store.draws
            coding = {}
    else:
        mean, std = store.moments(num_chains, dtype)
        samples, num_draws, every = store.samples, num_samples, store.every
        kept_draws, coding = None, {}
        diag = None  # with_convergence: every pixel, a grid of them, or none (< 8 draws)
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
        "num_steps": step,
        "gradient_evaluations": potential.evaluations,
        "prox_evaluations": potential.evaluations if lambda_my is not None else 0,
        "num_draws": num_draws,
        "num_draws_kept": samples.shape[1],
        "storage_thin": every,
        "acceptance_rate": None,
        "wall_time": time.perf_counter() - start,
    }
    if scale_prior is not None:
        theta_all = torch.stack(thetas, 1)
        if converge and coded:  # the store began at draw _CODE_START
            theta_all = theta_all[:, _CODE_START:]
        if converge:  # the scale draws that match the kept images
            info.update(scale_summary(theta_all, every, scale_prior, scale_every))
            info["scale_samples"] = info["scale_samples"][:, : samples.shape[1]]
        else:
            info.update(scale_summary(theta_all, every, scale_prior, scale_every))
    post = Posterior(method="mcmc", mean=mean, std=std, samples=samples, map=None,
                     info=sampler_info(sampler, step, info["wall_time"]),
                     diagnostics=MCMCDiagnostics(**info).replace(
                         preconditioner="none" if metric is None else "diagonal"))
    clock = _clocks()
    post = with_convergence(post, samples, targets if converge else None, diag=diag,
                            checks=checks if converge else None, grid=grid,
                            diagnostic_draws=kept_draws,
                            diagnostic_thin=store_every if converge else None)
    if coding:
        post = with_diagnostics(post, **coding)
    _add_clocks(spent, clock)
    # where the time went (process CPU time: all threads of the process, not only ours)
    post = with_diagnostics(post, diagnostics_time=spent[0], diagnostics_cpu_time=spent[1],
                            cpu_time=process_time() - cpu_start,
                            total_time=time.perf_counter() - start)
    if converge and not post.diagnostics["converged"]:
        d = post.diagnostics
        warnings.warn(
            f"the chains did not converge within max_time={targets['max_time']:g} s "
            f"({num_draws} draws per chain): worst pixel R-hat {d['rhat_max']:.3f} (target "
            f"{targets['rhat']:g}), bulk ESS {d['ess_bulk_min']:.0f} and tail ESS "
            f"{d['ess_tail_min']:.0f} (target {targets['ess']:g}); std Monte Carlo error "
            f"{100 * d['std_mc_error']:.1f} % at the median pixel. Raise max_time, or give "
            "num_samples for a fixed budget",
            UserWarning,
            stacklevel=3,
        )
    return post


def _clocks() -> tuple[float, float]:
    """Wall and process CPU time now."""
    return time.perf_counter(), process_time()


def _add_clocks(spent: list[float], since: tuple[float, float]) -> None:
    """Add the wall and CPU seconds since ``since`` to ``spent``."""
    now = _clocks()
    spent[0] += now[0] - since[0]
    spent[1] += now[1] - since[1]


def _diagnostic_layout(num_chains: int, shape: tuple[int, ...], draws: int,
                       max_memory: int) -> tuple[int, int, int, bool]:
    """Blocks of the streaming sums, pixel stride, capacity and coding of the stored draws.

    The sums take ``2 * blocks`` float32 images per chain (16 blocks when they take at most
    a quarter of ``max_memory / 2``, else 8, or 4 when 8 would take more than half of it).
    The draws, ``draws`` per chain, in the first of these that fits:

    1. every pixel's in float32, with the sums within ``max_memory / 2`` (the other half
       left to the chains' working memory and the final diagnostics);
    2. every pixel's in 16 bits (``coded``: :class:`~bayes_restore.infer.draws.QuantisedDraws`),
       with the sums, the chains' working memory (``_WORKING_IMAGES`` float32 images per
       chain) and the diagnostics' temporaries within ``max_memory`` (512 x 512 with two
       chains at the default 1 GiB);
    3. the pixels of every ``grid``-th row and column in float32, in at most a quarter of
       ``max_memory / 2`` (a large image:
       ESS and Monte Carlo errors on the grid, the all-draw R-hat on every pixel). Fewer draws
    of every pixel would not do: the smallest of many ESS estimates from a few hundred
    draws is mostly the estimator's noise (at 512 x 512, 2 x 144 draws gave a smallest bulk
    ESS of 20 where 2 x 250 gave 124), and a bounded subset does not outgrow it.
    """
    budget = max_memory // 2
    image = num_chains * math.prod(shape) * 4
    # more blocks: the all-draw R-hat moves more often and uses more of the draws (the
    # even number of full blocks: at least 8/9 of them with 16, 4/5 with 8)
    blocks = 16 if 32 * image <= budget // 4 else 8 if 16 * image <= budget // 2 else 4
    left = budget - 2 * blocks * image
    capacity = min(draws, max(left, 0) // image)
    grid = 1
    if capacity < draws and (max_memory - _layout_bytes(num_chains, shape, blocks, draws)
                             >= 0):
        return blocks, 1, draws, True
    if capacity < draws and len(shape) >= 2 and left > 0:
        room = min(left, budget // 4)
        while grid < min(shape[-2:]):
            grid += 1
            capacity = min(draws, room // (num_chains * math.prod(_grid_shape(shape, grid)) * 4))
            if capacity == draws:
                break
    if capacity < 16:
        raise ValueError(
            f"max_memory={max_memory} bytes is too small for a run to convergence of "
            f"{num_chains} chains of shape {shape}: half of it must hold the streaming sums "
            f"({2 * blocks} float32 images per chain) and 16 draws per chain for the "
            "diagnostics; raise max_memory or give num_samples"
        )
    return blocks, grid, capacity, False


def _layout_bytes(num_chains: int, shape: tuple[int, ...], blocks: int, codes: int) -> int:
    """Memory of a run to convergence that keeps ``codes`` 16-bit draws per chain of every
    pixel: the sums, the codes, the chains' working memory and the diagnostics' temporaries."""
    image = num_chains * math.prod(shape) * 4
    return ((2 * blocks + _WORKING_IMAGES) * image + codes * image // 2
            + _DIAGNOSTIC_TEMP * math.prod(shape) + (64 << 10))


def _grid_shape(shape: tuple[int, ...], grid: int) -> tuple[int, ...]:
    """Shape of ``x[..., ::grid, ::grid]`` for an image of ``shape``."""
    if grid == 1:
        return tuple(shape)
    return tuple(shape[:-2]) + tuple(-(-n // grid) for n in shape[-2:])


def _check_due(store: ThinnedDraws) -> bool:
    """Whether the thinned subset has grown by a quarter of its capacity since the last check."""
    return (store.stored >= min(_FIRST_CHECK, store.capacity // 2)
            and store.stored % max(1, store.capacity // 4) == 0)


def _check(draws: torch.Tensor | QuantisedDraws, targets: dict | None, *,
           rhat: torch.Tensor | None = None, screen: bool = True, grid: int = 1) -> dict:
    """Diagnostics of ``draws``; with ``targets``, whether every pixel met them.

    ``draws``: ``(chain, draw, *shape)`` float draws, or the 16-bit store of a run to
    convergence (its subset's R-hat is then the bulk rank-normalised one: the all-draw
    ``rhat`` covers every pixel).
    ``rhat``: the split R-hat of all draws (a run to convergence, from
    :class:`~bayes_restore.infer.draws.BlockSums`), used in place of the rank-normalised one
    of the kept ``draws`` (kept as ``"rhat_subset"``), whose noise does not shrink as the
    chains go on (the subset is bounded). ``screen``: on a large image, first a grid of
    about ``_SCREEN_PIXELS`` pixels; all pixels only when the grid passes. ``grid``: the
    ``draws`` are of every ``grid``-th pixel of every ``grid``-th row (``rhat`` of all
    pixels: its maximum is over all of them, its map on the grid with the others').
    """
    if targets is not None and rhat is None:  # too few draws for the all-draw R-hat
        rhat = torch.tensor(math.inf)
    rhat_all = None
    if grid > 1 and rhat is not None and rhat.dim():
        rhat_all, rhat = float(rhat.max()), rhat[..., ::grid, ::grid]
    worst = math.nan if rhat is None else float(rhat.max()) if rhat_all is None else rhat_all
    if targets is not None and worst > targets["rhat"] and screen:
        summary = {"rhat_max": worst, "ess_bulk_min": math.nan,
                   "ess_tail_min": math.nan}
        return {"converged": False, "summary": summary, "maps": None}
    coded = isinstance(draws, QuantisedDraws)
    pixels = draws.pixels if coded else math.prod(draws.shape[2:])
    if screen and targets is not None and pixels > 2 * _SCREEN_PIXELS:
        stride = math.ceil(math.sqrt(pixels / _SCREEN_PIXELS))
        sub = (draws.diagnostics(stride, folded_rhat=False) if coded
               else convergence_diagnostics(draws[..., ::stride, ::stride]))
        sub["rhat"] = rhat[..., ::stride, ::stride] if rhat.dim() else rhat
        summary = _summary(sub)
        if rhat_all is not None:
            summary["rhat_max"] = max(summary["rhat_max"], rhat_all)
        if not _met(summary, targets):
            return {"converged": False, "summary": summary, "maps": None}
    maps = (draws.diagnostics(folded_rhat=False) if coded
            else convergence_diagnostics(draws, chunk=_DIAGNOSTIC_CHUNK))
    if rhat is not None and rhat.dim():
        maps["rhat_subset"] = maps["rhat"]
        maps["rhat"] = rhat
    summary = _summary(maps)
    if rhat_all is not None:
        summary["rhat_max"] = max(summary["rhat_max"], rhat_all)
    return {"converged": targets is not None and _met(summary, targets), "summary": summary,
            "maps": maps}


def _summary(maps: dict) -> dict:
    return {"rhat_max": float(maps["rhat"].max()), "ess_bulk_min": float(maps["ess_bulk"].min()),
            "ess_tail_min": float(maps["ess_tail"].min())}


def _met(summary: dict, targets: dict) -> bool:
    return (summary["rhat_max"] <= targets["rhat"]
            and min(summary["ess_bulk_min"], summary["ess_tail_min"]) >= targets["ess"])


def _progress_text(summary: dict, targets: dict) -> str:
    return (f"worst pixel: ESS {min(summary['ess_bulk_min'], summary['ess_tail_min']):.0f}"
            f"/{targets['ess']:g}, R-hat {summary['rhat_max']:.3f}/{targets['rhat']:g}")


def with_convergence(post: Posterior, draws: torch.Tensor, targets: dict | None, *,
                     diag: dict | None = None, checks: list | None = None,
                     grid: int = 1, diagnostic_draws: int | None = None,
                     diagnostic_thin: int | None = None) -> Posterior:
    """``post`` with its convergence diagnostics and Monte Carlo errors, from ``draws``.

    ``draws``: ``(chain, draw, *shape)`` (the kept ones); ``targets`` the stopping rule of a
    run to convergence (``None``: a fixed budget, ``converged`` left unset). ``grid``: the
    draws are of every ``grid``-th pixel of every ``grid``-th row (a large image's run to
    convergence, ``diag`` given). ``diagnostic_draws``, ``diagnostic_thin``: the draws per
    chain ``diag`` was computed from and their spacing, when not ``draws``'s (the 16-bit
    store of every pixel, ``draws`` a thinner float copy of it).
    """
    if diagnostic_draws is None:
        diagnostic_draws = 0 if draws is None else int(draws.shape[1])
    if diagnostic_draws < 8 or draws is None:
        return post
    stride = grid
    if targets is None and draws.numel() > _FULL_DIAGNOSTICS:  # a grid of pixels
        stride = math.ceil(math.sqrt(draws.numel() / _FULL_DIAGNOSTICS))
        if draws.dim() < 4 or stride >= min(draws.shape[-2:]):
            stride = 1
        else:
            draws = draws[..., ::stride, ::stride]
            diag = None
    if diag is None or diag["maps"] is None:
        diag = _check(draws, targets, screen=False)
    maps = diag["maps"]
    std = post.std if stride == 1 else post.std[..., ::stride, ::stride]
    mean_se, std_se = monte_carlo_errors(std, maps)
    rel = lambda se: float(torch.median((se / std.clamp_min(  # noqa: E731
        torch.finfo(std.dtype).tiny)).to(torch.float64)))
    fields = {
        **diag["summary"],
        "ess_bulk_median": float(maps["ess_bulk"].median()),
        "std_mc_error": rel(std_se),
        "mean_mc_error": rel(mean_se),
        "convergence": {k: maps[k] for k in ("rhat", "ess_bulk", "ess_tail", "rhat_subset")
                        if k in maps},
        "diagnostic_draws": diagnostic_draws,
        "diagnostic_thin": (post.diagnostics.get("storage_thin", 1) if diagnostic_thin is None
                            else diagnostic_thin),
        "diagnostic_stride": stride,
    }
    if targets is not None:
        fields.update(converged=diag["converged"], target_ess=targets["ess"],
                      target_rhat=targets["rhat"], checks=tuple(checks or ()))
    post = with_diagnostics(post, **fields)
    info = post.info
    if targets is not None and info is not None:
        info = sampler_info(info.solver, info.iterations, info.time, diag["converged"])
    if stride > 1:  # the maps of a grid of pixels are in the diagnostics only
        return post.with_fields(info=info)
    return post.with_fields(mean_mcse=mean_se.to(std.dtype), std_mcse=std_se.to(std.dtype),
                            info=info)


def _checked_init(init: Any, problem: RestorationProblem) -> torch.Tensor:
    """``init`` as the chains' start: a finite tensor of the image's shape, in the data's dtype
    and on its device."""
    y = problem.y
    like = y if problem.operator.is_identity else problem.operator.adjoint(y.detach())
    if not isinstance(init, torch.Tensor):
        raise TypeError(f"init must be a torch.Tensor, got {type(init).__name__}")
    if tuple(init.shape) != tuple(like.shape):
        raise ValueError(f"init must have the image's shape {tuple(like.shape)}, "
                         f"got {tuple(init.shape)}")
    if not bool(torch.isfinite(init).all()):
        raise ValueError("init must be finite (no NaN or inf)")
    return init.detach().to(dtype=y.dtype, device=y.device).clone()


def _initial_x(problem: RestorationProblem) -> torch.Tensor:
    """Starting image of the Langevin chains: the data for denoising; with an operator the TV
    MAP (to a certified gap of 1e-3) for TV, ``A^T y`` for the Gaussian-gradient prior.

    ``A^T y`` lacks what the operator removes (masked pixels are 0, a blurred image's fine
    detail is missing), and the directions the prior alone holds are the slowest to mix: from
    there the chains spend thousands of steps drifting to the posterior.
    """
    y = problem.y.detach()
    op = problem.operator
    if op.is_identity:
        return y.clone()
    if problem.beta == 1.0:
        x, _ = tv_map_pdhg(y, problem.weight, op, isotropic=problem.isotropic,
                           event_dim=problem.event_dim, tol=1e-3)
        return x.detach().clone()
    return op.adjoint(y).clone()
