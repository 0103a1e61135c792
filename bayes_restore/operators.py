"""Linear forward operators ``A`` of the observation model ``y = A x + noise``.

An operator acts on the last two dimensions of ``(..., H, W)`` tensors and is
batched over the leading ones. It provides ``forward`` (``A x``), ``adjoint``
(``A^T y``), ``normal`` (``A^T A x``), ``output_shape`` and an upper bound
``norm_bound`` on its operator norm (used for solver step sizes).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = [
    "LinearOperator",
    "Identity",
    "Blur",
    "Downsample",
    "Mask",
    "gaussian_psf",
    "box_psf",
]


class LinearOperator:
    """Interface of the linear operators: subclass and implement ``forward`` and ``adjoint``.

    Subclasses whose output has another spatial shape (decimation) override
    :meth:`output_shape`. ``norm_bound`` must be an upper bound of ``||A||_2``.

    Examples
    --------
    >>> import torch
    >>> class Scale(LinearOperator):
    ...     def forward(self, x):
    ...         return 2 * x
    ...     def adjoint(self, y):
    ...         return 2 * y
    ...     norm_bound = 2.0
    >>> Scale().normal(torch.ones(2, 2))
    tensor([[4., 4.],
            [4., 4.]])
    """

    #: an upper bound on the operator norm ``||A||_2``
    norm_bound: float = 1.0

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

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Identity(LinearOperator):
    """The identity ``A = I`` (denoising).

    Examples
    --------
    >>> import torch
    >>> x = torch.ones(2, 3)
    >>> bool(torch.equal(Identity().forward(x), x))
    True
    """

    norm_bound = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return y

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        return x


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

    def _transfer(self, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
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
        out = torch.fft.irfft2(torch.fft.rfft2(x) * self._transfer(h, w, x), s=(h, w))
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
        return torch.fft.irfft2(torch.fft.rfft2(y) * self._transfer(h, w, y).conj(), s=(h, w))

    def output_shape(self, shape):
        shape = tuple(shape)
        if self.boundary == "periodic":
            return shape
        kh, kw = self.psf.shape
        return shape[:-2] + (shape[-2] - kh + 1, shape[-1] - kw + 1)

    def input_shape(self, shape):
        """Shape of ``x`` for an observation of the given shape."""
        shape = tuple(shape)
        if self.boundary == "periodic":
            return shape
        kh, kw = self.psf.shape
        return shape[:-2] + (shape[-2] + kh - 1, shape[-1] + kw - 1)

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

    def output_shape(self, shape):
        shape = tuple(shape)
        return shape[:-2] + (shape[-2] // self.factor, shape[-1] // self.factor)

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
