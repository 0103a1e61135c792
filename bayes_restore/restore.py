"""``restore``: restoration with per-pixel uncertainty, one call for every engine."""

from __future__ import annotations

import importlib
import inspect
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.distributions import Distribution

from bayes_restore._validation import (
    ImageLayout,
    as_float,
    as_image,
    check_positive,
    check_seed,
    optional_number,
    parse_device,
)
from bayes_restore.energy import scale_from_weight, weight_from_scale
from bayes_restore.models import restoration_model
from bayes_restore.operators import LinearOperator, as_operator
from bayes_restore.posterior import Diagnostics, Posterior, with_diagnostics
from bayes_restore.priors import make_prior

__all__ = ["restore", "METHODS", "ENGINES", "Engine", "register_engine", "check_method",
           "build_prior", "resolve_parameters", "engine_options",
           "check_operator", "check_engine_kwargs", "unchanged_posterior", "to_device"]

@dataclass(frozen=True)
class Engine:
    """An inference engine as :func:`restore`, the tiles, Dask and the CLI see it.

    Attributes
    ----------
    run : str or callable
        The engine, ``engine(model, y, *, prior, sigma, operator, seed, **options) ->
        Posterior``; a ``"module:function"`` string is imported at the first call (so that
        ``import bayes_restore`` stays light).
    values_per_pixel : int
        Working memory per pixel, in values of the image's dtype (tiles are batched by it).
    gives_std : bool
        Whether the engine gives a per-pixel std (``"map"`` does not).
    """

    run: str | Callable[..., Posterior]
    values_per_pixel: int
    gives_std: bool = True

    def function(self) -> Callable[..., Posterior]:
        """The engine's function (imported on first use)."""
        if callable(self.run):
            return self.run
        module, name = self.run.split(":")
        return getattr(importlib.import_module(module), name)


#: the engines by ``method`` name; :func:`register_engine` adds one
ENGINES: dict[str, Engine] = {
    "map": Engine("bayes_restore.infer:map_estimate", 16, gives_std=False),
    "exact": Engine("bayes_restore.infer:exact_posterior", 12),
    "vi": Engine("bayes_restore.infer:variational", 48),
    "mcmc": Engine("bayes_restore.infer:mcmc", 24),
}

#: the built-in values of ``restore(..., method=...)`` (see :data:`ENGINES` for all)
METHODS = tuple(ENGINES)


def register_engine(name: str, engine: Engine) -> None:
    """Make ``method=name`` run ``engine`` in :func:`restore`, the tiles, Dask and the CLI.

    Examples
    --------
    >>> from bayes_restore.infer import map_estimate
    >>> register_engine("my-map", Engine(map_estimate, 16, gives_std=False))
    >>> check_method("my-map")
    'my-map'
    >>> _ = ENGINES.pop("my-map")  # undo the example
    """
    if not isinstance(name, str) or not name or name in ENGINES:
        raise ValueError(f"name must be a new engine name, got {name!r}")
    if not isinstance(engine, Engine):
        raise TypeError(f"engine must be an Engine, got {type(engine).__name__}")
    ENGINES[name] = engine


def check_method(method: Any) -> str:
    """``method`` if it names an engine, else a ``ValueError`` listing them."""
    if not isinstance(method, str) or method not in ENGINES:
        raise ValueError(f"method must be one of {tuple(ENGINES)}, got {method!r}")
    return method


def build_prior(
    y: torch.Tensor,
    prior: str | Distribution,
    *,
    sigma: float,
    scale: float | None,
    weight: float | None,
    beta: float | None,
    operator: LinearOperator | None = None,
) -> Distribution:
    """The prior of ``denoise``/``restore`` from their arguments, with their checks.

    ``y`` is the observation (2-D, 3-D ``(C, H, W)`` or 4-D ``(N, C, H, W)``); the
    prior's event shape is the image's, ``A^T y``'s when an operator is given.
    """
    op = as_operator(operator)
    event_obs = tuple(y.shape[-3:]) if y.dim() == 4 else tuple(y.shape)
    # an operator may carry batch dimensions (one mask per image): keep the event's
    event_shape = tuple(op.adjoint(torch.zeros(event_obs, dtype=y.dtype)).shape)[-len(event_obs):]
    if not isinstance(prior, str):  # an instance: any distribution over the image
        if not isinstance(prior, Distribution):
            raise TypeError(
                f"prior must be a prior name or a distribution instance, got "
                f"{type(prior).__name__}"
            )
        if scale is not None or weight is not None or beta is not None:
            raise ValueError("give scale, weight or beta only with a prior name, not an instance")
        if tuple(prior.event_shape) != event_shape:
            raise ValueError(
                f"prior has event shape {tuple(prior.event_shape)} but the image is {event_shape}"
            )
        return prior
    if scale is not None and weight is not None:
        raise ValueError("give either scale or weight, not both")
    if scale is None and weight is None:
        raise ValueError("give the prior scale (scale=) or the energy weight (weight=)")
    if scale is not None:
        check_positive(scale, "scale")
    else:
        check_positive(weight, "weight")
    probe = make_prior(prior, 1.0, shape=event_shape, beta=beta)  # validates name and beta
    if scale is None and _order_of(probe) is None:
        raise ValueError(
            f"give scale= for prior {prior!r}: the energy weight maps to a scale only for the "
            "gradient-prior family"
        )
    b = scale if scale is not None else scale_from_weight(sigma, weight, _order_of(probe))
    return make_prior(
        prior, torch.tensor(float(b), dtype=y.dtype, device=y.device), shape=event_shape, beta=beta
    )


def resolve_parameters(
    y: torch.Tensor,
    prior: str | Distribution,
    *,
    sigma: float | None,
    scale: float | None,
    weight: float | None,
    beta: float | None,
    operator: LinearOperator | None = None,
    seed: int | None = 0,
) -> tuple[float, float | None, float | None, dict]:
    """Fill in ``sigma`` and the prior scale when they are ``None``: parameter-free restoration.

    ``sigma=None``: :func:`~bayes_restore.hyper.estimate_sigma` (one value for the
    whole input: the root mean square of the per-channel estimates). ``scale=None`` and
    ``weight=None``: for TV, Stein's unbiased risk estimate
    (:func:`~bayes_restore.hyper.choose_tv_weight`); for the Gaussian-gradient prior, the
    exact empirical Bayes scale (:func:`~bayes_restore.hyper.gaussian_empirical_bayes`).
    Returns ``(sigma, scale, weight, info)``; ``info`` says what was estimated. An
    estimated ``sigma`` of 0 (a constant or noise-free image) is returned as ``0.0``
    with no scale: there is nothing to restore. ``seed`` seeds SURE's random probe.
    """
    from bayes_restore import hyper

    info: dict = {}
    op_is_identity = as_operator(operator).is_identity
    if sigma is None:
        sigma = _rms(hyper.estimate_sigma(y))
        info["sigma_estimated"] = sigma
        if sigma == 0.0:
            return 0.0, None, None, info
    check_positive(sigma, "sigma")
    sigma = as_float(sigma, "sigma")
    if scale is not None or weight is not None or not isinstance(prior, str):
        return sigma, scale, weight, info
    probe = make_prior(prior.lower(), 1.0, shape=(2, 2), beta=beta)  # validates name and beta
    order = _order_of(probe)
    if not op_is_identity:
        raise ValueError(
            "give scale= or weight=: the automatic choice is for denoising (operator=None)"
        )
    if probe.beta == 1.0:
        generator = torch.Generator()  # SURE's probe is drawn on the CPU
        if seed is None:
            generator.seed()
        else:
            generator.manual_seed(seed)
        _, weight, tv_info = hyper.choose_tv_weight(y, sigma, isotropic=probe.isotropic,
                                                    generator=generator)
        info.update(weight_method=tv_info["method"], weight_estimated=weight,
                    scale_estimated=tv_info["scale"])
        return sigma, None, weight, info
    if order == 2.0:
        _, scale = hyper.gaussian_empirical_bayes(y, sigma=sigma)
        scale = float(_rms(torch.as_tensor(scale)))
        info.update(scale_method="evidence", scale_estimated=scale)
        return sigma, scale, None, info
    raise ValueError(
        f"give scale= or weight= for prior {prior!r} (automatic choice: TV and the "
        "Gaussian-gradient prior)"
    )


def _order_of(prior: Any) -> float | None:
    """The prior's gradient order ``beta`` if it is of the gradient family, else None."""
    return getattr(prior, "gradient_order", None)


def _rms(value) -> float:
    """Root mean square, without overflow for values near the float range's end."""
    t = torch.as_tensor(value, dtype=torch.float64).abs()
    peak = float(t.max()) if t.numel() else 0.0
    if peak == 0.0 or not math.isfinite(peak):
        return peak
    return peak * float((t / peak).square().mean().sqrt())


def check_observation(image: Any, channel_axis: Any = None) -> tuple[torch.Tensor, ImageLayout]:
    """A finite channels-first float tensor of ``image`` and how to give results back.

    See :func:`~bayes_restore._validation.as_image` for the accepted layouts and dtypes.
    """
    return as_image(image, "image", channel_axis=channel_axis)


def restore(
    image: Any,
    prior: str | Distribution = "tv",
    *,
    sigma: float | None = None,
    scale: float | None = None,
    weight: float | None = None,
    beta: float | None = None,
    operator: LinearOperator | None = None,
    method: str = "map",
    device: str | torch.device | None = None,
    channel_axis: int | None = None,
    seed: int | None = 0,
    **engine_kwargs: Any,
) -> Posterior:
    r"""Restore an image and say how sure each pixel is: the posterior of ``y = A x + noise``.

    The model is ``x ~ prior(b)``, ``y ~ N(A x, sigma^2 I)``
    (:func:`~bayes_restore.models.restoration_model`); ``method`` picks the engine:

    - ``"map"``: the MAP only (:func:`~bayes_restore.infer.map_estimate`); ``std`` is
      ``None`` and :meth:`Posterior.interval` says so.
    - ``"exact"``: Gaussian-gradient prior, whose posterior is Gaussian: for ``A = I``
      exact mean and per-pixel std by the DCT (no sampling); for any other operator the
      mean by preconditioned conjugate gradients and the std from perturb-and-optimise
      draws (:func:`~bayes_restore.infer.exact_posterior`); draws with ``num_samples=``.
    - ``"vi"``: Pyro SVI with a mean-field (``guide="normal"``) or low-rank
      (``guide="lowrank"``) Gaussian guide (:func:`~bayes_restore.infer.variational`).
    - ``"mcmc"``: proximal Langevin (SK-ROCK / MYULA) for the TV family at full size,
      Pyro's NUTS (``sampler="nuts"``) for small images
      (:func:`~bayes_restore.infer.mcmc`).

    Parameters
    ----------
    image : numpy.ndarray or torch.Tensor
        Observation: ``(H, W)``, ``(C, H, W)`` or ``(N, C, H, W)`` (or channels last
        with ``channel_axis=-1``). float32 and float64 are computed as they are; half
        precision in float32 and returned in the input's dtype; integer and boolean
        images are scaled as scikit-image's ``img_as_float`` does (``uint8`` by 1/255,
        signed types to ``[-1, 1]``) and the result is float (float64 for numpy, torch's
        default float dtype for tensors). ``sigma``, ``scale`` and ``weight`` are then in
        those ``[0, 1]`` units.
    prior, sigma, scale, weight, beta
        As in :func:`~bayes_restore.denoise`; ``None`` means "estimate" (for denoising),
        and the estimates are in ``diagnostics["parameters"]``. With ``method="mcmc"``, a
        TV prior and ``scale=weight=None`` the scale is *sampled* with the image (the
        hierarchical model, ``mcmc(..., sample_scale=True)``, started at SURE's scale; pass
        ``sample_scale=False`` to keep SURE's): ``diagnostics["parameters"]`` then has
        ``scale_method="hierarchical"``, ``scale`` (the posterior mean), its ``weight``,
        ``scale_std`` and ``scale_interval`` (90 %).
    operator : LinearOperator, optional
        ``A``; the identity when ``None``.
    method : {"map", "exact", "vi", "mcmc"}, default "map"
    device : str or torch.device, optional
        Where to compute (``"cuda"``, ``"cuda:1"``...); default the input's device. The
        result comes back on the input's device (numpy for numpy input).
    channel_axis : int, optional
        The axis of colour channels, as in scikit-image: ``-1`` for ``(H, W, 3)`` arrays
        (what imageio, Pillow and scikit-image read) and ``(N, H, W, 3)`` stacks. The
        results have the channels on the same axis. ``None``: channels first; a 3-D or
        4-D image whose last axis has 3 or 4 entries is then refused as ambiguous.
    seed : int or None, default 0
        Seeds every random draw of the call (the engine's draws, the SURE probe of the
        automatic weight): the same call gives bit-identical results every time. Give
        another integer for another independent run, ``None`` for fresh entropy from the
        operating system (not reproducible).
    **engine_kwargs
        Passed to the engine (``num_samples``, ``guide``, ``sampler``, ``tol``, ...); a
        keyword the engine does not take is a ``TypeError`` that lists those it takes.

    Returns
    -------
    Posterior
        Numpy fields for numpy input, tensors (on the input's device) for tensor input.
        When ``sigma`` is estimated and the estimate is 0 (a constant or noise-free
        image), there is no noise to remove: the image is returned unchanged (``std``
        zero), with a ``UserWarning`` and ``diagnostics["parameters"]["reason"]``.

    Raises
    ------
    ValueError
        Naming the argument: a bad image (wrong dimensions, NaN/inf, empty, ambiguous
        channels-last colour), ``sigma``/``scale``/``weight`` not finite and > 0, an
        unknown prior or method, an operator whose shape does not fit the image.
    TypeError
        A non-number where a number is expected; an unknown keyword.

    Examples
    --------
    >>> import numpy as np
    >>> y = np.random.default_rng(0).random((32, 32))
    >>> post = restore(y, "gaussian", sigma=0.1, scale=0.1, method="exact")
    >>> lo, hi = post.interval(0.9)
    >>> bool((lo < post.mean).all() and (post.mean < hi).all())
    True
    """
    check_method(method)
    seed = check_seed(seed)
    sigma, scale, weight, beta = (optional_number(v, n) for v, n in (
        (sigma, "sigma"), (scale, "scale"), (weight, "weight"), (beta, "beta")))
    engine = _engine(method)
    check_engine_kwargs(method, engine_kwargs)
    y, layout = check_observation(image, channel_axis)
    home = y.device
    y = to_device(y, device)
    check_operator(operator, y)
    if "generator" not in engine_kwargs and "seed" in inspect.signature(engine).parameters:
        engine_kwargs = {**engine_kwargs, "seed": seed}
    y, unit = _unit_scale(y, prior, scale, weight)
    if unit != 1.0:  # extreme magnitudes: restore y / unit, the same model in other units
        sigma, scale, weight = _rescale(unit, prior, sigma, scale, weight, beta)
    sigma, scale, weight, estimated = resolve_parameters(
        y, prior, sigma=sigma, scale=scale, weight=weight, beta=beta, operator=operator,
        seed=seed,
    )
    if sigma == 0.0:  # estimated, on a constant or noise-free image
        post = unchanged_posterior(y, method, estimated)
    else:
        prior_obj = build_prior(
            y, prior, sigma=sigma, scale=scale, weight=weight, beta=beta, operator=operator
        )
        model_kwargs = dict(
            prior=prior_obj,
            sigma=torch.tensor(sigma, dtype=y.dtype, device=y.device),
            operator=operator,
        )
        if (method == "mcmc" and "weight_method" in estimated
                and engine_kwargs.get("sampler") != "nuts"):
            engine_kwargs = {"sample_scale": True, **engine_kwargs}  # hierarchical, from b
        post = engine(restoration_model, y, **model_kwargs, **engine_kwargs)
        parameters = {"sigma": sigma, "scale": _mean_of(getattr(prior_obj, "scale", None)),
                      "weight": _mean_of(prior_obj.weight(sigma)
                                         if hasattr(prior_obj, "weight") else None),
                      **estimated}
        if "scale_samples" in post.diagnostics:  # the engine sampled b: report its posterior
            parameters = _sampled_scale(post.diagnostics["scale"], sigma, parameters)
        post = with_diagnostics(post, parameters=parameters)
    if unit != 1.0:
        post = _in_units(post, unit, _order(prior, beta))
    return post.map_images(lambda t: layout.give_back(t.to(home)))


def unchanged_posterior(y: torch.Tensor, method: str, estimated: dict) -> Posterior:
    """The answer when the estimated noise is 0: the observation itself, with a warning.

    ``estimated`` is the record of :func:`resolve_parameters`; the posterior is a point
    mass at ``y`` (``std`` zero for the engines that give one).
    """
    reason = ("the estimated noise level is 0 (a constant or noise-free image): there is "
              "nothing to remove, the image is returned unchanged; give sigma= to restore it")
    warnings.warn(reason, UserWarning, stacklevel=4)
    parameters = {"sigma": 0.0, "scale": None, "weight": None, **estimated, "reason": reason}
    fields = {"map": y.clone()} if method == "map" else {"mean": y.clone(),
                                                         "std": torch.zeros_like(y)}
    return Posterior(method=method, diagnostics=Diagnostics(parameters=parameters, gaussian=True),
                     **fields)


#: images whose largest magnitude lies outside [2^-LIMIT, 2^LIMIT] are restored in units of
#: a power of two (exact), where the energies' squares cannot overflow or underflow
_UNIT_LIMIT = 40


def _unit_scale(y: torch.Tensor, prior, scale, weight) -> tuple[torch.Tensor, float]:
    """``(y / unit, unit)`` with ``unit`` a power of two bringing extreme values near 1."""
    if not isinstance(prior, str):  # a prior instance carries its scale in the input's units
        return y, 1.0
    peak = float(y.detach().abs().max())
    if peak == 0.0 or 2.0**-_UNIT_LIMIT <= peak <= 2.0**_UNIT_LIMIT:
        return y, 1.0
    unit = 2.0 ** math.frexp(peak)[1]
    return y / unit, unit


def _rescale(unit, prior, sigma, scale, weight, beta):
    """The parameters in units of ``unit``: sigma, b by unit; lambda by unit^(2 - beta)."""
    order = _order(prior, beta)
    if sigma is not None:
        sigma = as_float(sigma, "sigma") / unit
    if scale is not None:
        scale = as_float(scale, "scale") / unit
    if weight is not None:
        weight = as_float(weight, "weight") / unit ** (2 - order)
    return sigma, scale, weight


def _order(prior: str, beta: float | None) -> float:
    """The order of a named prior (``2 - order`` is how its weight scales with units)."""
    order = _order_of(make_prior(prior, 1.0, shape=(2, 2), beta=beta))  # validates the name
    return 1.0 if order is None else order


def _mean_of(value: Any) -> float | None:
    if value is None:
        return None
    return float(torch.as_tensor(value, dtype=torch.float64).mean())


def _in_units(post: Posterior, unit: float, order: float) -> Posterior:
    """``post`` of ``y / unit`` turned back into the input's units (prior order ``order``)."""
    params = dict(post.diagnostics.get("parameters", {}))
    for key in ("sigma", "scale", "sigma_estimated", "scale_estimated", "scale_std"):
        if isinstance(params.get(key), float):
            params[key] *= unit
    for key in ("weight", "weight_estimated"):
        if isinstance(params.get(key), float):
            params[key] *= unit ** (2 - order)
    return with_diagnostics(post.map_images(lambda t: t * unit), parameters=params)


def _sampled_scale(summary: dict, sigma: float, parameters: dict) -> dict:
    """``parameters`` with the posterior of the scale in place of its starting value."""
    mean = lambda v: float(torch.as_tensor(v, dtype=torch.float64).mean())  # noqa: E731
    start = {"scale_start": parameters["scale"],
             "scale_start_method": parameters.get("weight_method", "given")}
    drop = ("weight_method", "weight_estimated", "scale_estimated", "scale", "weight")
    kept = {k: v for k, v in parameters.items() if k not in drop}
    scale = mean(summary["mean"])
    return {**kept, "scale": scale, "weight": weight_from_scale(sigma, scale),
            "scale_method": "hierarchical", "scale_std": mean(summary["std"]),
            "scale_interval": tuple(mean(v) for v in summary["interval"]), **start}


def to_device(y: torch.Tensor, device: str | torch.device | None) -> torch.Tensor:
    """``y`` on ``device`` (checked: a clear error when CUDA is asked for and absent)."""
    if device is None:
        return y
    target = parse_device(device)
    if target.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available")
    return y.to(target)


def _engine(method: str) -> Callable[..., Posterior]:
    return ENGINES[method].function()


#: what restore() passes to the engine itself: not the user's to give twice
_RESERVED = ("prior", "sigma", "operator", "model", "seed", "model_kwargs")


def engine_options(method: str) -> tuple[str, ...]:
    """The keywords the engine of ``method`` takes (what ``restore(**engine_kwargs)`` accepts).

    Examples
    --------
    >>> "num_samples" in engine_options("mcmc")
    True
    """
    params = inspect.signature(_engine(method)).parameters.values()
    return tuple(p.name for p in params
                 if p.kind == p.KEYWORD_ONLY and p.name not in _RESERVED)


def check_engine_kwargs(method: str, engine_kwargs: dict) -> None:
    """Raise ``TypeError`` for a keyword that the engine of ``method`` does not take."""
    allowed = engine_options(method)
    for key in engine_kwargs:
        if key in ("prior", "sigma", "operator", "seed"):
            raise TypeError(f"restore() got {key}= twice (as its own argument and the engine's)")
        if key not in allowed:
            raise TypeError(
                f"restore() got an unexpected keyword argument {key!r}: method={method!r} "
                f"takes {', '.join(allowed)}"
            )


def check_operator(operator: Any, y: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``operator`` is a LinearOperator that fits the image ``y``."""
    if operator is None:
        return
    if not isinstance(operator, LinearOperator):
        raise TypeError(
            f"operator must be a bayes_restore.operators.LinearOperator, got "
            f"{type(operator).__name__}"
        )
    probe = torch.zeros_like(y)
    try:
        back = operator.forward(operator.adjoint(probe))
    except (RuntimeError, ValueError, IndexError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(
            f"operator {operator!r} does not fit the image of shape {tuple(y.shape)}: {first}"
        ) from None
    if tuple(back.shape) != tuple(y.shape):
        raise ValueError(
            f"operator {operator!r} does not fit the image: A A^T of an image of shape "
            f"{tuple(y.shape)} has shape {tuple(back.shape)}"
        )
