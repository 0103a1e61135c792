"""``restore``: restoration with per-pixel uncertainty, one call for every engine.

The engine registry is :mod:`bayes_restore.engines`, the parameter resolution
:mod:`bayes_restore.parameters`; their names are re-exported here.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch.distributions import Distribution

from bayes_restore._validation import (
    ImageLayout,
    as_image,
    check_seed,
    optional_number,
    parse_device,
)
from bayes_restore.engines import (
    ENGINES,
    METHODS,
    Engine,
    check_engine_kwargs,
    check_method,
    engine_function,
    engine_options,
    register_engine,
)
from bayes_restore.models import restoration_model
from bayes_restore.operators import LinearOperator
from bayes_restore.parameters import (
    build_prior,
    in_units,
    learned_parameters,
    prior_order,
    rescale,
    resolve_parameters,
    sampled_scale,
    unchanged_posterior,
    unit_scale,
    vb_learn,
)
from bayes_restore.posterior import Posterior, with_diagnostics

__all__ = ["restore", "METHODS", "ENGINES", "Engine", "register_engine", "check_method",
           "build_prior", "resolve_parameters", "engine_options",
           "check_operator", "check_engine_kwargs", "unchanged_posterior", "to_device"]


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
    - ``"vi"``: variational inference (:func:`~bayes_restore.infer.variational`): for
      this model a structured Gaussian, deterministic (the exact posterior for the
      Gaussian-gradient prior; variational Bayes with TV's quadratic majoriser for TV,
      whose ``map`` is the restored image, the TV MAP at the final parameters, beside the
      posterior ``mean`` and ``std``); ``engine="svi"`` runs Pyro SVI with a mean-field
      (``guide="normal"``) or low-rank (``guide="lowrank"``) guide instead.
    - ``"mcmc"``: proximal Langevin (SK-ROCK / MYULA) for the TV family at full size,
      Pyro's NUTS (``sampler="nuts"``) for small images
      (:func:`~bayes_restore.infer.mcmc`). Without ``num_samples`` the chains run until
      every pixel has split R-hat <= 1.01 and bulk and tail ESS >= 100 (or ``max_time``);
      the result carries the Monte Carlo errors ``mean_mcse`` and ``std_mcse``.

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
        As in :func:`~bayes_restore.denoise`; ``None`` means "estimate", with an operator
        too (sigma read through the operator, the TV weight by SAPG with the operator, the
        Gaussian scale by the evidence: :func:`~bayes_restore.parameters.resolve_parameters`),
        and the estimates are in ``diagnostics["parameters"]``. With ``method="mcmc"``
        the estimated scale is kept fixed; ``sample_scale=True`` (TV prior, scale or weight
        left out) *samples* it with the image instead (the hierarchical model,
        ``mcmc(..., sample_scale=True)``, started at SURE's scale, SAPG's with an operator;
        its chain in the scale mixes slowly, so give ``num_samples`` and ``warmup`` or a
        long ``max_time``): ``diagnostics["parameters"]`` then has
        ``scale_method="hierarchical"``, ``scale`` (the posterior mean), its ``weight``,
        ``scale_std`` and ``scale_interval`` (90 %).
        With ``method="vi"``, a TV prior and parameters left out, the structured variational
        engine starts from those estimates and refines the estimated ones by VB-EM
        (``learn=``; pass ``learn=()`` to keep them): ``diagnostics["parameters"]`` then has
        ``sigma_method`` / ``scale_method`` ``"vb-em"``, the refined ``sigma``, ``scale``
        and ``weight``, and ``sigma_start``, ``scale_start``.
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
    engine = engine_function(method)
    check_engine_kwargs(method, engine_kwargs)
    y, layout = check_observation(image, channel_axis)
    home = y.device
    y = to_device(y, device)
    check_operator(operator, y)
    if "generator" not in engine_kwargs and "seed" in inspect.signature(engine).parameters:
        engine_kwargs = {**engine_kwargs, "seed": seed}
    y, unit = unit_scale(y, prior, scale, weight)
    if unit != 1.0:  # extreme magnitudes: restore y / unit, the same model in other units
        sigma, scale, weight = rescale(unit, prior, sigma, scale, weight, beta)
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
        if method == "vi":
            learn = vb_learn(prior, beta, estimated, engine_kwargs)
            if learn:  # VB-EM refines the estimates it starts from
                engine_kwargs = {"learn": learn, **engine_kwargs}
        post = engine(restoration_model, y, **model_kwargs, **engine_kwargs)
        parameters = {"sigma": sigma, "scale": _mean_of(getattr(prior_obj, "scale", None)),
                      "weight": _mean_of(prior_obj.weight(sigma)
                                         if hasattr(prior_obj, "weight") else None),
                      **estimated}
        if "scale_samples" in post.diagnostics:  # the engine sampled b: report its posterior
            parameters = sampled_scale(post.diagnostics["scale"], sigma, parameters)
        if post.diagnostics.get("learned"):  # VB-EM refined sigma and / or b
            parameters = learned_parameters(post.diagnostics, parameters)
        post = with_diagnostics(post, parameters=parameters)
    if unit != 1.0:
        post = in_units(post, unit, prior_order(prior, beta))
    return post.map_images(lambda t: layout.give_back(t.to(home)))


def _mean_of(value: Any) -> float | None:
    if value is None:
        return None
    return float(torch.as_tensor(value, dtype=torch.float64).mean())


def to_device(y: torch.Tensor, device: str | torch.device | None) -> torch.Tensor:
    """``y`` on ``device`` (checked: a clear error when CUDA is asked for and absent)."""
    if device is None:
        return y
    target = parse_device(device)
    if target.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available")
    return y.to(target)


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
