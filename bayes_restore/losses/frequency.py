"""The frequency-specific loss of super-resolution: squared error of the low frequencies,
cross-entropy over classes of the high ones."""

from __future__ import annotations

import torch
from torch import nn

from bayes_restore.likelihoods import check_levels, from_levels, gaussian_low_pass, to_levels

from ._common import channels_first, check_logits, check_reduction, image_event_dim, reduce_items
from .cross_entropy import intensity_cross_entropy
from .pixel import l2_loss

__all__ = [
    "frequency_split_targets",
    "combine_frequency_split",
    "frequency_split_loss",
    "FrequencySplitLoss",
]


def frequency_split_targets(
    target: torch.Tensor,
    *,
    cutoff_sigma: float = 1.0,
    levels: int = 256,
    high_range: float = 1.0,
    channel_axis: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two targets of the frequency-specific loss: the low-pass image and the high-pass classes.

    ``f(t)`` is the periodic Gaussian blur :func:`~bayes_restore.likelihoods.gaussian_low_pass`
    of std ``cutoff_sigma``, ``g(t) = t - f(t)`` the high-pass. The high-pass is a
    signed image, so its classes are those of an offset and scaled copy:
    ``round((g + r) / (2 r) (L - 1))`` with ``r = high_range``, clipped to ``0..L-1``;
    the class centres are ``-r + 2 r k / (L - 1)``. For targets in ``[0, 1]`` and
    ``r = 1`` no value clips (``|g| <= 1`` because the blur averages), at a step of
    ``2 / (L - 1)``. The blur acts on the last two axes: give ``channel_axis=-1`` for
    ``(N, H, W, C)`` targets (both results keep that layout).

    Returns
    -------
    low : torch.Tensor
        ``f(t)``, the shape of ``target``.
    high_classes : torch.Tensor
        ``torch.long`` classes of ``g(t)``, the shape of ``target``.

    Examples
    --------
    >>> import torch
    >>> low, high = frequency_split_targets(torch.full((1, 4, 4), 0.5))  # no high frequencies
    >>> high.unique().tolist(), round(float(low.mean()), 6)  # class of g = 0: round(255 / 2)
    ([128], 0.5)
    """
    moved = channels_first(target, channel_axis, "target")
    image_event_dim(moved, "target")
    check_levels(levels)
    if not high_range > 0:
        raise ValueError(f"high_range must be > 0, got {high_range!r}")
    low = gaussian_low_pass(cutoff_sigma).forward(moved)
    high = to_levels((moved - low + high_range) / (2 * high_range), levels)
    if channel_axis is None:
        return low, high
    return low.movedim(-3, channel_axis), high.movedim(-3, channel_axis)


def combine_frequency_split(
    low: torch.Tensor,
    high_logits: torch.Tensor,
    *,
    high_range: float = 1.0,
    mode: str = "mean",
) -> torch.Tensor:
    """The restored image ``y_L + y_H`` of a frequency-split network (the paper's SR image).

    The high-pass image is decoded from the class scores: ``mode="mean"`` takes the
    expected class centre under ``softmax(high_logits)`` (differentiable),
    ``"argmax"`` the most probable class's centre.

    Parameters
    ----------
    low : torch.Tensor
        The low-frequency output ``y_L``, ``(N, H, W)`` or ``(N, C, H, W)``.
    high_logits : torch.Tensor
        ``(N, L, H, W)`` or ``(N, L, C, H, W)``.
    high_range : float, default 1.0
        As in :func:`frequency_split_targets`.
    mode : {"mean", "argmax"}, default "mean"

    Examples
    --------
    >>> import torch
    >>> logits = torch.full((1, 5, 2, 2), -50.0)
    >>> logits[:, 3] = 50.0  # class 3 of 5: centre -1 + 2 * 3 / 4 = 0.5
    >>> combine_frequency_split(torch.zeros(1, 2, 2), logits)
    tensor([[[0.5000, 0.5000],
             [0.5000, 0.5000]]])
    """
    levels = high_logits.shape[1] if high_logits.dim() >= 2 else 0
    check_levels(levels)
    check_logits(high_logits, levels, "high_logits")
    centres = -high_range + 2 * high_range * from_levels(
        torch.arange(levels, device=high_logits.device), levels, dtype=high_logits.dtype
    )
    if mode == "mean":
        shape = (1, levels) + (1,) * (high_logits.dim() - 2)
        high = (torch.softmax(high_logits, dim=1) * centres.reshape(shape)).sum(1)
    elif mode == "argmax":
        high = centres[high_logits.argmax(1)]
    else:
        raise ValueError(f"mode must be 'mean' or 'argmax', got {mode!r}")
    return low + high


def frequency_split_loss(
    low: torch.Tensor,
    high_logits: torch.Tensor,
    target: torch.Tensor,
    *,
    cutoff_sigma: float = 1.0,
    alpha: float = 1.0,
    levels: int = 256,
    high_range: float = 1.0,
    reduction: str = "mean",
    channel_axis: int | None = None,
) -> torch.Tensor:
    r"""The frequency-specific loss (FCS): L2 on the low-pass part, cross-entropy on the high-pass.

    Following eq. (2) of the reference paper (Oh & Kim, "Super-Resolution with
    Cross-Entropy Loss Adapted to High Frequencies"), with ``t`` the high-resolution
    target, ``f`` a low-pass filter and ``g(t) = t - f(t)``: the network has two
    outputs, an image ``y_L`` trained by L2 against ``f(t)`` and ``L``-class scores
    ``y_H`` trained by cross-entropy against the class of ``g(t)``; the restored image
    is ``y_L + y_H`` (:func:`combine_frequency_split`). Per pixel value ``i``,

    .. math::

        \ell_i = -\log \operatorname{softmax}(y_{H,i})_{c(g(t)_i)}
                 + \alpha \, (y_{L,i} - f(t)_i)^2 .

    It is the negative log of the product of a categorical likelihood of the
    quantised high-pass and a Gaussian ``N(f(t); y_L, 1 / (2 alpha))`` of the
    low-pass, up to the Gaussian's constant (the Derivations page of the documentation).

    What the paper leaves open, and what is assumed here:

    - the sign: its eq. (1)-(2) write ``1[.]^T log y`` without the minus sign of a
      cross-entropy; the loss here is minimised;
    - the low-pass filter ("LPF"): a periodic Gaussian blur of std ``cutoff_sigma``
      pixels (:func:`~bayes_restore.likelihoods.gaussian_low_pass`; borders wrap);
    - the classes of the signed high-pass: ``round((g + r) / (2 r) (L - 1))`` with
      ``r = high_range`` (:func:`frequency_split_targets`);
    - the balance: the paper adds the two terms with equal weight (``alpha = 1``,
      with intensities in ``[0, 1]``); ``reduction="sum"`` is its sum over pixels,
      ``"mean"`` divides by the number of pixel values.

    Parameters
    ----------
    low : torch.Tensor
        ``y_L``: ``(N, H, W)`` or ``(N, C, H, W)``.
    high_logits : torch.Tensor
        ``y_H``: ``(N, L, H, W)`` or ``(N, L, C, H, W)``.
    target : torch.Tensor
        The high-resolution image ``t``, intensities in ``[0, 1]``, the shape of ``low``.
    cutoff_sigma : float, default 1.0
        Std in pixels of the Gaussian low-pass.
    alpha : float, default 1.0
        Weight of the L2 term.
    levels : int, default 256
        ``L``, the number of high-pass classes (``high_logits.shape[1]``).
    high_range : float, default 1.0
        Half-width ``r`` of the interval of high-pass values the classes cover.
    reduction : {"mean", "sum", "none"}, default "mean"
    channel_axis : int, optional
        ``-1`` for channels-last tensors: ``low`` and ``target`` ``(N, H, W, C)``,
        ``high_logits`` ``(N, L, H, W, C)``.

    Returns
    -------
    torch.Tensor

    Examples
    --------
    >>> import torch
    >>> t = torch.rand(1, 8, 8, generator=torch.Generator().manual_seed(0))
    >>> low, classes = frequency_split_targets(t)
    >>> perfect = torch.nn.functional.one_hot(classes, 256).movedim(-1, 1) * 100.0
    >>> float(frequency_split_loss(low, perfect, t))  # both heads exact
    0.0
    """
    check_reduction(reduction)
    if not alpha >= 0:
        raise ValueError(f"alpha must be >= 0, got {alpha!r}")
    if channel_axis is not None:  # the logits have the class axis first: not the colour one
        low = channels_first(low, channel_axis, "low")
        target = channels_first(target, channel_axis, "target")
        high_logits = channels_first(high_logits, channel_axis, "high_logits")
    image_event_dim(low, "low")
    if low.shape != target.shape:
        raise ValueError(f"low {tuple(low.shape)} and target {tuple(target.shape)} differ")
    low_target, high_classes = frequency_split_targets(
        target, cutoff_sigma=cutoff_sigma, levels=levels, high_range=high_range
    )
    ce = intensity_cross_entropy(high_logits, high_classes, levels=levels, reduction="none")
    squared = l2_loss(low, low_target, reduction="none")
    return reduce_items(ce + alpha * squared, reduction)


class FrequencySplitLoss(nn.Module):
    """:func:`frequency_split_loss` as a module: ``loss(low, high_logits, target)``.

    Examples
    --------
    >>> import torch
    >>> loss = FrequencySplitLoss(levels=8)
    >>> loss(torch.zeros(1, 4, 4), torch.zeros(1, 8, 4, 4), torch.zeros(1, 4, 4)).shape
    torch.Size([])
    """

    def __init__(
        self,
        *,
        cutoff_sigma: float = 1.0,
        alpha: float = 1.0,
        levels: int = 256,
        high_range: float = 1.0,
        reduction: str = "mean",
        channel_axis: int | None = None,
    ) -> None:
        super().__init__()
        check_levels(levels)
        check_reduction(reduction)
        self.channel_axis = channel_axis
        self.cutoff_sigma = cutoff_sigma
        self.alpha = alpha
        self.levels = levels
        self.high_range = high_range
        self.reduction = reduction

    def forward(
        self, low: torch.Tensor, high_logits: torch.Tensor, target: torch.Tensor
    ) -> torch.Tensor:
        return frequency_split_loss(
            low,
            high_logits,
            target,
            cutoff_sigma=self.cutoff_sigma,
            alpha=self.alpha,
            levels=self.levels,
            high_range=self.high_range,
            reduction=self.reduction,
            channel_axis=self.channel_axis,
        )
