"""The record every TV-weight scheme returns: :class:`ScaleEstimate`, the weight and its cost."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["ScaleEstimate", "make_estimate"]


@dataclass(frozen=True)
class ScaleEstimate:
    """The TV weight a scheme chose, and what it cost.

    Attributes
    ----------
    method : str
        ``"sure"``, ``"sapg"`` or ``"hierarchical"``.
    sigma : float
        Noise level used (given or estimated).
    weight : float
        The energy weight ``lambda = 2 sigma^2 / b`` of ``|y - x|^2 + lambda TV(x)``
        (:func:`~bayes_restore.denoise`'s ``weight``).
    skimage_weight : float
        ``w = lambda / 2 = sigma^2 / b``: scikit-image's ``denoise_tv_chambolle`` weight.
    scale : float
        The prior scale ``b`` (``theta = 1 / b``).
    time : float
        Wall time in seconds.
    num_solves : int
        TV-MAP solves (SURE) or Langevin steps (SAPG, hierarchical).
    trace : dict
        What the scheme looked at: SURE's ``weights`` (skimage units) and ``risks``
        (per-pixel estimated MSE); the ``theta`` iterates or draws of the samplers.
    x : torch.Tensor or None
        SURE's MAP at the chosen weight (at the search's tolerance), else ``None``.
    """

    method: str
    sigma: float
    weight: float
    skimage_weight: float
    scale: float
    time: float
    num_solves: int
    trace: dict = field(default_factory=dict)
    x: torch.Tensor | None = None

    def as_dict(self) -> dict[str, Any]:
        """The scalar fields (for ``info`` dicts and JSON)."""
        return {
            "method": self.method, "sigma": self.sigma, "weight": self.weight,
            "skimage_weight": self.skimage_weight, "scale": self.scale, "time": self.time,
            "num_solves": self.num_solves,
        }


def make_estimate(method, sigma, w, start, num_solves, trace, x=None) -> ScaleEstimate:
    """The :class:`ScaleEstimate` of scikit-image weight ``w``, timed from ``start``."""
    return ScaleEstimate(
        method=method, sigma=sigma, weight=2 * w, skimage_weight=w, scale=sigma**2 / w,
        time=time.perf_counter() - start, num_solves=num_solves, trace=trace, x=x,
    )
