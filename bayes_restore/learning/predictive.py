"""The predictive distribution of a classification network: moments, quantiles and draws
of a per-pixel categorical distribution over intensity values, and its ``Posterior``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from bayes_restore.posterior import Diagnostics, Posterior

__all__ = [
    "categorical_moments",
    "categorical_quantile",
    "categorical_sample",
    "NetworkDiagnostics",
    "NetworkPosterior",
]


def _check(probs: torch.Tensor, values: torch.Tensor, dim: int) -> int:
    if not isinstance(probs, torch.Tensor) or not probs.is_floating_point():
        raise ValueError("probs must be a floating-point torch.Tensor")
    if not isinstance(values, torch.Tensor) or values.dim() != 1:
        raise ValueError("values must be a 1-D torch.Tensor of the class values")
    dim = dim % probs.dim()
    if probs.shape[dim] != values.numel():
        raise ValueError(
            f"probs has {probs.shape[dim]} classes in dimension {dim}, values has "
            f"{values.numel()}"
        )
    return dim


def _along(values: torch.Tensor, probs: torch.Tensor, dim: int) -> torch.Tensor:
    shape = [1] * probs.dim()
    shape[dim] = values.numel()
    return values.to(probs).reshape(shape)


def categorical_moments(
    probs: torch.Tensor, values: torch.Tensor, *, dim: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Mean and standard deviation of a categorical distribution over ``values``.

    ``mean = sum_k p_k v_k`` and ``std = sqrt(sum_k p_k (v_k - mean)^2)``, per entry of
    ``probs`` along ``dim`` (the class dimension).

    Parameters
    ----------
    probs : torch.Tensor
        Class probabilities (each slice along ``dim`` sums to 1), e.g. a softmax.
    values : torch.Tensor
        ``(L,)``: the value of each class (``k / (L - 1)`` for intensity classes).
    dim : int, default 1
        The class dimension.

    Returns
    -------
    mean, std : torch.Tensor
        ``probs``'s shape without ``dim``.

    Examples
    --------
    >>> import torch
    >>> p = torch.tensor([[0.5, 0.0, 0.5]])  # values 0 and 1, each with probability 1/2
    >>> categorical_moments(p, torch.tensor([0.0, 0.5, 1.0]))
    (tensor([0.5000]), tensor([0.5000]))
    """
    dim = _check(probs, values, dim)
    v = _along(values, probs, dim)
    mean = (probs * v).sum(dim, keepdim=True)
    var = (probs * (v - mean).square()).sum(dim)
    return mean.squeeze(dim), var.clamp_min(0).sqrt()


def categorical_quantile(
    probs: torch.Tensor, values: torch.Tensor, q: float, *, dim: int = 1
) -> torch.Tensor:
    """The ``q``-quantile of a categorical distribution over sorted ``values``.

    The smallest class value whose cumulative probability reaches ``q``
    (``min {v_k : P(V <= v_k) >= q}``, the generalised inverse of the CDF).

    Parameters
    ----------
    probs : torch.Tensor
        Class probabilities along ``dim``.
    values : torch.Tensor
        ``(L,)`` class values, ascending.
    q : float
        In ``[0, 1]``.
    dim : int, default 1

    Returns
    -------
    torch.Tensor
        ``probs``'s shape without ``dim``.

    Examples
    --------
    >>> import torch
    >>> p = torch.tensor([[0.1, 0.2, 0.3, 0.4]])
    >>> v = torch.tensor([0.0, 1.0, 2.0, 3.0])
    >>> [float(categorical_quantile(p, v, q)) for q in (0.05, 0.1, 0.35, 0.95)]
    [0.0, 0.0, 2.0, 3.0]
    """
    dim = _check(probs, values, dim)
    if not 0 <= q <= 1:
        raise ValueError(f"q must be in [0, 1], got {q!r}")
    cdf = probs.cumsum(dim)
    # tolerance of the float sum: a cdf of 0.3 that sums to 0.29999997 still reaches 0.3
    eps = 8 * torch.finfo(probs.dtype).eps
    index = (cdf < q - eps).sum(dim).clamp_max(values.numel() - 1)
    return values.to(probs)[index]


def categorical_sample(
    probs: torch.Tensor,
    values: torch.Tensor,
    num_samples: int,
    *,
    dim: int = 1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Independent draws of each entry's categorical distribution (inverse CDF).

    Parameters
    ----------
    probs : torch.Tensor
        Class probabilities along ``dim``.
    values : torch.Tensor
        ``(L,)`` class values.
    num_samples : int
        Draws per entry.
    dim : int, default 1
    generator : torch.Generator, optional
        Source of the uniforms (on ``probs``'s device).

    Returns
    -------
    torch.Tensor
        ``(num_samples, *shape)`` with ``shape`` that of ``probs`` without ``dim``.

    Examples
    --------
    >>> import torch
    >>> p = torch.tensor([[0.0, 1.0, 0.0]])
    >>> categorical_sample(p, torch.tensor([0.0, 0.5, 1.0]), 2).tolist()
    [[0.5], [0.5]]
    """
    dim = _check(probs, values, dim)
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
    cdf = probs.movedim(dim, -1).cumsum(-1).contiguous()
    cdf = cdf / cdf[..., -1:]  # exactly 1 at the end: every uniform finds a class
    u = torch.rand(
        cdf.shape[:-1] + (num_samples,), generator=generator, dtype=cdf.dtype, device=cdf.device
    )
    index = torch.searchsorted(cdf, u, right=True).clamp_max(values.numel() - 1)
    return values.to(probs)[index].movedim(-1, 0)


@dataclass(frozen=True, kw_only=True)
class NetworkDiagnostics(Diagnostics):
    """:func:`~bayes_restore.learning.predict`: which network made the prediction.

    ``head`` is the loss the network was trained with (``"l1"``, ``"l2"``, ``"cs"``,
    ``"fcs"``), ``factor`` its upscaling factor, ``levels`` its number of classes (the
    classification heads), ``probs`` the masses whose intervals were computed from the
    softmax.
    """

    head: str = ""
    factor: int | None = None
    levels: int | None = None
    probs: tuple[float, ...] = ()


@dataclass(frozen=True)
class NetworkPosterior(Posterior):
    """A network's predictive distribution as a :class:`~bayes_restore.Posterior`.

    For a classification head (cross-entropy over intensity classes) ``map`` is the most
    probable value of each pixel, ``mean`` and ``std`` the moments of its categorical
    predictive distribution, and ``quantiles`` maps each mass ``prob`` computed at
    prediction time to the equal-tailed interval ``(lower, upper)`` read off the
    softmax's CDF: :meth:`interval` returns those exactly, and falls back to the draws
    (``samples``) for another mass. A regression head (L1 / L2) gives ``map`` only (the
    location of its Laplace / Gaussian likelihood, the mode of the predictive density).

    Examples
    --------
    >>> import numpy as np
    >>> post = NetworkPosterior(method="network", mean=np.zeros((2, 2)),
    ...                         quantiles={0.9: (np.zeros((2, 2)) - 1, np.ones((2, 2)))})
    >>> post.interval(0.9)[1].sum(), post.coverage(np.full((2, 2), 0.5), 0.9)
    (np.float64(4.0), 1.0)
    """

    quantiles: Mapping[float, tuple[Any, Any]] = field(default_factory=dict)

    def interval(self, prob: float = 0.9) -> tuple[Any, Any]:
        """Equal-tailed ``prob`` interval: from the softmax when ``prob`` was computed at
        prediction time (``predict(..., probs=...)``), else from the draws."""
        if not 0 < prob < 1:
            raise ValueError(f"prob must be in (0, 1), got {prob!r}")
        for key, bounds in self.quantiles.items():
            if abs(float(key) - prob) < 1e-12:
                return bounds
        if self.samples is None and self.quantiles:
            raise ValueError(
                f"no {prob} interval: predict(..., probs=...) computed "
                f"{sorted(self.quantiles)}; add {prob} there, or ask for num_samples"
            )
        return super().interval(prob)

    def map_images(self, fn: Callable[[torch.Tensor], Any]) -> NetworkPosterior:
        """As :meth:`Posterior.map_images`, the interval bounds included."""
        new = super().map_images(fn)
        conv = lambda v: fn(torch.from_numpy(v) if not torch.is_tensor(v) else v)  # noqa: E731
        quantiles = {k: (conv(lo), conv(hi)) for k, (lo, hi) in self.quantiles.items()}
        return dataclasses.replace(new, quantiles=quantiles)
