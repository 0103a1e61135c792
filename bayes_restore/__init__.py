"""bayes_restore: Bayesian image restoration on Pyro and PyTorch.

Restored images and how sure we are of each pixel: priors written as Pyro
distributions (total variation, Gaussian-gradient, order ``beta``), a Gaussian
likelihood through a linear operator, and engines that return a
:class:`Posterior`.
"""

from . import differences, energy, infer, likelihoods, losses, models, operators, priors
from .denoise import denoise
from .energy import scale_from_weight, weight_from_scale
from .exceptions import ConvergenceWarning
from .hyper import estimate_sigma
from .infer import map_estimate
from .likelihoods import GaussianLikelihood
from .models import restoration_model
from .operators import Identity, LinearOperator
from .posterior import Posterior, SolverInfo
from .priors import GaussianGradient, GradientPrior, TotalVariation
from .restore import restore
from .tiled import restore_tiled

__version__ = "0.1.0"

__all__ = [
    "ConvergenceWarning",
    "GaussianGradient",
    "GaussianLikelihood",
    "GradientPrior",
    "Identity",
    "LinearOperator",
    "Posterior",
    "SolverInfo",
    "TotalVariation",
    "denoise",
    "differences",
    "energy",
    "estimate_sigma",
    "infer",
    "likelihoods",
    "losses",
    "map_estimate",
    "models",
    "operators",
    "priors",
    "restoration_model",
    "restore",
    "restore_tiled",
    "scale_from_weight",
    "weight_from_scale",
]
