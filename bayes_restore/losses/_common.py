"""Argument checks and reductions shared by the losses (channels-first images)."""

from __future__ import annotations

from typing import Any

import torch

__all__ = [
    "REDUCTIONS",
    "image_event_dim",
    "channels_first",
    "reduce_items",
    "check_reduction",
    "check_logits",
]

REDUCTIONS = ("none", "sum", "mean")


def image_event_dim(x: torch.Tensor, name: str) -> int:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point torch.Tensor")
    if x.dim() < 2:
        raise ValueError(f"{name} must be (H, W), (C, H, W) or (N, C, H, W), got {tuple(x.shape)}")
    return 2 if x.dim() == 2 else 3


def channels_first(x: torch.Tensor, channel_axis: Any, name: str) -> torch.Tensor:
    """``x`` with its colour axis moved to the channels-first place (-3)."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if channel_axis is None:
        if x.dim() >= 3 and x.shape[-1] in (3, 4) and x.shape[-3] > 4:
            raise ValueError(
                f"{name} has shape {tuple(x.shape)}: channels-last colour (NHWC)? Give "
                f"channel_axis=-1, or channel_axis={x.dim() - 3} if the channels come first"
            )
        return x
    if isinstance(channel_axis, bool) or not isinstance(channel_axis, int):
        raise TypeError(f"channel_axis must be an integer or None, got {channel_axis!r}")
    if x.dim() < 3 or not -x.dim() <= channel_axis < x.dim():
        raise ValueError(
            f"channel_axis={channel_axis} does not fit {name} of shape {tuple(x.shape)}"
        )
    return x.movedim(channel_axis, -3)


def reduce_items(per_item: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "none":
        return per_item
    return per_item.sum() if reduction == "sum" else per_item.mean()


def check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def check_logits(logits: torch.Tensor, levels: int, name: str = "logits") -> None:
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
        raise ValueError(f"{name} must be a floating-point torch.Tensor")
    if logits.dim() < 2 or logits.shape[1] != levels:
        raise ValueError(
            f"{name} must have the {levels} classes in dimension 1 ((N, L, H, W) or "
            f"(N, L, C, H, W)), got shape {tuple(logits.shape)}"
        )
