"""The TV scale sampled with the image: Langevin-within-Gibbs on the hierarchical model."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from bayes_restore._validation import check_positive
from bayes_restore.infer.scale import standard_gamma, tv_scale_chain
from bayes_restore.models import THETA_HYPERPRIOR

from ._common import check_iterations, degrees_of_freedom, tv_problem
from .estimate import ScaleEstimate, make_estimate

__all__ = ["tv_scale_gibbs"]


def tv_scale_gibbs(
    y: Any,
    sigma: float,
    *,
    alpha: float = THETA_HYPERPRIOR[0],
    beta0: float = THETA_HYPERPRIOR[1],
    num_iter: int = 400,
    burn_in: int = 200,
    isotropic: bool = True,
    smoothing: float = 0.03,
    prox_iter: int = 5,
    dtype: torch.dtype = torch.float32,
    generator: torch.Generator | None = None,
) -> ScaleEstimate:
    r"""Sample ``theta`` of :func:`hierarchical_tv_model` by Langevin-within-Gibbs.

    Alternates one MYULA step on ``x | y, theta`` (as in :func:`tv_scale_sapg`) with an exact
    draw ``theta | x ~ Gamma(alpha + D, beta0 + TV(x))``: one ``theta`` for all images of
    ``y``, ``D`` the ``N - C`` of each image (``N`` its values, ``C`` its channels) and
    ``TV`` summed over them (:func:`gibbs_theta` draws the same conditional per image). The
    estimate is the posterior mean of ``theta`` (draws after ``burn_in``); with ``N`` in
    the hundreds of thousands the hyperprior hardly matters and it sits near the
    marginal-likelihood estimate of SAPG. ``trace["theta"]`` holds the draws: the
    posterior of the scale, not only a point.

    Parameters
    ----------
    y : numpy.ndarray or torch.Tensor
        Noisy image(s), as in :func:`tv_weight_sure`.
    sigma : float
        Noise standard deviation.
    alpha, beta0 : float
        The hyperprior (see :func:`hierarchical_tv_model`).
    num_iter : int, default 400
    burn_in : int, default 200
    isotropic, smoothing, prox_iter, dtype
        As in :func:`tv_scale_sapg`.
    generator : torch.Generator, optional
        Source of the Langevin noise and of the Gamma draws.

    Returns
    -------
    ScaleEstimate
        ``method="hierarchical"``; ``trace["theta"]`` the draws.

    Examples
    --------
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> clean = torch.zeros(32, 32); clean[8:24, 8:24] = 1.0
    >>> noisy = clean + 0.1 * torch.randn(32, 32, generator=g)
    >>> est = tv_scale_gibbs(noisy, 0.1, num_iter=100, burn_in=20, generator=g)
    >>> len(est.trace["theta"])
    100
    """
    start = time.perf_counter()
    t, event_dim, sigma = tv_problem(y, sigma)
    check_iterations(num_iter, burn_in)
    check_positive(alpha, "alpha")
    check_positive(beta0, "beta0")
    dof = degrees_of_freedom(t, event_dim)

    def update(k: int, theta: float, tv: float) -> float:
        shape = torch.tensor([float(alpha) + dof], dtype=torch.float64)
        return float(standard_gamma(shape, generator)[0]) / (float(beta0) + tv)

    thetas = tv_scale_chain(
        t, sigma, event_dim, update, theta0=1.0 / sigma, num_iter=num_iter,
        isotropic=isotropic, smoothing=smoothing, prox_iter=prox_iter, dtype=dtype,
        generator=generator,
    )
    theta = float(np.mean(thetas[burn_in:]))
    return make_estimate("hierarchical", sigma, sigma**2 * theta, start, num_iter,
                         {"theta": thetas})
