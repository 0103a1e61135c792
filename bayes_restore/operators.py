"""Linear forward operators ``A`` of the observation model ``y = A x + noise``.

An operator acts on the last two dimensions of ``(..., H, W)`` tensors and is
batched over the leading ones. It provides ``forward`` (``A x``), ``adjoint``
(``A^T y``), ``normal`` (``A^T A x``), ``output_shape`` / ``input_shape`` and an upper
bound ``norm_bound`` on its operator norm (used for solver step sizes).

Operators also *describe themselves*, so that solvers ask them what they can do
instead of testing their class: :meth:`LinearOperator.structure` returns one of the
spectral structures below (or ``None`` for a general operator), from which the base
class derives the exact normal-equation solve :meth:`LinearOperator.solve_normal` and
the restriction to a window of the image :meth:`LinearOperator.restrict` (tiling).
An operator written outside the package that declares a structure gets both, and
the solvers' fast paths, without any change to the package:

- :class:`PixelDiagonal` ``(d)``: ``A = diag(d)`` (masks, pointwise gains);
- :class:`FourierDiagonal` ``(transfer)``: a periodic convolution, diagonal in the
  2-D discrete Fourier basis;
- :class:`BlockMean` ``(factor)``: the mean of each ``factor x factor`` block
  (``A A^T = I / factor^2``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

__all__ = [
    "LinearOperator",
    "Identity",
    "Blur",
    "Downsample",
    "Mask",
    "Diagonal",
    "PixelDiagonal",
    "FourierDiagonal",
    "BlockMean",
    "gaussian_psf",
    "box_psf",
]


# --------------------------------------------------------------------------------------
# structures: what an operator is, spectrally
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# the interface
# --------------------------------------------------------------------------------------


class LinearOperator:
    """Interface of the linear operators: subclass and implement ``forward`` and ``adjoint``.

    Subclasses whose output has another spatial shape (decimation) override
    :meth:`output_shape` and :meth:`input_shape`. ``norm_bound`` must be an upper bound
    of ``||A||_2``. A subclass that declares its :meth:`structure` gets
    :meth:`solve_normal` (and, for a :class:`PixelDiagonal`, :meth:`restrict`) from it,
    and the solvers' fast paths.

    Examples
    --------
    >>> import torch
    >>> class Scale(LinearOperator):
    ...     def forward(self, x):
    ...         return 2 * x
    ...     def adjoint(self, y):
    ...         return 2 * y
    ...     def structure(self):
    ...         return PixelDiagonal(torch.tensor(2.0))
    ...     norm_bound = 2.0
    >>> Scale().normal(torch.ones(2, 2))
    tensor([[4., 4.],
            [4., 4.]])
    >>> Scale().solve_normal(torch.full((2, 2), 5.0), 1.0)  # (4 + 1)^-1 * 5
    tensor([[1., 1.],
            [1., 1.]])
    >>> Scale().tileable, Scale().restrict(slice(0, 1), slice(0, 2))
    (True, Diagonal(d shape ()))
    """

    #: an upper bound on the operator norm ``||A||_2``
    norm_bound: float = 1.0
    #: whether ``A = I`` (solvers then run the denoising path)
    is_identity: bool = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply ``A`` to images of shape ``(..., H, W)``."""
        raise NotImplementedError

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Apply ``A^T`` to observations of shape ``(..., H', W')``."""
        raise NotImplementedError

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """Apply ``A^T A``."""
        return self.adjoint(self.forward(x))

    def output_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        """Shape of ``A x`` for ``x`` of the given shape (same shape by default)."""
        return tuple(shape)

    def input_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        """Shape of ``x`` for an observation ``A x`` of the given shape.

        The same shape by default; a subclass that overrides :meth:`output_shape` must
        override this too.
        """
        if type(self).output_shape is not LinearOperator.output_shape:
            raise NotImplementedError(
                f"{type(self).__name__} overrides output_shape but not input_shape"
            )
        return tuple(shape)

    def structure(self) -> PixelDiagonal | FourierDiagonal | BlockMean | None:
        """The operator's spectral structure, or ``None`` for a general operator.

        Solvers use it for closed-form steps (the data term's proximal step); the base
        class derives :meth:`solve_normal` and :meth:`restrict` from it.
        """
        return None

    @property
    def can_solve_normal(self) -> bool:
        """Whether :meth:`solve_normal` is available (exact, no iterations)."""
        return (self.structure() is not None
                or type(self).solve_normal is not LinearOperator.solve_normal)

    def solve_normal(self, v: torch.Tensor, rho: float | torch.Tensor) -> torch.Tensor:
        """``(A^T A + rho I)^{-1} v`` for images ``v`` of shape ``(..., H, W)``, ``rho > 0``.

        Exact, from :meth:`structure`; raises ``NotImplementedError`` for a general
        operator (see :attr:`can_solve_normal`). A tensor ``rho`` gives one value per
        image (shape ``batch``).
        """
        structure = self.structure()
        if structure is None:
            raise NotImplementedError(
                f"{self!r} has no closed-form (A^T A + rho I)^-1: it declares no structure() "
                "(PixelDiagonal, FourierDiagonal or BlockMean); use an iterative solver"
            )
        return structure.solve_normal(v, rho)

    def adjoint_as(self, y: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
        """``A^T y`` as an image of spatial shape ``shape[-2:]``.

        The same as :meth:`adjoint` unless the observation forgets part of the image (a
        decimation of an image whose size is not a multiple of the factor): then only the
        operator knows how ``A^T`` fills the rest. Raises ``ValueError`` when it cannot.

        Examples
        --------
        >>> import torch
        >>> Downsample(2).adjoint_as(torch.ones(2, 2), (5, 5)).shape
        torch.Size([5, 5])
        """
        out = self.adjoint(y)
        if tuple(out.shape[-2:]) != tuple(shape[-2:]):
            raise ValueError(
                f"{self!r}: A^T y has the spatial shape {tuple(out.shape[-2:])}, not "
                f"{tuple(shape[-2:])}"
            )
        return out

    def dct_symbol(self, h: int, w: int, like: torch.Tensor) -> torch.Tensor | None:
        """``A^T A`` approximated as diagonal in the DCT-II basis of ``(h, w)`` images, or None.

        Preconditioners ask for it. From a :class:`FourierDiagonal` structure it is
        ``|H|^2`` at the DCT frequencies ``(pi k / h, pi l / w)``: exact for a symmetric
        kernel with reflexive boundaries, close otherwise.
        """
        structure = self.structure()
        if isinstance(structure, FourierDiagonal):
            return structure.transfer(2 * h, 2 * w, like)[:h, :w].abs().square()
        return None

    @property
    def tileable(self) -> bool:
        """Whether :meth:`restrict` is available: ``A`` acts on each pixel alone."""
        return isinstance(self.structure(), PixelDiagonal)

    def restrict(self, rows: slice, cols: slice) -> LinearOperator:
        """The operator on the image window ``x[..., rows, cols]`` (for tiling).

        ``A.restrict(rows, cols).forward(x[..., rows, cols]) == A.forward(x)[..., rows,
        cols]``. Available for pixel-diagonal operators (:attr:`tileable`); the base
        class returns a :class:`Diagonal` of the window's gains, subclasses their own
        type. Raises ``NotImplementedError`` otherwise.
        """
        _check_window(rows, cols)
        structure = self.structure()
        if not isinstance(structure, PixelDiagonal):
            raise NotImplementedError(
                f"{self!r} is not tileable: only pixel-diagonal operators restrict to a "
                "window (a convolution or a decimation couples neighbouring pixels)"
            )
        return Diagonal(structure.window(rows, cols).d)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _check_window(rows, cols) -> None:
    if not (isinstance(rows, slice) and isinstance(cols, slice)):
        raise TypeError(f"rows and cols must be slices, got {rows!r}, {cols!r}")


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
        _check_window(rows, cols)
        return self


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
        _check_window(rows, cols)
        return Mask(PixelDiagonal(self.mask).window(rows, cols).d)

    def __repr__(self) -> str:
        return f"Mask({float(self.mask.double().mean()):.0%} observed)"


class Diagonal(LinearOperator):
    """A pointwise gain ``A = diag(d)``: vignetting, per-pixel sensitivity, soft masks.

    Parameters
    ----------
    d : array or torch.Tensor
        Finite real gains, broadcastable to the images (``(H, W)``, ``(C, H, W)``, ...).

    Examples
    --------
    >>> import torch
    >>> op = Diagonal(torch.tensor([[1.0, 0.5], [0.25, 2.0]]))
    >>> op.forward(torch.ones(2, 2))
    tensor([[1.0000, 0.5000],
            [0.2500, 2.0000]])
    >>> op.restrict(slice(1, 2), slice(0, 2)).d
    tensor([[0.2500, 2.0000]])
    """

    def __init__(self, d) -> None:
        d = torch.as_tensor(d)
        if not d.is_floating_point() or not bool(torch.isfinite(d).all()):
            raise ValueError("d must hold finite floating-point values")
        self.d = d
        self.norm_bound = float(d.abs().max()) if d.numel() else 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.d.to(device=x.device, dtype=x.dtype)

    adjoint = forward

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.d.to(device=x.device, dtype=x.dtype).square()

    def structure(self) -> PixelDiagonal:
        """:class:`PixelDiagonal` of the gains."""
        return PixelDiagonal(self.d)

    def __repr__(self) -> str:
        return f"Diagonal(d shape {tuple(self.d.shape)})"


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
