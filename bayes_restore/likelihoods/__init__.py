"""Observation models ``p(y | x)`` as Pyro distributions: noise laws after a linear operator ``A``.

Every likelihood here observes ``y`` through ``A x`` (:mod:`bayes_restore.operators`),
has the observed image as its event (``event_dim`` 2 for ``(H, W)``, 3 for
``(C, H, W)``; leading dimensions are batch dimensions, so Pyro's plates work), keeps
its class under ``expand`` and returns an honest ``log_prob`` with every normaliser
(the frequency-split one says where it cannot). Noise laws, one module each:

========================================  ============================================
class                                     ``y`` given ``x``
========================================  ============================================
:class:`GaussianLikelihood`               ``Normal(A x, sigma^2)`` (L2)
:class:`LaplaceLikelihood`                ``Laplace(A x, b)`` (L1, impulse noise)
:class:`StudentTLikelihood`               ``StudentT(nu, A x, s)`` (robust)
:class:`PoissonLikelihood`                ``Poisson(gain A x)`` (photon counts)
:class:`QuantizedGaussianLikelihood`      the integer level of ``Normal(A x, sigma^2)``
:class:`FrequencySplitLikelihood`         Gaussian low-pass + Laplace high-pass residual
========================================  ============================================

All of them derive from :class:`~bayes_restore.likelihoods._base.OperatorLikelihood`,
which holds ``loc = A x``, broadcasts the parameters against it and implements
``expand``; a new noise law is a subclass that names its parameters and its
elementwise law. Every name is importable from :mod:`bayes_restore.likelihoods`.

Examples
--------
>>> import torch
>>> from bayes_restore.likelihoods import GaussianLikelihood
>>> from bayes_restore.operators import Downsample
>>> lik = GaussianLikelihood(torch.zeros(8, 8), 0.1, Downsample(2))
>>> lik.event_shape  # the observation's grid
torch.Size([4, 4])
"""

from .frequency_split import FrequencySplitLikelihood, gaussian_low_pass
from .gaussian import GaussianLikelihood
from .laplace import LaplaceLikelihood
from .poisson import PoissonLikelihood
from .quantized import QuantizedGaussianLikelihood, check_levels, from_levels, to_levels
from .student_t import StudentTLikelihood

__all__ = [
    "GaussianLikelihood",
    "LaplaceLikelihood",
    "StudentTLikelihood",
    "PoissonLikelihood",
    "QuantizedGaussianLikelihood",
    "FrequencySplitLikelihood",
    "gaussian_low_pass",
    "to_levels",
    "from_levels",
    "check_levels",
]
