"""The variational energy ``E(x) = |y - A x|^2 + lambda R(x)`` and its link to the Bayesian model.

MAP in the model ``x ~ GradientPrior(b, beta)``, ``y ~ N(A x, sigma^2 I)`` minimises::

    -log p(x | y) = |y - A x|^2 / (2 sigma^2) + phi_beta(x) / (beta b^beta) + const
                  = E(x) / (2 sigma^2) + const,   lambda = 2 sigma^2 / (beta b^beta),

so ``lambda = 2 sigma^2 / b`` for TV and ``sigma^2 / b^2`` for the Gaussian-gradient
prior. scikit-image's ``denoise_tv_chambolle(weight=w)`` minimises
``0.5 |x - y|^2 + w TV(x)``, i.e. ``w = lambda / 2 = sigma^2 / b``.
"""

from __future__ import annotations

import torch

from ._validation import check_positive
from .differences import gradient_energy
from .operators import LinearOperator, as_operator

__all__ = [
    "energy",
    "weight_from_scale",
    "scale_from_weight",
    "to_skimage_weight",
    "from_skimage_weight",
]

Number = float | torch.Tensor


def energy(
    x: torch.Tensor,
    y: torch.Tensor,
    weight: Number,
    *,
    beta: float = 1.0,
    isotropic: bool = True,
    operator: LinearOperator | None = None,
) -> torch.Tensor:
    r"""The energy of classical variational restoration.

    .. math::

        E(x) = \|y - A x\|^2 + \lambda \sum_{pixels} |\nabla x|^\beta

    Parameters
    ----------
    x : torch.Tensor
        Image(s), shape ``(..., H, W)``; each 2-D slice (channel) has its own gradient.
    y : torch.Tensor
        Observation(s), shape ``(..., H', W')`` = ``A x``'s shape.
    weight : float or torch.Tensor
        ``lambda >= 0``; a tensor broadcasts against the leading dimensions ``x.shape[:-2]``.
    beta : float, default 1.0
        Order of the regulariser (1: TV, 2: squared gradient).
    isotropic : bool, default True
        Isotropic or anisotropic gradient norm.
    operator : LinearOperator, optional
        ``A``; the identity when ``None``.

    Returns
    -------
    torch.Tensor
        The energy summed over all images (a 0-dim tensor).

    Examples
    --------
    >>> import torch
    >>> y = torch.tensor([[0., 1.], [0., 1.]])
    >>> float(energy(y, y, 0.5, beta=1.0))
    1.0
    """
    op = as_operator(operator)
    weight = torch.as_tensor(weight, dtype=x.dtype, device=x.device)
    if bool((weight < 0).any()) or not bool(torch.isfinite(weight).all()):
        raise ValueError("weight must be finite and >= 0")
    data = (y - op.forward(x)).square().sum((-2, -1))
    reg = gradient_energy(x, beta, isotropic=isotropic, event_dim=2)
    return (data + weight * reg).sum()


def weight_from_scale(sigma: Number, scale: Number, beta: float = 1.0) -> Number:
    """``lambda = 2 sigma^2 / (beta b^beta)``: the energy weight of the prior scale ``b``.

    Examples
    --------
    >>> round(weight_from_scale(0.1, 0.05), 12)  # TV: 2 sigma^2 / b
    0.4
    """
    check_positive(sigma, "sigma")
    check_positive(scale, "scale")
    _check_beta(beta)
    return _in_range(lambda: 2 * sigma**2 / (beta * scale**beta), "weight", beta)


def scale_from_weight(sigma: Number, weight: Number, beta: float = 1.0) -> Number:
    """``b = (2 sigma^2 / (beta lambda))^(1 / beta)``: the inverse of :func:`weight_from_scale`.

    Examples
    --------
    >>> round(scale_from_weight(0.1, 0.4), 12)
    0.05
    """
    check_positive(sigma, "sigma")
    check_positive(weight, "weight")
    _check_beta(beta)
    return _in_range(lambda: (2 * sigma**2 / (beta * weight)) ** (1.0 / beta), "scale", beta)


def _in_range(compute, what: str, beta: float) -> Number:
    """``compute()``, or a ``ValueError`` when it leaves the float range (small ``beta``)."""
    try:
        out = compute()
    except (OverflowError, ZeroDivisionError):
        out = float("inf")
    t = torch.as_tensor(out, dtype=torch.float64) if not isinstance(out, torch.Tensor) else out
    if not bool(torch.isfinite(t).all()) or not bool((t > 0).all()):
        raise ValueError(
            f"the {what} implied by sigma, the weight or scale and beta={beta!r} is out of the "
            "floating-point range; check sigma and the weight, or give scale= directly"
        )
    return out


def to_skimage_weight(weight: Number) -> Number:
    """scikit-image's ``denoise_tv_chambolle`` weight for the energy weight ``lambda`` (TV).

    scikit-image minimises ``0.5 |x - y|^2 + w TV(x)`` = ``E(x) / 2``: ``w = lambda / 2``.

    Examples
    --------
    >>> round(to_skimage_weight(weight_from_scale(0.1, 0.125)), 12)  # sigma^2 / b
    0.08
    """
    check_positive(weight, "weight")
    return weight / 2


def from_skimage_weight(skimage_weight: Number) -> Number:
    """The energy weight ``lambda = 2 w`` for scikit-image's TV weight ``w``.

    Examples
    --------
    >>> from_skimage_weight(0.08)
    0.16
    """
    check_positive(skimage_weight, "skimage_weight")
    return 2 * skimage_weight


def _check_beta(beta: float) -> None:
    if not (isinstance(beta, (int, float)) and beta > 0):
        raise ValueError(f"beta must be a positive number, got {beta!r}")
