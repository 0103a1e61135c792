"""The spectral structures an operator declares: what it is, so solvers need not ask its class.

- :class:`PixelDiagonal` ``(d)``: ``A = diag(d)`` (masks, pointwise gains);
- :class:`FourierDiagonal` ``(transfer)``: a periodic convolution, diagonal in the
  2-D discrete Fourier basis;
- :class:`BlockMean` ``(factor)``: the mean of each ``factor x factor`` block
  (``A A^T = I / factor^2``).

Each gives the exact ``(A^T A + rho I)^{-1}``; :meth:`PixelDiagonal.window` restricts a
pixel-diagonal one to a window of the image (tiling).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = ["PixelDiagonal", "FourierDiagonal", "BlockMean"]


def _check_rho(rho) -> None:
    if isinstance(rho, torch.Tensor):
        if not bool((rho > 0).all()):
            raise ValueError("rho must be > 0")
    elif not rho > 0:
        raise ValueError(f"rho must be > 0, got {rho!r}")


@dataclass(frozen=True, eq=False)
class PixelDiagonal:
    """``A = diag(d)``: every pixel scaled by its own gain.

    Masks (``d`` in ``{0, 1}``), pointwise gains (vignetting, per-pixel sensitivity),
    the identity (``d = 1``). Observation and image have the same shape.

    Parameters
    ----------
    d : torch.Tensor
        The diagonal, broadcastable to the images: ``(H, W)``, ``(C, H, W)``, a scalar,
        ... Booleans count as 0 and 1.

    Examples
    --------
    >>> import torch
    >>> s = PixelDiagonal(torch.tensor([[1.0, 0.0], [1.0, 1.0]]))
    >>> s.binary
    True
    >>> s.solve_normal(torch.ones(2, 2), 1.0)  # (d^2 + 1)^-1
    tensor([[0.5000, 1.0000],
            [0.5000, 0.5000]])
    """

    d: torch.Tensor

    def __post_init__(self) -> None:
        object.__setattr__(self, "d", torch.as_tensor(self.d))

    @property
    def binary(self) -> bool:
        """Whether every entry of ``d`` is 0 or 1 (a mask)."""
        d = self.d
        return d.dtype == torch.bool or bool(((d == 0) | (d == 1)).all())

    def diagonal(self, like: torch.Tensor) -> torch.Tensor:
        """``d`` in the dtype and on the device of ``like`` (not expanded)."""
        return self.d.to(dtype=like.dtype, device=like.device)

    def window(self, rows: slice, cols: slice) -> PixelDiagonal:
        """The diagonal of the image window ``[..., rows, cols]`` (broadcast axes kept)."""
        d = self.d
        if d.dim() >= 1 and d.shape[-1] > 1:
            d = d[..., cols]
        if d.dim() >= 2 and d.shape[-2] > 1:
            d = d[..., rows, :]
        return PixelDiagonal(d)

    def solve_normal(self, v: torch.Tensor, rho: float | torch.Tensor) -> torch.Tensor:
        """``(A^T A + rho I)^{-1} v = v / (d^2 + rho)``."""
        _check_rho(rho)
        return v / (self.diagonal(v).square() + rho)


@dataclass(frozen=True, eq=False)
class FourierDiagonal:
    """A periodic (circular) convolution: ``A = F^-1 diag(H) F`` with ``F`` the 2-D DFT.

    Parameters
    ----------
    transfer : callable
        ``transfer(h, w, like)`` returns the transfer function ``H`` of an ``(h, w)``
        image as ``torch.fft.rfft2`` lays it out, shape ``(h, w // 2 + 1)``, complex,
        in ``like``'s precision and on its device; ``A x = irfft2(rfft2(x) * H)``.

    Examples
    --------
    >>> import torch
    >>> from bayes_restore.operators import Blur, gaussian_psf
    >>> s = Blur(gaussian_psf(3, 1.0)).structure()
    >>> s.transfer(8, 8, torch.zeros(1, dtype=torch.float64)).shape
    torch.Size([8, 5])
    >>> v = torch.rand(8, 8, dtype=torch.float64)
    >>> op = Blur(gaussian_psf(3, 1.0))
    >>> x = s.solve_normal(v, 0.1)
    >>> bool(torch.allclose(op.normal(x) + 0.1 * x, v))
    True
    """

    transfer: Callable[[int, int, torch.Tensor], torch.Tensor]

    def solve_normal(self, v: torch.Tensor, rho: float | torch.Tensor) -> torch.Tensor:
        """``(A^T A + rho I)^{-1} v = F^-1 [F v / (|H|^2 + rho)]``."""
        _check_rho(rho)
        h, w = v.shape[-2:]
        h2 = self.transfer(h, w, v).abs().square()
        return torch.fft.irfft2(torch.fft.rfft2(v) / (h2 + rho), s=(h, w))


@dataclass(frozen=True)
class BlockMean:
    """Box decimation: ``(A x)_ij`` is the mean of the ``factor x factor`` block ``(i, j)``.

    ``A A^T = I / factor^2``, so ``A^T A = M / factor^2`` with ``M`` the projection that
    replaces each block by its mean. Rows and columns beyond ``factor * (H // factor)``
    are not observed (``A^T A`` is zero there).

    Parameters
    ----------
    factor : int
        The block size, >= 2.

    Examples
    --------
    >>> import torch
    >>> BlockMean(2).solve_normal(torch.ones(2, 2), 0.75)  # (1/4 + 3/4)^-1 on constants
    tensor([[1., 1.],
            [1., 1.]])
    """

    factor: int

    def solve_normal(self, v: torch.Tensor, rho: float | torch.Tensor) -> torch.Tensor:
        """``(A^T A + rho I)^{-1} v = v / rho + (1 / (f^-2 + rho) - 1 / rho) M v``."""
        _check_rho(rho)
        f = self.factor
        h, w = (v.shape[-2] // f) * f, (v.shape[-1] // f) * f
        out = v / rho
        if h and w:
            lead = v.shape[:-2]
            means = v[..., :h, :w].reshape(lead + (h // f, f, w // f, f)).mean(
                (-3, -1), keepdim=True)
            coef = 1.0 / (1.0 / f**2 + rho) - 1.0 / rho
            if isinstance(coef, torch.Tensor):
                coef = coef.reshape(coef.shape + (1, 1))
            block = out[..., :h, :w].view(lead + (h // f, f, w // f, f))
            block.add_(means * coef)
        return out
