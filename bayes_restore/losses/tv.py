"""Total variation as a loss: the TensorFlow, PyTorch and isotropic / order-``beta``
conventions, computed by the package's gradient prior."""

from __future__ import annotations

import torch
from torch import nn

from bayes_restore.differences import grad, gradient_energy

from ._common import channels_first, check_reduction, image_event_dim, reduce_items

__all__ = ["tv_loss", "TVLoss", "TV_CONVENTIONS"]

#: conventions of :func:`tv_loss`: (its own order beta, its default reduction)
TV_CONVENTIONS = {
    "tensorflow": (1.0, "sum"),
    "pytorch": (2.0, "mean"),
    "isotropic": (1.0, "sum"),
}


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
    check_reduction(reduction)
    if beta is None:
        beta = own_beta
    elif convention == "pytorch" and float(beta) != 2.0:
        raise ValueError(f"convention='pytorch' is squared (beta = 2), got beta={beta!r}")
    if not float(beta) > 0:
        raise ValueError(f"beta must be > 0, got {beta!r}")
    x = channels_first(x, channel_axis, "x")
    event_dim = image_event_dim(x, "x")
    if convention == "pytorch":
        per_image = _pytorch_tv(x, event_dim)
    else:
        isotropic = convention == "isotropic"
        per_image = gradient_energy(x, float(beta), isotropic=isotropic, event_dim=event_dim)
    return reduce_items(per_image, reduction)


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
