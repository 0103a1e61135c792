"""Figures: image panels with colour bars for restorations and their uncertainty."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["image_panels"]


def image_panels(
    panels: Mapping[str, np.ndarray],
    *,
    cmaps: Mapping[str, str] | None = None,
    colorbar: bool = True,
    panel_size: float = 3.6,
) -> Any:
    """A row of images with titles and colour bars; returns the matplotlib figure.

    Parameters
    ----------
    panels : mapping of str to 2-D array
        Title -> image. Images whose title has no entry in ``cmaps`` are shown in
        grey on [0, 1]; the others on their own range with the given colour map.
    cmaps : mapping of str to str, optional
        Colour map per title (e.g. ``{"posterior std": "magma"}``).
    colorbar : bool, default True
        Add a colour bar to each panel.
    panel_size : float, default 3.6
        Width of one panel in inches.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np
    >>> fig = image_panels({"a": np.zeros((4, 4)), "std": np.ones((4, 4))}, cmaps={"std": "magma"})
    >>> len(fig.axes)
    4
    """
    import matplotlib.pyplot as plt

    cmaps = dict(cmaps or {})
    fig, axes = plt.subplots(
        1, len(panels), figsize=(panel_size * len(panels), panel_size * 0.95), squeeze=False
    )
    for ax, (title, img) in zip(axes[0], panels.items(), strict=True):
        if title in cmaps:  # its own range, robust to a few extreme pixels (image corners)
            lo, hi = np.percentile(img, [1, 99])
            im = ax.imshow(img, cmap=cmaps[title], vmin=lo, vmax=max(hi, lo + 1e-12))
        else:
            im = ax.imshow(img, cmap="gray", vmin=0.0, vmax=1.0)
        ax.set_title(title, fontsize=10)
        ax.set_axis_off()
        if colorbar:
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    fig.tight_layout()
    return fig
