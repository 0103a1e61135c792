"""Inference engines: MAP (fast exact solvers, generic Pyro path), exact Gaussian, VI, MCMC."""

from .gaussian import dct_map, exact_posterior, gaussian_log_evidence, gaussian_posterior_std
from .generic import generic_map
from .map import map_estimate
from .mcmc import mcmc
from .prox import tv_prox
from .tv import tv_denoise_pdhg, tv_energy, tv_l1_pdhg, tv_map_pdhg
from .vi import variational

__all__ = [
    "map_estimate",
    "generic_map",
    "dct_map",
    "exact_posterior",
    "gaussian_posterior_std",
    "gaussian_log_evidence",
    "tv_denoise_pdhg",
    "tv_map_pdhg",
    "tv_l1_pdhg",
    "tv_energy",
    "variational",
    "mcmc",
    "tv_prox",
]
