"""Argument checks shared by the operator modules."""

from __future__ import annotations

__all__ = ["check_window"]


def check_window(rows, cols) -> None:
    """``TypeError`` unless ``rows`` and ``cols`` are slices (a window of the image)."""
    if not (isinstance(rows, slice) and isinstance(cols, slice)):
        raise TypeError(f"rows and cols must be slices, got {rows!r}, {cols!r}")
