"""Inference engines: MAP (fast exact solvers and the generic Pyro path)."""

from .gaussian import dct_map
from .generic import generic_map
from .map import map_estimate
from .tv import tv_denoise_pdhg

__all__ = ["map_estimate", "generic_map", "dct_map", "tv_denoise_pdhg"]
