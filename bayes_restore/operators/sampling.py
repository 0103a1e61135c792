"""Decimation: :class:`Downsample`, the super-resolution operator."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .base import LinearOperator
from .blur import Blur, gaussian_psf
from .structures import BlockMean

__all__ = ["Downsample"]


class Downsample(LinearOperator):
    """Anti-alias blur then decimation by ``factor``: the super-resolution operator.

    Parameters
    ----------
    factor : int
        2, 3, 4 (any integer >= 2 works). The output is ``(H // factor, W // factor)``;
        rows and columns beyond ``factor * (H // factor)`` are not observed.
    kernel : {"box", "gaussian"}, default "box"
        ``"box"``: the mean of each ``factor x factor`` block (a sensor's pixel
        integration). ``"gaussian"``: a periodic Gaussian blur of std ``0.5 * factor``
        sampled at the block centres' grid (every ``factor``-th pixel).

    Examples
    --------
    >>> import torch
    >>> op = Downsample(2)
    >>> op.forward(torch.arange(16.0).reshape(4, 4))
    tensor([[ 2.5000,  4.5000],
            [10.5000, 12.5000]])
    """

    def __init__(self, factor: int, kernel: str = "box") -> None:
        if not (isinstance(factor, int) and factor >= 2):
            raise ValueError(f"factor must be an integer >= 2, got {factor!r}")
        if kernel not in ("box", "gaussian"):
            raise ValueError(f"kernel must be 'box' or 'gaussian', got {kernel!r}")
        self.factor = factor
        self.kernel = kernel
        if kernel == "gaussian":
            size = 2 * (2 * factor) + 1
            self._blur = Blur(gaussian_psf(size, 0.5 * factor), boundary="periodic")
            self.norm_bound = 1.0  # ||decimate|| <= 1 and ||blur|| <= 1
        else:
            self.norm_bound = 1.0 / factor  # A A^T = I / factor^2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.factor
        h, w = (x.shape[-2] // f) * f, (x.shape[-1] // f) * f
        if h == 0 or w == 0:
            raise ValueError(f"image {tuple(x.shape[-2:])} is smaller than the factor {f}")
        if self.kernel == "box":
            if x.dtype in (torch.float32, torch.float64):  # the same means, 5-7x faster at 512
                pooled = torch.nn.functional.avg_pool2d(x[..., :h, :w].reshape(-1, 1, h, w), f)
                return pooled.reshape(x.shape[:-2] + (h // f, w // f))
            blocks = x[..., :h, :w].reshape(x.shape[:-2] + (h // f, f, w // f, f))
            return blocks.mean((-3, -1))
        return self._blur.forward(x)[..., f // 2 : h : f, f // 2 : w : f]

    def adjoint(self, y: torch.Tensor, shape: tuple[int, int] | None = None) -> torch.Tensor:
        f = self.factor
        h, w = (y.shape[-2] * f, y.shape[-1] * f) if shape is None else shape
        out = y.new_zeros(y.shape[:-2] + (h, w))
        if self.kernel == "box":
            up = y.repeat_interleave(f, -2).repeat_interleave(f, -1) / f**2
            out[..., : up.shape[-2], : up.shape[-1]] = up
            return out
        out[..., f // 2 : y.shape[-2] * f : f, f // 2 : y.shape[-1] * f : f] = y
        return self._blur.adjoint(out)

    def adjoint_as(self, y: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
        """``A^T y`` for an image of spatial shape ``shape[-2:]`` (its remainder rows and
        columns, beyond ``factor * (H // factor)``, included)."""
        return self.adjoint(y, shape=tuple(shape[-2:]))

    def output_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        shape = tuple(shape)
        return shape[:-2] + (shape[-2] // self.factor, shape[-1] // self.factor)

    def input_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        """Shape of ``x`` for an observation of the given shape: ``factor`` times larger."""
        shape = tuple(shape)
        return shape[:-2] + (shape[-2] * self.factor, shape[-1] * self.factor)

    def structure(self) -> BlockMean | None:
        """:class:`BlockMean` for the box kernel, ``None`` for the Gaussian one."""
        return BlockMean(self.factor) if self.kernel == "box" else None

    def __repr__(self) -> str:
        return f"Downsample({self.factor}, kernel={self.kernel!r})"
