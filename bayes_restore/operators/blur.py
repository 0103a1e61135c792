"""Convolution by the FFT (:class:`Blur`) and its point-spread functions."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .base import LinearOperator
from .structures import FourierDiagonal

__all__ = ["Blur", "gaussian_psf", "box_psf"]


def gaussian_psf(size: int, sigma: float, *, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """A normalised ``size x size`` Gaussian point-spread function (odd ``size``).

    Examples
    --------
    >>> psf = gaussian_psf(5, 1.0)
    >>> psf.shape, round(float(psf.sum()), 12)
    (torch.Size([5, 5]), 1.0)
    """
    if not (isinstance(size, int) and size >= 1 and size % 2 == 1):
        raise ValueError(f"size must be a positive odd integer, got {size!r}")
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma!r}")
    r = torch.arange(size, dtype=dtype) - size // 2
    g = torch.exp(-0.5 * (r / sigma) ** 2)
    psf = g[:, None] * g[None, :]
    return psf / psf.sum()


def box_psf(size: int, *, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """A normalised ``size x size`` box (uniform) point-spread function.

    Examples
    --------
    >>> float(box_psf(3)[0, 0]) == 1 / 9
    True
    """
    if not (isinstance(size, int) and size >= 1):
        raise ValueError(f"size must be a positive integer, got {size!r}")
    return torch.full((size, size), 1.0 / size**2, dtype=dtype)


class Blur(LinearOperator):
    """Convolution with a point-spread function, by the FFT.

    Parameters
    ----------
    psf : array or torch.Tensor
        2-D kernel, its centre at ``(kh // 2, kw // 2)``; usually non-negative, sum 1.
    boundary : {"periodic", "valid"}, default "periodic"
        ``"periodic"``: circular convolution, output the input's size (wraps around
        the borders). ``"valid"``: only the output pixels whose whole kernel support
        lies inside the image, ``(H - kh + 1, W - kw + 1)``: no wrap-around and no
        invented boundary values (the physically faithful model of a sensor crop).

    Examples
    --------
    >>> import torch
    >>> op = Blur(gaussian_psf(5, 1.0), boundary="valid")
    >>> op.output_shape((32, 32))
    (28, 28)
    >>> x, y = torch.randn(32, 32, dtype=torch.float64), torch.randn(28, 28, dtype=torch.float64)
    >>> bool(torch.isclose((op.forward(x) * y).sum(), (x * op.adjoint(y)).sum()))
    True
    """

    def __init__(self, psf, boundary: str = "periodic") -> None:
        psf = torch.as_tensor(psf)
        if psf.dim() != 2 or min(psf.shape) < 1:
            raise ValueError(f"psf must be a 2-D kernel, got shape {tuple(psf.shape)}")
        if not psf.is_floating_point() or not bool(torch.isfinite(psf).all()):
            raise ValueError("psf must hold finite floating-point values")
        if boundary not in ("periodic", "valid"):
            raise ValueError(f"boundary must be 'periodic' or 'valid', got {boundary!r}")
        self.psf = psf
        self.boundary = boundary
        self.norm_bound = float(psf.abs().sum())
        self._cache: dict = {}

    def transfer(self, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
        """The periodic transfer function of an ``(h, w)`` image, ``rfft2`` layout.

        ``rfft2`` of the kernel wrapped around an ``(h, w)`` grid with its centre at
        ``(0, 0)``, in ``like``'s dtype and on its device (cached): the periodic
        convolution is ``irfft2(rfft2(x) * transfer(h, w, x), s=(h, w))``.

        Examples
        --------
        >>> import torch
        >>> t = Blur(box_psf(3)).transfer(6, 6, torch.zeros(1, dtype=torch.float64))
        >>> t.shape, round(float(t[0, 0].real), 12)  # the DC gain is the kernel's sum
        (torch.Size([6, 4]), 1.0)
        """
        key = (h, w, like.dtype, like.device)
        if key not in self._cache:
            kh, kw = self.psf.shape
            if self.boundary == "valid" and (kh > h or kw > w):
                raise ValueError(f"psf {tuple(self.psf.shape)} is larger than the image {(h, w)}")
            # the kernel's centre at (0, 0), entries wrapped modulo the image (periodic)
            rows = (torch.arange(kh, device=like.device) - kh // 2) % h
            cols = (torch.arange(kw, device=like.device) - kw // 2) % w
            pad = torch.zeros((h, w), dtype=like.dtype, device=like.device)
            pad.index_put_(
                (rows[:, None].expand(kh, kw), cols[None, :].expand(kh, kw)),
                self.psf.to(dtype=like.dtype, device=like.device),
                accumulate=True,
            )
            self._cache[key] = torch.fft.rfft2(pad)
        return self._cache[key]

    def _valid_slices(self, h: int, w: int) -> tuple[slice, slice]:
        kh, kw = self.psf.shape
        return slice(kh // 2, h - (kh - 1 - kh // 2)), slice(kw // 2, w - (kw - 1 - kw // 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        out = torch.fft.irfft2(torch.fft.rfft2(x) * self.transfer(h, w, x), s=(h, w))
        if self.boundary == "valid":
            rows, cols = self._valid_slices(h, w)
            out = out[..., rows, cols]
        return out

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        if self.boundary == "valid":
            kh, kw = self.psf.shape
            h, w = y.shape[-2] + kh - 1, y.shape[-1] + kw - 1
            full = y.new_zeros(y.shape[:-2] + (h, w))
            rows, cols = self._valid_slices(h, w)
            full[..., rows, cols] = y
            y = full
        h, w = y.shape[-2:]
        return torch.fft.irfft2(torch.fft.rfft2(y) * self.transfer(h, w, y).conj(), s=(h, w))

    def output_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        shape = tuple(shape)
        if self.boundary == "periodic":
            return shape
        kh, kw = self.psf.shape
        return shape[:-2] + (shape[-2] - kh + 1, shape[-1] - kw + 1)

    def input_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        """Shape of ``x`` for an observation of the given shape (``"valid"``: larger)."""
        shape = tuple(shape)
        if self.boundary == "periodic":
            return shape
        kh, kw = self.psf.shape
        return shape[:-2] + (shape[-2] + kh - 1, shape[-1] + kw - 1)

    def structure(self) -> FourierDiagonal | None:
        """:class:`FourierDiagonal` for the periodic boundary, ``None`` for ``"valid"``."""
        return FourierDiagonal(self.transfer) if self.boundary == "periodic" else None

    def dct_symbol(self, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
        """``|H(pi k / h, pi l / w)|^2`` of the kernel, for either boundary (a preconditioner).

        Examples
        --------
        >>> import torch
        >>> float(Blur(box_psf(3)).dct_symbol(8, 8, torch.zeros(())).max())  # H(0) = 1
        1.0
        """
        psf = self.psf.to(torch.float64).cpu()
        kh, kw = psf.shape
        rows = torch.arange(kh, dtype=torch.float64) - kh // 2
        cols = torch.arange(kw, dtype=torch.float64) - kw // 2
        wh = torch.pi * torch.arange(h, dtype=torch.float64) / h
        ww = torch.pi * torch.arange(w, dtype=torch.float64) / w
        eh = torch.exp(-1j * wh[:, None] * rows[None, :])
        ew = torch.exp(-1j * ww[:, None] * cols[None, :])
        response = (eh @ psf.to(eh.dtype) @ ew.T).abs() ** 2
        return response.to(dtype=like.dtype, device=like.device)

    def __repr__(self) -> str:
        return f"Blur(psf {tuple(self.psf.shape)}, boundary={self.boundary!r})"
