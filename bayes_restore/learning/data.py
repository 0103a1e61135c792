"""Training data that installs with scikit-image: its sample images, split by image into
train and test, low-resolution copies (box or bicubic) and augmented patches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from bayes_restore.operators import Downsample

__all__ = [
    "TRAIN_IMAGES",
    "TEST_IMAGES",
    "DEGRADATIONS",
    "load_image",
    "degrade",
    "dihedral",
    "PatchSampler",
]

#: scikit-image sample images used for training (natural photographs, micrographs,
#: astronomy, text); ``cat`` is left out (it is ``chelsea``), ``horse`` (binary) and the
#: synthetic ones too
TRAIN_IMAGES = (
    "astronaut", "brick", "cell", "chelsea", "clock", "coffee", "gravel",
    "hubble_deep_field", "immunohistochemistry", "moon", "page", "retina", "text",
)
#: held-out test images: never seen in training
TEST_IMAGES = ("camera", "coins", "grass", "rocket")
#: how low-resolution images are made
DEGRADATIONS = ("box", "bicubic")


def load_image(name: str, *, size: int | None = None) -> np.ndarray:
    """A scikit-image sample image, grey, float64 in ``[0, 1]`` (no download).

    Parameters
    ----------
    name : str
        A function of :mod:`skimage.data` (``"camera"``, ``"astronaut"``...).
    size : int, optional
        Keep the centre ``size x size`` crop.

    Examples
    --------
    >>> load_image("camera", size=64).shape
    (64, 64)
    """
    try:
        import skimage
        import skimage.data
        from skimage.color import rgb2gray
    except ImportError as err:  # pragma: no cover - optional dependency
        raise ImportError("the sample images need scikit-image: pip install scikit-image") from err
    if not isinstance(name, str) or not hasattr(skimage.data, name):
        raise ValueError(f"name must be an image of skimage.data, got {name!r}")
    img = getattr(skimage.data, name)()
    if img.ndim == 3:
        img = rgb2gray(img[..., :3])
    img = skimage.img_as_float(img).astype(np.float64)
    if size is not None:
        h, w = img.shape
        if not 0 < size <= min(h, w):
            raise ValueError(f"size must be in 1..{min(h, w)} for {name!r}, got {size!r}")
        top, left = (h - size) // 2, (w - size) // 2
        img = img[top : top + size, left : left + size]
    return np.ascontiguousarray(img)


def degrade(
    hr: Any,
    factor: int,
    kernel: str = "box",
    *,
    sigma: float = 0.0,
    generator: torch.Generator | None = None,
) -> Any:
    """A low-resolution copy: ``Downsample(factor)`` (box) or antialiased bicubic, plus noise.

    ``"box"`` is the package's super-resolution operator
    (:class:`~bayes_restore.operators.Downsample`, the mean of each block), the forward
    model of the TV-MAP baseline; ``"bicubic"`` is the usual degradation of
    super-resolution benchmarks (``torch.nn.functional.interpolate(..., mode="bicubic",
    antialias=True)``, the kernel widened by ``factor``, as MATLAB's ``imresize``), clipped
    to ``[0, 1]``. Rows and columns beyond a multiple of ``factor`` are dropped.

    Parameters
    ----------
    hr : array or tensor
        ``(..., H, W)``.
    factor : int
    kernel : {"box", "bicubic"}, default "box"
    sigma : float, default 0
        Std of added Gaussian noise (drawn from ``generator``).
    generator : torch.Generator, optional

    Returns
    -------
    array or tensor
        ``(..., H // factor, W // factor)``, numpy for numpy input.

    Examples
    --------
    >>> import numpy as np
    >>> degrade(np.arange(16.0).reshape(4, 4), 2)
    array([[ 2.5,  4.5],
           [10.5, 12.5]])
    """
    if kernel not in DEGRADATIONS:
        raise ValueError(f"kernel must be one of {DEGRADATIONS}, got {kernel!r}")
    if not sigma >= 0:
        raise ValueError(f"sigma must be >= 0, got {sigma!r}")
    is_numpy = isinstance(hr, np.ndarray)
    x = torch.from_numpy(np.ascontiguousarray(hr)) if is_numpy else hr
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() < 2:
        raise ValueError("hr must be a floating-point (..., H, W) array or tensor")
    op = Downsample(factor)  # checks factor
    if kernel == "box":
        y = op.forward(x)
    else:
        h, w = op.output_shape(x.shape)[-2:]
        flat = x[..., : h * factor, : w * factor].reshape(-1, 1, h * factor, w * factor)
        y = F.interpolate(flat, size=(h, w), mode="bicubic", antialias=True, align_corners=False)
        y = y.clamp(0, 1).reshape(x.shape[:-2] + (h, w))
    if sigma > 0:
        y = y + sigma * torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)
    return y.numpy() if is_numpy else y


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """One of the 8 flips / rotations by 90 degrees of the last two axes (``k`` in 0..7).

    ``k % 4`` quarter turns, then a left-right flip when ``k >= 4``; ``k = 0`` is the
    identity. The augmentation of :class:`PatchSampler`: it commutes with the box
    downsampling of aligned blocks.

    Examples
    --------
    >>> import torch
    >>> dihedral(torch.tensor([[1, 2], [3, 4]]), 5).tolist()
    [[4, 2], [3, 1]]
    """
    if not 0 <= int(k) < 8:
        raise ValueError(f"k must be in 0..7, got {k!r}")
    x = torch.rot90(x, int(k) % 4, dims=(-2, -1))
    return x.flip(-1) if k >= 4 else x


class PatchSampler:
    """Random aligned (low-, high-resolution) patch pairs of a set of images, augmented.

    The low-resolution images are made once (:func:`degrade`, noise-free); each batch
    draws, from one generator, an image (with probability proportional to its number of
    patch positions), a position on the ``factor`` grid, one of the 8
    :func:`dihedral` transforms (applied to both patches) and fresh Gaussian noise of std
    ``sigma`` on the low-resolution patch.

    Parameters
    ----------
    images : sequence of arrays
        Grey high-resolution images ``(H, W)`` in ``[0, 1]``.
    factor : int
    degradation : {"box", "bicubic"}, default "box"
    patch_size : int, default 48
        High-resolution patch side, a multiple of ``factor``.
    sigma : float, default 0.01
        Noise std on the low-resolution patches.
    augment : bool, default True
    dtype : torch.dtype, default torch.float32

    Examples
    --------
    >>> import numpy as np, torch
    >>> s = PatchSampler([np.random.default_rng(0).random((32, 32))], 2, patch_size=8)
    >>> lr, hr = s.sample(4, torch.Generator().manual_seed(0))
    >>> tuple(lr.shape), tuple(hr.shape)
    ((4, 1, 4, 4), (4, 1, 8, 8))
    """

    def __init__(
        self,
        images: Sequence[Any],
        factor: int,
        degradation: str = "box",
        *,
        patch_size: int = 48,
        sigma: float = 0.01,
        augment: bool = True,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size < 1:
            raise ValueError(f"patch_size must be a positive integer, got {patch_size!r}")
        if patch_size % factor:
            raise ValueError(f"patch_size {patch_size} is not a multiple of factor {factor}")
        if not sigma >= 0:
            raise ValueError(f"sigma must be >= 0, got {sigma!r}")
        if len(images) == 0:
            raise ValueError("images is empty")
        self.factor, self.patch_size, self.sigma, self.augment = factor, patch_size, sigma, augment
        self.degradation = degradation
        self.hr: list[torch.Tensor] = []
        self.lr: list[torch.Tensor] = []
        for i, img in enumerate(images):
            x = torch.as_tensor(np.asarray(img), dtype=torch.float64)
            if x.dim() != 2:
                raise ValueError(f"images[{i}] must be a grey (H, W) image, got {tuple(x.shape)}")
            h, w = (x.shape[0] // factor) * factor, (x.shape[1] // factor) * factor
            if min(h, w) < patch_size:
                raise ValueError(f"images[{i}] {tuple(x.shape)} is smaller than the patch")
            x = x[:h, :w]
            self.hr.append(x.to(dtype))
            self.lr.append(degrade(x, factor, degradation).to(dtype))
        lr_patch = patch_size // factor
        self._positions = torch.tensor(
            [(lr.shape[0] - lr_patch + 1) * (lr.shape[1] - lr_patch + 1) for lr in self.lr],
            dtype=torch.float64,
        )

    def sample(
        self, batch_size: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(lr, hr)``: ``(batch_size, 1, p / factor, p / factor)`` and
        ``(batch_size, 1, p, p)`` with ``p = patch_size``."""
        f, p = self.factor, self.patch_size
        q = p // f
        which = torch.multinomial(self._positions, batch_size, replacement=True,
                                  generator=generator)
        u = torch.rand(batch_size, 2, generator=generator, dtype=torch.float64)
        turns = torch.randint(0, 8, (batch_size,), generator=generator)
        lrs, hrs = [], []
        for b in range(batch_size):
            lr, hr = self.lr[int(which[b])], self.hr[int(which[b])]
            i = int(u[b, 0] * (lr.shape[0] - q + 1))
            j = int(u[b, 1] * (lr.shape[1] - q + 1))
            lp, hp = lr[i : i + q, j : j + q], hr[f * i : f * i + p, f * j : f * j + p]
            if self.augment:
                lp, hp = dihedral(lp, int(turns[b])), dihedral(hp, int(turns[b]))
            lrs.append(lp)
            hrs.append(hp)
        lr_batch = torch.stack(lrs)[:, None]
        if self.sigma > 0:
            noise = torch.randn(lr_batch.shape, generator=generator, dtype=lr_batch.dtype)
            lr_batch = lr_batch + self.sigma * noise
        return lr_batch, torch.stack(hrs)[:, None]
