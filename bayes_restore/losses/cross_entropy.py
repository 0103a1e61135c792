"""Cross-entropy over intensity classes: the negative log of the categorical likelihood
of quantised intensities."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bayes_restore.likelihoods import check_levels, to_levels

from ._common import check_logits, check_reduction

__all__ = ["intensity_cross_entropy", "IntensityCrossEntropyLoss"]


def _target_classes(target: torch.Tensor, levels: int) -> torch.Tensor:
    """Float intensities in [0, 1] -> ``round(t (L - 1))``; integer levels pass through."""
    if target.is_floating_point():
        return to_levels(target, levels)
    if target.dtype == torch.bool or target.is_complex():
        raise ValueError(f"target must hold intensities or integer levels, got {target.dtype}")
    if bool(((target < 0) | (target >= levels)).any()):
        raise ValueError(f"integer target levels must lie in 0..{levels - 1}")
    return target.long()


def intensity_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, *, levels: int = 256, reduction: str = "mean"
) -> torch.Tensor:
    r"""Cross-entropy over ``L`` intensity classes: super-resolution as classification.

    The negative log of the categorical likelihood of quantised pixels: each pixel's
    level ``k_i`` is an independent draw from ``Categorical(softmax(logits_i))``, and

    .. math::

        -\log p(k \mid \text{logits}) = -\sum_i \log \operatorname{softmax}(\text{logits}_i)_{k_i},

    which is ``reduction="sum"``; ``"mean"`` divides by the number of pixel values
    (as :func:`torch.nn.functional.cross_entropy`, which computes it). The class
    probabilities are free here; :class:`~bayes_restore.likelihoods.QuantizedGaussianLikelihood`
    is the same categorical with probabilities tied to an image through a Gaussian.

    Parameters
    ----------
    logits : torch.Tensor
        ``(N, L, H, W)`` or ``(N, L, C, H, W)``: ``L`` class scores per pixel value.
    target : torch.Tensor
        ``(N, H, W)`` or ``(N, C, H, W)``: intensities in ``[0, 1]`` (floating point,
        mapped to the class ``round(t (L - 1))``, :func:`~bayes_restore.likelihoods.to_levels`)
        or integer levels ``0 .. L-1``.
    levels : int, default 256
        ``L``; must equal ``logits.shape[1]``.
    reduction : {"mean", "sum", "none"}, default "mean"

    Returns
    -------
    torch.Tensor

    Examples
    --------
    >>> import torch
    >>> logits = torch.zeros(1, 256, 2, 2)  # uniform over the 256 levels
    >>> round(float(intensity_cross_entropy(logits, torch.rand(1, 2, 2))), 4)  # log 256
    5.5452
    """
    check_levels(levels)
    check_logits(logits, levels)
    check_reduction(reduction)
    classes = _target_classes(target, levels)
    if classes.shape != logits.shape[:1] + logits.shape[2:]:
        raise ValueError(
            f"target shape {tuple(target.shape)} does not match logits {tuple(logits.shape)} "
            "without their class dimension 1"
        )
    return F.cross_entropy(logits, classes, reduction=reduction)


class IntensityCrossEntropyLoss(nn.Module):
    """:func:`intensity_cross_entropy` as a module (the categorical likelihood's negative log).

    Examples
    --------
    >>> import torch
    >>> loss = IntensityCrossEntropyLoss(levels=4)
    >>> round(float(loss(torch.zeros(1, 4, 3, 3), torch.zeros(1, 3, 3, dtype=torch.long))), 4)
    1.3863
    """

    def __init__(self, *, levels: int = 256, reduction: str = "mean") -> None:
        super().__init__()
        check_levels(levels)
        check_reduction(reduction)
        self.levels = levels
        self.reduction = reduction

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return intensity_cross_entropy(
            logits, target, levels=self.levels, reduction=self.reduction
        )
