"""The operator interface :class:`LinearOperator`, and :class:`Diagonal`, the general
pixel-diagonal operator (what the interface's :meth:`~LinearOperator.restrict` returns).

An operator declares its :meth:`~LinearOperator.structure` (``structures.py``); the base
class derives the exact normal-equation solve, the restriction to a window of the image
and the DCT symbol from it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ._common import check_window
from .structures import BlockMean, DCTDiagonal, FourierDiagonal, PixelDiagonal

__all__ = ["LinearOperator", "Diagonal"]


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

    def structure(self) -> PixelDiagonal | FourierDiagonal | DCTDiagonal | BlockMean | None:
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
                "(PixelDiagonal, FourierDiagonal, DCTDiagonal or BlockMean); use an iterative "
                "solver"
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
        >>> from bayes_restore.operators import Downsample
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

        Preconditioners ask for it. From a :class:`DCTDiagonal` structure it is exact,
        ``lambda^2``; from a :class:`FourierDiagonal` one it is ``|H|^2`` at the DCT
        frequencies ``(pi k / h, pi l / w)``: exact for a symmetric kernel with reflexive
        boundaries, close otherwise.
        """
        structure = self.structure()
        if isinstance(structure, DCTDiagonal):
            return structure.eigenvalues(h, w, like).square()
        if isinstance(structure, FourierDiagonal):
            return structure.transfer(2 * h, 2 * w, like)[:h, :w].abs().square()
        return None

    def num_observed(self, shape: Sequence[int]) -> int:
        """How many values of an observation of ``shape`` see the image.

        All of them, except the zero gains of a pixel-diagonal operator (a mask's
        unobserved pixels, zero-filled in ``y`` and in ``A x``: they carry no information).
        Estimators of the noise level divide by it.

        Examples
        --------
        >>> import torch
        >>> from bayes_restore.operators import Downsample, Mask
        >>> Mask(torch.tensor([[True, False], [True, True]])).num_observed((3, 2, 2))
        9
        >>> Downsample(2).num_observed((4, 4))
        16
        """
        shape = tuple(int(n) for n in shape)
        structure = self.structure()
        if isinstance(structure, PixelDiagonal):
            return int(torch.broadcast_to(torch.as_tensor(structure.d) != 0, shape).sum())
        return math.prod(shape)

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
        check_window(rows, cols)
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
