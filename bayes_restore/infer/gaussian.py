"""The Gaussian-gradient posterior: closed forms in the DCT basis (``A = I``, reflective
symmetric blur, box decimation: :mod:`bayes_restore.infer.gaussian_spectral`); for any
other operator, PCG and perturb-and-optimise (:mod:`bayes_restore.infer.pcg`, whose ``pcg``
is re-exported)."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch

from bayes_restore.differences import dct2, dct_matrix, idct2, laplacian_eigenvalues
from bayes_restore.operators import LinearOperator
from bayes_restore.posterior import ExactDiagnostics, Posterior, SolverInfo

from .gaussian_spectral import SpectralGaussian, dct_aliasing, observed_prior_gain
from .generic import DEFAULT_SEED, make_generator, model_arguments
from .pcg import DEFAULT_STD_RTOL, MAX_DRAWS, pcg, pcg_posterior
from .problem import recognise

__all__ = [
    "dct_map",
    "gaussian_posterior_std",
    "gaussian_log_evidence",
    "exact_posterior",
    "pcg",
]


def dct_map(
    y: torch.Tensor,
    weight: float | torch.Tensor | None = None,
    *,
    ratio: float | torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Exact MAP (= posterior mean) of the Gaussian-gradient prior for denoising.

    .. math::

        x = \mathrm{IDCT}\left(\frac{\mathrm{DCT}(y)}{1 + (\sigma^2 / b^2)\, \mu}\right),
        \qquad \mu_{kl} = 4 \sin^2\frac{\pi k}{2H} + 4 \sin^2\frac{\pi l}{2W}

    i.e. the minimiser of ``|y - x|^2 + lambda |grad x|^2`` with ``lambda = sigma^2 / b^2``.

    Parameters
    ----------
    y : torch.Tensor
        Noisy image(s), shape ``(..., H, W)``.
    weight : float or torch.Tensor
        ``lambda = sigma^2 / b^2``, the energy weight of ``|y - x|^2 + lambda |grad x|^2``
        (as everywhere in the package); a tensor broadcasts against ``y``.
    ratio : float or torch.Tensor, optional
        Deprecated keyword name of ``weight``.

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
    if ratio is not None:
        if weight is not None:
            raise TypeError("dct_map got both weight and its deprecated alias ratio")
        warnings.warn("dct_map(ratio=...) is deprecated: pass weight=", DeprecationWarning,
                      stacklevel=2)
        weight = ratio
    if weight is None:
        raise TypeError("dct_map() missing the argument 'weight'")
    mu = laplacian_eigenvalues(y.shape[-2], y.shape[-1], dtype=y.dtype, device=y.device)
    lam = torch.as_tensor(weight, dtype=y.dtype, device=y.device)
    return idct2(dct2(y) / (1 + lam * mu))


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


def gaussian_log_evidence(
    y: torch.Tensor, sigma, scale, *, operator: LinearOperator | None = None
) -> torch.Tensor:
    r"""Log marginal likelihood ``log p(y | sigma, b)`` of the Gaussian-gradient model.

    For ``A = I``, in the DCT basis the coefficients are independent,
    ``y_hat_kl ~ N(0, sigma^2 + b^2 / mu_kl)`` for ``mu_kl > 0``; the constant coefficient
    (flat prior) is left out. With an operator that shares the DCT-II basis (a reflective
    blur by a symmetric kernel, a box decimation whose factor divides the image: see
    :func:`~bayes_restore.infer.gaussian_spectral.dct_aliasing`) the observation's DCT
    coefficients are independent too, ``y_hat_k' ~ N(0, sigma^2 + b^2 nu_k')`` with
    ``nu_k' = sum g_k^2 / mu_k`` over the image frequencies ``k`` that alias onto ``k'``
    (``g_k`` their gains; ``nu = lambda^2 / mu`` for a blur of eigenvalues ``lambda``).
    Exact and differentiable in ``sigma`` and ``b``: maximise it for empirical Bayes.

    Parameters
    ----------
    y : torch.Tensor
        Observation(s), shape ``(..., H', W')``.
    sigma, scale : float or torch.Tensor
        Noise level and prior scale (broadcast against the leading dimensions).
    operator : LinearOperator, optional
        ``A``; ``None`` is the identity. ``ValueError`` for an operator without a
        closed-form evidence (a periodic blur, a mask, ...).

    Returns
    -------
    torch.Tensor
        Shape ``y.shape[:-2]``.

    Examples
    --------
    >>> import torch
    >>> from bayes_restore.operators import Downsample
    >>> g = torch.Generator().manual_seed(0)
    >>> y = 0.1 * torch.randn(32, 32, generator=g, dtype=torch.float64)  # pure noise
    >>> bool(gaussian_log_evidence(y, 0.1, 1e-3) > gaussian_log_evidence(y, 0.1, 1.0))
    True
    >>> e = gaussian_log_evidence(y[:16, :16], 0.1, 0.05, operator=Downsample(2))
    >>> e.shape
    torch.Size([])
    """
    if operator is not None and not operator.is_identity:
        nu = observed_prior_gain(operator, y)
        sigma = torch.as_tensor(sigma, dtype=y.dtype, device=y.device)[..., None, None]
        scale = torch.as_tensor(scale, dtype=y.dtype, device=y.device)[..., None, None]
        var = sigma**2 + scale**2 * nu
        terms = -0.5 * (dct2(y) ** 2 / var + torch.log(2 * math.pi * var))
        keep = torch.ones_like(nu, dtype=torch.bool)
        keep[0, 0] = False  # the constant: flat prior
        return torch.where(keep, terms, torch.zeros_like(terms)).sum((-2, -1))
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
    seed: int | None = DEFAULT_SEED,
    solver: str = "auto",
    tol: float | None = None,
    max_iter: int = 1000,
    num_draws: int | None = None,
    std_rtol: float = DEFAULT_STD_RTOL,
    max_draws: int = MAX_DRAWS,
    precondition: bool = True,
    model_kwargs: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> Posterior:
    r"""Gaussian posterior of the Gaussian-gradient model, for any linear operator ``A``.

    For ``x ~ GaussianGradient(b)`` (``log p(x) = -|D x|^2 / (2 b^2) + const``, ``D`` the
    Neumann forward-difference gradient) and ``y ~ N(A x, sigma^2 I)`` the posterior is
    ``N(m, Q^{-1})`` with precision and mean

    .. math::

        Q = \frac{A^T A}{\sigma^2} + \frac{D^T D}{b^2}, \qquad Q m = \frac{A^T y}{\sigma^2}.

    Two solvers (``solver="auto"`` picks the first whenever the operator allows it):

    - ``"dct"``: closed forms in the orthonormal DCT-II basis, which diagonalises ``D^T D``
      (eigenvalues ``mu_kl``). For ``A = I`` the posterior variances of the coefficients
      are ``d_kl = 1 / (1/sigma^2 + mu_kl / b^2)``: the mean is :func:`dct_map`, the
      per-pixel std :func:`gaussian_posterior_std`, draws ``mean + IDCT(sqrt(d) z)``. The
      same holds for every operator whose structure shares that basis
      (:func:`~bayes_restore.infer.gaussian_spectral.dct_aliasing`): a reflective blur by
      a symmetric kernel (``Blur(psf, boundary="reflect")``, diagonal: ``d_kl = 1 /
      (lambda_kl^2 / sigma^2 + mu_kl / b^2)``) and a box decimation whose factor ``f``
      divides the image (``Downsample(f)``: ``Q`` is block-diagonal, one ``f^2 x f^2``
      block of aliased frequencies per low-resolution frequency, inverted by
      Sherman-Morrison). Mean, exact per-pixel std, exact draws; cost ``O(N log N)``.
    - ``"pcg"`` (any :class:`~bayes_restore.operators.LinearOperator`): the mean by
      preconditioned conjugate gradients on ``Q m = A^T y / sigma^2`` (exact up to the
      relative residual ``tol``), the draws by perturb-and-optimise (Papandreou & Yuille
      2010; Orieux, Feron & Giovannelli 2012):
      ``x = m + Q^{-1}(A^T e_1 / sigma + D^T e_2 / b)``, ``e_1 ~ N(0, I)`` of the
      observation's shape, ``e_2 ~ N(0, I)`` of the gradient's, solved by the same PCG
      batched over draws. The right-hand side has covariance ``Q``, so each draw is an
      exact ``N(m, Q^{-1})`` sample up to the CG tolerance. The per-pixel ``std`` is the
      Monte Carlo estimate ``sqrt(mean_i (x_i - m)^2)``; its relative standard error,
      estimated at every pixel from the draws' second and fourth moments (about
      ``sqrt(1 / (2 n))`` for ``n`` draws), is brought below ``std_rtol`` at the median
      pixel: draws are added until it is, or until ``max_draws``. The preconditioner is
      ``c I + D^T D / b^2``, diagonal in the DCT basis, with ``c = |A 1|^2 / (N sigma^2)``
      the precision of the constant image (the null space of ``D``), shaped by the
      operator's ``dct_symbol`` where it has one. Cost per iteration: one ``A^T A``, one
      ``D^T D`` and one DCT pair; ``(1 + n_draws)`` solves in all.

    Parameters
    ----------
    model : callable
        A Pyro model that is exactly ``x ~ GaussianGradient``, ``y ~ GaussianLikelihood(x,
        sigma, operator)`` (e.g. :func:`~bayes_restore.models.restoration_model`).
    *args, **kwargs
        Passed to the model.
    model_kwargs : mapping, optional
        More keyword arguments of the model, kept apart from the engine's options (for a
        model that has its own ``tol``, ``seed``, ...).
    num_samples : int, default 0
        Posterior draws to keep (one chain).
    generator : torch.Generator, optional
        Source of randomness for the draws, instead of ``seed`` (giving both is a
        ``ValueError``); on any device, the draws are moved to the data's.
    seed : int or None, default 0
        Seeds every random draw (the samples, the perturb-and-optimise draws of the std):
        the same call gives bit-identical results every time; another integer gives
        another independent run. ``None``: fresh entropy from the operating system (not
        reproducible). The draws come from a generator of their own, on the data's device:
        the global RNG state is left untouched.
    solver : {"auto", "dct", "pcg"}, default "auto"
        ``"pcg"`` also runs where the closed forms apply (a check of the iterative path);
        ``"dct"`` is a ``ValueError`` for an operator without them.
    tol : float, optional
        PCG stopping rule: ``|Q x - rhs| <= tol |rhs|`` for every image and draw. Default
        ``1e-6`` in float64 and ``1e-5`` in float32: the mean's error in units of the
        posterior std is then far below the Monte Carlo error of the std, while float32
        CG still reaches it (its residual stalls near ``1e-6``-``1e-7``).
    max_iter : int, default 1000
        PCG iteration cap; reaching it warns with
        :class:`~bayes_restore.exceptions.ConvergenceWarning`.
    num_draws : int, optional
        A fixed number of perturb-and-optimise draws for the std (``"pcg"`` only; at least
        2). ``None`` (default): as many as ``std_rtol`` asks for.
    std_rtol : float, default 0.05
        ``"pcg"``: the relative Monte Carlo error of the std to reach at the median pixel
        (0.05: about 200 draws).
    max_draws : int, default 1000
        ``"pcg"``: the cap on the draws when their number is convergence-controlled;
        stopping there with a larger error warns with
        :class:`~bayes_restore.exceptions.ConvergenceWarning`.
    precondition : bool, default True
        Use the DCT preconditioner (``False`` runs plain CG, for comparison).

    Returns
    -------
    Posterior
        ``method="exact"``, ``mean`` (= ``map``), ``std``, ``samples`` of shape
        ``(1, num_samples, *image)`` (float32) when requested;
        ``diagnostics["gaussian"]`` is True, so :meth:`Posterior.interval` is
        ``mean +- z std``. ``diagnostics["std_method"]`` is ``"exact"`` (closed form, with
        ``diagnostics["aliasing"]`` the operator's aliasing factors, ``None`` for ``A =
        I``) or ``"perturb-optimise"`` with ``diagnostics["num_draws"]`` and
        ``diagnostics["std_mc_error"]`` (the estimated relative Monte Carlo error of the
        std at the median pixel). With PCG, ``info`` is ``SolverInfo(solver="pcg")`` with
        the mean solve's iterations, its final relative residual as ``gap`` and its
        residual history; the draws' iterations and residual are
        ``diagnostics["draw_iterations"]`` and ``diagnostics["draw_residual"]``.

    Raises
    ------
    ValueError
        When the model is not the Gaussian-gradient prior with a Gaussian likelihood, when
        ``A`` does not observe the constant image (the posterior is improper), or for a
        bad ``num_samples``, ``solver``, ``tol``, ``max_iter``, ``num_draws``,
        ``std_rtol`` or ``max_draws``.

    References
    ----------
    G. Papandreou and A. Yuille, "Gaussian sampling by local perturbations", NIPS 2010.
    F. Orieux, O. Feron and J.-F. Giovannelli, "Sampling high-dimensional Gaussian
    distributions for general linear inverse problems", IEEE SPL 19(5), 2012.

    Examples
    --------
    >>> import torch
    >>> from bayes_restore.models import restoration_model
    >>> from bayes_restore.operators import Blur, Downsample, gaussian_psf
    >>> from bayes_restore.priors import GaussianGradient
    >>> y = torch.rand(16, 16, dtype=torch.float64)
    >>> prior = GaussianGradient(0.1, shape=(16, 16))
    >>> post = exact_posterior(restoration_model, y, prior=prior, sigma=0.1)
    >>> post.std.shape, post.diagnostics["std_method"]
    (torch.Size([16, 16]), 'exact')
    >>> post = exact_posterior(restoration_model, y[:8, :8], prior=prior, sigma=0.1,
    ...                        operator=Downsample(2), num_samples=4)
    >>> post.info.solver, post.diagnostics["aliasing"], post.samples.shape
    ('dct', (2, 2), torch.Size([1, 4, 16, 16]))
    >>> post = exact_posterior(restoration_model, y, prior=prior, sigma=0.1,
    ...                        operator=Blur(gaussian_psf(5, 1.0), boundary="periodic"))
    >>> post.info.solver, post.info.converged, post.diagnostics["std_method"]
    ('pcg', True, 'perturb-optimise')
    >>> post.diagnostics["std_mc_error"] <= 0.05
    True
    """
    kwargs = model_arguments(kwargs, model_kwargs)
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 0:
        raise ValueError(f"num_samples must be an integer >= 0, got {num_samples!r}")
    if solver not in ("auto", "dct", "pcg"):
        raise ValueError(f"solver must be 'auto', 'dct' or 'pcg', got {solver!r}")
    if tol is not None and not (isinstance(tol, (int, float)) and 0 < tol < 1):
        raise ValueError(f"tol must be a number in (0, 1), got {tol!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be an integer >= 1, got {max_iter!r}")
    if num_draws is not None and (isinstance(num_draws, bool) or not isinstance(num_draws, int)
                                  or num_draws < 2):
        raise ValueError(f"num_draws must be None or an integer >= 2, got {num_draws!r}")
    if isinstance(std_rtol, bool) or not (isinstance(std_rtol, (int, float)) and 0 < std_rtol < 1):
        raise ValueError(f"std_rtol must be a number in (0, 1), got {std_rtol!r}")
    if isinstance(max_draws, bool) or not isinstance(max_draws, int) or max_draws < 2:
        raise ValueError(f"max_draws must be an integer >= 2, got {max_draws!r}")
    start = time.perf_counter()
    problem = recognise(model, args, kwargs)
    if problem is None or problem.beta != 2.0 or problem.noise != "gaussian":
        raise ValueError(
            "method='exact' needs the Gaussian-gradient prior (beta = 2) with the Gaussian "
            "likelihood: its posterior is Gaussian. For TV or other priors use 'vi' or 'mcmc'"
        )
    gen = make_generator(seed, generator, problem.y.device)
    op = problem.operator
    identity = op.is_identity
    aliasing = None
    if not identity and solver != "pcg":
        image = tuple(problem.prior.event_shape)[-2:]
        aliasing = dct_aliasing(op, image, problem.y)
    if solver == "dct" and not identity and aliasing is None:
        raise ValueError(
            f"solver='dct' needs A = I or an operator that shares the DCT-II basis (a "
            f"reflective blur by a symmetric kernel, a box decimation dividing the image), "
            f"not {op!r}; use solver='pcg'"
        )
    if solver == "pcg" or (not identity and aliasing is None):
        return pcg_posterior(problem, num_samples, gen, tol, max_iter, num_draws,
                             precondition, start, std_rtol=std_rtol, max_draws=max_draws)
    if aliasing is not None:
        return _spectral_posterior(problem, aliasing, num_samples, gen, start)
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
        z = torch.randn((num_samples,) + tuple(y.shape), generator=gen, dtype=y.dtype,
                        device=gen.device)
        samples = (mean + idct2(torch.sqrt(d) * z.to(y.device))).to(torch.float32).unsqueeze(0)
    info = SolverInfo(solver="dct", iterations=0, converged=True,
                      time=time.perf_counter() - start, gap=0.0)
    return Posterior(
        method="exact", map=mean, mean=mean, std=std, samples=samples, info=info,
        diagnostics=ExactDiagnostics(observed=y, prior_scale=scale, sigma=sigma,
                                     std_method="exact"),
    )


def _spectral_posterior(problem, aliasing, num_samples, gen, start) -> Posterior:
    """Mean, exact std and exact draws where ``A`` shares the prior's DCT-II basis."""
    y = problem.y.detach()
    shape = tuple(y.shape[: y.dim() - problem.event_dim]) + tuple(problem.prior.event_shape)
    sigma = problem.sigma.to(dtype=y.dtype, device=y.device)
    scale = problem.scale.to(dtype=y.dtype, device=y.device)
    # one (sigma, b) per image: batch + (1,) * event_dim, read as "anything, then (1, 1)"
    post = SpectralGaussian(aliasing, sigma, scale)
    mean = post.mean(y).expand(shape)
    std = post.std().expand(shape)
    samples = None
    if num_samples:
        samples = post.sample(mean, num_samples, gen).to(torch.float32).unsqueeze(0)
    info = SolverInfo(solver="dct", iterations=0, converged=True,
                      time=time.perf_counter() - start, gap=0.0)
    return Posterior(
        method="exact", map=mean, mean=mean, std=std, samples=samples, info=info,
        diagnostics=ExactDiagnostics(observed=y, prior_scale=problem.scale,
                                     sigma=problem.sigma, std_method="exact",
                                     aliasing=tuple(aliasing.factors)),
    )
