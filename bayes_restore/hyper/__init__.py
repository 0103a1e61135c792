"""Noise level and prior-scale estimation: the parameters of restoration, read from the data.

Three questions, three tools:

- **Noise level** ``sigma``: :func:`estimate_sigma` (:mod:`~bayes_restore.hyper.noise`), a
  robust estimate from the finest frequencies, where images have the least energy and white
  noise as much as anywhere, told from fine texture by its kurtosis (Gaussian noise has none);
  through an operator (a mask: the observed pixels only) :func:`estimate_observation_sigma`
  (:mod:`~bayes_restore.hyper.observation_noise`).
- **Gaussian-gradient prior scale**: :func:`gaussian_empirical_bayes`
  (:mod:`~bayes_restore.hyper.evidence`), exact empirical Bayes on the closed-form evidence.
- **Total-variation weight**: :func:`tv_weight_sure` (:mod:`~bayes_restore.hyper.sure`,
  Stein's unbiased risk estimate, the default of :func:`choose_tv_weight`),
  :func:`tv_scale_sapg` (:mod:`~bayes_restore.hyper.sapg`, maximum marginal likelihood by
  stochastic approximation, with any forward operator: the parameter-free choice for
  deblurring, super-resolution and inpainting) and the hierarchical model
  :func:`hierarchical_tv_model` with a Gamma hyperprior on ``theta = 1 / b``, sampled by
  :func:`tv_scale_gibbs`
  (:mod:`~bayes_restore.hyper.gibbs`: proximal Langevin steps for ``x`` and the exact Gamma
  conditional :func:`gibbs_theta`). Each returns a :class:`ScaleEstimate`.

Conventions: ``weight`` is the package's energy weight ``lambda`` of
``|y - x|^2 + lambda TV(x)`` (what :func:`~bayes_restore.denoise` and
:func:`~bayes_restore.infer.tv.tv_denoise_pdhg` take); scikit-image's
``denoise_tv_chambolle`` weight is ``w = lambda / 2 = sigma^2 / b``.
The joint-MAP fixed point ``theta = (N - C) / TV(x_MAP)`` is deliberately absent: on
natural images it collapses towards a constant image (see the Derivations page of the
documentation).

The hierarchical model and its defaults live with the other models
(:mod:`bayes_restore.models`), the Gamma conditional and the Langevin chains with the
samplers (:mod:`bayes_restore.infer.scale`, :mod:`bayes_restore.infer.langevin`): this
package uses the inference engines, never the other way round. It re-exports them here.
"""

from bayes_restore.infer.scale import gibbs_theta
from bayes_restore.models import THETA_HYPERPRIOR, THETA_SITE, hierarchical_tv_model

from .choose import TV_METHODS, choose_tv_weight
from .estimate import ScaleEstimate
from .evidence import gaussian_empirical_bayes
from .gibbs import tv_scale_gibbs
from .noise import estimate_sigma
from .observation_noise import estimate_observation_sigma
from .sapg import tv_scale_sapg
from .sure import tv_sure_risk, tv_weight_sure

__all__ = [
    "THETA_SITE",
    "THETA_HYPERPRIOR",
    "ScaleEstimate",
    "estimate_sigma",
    "estimate_observation_sigma",
    "gaussian_empirical_bayes",
    "tv_weight_sure",
    "tv_sure_risk",
    "tv_scale_sapg",
    "tv_scale_gibbs",
    "hierarchical_tv_model",
    "gibbs_theta",
    "choose_tv_weight",
    "TV_METHODS",
]
