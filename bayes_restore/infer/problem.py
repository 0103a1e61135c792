"""One model recognizer: a traced Pyro model as a typed restoration problem for every engine.

The engines' fast paths (closed forms, certified TV solvers, Langevin samplers, the exact
Gaussian posterior) apply to one model shape: a latent image ``x`` under a prior of the
gradient family and an observation ``y`` of ``A x`` under a Gaussian or Laplace noise law.
:func:`recognise` traces a model and returns that problem, or ``None`` for any other model
(the engines then take their generic Pyro path). It asks the distributions what they are,
never their class:

- the prior's ``gradient_order`` (``beta``), ``isotropic`` and ``scale``;
- the likelihood's ``noise`` (``"gaussian"``, ``"laplace"`` or ``None``), its
  ``noise_scale``, ``operator``, ``event_dim`` and the image ``x`` it observes.

A new prior or likelihood reaches the fast paths by providing these attributes, and the
generic paths by being a Pyro distribution with an honest ``log_prob``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyro.poutine as poutine
import torch
from pyro.poutine.util import site_is_subsample

from bayes_restore._validation import broadcast_shape
from bayes_restore.models import X_SITE, Y_SITE
from bayes_restore.operators import LinearOperator

from .generic import initial_trace

__all__ = ["RestorationProblem", "recognise", "NOISE_LAWS"]

#: noise laws the fast paths know (a likelihood's ``noise`` attribute)
NOISE_LAWS = ("gaussian", "laplace")


@dataclass(frozen=True)
class RestorationProblem:
    """A traced model that is exactly ``x ~ prior(b, beta)``, ``y ~ noise(A x, sigma)``.

    Attributes
    ----------
    y : torch.Tensor
        The observation, ``batch + A(event)``.
    prior : torch.distributions.Distribution
        The prior: it has ``gradient_order`` (``beta``), ``isotropic``, ``scale``.
    operator : LinearOperator
        ``A``.
    sigma : torch.Tensor
        The likelihood's ``noise_scale`` (the Gaussian std or the Laplace scale), one per
        image: ``batch + (1,) * event_dim``.
    scale : torch.Tensor
        The prior scale ``b``, one per image, same shape.
    event_dim : int
        2 for ``(H, W)`` images, 3 for ``(C, H, W)``.
    noise : str
        ``"gaussian"`` or ``"laplace"``.

    Examples
    --------
    >>> import torch
    >>> from bayes_restore.models import restoration_model
    >>> from bayes_restore.priors import TotalVariation
    >>> y = torch.rand(8, 8, dtype=torch.float64)
    >>> p = recognise(restoration_model, (y,), {"prior": TotalVariation(0.1, shape=(8, 8)),
    ...                                         "sigma": 0.1})
    >>> p.noise, p.beta, p.event_dim, round(float(p.weight), 6)  # lambda = 2 sigma^2 / b
    ('gaussian', 1.0, 2, 0.2)
    """

    y: torch.Tensor
    prior: Any
    operator: LinearOperator
    sigma: torch.Tensor
    scale: torch.Tensor
    event_dim: int
    noise: str = "gaussian"

    @property
    def beta(self) -> float:
        """The prior's order (1: TV, 2: Gaussian-gradient)."""
        return float(self.prior.gradient_order)

    @property
    def isotropic(self) -> bool:
        """Whether the prior's gradient norm is isotropic."""
        return bool(getattr(self.prior, "isotropic", True))

    @property
    def weight(self) -> torch.Tensor:
        """The energy weight: Gaussian ``lambda = 2 sigma^2 / (beta b^beta)``; Laplace
        (TV-L1, energy ``|A x - y|_1 + lambda TV(x)``) ``lambda = b_l / b``."""
        if self.noise == "laplace":
            return self.sigma / self.scale**self.beta
        return 2 * self.sigma**2 / (self.beta * self.scale**self.beta)


def recognise(model: Callable, args: tuple, kwargs: dict) -> RestorationProblem | None:
    """The :class:`RestorationProblem` of ``model(*args, **kwargs)``, or ``None``.

    The model must have exactly two sample sites, the latent image ``"x"`` and the
    observed ``"y"``; the prior must declare a ``gradient_order``, the likelihood a
    ``noise`` law of :data:`NOISE_LAWS`, observe the image itself (checked by tracing
    again at a random image), and both have one parameter value per image.
    """
    first = initial_trace(model, args, kwargs)
    sites = {n: s for n, s in first.nodes.items()
             if s["type"] == "sample" and not site_is_subsample(s)}
    if set(sites) != {X_SITE, Y_SITE} or not sites[Y_SITE]["is_observed"]:
        return None
    if getattr(sites[X_SITE]["fn"], "gradient_order", None) is None:
        return None
    # trace again at a random image: the likelihood must observe the image itself
    x0 = sites[X_SITE]["value"]
    probe = torch.rand(x0.shape, generator=torch.Generator().manual_seed(0), dtype=x0.dtype)
    with poutine.block():
        trace = poutine.trace(poutine.condition(model, {X_SITE: probe.to(x0.device)})).get_trace(
            *args, **kwargs
        )
    prior, lik = trace.nodes[X_SITE]["fn"], trace.nodes[Y_SITE]["fn"]
    noise = getattr(lik, "noise", None)
    if getattr(prior, "gradient_order", None) is None or noise not in NOISE_LAWS:
        return None
    x_value = trace.nodes[X_SITE]["value"]
    lik_x = getattr(lik, "x", None)
    if not isinstance(lik_x, torch.Tensor) or lik_x.shape != x_value.shape \
            or not torch.equal(lik_x, x_value):
        return None
    y = trace.nodes[Y_SITE]["value"]
    event_dim = len(prior.event_shape)
    if lik.event_dim != event_dim or y.shape != lik.batch_shape + lik.event_shape:
        return None
    sigma = _per_image(lik.noise_scale, y.shape, event_dim, y)
    scale = torch.as_tensor(prior.scale)
    scale = _per_image(scale.reshape(scale.shape + (1,) * event_dim), y.shape, event_dim, y)
    if sigma is None or scale is None:
        return None
    return RestorationProblem(y, prior, lik.operator, sigma, scale, event_dim, noise)


def _per_image(value: Any, shape: torch.Size, event_dim: int, like: torch.Tensor):
    """``value`` as one number per image (``batch + (1,) * event_dim``), or None if it varies."""
    value = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    try:
        full = value.expand(broadcast_shape(value.shape, shape))
    except ValueError:
        return None
    if full.shape != shape:
        return None
    dims = tuple(range(-event_dim, 0))
    if all(n == 1 for n in value.shape[-event_dim:]):  # already one per image: no scan
        lead = value.shape[:max(value.dim() - event_dim, 0)]
        return value.reshape(lead + (1,) * event_dim).expand(
            shape[:-event_dim] + (1,) * event_dim).clone()
    first = full.amax(dims, keepdim=True)
    if not torch.equal(full.amin(dims, keepdim=True), first):
        return None
    return first
