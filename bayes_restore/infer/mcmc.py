"""``mcmc``: posterior sampling, by proximal Langevin (SK-ROCK, MYULA) or Pyro's NUTS."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyro.poutine as poutine
import torch
from pyro.infer import MCMC, NUTS
from pyro.infer.autoguide.initialization import init_to_value
from pyro.infer.mcmc.util import initialize_model
from pyro.poutine.util import site_is_subsample
from tqdm.auto import tqdm

from bayes_restore._validation import check_int
from bayes_restore.differences import div, grad
from bayes_restore.hyper import THETA_HYPERPRIOR, gibbs_theta
from bayes_restore.models import X_SITE
from bayes_restore.posterior import Posterior

from .generic import (
    DEFAULT_SEED,
    check_random_source,
    data_device,
    draw_seed,
    initial_trace,
    make_generator,
    seeded_global_rng,
)
from .problem import RestorationProblem, recognise
from .prox import tv_prox_dual

__all__ = ["mcmc", "SAMPLERS"]

#: accepted values of ``mcmc(..., sampler=...)``
SAMPLERS = ("auto", "skrock", "myula", "lm", "nuts")

#: SK-ROCK damping parameter (Pereyra, Vargas Mieles & Zygalakis 2020 use 0.05)
_ETA = 0.05
#: default SK-ROCK step in units of ``1 / L_f`` (the weakest curvature of a denoising posterior)
_SKROCK_STEP = 0.25
#: largest SK-ROCK step (units of ``1 / L_f``): the TV std is already 11 % low at 1 (16 x 16
#: TV denoising, against Leimkuhler-Matthews: -2 % at 0.25, -4 % at 0.5, -11 % at 1, -16 % at
#: 2), and the cost per step grows like the stages, ``~ 7 sqrt(step_size)`` at the default
#: smoothing (a step of 1e6 needed 7229 stages and gave a std 2-3 times too large)
_SKROCK_MAX_STEP = 1.0
#: most SK-ROCK stages per step: a stable step of ``ell_100 = 19140 / L``, enough for the
#: default step down to ``smoothing ~ 1.3e-5``; each stage costs one gradient (and TV prox)
_MAX_STAGES = 100
#: deepest NUTS tree (up to ``2^depth - 1`` gradients per draw); Pyro's default is 10
_MAX_TREE_DEPTH = 15
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
    **model_kwargs: Any,
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
    :func:`~bayes_restore.hyper.hierarchical_tv_model` (any operator ``A``),

    .. math::

        \theta = 1 / b \sim \mathrm{Gamma}(\alpha, \beta_0), \quad
        x \mid \theta \sim \mathrm{TV}(b), \quad y \mid x \sim \mathcal{N}(A x, \sigma^2 I),

    sampled by Gibbs-within-Langevin: ``scale_every`` Langevin steps on ``x | y, theta``,
    then an exact draw ``theta | x ~ Gamma(alpha + N - C, beta0 + TV(x))``
    (:func:`~bayes_restore.hyper.gibbs_theta`), one ``theta`` per chain and image,
    started at ``1 / b`` of the model's prior. ``"auto"`` then picks ``"lm"``.

    Parameters
    ----------
    model : callable
        A Pyro model with a latent site ``"x"``.
    *args, **model_kwargs
        Passed to the model. The keywords below are the engine's own.
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
        comes out low, on TV by up to about ``0.15 * step_size`` relative (measured
        against NUTS: -4 % at 0.3 for ``b = sigma / 2``, -2 % for ``b = sigma``).
        Bounds, beyond which the step is reduced with a ``UserWarning`` that gives the
        step used: SK-ROCK 1 (its accuracy limit: the std was 11 % low at 1, 2-3 times
        too high at 1e6, whose 7229 stages per step ran for minutes), MYULA ``1 / L`` and
        LM ``1.9 / L`` (their stability limits, ``1 / (1 + 1 / smoothing)`` and
        ``1.9 / (1 + 1 / smoothing)`` in units of ``1 / L_f`` for TV denoising).
    stages : int, optional
        SK-ROCK only: number of stages ``2 <= s <= 100`` (gradient evaluations per step);
        by default the fewest that keep the step stable. When those would exceed 100 (a
        ``smoothing`` below about ``1.3e-5`` at the default step, or a Gaussian prior
        scale below about ``sigma / 100``) it is a ``ValueError``: with the step that 100
        stages keep stable, the chains would barely move (measured: ``smoothing=1e-9``
        gave a step of ``1.9e-5 / L_f``).
    prox_iter : int, default 5
        Langevin/TV only: dual iterations of each warm-started TV prox.
    target_accept : float, default 0.8
        NUTS only: target acceptance probability of the step-size adaptation, in (0, 1).
    max_tree_depth : int, default 10
        NUTS only: at most 15 (up to ``2^depth - 1`` gradient evaluations per draw).
    sample_scale : bool, default False
        Langevin/TV only: sample ``theta = 1 / b`` jointly with the image (above).
        ``theta`` is often weakly identified (``theta E[TV(x) | y, theta] / (N - 1)``, whose
        root the chain finds, moved only from 1.00 to 1.08 when ``theta`` doubled on data
        drawn from the prior at ``sigma = b``), so a small bias of the sampler's ``TV(x)``
        moves it far: there SK-ROCK (TV 3 % low at its default step) gave ``theta`` 1.8
        times the truth, ``"lm"`` the truth within 4 %; hence ``"auto"`` -> ``"lm"``.
        The Moreau-Yosida smoothing biases it too (``docs/hyperparameters.md``). The
        chain in ``theta`` moves slowly: use a long ``warmup`` and check
        ``to_arviz()``'s ``"scale"`` (ESS, R-hat).
    scale_prior : (float, float), default ``hyper.THETA_HYPERPRIOR`` = (1.0, 0.01)
        Shape ``alpha`` and rate ``beta0`` of the Gamma hyperprior on ``theta``, the
        defaults of :func:`~bayes_restore.hyper.hierarchical_tv_model`.
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
        return _run_nuts(model, args, model_kwargs, num_samples=num_samples, warmup=warmup,
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
    if stages is not None and check_int(stages, "stages", 2) > _MAX_STAGES:
        raise ValueError(
            f"stages must be an integer in [2, {_MAX_STAGES}], got {stages!r} (each stage is "
            f"a gradient evaluation; the step is bounded by {_SKROCK_MAX_STEP:g} / L_f anyway)"
        )
    if check_int(max_tree_depth, "max_tree_depth", 1) > _MAX_TREE_DEPTH:
        raise ValueError(
            f"max_tree_depth must be an integer in [1, {_MAX_TREE_DEPTH}], got "
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
            "bayes_restore.hyper.hierarchical_tv_model"
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


# --- draws: streaming moments and memory-bounded storage ------------------------------------


class _DrawStore:
    """Accumulates per-pixel moments of every draw and stores a thinned float32 copy."""

    def __init__(self, num_chains, num_samples, shape, device, max_memory):
        per_draw = num_chains * math.prod(shape) * 4
        fit = max_memory // per_draw
        if fit < 1:
            raise ValueError(
                f"max_memory={max_memory} bytes cannot hold a single draw of {num_chains} "
                f"chains of shape {tuple(shape)} ({per_draw} bytes)"
            )
        self.every = math.ceil(num_samples / min(fit, num_samples))
        self.kept = math.ceil(num_samples / self.every)
        self.samples = torch.empty((num_chains, self.kept) + tuple(shape), dtype=torch.float32,
                                   device=device)
        self.count = 0
        self.shift: torch.Tensor | None = None
        self.s1 = self.s2 = None

    def add(self, x: torch.Tensor) -> None:
        """``x``: one draw of every chain, shape ``(chain, *shape)``."""
        x64 = x.detach().to(torch.float64)
        if self.shift is None:
            self.shift = x64.mean(0)
            self.s1 = torch.zeros_like(self.shift)
            self.s2 = torch.zeros_like(self.shift)
        d = x64 - self.shift
        self.s1 += d.sum(0)
        self.s2 += d.square().sum(0)
        if self.count % self.every == 0:
            self.samples[:, self.count // self.every] = x.detach()
        self.count += 1

    def moments(self, num_chains: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.count * num_chains
        m1 = self.s1 / n
        var = (self.s2 / n - m1.square()).clamp_min(0.0) * (n / max(n - 1, 1))
        return (self.shift + m1).to(dtype), var.sqrt().to(dtype)


# --- proximal Langevin -----------------------------------------------------------------------


@dataclass
class _Potential:
    """Gradient of ``U = |y - A x|^2 / (2 sigma^2) + g_lambda(x)`` for batched chains."""

    problem: RestorationProblem
    lambda_my: torch.Tensor | None  # per image, None for the smooth (beta = 2) prior
    prox_iter: int
    dual: torch.Tensor | None = None
    evaluations: int = 0

    def __post_init__(self) -> None:
        pr = self.problem
        self.y = pr.y.detach()
        self.inv_var = 1.0 / pr.sigma.square()
        self.scale = pr.scale
        self.identity = pr.operator.is_identity
        self.aty = self.y if self.identity else pr.operator.adjoint(self.y)
        if self.lambda_my is not None:
            self.prox_weight = self.lambda_my / self.scale  # the ROF weight of the prox

    def set_theta(self, theta: torch.Tensor) -> None:
        """Move the TV prior to ``b = 1 / theta`` (``theta``: one per chain and image).

        The smoothed potential is ``|y - A x|^2 / (2 sigma^2) + M(x)`` with ``M`` the
        Moreau-Yosida envelope of ``g = theta TV`` of parameter ``lambda_MY``; its gradient
        ``(x - prox_{lambda_MY g}(x)) / lambda_MY`` is ``1 / lambda_MY``-Lipschitz *whatever
        theta*, so ``lambda_MY``, ``L`` and the step ``delta`` stay fixed and only the prox
        weight ``lambda_MY theta`` and the factor ``theta`` of ``-div(p)`` change. The warm
        dual ``p`` stays feasible (``|p| <= 1``) and is kept.
        """
        self.scale = (1.0 / theta).reshape(theta.shape + (1,) * self.problem.event_dim)
        self.prox_weight = self.lambda_my / self.scale

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        self.evaluations += 1
        pr = self.problem
        if self.identity:
            g = (x - self.y) * self.inv_var
        else:
            g = (pr.operator.normal(x) - self.aty) * self.inv_var
        if self.lambda_my is None:  # beta = 2: |grad x|^2 / (2 b^2)
            return g - div(grad(x)) / self.scale.square()
        # beta = 1: grad of the Moreau-Yosida envelope (x - prox(x)) / lambda = -div(p) / b
        self.dual = tv_prox_dual(x, self.prox_weight, isotropic=pr.isotropic,
                                 dual=self.dual, num_iter=self.prox_iter)
        return g - div(self.dual) / self.scale


def skrock_coefficients(stages: int, eta: float = _ETA) -> dict[str, Any]:
    """Coefficients of the ``s``-stage SK-ROCK step and its stable range ``ell_s``.

    ``delta * L <= ell_s = (s - 1/2)^2 (2 - 4 eta / 3) - 3/2`` keeps the step
    stable for a potential with ``L``-Lipschitz gradient.

    Examples
    --------
    >>> round(skrock_coefficients(10)["ell"], 1)
    173.0
    """
    w0 = 1.0 + eta / stages**2
    t = [1.0, w0]
    for _ in range(2, stages + 1):
        t.append(2 * w0 * t[-1] - t[-2])
    u = [1.0, 2 * w0]  # Chebyshev polynomials of the second kind: T_s' = s U_{s-1}
    for _ in range(2, stages):
        u.append(2 * w0 * u[-1] - u[-2])
    w1 = t[stages] / (stages * u[stages - 1])
    mu = [0.0, w1 / w0] + [2 * w1 * t[j - 1] / t[j] for j in range(2, stages + 1)]
    nu = [0.0, stages * w1 / 2] + [2 * w0 * t[j - 1] / t[j] for j in range(2, stages + 1)]
    kappa = [0.0, stages * w1 / w0] + [-t[j - 2] / t[j] for j in range(2, stages + 1)]
    ell = (stages - 0.5) ** 2 * (2 - 4 * eta / 3) - 1.5
    return {"mu": mu, "nu": nu, "kappa": kappa, "ell": ell}


def _stages_for(ratio: float) -> int:
    """The fewest SK-ROCK stages (>= 2) whose stable range ``ell_s`` covers ``ratio``.

    From the closed form of ``ell_s`` (no loop over ``s``: any ``ratio`` is answered at once).
    """
    c = 2 - 4 * _ETA / 3
    s = max(2, math.ceil(0.5 + math.sqrt(max(ratio + 1.5, 0.0) / c)) - 1)
    while (s - 0.5) ** 2 * c - 1.5 < ratio:  # at most a step or two of rounding
        s += 1
    return s


def _run_langevin(problem: RestorationProblem, sampler: str, *, num_samples, warmup,
                  num_chains, thin, generator, seed, max_memory, progress, smoothing,
                  step_size, stages, prox_iter, scale_prior=None, scale_every=1) -> Posterior:
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
        s, coef, delta = _skrock_schedule(step_size, stages, l_f, lip, ratio, lambda_my,
                                          smoothing)
    else:
        s = 1
        coef = None
        limit = (1.0 if sampler == "myula" else 1.9) / lip
        default = (1.0 if sampler == "myula" else 1.5) / lip
        delta = default if step_size is None else torch.minimum(step_size / l_f, limit)
        if step_size is not None and bool((step_size / l_f > limit).any()):
            used = _scalar_or_list(delta * l_f)
            warnings.warn(
                f"step_size={step_size:g} is beyond {sampler.upper()}'s stability limit "
                f"({'1' if sampler == 'myula' else '1.9'} / L, L = {ratio:.4g} L_f the "
                f"Lipschitz constant of the smoothed potential); used step_size={used!r} "
                "(units of 1 / L_f)",
                UserWarning,
                stacklevel=3,
            )
    delta = delta.to(dtype)
    sqrt_2delta = torch.sqrt(2 * delta)
    potential = _Potential(problem, lambda_my, prox_iter)
    if warmup is None:
        warmup = max(50, num_samples // 4)

    x0 = _initial_x(problem)
    shape = tuple(x0.shape)  # the image's, not the observation's (decimation)
    # before the chains exist: an absurd num_chains is refused, not allocated
    store = _DrawStore(num_chains, num_samples, shape, device, max_memory)
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
                x = x - delta * potential.grad(x) + torch.sqrt(delta / 2) * (xi + xi_prev)
                xi_prev = xi
            elif coef is None:
                x = x - delta * potential.grad(x) + sqrt_2delta * noise()
            else:
                x = _skrock_step(x, potential, delta, sqrt_2delta * noise(), coef, s)
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
        "step_size": _scalar_or_list(delta),
        "lambda_MY": None if lambda_my is None else _scalar_or_list(lambda_my),
        "smoothing": None if lambda_my is None else smoothing,
        "lipschitz": _scalar_or_list(lip),
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
        "gaussian": False,
    }
    if scale_prior is not None:
        info.update(_scale_summary(torch.stack(thetas, 1), store.every, scale_prior,
                                   scale_every))
    return Posterior(method="mcmc", mean=mean, std=std, samples=store.samples, map=None,
                     diagnostics=info)


def _scale_summary(theta: torch.Tensor, every: int, scale_prior, scale_every,
                   prob: float = 0.9) -> dict[str, Any]:
    """``scale_samples`` (``b = 1 / theta``, thinned as the stored images) and their summary.

    ``theta``: all draws, shape ``(chain, draw, *batch)``; the summary uses all of them.
    """
    b = 1.0 / theta.to(torch.float64)
    flat = b.reshape((-1,) + tuple(b.shape[2:]))
    q = torch.tensor([(1 - prob) / 2, (1 + prob) / 2], dtype=flat.dtype, device=flat.device)
    lo, hi = torch.quantile(flat, q, dim=0)
    as_py = lambda t: t.item() if t.dim() == 0 else t.tolist()  # noqa: E731
    summary = {
        "mean": as_py(flat.mean(0)),
        "std": as_py(flat.std(0)),
        "interval": (as_py(lo), as_py(hi)),
        "prob": prob,
        "theta_mean": as_py(theta.to(torch.float64).reshape(flat.shape).mean(0)),
        "scale_prior": tuple(scale_prior),
        "scale_every": scale_every,
    }
    return {"scale_samples": b[:, ::every].cpu(), "scale": summary}


def _skrock_schedule(step_size, stages, l_f, lip, ratio, lambda_my, smoothing):
    """SK-ROCK's stages, coefficients and step ``delta`` (per image), within the bounds.

    The step is at most ``_SKROCK_MAX_STEP / L_f`` (accuracy: a larger one warns and uses
    the bound) and the stages at most ``_MAX_STAGES`` (cost: a potential so stiff that the
    step needs more is a ``ValueError``).
    """
    rel = _SKROCK_STEP if step_size is None else float(step_size)
    if rel > _SKROCK_MAX_STEP:
        warnings.warn(
            f"step_size={rel:g} is beyond SK-ROCK's accuracy limit: used step_size="
            f"{_SKROCK_MAX_STEP:g} (units of 1 / L_f; the TV std was 11 % low at 1 and 2-3 "
            "times too high at 1e6)",
            UserWarning,
            stacklevel=4,
        )
        rel = _SKROCK_MAX_STEP
    if stages is not None:
        s = stages
    else:
        s = _stages_for(rel * ratio)
        if s > _MAX_STAGES:  # capping would leave a chain that barely moves: refuse
            ell = skrock_coefficients(_MAX_STAGES)["ell"]
            if lambda_my is not None:
                fix = (f"use smoothing >= {1 / (ell / rel - 1):.2g}"
                       + ("" if step_size is None else " or a smaller step_size")
                       + " (or sampler='lm')")
                what = f"smoothing={smoothing:g}"
            else:
                fix = "use sampler='lm' (exact on this Gaussian model) or a smaller step_size"
                what = "the prior scale (far below sigma)"
            raise ValueError(
                f"{what} makes the potential too stiff for SK-ROCK (L = {ratio:.3g} L_f): a "
                f"step of {rel:g} / L_f needs {s} stages per step, more than {_MAX_STAGES}; "
                + fix
            )
    coef = skrock_coefficients(s)
    delta = torch.minimum(rel / l_f, coef["ell"] / lip)
    if step_size is not None and stages is not None and bool((rel / l_f > coef["ell"] / lip).any()):
        warnings.warn(
            f"step_size={rel:g} is not stable with stages={s}: used step_size="
            f"{_scalar_or_list(delta * l_f)!r} (units of 1 / L_f), the largest it keeps "
            "stable; give more stages or omit stages",
            UserWarning,
            stacklevel=4,
        )
    return s, coef, delta


def _skrock_step(x, potential, delta, q, coef, s):
    """One SK-ROCK step; ``q = sqrt(2 delta) z``."""
    mu, nu, kappa = coef["mu"], coef["nu"], coef["kappa"]
    x_prev = x
    x_cur = x - (mu[1] * delta) * potential.grad(x + nu[1] * q) + kappa[1] * q
    for j in range(2, s + 1):
        x_next = (nu[j] * x_cur + kappa[j] * x_prev) - (mu[j] * delta) * potential.grad(x_cur)
        x_prev, x_cur = x_cur, x_next
    return x_cur


def _initial_x(problem: RestorationProblem) -> torch.Tensor:
    """Starting image of the Langevin chains: ``A^T y`` (the data for denoising)."""
    y = problem.y.detach()
    op = problem.operator
    return y.clone() if op.is_identity else op.adjoint(y).clone()


def _scalar_or_list(t: torch.Tensor) -> float | list:
    t = torch.as_tensor(t).detach().to(torch.float64)
    flat = t.flatten()
    if flat.numel() == 1 or bool((flat == flat[0]).all()):
        return float(flat[0])
    return t.squeeze().tolist()


# --- NUTS ------------------------------------------------------------------------------------


def _run_nuts(model, args, kwargs, *, num_samples, warmup, num_chains, thin, generator, seed,
              max_memory, progress, target_accept, max_tree_depth) -> Posterior:
    start = time.perf_counter()
    gen = make_generator(seed, generator, data_device(args, kwargs))
    trace = initial_trace(model, args, kwargs, generator=gen)
    x0 = trace.nodes[X_SITE]["value"].detach()
    device, dtype = x0.device, x0.dtype
    latent = {
        name: site["value"].detach()
        for name, site in trace.nodes.items()
        if site["type"] == "sample" and not site["is_observed"] and not site_is_subsample(site)
    }
    plates = max((len(site["cond_indep_stack"]) for site in trace.nodes.values()
                  if site["type"] == "sample"), default=0)
    if warmup is None:
        warmup = num_samples
    shape = tuple(x0.shape)
    # Pyro keeps every draw of a chain (num_samples * thin), and the chains' thinned draws
    # are stacked before the store sees them: both are in memory at the end of a run
    held = sum(v.numel() * v.element_size() for v in latent.values())
    need = num_samples * (thin + num_chains) * held
    if need > max_memory:
        raise ValueError(
            f"NUTS keeps every draw: num_samples={num_samples} with thin={thin} and "
            f"num_chains={num_chains} needs {need} bytes for the latent sites, beyond "
            f"max_memory={max_memory}; lower num_samples or thin, or raise max_memory"
        )
    store = _DrawStore(num_chains, num_samples, shape, device, max_memory)
    per_chain: list[torch.Tensor] = []
    others: dict[str, list[torch.Tensor]] = {n: [] for n in latent if n != X_SITE}
    step_sizes, accept, divergences, evaluations = [], [], 0, 0
    for _ in range(num_chains):
        with seeded_global_rng(draw_seed(gen), device):  # Pyro draws from the global RNG
            init_params, potential_fn, transforms, _ = initialize_model(
                model, model_args=args, model_kwargs=kwargs,
                init_strategy=init_to_value(values=latent), max_plate_nesting=plates,
            )
            counter = _Counted(potential_fn)
            kernel = NUTS(potential_fn=counter, target_accept_prob=target_accept,
                          max_tree_depth=max_tree_depth, full_mass=False)
            runner = MCMC(kernel, num_samples=num_samples * thin, warmup_steps=warmup,
                          num_chains=1, initial_params=init_params, transforms=transforms,
                          disable_progbar=not progress)
            with poutine.block():
                runner.run()
        samples = runner.get_samples()
        xs = samples[X_SITE][thin - 1 :: thin].to(dtype)
        per_chain.append(xs)
        for name in others:
            others[name].append(samples[name][thin - 1 :: thin])
        # Pyro's diagnostics() also computes R-hat, which needs 4 draws: read its per-chain
        # acceptance rate and divergences directly (the same numbers) for shorter runs
        diag = runner.diagnostics() if num_samples * thin >= 4 else {
            name: {"chain 0": value} for name, value in runner._diagnostics[0].items()  # noqa: SLF001
        }
        step_sizes.append(float(kernel.step_size))
        rate = diag.get("acceptance rate", {})
        accept.extend(float(v) for v in rate.values())
        divergences += sum(len(v) for v in diag.get("divergences", {}).values())
        evaluations += counter.calls
    draws = torch.stack(per_chain)  # (chain, draw, *shape)
    for i in range(num_samples):
        store.add(draws[:, i])
    mean, std = store.moments(num_chains, dtype)
    latents = {
        name: {"mean": torch.cat(v).mean(0), "std": torch.cat(v).std(0)}
        for name, v in others.items()
    }
    info = {
        "sampler": "nuts",
        "step_size": step_sizes,
        "acceptance_rate": accept,
        "divergences": divergences,
        "num_chains": num_chains,
        "warmup": warmup,
        "thin": thin,
        "max_plate_nesting": plates,
        "gradient_evaluations": evaluations,
        "prox_evaluations": 0,
        "lambda_MY": None,
        "num_draws": num_samples,
        "num_draws_kept": store.kept,
        "storage_thin": store.every,
        "latents": latents,
        "wall_time": time.perf_counter() - start,
        "gaussian": False,
    }
    return Posterior(method="mcmc", mean=mean, std=std, samples=store.samples, map=None,
                     diagnostics=info)


class _Counted:
    """Wraps a potential function and counts its calls (one per gradient evaluation)."""

    def __init__(self, fn: Callable) -> None:
        self.fn = fn
        self.calls = 0

    def __call__(self, params: dict) -> torch.Tensor:
        self.calls += 1
        return self.fn(params)
