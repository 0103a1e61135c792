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
- :class:`DCTDiagonal` ``(eigenvalues)``: a symmetric convolution with reflective
  boundaries, diagonal in the orthonormal 2-D DCT-II basis (the basis of the Neumann
  gradient prior);
- :class:`BlockMean` ``(factor)``: the mean of each ``factor x factor`` block
  (``A A^T = I / factor^2``).

The structures that share the prior's DCT-II basis describe themselves in it as a
:class:`DCTAliasing` (``dct_aliasing(h, w, like)``): the exact Gaussian posterior's path.

Layout: ``structures.py`` (the structures), ``base.py`` (the interface and the
general gain :class:`Diagonal`, which its ``restrict`` returns), ``pointwise.py``
(:class:`Identity`, :class:`Mask`, :func:`as_operator`), ``blur.py`` (:class:`Blur` and
its point-spread functions), ``sampling.py`` (:class:`Downsample`). Every name is
importable from ``bayes_restore.operators``.
"""

from .base import Diagonal, LinearOperator
from .blur import Blur, box_psf, gaussian_psf
from .pointwise import Identity, Mask
from .pointwise import as_operator as as_operator  # not in __all__, used by the package
from .sampling import Downsample
from .structures import BlockMean, DCTAliasing, DCTDiagonal, FourierDiagonal, PixelDiagonal

__all__ = [
    "LinearOperator",
    "Identity",
    "Blur",
    "Downsample",
    "Mask",
    "Diagonal",
    "PixelDiagonal",
    "FourierDiagonal",
    "DCTDiagonal",
    "BlockMean",
    "DCTAliasing",
    "gaussian_psf",
    "box_psf",
]
