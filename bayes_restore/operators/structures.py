"""The spectral structures an operator declares: what it is, so solvers need not ask its class.

- :class:`PixelDiagonal` ``(d)``: ``A = diag(d)`` (masks, pointwise gains);
- :class:`FourierDiagonal` ``(transfer)``: a periodic convolution, diagonal in the
  2-D discrete Fourier basis;
- :class:`DCTDiagonal` ``(eigenvalues)``: a symmetric convolution with reflective
  (half-sample symmetric) boundaries, diagonal in the orthonormal 2-D DCT-II basis;
- :class:`BlockMean` ``(factor)``: the mean of each ``factor x factor`` block
  (``A A^T = I / factor^2``).

Each gives the exact ``(A^T A + rho I)^{-1}``; :meth:`PixelDiagonal.window` restricts a
pixel-diagonal one to a window of the image (tiling). The structures that the Neumann
gradient prior shares a basis with (:class:`DCTDiagonal`, :class:`BlockMean` on whole
blocks, a constant :class:`PixelDiagonal`) also describe themselves in that basis with
``dct_aliasing(h, w, like)`` (a :class:`DCTAliasing`): what the exact Gaussian posterior
needs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from bayes_restore.differences import dct2, idct2

__all__ = ["PixelDiagonal", "FourierDiagonal", "DCTDiagonal", "BlockMean", "DCTAliasing"]


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

    def dct_aliasing(self, h: int, w: int, like: torch.Tensor) -> DCTAliasing | None:
        """A constant gain ``d I`` is diagonal in any basis (factors ``(1, 1)``); else ``None``."""
        if self.d.numel() != 1:
            return None
        return DCTAliasing((1, 1), self.diagonal(like).reshape(()).expand(h, w))


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
    >>> op = Blur(gaussian_psf(3, 1.0), boundary="periodic")
    >>> s = op.structure()
    >>> s.transfer(8, 8, torch.zeros(1, dtype=torch.float64)).shape
    torch.Size([8, 5])
    >>> v = torch.rand(8, 8, dtype=torch.float64)
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


@dataclass(frozen=True, eq=False)
class DCTAliasing:
    """How ``A`` acts on the orthonormal 2-D DCT-II basis: each basis image to one basis image.

    For an ``(H, W)`` image with ``H = fh * Mh``, ``W = fw * Mw`` and an ``(Mh, Mw)``
    observation, ``A`` maps the DCT-II basis image ``(k, l)`` of the image to
    ``gain[k, l]`` times the DCT-II basis image ``(fold(k), fold(l))`` of the observation,
    where along an axis of factor ``f`` (``M = N / f``) ``fold(k)`` is ``k mod 2M``
    reflected into ``[0, M]``: the frequencies ``2 M q +- k'`` all land on ``k'``
    (aliasing), and those with ``fold(k) = M`` must have a zero gain (they are not
    observed). ``f = 1`` is a DCT-diagonal operator (``fold(k) = k``). In that basis
    ``A^T A`` is block-diagonal with one ``fh fw x fh fw`` block of rank one per observed
    frequency, which makes the Gaussian-gradient posterior (whose prior is diagonal in
    the same basis) exact in closed form
    (:mod:`bayes_restore.infer.gaussian_spectral`).

    Parameters
    ----------
    factors : (int, int)
        ``(fh, fw)``, each >= 1, dividing the image's size.
    gain : torch.Tensor
        Shape ``(H, W)``, real. The constant image must be observed (``gain[0, 0] != 0``)
        and be the only one of its alias group ``fold = (0, 0)`` with a non-zero gain.

    Examples
    --------
    >>> import torch
    >>> a = BlockMean(2).dct_aliasing(4, 4, torch.zeros((), dtype=torch.float64))
    >>> a.factors, round(float(a.gain[0, 0]), 12)  # A 1 = 1 on 4x4 -> 2x2: 1 / f in 2-D
    ((2, 2), 0.5)
    """

    factors: tuple[int, int]
    gain: torch.Tensor


@dataclass(frozen=True, eq=False)
class DCTDiagonal:
    """``A = C^T diag(lambda) C`` with ``C`` the orthonormal 2-D DCT-II: real eigenvalues.

    A convolution by a kernel symmetric in both axes with reflective (half-sample
    symmetric, ``d c b a | a b c d | d c b a``) boundaries is of this form: its
    eigenvalue at the frequency ``(k, l)`` is ``sum_ij psf[i, j] cos(pi k i / H)
    cos(pi l j / W)`` (offsets ``i, j`` from the kernel's centre). The Neumann gradient
    prior is diagonal in the same basis.

    Parameters
    ----------
    eigenvalues : callable
        ``eigenvalues(h, w, like)`` returns ``lambda`` for an ``(h, w)`` image, shape
        ``(h, w)``, real, in ``like``'s dtype and on its device.

    Examples
    --------
    >>> import torch
    >>> from bayes_restore.operators import Blur, gaussian_psf
    >>> op = Blur(gaussian_psf(5, 1.0), boundary="reflect")
    >>> s = op.structure()
    >>> v = torch.rand(8, 8, dtype=torch.float64)
    >>> x = s.solve_normal(v, 0.1)
    >>> bool(torch.allclose(op.normal(x) + 0.1 * x, v))
    True
    """

    eigenvalues: Callable[[int, int, torch.Tensor], torch.Tensor]

    def solve_normal(self, v: torch.Tensor, rho: float | torch.Tensor) -> torch.Tensor:
        """``(A^T A + rho I)^{-1} v = C^T [C v / (lambda^2 + rho)]``."""
        _check_rho(rho)
        h, w = v.shape[-2:]
        lam2 = self.eigenvalues(h, w, v).square()
        return idct2(dct2(v) / (lam2 + rho))

    def dct_aliasing(self, h: int, w: int, like: torch.Tensor) -> DCTAliasing:
        """The eigenvalues as a :class:`DCTAliasing` of factors ``(1, 1)``."""
        return DCTAliasing((1, 1), self.eigenvalues(h, w, like))


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

    def dct_aliasing(self, h: int, w: int, like: torch.Tensor) -> DCTAliasing | None:
        """The block mean in the DCT-II bases of the image and the observation.

        Along an axis of length ``N = f M``, the mean of each ``f``-block of the DCT-II
        basis vector ``k`` is ``g_k`` times the length-``M`` basis vector ``fold(k)``, with
        ``g_0 = f^{-1/2}`` and, for ``k >= 1``,

        ``g_k = (-1)^q (a_k / a'_{k'}) sin(pi k / 2M) / (f sin(pi k / 2N))``,
        ``k = 2 M q +- k'``,

        (``a``, ``a'`` the orthonormal DCT factors of the two lengths; ``g_k = 0`` where
        ``k'`` is 0 or ``M``); the 2-D gain is ``g_k g_l``. ``None`` unless the factor
        divides both sides (rows or columns beyond the blocks are not observed).
        """
        f = self.factor
        if h % f or w % f or h < f or w < f:
            return None
        gh = _block_mean_gains(h, f, like)
        gw = _block_mean_gains(w, f, like)
        return DCTAliasing((f, f), gh[:, None] * gw[None, :])


def _block_mean_gains(n: int, f: int, like: torch.Tensor) -> torch.Tensor:
    """The 1-D gains ``g_k`` of :meth:`BlockMean.dct_aliasing` (float64 arithmetic)."""
    m = n // f
    k = torch.arange(n, dtype=torch.float64)
    r = torch.remainder(k, 2 * m)
    fold = torch.where(r <= m, r, 2 * m - r)
    q = torch.div(k + m, 2 * m, rounding_mode="floor")  # k = 2 m q +- fold
    a = torch.full((n,), math.sqrt(2.0 / n), dtype=torch.float64)
    a[0] = math.sqrt(1.0 / n)
    a_low = torch.full((n,), math.sqrt(2.0 / m), dtype=torch.float64)
    a_low[fold == 0] = math.sqrt(1.0 / m)
    safe = torch.where(k > 0, k, torch.ones_like(k))
    ratio = torch.sin(math.pi * safe / (2 * m)) / (f * torch.sin(math.pi * safe / (2 * n)))
    g = (1 - 2 * torch.remainder(q, 2)) * a / a_low * ratio
    g = torch.where((fold == 0) | (fold == m), torch.zeros_like(g), g)
    g[0] = 1.0 / math.sqrt(f)
    return g.to(dtype=like.dtype, device=like.device)
