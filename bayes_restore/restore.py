"""``restore``: restoration with per-pixel uncertainty, one call for every engine."""

from __future__ import annotations

from typing import Any

import torch

from bayes_restore._validation import (
    as_float,
    check_finite,
    check_positive,
    parse_device,
    to_tensor,
)
from bayes_restore.energy import scale_from_weight, weight_from_scale
from bayes_restore.models import restoration_model
from bayes_restore.operators import LinearOperator, as_operator
from bayes_restore.posterior import Posterior
from bayes_restore.priors import GradientPrior, make_prior

__all__ = ["restore", "METHODS", "build_prior", "resolve_parameters"]

#: accepted values of ``restore(..., method=...)``
METHODS = ("map", "exact", "vi", "mcmc")


def build_prior(
    y: torch.Tensor,
    prior: str | GradientPrior,
    *,
    sigma: float,
    scale: float | None,
    weight: float | None,
    beta: float | None,
    operator: LinearOperator | None = None,
) -> GradientPrior:
    """The prior of ``denoise``/``restore`` from their arguments, with their checks.

    ``y`` is the observation (2-D, 3-D ``(C, H, W)`` or 4-D ``(N, C, H, W)``); the
    prior's event shape is the image's, ``A^T y``'s when an operator is given.
    """
    op = as_operator(operator)
    event_obs = tuple(y.shape[-3:]) if y.dim() == 4 else tuple(y.shape)
    # an operator may carry batch dimensions (one mask per image): keep the event's
    event_shape = tuple(op.adjoint(torch.zeros(event_obs, dtype=y.dtype)).shape)[-len(event_obs):]
    if isinstance(prior, GradientPrior):
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
    b = scale if scale is not None else scale_from_weight(sigma, weight, probe.beta)
    return make_prior(
        prior, torch.tensor(float(b), dtype=y.dtype, device=y.device), shape=event_shape, beta=beta
    )


def resolve_parameters(
    y: torch.Tensor,
    prior: str | GradientPrior,
    *,
    sigma: float | None,
    scale: float | None,
    weight: float | None,
    beta: float | None,
    operator: LinearOperator | None = None,
) -> tuple[float, float | None, float | None, dict]:
    """Fill in ``sigma`` and the prior scale when they are ``None``: parameter-free restoration.

    ``sigma=None``: :func:`~bayes_restore.hyper.estimate_sigma` (one value for the
    whole input: the root mean square of the per-channel estimates). ``scale=None`` and
    ``weight=None``: for TV, Stein's unbiased risk estimate
    (:func:`~bayes_restore.hyper.choose_tv_weight`); for the Gaussian-gradient prior, the
    exact empirical Bayes scale (:func:`~bayes_restore.hyper.gaussian_empirical_bayes`).
    Returns ``(sigma, scale, weight, info)``; ``info`` says what was estimated.
    """
    from bayes_restore import hyper

    info: dict = {}
    op_is_identity = operator is None or type(operator).__name__ == "Identity"
    if sigma is None:
        sigma = float(_rms(hyper.estimate_sigma(y)))
        info["sigma_estimated"] = sigma
    check_positive(sigma, "sigma")
    sigma = as_float(sigma, "sigma")
    if scale is not None or weight is not None or isinstance(prior, GradientPrior):
        return sigma, scale, weight, info
    name = prior.lower() if isinstance(prior, str) else prior
    probe = make_prior(name, 1.0, shape=(2, 2), beta=beta)  # validates the name and beta
    if not op_is_identity:
        raise ValueError(
            "give scale= or weight=: the automatic choice is for denoising (operator=None)"
        )
    if probe.beta == 1.0:
        _, weight, tv_info = hyper.choose_tv_weight(y, sigma, isotropic=probe.isotropic)
        info.update(weight_method=tv_info["method"], weight_estimated=weight,
                    scale_estimated=tv_info["scale"])
        return sigma, None, weight, info
    if probe.beta == 2.0:
        _, scale = hyper.gaussian_empirical_bayes(y, sigma=sigma)
        scale = float(_rms(torch.as_tensor(scale)))
        info.update(scale_method="evidence", scale_estimated=scale)
        return sigma, scale, None, info
    raise ValueError(
        f"give scale= or weight= for prior order beta={probe.beta:g} (automatic choice: TV "
        "and the Gaussian-gradient prior)"
    )


def _rms(value) -> float:
    t = torch.as_tensor(value, dtype=torch.float64)
    return float(t.square().mean().sqrt())


def check_observation(image: Any) -> tuple[torch.Tensor, bool]:
    """Tensor view of a float image of 2 to 4 dimensions, finite; and whether it was numpy."""
    y, as_numpy = to_tensor(image, "image")
    if y.dim() not in (2, 3, 4):
        raise ValueError(
            f"image must be (H, W), (C, H, W) or (N, C, H, W), got {y.dim()} dimensions"
        )
    if min(y.shape) < 1:
        raise ValueError(f"image must not be empty, got shape {tuple(y.shape)}")
    check_finite(y, "image")
    return y, as_numpy


def restore(
    image: Any,
    prior: str | GradientPrior = "tv",
    *,
    sigma: float | None = None,
    scale: float | None = None,
    weight: float | None = None,
    beta: float | None = None,
    operator: LinearOperator | None = None,
    method: str = "map",
    device: str | torch.device | None = None,
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
        Float observation: ``(H, W)``, ``(C, H, W)`` or ``(N, C, H, W)``.
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
    **engine_kwargs
        Passed to the engine (``num_samples``, ``guide``, ``sampler``, ``tol``, ...).

    Returns
    -------
    Posterior
        Numpy fields for numpy input, tensors (on the input's device) for tensor input.

    Examples
    --------
    >>> import numpy as np
    >>> y = np.random.default_rng(0).random((32, 32))
    >>> post = restore(y, "gaussian", sigma=0.1, scale=0.1, method="exact")
    >>> lo, hi = post.interval(0.9)
    >>> bool((lo < post.mean).all() and (post.mean < hi).all())
    True
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    y, as_numpy = check_observation(image)
    home = y.device
    y = _to_device(y, device)
    sigma, scale, weight, estimated = resolve_parameters(
        y, prior, sigma=sigma, scale=scale, weight=weight, beta=beta, operator=operator
    )
    prior_obj = build_prior(
        y, prior, sigma=sigma, scale=scale, weight=weight, beta=beta, operator=operator
    )
    model_kwargs = dict(
        prior=prior_obj,
        sigma=torch.tensor(sigma, dtype=y.dtype, device=y.device),
        operator=operator,
    )
    if method == "mcmc" and "weight_method" in estimated and engine_kwargs.get("sampler") != "nuts":
        engine_kwargs = {"sample_scale": True, **engine_kwargs}  # hierarchical, from SURE's b
    post = _run(method, y, model_kwargs, engine_kwargs)
    parameters = {"sigma": sigma, "scale": float(prior_obj.scale.double().mean()),
                  "weight": float(prior_obj.weight(sigma).double().mean()), **estimated}
    if "scale_samples" in post.diagnostics:  # the engine sampled b: report its posterior
        parameters = _sampled_scale(post.diagnostics["scale"], sigma, parameters)
    post = post.with_fields(diagnostics={**post.diagnostics, "parameters": parameters})
    if as_numpy:
        return post.as_numpy()
    return post if y.device == home else post._convert(lambda t: t.to(home))


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


def _to_device(y: torch.Tensor, device: str | torch.device | None) -> torch.Tensor:
    """``y`` on ``device`` (checked: a clear error when CUDA is asked for and absent)."""
    if device is None:
        return y
    target = parse_device(device)
    if target.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available")
    return y.to(target)


def _run(method: str, y: torch.Tensor, model_kwargs: dict, engine_kwargs: dict) -> Posterior:
    from bayes_restore import infer

    if method == "map":
        return infer.map_estimate(restoration_model, y, **model_kwargs, **engine_kwargs)
    if method == "exact":
        return infer.exact_posterior(restoration_model, y, **model_kwargs, **engine_kwargs)
    if method == "vi":
        return infer.variational(restoration_model, y, **model_kwargs, **engine_kwargs)
    return infer.mcmc(restoration_model, y, **model_kwargs, **engine_kwargs)
