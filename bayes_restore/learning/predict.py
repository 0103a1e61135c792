"""Inference: a trained :class:`~bayes_restore.learning.SRNet` on a low-resolution image,
as a :class:`~bayes_restore.Posterior` (with per-pixel uncertainty for the cross-entropy heads)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .network import SRNet
from .predictive import (
    NetworkDiagnostics,
    NetworkPosterior,
    categorical_moments,
    categorical_quantile,
    categorical_sample,
)
from .train import torch_threads

__all__ = ["predict"]


def predict(
    model: SRNet,
    lr: Any,
    *,
    probs: Sequence[float] = (0.5, 0.9),
    num_samples: int = 0,
    seed: int = 0,
    rows: int = 64,
    num_threads: int | None = None,
) -> NetworkPosterior:
    """Super-resolve ``lr`` with ``model``: the prediction and, for CS / FCS, its uncertainty.

    A classification head gives each pixel a categorical predictive distribution over
    its class values: the intensities ``k / (L - 1)`` (CS), or ``y_L + c_k`` with the
    high-pass class centres ``c_k`` (FCS; the low-pass output ``y_L`` is a point).
    The result holds its mode (``map``), mean and std
    (:func:`~bayes_restore.learning.categorical_moments`), the equal-tailed intervals of
    each mass in ``probs`` from the CDF (:meth:`NetworkPosterior.interval`) and, when
    ``num_samples > 0``, draws (``samples``, ``(1, num_samples, *shape)``). A regression
    head gives ``map`` only. The heads are ``1x1`` convolutions: they run on ``rows``
    high-resolution rows at a time, so the ``L`` logits of every pixel are never all in
    memory.

    Parameters
    ----------
    model : SRNet
    lr : array or tensor
        ``(h, w)``, ``(C, h, w)`` or ``(N, C, h, w)``; float.
    probs : sequence of float, default (0.5, 0.9)
        Masses of the intervals to compute from the softmax.
    num_samples : int, default 0
        Draws per pixel (classification heads).
    seed : int, default 0
        Seeds the draws.
    rows : int, default 64
        High-resolution rows per chunk of the head.
    num_threads : int, optional
        torch's threads during the call (restored after).

    Returns
    -------
    NetworkPosterior
        ``method="network"``; numpy fields for numpy input; shape ``factor`` times the
        input's.

    Examples
    --------
    >>> import numpy as np
    >>> post = predict(SRNet(2, "cs", levels=32), np.full((4, 4), 0.5))
    >>> post.mean.shape, bool(abs(post.mean - 0.5).max() < 0.05), post.coverage(
    ...     np.full((8, 8), 0.5), 0.9)
    ((8, 8), True, 1.0)
    """
    if not isinstance(model, SRNet):
        raise TypeError(f"model must be an SRNet, got {type(model).__name__}")
    is_numpy = isinstance(lr, np.ndarray)
    x = torch.from_numpy(np.ascontiguousarray(lr)) if is_numpy else lr
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise ValueError("lr must be a floating-point array or tensor")
    if not 2 <= x.dim() <= 4:
        raise ValueError(f"lr must be (h, w), (C, h, w) or (N, C, h, w), got {tuple(x.shape)}")
    probs = tuple(float(p) for p in probs)
    for p in probs:
        if not 0 < p < 1:
            raise ValueError(f"probs must lie in (0, 1), got {p!r}")
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 0:
        raise ValueError(f"num_samples must be an integer >= 0, got {num_samples!r}")
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
        raise ValueError(f"rows must be a positive integer, got {rows!r}")
    ndim = x.dim()
    batch = x.reshape((1,) * (4 - ndim) + tuple(x.shape))
    param = next(model.parameters())
    batch = batch.to(device=param.device, dtype=param.dtype)
    generator = torch.Generator(device=param.device).manual_seed(int(seed))

    fields: dict[str, list] = {}
    with torch.no_grad(), torch_threads(num_threads):
        maps = model.hr_maps(batch)
        for top in range(0, maps.shape[-2], rows):
            chunk = _predict_rows(model, maps[..., top : top + rows, :], probs, num_samples,
                                  generator)
            for name, value in chunk.items():
                fields.setdefault(name, []).append(value)
    out = {name: torch.cat(parts, -2) for name, parts in fields.items()}

    def finish(t: torch.Tensor) -> Any:
        t = t.reshape(t.shape[: t.dim() - 4] + t.shape[t.dim() - ndim :]).to(x.dtype).to(x.device)
        return t.numpy() if is_numpy else t

    quantiles = {p: (finish(out.pop(f"lo{p}")), finish(out.pop(f"hi{p}")))
                 for p in probs if f"lo{p}" in out}
    images = {name: finish(v) for name, v in out.items()}
    if "samples" in images:
        images["samples"] = images["samples"][None]
    classification = model.head in ("cs", "fcs")
    diagnostics = NetworkDiagnostics(
        head=model.head, factor=model.factor, levels=model.levels if classification else None,
        probs=tuple(quantiles), observed=lr,
    )
    return NetworkPosterior(method="network", quantiles=quantiles, diagnostics=diagnostics,
                            **images)


def _predict_rows(model: SRNet, maps: torch.Tensor, probs: tuple[float, ...],
                  num_samples: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    out = model.head_forward(maps)
    if model.head in ("l1", "l2"):
        return {"map": out}
    low, logits = (0, out) if model.head == "cs" else out
    p = torch.softmax(model.classes_last(logits), -1)  # (N, H, W, C, L): contiguous classes
    values = model.class_values(p.dtype, p.device)

    def image(t: torch.Tensor) -> torch.Tensor:  # (..., N, H, W, C) -> (..., N, C, H, W)
        return low + t.movedim(-1, -3)

    mean, std = categorical_moments(p, values, dim=-1)
    result = {"map": image(values[p.argmax(-1)]), "mean": image(mean), "std": std.movedim(-1, -3)}
    for prob in probs:
        alpha = (1 - prob) / 2
        result[f"lo{prob}"] = image(categorical_quantile(p, values, alpha, dim=-1))
        result[f"hi{prob}"] = image(categorical_quantile(p, values, 1 - alpha, dim=-1))
    if num_samples:
        draws = categorical_sample(p, values, num_samples, dim=-1, generator=generator)
        result["samples"] = image(draws)
    return result
