"""Figures: where the restored image can be trusted (panels, calibration, pixel posteriors)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = [
    "image_panels",
    "uncertainty_panel",
    "error_vs_std",
    "pixel_histograms",
    "calibration_curve",
]


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


def _np(value: Any) -> np.ndarray:
    if value is None:
        return None
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _image_2d(value: Any, index: tuple[int, ...]) -> np.ndarray:
    """One 2-D slice of an image field: ``index`` picks the leading (batch, channel) entries."""
    arr = _np(value)
    lead = arr.ndim - 2
    return arr[tuple(index[len(index) - lead :])] if lead > 0 else arr


def uncertainty_panel(
    posterior: Any,
    noisy: Any = None,
    *,
    prob: float = 0.9,
    index: tuple[int, ...] = (0, 0),
) -> Any:
    """Noisy / MAP or mean / posterior std / width of the ``prob`` credible interval.

    Parameters
    ----------
    posterior : Posterior
        An engine's result with ``std`` (exact, VI or MCMC).
    noisy : array, optional
        The observation, shown first.
    prob : float, default 0.9
        Mass of the interval whose width is shown.
    index : tuple of int, default (0, 0)
        Which batch/channel slice to show for images with leading dimensions.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np
    >>> from bayes_restore import restore
    >>> post = restore(np.random.default_rng(0).random((16, 16)), "gaussian", sigma=0.1,
    ...                scale=0.1, method="exact")
    >>> len(uncertainty_panel(post).axes)
    6
    """
    if posterior.std is None:
        raise ValueError(
            f"posterior of method {posterior.method!r} has no std: use method='exact', "
            "'vi' or 'mcmc'"
        )
    panels: dict[str, np.ndarray] = {}
    if noisy is not None:
        panels["observed"] = _image_2d(noisy, index)
    point_name = "posterior mean" if posterior.mean is not None else "MAP"
    panels[point_name] = _image_2d(posterior.point, index)
    lo, hi = posterior.interval(prob)
    std_name, width_name = "posterior std", f"{100 * prob:g} % interval width"
    panels[std_name] = _image_2d(posterior.std, index)
    panels[width_name] = _image_2d(hi, index) - _image_2d(lo, index)
    return image_panels(panels, cmaps={std_name: "magma", width_name: "viridis"})


def error_vs_std(posterior: Any, truth: Any, *, index: tuple[int, ...] = (0, 0)) -> Any:
    """When the truth is known: ``|error|`` against posterior std, and the z-score map.

    A calibrated posterior has errors of the size of its std: about 68 % of the
    points below the line ``|error| = std`` (Gaussian marginals), z-scores mostly
    within +-2.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np
    >>> from bayes_restore import restore
    >>> truth = np.zeros((16, 16))
    >>> post = restore(truth + 0.1, "gaussian", sigma=0.1, scale=0.1, method="exact")
    >>> len(error_vs_std(post, truth).axes)
    3
    """
    import matplotlib.pyplot as plt

    if posterior.std is None:
        raise ValueError("error_vs_std needs a posterior with std")
    point = _image_2d(posterior.point, index)
    std = _image_2d(posterior.std, index)
    err = point - _image_2d(truth, index)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 4))
    ax1.hexbin(std.ravel(), np.abs(err).ravel(), gridsize=40, bins="log", cmap="Greys")
    top = float(max(std.max(), np.abs(err).max()))
    ax1.plot([0, top], [0, top], color="C3", lw=1, label="|error| = std")
    inside = float(np.mean(np.abs(err) <= std))
    ax1.set(xlabel="posterior std", ylabel="|error|",
            title=f"{100 * inside:.0f} % of pixels within 1 std")
    ax1.legend(loc="upper left")
    z = err / np.maximum(std, np.finfo(float).tiny)
    im = ax2.imshow(z, cmap="RdBu_r", vmin=-3, vmax=3)
    ax2.set_title("z-score (error / std)")
    ax2.set_axis_off()
    fig.colorbar(im, ax=ax2, fraction=0.046, pad=0.02)
    fig.tight_layout()
    return fig


def pixel_histograms(posterior: Any, pixels: list[tuple[int, ...]], *, bins: int = 40) -> Any:
    """Histograms of the posterior draws at chosen pixels (full index into the image).

    Examples
    --------
    >>> import numpy as np
    >>> from bayes_restore import restore
    >>> post = restore(np.zeros((8, 8)), "gaussian", sigma=0.1, scale=0.1, method="exact",
    ...                num_samples=100)
    >>> len(pixel_histograms(post, [(0, 0), (4, 4)]).axes)
    2
    """
    import matplotlib.pyplot as plt

    if posterior.samples is None:
        raise ValueError("pixel_histograms needs posterior draws (samples)")
    draws = _np(posterior.samples)
    flat = draws.reshape((-1,) + draws.shape[2:])
    fig, axes = plt.subplots(1, len(pixels), figsize=(3.2 * len(pixels), 2.8), squeeze=False)
    for ax, pix in zip(axes[0], pixels, strict=True):
        values = flat[(slice(None),) + tuple(pix)]
        ax.hist(values, bins=bins, color="C0", alpha=0.8, density=True)
        if posterior.map is not None:
            ax.axvline(float(_np(posterior.map)[tuple(pix)]), color="C3", lw=1, label="MAP")
            ax.legend(fontsize=8)
        ax.set_title(f"pixel {tuple(pix)}", fontsize=10)
    fig.tight_layout()
    return fig


def calibration_curve(
    posteriors: Mapping[str, Any], truth: Any, *, probs: Any = None
) -> Any:
    """Nominal against empirical coverage of the credible intervals (the diagonal is calibrated).

    Parameters
    ----------
    posteriors : mapping of str to Posterior
        Engine name -> its result on the same data.
    truth : array
        The true image(s).
    probs : sequence of float, optional
        Nominal masses (default 0.1 to 0.95).

    Examples
    --------
    >>> import numpy as np
    >>> from bayes_restore import restore
    >>> truth = np.zeros((16, 16))
    >>> post = restore(truth + 0.1, "gaussian", sigma=0.1, scale=0.1, method="exact")
    >>> len(calibration_curve({"exact": post}, truth).axes)
    1
    """
    import matplotlib.pyplot as plt

    probs = np.asarray([0.1, 0.25, 0.5, 0.75, 0.9, 0.95] if probs is None else probs)
    fig, ax = plt.subplots(figsize=(4.2, 4))
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="calibrated")
    for name, post in posteriors.items():
        cover = [post.coverage(truth, float(p)) for p in probs]
        ax.plot(probs, cover, marker="o", label=name)
    ax.set(xlabel="nominal coverage", ylabel="empirical coverage", xlim=(0, 1), ylim=(0, 1),
           title="calibration")
    ax.legend(loc="upper left", fontsize=9)
    fig.tight_layout()
    return fig
