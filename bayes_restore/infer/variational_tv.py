r"""Variational Bayes for total variation: a structured Gaussian ``q(x)`` (majoriser or exact ELBO).

The TV prior ``log p(x | b) = -TV(x) / b - (N - C) log b`` is bounded below, at every
pixel, by the tangent quadratic of the square root (Babacan, Molina & Katsaggelos 2008),

.. math::

    |g_i| \le \frac{|g_i|^2 + u_i}{2 \sqrt{u_i}}, \qquad u_i > 0,

so that the best ``q(x)`` under the bound is Gaussian, ``N(m, Q^{-1})`` with

.. math::

    Q = \frac{A^T A}{\sigma^2} + \frac{D^T W D}{b}, \qquad W = \mathrm{diag}(1 / \sqrt{u_i}),
    \qquad Q m = \frac{A^T y}{\sigma^2},

and the bound is tightest at ``u_i = E_q |(D x)_i|^2 = |(D m)_i|^2 + \mathrm{Var}_q((Dx)_i)``.
The iteration alternates the mean (preconditioned conjugate gradients, warm-started), the
weights and, with ``learn``, the VB-EM updates of the noise level and the prior scale
(flat hyperpriors, the limit of Gamma hyperpriors with vanishing rate):

.. math::

    b = \frac{\sum_i \sqrt{u_i}}{N - C}, \qquad
    \sigma^2 = \frac{|y - A m|^2 + \mathrm{tr}(A Q^{-1} A^T)}{M},
    \qquad \mathrm{tr}(A Q^{-1} A^T) = \sigma^2 \left(N - \tfrac{1}{b} \sum_i w_i
    \mathrm{Var}_q((Dx)_i)\right)

(the last from ``Q Q^{-1} = I``).

By default (``weights="exact"``, isotropic TV) the weights are not the bound's but those of
the stationary point of the exact Gaussian ELBO (Opper & Archambeau 2009): the mean solves
``E_q grad U = 0`` and the precision is ``E_q grad^2 U``, both in closed form from the Rice
moments of ``|D x|_i`` under ``q`` (:func:`_exact_weights`). The bound's ``sqrt(E|g|^2)``
exceeds ``E|g|``, so its ``q`` is narrower (measured against long MCMC chains: std 6-7 % low
on denoising, 14 % with a blur; within 1 % and 4 % low with the exact weights). VB-EM
(``learn``) runs on the bound, and ``q`` is then refit at the learned parameters.

The marginal variances of ``x`` and of its gradient under ``q`` are the diagonal of an
inverse that no transform diagonalises (``W`` varies over the image). They are taken from
a *locally stationary* approximation: at pixel ``i`` the field is read as the stationary
Gaussian field of precision ``A^T A / \sigma^2 + \tilde w_i D^T D / b`` with
``\tilde w_i`` the mean weight of the four differences that touch the pixel, whose
marginal variances are averages over the DCT spectrum,

.. math::

    \mathrm{Var}(x_i) \approx \frac{1}{N} \sum_k \frac{1}{a_k / \sigma^2 + \tilde w_i \mu_k / b},
    \qquad
    \mathrm{Var}((Dx)_i) \approx \frac{1}{N} \sum_k \frac{\mu_k}{a_k / \sigma^2 + \tilde w_i
    \mu_k / b},

tabulated on a grid of ``\tilde w`` and interpolated; within ``_BORDER`` pixels of the
image's border the spectral average is replaced by the exact weighting of a Neumann field's
DCT basis at that distance (border pixels have fewer neighbours, hence more variance; on
small images the plain average also overstates the interior). ``a_k`` is the operator's DCT
symbol of ``A^T A``, or its mean gain scaled by the local gain ``(A^T A 1)_i`` for an operator
without one (e.g. a mask). Deterministic and ``O(N)`` per sweep: no Monte Carlo noise anywhere.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812 - torch's convention

from bayes_restore.differences import dct2, div, grad, idct2, laplacian_eigenvalues
from bayes_restore.exceptions import ConvergenceWarning

from .pcg import pcg

__all__ = ["TVVariational", "tv_variational", "LEARNABLE", "DEFAULT_CONFIDENCE", "STARTS",
           "WEIGHT_RULES"]

#: the parameters ``tv_variational(..., learn=...)`` can refine by VB-EM
LEARNABLE = ("sigma", "scale")
#: accepted values of ``tv_variational(..., init=...)``
STARTS = ("auto", "map", "gaussian")
#: accepted values of ``tv_variational(..., weights=...)``
WEIGHT_RULES = ("bound", "exact")

#: Babacan et al.'s confidence in the starting sigma and b (Gamma hyperpriors centred there)
DEFAULT_CONFIDENCE = (0.9, 0.0)
#: spacing in log(weight) of the table of stationary variances: nodes on a fixed lattice,
#: so that a weight's interpolated variance does not depend on the table's extent (nor on
#: the path, hence the start, of the iteration)
_LOG_STEP = 0.1
#: most nodes of that table (the spacing doubles beyond)
_MAX_NODES = 512
#: sweeps of weights <-> variances at the starting mean
_START_SWEEPS = 3
#: largest side of the grid of frequencies of the stationary variances
_SPECTRUM = 128
#: distances from the border (pixels) with their own row in the table of variances (the
#: pixels farther in read the last)
_BORDER = 16
#: the share of a pixel's own data gain in the gain its variance sees (masks, gains)
_OWN = 0.5
#: rounds of (stationary weight -> Gaussian mean -> its mean E|Dx|^2) of the Gaussian start
_GAUSSIAN_ROUNDS = 3


@dataclass(frozen=True)
class TVVariational:
    """The fitted ``q(x) = N(mean, Q^{-1})`` of :func:`tv_variational`.

    Attributes
    ----------
    mean, std : torch.Tensor
        Mean and (locally stationary) marginal std of ``q``, the image's shape.
    map : torch.Tensor or None
        The TV MAP at the final ``sigma`` and ``b`` (relative gap ``1e-4`` for ``A = I``,
        ``1e-3`` with an operator); ``None`` unless asked for (``map_estimate``).
    samples : torch.Tensor or None
        Exact draws of ``q`` (perturb-and-optimise), ``(num, *image)``.
    sigma, scale : torch.Tensor
        The noise std and prior scale at the end (refined when learned), one per image.
    weights : torch.Tensor
        The weights of the precision ``Q`` per pixel (per direction if anisotropic): the
        majoriser's ``1 / sqrt(u)`` (``weights="bound"``) or ``E_q`` of TV's Hessian
        (``"exact"``).
    iterations : int
        Outer (VB) iterations.
    converged : bool
        Whether the relative change fell below ``tol``.
    history : tuple of float
        The relative change of the mean (and parameters) per iteration.
    cg_iterations : int
        Conjugate-gradient iterations of the mean solves, all iterations together.
    elbo : tuple of float
        The bound on the log evidence per iteration (sum over images; up to a constant).
    mean_weights : torch.Tensor or None
        The weights of the mean's equation ``(A^T A / sigma^2 + D^T W D / b) m = A^T y /
        sigma^2``: ``weights`` for ``"bound"``, ``E_q[(Dx) / |Dx|]`` per unit of ``D m`` for
        ``"exact"``.
    """

    mean: torch.Tensor
    std: torch.Tensor
    map: torch.Tensor | None
    samples: torch.Tensor | None
    sigma: torch.Tensor
    scale: torch.Tensor
    weights: torch.Tensor
    iterations: int
    converged: bool
    history: tuple[float, ...]
    cg_iterations: int
    elbo: tuple[float, ...]
    mean_weights: torch.Tensor | None = None


def tv_variational(
    problem,
    *,
    max_iter: int = 200,
    tol: float = 1e-4,
    learn: tuple[str, ...] = (),
    confidence: tuple[float, float] = DEFAULT_CONFIDENCE,
    num_samples: int = 0,
    generator: torch.Generator | None = None,
    cg_tol: float | None = None,
    max_cg: int = 500,
    map_estimate: bool | None = None,
    init: str = "auto",
    weights: str = "exact",
) -> TVVariational:
    r"""Variational Bayes for the TV prior with a Gaussian likelihood and any operator.

    See the module's description for the family and the updates. The iteration starts
    from the TV MAP for ``A = I`` (the fused ROF solver: cheap, and returned as ``map``)
    and, with an operator, from the mean of a stationary Gaussian posterior
    ``Q_0 = A^T A / sigma^2 + w_0 D^T D / b`` (one weight ``w_0`` matched to the image's
    ``E|Dx|^2`` in a few rounds; a DCT solve when the operator has a DCT symbol, PCG
    otherwise): the TV MAP with an operator costs far more than the sweeps. It stops when
    the relative change of the mean between two sweeps is at most ``tol`` (and, with
    ``learn``, that of the learned parameters). Both starts reach the same fixed point
    (up to ``tol``).

    Parameters
    ----------
    problem : RestorationProblem
        A recognised model (:func:`~bayes_restore.infer.problem.recognise`) with a prior of
        order 1 and Gaussian noise.
    max_iter : int, default 200
        Cap on the VB sweeps (reaching it warns with
        :class:`~bayes_restore.exceptions.ConvergenceWarning`).
    tol : float, default 1e-4
        Relative change of the mean (``|m_k - m_{k-1}| / |m_k|``) at which to stop.
    learn : tuple of {"sigma", "scale"}, default ()
        Parameters refined by VB-EM, starting from the problem's values.
    confidence : (float, float), default (0.9, 0.0)
        Babacan et al.'s confidence parameters ``(gamma_sigma, gamma_b)`` in ``[0, 1)``:
        Gamma hyperpriors centred at the starting values, so that each update is
        ``gamma * start + (1 - gamma) * (maximum-likelihood update)`` (on ``sigma^2`` and
        ``b``). 0 is the flat hyperprior. The default trusts the starting noise level
        (the pure maximum-likelihood update of ``sigma`` runs away towards 0 on natural
        images: measured in the documentation) and learns ``b`` freely.
    num_samples : int, default 0
        Exact draws of ``q`` to return (perturb-and-optimise with the final precision).
    generator : torch.Generator, optional
        For the draws (the fit itself draws nothing).
    cg_tol : float, optional
        Relative residual of the mean solves (default ``1e-6`` in float64, ``1e-5`` in
        float32).
    max_cg : int, default 500
        Cap on the iterations of each solve.
    map_estimate : bool, optional
        Whether to return ``map``, the TV MAP at the final parameters. Default (``None``):
        for ``A = I`` (where it is the start, or at the learned parameters one more fused
        ROF solve), not with an operator, where its certified primal-dual solve costs
        many times the variational fit (then ``map`` is ``None``).
    init : {"auto", "map", "gaussian"}, default "auto"
        The starting mean: the TV MAP, or the stationary Gaussian posterior's mean (see
        above); ``"auto"``: the MAP for ``A = I``, the Gaussian with an operator.
    weights : {"exact", "bound"}, default "exact"
        ``"bound"``: the weights of the quadratic majoriser, ``1 / sqrt(E_q |D x|^2)``, for
        the mean and the precision (Babacan et al.: the ``q`` that maximises the bound).
        ``"exact"`` (isotropic TV; anisotropic takes ``"bound"``): the stationary point of
        the exact Gaussian ELBO, ``E_q grad U = 0`` and ``Q = E_q grad^2 U`` (Opper &
        Archambeau 2009), with ``E_q`` of TV's gradient and Hessian in closed form (Rice
        moments: :func:`_exact_weights`), the Hessian's ``2 x 2`` blocks read by their
        isotropic part. The bound's ``sqrt(E|g|^2) >= E|g|`` penalises spread, so its ``q``
        is narrower: against long MCMC chains the std was 6-7 % low with ``"bound"`` and
        within 1 % with ``"exact"`` on denoising, 14 % and 4 % low with a blur. With
        ``learn``, the parameters come from the bound's VB-EM (its M-step; with the exact
        weights the scale runs away, 2-4x too large with a blur), and ``q`` is then refit
        at them with the exact weights.

    Returns
    -------
    TVVariational

    Examples
    --------
    >>> import torch
    >>> from bayes_restore.models import restoration_model
    >>> from bayes_restore.priors import TotalVariation
    >>> from bayes_restore.infer.problem import recognise
    >>> y = torch.zeros(16, 16, dtype=torch.float64); y[4:12, 4:12] = 1.0
    >>> p = recognise(restoration_model, (y,), {"prior": TotalVariation(0.1, shape=(16, 16)),
    ...                                         "sigma": 0.1})
    >>> q = tv_variational(p)
    >>> q.converged, q.mean.shape, bool((q.std > 0).all())
    (True, torch.Size([16, 16]), True)
    """
    if problem.beta != 1.0 or problem.noise != "gaussian":
        raise ValueError("tv_variational needs a prior of order 1 (TV) and Gaussian noise")
    learn = tuple(learn)
    if init not in STARTS:
        raise ValueError(f"init must be one of {STARTS}, got {init!r}")
    if weights not in WEIGHT_RULES:
        raise ValueError(f"weights must be one of {WEIGHT_RULES}, got {weights!r}")
    if map_estimate is not None and not isinstance(map_estimate, bool):
        raise TypeError(f"map_estimate must be a bool or None, got {map_estimate!r}")
    for name in learn:
        if name not in LEARNABLE:
            raise ValueError(f"learn must hold names among {LEARNABLE}, got {name!r}")
    y = problem.y.detach()
    op = problem.operator
    event_dim = problem.event_dim
    batch = tuple(y.shape[: y.dim() - event_dim])
    shape = batch + tuple(problem.prior.event_shape)
    dims = tuple(range(-event_dim, 0))
    isotropic = problem.isotropic
    dtype, device = y.dtype, y.device
    if cg_tol is None:
        cg_tol = 1e-5 if dtype in (torch.float32, torch.float16, torch.bfloat16) else 1e-6
    sigma = problem.sigma.to(dtype=dtype, device=device).clone()
    scale = problem.scale.to(dtype=dtype, device=device).clone()
    sigma0, scale0 = sigma.clone(), scale.clone()
    conf_s, conf_b = (float(c) for c in confidence)
    if not (0 <= conf_s < 1 and 0 <= conf_b < 1):
        raise ValueError(f"confidence must hold two numbers in [0, 1), got {confidence!r}")
    h, w = shape[-2:]
    n_pixels = math.prod(shape[-event_dim:])
    n_obs = math.prod(y.shape[-event_dim:])
    dof = n_pixels - getattr(problem.prior, "num_channels", 1)

    def adjoint(r: torch.Tensor) -> torch.Tensor:
        return op.adjoint_as(r, shape)

    at_y = adjoint(y)
    ones = torch.ones(shape, dtype=dtype, device=device)
    gain = adjoint(op.forward(ones))  # (A^T A 1)_i: the local data gain
    gain_mean = gain.mean(dims, keepdim=True)
    if not bool((gain_mean > 0).all()):
        raise ValueError(f"{op!r} observes nothing (A^T A 1 = 0): the posterior is improper")
    mu = laplacian_eigenvalues(h, w, dtype=dtype, device=device)
    symbol = None if op.is_identity else op.dct_symbol(h, w, y)
    # the spectrum the stationary variances average over: the image's DCT frequencies, or
    # for large images the same band sampled on a coarser grid (a smooth integrand)
    hs, ws = min(h, _SPECTRUM), min(w, _SPECTRUM)
    local = torch.ones_like(gain)
    if op.is_identity:
        spectrum = torch.ones((hs, ws), dtype=dtype, device=device)
        symbol = torch.ones_like(mu)
    elif symbol is not None:
        symbol = symbol.to(dtype=dtype, device=device)
        spectrum = op.dct_symbol(hs, ws, y).to(dtype=dtype, device=device)
    else:  # no spectrum: a flat one at the mean gain, modulated by the local gain
        symbol = torch.ones_like(mu) * gain_mean.flatten().mean()
        spectrum = torch.ones((hs, ws), dtype=dtype, device=device) * symbol[0, 0]
        local = _local_gain(gain / gain_mean).clamp_min(1e-3)
    # A = I or pixel-diagonal: Jacobi preconditioning (the diagonal of A^T A is A^T A 1);
    # otherwise the stationary DCT preconditioner with the operator's DCT symbol
    pixelwise = op.is_identity or op.tileable
    data_diag = gain
    valid = _valid_directions(shape, dtype, device)  # (..., 2, H, W): 0 on the last row/col
    classes = _classes(h, w, device)  # the pixels' distances from the border (variances)

    # the VB-EM of ``learn`` maximises the bound (its M-step is the bound's: with the exact
    # weights the scale runs away); "exact" then refits q at the learned parameters
    rule = ["bound" if learn else weights]

    def weights_of(g: torch.Tensor, vg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The weights of the mean's equation and of the precision at ``(D m, Var_q D x)``."""
        if rule[0] == "exact" and isotropic:
            return _exact_weights(g, vg, valid)
        wt = _weights(g, vg, isotropic, valid)
        return wt, wt

    def gradient_weights(wt: torch.Tensor) -> torch.Tensor:
        return wt.unsqueeze(-3) if isotropic else wt

    def apply_q(v: torch.Tensor, wt: torch.Tensor, s2: torch.Tensor, bb: torch.Tensor):
        return adjoint(op.forward(v)) / s2 - div(gradient_weights(wt) * grad(v)) / bb

    def preconditioner(wt: torch.Tensor, s2: torch.Tensor, bb: torch.Tensor):
        if pixelwise:  # the diagonal of Q: cheap, and it follows the weights' variations
            wd = 4 * _pixel_weight(wt, isotropic)
            inv_d = 1.0 / (data_diag / s2 + wd / bb)

            def jacobi(r: torch.Tensor) -> torch.Tensor:
                return r * inv_d

            return jacobi
        wbar = _mean_weight(wt, isotropic, dims)
        c = symbol * (gain_mean / symbol[0, 0]) if not op.is_identity else symbol
        inv = 1.0 / (c / s2 + wbar * mu / bb)

        def prec(r: torch.Tensor) -> torch.Tensor:
            return idct2(dct2(r) * inv)

        return prec

    cache: dict = {}  # the table of stationary variances, rebuilt when sigma or the range moves

    def variances(wt: torch.Tensor, s2: torch.Tensor, bb: torch.Tensor):
        """Locally stationary marginal variances of x and of each gradient component."""
        eff = _pixel_weight(wt, isotropic) / local  # the prior's weight per unit data gain
        tau = eff / bb  # (..., H, W)
        lo, hi = float(tau.min()), float(tau.max())
        cached = cache.get("table")
        if (cached is None or cache["s2"] is not s2 or lo < cache["lo"] or hi > cache["hi"]):
            # a wider range than needed, so that the next sweeps reuse it
            cache.update(table=_stationary_table(lo / 4, hi * 4, spectrum / s2, tau),
                         s2=s2, lo=lo / 4, hi=hi * 4)
        vx, vg = _interpolate(cache["table"], tau, classes)
        vx, vg = vx / local, vg / local.unsqueeze(-3)
        return vx, vg * valid  # vg (..., 2, H, W)

    s2 = sigma**2
    if map_estimate is None:
        map_estimate = op.is_identity
    if init == "auto":
        init = "map" if op.is_identity else "gaussian"
    cg_total = 0
    # --- start: the TV MAP, or a stationary Gaussian posterior's mean -------------------
    x_map = None
    if init == "map":
        m = _tv_map(y, op, sigma, scale, event_dim, isotropic)
        x_map = m
    else:
        # the weight 1 / sqrt(u) with u the mean E|Dx|^2, matched in a few rounds: start
        # from the data's gradient energy less the noise's, then the Gaussian mean's own
        # (its squared gradients plus their stationary variances)
        dy = grad(at_y / gain_mean)
        energy = dy.square().sum(-3).mean(dims, keepdim=True)
        # floors: a quarter of the data's (a blur removes the noise's share too), and a
        # hundredth of the noise's std (zero data)
        u0 = torch.maximum(energy - 4 * s2 / gain_mean, energy / 4 + 1e-4 * s2 / gain_mean)
        m = at_y / gain_mean
        for _ in range(_GAUSSIAN_ROUNDS):
            wt = _weights(torch.zeros_like(dy), (u0 / 2).unsqueeze(-3).expand_as(dy),
                          isotropic, valid)
            rhs = at_y / s2 - apply_q(m, wt, s2, scale)
            delta, cg_it, _, _ = pcg(functools.partial(apply_q, wt=wt, s2=s2, bb=scale), rhs,
                                     precondition=preconditioner(wt, s2, scale), tol=1e-3,
                                     max_iter=max_cg, event_dim=event_dim)
            cg_total += cg_it
            m = m + delta
            _, vg = variances(wt, s2, scale)
            u0 = (grad(m).square() + vg).sum(-3).mean(dims, keepdim=True)
    g = grad(m)
    # the gradients' variances at the start: a stationary field of the MAP's mean weight,
    # then a few sweeps of weights <-> variances at the fixed mean
    u0 = g.square().sum(-3).mean(dims, keepdim=True)  # mean |D m|^2 per image
    wt = _weights(g * 0, (u0 / 2).unsqueeze(-3).expand_as(g), isotropic, valid)
    vx, vg = variances(wt, s2, scale)
    for _ in range(_START_SWEEPS):
        wt, wc = weights_of(g, vg)
        vx, vg = variances(wc, s2, scale)
    history: list[float] = []
    elbos: list[float] = []
    converged = False
    start_scale, start_sigma = scale.clone(), sigma.clone()
    it = 0
    learning = learn
    while it < max_iter:
        it += 1
        wt, wc = weights_of(g, vg)  # the mean's and the precision's weights
        if "scale" in learning:
            u = g.square() + vg
            root = u.sum(-3).sqrt() if isotropic else u.sqrt()
            ml = (root.sum(tuple(range(-event_dim - (0 if isotropic else 1), 0)),
                           keepdim=True).reshape(scale.shape) / dof)
            scale = conf_b * scale0 + (1 - conf_b) * ml
        full = at_y / s2
        # inexact early solves: a tenth of the last sweep's change, down to cg_tol
        inner = max(cg_tol, min(1e-2, 0.1 * history[-1])) if history else 1e-3
        rhs = full - apply_q(m, wt, s2, scale)  # warm start: solve for the correction
        rel = float((_norm(rhs, dims) / _norm(full, dims).clamp_min(1e-300)).max())
        delta, cg_it, _, _ = pcg(functools.partial(apply_q, wt=wt, s2=s2, bb=scale), rhs,
                                 precondition=preconditioner(wt, s2, scale),
                                 tol=min(0.5, inner / max(rel, 1e-300)),
                                 max_iter=max_cg, event_dim=event_dim)
        cg_total += cg_it
        m_new = m + delta
        g = grad(m_new)
        vx, vg = variances(wc, s2, scale)
        if "sigma" in learning:
            resid = (op.forward(m_new) - y).square().sum(dims, keepdim=True)
            wv = _weighted_gradient_variance(wc, vg, isotropic, event_dim)
            trace = (s2 * (n_pixels - wv / scale)).clamp_min(0)
            s2 = conf_s * sigma0**2 + (1 - conf_s) * (resid + trace) / n_obs
        change = float(((m_new - m).square().sum(dims) /
                        m_new.square().sum(dims).clamp_min(1e-30)).sqrt().max())
        if learning:
            change = max(change, float(((scale - start_scale).abs() / scale).max())
                         if "scale" in learning else 0.0,
                         float(((s2.sqrt() - start_sigma).abs() / s2.sqrt()).max())
                         if "sigma" in learning else 0.0)
            start_scale, start_sigma = scale.clone(), s2.sqrt().clone()
        m = m_new
        history.append(change)
        elbos.append(float(_bound(y, op, m, g, vg, vx, s2, scale, wc, isotropic, dims,
                                  n_pixels, n_obs, dof).sum()))
        if change <= tol:
            if learning and weights == "exact" and isotropic:
                learning, rule[0] = (), "exact"  # q at the learned parameters
                continue
            converged = True
            break
    if not converged:
        warnings.warn(
            f"variational TV stopped at max_iter={max_iter} with a relative change of "
            f"{history[-1]:.2e} > tol={tol:g}",
            ConvergenceWarning, stacklevel=3,
        )
    if not map_estimate:
        x_map = None
    elif learn or x_map is None:  # the MAP at the final parameters
        x_map = _tv_map(y, op, s2.sqrt(), scale, event_dim, isotropic,
                        init=x_map if x_map is not None else m)
    samples = None
    if num_samples:
        samples = _draws(m, num_samples, generator, lambda v: apply_q(v, wc, s2, scale),
                         preconditioner(wc, s2, scale), adjoint, y.shape,
                         s2.sqrt(), scale, wc, isotropic, event_dim, cg_tol, max_cg)
    return TVVariational(mean=m, std=vx.clamp_min(0).sqrt(), map=x_map, samples=samples,
                         sigma=s2.sqrt(), scale=scale, weights=wc, iterations=it,
                         converged=converged, history=tuple(history),
                         cg_iterations=cg_total, elbo=tuple(elbos), mean_weights=wt)


# --- pieces ---------------------------------------------------------------------------


def _tv_map(y, op, sigma, scale, event_dim, isotropic, init=None) -> torch.Tensor:
    """The TV MAP (the VB iteration's starting mean) at a relative gap of 1e-4 for ``A = I``
    (the fast accelerated solver), 1e-3 with an operator (its certificate costs 3x more
    iterations per decade there)."""
    from .tv import tv_map_pdhg

    lam = 2 * sigma**2 / scale  # lambda, one per image: batch + (1,) * event_dim
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        x, _ = tv_map_pdhg(y, lam, None if op.is_identity else op, isotropic=isotropic,
                           event_dim=event_dim, tol=1e-4 if op.is_identity else 1e-3,
                           init=None if op.is_identity else init)
    return x.detach()


def _norm(x: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    return x.square().sum(dims, keepdim=True).sqrt()


def _weights(g: torch.Tensor, vg: torch.Tensor, isotropic: bool,
             valid: torch.Tensor) -> torch.Tensor:
    """``1 / sqrt(E |g|^2)`` per pixel (isotropic) or per component; 0 where no difference
    exists (the last row / column), where the weight multiplies nothing."""
    u = g.square() + vg
    if isotropic:
        u, valid = u.sum(-3), valid.amax(-3)
    tiny = torch.finfo(u.dtype).tiny ** 0.5
    return torch.where(valid > 0, 1.0 / u.clamp_min(tiny).sqrt(), torch.zeros_like(u))


def _exact_weights(g: torch.Tensor, vg: torch.Tensor,
                   valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The weights of the stationary point of the exact Gaussian ELBO (isotropic TV).

    With ``(D x)_i ~ N(mu, v I)`` under ``q`` (``v`` the mean of the components' variances),
    ``|D x|_i / sqrt(v)`` is Rice-distributed with ``nu = |mu| / sqrt(v)``, and the mean's
    equation ``E_q grad U = 0`` and the precision ``E_q grad^2 U`` (Opper & Archambeau 2009)
    take the weights, with ``z = nu^2 / 4`` and ``I_k`` the modified Bessel functions,

    .. math::

        w^{mean} = \frac{E_q[(Dx)_i / |Dx|_i] \cdot \hat\mu}{|\mu|}
        = \sqrt{\frac{\pi}{8 v}} e^{-z} (I_0(z) + I_1(z)), \qquad
        w^{prec} = \frac{1}{2} E_q \frac{1}{|Dx|_i} = \sqrt{\frac{\pi}{8 v}} e^{-z} I_0(z),

    the latter the isotropic part (half the trace) of ``E_q`` of the Hessian
    ``(I - \hat g \hat g^T) / |g|``. Pixels with one difference (last row or column):
    ``w^{mean} = erf(|t| / sqrt 2) / |mu|``, ``w^{prec} = 2 phi(t) / sqrt(v)``,
    ``t = mu / sqrt(v)``. Returns ``(w^{mean}, w^{prec})``; 0 where no difference exists.
    """
    n = valid.sum(-3)
    v = (vg * valid).sum(-3) / n.clamp_min(1)
    tiny = torch.finfo(v.dtype).tiny ** 0.5
    root = v.clamp_min(tiny).sqrt()
    g2 = (g * valid).square().sum(-3)
    z = g2 / (4 * root.square())
    c = math.sqrt(math.pi / 8)
    i0 = torch.special.i0e(z)
    w_mean2, w_prec2 = c * (i0 + torch.special.i1e(z)) / root, c * i0 / root
    t = g2.sqrt() / root
    small = t < 1e-4
    w_mean1 = torch.where(small, math.sqrt(2 / math.pi) / root,
                          torch.special.erf(t / math.sqrt(2)) / (t * root).clamp_min(tiny))
    w_prec1 = math.sqrt(2 / math.pi) * torch.exp(-t.square() / 2) / root
    zero = torch.zeros_like(v)
    two, one = n > 1.5, (n > 0.5) & (n < 1.5)
    w_mean = torch.where(two, w_mean2, torch.where(one, w_mean1, zero))
    w_prec = torch.where(two, w_prec2, torch.where(one, w_prec1, zero))
    return w_mean, w_prec


def _pixel_weight(wt: torch.Tensor, isotropic: bool) -> torch.Tensor:
    """The mean weight of the four differences that touch each pixel (stationary reading)."""
    if not isotropic:  # (..., 2, H, W): row and column differences
        rows, cols = wt[..., 0, :, :], wt[..., 1, :, :]
        # the previous row's / column's weight (replicated at the first): any number of
        # leading dimensions (F.pad's replicate mode refused a single image)
        up = torch.cat([rows[..., :1, :], rows[..., :-1, :]], dim=-2)
        left = torch.cat([cols[..., :, :1], cols[..., :, :-1]], dim=-1)
        return (rows + up + cols + left) / 4
    up = torch.cat([wt[..., :1, :], wt[..., :-1, :]], dim=-2)
    left = torch.cat([wt[..., :, :1], wt[..., :, :-1]], dim=-1)
    return (2 * wt + up + left) / 4


def _mean_weight(wt: torch.Tensor, isotropic: bool, dims: tuple[int, ...]) -> torch.Tensor:
    """The weights' mean per image (the preconditioner's stationary weight)."""
    if isotropic:
        return wt.mean(dims, keepdim=True)
    return wt.mean(-3).mean(dims, keepdim=True)


def _stationary_table(lo: float, hi: float, data: torch.Tensor, like: torch.Tensor):
    r"""Marginal variances of a stationary Neumann field, per distance from the border.

    The field has precision ``data + t mu`` in the DCT basis (``mu = mu_r + mu_c`` the
    Neumann Laplacian's eigenvalues), ``t`` on a log grid covering ``lo`` to ``hi`` with
    nodes on the lattice ``exp(k * _LOG_STEP)``; ``data`` is ``(..., hs, ws)`` (one spectrum
    per image, or one for all). A pixel's variance is its DCT basis functions' squares
    weighted by ``1 / (data + t mu)``: away from the border the spectral mean, within
    ``_BORDER`` pixels of it (where the field has fewer neighbours) a separable correction,

    .. math::

        n \phi_k(i)^2 = 1 + \cos(\theta_k (2 i + 1)), \qquad
        n (\phi_k(i + 1) - \phi_k(i))^2 = \mu_k (1 - \cos(2 \theta_k (i + 1))),

    (``k > 0``, ``theta_k = pi k / hs``; ``i`` the distance from the nearest border, the
    same at both ends by symmetry). Returns ``(log lo, log hi, table)`` with the table
    ``(images, 3, classes, grid)``: ``Var x``, ``Var`` of the row and of the column
    differences, per class ``row_class * (_BORDER + 1) + col_class`` (:func:`_classes`).
    """
    la, lb = math.log(max(lo, 1e-30)), math.log(max(hi, 1e-30))
    step = _LOG_STEP
    while (lb - la) / step + 2 > _MAX_NODES:
        step *= 2
    k0, k1 = math.floor(la / step), math.ceil(lb / step)
    k1 = max(k1, k0 + 1)
    a, b = k0 * step, k1 * step
    opts = dict(dtype=like.dtype, device=like.device)
    t = (torch.arange(k0, k1 + 1, dtype=torch.float64) * step).exp().to(**opts)
    hs, ws = data.shape[-2:]
    theta_r = torch.arange(hs, **opts) * math.pi / hs
    theta_c = torch.arange(ws, **opts) * math.pi / ws
    mu_r = (4 * torch.sin(theta_r / 2) ** 2)[:, None]
    mu_c = (4 * torch.sin(theta_c / 2) ** 2)[None, :]
    data = data.reshape(-1, hs, ws)
    inv = 1.0 / (data[:, None] + t[None, :, None, None] * (mu_r + mu_c))  # (images, grid, ..)
    fr, gr = _border_factors(theta_r)
    fc, gc = _border_factors(theta_c)
    n_freq = hs * ws

    def sep(v: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        out = torch.einsum("ngkl,ak,bl->nabg", v, rows, cols) / n_freq
        return out.reshape(out.shape[0], -1, out.shape[-1])  # (images, classes, grid)

    table = torch.stack([sep(inv, fr, fc), sep(inv * mu_r, gr, fc), sep(inv * mu_c, fr, gc)],
                        dim=1)  # (images, 3, classes, grid)
    return a, b, table


def _border_factors(theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per distance from the border (``0 .. _BORDER``; farther pixels read ``_BORDER``): the
    factors of the pixel's and of its difference's variance at each frequency ``theta``
    (see :func:`_stationary_table`)."""
    d = torch.arange(_BORDER + 1, dtype=theta.dtype, device=theta.device)[:, None]
    f = 1 + torch.cos(theta[None, :] * (2 * d + 1))
    g = 1 - torch.cos(2 * theta[None, :] * (d + 1))
    f[:, 0], g[:, 0] = 1.0, 1.0  # the constant basis function: 1 / n everywhere
    return f, g


def _classes(h: int, w: int, device) -> torch.Tensor:
    """``(3, H * W)`` classes (see :func:`_stationary_table`) of ``Var x`` and of the row and
    the column differences' variances at each pixel: the distances from the nearest border
    (of the pixel, or of the difference), capped at ``_BORDER``."""
    def dist(n: int, diff: bool) -> torch.Tensor:
        i = torch.arange(n, device=device)
        far = (n - 2 if diff else n - 1) - i
        return torch.minimum(i, far.clamp_min(0)).clamp_max(_BORDER)

    c = _BORDER + 1
    rx, rd, cx, cd = dist(h, False), dist(h, True), dist(w, False), dist(w, True)
    return torch.stack([(rx[:, None] * c + cx[None, :]).reshape(-1),
                        (rd[:, None] * c + cx[None, :]).reshape(-1),
                        (rx[:, None] * c + cd[None, :]).reshape(-1)])


def _interpolate(table, tau, classes):
    """Linear interpolation in ``log tau`` of the tabulated variances, each pixel reading the
    row of its border class (``classes``: ``(3, H * W)``)."""
    a, b, values = table
    n_tables, _, n_cls, n_grid = values.shape
    pos = ((tau.clamp_min(1e-30).log() - a) * ((n_grid - 1) / (b - a))).clamp(0, n_grid - 1)
    j = pos.floor().clamp(max=n_grid - 2)
    frac = (pos - j).reshape(n_tables, -1)
    j = j.long().reshape(n_tables, -1)
    hw = classes.shape[-1]
    reps = j.shape[-1] // hw  # batch images sharing one table
    out = []
    for q in range(3):
        idx = classes[q].repeat(reps)[None, :] * n_grid + j  # (tables, pixels)
        flat = values[:, q].reshape(n_tables, n_cls * n_grid)
        lo, hi = flat.gather(1, idx), flat.gather(1, idx + 1)
        out.append((lo + frac * (hi - lo)).reshape(tau.shape))
    return out[0], torch.stack(out[1:], dim=-3)


def _valid_directions(shape, dtype, device) -> torch.Tensor:
    """1 where a difference exists, 0 on the last row (rows) and the last column (columns)."""
    h, w = shape[-2:]
    v = torch.ones((2, h, w), dtype=dtype, device=device)
    v[0, -1, :] = 0
    v[1, :, -1] = 0
    return v


def _local_gain(g: torch.Tensor) -> torch.Tensor:
    """The data gain a pixel's variance sees: its own, averaged half and half with the mean
    of its 3 x 3 neighbourhood (replicated borders)."""
    h, w = g.shape[-2:]
    flat = F.pad(g.reshape(-1, 1, h, w), (1, 1, 1, 1), mode="replicate")
    box = F.avg_pool2d(flat, 3, stride=1).reshape(g.shape)
    return _OWN * g + (1 - _OWN) * box


def _weighted_gradient_variance(wt, vg, isotropic, event_dim) -> torch.Tensor:
    """``sum_i w_i Var((Dx)_i)`` per image (``tr(D^T W D Q^{-1})``)."""
    if isotropic:
        per = wt * vg.sum(-3)
    else:
        per = (wt * vg).sum(-3)
    return per.sum(tuple(range(-event_dim, 0)), keepdim=True)


def _bound(y, op, m, g, vg, vx, s2, scale, wt, isotropic, dims, n, n_obs, dof):
    """The evidence lower bound of the fitted ``q`` (up to a constant), one per image."""
    resid = (op.forward(m) - y).square().sum(dims, keepdim=True)
    wv = _weighted_gradient_variance(wt, vg, isotropic, len(dims))
    trace = (s2 * (n - wv / scale)).clamp_min(0)
    u = g.square() + vg
    root = u.sum(-3).sqrt() if isotropic else u.sqrt()
    tv = root.sum(tuple(range(-len(dims) - (0 if isotropic else 1), 0)), keepdim=True)
    entropy = 0.5 * vx.clamp_min(1e-300).log().sum(dims, keepdim=True)
    return (-(resid + trace) / (2 * s2) - 0.5 * n_obs * s2.log() - tv.reshape(scale.shape)
            / scale - dof * scale.log() + entropy).reshape(-1)


def _draws(m, num, generator, apply, prec, adjoint, obs_shape, sigma, scale, wt, isotropic,
           event_dim, tol, max_iter) -> torch.Tensor:
    """Exact draws of ``N(m, Q^{-1})`` by perturb-and-optimise (one batched PCG solve)."""
    gen = generator if generator is not None else torch.Generator(device=m.device)
    dtype = m.dtype
    e1 = torch.randn((num,) + tuple(obs_shape), generator=gen, dtype=dtype,
                     device=gen.device).to(m.device)
    e2 = torch.randn((num,) + tuple(m.shape[:-2]) + (2,) + tuple(m.shape[-2:]), generator=gen,
                     dtype=dtype, device=gen.device).to(m.device)
    root = wt.sqrt().unsqueeze(-3) if isotropic else wt.sqrt()
    rhs = adjoint(e1) / sigma - div(root * e2) / scale.sqrt()  # covariance Q
    delta, _, _, _ = pcg(apply, rhs, precondition=prec, tol=tol, max_iter=max_iter,
                         event_dim=event_dim)
    return m + delta
