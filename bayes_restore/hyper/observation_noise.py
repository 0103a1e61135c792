"""The noise level of an observation ``y = A x + n``, read through the operator ``A``.

:func:`estimate_observation_sigma` asks the operator for its
:meth:`~bayes_restore.operators.LinearOperator.structure`:

- a :class:`~bayes_restore.operators.PixelDiagonal` with unobserved pixels (a mask,
  ``d = 0`` somewhere): the unobserved pixels of ``y`` carry no noise (they are 0), so
  only the observed ones are used. Overlapping blocks (their side chosen so that about 32
  pixels of each are observed) are fitted by a quadratic through their observed pixels;
  where the image is smooth the residual sum of squares is ``sigma^2 chi^2_{m - 6}``
  (``m`` observed pixels in the block), larger where it is not; the 10 % quantile over
  the blocks of ``RSS / (m - 6)``, divided by the same quantile of ``chi^2_{m - 6} /
  (m - 6)`` drawn for the same ``m`` (seeded, so deterministic), is
  ``sigma^2``: the same idea as :func:`~bayes_restore.hyper.estimate_sigma`'s
  ``"blocks"``, on irregular samples.
- anything else (the identity, gains without zeros, blur, decimation, a general
  operator): ``y`` is an image plus white noise of std ``sigma``, and
  :func:`~bayes_restore.hyper.estimate_sigma` applies to it as it is.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from bayes_restore._validation import rms
from bayes_restore.operators import LinearOperator, PixelDiagonal, as_operator

from ._common import image_tensor
from .noise import estimate_sigma

__all__ = ["estimate_observation_sigma", "masked_sigma"]

#: quantile of the blocks' normalised residuals (the flattest tenth of the image decides)
_QUANTILE = 0.1
#: fewest observed pixels for a block to count (the quadratic takes 6 of them)
_MIN_OBSERVED = 12
#: observed pixels wanted per block on average: the block side grows as pixels go missing
_TARGET_OBSERVED = 32
#: draws of the chi-square calibration (at least one per block)
_CALIBRATION_SAMPLES = 1 << 16
#: order of the local polynomial fit
_ORDER = 2


def estimate_observation_sigma(y: Any, operator: LinearOperator | None = None) -> float:
    """Noise std of ``y = A x + n`` (white Gaussian ``n``), one value for the whole input.

    Parameters
    ----------
    y : numpy.ndarray or torch.Tensor
        The observation: ``(H, W)``, ``(C, H, W)`` or ``(N, C, H, W)``, channels first.
    operator : LinearOperator, optional
        ``A``; the identity when ``None``. Asked for its ``structure()`` only.

    Returns
    -------
    float
        The root mean square of the per-slice estimates (as ``restore`` uses one
        ``sigma`` for all its images); 0 for a constant (or wholly unobserved) input.

    Notes
    -----
    Blur and decimation: ``y`` is an image plus white noise and
    :func:`~bayes_restore.hyper.estimate_sigma` (``method="auto"``) is used unchanged; a
    blurred image has less fine-scale content than a sharp one, which helps it. A
    pixel-diagonal operator with zeros (a mask): :func:`masked_sigma` on the observed
    pixels. Accuracy on the benchmark images is on the *Parameter-free restoration with an
    operator* page of the documentation.

    Examples
    --------
    >>> import torch
    >>> from bayes_restore.operators import Mask
    >>> g = torch.Generator().manual_seed(0)
    >>> clean = torch.linspace(0, 1, 128).repeat(128, 1)
    >>> seen = torch.rand(128, 128, generator=g) < 0.5
    >>> y = torch.where(seen, clean + 0.05 * torch.randn(128, 128, generator=g), 0.0)
    >>> round(estimate_observation_sigma(y, Mask(seen)), 2)
    0.05
    """
    t, _ = image_tensor(y)
    structure = as_operator(operator).structure()
    if isinstance(structure, PixelDiagonal):
        d = structure.diagonal(t)
        if bool((d == 0).any()):
            return masked_sigma(t, d != 0)
    sigmas = torch.as_tensor(estimate_sigma(t), dtype=torch.float64)
    return rms(sigmas)


def masked_sigma(y: torch.Tensor, observed: torch.Tensor) -> float:
    """Noise std from the observed pixels only, by local quadratic fits (see the module).

    Parameters
    ----------
    y : torch.Tensor
        ``(H, W)``, ``(C, H, W)`` or ``(N, C, H, W)``.
    observed : torch.Tensor of bool
        Broadcastable to ``y``: where ``y`` holds a noisy value.

    Returns
    -------
    float
        The root mean square over the 2-D slices of their estimates.

    Examples
    --------
    >>> import torch
    >>> g = torch.Generator().manual_seed(1)
    >>> seen = torch.rand(96, 96, generator=g) < 0.2          # 80 % missing
    >>> y = torch.where(seen, 0.1 * torch.randn(96, 96, generator=g), 0.0)
    >>> abs(masked_sigma(y, seen) / 0.1 - 1) < 0.1
    True
    """
    y = y.detach()
    try:
        observed = torch.broadcast_to(observed.to(device=y.device), y.shape)
    except RuntimeError:
        raise ValueError(
            f"the operator's pixel diagonal {tuple(observed.shape)} does not fit the "
            f"observation {tuple(y.shape)}"
        ) from None
    h, w = y.shape[-2:]
    planes = y.reshape(-1, h, w).to(torch.float64)
    masks = observed.reshape(-1, h, w)
    out = torch.stack([_masked_slice(p, m) for p, m in zip(planes, masks, strict=True)])
    return rms(out)


def _masked_slice(z: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """The estimate of one 2-D slice ``z`` observed where ``m``."""
    count = int(m.sum())
    if count < _MIN_OBSERVED:
        return torch.zeros((), dtype=torch.float64)
    h, w = z.shape
    fraction = count / (h * w)
    side = int(min(max(8, math.ceil(math.sqrt(_TARGET_OBSERVED / fraction))), h, w))
    stride = max(1, side // 2)
    mf = m.to(torch.float64)
    zm = torch.where(m, z, torch.zeros((), dtype=z.dtype))
    peak = float(zm.abs().max())
    if peak == 0.0:
        return torch.zeros((), dtype=torch.float64)
    zm = zm / peak  # unit scale: squares neither overflow nor underflow
    # block coordinates, centred
    r = (torch.arange(side, dtype=torch.float64) - (side - 1) / 2) / side  # conditioning
    u = r[:, None].expand(side, side).reshape(-1)
    v = r[None, :].expand(side, side).reshape(-1)

    def blocks(a: torch.Tensor) -> torch.Tensor:  # (nblocks, side * side)
        return a.unfold(0, side, stride).unfold(1, side, stride).reshape(-1, side * side)

    wb, zb = blocks(mf), blocks(zm)
    feats = torch.stack([torch.ones_like(u), u, v] + ([u * u, u * v, v * v] if _ORDER == 2 else []))
    nf = feats.shape[0]
    outer = (feats[:, None, :] * feats[None, :, :]).reshape(nf * nf, -1)  # (nf^2, P)
    # weighted normal equations of the polynomial fit, one small system per block
    gram = (wb @ outer.T).reshape(-1, nf, nf)
    rhs = (wb * zb) @ feats.T
    n_obs = wb.sum(1)
    keep = n_obs >= _MIN_OBSERVED
    # well-posed fits only: a Cholesky factor whose smallest pivot is not negligible
    chol, failed = torch.linalg.cholesky_ex(gram + 1e-12 * torch.eye(gram.shape[-1],
                                                                     dtype=gram.dtype))
    pivots = chol.diagonal(dim1=-2, dim2=-1).square().amin(-1)
    keep &= (failed == 0) & (pivots > 1e-4 * n_obs)
    if not bool(keep.any()):
        return _pairs(zm, m) * peak
    chol, rhs, wb, zb, n_obs = chol[keep], rhs[keep], wb[keep], zb[keep], n_obs[keep]
    coef = torch.cholesky_solve(rhs.unsqueeze(-1), chol).squeeze(-1)
    rss = ((wb * zb.square()).sum(1) - (coef * rhs).sum(1)).clamp_min(0)
    dof = n_obs - nf
    ratio = rss / dof
    # the same quantile of chi^2_dof / dof for these blocks' dof (seeded: deterministic)
    g = torch.Generator().manual_seed(0)
    reps = max(1, math.ceil(_CALIBRATION_SAMPLES / dof.numel()))
    null = _chi2_over_dof(dof.repeat(reps), g)
    q = torch.quantile(ratio, _QUANTILE) / torch.quantile(null, _QUANTILE)
    return q.clamp_min(0).sqrt() * peak


def _chi2_over_dof(k: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One draw of ``chi^2_k / k`` for each entry of the (integer) ``k``."""
    kmax = int(k.max())
    normals = torch.randn((k.numel(), kmax), generator=generator, dtype=torch.float64)
    take = torch.arange(kmax, dtype=torch.float64)[None, :] < k[:, None]
    return (normals.square() * take).sum(1) / k


def _pairs(z: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Fallback: ``1.4826 median|y_i - y_j| / sqrt(2)`` over observed neighbour pairs."""
    diffs = []
    for dim in (0, 1):
        a, b = z.narrow(dim, 0, z.shape[dim] - 1), z.narrow(dim, 1, z.shape[dim] - 1)
        both = m.narrow(dim, 0, m.shape[dim] - 1) & m.narrow(dim, 1, m.shape[dim] - 1)
        diffs.append((a - b)[both])
    d = torch.cat(diffs)
    if d.numel() == 0:
        return torch.zeros((), dtype=torch.float64)
    return 1.482602218505602 * d.abs().median() / math.sqrt(2)
