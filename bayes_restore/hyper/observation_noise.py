"""The noise level of an observation ``y = A x + n``, read through the operator ``A``.

:func:`estimate_observation_sigma` asks the operator for its
:meth:`~bayes_restore.operators.LinearOperator.structure`:

- a :class:`~bayes_restore.operators.PixelDiagonal` with unobserved pixels (a mask,
  ``d = 0`` somewhere): the unobserved pixels of ``y`` carry no noise (they are 0), so
  only the observed ones are used, by :func:`masked_sigma`. Its default reads the finest
  scale the observed pixels allow: in every small window (4 x 4 at 50 % missing, larger
  as more pixels go missing) the least-squares coefficient of the checkerboard
  ``(-1)^(i + j)`` next to a quadratic, through the window's observed pixels, divided by
  its noise std (``N(0, sigma^2)`` where the image is smooth; the generalisation of the
  Haar diagonal detail ``(a - b - c + d) / 2`` of :func:`~bayes_restore.hyper.estimate_sigma`'s
  ``"mad"`` to irregular samples); the 10 % quantile over 16 x 16 regions of their mean
  square, divided by the same quantile for white noise seen through the same mask (drawn
  from a fixed seed), is ``sigma^2`` (the idea of ``estimate_sigma``'s ``"blocks"``).
  The older estimator, quadratic residuals on larger blocks (``method="blocks"``), is
  computed too, and the smaller of the two is taken (texture only ever adds to either);
  where too few windows have enough observed pixels, it alone.
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
#: window sides tried by the checkerboard estimator, smallest first (the smallest with enough
#: usable windows is used: 4 at 50 % missing, 5-6 at 80 %)
_WINDOW_SIDES = (4, 5, 6, 7, 8)
#: fewest observed pixels in a window: the quadratic and the checkerboard take 7
_WINDOW_MIN_OBSERVED = 8
#: regions of window positions (side and stride, in windows) whose mean square is one energy,
#: fewest usable windows in a region, and fewest regions for the quantile; a window side is
#: used only if at least this share of the regions has enough usable windows (else a sparse
#: mask would leave a few regions where it happens to be dense: a noisy quantile, read 2x
#: too high on camera at 80 % missing with 4 x 4 windows)
_REGION, _REGION_STRIDE, _REGION_MIN_WINDOWS, _MIN_REGIONS = 16, 8, 16, 16
_MIN_REGION_SHARE = 0.5
#: white-noise draws seen through the mask for the calibration of the quantile
_WINDOW_CALIBRATION_DRAWS = 2
#: about the most windows used per slice (wider window strides beyond), and per chunk
_MAX_WINDOWS, _CHUNK_WINDOWS = 1 << 18, 1 << 15
_MASKED_METHODS = ("auto", "windows", "blocks")


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


def masked_sigma(y: torch.Tensor, observed: torch.Tensor, *, method: str = "auto") -> float:
    """Noise std from the observed pixels only (see the module for the estimators).

    Parameters
    ----------
    y : torch.Tensor
        ``(H, W)``, ``(C, H, W)`` or ``(N, C, H, W)``, real floating point.
    observed : torch.Tensor of bool
        Broadcastable to ``y``: where ``y`` holds a noisy value.
    method : {"auto", "windows", "blocks"}, default "auto"
        ``"windows"``: the checkerboard coefficients of small windows; a ``ValueError``
        where that does not apply (at every window side up to 8, fewer than half of the
        regions of 16 x 16 window positions, or fewer than 16, have 16 usable windows:
        images smaller than about 43 x 43 pixels, or more than ~90 % missing);
        ``"blocks"``: the quadratic residuals of larger blocks; ``"auto"``: the smaller
        of the two where ``"windows"`` applies, else ``"blocks"`` (per 2-D slice).

    Returns
    -------
    float
        The root mean square over the 2-D slices of their estimates.

    Raises
    ------
    ValueError
        Naming the argument: ``observed`` not broadcastable to ``y``, ``y`` not finite,
        an unknown ``method``, ``"windows"`` where it does not apply.
    TypeError
        ``y`` or ``observed`` not a tensor, ``y`` not floating point.

    Notes
    -----
    On a smooth image plus white noise both are unbiased; texture only adds to either
    (it is read as noise), so ``"auto"`` takes the smaller. On a 256 x 256 smooth image
    with noise 0.05, 12 masks: mean error and spread +0.3 % / 1.1 % (``"windows"``),
    +0.5 % / 0.6 % (``"blocks"``) and -0.1 % / 0.8 % (``"auto"``) at 50 % missing;
    +1.4 % / 3.5 %, +0.1 % / 0.9 % and -0.8 % / 1.8 % at 80 %. Textured images read
    high, ``"windows"`` mostly less so: at ``sigma = 0.01`` through a 50 % mask,
    scikit-image's grass read 4.9 times too noisy against 6.2 times by ``"blocks"``
    (the table is on the *Parameter-free restoration with an operator* page of the
    documentation).

    Examples
    --------
    >>> import torch
    >>> g = torch.Generator().manual_seed(1)
    >>> seen = torch.rand(96, 96, generator=g) < 0.5          # 50 % missing
    >>> y = torch.where(seen, 0.1 * torch.randn(96, 96, generator=g), 0.0)
    >>> abs(masked_sigma(y, seen) / 0.1 - 1) < 0.1
    True
    >>> seen = torch.rand(96, 96, generator=g) < 0.2          # 80 % missing
    >>> y = torch.where(seen, 0.1 * torch.randn(96, 96, generator=g), 0.0)
    >>> abs(masked_sigma(y, seen) / 0.1 - 1) < 0.1
    True
    >>> abs(masked_sigma(y, seen, method="blocks") / 0.1 - 1) < 0.1
    True
    """
    if method not in _MASKED_METHODS:
        raise ValueError(f"method must be one of {_MASKED_METHODS}, got {method!r}")
    if not isinstance(y, torch.Tensor) or not y.is_floating_point():
        raise TypeError(f"y must be a floating-point torch.Tensor, got {type(y).__name__}"
                        + (f" of {y.dtype}" if isinstance(y, torch.Tensor) else ""))
    if not isinstance(observed, torch.Tensor):
        raise TypeError(f"observed must be a torch.Tensor of bool, got {type(observed).__name__}")
    if y.dim() < 2:
        raise ValueError(f"y must have at least 2 dimensions (H, W), got shape {tuple(y.shape)}")
    y = y.detach()
    try:
        observed = torch.broadcast_to(observed.to(device=y.device) != 0, y.shape)
    except RuntimeError:
        raise ValueError(
            f"observed (the operator's pixel diagonal) {tuple(observed.shape)} does not fit "
            f"the observation y {tuple(y.shape)}"
        ) from None
    if not bool(torch.isfinite(torch.where(observed, y, 0)).all()):
        raise ValueError("y must be finite at the observed pixels")
    h, w = y.shape[-2:]
    planes = y.reshape(-1, h, w).to(torch.float64)
    masks = observed.reshape(-1, h, w)
    out = torch.stack([_masked_slice(p, m, method) for p, m in zip(planes, masks, strict=True)])
    return rms(out)


def _masked_slice(z: torch.Tensor, m: torch.Tensor, method: str) -> torch.Tensor:
    """The estimate of one 2-D slice ``z`` observed where ``m``, by ``method``."""
    blocks = None if method == "windows" else _masked_blocks(z, m)
    if method == "blocks":
        return blocks
    peak = float(torch.where(m, z, torch.zeros((), dtype=z.dtype)).abs().max())
    if peak == 0.0:
        return torch.zeros((), dtype=torch.float64)
    found = _windows_slice(z / peak, m)
    if found is None:
        if method == "windows":
            raise ValueError(
                f"observed: too few {_WINDOW_SIDES[-1]} x {_WINDOW_SIDES[-1]} or smaller "
                f"windows with {_WINDOW_MIN_OBSERVED} observed pixels for "
                f"method='windows' ({int(m.sum())} of {m.numel()} pixels observed); "
                f"use method='blocks'"
            )
        return blocks
    found = found * peak
    # "auto": texture only ever adds to either reading, so the lower one is the nearer
    return found if blocks is None else torch.minimum(found, blocks.cpu())


def _windows_slice(z: torch.Tensor, m: torch.Tensor) -> torch.Tensor | None:
    """The checkerboard-window estimate of a unit-scale slice, or ``None`` where it does not
    apply (too few usable windows at every side of :data:`_WINDOW_SIDES`)."""
    h, w = z.shape
    g = torch.Generator().manual_seed(0)
    noise = torch.randn((_WINDOW_CALIBRATION_DRAWS, h, w), generator=g, dtype=torch.float64)
    for side in _WINDOW_SIDES:
        if side > min(h, w):
            return None
        step = max(1, math.ceil(math.sqrt((h - side + 1) * (w - side + 1) / _MAX_WINDOWS)))
        stats = _checker_statistics(torch.cat([z[None], noise.to(z.device)]), m, side, step)
        if stats is None:
            continue
        t2, usable = stats  # (1 + draws, nh, nw), (nh, nw)
        if min(usable.shape) < _REGION:
            return None
        count = usable.to(torch.float64).unfold(0, _REGION, _REGION_STRIDE)
        count = count.unfold(1, _REGION, _REGION_STRIDE).sum((-2, -1))
        energy = t2.unfold(1, _REGION, _REGION_STRIDE).unfold(2, _REGION, _REGION_STRIDE)
        energy = energy.sum((-2, -1)) / count.clamp_min(1)
        keep = count >= _REGION_MIN_WINDOWS
        if int(keep.sum()) < max(_MIN_REGIONS, _MIN_REGION_SHARE * keep.numel()):
            continue
        q = torch.quantile(energy[0][keep], _QUANTILE)
        q_null = torch.quantile(energy[1:][:, keep].reshape(-1), _QUANTILE)
        return (q / q_null).clamp_min(0).sqrt().cpu()
    return None


def _checker_statistics(
    z: torch.Tensor, m: torch.Tensor, side: int, step: int
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Squared normalised checkerboard coefficients of the ``side`` x ``side`` windows.

    ``z`` is ``(S, H, W)`` (slices sharing the mask ``m``); per window (stride ``step``)
    with at least :data:`_WINDOW_MIN_OBSERVED` observed pixels and a well-posed fit, the
    least-squares fit of ``1, u, v, u^2, u v, v^2, (-1)^(i + j)`` through the observed
    pixels gives the checkerboard's coefficient ``c`` and its variance factor
    ``[G^{-1}]_{cc}`` (``G`` the window's Gram matrix); ``c^2 / [G^{-1}]_{cc}`` is
    ``sigma^2 chi^2_1`` on white noise. Returns them ``(S, nh, nw)`` (0 where unusable)
    and the usable windows ``(nh, nw)``, or ``None`` when there are none.
    """
    dtype, device = torch.float64, z.device
    r = (torch.arange(side, dtype=dtype, device=device) - (side - 1) / 2) / side
    u = r[:, None].expand(side, side).reshape(-1)
    v = r[None, :].expand(side, side).reshape(-1)
    idx = torch.arange(side, device=device)
    checker = (1 - 2 * ((idx[:, None] + idx[None, :]) % 2)).to(dtype).reshape(-1)
    feats = torch.stack([torch.ones_like(u), u, v, u * u, u * v, v * v, checker])
    nf = feats.shape[0]
    outer = (feats[:, None, :] * feats[None, :, :]).reshape(nf * nf, -1)
    last = torch.zeros(nf, 1, dtype=dtype, device=device)
    last[-1] = 1.0

    def windows(a: torch.Tensor) -> torch.Tensor:  # (..., nh, nw, side * side)
        a = a.unfold(-2, side, step).unfold(-2, side, step)
        return a.reshape(*a.shape[:-2], side * side)

    mf = m.to(dtype)
    wb = windows(mf)  # (nh, nw, P)
    nh, nw = wb.shape[:2]
    wb = wb.reshape(nh * nw, -1)
    zb = windows(torch.where(m, z, torch.zeros((), dtype=dtype, device=device)))
    zb = zb.reshape(z.shape[0], nh * nw, -1)
    t2 = torch.zeros(z.shape[0], nh * nw, dtype=dtype, device=device)
    usable = torch.zeros(nh * nw, dtype=torch.bool, device=device)
    for a in range(0, nh * nw, _CHUNK_WINDOWS):
        sl = slice(a, a + _CHUNK_WINDOWS)
        n_obs = wb[sl].sum(1)
        ok = n_obs >= _WINDOW_MIN_OBSERVED
        if not bool(ok.any()):
            continue
        ws = wb[sl][ok]
        gram = (ws @ outer.T).reshape(-1, nf, nf)
        chol, failed = torch.linalg.cholesky_ex(gram)
        pivots = chol.diagonal(dim1=-2, dim2=-1).square().amin(-1)
        good = (failed == 0) & (pivots > 1e-3 * n_obs[ok])
        if not bool(good.any()):
            continue
        # the last column of G^{-1}: the checkerboard's coefficient as a weighted sum
        col = torch.cholesky_solve(last.expand(int(good.sum()), nf, 1), chol[good]).squeeze(-1)
        rhs = (ws[good] * zb[:, sl][:, ok][:, good]) @ feats.T  # (S, n, nf)
        c = (rhs * col).sum(-1)
        where = torch.arange(a, min(a + _CHUNK_WINDOWS, nh * nw), device=device)[ok][good]
        t2[:, where] = c.square() / col[:, -1]
        usable[where] = True
    if not bool(usable.any()):
        return None
    return t2.reshape(-1, nh, nw), usable.reshape(nh, nw)


def _masked_blocks(z: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """The quadratic-residual estimate of one 2-D slice ``z`` observed where ``m``."""
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
