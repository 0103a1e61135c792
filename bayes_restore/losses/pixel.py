"""L1 and L2: the negative logs of the Laplace and Gaussian likelihoods, by torch."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._common import check_reduction

__all__ = ["l1_loss", "l2_loss"]


def l1_loss(pred: torch.Tensor, target: torch.Tensor, *, reduction: str = "mean") -> torch.Tensor:
    r"""L1 loss: the negative log of a Laplace likelihood, up to scale and constant.

    ``sum |t - pred| = -b log p(t | pred) - M b log(2 b)`` for
    :class:`~bayes_restore.likelihoods.LaplaceLikelihood` ``(pred, b)`` with ``M``
    values. Computed by :func:`torch.nn.functional.l1_loss`.

    Examples
    --------
    >>> import torch
    >>> l1_loss(torch.zeros(2, 2), torch.tensor([[1., -1.], [0., 2.]]), reduction="sum")
    tensor(4.)
    """
    check_reduction(reduction)
    return F.l1_loss(pred, target, reduction=reduction)


def l2_loss(pred: torch.Tensor, target: torch.Tensor, *, reduction: str = "mean") -> torch.Tensor:
    r"""L2 (squared error) loss: a Gaussian negative log likelihood, up to scale and constant.

    ``sum (t - pred)^2 = -2 sigma^2 (log p(t | pred) + M log(sigma sqrt(2 pi)))`` for
    :class:`~bayes_restore.likelihoods.GaussianLikelihood` ``(pred, sigma)`` with ``M``
    values. Computed by :func:`torch.nn.functional.mse_loss`.

    Examples
    --------
    >>> import torch
    >>> l2_loss(torch.zeros(2, 2), torch.tensor([[1., -1.], [0., 2.]]), reduction="sum")
    tensor(6.)
    """
    check_reduction(reduction)
    return F.mse_loss(pred, target, reduction=reduction)
