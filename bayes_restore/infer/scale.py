"""The TV prior's scale as a random variable: its Gamma conditional and chains that move it.

In the hierarchical model :func:`~bayes_restore.models.hierarchical_tv_model`,
``theta = 1 / b ~ Gamma(alpha, beta0)`` is conjugate to the TV prior: :func:`gibbs_theta`
draws ``theta | x`` exactly. :func:`~bayes_restore.infer.mcmc` alternates it with Langevin
steps on ``x`` (``sample_scale=True``, summarised by :func:`scale_summary`), and
:func:`tv_scale_chain` runs MYULA on a denoising posterior whose ``theta`` a callback moves
after each step (the SAPG and Gibbs estimators of :mod:`bayes_restore.hyper`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from bayes_restore._numba_pool import torch_threads
from bayes_restore._validation import check_finite, check_positive
from bayes_restore.differences import gradient_energy
from bayes_restore.operators import LinearOperator, as_operator

from .langevin import SmoothedPotential, myula_step
from .problem import RestorationProblem

__all__ = ["gibbs_theta", "standard_gamma", "scale_summary", "tv_scale_chain"]


def gibbs_theta(
    x: torch.Tensor,
    alpha: float,
    beta0: float,
    generator: torch.Generator | None = None,
    *,
    isotropic: bool = True,
    event_dim: int = 2,
) -> torch.Tensor:
    r"""Draw ``theta = 1 / b`` from its conditional in the hierarchical TV model.

    ``theta | x ~ Gamma(alpha + N - C, beta0 + TV(x))`` with ``N`` the values of one image
    and ``C`` its channels (``N - 1`` for a grey image): the Gamma hyperprior of
    :func:`~bayes_restore.models.hierarchical_tv_model` is conjugate to the TV prior because
    ``TV`` is 1-homogeneous (see the Derivations page of the documentation). The Gamma
    variate is drawn by Marsaglia & Tsang's (2000) method from ``generator``'s normals and
    uniforms (:func:`standard_gamma`).

    Parameters
    ----------
    x : torch.Tensor
        Image(s), shape ``batch + event`` (event ``(H, W)`` or ``(C, H, W)``).
    alpha, beta0 : float
        Shape and rate of the hyperprior.
    generator : torch.Generator, optional
    isotropic : bool, default True
    event_dim : int, default 2
        2 for ``(H, W)`` images, 3 for ``(C, H, W)``.

    Returns
    -------
    torch.Tensor
        One draw per image, shape ``x.shape[:-event_dim]``, float64.

    Examples
    --------
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.rand(2, 16, 16, generator=g, dtype=torch.float64)
    >>> gibbs_theta(x, 1.0, 0.01, g).shape
    torch.Size([2])
    """
    if event_dim not in (2, 3) or x.dim() < event_dim:
        raise ValueError(f"event_dim must be 2 or 3 and at most x.dim(), got {event_dim}")
    check_positive(alpha, "alpha")
    check_positive(beta0, "beta0")
    check_finite(x, "x")
    channels = 1 if event_dim == 2 else x.shape[-3]
    n = math.prod(x.shape[-event_dim:])
    tv = gradient_energy(x.detach().to(torch.float64), 1.0, isotropic=isotropic,
                         event_dim=event_dim)
    shape = torch.full_like(tv, float(alpha) + n - channels)
    return standard_gamma(shape, generator) / (float(beta0) + tv)


def standard_gamma(shape: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Gamma(shape, 1) draws for ``shape >= 1``, Marsaglia & Tsang (2000), vectorised.

    From ``generator``'s normals and uniforms (``torch._standard_gamma`` takes none).

    Examples
    --------
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> draws = standard_gamma(torch.full((20000,), 4.0, dtype=torch.float64), g)
    >>> abs(float(draws.mean()) - 4.0) < 0.05
    True
    """
    if bool((shape < 1).any()):
        raise ValueError("shape must be >= 1")
    d = shape - 1.0 / 3.0
    c = 1.0 / torch.sqrt(9.0 * d)
    out = torch.empty_like(shape)
    todo = torch.ones_like(shape, dtype=torch.bool)
    while bool(todo.any()):
        z = torch.randn(shape.shape, generator=generator, dtype=shape.dtype, device=shape.device)
        u = torch.rand(shape.shape, generator=generator, dtype=shape.dtype, device=shape.device)
        v = (1 + c * z) ** 3
        ok = (v > 0) & (torch.log(u) < 0.5 * z**2 + d - d * v + d * torch.log(v.clamp_min(1e-300)))
        take = ok & todo
        out = torch.where(take, d * v, out)
        todo = todo & ~ok
    return out


def scale_summary(theta: torch.Tensor, every: int, scale_prior, scale_every,
                  prob: float = 0.9) -> dict[str, Any]:
    """``scale_samples`` (``b = 1 / theta``, thinned as the stored images) and their summary.

    ``theta``: all draws, shape ``(chain, draw, *batch)``; the summary uses all of them. The
    diagnostics ``"scale_samples"`` and ``"scale"`` of ``mcmc(..., sample_scale=True)``.
    """
    b = 1.0 / theta.to(torch.float64)
    flat = b.reshape((-1,) + tuple(b.shape[2:]))
    q = torch.tensor([(1 - prob) / 2, (1 + prob) / 2], dtype=flat.dtype, device=flat.device)
    lo, hi = torch.quantile(flat, q, dim=0)
    as_py = lambda t: t.item() if t.dim() == 0 else t.tolist()  # noqa: E731
    summary = {
        "mean": as_py(flat.mean(0)),
        "std": as_py(flat.std(0)),
        "interval": (as_py(lo), as_py(hi)),
        "prob": prob,
        "theta_mean": as_py(theta.to(torch.float64).reshape(flat.shape).mean(0)),
        "scale_prior": tuple(scale_prior),
        "scale_every": scale_every,
    }
    return {"scale_samples": b[:, ::every].cpu(), "scale": summary}


class _TVShape:
    """What the Langevin potential asks of a TV prior (its order and norm), for a bare chain."""

    gradient_order = 1.0

    def __init__(self, isotropic: bool) -> None:
        self.isotropic = isotropic


def tv_scale_chain(
    t: torch.Tensor,
    sigma: float,
    event_dim: int,
    update: Callable[[int, float, float], float],
    *,
    theta0: float,
    num_iter: int,
    isotropic: bool,
    smoothing: float,
    prox_iter: int,
    dtype: torch.dtype,
    generator: torch.Generator | None,
    operator: LinearOperator | None = None,
    start: torch.Tensor | None = None,
) -> list[float]:
    """MYULA on ``x | y, theta`` with ``theta <- update(k, theta, TV(x_k))`` after each step.

    ``U(x) = |y - x|^2 / (2 sigma^2) + theta TV(x)`` for the observation ``t`` (one ``theta``
    for all its images); the TV term is replaced by its Moreau-Yosida envelope of parameter
    ``lam = smoothing * sigma^2``, whose gradient is ``(x - prox_{lam theta TV}(x)) / lam``;
    the prox is the warm-started :func:`~bayes_restore.infer.prox.tv_prox`. The drift is
    :class:`~bayes_restore.infer.langevin.SmoothedPotential`'s and the step
    :func:`~bayes_restore.infer.langevin.myula_step`, those of
    :func:`~bayes_restore.infer.mcmc`: step ``0.9 / L`` with ``L = 1/sigma^2 + 1/lam``, the
    chain started at ``t``. ``TV(x_k)`` is summed over the images. Returns the ``theta``
    after each step.

    With an ``operator`` ``A`` (``y = A x + n``) the data term is ``|A x - y|^2 / (2
    sigma^2)``, its gradient ``A^T (A x - y) / sigma^2``, ``L = ||A||^2 / sigma^2 + 1 /
    lam`` (``||A||`` from ``operator.norm_bound``), and the chain starts at ``start``
    (required then: an image of ``A^T y``'s shape, e.g. a TV-MAP).

    Examples
    --------
    >>> import torch
    >>> y = torch.rand(16, 16, generator=torch.Generator().manual_seed(0))
    >>> thetas = tv_scale_chain(y, 0.1, 2, lambda k, theta, tv: 255 / tv, theta0=10.0,
    ...                         num_iter=5, isotropic=True, smoothing=0.03, prox_iter=5,
    ...                         dtype=torch.float32, generator=torch.Generator().manual_seed(1))
    >>> len(thetas), all(theta > 0 for theta in thetas)
    (5, True)
    """
    y = t.to(dtype)
    lam = smoothing * sigma**2
    norm = 1.0 if operator is None else float(operator.norm_bound)
    step = 0.9 / (norm**2 / sigma**2 + 1 / lam)
    noise_scale = math.sqrt(2 * step)
    if operator is not None and start is None:
        raise ValueError("start is required with an operator (an image of A^T y's shape)")
    x = y.clone() if start is None else start.to(dtype).clone()
    # the one Langevin potential of the package (that of mcmc), with one theta for all images
    one = y.new_ones((1,) * event_dim)
    problem = RestorationProblem(
        y, _TVShape(isotropic), as_operator(operator), sigma * one, one / theta0, event_dim)
    potential = SmoothedPotential(problem, lam * one, prox_iter)
    theta = theta0
    thetas = []
    # the fused kernels take the threads; torch's own would spin between its small steps
    threads = torch.get_num_threads()
    if y.device.type == "cpu" and threads > 1 and potential.runs_fused(x):
        potential.threads = threads
        threads = 1
    with torch_threads(threads):
        for k in range(1, num_iter + 1):
            drift = potential.grad(x)
            noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
            x = myula_step(x, drift, step, noise, noise_scale)
            tv = float(gradient_energy(x, 1.0, isotropic=isotropic, event_dim=event_dim).sum())
            theta = update(k, theta, tv)
            potential.set_theta(torch.tensor(theta, dtype=y.dtype, device=y.device))
            thetas.append(theta)
    return thetas
