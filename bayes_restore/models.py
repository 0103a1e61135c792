"""Ready-made Pyro models: ``x ~ prior``, ``y ~ Normal(A x, sigma^2)``.

Users write their own models too: any Pyro model whose latent image site is
named :data:`X_SITE` (``"x"``) works with the engines of :mod:`bayes_restore.infer`.
"""

from __future__ import annotations

import contextlib

import pyro
import torch

from .likelihoods import GaussianLikelihood
from .operators import LinearOperator, as_operator
from .priors import GradientPrior

__all__ = ["X_SITE", "Y_SITE", "restoration_model"]

#: name of the latent image site
X_SITE = "x"
#: name of the observed image site
Y_SITE = "y"


def restoration_model(
    y: torch.Tensor | None = None,
    *,
    prior: GradientPrior,
    sigma: float | torch.Tensor,
    operator: LinearOperator | None = None,
) -> torch.Tensor:
    r"""Pyro model of the restoration problem ``y = A x + n``, ``n ~ N(0, sigma^2 I)``.

    .. math::

        x \sim \text{prior}, \qquad y \mid x \sim \mathcal{N}(A x, \sigma^2 I)

    Parameters
    ----------
    y : torch.Tensor, optional
        The observation, shape ``batch + A(event)``, where the event is the prior's
        ``event_shape`` (``(H, W)`` or ``(C, H, W)``). Leading batch dimensions are
        independent images, each in its own ``pyro.plate`` (``"batch_0"`` the
        rightmost). ``None`` (Pyro's convention for generative use, e.g.
        ``Predictive`` of the prior predictive) leaves ``"y"`` latent: it is drawn
        given ``x``, with the prior's ``batch_shape`` as the batch.
    prior : torch.distributions.Distribution
        Prior on the image: a :class:`~bayes_restore.priors.GradientPrior` or any
        distribution with the image as its event.
    sigma : float or torch.Tensor
        Noise standard deviation, > 0.
    operator : LinearOperator, optional
        ``A``; the identity when ``None``.

    Returns
    -------
    torch.Tensor
        The value of the latent site ``"x"``.

    Notes
    -----
    The model works with Pyro's inference as written in Pyro's tutorials:
    ``AutoNormal(restoration_model)`` (and the other autoguides, whose default
    initialisation draws from the prior), ``Predictive``, ``NUTS`` without
    ``max_plate_nesting``. Sampling the improper prior draws its proper part (zero
    mean per channel, see :meth:`~bayes_restore.priors.GradientPrior.sample`).

    Examples
    --------
    >>> import torch, pyro.poutine as poutine
    >>> from pyro.infer import Predictive
    >>> from bayes_restore.priors import TotalVariation
    >>> y = torch.zeros(8, 8)
    >>> prior = TotalVariation(0.1, shape=(8, 8))
    >>> tr = poutine.trace(poutine.condition(restoration_model, {"x": y})).get_trace(
    ...     y, prior=prior, sigma=0.1)
    >>> sorted(name for name in tr.nodes if name in ("x", "y"))
    ['x', 'y']
    >>> draws = Predictive(restoration_model, num_samples=3)(prior=prior, sigma=0.1)
    >>> draws["x"].shape, draws["y"].shape  # the prior predictive: y=None
    (torch.Size([3, 8, 8]), torch.Size([3, 8, 8]))
    """
    if y is not None and not isinstance(y, torch.Tensor):
        raise ValueError(f"y must be a torch.Tensor or None, got {type(y).__name__}")
    op = as_operator(operator)
    event = tuple(prior.event_shape)
    event_dim = len(event)
    if event_dim not in (2, 3):
        raise ValueError(f"prior must have an image event shape (H, W) or (C, H, W), got {event}")
    expected = op.output_shape(event)
    if y is None:
        batch = prior.batch_shape
    elif y.dim() < event_dim or tuple(y.shape[y.dim() - event_dim :]) != tuple(expected):
        raise ValueError(
            f"y has shape {tuple(y.shape)}, but the prior's image {event} observed through "
            f"{op!r} has shape {tuple(expected)} (after any batch dimensions)"
        )
    else:
        batch = y.shape[: y.dim() - event_dim]
    with contextlib.ExitStack() as stack:
        for i, size in enumerate(reversed(batch)):
            stack.enter_context(pyro.plate(f"batch_{i}", size, dim=-1 - i))
        x = pyro.sample(X_SITE, prior)
        pyro.sample(Y_SITE, GaussianLikelihood(x, sigma, op, event_dim=event_dim), obs=y)
    return x
