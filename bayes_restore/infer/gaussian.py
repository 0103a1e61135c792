"""Closed forms for the Gaussian-gradient prior with ``A = I`` (the DCT diagonalises everything)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch

from bayes_restore.differences import dct2, dct_matrix, idct2, laplacian_eigenvalues
from bayes_restore.posterior import Posterior, SolverInfo

__all__ = ["dct_map", "gaussian_posterior_std", "gaussian_log_evidence", "exact_posterior"]


def dct_map(y: torch.Tensor, ratio: float | torch.Tensor) -> torch.Tensor:
    r"""Exact MAP (= posterior mean) of the Gaussian-gradient prior for denoising.

    .. math::

        x = \mathrm{IDCT}\left(\frac{\mathrm{DCT}(y)}{1 + (\sigma^2 / b^2)\, \mu}\right),
        \qquad \mu_{kl} = 4 \sin^2\frac{\pi k}{2H} + 4 \sin^2\frac{\pi l}{2W}

    i.e. the minimiser of ``|y - x|^2 + lambda |grad x|^2`` with ``lambda = sigma^2 / b^2``.

    Parameters
    ----------
    y : torch.Tensor
        Noisy image(s), shape ``(..., H, W)``.
    ratio : float or torch.Tensor
        ``sigma^2 / b^2`` (the energy weight ``lambda``); a tensor broadcasts against ``y``.

    Returns
    -------
    torch.Tensor
        The MAP image(s), same shape, dtype and device as ``y``.

    Examples
    --------
    >>> import torch
    >>> y = torch.ones(4, 4)
    >>> bool(torch.allclose(dct_map(y, 10.0), y))  # constants are not penalised
    True
    """
    mu = laplacian_eigenvalues(y.shape[-2], y.shape[-1], dtype=y.dtype, device=y.device)
    ratio = torch.as_tensor(ratio, dtype=y.dtype, device=y.device)
    return idct2(dct2(y) / (1 + ratio * mu))


def gaussian_posterior_std(
    shape: tuple[int, int],
    sigma: float,
    scale: float,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    r"""Exact per-pixel posterior standard deviation of the Gaussian-gradient model, ``A = I``.

    The posterior covariance is ``C^T diag(d) C`` with ``d_kl = 1 / (1/sigma^2 + mu_kl / b^2)``
    and ``C`` the orthonormal 2-D DCT, so the marginal variance of pixel ``(i, j)`` is
    ``sum_kl d_kl C_ki^2 C_lj^2``: two small matrix products with the squared 1-D DCT
    matrices. No sampling. It does not depend on the data.

    Parameters
    ----------
    shape : (int, int)
        Image size ``(H, W)``.
    sigma : float
        Noise standard deviation.
    scale : float
        Prior scale ``b``.

    Returns
    -------
    torch.Tensor
        Shape ``(H, W)``.

    Examples
    --------
    >>> std = gaussian_posterior_std((16, 16), 0.1, 0.05)
    >>> bool((std < 0.1).all())  # never more uncertain than the noise itself
    True
    """
    h, w = shape
    mu = laplacian_eigenvalues(h, w, dtype=dtype, device=device)
    d = 1.0 / (1.0 / sigma**2 + mu / scale**2)
    return _marginal_std(d)


def _marginal_std(d: torch.Tensor) -> torch.Tensor:
    """Per-pixel std of ``C^T diag(d) C`` (2-D DCT ``C``): ``sqrt(sum_kl d_kl C_ki^2 C_lj^2)``."""
    h, w = d.shape[-2:]
    ch = dct_matrix(h, dtype=d.dtype, device=d.device) ** 2
    cw = dct_matrix(w, dtype=d.dtype, device=d.device) ** 2
    return torch.sqrt(ch.T @ d @ cw)


def gaussian_log_evidence(y: torch.Tensor, sigma, scale) -> torch.Tensor:
    r"""Log marginal likelihood ``log p(y | sigma, b)`` of the Gaussian-gradient model, ``A = I``.

    In the DCT basis the coefficients are independent, ``y_hat_kl ~ N(0, sigma^2 + b^2 / mu_kl)``
    for ``mu_kl > 0``; the constant coefficient (flat prior) is left out. Exact and
    differentiable in ``sigma`` and ``b``: maximise it for empirical Bayes.

    Parameters
    ----------
    y : torch.Tensor
        Image(s), shape ``(..., H, W)``.
    sigma, scale : float or torch.Tensor
        Noise level and prior scale (broadcast against the leading dimensions).

    Returns
    -------
    torch.Tensor
        Shape ``y.shape[:-2]``.

    Examples
    --------
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> y = 0.1 * torch.randn(32, 32, generator=g, dtype=torch.float64)  # pure noise
    >>> bool(gaussian_log_evidence(y, 0.1, 1e-3) > gaussian_log_evidence(y, 0.1, 1.0))
    True
    """
    h, w = y.shape[-2:]
    mu = laplacian_eigenvalues(h, w, dtype=y.dtype, device=y.device)
    coeff = dct2(y)
    sigma = torch.as_tensor(sigma, dtype=y.dtype, device=y.device)[..., None, None]
    scale = torch.as_tensor(scale, dtype=y.dtype, device=y.device)[..., None, None]
    mu_pos = torch.where(mu > 0, mu, torch.ones_like(mu))
    var = sigma**2 + scale**2 / mu_pos
    terms = -0.5 * (coeff**2 / var + torch.log(2 * math.pi * var))
    return torch.where(mu > 0, terms, torch.zeros_like(terms)).sum((-2, -1))


def exact_posterior(
    model: Callable,
    *args: Any,
    num_samples: int = 0,
    generator: torch.Generator | None = None,
    **kwargs: Any,
) -> Posterior:
    r"""Exact Gaussian posterior of the Gaussian-gradient model with ``A = I``: no sampling.

    For ``x ~ GaussianGradient(b)``, ``y ~ N(x, sigma^2 I)`` the posterior is Gaussian,
    diagonal in the DCT basis with variances ``d_kl = 1 / (1/sigma^2 + mu_kl / b^2)``:
    the mean is :func:`dct_map`, the per-pixel std :func:`gaussian_posterior_std`, and
    exact independent draws are ``mean + IDCT(sqrt(d) * z)``, ``z ~ N(0, I)``.

    Parameters
    ----------
    model : callable
        A Pyro model that is exactly ``x ~ GaussianGradient``, ``y ~ GaussianLikelihood(x,
        sigma)`` (e.g. :func:`~bayes_restore.models.restoration_model`).
    *args, **kwargs
        Passed to the model.
    num_samples : int, default 0
        Exact posterior draws to keep (one chain).
    generator : torch.Generator, optional
        Source of randomness for the draws.

    Returns
    -------
    Posterior
        ``method="exact"``, ``mean`` (= ``map``), ``std``, ``samples`` of shape
        ``(1, num_samples, *image)`` when requested; ``diagnostics["gaussian"]`` is True,
        so :meth:`Posterior.interval` is exact.

    Raises
    ------
    ValueError
        When the model is not the Gaussian-gradient prior with the identity operator.

    Examples
    --------
    >>> import torch
    >>> from bayes_restore.models import restoration_model
    >>> from bayes_restore.priors import GaussianGradient
    >>> y = torch.rand(16, 16, dtype=torch.float64)
    >>> post = exact_posterior(restoration_model, y, prior=GaussianGradient(0.1, shape=(16, 16)),
    ...                        sigma=0.1)
    >>> post.std.shape
    torch.Size([16, 16])
    """
    from bayes_restore.infer.map import _match_linear_gaussian
    from bayes_restore.operators import Identity

    if not isinstance(num_samples, int) or num_samples < 0:
        raise ValueError(f"num_samples must be an integer >= 0, got {num_samples!r}")
    start = time.perf_counter()
    problem = _match_linear_gaussian(model, args, kwargs)
    if problem is None or problem.prior.beta != 2.0 or problem.noise != "gaussian":
        raise ValueError(
            "method='exact' needs the Gaussian-gradient prior (beta = 2) with the Gaussian "
            "likelihood: its posterior is Gaussian. For TV or other priors use 'vi' or 'mcmc'"
        )
    if not isinstance(problem.operator, Identity):
        raise ValueError(
            f"method='exact' diagonalises A = I only, not {problem.operator!r}; use 'vi' or 'mcmc'"
        )
    y = problem.y.detach()
    sigma, scale = problem.sigma, problem.scale  # one value per image, broadcast shape
    h, w = y.shape[-2:]
    mu = laplacian_eigenvalues(h, w, dtype=y.dtype, device=y.device)
    d = 1.0 / (1.0 / sigma**2 + mu / scale**2)  # batch + (1,)*(event_dim - 2) + (H, W)
    d = d.expand(y.shape)
    mean = idct2(d / sigma**2 * dct2(y))  # = dct_map(y, sigma^2 / b^2)
    std = _marginal_std(d)
    samples = None
    if num_samples:
        z = torch.randn((num_samples,) + tuple(y.shape), generator=generator, dtype=y.dtype)
        samples = (mean + idct2(torch.sqrt(d) * z.to(y.device))).to(torch.float32).unsqueeze(0)
    info = SolverInfo(solver="dct", iterations=0, converged=True,
                      time=time.perf_counter() - start, gap=0.0)
    return Posterior(
        method="exact", map=mean, mean=mean, std=std, samples=samples, info=info,
        diagnostics={"gaussian": True, "observed": y, "scale": scale, "sigma": sigma},
    )
