"""Common training losses, each the negative log of a density of the package.

For people who train networks: total variation (the TensorFlow, PyTorch and
isotropic / order-``beta`` conventions), cross-entropy over intensity classes, the
frequency-specific loss of super-resolution, L1 and L2. Each docstring names the
density it is the negative log of (the Derivations page of the documentation), and each is
computed by the code of that density (:func:`~bayes_restore.differences.grad`,
:func:`~bayes_restore.differences.gradient_energy`, the likelihoods' helpers) or by
torch's own function, never by a second copy of a formula.

Images are channels-first: ``(H, W)``, ``(C, H, W)`` or ``(N, C, H, W)`` (more
leading dimensions are batch dimensions).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .differences import grad, gradient_energy
from .likelihoods import check_levels as _check_levels
from .likelihoods import from_levels, gaussian_low_pass, to_levels

__all__ = [
    "tv_loss",
    "TVLoss",
    "intensity_cross_entropy",
    "IntensityCrossEntropyLoss",
    "frequency_split_loss",
    "frequency_split_targets",
    "combine_frequency_split",
    "FrequencySplitLoss",
    "l1_loss",
    "l2_loss",
    "TV_CONVENTIONS",
]

#: conventions of :func:`tv_loss`: (its own order beta, its default reduction)
TV_CONVENTIONS = {
    "tensorflow": (1.0, "sum"),
    "pytorch": (2.0, "mean"),
    "isotropic": (1.0, "sum"),
}
_REDUCTIONS = ("none", "sum", "mean")


def _image_event_dim(x: torch.Tensor, name: str) -> int:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point torch.Tensor")
    if x.dim() < 2:
        raise ValueError(f"{name} must be (H, W), (C, H, W) or (N, C, H, W), got {tuple(x.shape)}")
    return 2 if x.dim() == 2 else 3


def _channels_first(x: torch.Tensor, channel_axis: Any, name: str) -> torch.Tensor:
    """``x`` with its colour axis moved to the channels-first place (-3)."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if channel_axis is None:
        if x.dim() >= 3 and x.shape[-1] in (3, 4) and x.shape[-3] > 4:
            raise ValueError(
                f"{name} has shape {tuple(x.shape)}: channels-last colour (NHWC)? Give "
                f"channel_axis=-1, or channel_axis={x.dim() - 3} if the channels come first"
            )
        return x
    if isinstance(channel_axis, bool) or not isinstance(channel_axis, int):
        raise TypeError(f"channel_axis must be an integer or None, got {channel_axis!r}")
    if x.dim() < 3 or not -x.dim() <= channel_axis < x.dim():
        raise ValueError(
            f"channel_axis={channel_axis} does not fit {name} of shape {tuple(x.shape)}"
        )
    return x.movedim(channel_axis, -3)


def _reduce(per_item: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "none":
        return per_item
    return per_item.sum() if reduction == "sum" else per_item.mean()


def _check_reduction(reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def tv_loss(
    x: torch.Tensor,
    *,
    convention: str = "tensorflow",
    beta: float | None = None,
    reduction: str | None = None,
    channel_axis: int | None = None,
) -> torch.Tensor:
    r"""Total-variation loss in the conventions of training code (TensorFlow, PyTorch ``TVLoss``).

    ``x`` is channels-first: ``(H, W)`` or ``(C, H, W)`` is one image, ``(N, C, H,
    W)`` a batch. Differences are taken within each channel, along ``H`` and ``W``
    (:func:`~bayes_restore.differences.grad`: forward differences, the last one zero).

    Conventions (per image; the density each is the negative log of, and the
    default reduction over images):

    - ``"tensorflow"``: ``sum |dx| + |dy|`` over pixels and channels
      (``tf.image.total_variation``), the anisotropic Laplace gradient prior
      (:class:`~bayes_restore.priors.TotalVariation` with ``isotropic=False``); with
      another ``beta``, ``sum |dx|^beta + |dy|^beta``. Default reduction ``"sum"``.
    - ``"pytorch"``: ``2 (sum dy^2 / n_h + sum dx^2 / n_w)`` with ``n_h = C (H-1) W``
      and ``n_w = C H (W-1)``; its batch mean is the ``TVLoss`` of PyTorch super-resolution code. A
      Gaussian-gradient prior with one weight per direction. Default ``"mean"``.
    - ``"isotropic"``: ``sum (dx^2 + dy^2)^(beta/2)``, the energy ``phi_beta`` of the
      generalized gradient prior of order ``beta``
      (:meth:`~bayes_restore.priors.GradientPrior.energy`). Default ``"sum"``.

    In density terms: ``tv_loss(x, convention="isotropic", beta=beta)`` is
    ``phi_beta(x) = -beta b^beta (log p(x | b) + (N - C) log b + const)`` for
    :class:`~bayes_restore.priors.GradientPrior` of scale ``b``: adding ``w *
    tv_loss`` to a data loss that is a negative log likelihood (e.g. ``l2_loss(...,
    reduction="sum") / (2 sigma^2)``) makes the sum a negative log posterior with
    ``w = 1 / (beta b^beta)``. The PyTorch convention weights the two directions by
    ``1 / n_h`` and ``1 / n_w``: for square images the Gaussian-gradient energy times
    ``2 / n_h``.

    Parameters
    ----------
    x : torch.Tensor
        Images, channels-first (see above).
    convention : {"tensorflow", "pytorch", "isotropic"}, default "tensorflow"
    beta : float, optional
        Order. Default: the convention's own (1, 2, 1). ``"pytorch"`` is squared by
        definition (only 2 is accepted); ``"tensorflow"`` with another ``beta`` is the
        anisotropic TV of order ``beta``.
    reduction : {"none", "sum", "mean"}, optional
        Over images. ``"none"`` gives one value per image (shape ``x.shape[:-3]``, or
        ``()`` for a single image). Default: ``"sum"`` for ``"tensorflow"`` and
        ``"isotropic"`` (TensorFlow's ``tf.reduce_sum(tf.image.total_variation(images))``)
        and ``"mean"`` for ``"pytorch"`` (PyTorch's ``TVLoss``, which divides by the
        batch size).
    channel_axis : int, optional
        The colour axis when it is not third from the end: ``-1`` for TensorFlow's
        ``(N, H, W, C)`` images. ``None``: channels first; a tensor whose last axis has
        3 or 4 entries and whose third-last has more than 4 is then refused as ambiguous.

    Returns
    -------
    torch.Tensor
        The loss, differentiable (subgradient 0 where a difference vanishes).

    Examples
    --------
    >>> import torch
    >>> x = torch.tensor([[[[1., 2., 3.], [2., 3., 4.], [3., 4., 5.]]] * 2])  # (1, 2, 3, 3)
    >>> tv_loss(x)  # 2 channels x (6 + 6) unit differences
    tensor(24.)
    >>> tv_loss(x, convention="pytorch")  # the TVLoss example: 2 (12/12 + 12/12) / 1
    tensor(4.)
    >>> round(float(tv_loss(x, convention="isotropic")), 4)  # 2 x (4 sqrt 2 + 4)
    19.3137
    """
    if convention not in TV_CONVENTIONS:
        raise ValueError(f"convention must be one of {sorted(TV_CONVENTIONS)}, got {convention!r}")
    own_beta, own_reduction = TV_CONVENTIONS[convention]
    reduction = own_reduction if reduction is None else reduction
    _check_reduction(reduction)
    if beta is None:
        beta = own_beta
    elif convention == "pytorch" and float(beta) != 2.0:
        raise ValueError(f"convention='pytorch' is squared (beta = 2), got beta={beta!r}")
    if not float(beta) > 0:
        raise ValueError(f"beta must be > 0, got {beta!r}")
    x = _channels_first(x, channel_axis, "x")
    event_dim = _image_event_dim(x, "x")
    if convention == "pytorch":
        per_image = _pytorch_tv(x, event_dim)
    else:
        isotropic = convention == "isotropic"
        per_image = gradient_energy(x, float(beta), isotropic=isotropic, event_dim=event_dim)
    return _reduce(per_image, reduction)


def _pytorch_tv(x: torch.Tensor, event_dim: int) -> torch.Tensor:
    """``2 (sum dy^2 / n_h + sum dx^2 / n_w)`` per image (grad's padded zeros add nothing)."""
    h, w = x.shape[-2:]
    c = x.shape[-3] if event_dim == 3 else 1
    if h < 2 or w < 2:
        raise ValueError(f"convention='pytorch' needs H, W >= 2, got {(h, w)}")
    squares = grad(x).square()  # (..., 2, H, W)
    dims = tuple(range(-event_dim, 0))  # over ([C,] H, W) of each direction
    h_tv = squares[..., 0, :, :].sum(dims)
    w_tv = squares[..., 1, :, :].sum(dims)
    return 2 * (h_tv / (c * (h - 1) * w) + w_tv / (c * h * (w - 1)))


class TVLoss(nn.Module):
    """``weight * tv_loss(x, ...)`` as a module; by default PyTorch's common ``TVLoss``.

    The ``TVLoss(TVLoss_weight=1)`` of super-resolution code (squared differences, each
    direction divided by its count, times 2, divided by the batch) is
    ``TVLoss(weight)``. The negative log of a Gaussian-gradient prior: see
    :func:`tv_loss` for the other conventions and their densities.

    Parameters
    ----------
    weight : float, default 1.0
        Multiplies the loss (that class's ``TVLoss_weight``).
    convention, beta, reduction
        As in :func:`tv_loss`; ``convention`` defaults to ``"pytorch"`` here, the
        convention that class is named after.

    Examples
    --------
    >>> import torch
    >>> x = torch.tensor([[[1., 2., 3.], [2., 3., 4.], [3., 4., 5.]]] * 2).view(1, 2, 3, 3)
    >>> TVLoss()(x)
    tensor(4.)
    """

    def __init__(
        self,
        weight: float = 1.0,
        *,
        convention: str = "pytorch",
        beta: float | None = None,
        reduction: str | None = None,
        channel_axis: int | None = None,
    ) -> None:
        super().__init__()
        if convention not in TV_CONVENTIONS:
            raise ValueError(
                f"convention must be one of {sorted(TV_CONVENTIONS)}, got {convention!r}"
            )
        self.weight = weight
        self.convention = convention
        self.beta = beta
        self.reduction = reduction
        self.channel_axis = channel_axis

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * tv_loss(
            x, convention=self.convention, beta=self.beta, reduction=self.reduction,
            channel_axis=self.channel_axis,
        )

    def extra_repr(self) -> str:
        return f"weight={self.weight}, convention={self.convention!r}"


def _target_classes(target: torch.Tensor, levels: int) -> torch.Tensor:
    """Float intensities in [0, 1] -> ``round(t (L - 1))``; integer levels pass through."""
    if target.is_floating_point():
        return to_levels(target, levels)
    if target.dtype == torch.bool or target.is_complex():
        raise ValueError(f"target must hold intensities or integer levels, got {target.dtype}")
    if bool(((target < 0) | (target >= levels)).any()):
        raise ValueError(f"integer target levels must lie in 0..{levels - 1}")
    return target.long()


def _check_logits(logits: torch.Tensor, levels: int, name: str = "logits") -> None:
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
        raise ValueError(f"{name} must be a floating-point torch.Tensor")
    if logits.dim() < 2 or logits.shape[1] != levels:
        raise ValueError(
            f"{name} must have the {levels} classes in dimension 1 ((N, L, H, W) or "
            f"(N, L, C, H, W)), got shape {tuple(logits.shape)}"
        )


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
    _check_levels(levels)
    _check_logits(logits, levels)
    _check_reduction(reduction)
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
        _check_levels(levels)
        _check_reduction(reduction)
        self.levels = levels
        self.reduction = reduction

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return intensity_cross_entropy(
            logits, target, levels=self.levels, reduction=self.reduction
        )


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
    moved = _channels_first(target, channel_axis, "target")
    _image_event_dim(moved, "target")
    _check_levels(levels)
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
    _check_levels(levels)
    _check_logits(high_logits, levels, "high_logits")
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
    _check_reduction(reduction)
    if not alpha >= 0:
        raise ValueError(f"alpha must be >= 0, got {alpha!r}")
    if channel_axis is not None:  # the logits have the class axis first: not the colour one
        low = _channels_first(low, channel_axis, "low")
        target = _channels_first(target, channel_axis, "target")
        high_logits = _channels_first(high_logits, channel_axis, "high_logits")
    _image_event_dim(low, "low")
    if low.shape != target.shape:
        raise ValueError(f"low {tuple(low.shape)} and target {tuple(target.shape)} differ")
    low_target, high_classes = frequency_split_targets(
        target, cutoff_sigma=cutoff_sigma, levels=levels, high_range=high_range
    )
    ce = intensity_cross_entropy(high_logits, high_classes, levels=levels, reduction="none")
    squared = l2_loss(low, low_target, reduction="none")
    return _reduce(ce + alpha * squared, reduction)


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
        _check_levels(levels)
        _check_reduction(reduction)
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
    _check_reduction(reduction)
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
    _check_reduction(reduction)
    return F.mse_loss(pred, target, reduction=reduction)
