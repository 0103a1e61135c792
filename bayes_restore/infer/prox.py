"""Warm-startable proximal operator of total variation (ROF) by fast dual projected gradient."""

from __future__ import annotations

import math

import torch

from bayes_restore.differences import div, grad

__all__ = ["tv_prox", "tv_prox_dual"]


def tv_prox(
    v: torch.Tensor,
    weight: float | torch.Tensor,
    *,
    isotropic: bool = True,
    dual: torch.Tensor | None = None,
    num_iter: int = 10,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Proximal operator of ``w TV``: ``argmin_x 0.5 |x - v|^2 + w TV(x)``, warm-startable.

    Fast gradient projection on the dual (Beck & Teboulle 2009, FGP): with the
    unit-ball dual field ``p`` (``|p_ij| <= 1``), ``x = v + w div p`` and

    .. math::

        p \leftarrow \Pi_{|p| \le 1}\Big(p + \frac{1}{8 w} \nabla (v + w \operatorname{div} p)\Big)

    with Nesterov momentum. A fixed, small number of iterations started from a
    previous ``p`` (the dual of a nearby point) is the intended use: inside a
    Langevin sampler consecutive points are close, so a few iterations suffice.
    Note that ``(v - x) / w = -div p`` is a subgradient of ``TV`` at ``x``.

    Parameters
    ----------
    v : torch.Tensor
        Image(s) of shape ``(..., H, W)``; leading dimensions (batch, channels,
        chains) are independent problems.
    weight : float or torch.Tensor
        ``w > 0``, the step of the proximal operator ``prox_{w TV}`` (not an energy
        weight: the point is the minimiser of ``|x - v|^2 + lambda TV(x)`` with ``lambda =
        2 w``, :func:`~bayes_restore.infer.tv_denoise_pdhg`'s ``weight``); a tensor
        broadcasts against ``v`` (e.g. ``batch + (1, 1)``).
    isotropic : bool, default True
        Isotropic TV (Euclidean norm over the two differences) or anisotropic
        (``|dx| + |dy|``).
    dual : torch.Tensor, optional
        Starting dual field, shape ``(..., 2, H, W)`` with ``|p| <= 1``; zero when
        ``None``.
    num_iter : int, default 10
        Number of FGP iterations (at least 1).

    Returns
    -------
    x : torch.Tensor
        The (approximate) proximal point, same shape as ``v``.
    dual : torch.Tensor
        The dual field ``p`` reached; pass it back as ``dual=`` for the next call.

    Examples
    --------
    >>> import torch
    >>> from bayes_restore.infer.tv import tv_denoise_pdhg
    >>> v = torch.rand(16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    >>> x, p = tv_prox(v, 0.05, num_iter=300)
    >>> x_ref, _ = tv_denoise_pdhg(v, 2 * 0.05, tol=1e-8)  # its weight is lambda = 2 w
    >>> bool((x - x_ref).abs().max() < 1e-3)
    True
    """
    if num_iter < 1:
        raise ValueError(f"num_iter must be >= 1, got {num_iter!r}")
    w = torch.as_tensor(weight, dtype=v.dtype, device=v.device)
    if bool((w <= 0).any()):
        raise ValueError("weight must be > 0")
    p = tv_prox_dual(v, w, isotropic=isotropic, dual=dual, num_iter=num_iter)
    return v + w * div(p), p


def tv_prox_dual(
    v: torch.Tensor,
    weight: torch.Tensor,
    *,
    isotropic: bool = True,
    dual: torch.Tensor | None = None,
    num_iter: int = 10,
    backend: str = "auto",
) -> torch.Tensor:
    """The dual field of :func:`tv_prox` only, without input checks (for inner loops).

    ``weight`` must be a positive tensor broadcasting against ``v``. The proximal
    point is ``v + weight * div(p)``. ``backend="auto"``: on the CPU (float32/float64, one
    weight per image, images at least 2 x 2) the iterations run in fused numba kernels, all
    of them in one pass over memory (the same arithmetic, equal to rounding); elsewhere, or
    with ``backend="torch"``, in eager torch.
    """
    if backend != "torch":
        fused = _fused_dual(v, weight, isotropic, dual, num_iter)
        if fused is not None:
            return fused
    # the dual lives on the grad layout (..., 2, H, W): a per-image weight gains a dim there
    w_p = weight.unsqueeze(-3) if weight.dim() >= 2 else weight
    step = 1.0 / (8.0 * w_p)
    if dual is None:
        p = v.new_zeros(v.shape[:-2] + (2,) + v.shape[-2:])
    else:
        p = dual
    r = p
    t = 1.0
    for _ in range(num_iter):
        x = torch.addcmul(v, weight, div(r))
        p_new = torch.addcmul(r, grad(x), step)
        _project_unit(p_new, isotropic)
        t_new = (1.0 + math.sqrt(1.0 + 4.0 * t * t)) / 2.0
        momentum = (t - 1.0) / t_new
        r = p_new if momentum == 0.0 else torch.lerp(p_new, p, -momentum)
        p, t = p_new, t_new
    return p


def _project_unit(p: torch.Tensor, isotropic: bool) -> None:
    """In place: project each pixel's pair of components on the unit ball (or clamp)."""
    if isotropic:
        norm = torch.sqrt(p[..., 0, :, :].square() + p[..., 1, :, :].square())
        p.div_(norm.clamp_min_(1.0).unsqueeze(-3))
    else:
        p.clamp_(-1.0, 1.0)


def _fused_dual(v, weight, isotropic, dual, num_iter) -> torch.Tensor | None:
    """:func:`tv_prox_dual` in the fused kernels, or None where they do not run it."""
    h, w = v.shape[-2:] if v.dim() >= 2 else (0, 0)
    lead = v.shape[:-2]
    if (v.device.type != "cpu" or v.dtype not in (torch.float32, torch.float64) or h < 2
            or w < 2 or v.requires_grad or not isinstance(weight, torch.Tensor)
            or weight.requires_grad or (weight.dim() >= 2 and weight.shape[-2:] != (1, 1))
            or (dual is not None and (dual.shape != lead + (2, h, w) or dual.dtype != v.dtype
                                      or dual.requires_grad))):
        return None
    try:
        wt = torch.broadcast_to(weight.detach().to(v.dtype), lead + (1, 1))
        from . import _langevin_numba as kernels
    except (RuntimeError, ImportError):  # a weight not per image; numba missing
        return None
    if kernels.jit_disabled():
        return None
    n = v.numel() // (h * w)
    p = v.new_zeros(lead + (2, h, w)) if dual is None else dual.detach().contiguous().clone()
    wt = wt.reshape(-1).contiguous()
    mom = kernels.momenta(num_iter)
    kernels.prox_dual(v.detach().contiguous().view(n, h, w).numpy(), p.view(n, 2, h, w).numpy(),
                      wt.numpy(), (1.0 / (8.0 * wt)).numpy(),
                      torch.tensor(mom, dtype=v.dtype).numpy(), isotropic,
                      torch.get_num_threads())
    return p
