"""Inference engines: MAP (fast exact solvers and the generic Pyro path)."""

from .gaussian import dct_map, gaussian_log_evidence, gaussian_posterior_std
from .generic import generic_map
from .map import map_estimate
from .tv import tv_denoise_pdhg

__all__ = [
    "map_estimate",
    "generic_map",
    "dct_map",
    "gaussian_posterior_std",
    "gaussian_log_evidence",
    "tv_denoise_pdhg",
]
