"""The model's parameters from ``restore``'s arguments: the prior, estimated sigma and scale.

Also the change of units that keeps extreme magnitudes away from overflow and underflow.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch.distributions import Distribution

from bayes_restore._validation import as_float, check_positive, rms
from bayes_restore.energy import scale_from_weight, weight_from_scale
from bayes_restore.operators import LinearOperator, as_operator
from bayes_restore.posterior import Diagnostics, Posterior, with_diagnostics
from bayes_restore.priors import make_prior

__all__ = ["build_prior", "resolve_parameters", "unchanged_posterior", "unit_scale",
           "rescale", "prior_order", "in_units", "sampled_scale", "vb_learn",
           "learned_parameters", "UNIT_LIMIT"]


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

    ``sigma=None``: for denoising :func:`~bayes_restore.hyper.estimate_sigma` (one value for
    the whole input: the root mean square of the per-channel estimates); with an operator
    :func:`~bayes_restore.hyper.estimate_observation_sigma`, which asks the operator for its
    structure (a mask: the observed pixels only). ``scale=None`` and ``weight=None``:

    - TV, denoising: Stein's unbiased risk estimate
      (:func:`~bayes_restore.hyper.choose_tv_weight`);
    - TV with an operator: empirical Bayes, the maximum marginal likelihood by SAPG
      (:func:`~bayes_restore.hyper.tv_scale_sapg` with ``operator=``, started at
      scikit-image weight ``OPERATOR_THETA0_WEIGHT * sigma``);
    - the Gaussian-gradient prior: the maximum of the evidence
      (:func:`~bayes_restore.hyper.gaussian_empirical_bayes` with ``operator=``: in closed
      form where the operator shares the prior's DCT basis, else by PCG, its probes seeded
      by ``seed``).

    Returns ``(sigma, scale, weight, info)``; ``info`` says what was estimated and how
    (``sigma_method``, ``weight_method`` or ``scale_method``). An estimated ``sigma`` of
    0 (a constant or noise-free image) is returned as ``0.0`` with no scale: there is
    nothing to restore. ``seed`` seeds SURE's random probe and SAPG's Langevin noise.

    Examples
    --------
    >>> import torch
    >>> from bayes_restore.operators import Blur, gaussian_psf
    >>> g = torch.Generator().manual_seed(0)
    >>> clean = torch.zeros(48, 48); clean[12:36, 12:36] = 1.0
    >>> op = Blur(gaussian_psf(5, 1.0))
    >>> y = op(clean) + 0.05 * torch.randn(48, 48, generator=g)
    >>> sigma, scale, weight, info = resolve_parameters(
    ...     y, "tv", sigma=None, scale=None, weight=None, beta=None, operator=op)
    >>> info["sigma_method"], info["weight_method"], weight > 0
    ('observation', 'sapg', True)
    """
    from bayes_restore import hyper

    info: dict = {}
    op = as_operator(operator)
    op_is_identity = op.is_identity
    if sigma is None:
        sigma = hyper.estimate_observation_sigma(y, op)  # estimate_sigma's RMS for A = I
        if not op_is_identity:
            info["sigma_method"] = "observation"
        info["sigma_estimated"] = sigma
        if sigma == 0.0:
            return 0.0, None, None, info
    check_positive(sigma, "sigma")
    sigma = as_float(sigma, "sigma")
    if scale is not None or weight is not None or not isinstance(prior, str):
        return sigma, scale, weight, info
    probe = make_prior(prior.lower(), 1.0, shape=(2, 2), beta=beta)  # validates name and beta
    order = _order_of(probe)
    generator = torch.Generator()  # SURE's probe and SAPG's noise are drawn on the CPU
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    if probe.beta == 1.0 and not op_is_identity:
        est = hyper.tv_scale_sapg(y, sigma, operator=op, isotropic=probe.isotropic,
                                  theta0=OPERATOR_THETA0_WEIGHT / sigma, generator=generator)
        info.update(weight_method="sapg", weight_estimated=est.weight,
                    scale_estimated=est.scale)
        return sigma, None, est.weight, info
    if probe.beta == 1.0:
        _, weight, tv_info = hyper.choose_tv_weight(y, sigma, isotropic=probe.isotropic,
                                                    generator=generator,
                                                    guard="sigma_estimated" in info)
        info.update(weight_method=tv_info["method"], weight_estimated=weight,
                    scale_estimated=tv_info["scale"], sigma_low=tv_info["sigma_low"])
        return sigma, None, weight, info
    if order == 2.0:
        # the closed form where the operator shares the prior's DCT basis, else PCG with
        # probes drawn from the seed
        _, scale = hyper.gaussian_empirical_bayes(y, sigma=sigma, operator=op,
                                                  seed=generator.initial_seed())
        scale = float(rms(torch.as_tensor(scale)))
        info.update(scale_method="evidence", scale_estimated=scale)
        return sigma, scale, None, info
    raise ValueError(
        f"give scale= or weight= for prior {prior!r} (automatic choice: TV and the "
        "Gaussian-gradient prior)"
    )


#: SAPG's starting point with an operator, as scikit-image's weight over sigma (the oracle
#: weights of blur, x2 decimation and masks at sigma = 0.01 lie between 0.03 and 0.5 sigma)
OPERATOR_THETA0_WEIGHT = 0.1


def _order_of(prior: Any) -> float | None:
    """The prior's gradient order ``beta`` if it is of the gradient family, else None."""
    return getattr(prior, "gradient_order", None)




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
UNIT_LIMIT = 40


def unit_scale(y: torch.Tensor, prior, scale, weight) -> tuple[torch.Tensor, float]:
    """``(y / unit, unit)`` with ``unit`` a power of two bringing extreme values near 1."""
    if not isinstance(prior, str):  # a prior instance carries its scale in the input's units
        return y, 1.0
    peak = float(y.detach().abs().max())
    if peak == 0.0 or 2.0**-UNIT_LIMIT <= peak <= 2.0**UNIT_LIMIT:
        return y, 1.0
    unit = 2.0 ** math.frexp(peak)[1]
    return y / unit, unit


def rescale(unit, prior, sigma, scale, weight, beta):
    """The parameters in units of ``unit``: sigma, b by unit; lambda by unit^(2 - beta)."""
    order = prior_order(prior, beta)
    if sigma is not None:
        sigma = as_float(sigma, "sigma") / unit
    if scale is not None:
        scale = as_float(scale, "scale") / unit
    if weight is not None:
        weight = as_float(weight, "weight") / unit ** (2 - order)
    return sigma, scale, weight


def prior_order(prior: str, beta: float | None) -> float:
    """The order of a named prior (``2 - order`` is how its weight scales with units)."""
    order = _order_of(make_prior(prior, 1.0, shape=(2, 2), beta=beta))  # validates the name
    return 1.0 if order is None else order



def in_units(post: Posterior, unit: float, order: float) -> Posterior:
    """``post`` of ``y / unit`` turned back into the input's units (prior order ``order``)."""
    params = dict(post.diagnostics.get("parameters", {}))
    for key in ("sigma", "scale", "sigma_estimated", "scale_estimated", "scale_std",
                "sigma_start", "scale_start"):
        if isinstance(params.get(key), float):
            params[key] *= unit
    for key in ("weight", "weight_estimated"):
        if isinstance(params.get(key), float):
            params[key] *= unit ** (2 - order)
    return with_diagnostics(post.map_images(lambda t: t * unit), parameters=params)


def sampled_scale(summary: dict, sigma: float, parameters: dict) -> dict:
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


def vb_learn(prior: str | Distribution, beta: float | None, estimated: dict,
             engine_kwargs: dict) -> tuple[str, ...]:
    """What ``restore(..., method="vi")`` lets the variational engine refine by VB-EM.

    The TV prior only (the Gaussian-gradient prior's parameters come from its exact
    evidence), with the structured engine: ``"sigma"`` when sigma was estimated,
    ``"scale"`` when the weight was estimated by SAPG (with an operator); ``()`` when the
    user chose the engine's ``learn`` or ``engine="svi"``. SURE's weight (denoising) is
    kept: measured on the parameter benchmark, VB-EM's scale is off there (0.57 dB
    below the oracle weight on average, against SURE's 0.04 dB), while with a blur it is
    within 0.02 dB of the oracle.

    Examples
    --------
    >>> vb_learn("tv", None, {"sigma_estimated": 0.1, "weight_method": "sapg"}, {})
    ('sigma', 'scale')
    >>> vb_learn("tv", None, {"sigma_estimated": 0.1, "weight_method": "sure"}, {})
    ('sigma',)
    >>> vb_learn("gaussian", None, {"sigma_estimated": 0.1}, {})
    ()
    """
    if "learn" in engine_kwargs or engine_kwargs.get("engine", "auto") == "svi":
        return ()
    order = prior_order(prior, beta) if isinstance(prior, str) else _order_of(prior)
    if order != 1.0:
        return ()
    learn = ("sigma",) if "sigma_estimated" in estimated else ()
    if estimated.get("weight_method") == "sapg":
        learn += ("scale",)
    return learn


def learned_parameters(diagnostics: Any, parameters: dict) -> dict:
    """``parameters`` with the VB-EM values of the variational engine in place of its start.

    ``sigma`` and ``scale`` become the engine's (``sigma_method`` / ``scale_method``
    ``"vb-em"`` for the learned ones), ``weight`` follows; the estimates they started from
    are kept as ``sigma_start`` and ``scale_start``.
    """
    mean = lambda v: float(torch.as_tensor(v, dtype=torch.float64).mean())  # noqa: E731
    learned = tuple(diagnostics["learned"])
    sigma = mean(diagnostics["sigma"]) if "sigma" in learned else parameters["sigma"]
    scale = mean(diagnostics["prior_scale"]) if "scale" in learned else parameters["scale"]
    out = {**parameters, "sigma_start": parameters["sigma"], "scale_start": parameters["scale"]}
    if "sigma" in learned:
        out["sigma_method"] = "vb-em"
    if "scale" in learned:
        out["scale_method"] = "vb-em"
    out.update(sigma=sigma, scale=scale, weight=weight_from_scale(sigma, scale))
    return out
