"""Ready-made Pyro models: ``x ~ prior``, ``y ~ Normal(A x, sigma^2)``, and its hierarchical form.

Users write their own models too: any Pyro model whose latent image site is
named :data:`X_SITE` (``"x"``) works with the engines of :mod:`bayes_restore.infer`.
"""

from __future__ import annotations

import contextlib

import pyro
import pyro.distributions as dist
import torch

from ._validation import check_positive
from .likelihoods import GaussianLikelihood
from .operators import LinearOperator, as_operator
from .priors import GradientPrior, TotalVariation

__all__ = [
    "X_SITE",
    "Y_SITE",
    "THETA_SITE",
    "THETA_HYPERPRIOR",
    "restoration_model",
    "hierarchical_tv_model",
]

#: name of the latent image site
X_SITE = "x"
#: name of the observed image site
Y_SITE = "y"
#: name of the precision site ``theta = 1 / b`` of :func:`hierarchical_tv_model`
THETA_SITE = "theta"
#: default ``(alpha, beta0)`` of the Gamma hyperprior on ``theta = 1 / b``: an exponential of
#: mean ``theta = 100`` (``b = 0.01``), weak against the ``N - C`` of any real image
THETA_HYPERPRIOR = (1.0, 0.01)


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


def hierarchical_tv_model(
    y: torch.Tensor,
    *,
    sigma: float | torch.Tensor,
    alpha: float = THETA_HYPERPRIOR[0],
    beta0: float = THETA_HYPERPRIOR[1],
    isotropic: bool = True,
) -> torch.Tensor:
    r"""Pyro model of TV denoising with a Gamma hyperprior on the prior's precision.

    .. math::

        \theta = 1 / b \sim \mathrm{Gamma}(\alpha, \beta_0), \qquad
        x \mid \theta \sim \mathrm{TotalVariation}(b = 1 / \theta), \qquad
        y \mid x \sim \mathcal{N}(x, \sigma^2 I)

    ``log p(x | theta) = -theta TV(x) + (N - C) log theta + const`` (homogeneity of TV; ``N``
    the values of the image, ``C`` its channels: ``N - 1`` for a grey image), so
    ``theta | x ~ Gamma(alpha + N - C, beta0 + TV(x))``:
    :func:`~bayes_restore.infer.scale.gibbs_theta` draws it,
    :func:`~bayes_restore.hyper.tv_scale_gibbs` samples the model, and
    ``infer.mcmc(restoration_model, ..., sample_scale=True)`` samples it with any operator
    (the defaults :data:`THETA_HYPERPRIOR` are shared). The defaults ``alpha = 1``,
    ``beta0 = 0.01`` (an exponential prior of mean ``theta = 100``, i.e. ``b = 0.01``) are
    weak against the ``N - C`` of any real image. Change any line: the engines only need
    the sites ``"theta"``, ``"x"`` and ``"y"``. Pyro's NUTS samples it on small crops
    (``NUTS(hierarchical_tv_model, max_plate_nesting=0, init_strategy=init_to_value(
    values={"x": y, "theta": ...}))``: the TV prior is improper, so the chain starts at given
    values, not at a draw of the prior).

    Parameters
    ----------
    y : torch.Tensor
        One observed image, ``(H, W)`` or ``(C, H, W)`` (each channel its own TV).
    sigma : float or torch.Tensor
        Noise standard deviation.
    alpha, beta0 : float
        Shape and rate of the Gamma hyperprior on ``theta``.
    isotropic : bool, default True

    Returns
    -------
    torch.Tensor
        The latent image ``x``.

    Examples
    --------
    >>> import torch, pyro.poutine as poutine
    >>> y = torch.zeros(8, 8, dtype=torch.float64)
    >>> tr = poutine.trace(poutine.condition(
    ...     hierarchical_tv_model, {"theta": torch.tensor(20.0, dtype=torch.float64), "x": y}
    ... )).get_trace(y, sigma=0.1)
    >>> [name for name in tr.nodes if name in ("theta", "x", "y")]
    ['theta', 'x', 'y']
    """
    if not isinstance(y, torch.Tensor) or y.dim() not in (2, 3):
        raise ValueError("y must be a torch.Tensor of shape (H, W) or (C, H, W)")
    check_positive(alpha, "alpha")
    check_positive(beta0, "beta0")
    hyperprior = dist.Gamma(y.new_tensor(float(alpha)), y.new_tensor(float(beta0)))
    theta = pyro.sample(THETA_SITE, hyperprior)
    x = pyro.sample(X_SITE, TotalVariation(1.0 / theta, shape=y.shape, isotropic=isotropic))
    pyro.sample(Y_SITE, GaussianLikelihood(x, sigma, event_dim=y.dim()), obs=y)
    return x
