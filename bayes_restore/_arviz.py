"""The one place that builds ArviZ containers (ArviZ 0.x `InferenceData`; 1.x `DataTree`)."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

#: variable names in the ArviZ groups
POSTERIOR_VAR = "image"
OBSERVED_VAR = "observed"


def import_arviz() -> Any:
    """Import ArviZ without its once-a-day notice about the 1.x refactor (not actionable here)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"\s*ArviZ is undergoing", category=FutureWarning)
        import arviz

    return arviz


def image_dims(ndim: int) -> list[str]:
    """Dimension names of one image of ``ndim`` dimensions (after ``chain, draw``)."""
    names = {2: ["y", "x"], 3: ["channel", "y", "x"], 4: ["batch", "channel", "y", "x"]}
    if ndim not in names:
        raise ValueError(f"images must have 2 to 4 dimensions, got {ndim}")
    return names[ndim]


def to_inference_data(
    samples: np.ndarray,
    *,
    observed: np.ndarray | None = None,
    sample_stats: Mapping[str, np.ndarray] | None = None,
    attrs: Mapping[str, Any] | None = None,
    extra: Mapping[str, np.ndarray] | None = None,
    mcse: Mapping[str, np.ndarray] | None = None,
) -> Any:
    """ArviZ's container for image draws of shape ``(chain, draw, *image)``.

    On ArviZ 0.x this is an ``InferenceData`` with groups ``posterior`` (variable
    ``"image"``, dims ``(chain, draw, [batch,] [channel,] y, x)``), ``observed_data``
    (variable ``"observed"``; its dims are ``obs_y, obs_x`` when the operator changes
    the grid) and ``sample_stats``. (The Pyro site names ``x`` and ``y`` cannot be
    variable names here: xarray would take them for the coordinates ``x`` and ``y``.)
    On ArviZ 1.x (``xarray.DataTree``) the same groups are built by ``az.from_dict``,
    which both versions provide. ``extra`` adds posterior variables of shape
    ``(chain, draw, ...)`` with the same chains and draws (e.g. ``{"scale": draws}``);
    ArviZ names their further dimensions. ``mcse`` adds a group ``"mcse"`` of per-pixel
    maps (the Monte Carlo standard errors ``"mean"`` and ``"std"``), dims those of one image.
    """
    az = import_arviz()
    samples = np.asarray(samples)
    dims = {POSTERIOR_VAR: image_dims(samples.ndim - 2)}
    groups: dict[str, Any] = {"posterior": {POSTERIOR_VAR: samples}}
    for name, value in (extra or {}).items():
        value = np.asarray(value)
        if name in (POSTERIOR_VAR, OBSERVED_VAR) or value.shape[:2] != samples.shape[:2]:
            raise ValueError(f"extra variable {name!r} of shape {value.shape} clashes with the "
                             f"image draws {samples.shape[:2]} (chain, draw) or their name")
        groups["posterior"][name] = value
    if observed is not None:
        observed = np.asarray(observed)
        groups["observed_data"] = {OBSERVED_VAR: observed}
        same_grid = observed.shape == samples.shape[2:]
        dims[OBSERVED_VAR] = [d if same_grid else f"obs_{d}" for d in image_dims(observed.ndim)]
    if sample_stats:
        groups["sample_stats"] = {k: np.asarray(v) for k, v in sample_stats.items()}
    kwargs = dict(dims=dims, attrs=dict(attrs or {}))
    maps = None
    if mcse:
        import xarray as xr

        img_dims = image_dims(samples.ndim - 2)
        maps = xr.Dataset({k: (img_dims, np.asarray(v)) for k, v in mcse.items()})
    if int(az.__version__.split(".")[0]) >= 1:  # pragma: no cover - ArviZ 1.x, Python >= 3.12
        tree = az.from_dict(groups, **kwargs)
        if maps is not None:
            tree["mcse"] = xr.DataTree(maps)
        return tree
    idata = az.from_dict(**groups, **kwargs)
    if "posterior" not in idata.groups():  # ArviZ drops a group whose names clash silently
        raise RuntimeError(f"ArviZ did not build the posterior group from dims {dims}")
    if maps is not None:
        idata.add_groups(mcse=maps)
    return idata
