"""Convolution (:class:`Blur`: reflective, periodic or valid boundaries) and its point-spread
functions."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from bayes_restore.differences import dct2, idct2

from .base import LinearOperator
from .structures import DCTDiagonal, FourierDiagonal

__all__ = ["Blur", "gaussian_psf", "box_psf", "BOUNDARIES", "DEFAULT_BOUNDARY"]

#: the boundary conditions of :class:`Blur`
BOUNDARIES = ("reflect", "periodic", "valid")
#: :class:`Blur`'s default boundary (measured: the fewest border artefacts)
DEFAULT_BOUNDARY = "reflect"


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
    """Convolution with a point-spread function, with a choice of boundary condition.

    Parameters
    ----------
    psf : array or torch.Tensor
        2-D kernel, its centre at ``(kh // 2, kw // 2)``; usually non-negative, sum 1.
    boundary : {"reflect", "periodic", "valid"}, default "reflect"
        What the kernel sees beyond the image's borders.

        - ``"reflect"``: the image mirrored about its borders (half-sample symmetric,
          ``d c b a | a b c d | d c b a``, the DCT-II convention, scipy.ndimage's
          ``mode="reflect"``); output the input's size. The same boundary as the
          gradient prior's (Neumann): for a kernel symmetric in both axes the operator is
          diagonal in the DCT-II basis (:class:`~bayes_restore.operators.DCTDiagonal`),
          so the data term's solves and the Gaussian posterior are exact in closed form.
          Any other kernel works too (no structure: iterative solvers; ``norm_bound``
          assumes the kernel is at most one pixel larger than the image). The default:
          it leaves the fewest artefacts at the borders when the scene continues beyond
          them (measured on the Inverse problems page of the documentation).
        - ``"periodic"``: circular convolution by the FFT, output the input's size (wraps
          around the borders: each border sees the opposite one);
          :class:`~bayes_restore.operators.FourierDiagonal`.
        - ``"valid"``: only the output pixels whose whole kernel support lies inside the
          image, ``(H - kh + 1, W - kw + 1)``: no wrap-around and no invented boundary
          values (the physically faithful model of a sensor crop); no structure.

    Examples
    --------
    >>> import torch
    >>> op = Blur(gaussian_psf(5, 1.0), boundary="valid")
    >>> op.output_shape((32, 32))
    (28, 28)
    >>> x, y = torch.randn(32, 32, dtype=torch.float64), torch.randn(28, 28, dtype=torch.float64)
    >>> bool(torch.isclose((op.forward(x) * y).sum(), (x * op.adjoint(y)).sum()))
    True
    >>> Blur(gaussian_psf(5, 1.0)).structure()  # reflect, symmetric kernel
    DCTDiagonal(...)
    >>> Blur(torch.rand(3, 3, dtype=torch.float64)).structure() is None  # not symmetric
    True
    """

    def __init__(self, psf, boundary: str = DEFAULT_BOUNDARY) -> None:
        psf = torch.as_tensor(psf)
        if psf.dim() != 2 or min(psf.shape) < 1:
            raise ValueError(f"psf must be a 2-D kernel, got shape {tuple(psf.shape)}")
        if not psf.is_floating_point() or not bool(torch.isfinite(psf).all()):
            raise ValueError("psf must hold finite floating-point values")
        if boundary not in BOUNDARIES:
            raise ValueError(
                f"boundary must be 'reflect', 'periodic' or 'valid', got {boundary!r}")
        self.psf = psf
        self.boundary = boundary
        self.norm_bound = float(psf.abs().sum())
        if boundary == "reflect" and not self.symmetric:
            # A = (valid convolution) P, P the padding: ||P||^2 is the largest number of
            # copies of a pixel, at most 2 per axis for a kernel at most the image's size + 1
            self.norm_bound *= 2.0
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
        """The pixels of a periodic convolution whose kernel support does not wrap around.

        Output ``n`` reads the inputs ``n - (k - 1 - k // 2) .. n + k // 2`` (the centre
        at ``k // 2``): for even ``k`` the window is not centred.
        """
        kh, kw = self.psf.shape
        return slice(kh - 1 - kh // 2, h - kh // 2), slice(kw - 1 - kw // 2, w - kw // 2)

    def _reflect_indices(self, h: int, w: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """Source row and column of each pixel of the reflected, padded image (cached)."""
        key = ("reflect", h, w, device)
        if key not in self._cache:
            kh, kw = self.psf.shape
            self._cache[key] = (_reflect(h, kh - 1 - kh // 2, kh // 2, device),
                                _reflect(w, kw - 1 - kw // 2, kw // 2, device))
        return self._cache[key]

    def _convolve_valid(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        out = torch.fft.irfft2(torch.fft.rfft2(x) * self.transfer(h, w, x), s=(h, w))
        rows, cols = self._valid_slices(h, w)
        return out[..., rows, cols]

    def _correlate_full(self, y: torch.Tensor) -> torch.Tensor:
        """The adjoint of :meth:`_convolve_valid`: ``y`` placed in the larger image, correlated."""
        kh, kw = self.psf.shape
        h, w = y.shape[-2] + kh - 1, y.shape[-1] + kw - 1
        full = y.new_zeros(y.shape[:-2] + (h, w))
        rows, cols = self._valid_slices(h, w)
        full[..., rows, cols] = y
        return torch.fft.irfft2(torch.fft.rfft2(full) * self.transfer(h, w, full).conj(),
                                s=(h, w))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if self.boundary == "valid":
            return self._convolve_valid(x)
        if self.boundary == "reflect":
            rows, cols = self._reflect_indices(h, w, x.device)
            return self._convolve_valid(x.index_select(-2, rows).index_select(-1, cols))
        return torch.fft.irfft2(torch.fft.rfft2(x) * self.transfer(h, w, x), s=(h, w))

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        if self.boundary == "valid":
            return self._correlate_full(y)
        h, w = y.shape[-2:]
        if self.boundary == "reflect":
            rows, cols = self._reflect_indices(h, w, y.device)
            full = self._correlate_full(y)  # on the padded image: fold it back
            out = full.new_zeros(full.shape[:-2] + (h, full.shape[-1]))
            out.index_add_(out.dim() - 2, rows, full)
            final = out.new_zeros(out.shape[:-1] + (w,))
            return final.index_add_(out.dim() - 1, cols, out)
        return torch.fft.irfft2(torch.fft.rfft2(y) * self.transfer(h, w, y).conj(), s=(h, w))

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """Apply ``A^T A``: in the basis that diagonalises it when there is one (two DCTs for
        the reflective blur of a symmetric kernel, one FFT pair for a periodic one), else
        as ``A^T (A x)``."""
        h, w = x.shape[-2:]
        if self.boundary == "periodic":
            return torch.fft.irfft2(torch.fft.rfft2(x) * self.transfer(h, w, x).abs().square(),
                                    s=(h, w))
        if self.boundary == "reflect" and self.symmetric:
            return idct2(self.dct_eigenvalues(h, w, x).square() * dct2(x))
        return self.adjoint(self.forward(x))

    @property
    def symmetric(self) -> bool:
        """Whether the kernel is symmetric in both axes about its centre (odd sizes)."""
        kh, kw = self.psf.shape
        return (kh % 2 == 1 and kw % 2 == 1 and torch.equal(self.psf, self.psf.flip(0))
                and torch.equal(self.psf, self.psf.flip(1)))

    def dct_eigenvalues(self, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
        """Eigenvalues of the reflective blur of a symmetric kernel in the 2-D DCT-II basis.

        ``lambda_kl = sum_ij psf[i, j] cos(pi k i / h) cos(pi l j / w)`` (offsets ``i, j``
        from the kernel's centre), shape ``(h, w)``, in ``like``'s dtype and on its device
        (cached). Exact for ``boundary="reflect"`` and a symmetric kernel
        (:attr:`symmetric`): then ``A = C^T diag(lambda) C``.

        Examples
        --------
        >>> import torch
        >>> lam = Blur(box_psf(3)).dct_eigenvalues(8, 8, torch.zeros((), dtype=torch.float64))
        >>> round(float(lam[0, 0]), 12)  # the constant image keeps its level
        1.0
        """
        key = ("dct", h, w, like.dtype, like.device)
        if key not in self._cache:
            psf = self.psf.to(torch.float64).cpu()
            kh, kw = psf.shape
            rows = torch.arange(kh, dtype=torch.float64) - kh // 2
            cols = torch.arange(kw, dtype=torch.float64) - kw // 2
            ch = torch.cos(torch.pi * torch.arange(h, dtype=torch.float64)[:, None] * rows / h)
            cw = torch.cos(torch.pi * torch.arange(w, dtype=torch.float64)[:, None] * cols / w)
            self._cache[key] = (ch @ psf @ cw.T).to(dtype=like.dtype, device=like.device)
        return self._cache[key]

    def output_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        shape = tuple(shape)
        if self.boundary != "valid":
            return shape
        kh, kw = self.psf.shape
        return shape[:-2] + (shape[-2] - kh + 1, shape[-1] - kw + 1)

    def input_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        """Shape of ``x`` for an observation of the given shape (``"valid"``: larger)."""
        shape = tuple(shape)
        if self.boundary != "valid":
            return shape
        kh, kw = self.psf.shape
        return shape[:-2] + (shape[-2] + kh - 1, shape[-1] + kw - 1)

    def structure(self) -> FourierDiagonal | DCTDiagonal | None:
        """:class:`FourierDiagonal` (periodic), :class:`DCTDiagonal` (reflect, symmetric
        kernel), else ``None`` (``"valid"``, or reflect with a non-symmetric kernel)."""
        if self.boundary == "periodic":
            return FourierDiagonal(self.transfer)
        if self.boundary == "reflect" and self.symmetric:
            return DCTDiagonal(self.dct_eigenvalues)
        return None

    def dct_symbol(self, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
        """``|H(pi k / h, pi l / w)|^2`` of the kernel, for any boundary (a preconditioner).

        Exact (``lambda^2`` of :meth:`dct_eigenvalues`) for the reflective boundary and a
        symmetric kernel; an approximation otherwise.

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


def _reflect(n: int, before: int, after: int, device) -> torch.Tensor:
    """Indices of the half-sample symmetric extension of ``range(n)`` by ``before``/``after``.

    ``... 1 0 | 0 1 ... n-1 | n-1 n-2 ...``, repeated (period ``2 n``) for wide kernels.
    """
    i = torch.remainder(torch.arange(-before, n + after, device=device), 2 * n)
    return torch.where(i < n, i, 2 * n - 1 - i)
