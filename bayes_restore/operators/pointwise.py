"""Operators that act on each pixel alone: :class:`Identity` and :class:`Mask` (the general
gain :class:`~bayes_restore.operators.Diagonal` lives with the interface, whose
``restrict`` returns it), and :func:`as_operator` (``None`` is the identity)."""

from __future__ import annotations

import torch

from ._common import check_window
from .base import LinearOperator
from .structures import PixelDiagonal

__all__ = ["Identity", "Mask", "as_operator"]


class Identity(LinearOperator):
    """The identity ``A = I`` (denoising).

    Examples
    --------
    >>> import torch
    >>> x = torch.ones(2, 3)
    >>> bool(torch.equal(Identity().forward(x), x))
    True
    >>> Identity().is_identity, Identity().tileable
    (True, True)
    """

    norm_bound = 1.0
    is_identity = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return y

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def structure(self) -> PixelDiagonal:
        return PixelDiagonal(torch.ones((), dtype=torch.float64))

    def restrict(self, rows: slice, cols: slice) -> Identity:
        check_window(rows, cols)
        return self


class Mask(LinearOperator):
    """Inpainting: observe the pixels where ``mask`` is True.

    ``forward`` zero-fills the unobserved pixels (``A = A^T = diag(mask)``), so the
    observation keeps the image's shape; give ``y`` zero (or anything: it does not
    enter the posterior) at the unobserved pixels. The likelihood's normaliser then
    also counts the unobserved pixels, a constant that does not change the posterior
    of ``x``.

    Parameters
    ----------
    mask : array or torch.Tensor of bool
        Shape ``(H, W)`` (shared by all channels and images) or broadcastable to the
        images.

    Examples
    --------
    >>> import torch
    >>> op = Mask(torch.tensor([[True, False], [False, True]]))
    >>> op.forward(torch.ones(2, 2))
    tensor([[1., 0.],
            [0., 1.]])
    """

    norm_bound = 1.0

    def __init__(self, mask) -> None:
        mask = torch.as_tensor(mask)
        if mask.dtype != torch.bool:
            raise ValueError(f"mask must be boolean (True = observed), got {mask.dtype}")
        if mask.dim() < 2:
            raise ValueError(f"mask must have at least 2 dimensions, got {mask.dim()}")
        self.mask = mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask.to(device=x.device, dtype=x.dtype)

    adjoint = forward
    normal = forward

    def structure(self) -> PixelDiagonal:
        """:class:`PixelDiagonal` of the mask (binary)."""
        return PixelDiagonal(self.mask)

    def restrict(self, rows: slice, cols: slice) -> Mask:
        """The mask of the window ``[..., rows, cols]``."""
        check_window(rows, cols)
        return Mask(PixelDiagonal(self.mask).window(rows, cols).d)

    def __repr__(self) -> str:
        return f"Mask({float(self.mask.double().mean()):.0%} observed)"


def as_operator(operator: LinearOperator | None) -> LinearOperator:
    """``None`` means the identity; anything else must be a :class:`LinearOperator`."""
    if operator is None:
        return Identity()
    if not isinstance(operator, LinearOperator):
        raise ValueError(
            "operator must be a bayes_restore.operators.LinearOperator or None, "
            f"got {type(operator).__name__}"
        )
    return operator
