"""Empirical Bayes for the Gaussian-gradient prior: the scale that maximises the evidence (in
closed form where the operator shares the prior's DCT-II basis, by PCG for any operator)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from bayes_restore._validation import as_float, check_positive, check_seed
from bayes_restore.differences import dct2, div, grad, laplacian_eigenvalues
from bayes_restore.exceptions import ConvergenceWarning
from bayes_restore.infer.gaussian_spectral import dct_aliasing, observed_prior_gain
from bayes_restore.infer.pcg import dct_preconditioner, pcg
from bayes_restore.operators import LinearOperator

from ._common import golden, image_tensor

__all__ = ["gaussian_empirical_bayes", "EVIDENCE_METHODS", "EVIDENCE_PROBES"]

#: ``method=`` of :func:`gaussian_empirical_bayes`
EVIDENCE_METHODS = ("auto", "spectral", "pcg")
#: perturb-and-optimise probes of the posterior's trace term on the PCG path (drawn once and
#: shared by every scale tried, so that the evidence's slope is a smooth function of it)
EVIDENCE_PROBES = 8
#: relative residual of the PCG solves (the slope needs the energies to ~1e-4)
PCG_TOL = 1e-6


def gaussian_empirical_bayes(
    y: Any,
    sigma: float | None = None,
    *,
    operator: LinearOperator | None = None,
    method: str = "auto",
    num_probes: int = EVIDENCE_PROBES,
    seed: int | None = 0,
    tol: float = 1e-3,
) -> tuple[float, float]:
    r"""Empirical Bayes for the Gaussian-gradient prior: ``(sigma, b)`` maximising the evidence.

    In the DCT basis the coefficients of ``y = x + n`` are independent,
    ``y_hat_kl ~ N(0, sigma^2 + b^2 / mu_kl)`` for ``mu_kl > 0``
    (:func:`~bayes_restore.infer.gaussian.gaussian_log_evidence`); with an operator that
    shares that basis (a reflective blur by a symmetric kernel, a box decimation whose
    factor divides the image) those of ``y = A x + n`` are too,
    ``y_hat_k' ~ N(0, sigma^2 + b^2 nu_k')``, ``nu = 1 / mu`` for ``A = I``. With the ratio
    ``r = b^2 / sigma^2`` fixed, the best ``sigma^2`` is explicit,
    ``mean_k'(y_hat_k'^2 / (1 + r nu_k'))``, so the joint maximisation is a 1-D search
    over ``log r`` (a log-grid, then golden sections); with ``sigma`` given, a 1-D search
    over ``log b``. One ``(sigma, b)`` for the whole input: the channels and images of
    ``y`` share them, as in :func:`~bayes_restore.denoise`.

    Any other operator (a mask, a periodic blur, a Gaussian decimation, one of the user's
    own) takes the PCG path: the evidence is stationary in ``b`` where the posterior
    expectation of the prior's energy matches its degrees of freedom (Fisher's identity,
    ``d log p(y | b) / d log b = E[|grad x|^2 | y] / b^2 - (N - 1)`` per image), and that
    expectation is ``|grad m|^2 + tr(L Q^-1)``: the posterior mean ``m`` by PCG and the
    trace by ``num_probes`` Hutchinson probes ``D^T z`` (PCG solves), with the
    preconditioner's DCT-diagonal ``M`` as a control variate (``tr(L M^-1)`` is exact), the
    same probes for every ``b`` tried, so the stationarity condition is a smooth function
    of ``log b`` whose root a bracketing search finds. With ``sigma`` unknown the search runs on the
    ratio ``r = b^2 / sigma^2``, the best ``sigma`` for each ratio being explicit,
    ``sigma^2 = (|y - A m|^2 + |grad m|^2 / r) / (M - 1)`` per image (``M`` observed
    values: a mask's observed pixels). Jointly, ``sigma`` and ``b`` trade along a flat
    ridge of the evidence and the probes' error moves the answer along it (a 50 % mask on
    48 x 48: ``sigma`` 14 % high with 16 probes): give ``sigma`` when it is known or
    estimated (:func:`~bayes_restore.hyper.estimate_observation_sigma`, as
    :func:`~bayes_restore.restore` does).

    Parameters
    ----------
    y : numpy.ndarray or torch.Tensor
        Observation(s), shape ``(H, W)``, ``(C, H, W)`` or ``(N, C, H, W)``.
    sigma : float, optional
        Known noise level; estimated jointly with ``b`` when ``None``.
    operator : LinearOperator, optional
        ``A`` (``None``: the identity).
    method : {"auto", "spectral", "pcg"}, default "auto"
        ``"spectral"``: the closed form (``ValueError`` for an operator without one);
        ``"pcg"``: the stationarity condition by PCG, for any operator; ``"auto"``: the
        closed form where it exists, else PCG.
    num_probes : int, default 8
        Draws for the trace term (PCG path).
    seed : int or None, default 0
        Seeds the draws (PCG path); ``None`` draws fresh ones.
    tol : float, default 1e-3
        Accuracy of ``log b`` (PCG path).

    Returns
    -------
    sigma : float
        The given or the maximum-evidence noise level.
    scale : float
        The maximum-evidence prior scale ``b``; the MAP weight is ``sigma^2 / b^2``.

    Raises
    ------
    ValueError
        For a bad image, ``sigma``, ``method``, ``num_probes`` or ``tol`` (naming it), an
        image without non-constant modes, ``method="spectral"`` with an operator without a
        closed-form evidence, or an operator that does not observe the constant image.

    Examples
    --------
    >>> import torch
    >>> from bayes_restore.differences import idct2, laplacian_eigenvalues
    >>> from bayes_restore.operators import Downsample
    >>> g = torch.Generator().manual_seed(0)
    >>> mu = laplacian_eigenvalues(128, 128)
    >>> z = torch.randn(128, 128, generator=g, dtype=torch.float64)
    >>> x = idct2(torch.where(mu > 0, 0.02 * z / mu.clamp_min(1e-12).sqrt(), 0 * z))
    >>> y = x + 0.1 * torch.randn(128, 128, generator=g, dtype=torch.float64)
    >>> s, b = gaussian_empirical_bayes(y)
    >>> round(s, 2), round(b, 2)
    (0.1, 0.02)
    >>> op = Downsample(2)
    >>> y2 = op.forward(x) + 0.01 * torch.randn(64, 64, generator=g, dtype=torch.float64)
    >>> s, b = gaussian_empirical_bayes(y2, operator=op)
    >>> round(s, 3), round(b, 2)
    (0.01, 0.02)
    >>> from bayes_restore.operators import Mask  # no closed form: the PCG path
    >>> y3 = Mask(torch.rand(32, 32, generator=g) < 0.5)(x[:32, :32])
    >>> s, b = gaussian_empirical_bayes(y3, 1e-3, operator=Mask(y3 != 0))
    >>> round(b, 2)
    0.02
    """
    t, _ = image_tensor(y)
    if method not in EVIDENCE_METHODS:
        raise ValueError(f"method must be one of {EVIDENCE_METHODS}, got {method!r}")
    if isinstance(num_probes, bool) or not isinstance(num_probes, int) or num_probes < 1:
        raise ValueError(f"num_probes must be a positive integer, got {num_probes!r}")
    if not (isinstance(tol, (int, float)) and 0 < tol < 1):
        raise ValueError(f"tol must be in (0, 1), got {tol!r}")
    seed = check_seed(seed)
    if sigma is not None:
        check_positive(sigma, "sigma")
        sigma = as_float(sigma, "sigma")
    closed = operator is None or operator.is_identity or dct_aliasing(
        operator, tuple(operator.input_shape(tuple(t.shape[-2:]))),
        torch.zeros((), dtype=torch.float64)) is not None
    if method == "pcg" or (method == "auto" and not closed):
        from bayes_restore.operators import as_operator

        return _pcg_evidence(t.detach().to(torch.float64), sigma, as_operator(operator),
                             num_probes, seed, tol)
    c2, nu = _dct_power(t.detach().to(torch.float64), operator)
    if c2.numel() == 0:
        raise ValueError("y must have at least two pixels per image (a non-constant mode)")
    if sigma is not None:
        s2 = sigma**2

        def neg_evidence_b(log_b: float) -> float:
            var = s2 + math.exp(2 * log_b) * nu
            return float(0.5 * (c2 / var + torch.log(var)).sum())

        scale = math.exp(_minimise_1d(neg_evidence_b, _log_range(c2, nu)))
        return math.sqrt(s2), scale

    def profile(log_r: float) -> tuple[float, float]:
        v = 1 + math.exp(log_r) * nu
        s2 = float((c2 / v).mean())
        return 0.5 * (c2.numel() * math.log(s2) + float(torch.log(v).sum())), s2

    log_r = _minimise_1d(lambda t: profile(t)[0], _log_ratio_range(nu))
    s2 = profile(log_r)[1]
    return math.sqrt(s2), math.sqrt(s2 * math.exp(log_r))


def _dct_power(
    y: torch.Tensor, operator: LinearOperator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared DCT coefficients of every 2-D slice and their prior gains ``nu``, constant out.

    ``y_hat ~ N(0, sigma^2 + b^2 nu)``: ``nu = 1 / mu`` for ``A = I``, from the operator's
    aliasing in the DCT-II basis otherwise.
    """
    h, w = y.shape[-2:]
    if operator is None or operator.is_identity:
        mu = laplacian_eigenvalues(h, w, dtype=y.dtype, device=y.device)
        keep = mu > 0
        nu = 1.0 / torch.where(keep, mu, torch.ones_like(mu))
    else:
        nu = observed_prior_gain(operator, y)
        keep = torch.ones_like(nu, dtype=torch.bool)
        keep[0, 0] = False
    c2 = dct2(y).square().reshape(-1, h, w)
    return c2[:, keep].reshape(-1), nu[keep].expand(c2.shape[0], -1).reshape(-1)


def _log_range(c2: torch.Tensor, nu: torch.Tensor) -> tuple[float, float]:
    """A bracket for ``log b`` wide enough for any image: from the data's own spread."""
    seen = nu > 0
    spread = float((c2[seen] / nu[seen]).mean().clamp_min(1e-300)) if bool(seen.any()) else 1.0
    centre = 0.5 * math.log(spread)
    return centre - 25.0, centre + 10.0


def _log_ratio_range(nu: torch.Tensor) -> tuple[float, float]:
    seen = nu[nu > 0]
    if seen.numel() == 0:
        return -20.0, 20.0
    return -math.log(float(seen.max())) - 20.0, -math.log(float(seen.min())) + 20.0


def _minimise_1d(
    f: Callable[[float], float], bounds: tuple[float, float], *, num: int = 41, xtol: float = 1e-6
) -> float:
    """Global-ish 1-D minimiser: the best point of a grid, refined by golden sections."""
    grid = np.linspace(bounds[0], bounds[1], num)
    values = [f(float(t)) for t in grid]
    i = int(np.argmin(values))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, num - 1)]
    return golden(f, float(lo), float(hi), xtol=xtol)[0]



def _pcg_evidence(y, sigma, op, num_probes, seed, tol) -> tuple[float, float]:
    """The PCG path of :func:`gaussian_empirical_bayes` (``y`` float64)."""
    shape = tuple(y.shape[:-2]) + tuple(op.input_shape(tuple(y.shape[-2:])))
    slices = math.prod(shape[:-2])
    dof = slices * (shape[-2] * shape[-1] - 1)  # the constant of each image: flat prior
    if dof < 1:
        raise ValueError("y must have at least two pixels per image (a non-constant mode)")
    observed = op.num_observed(tuple(y.shape))
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    z = torch.randn((num_probes,) + shape[:-2] + (2,) + shape[-2:], generator=generator,
                    dtype=torch.float64).to(y.device)
    probes = -div(z)  # D^T z: E[r^T Q^-1 r] = tr(D Q^-1 D^T) = tr(L Q^-1)
    mu = laplacian_eigenvalues(shape[-2], shape[-1], dtype=y.dtype, device=y.device)
    aty = op.adjoint_as(y, shape)
    dims = tuple(range(1, len(shape) + 1))

    warm: dict[int, torch.Tensor] = {}  # the last solution per batch size: a warm start

    def solve(s: float, b: float, rhs: torch.Tensor):
        def apply_q(v: torch.Tensor) -> torch.Tensor:
            return op.adjoint_as(op.forward(v), v.shape) / s**2 - div(grad(v)) / b**2

        prec = dct_preconditioner(op, tuple(rhs.shape), s, b, y)
        x, _, res, _ = pcg(apply_q, rhs, precondition=prec, tol=PCG_TOL, max_iter=5000,
                           x0=warm.get(rhs.shape[0]))
        warm[rhs.shape[0]] = x
        if float(res.max()) > 10 * PCG_TOL:
            warnings.warn(f"PCG reached a relative residual of {float(res.max()):.1e} only "
                          f"(sigma {s:.3g}, b {b:.3g}); the evidence's scale may be off",
                          ConvergenceWarning, stacklevel=4)
        return x, prec

    def energy(s: float, b: float) -> float:
        """``E[|grad x|^2 | y] = |grad m|^2 + tr(L Q^-1)`` at ``(sigma, b)``: the trace by
        Hutchinson's probes ``D^T z`` with the DCT-diagonal ``M`` as control variate
        (``tr(L M^-1)`` exact; high frequencies, where ``Q ~ M``, then add no noise)."""
        x, prec = solve(s, b, torch.cat([(aty / s**2)[None], probes]))
        inv_m = prec.inverse_diagonal
        exact = float((mu * inv_m[0]).expand(shape).sum())
        quad = (probes * x[1:]).sum(dims) - (dct2(probes).square() * inv_m[1:]).sum(dims)
        return float(grad(x[0]).square().sum()) + exact + float(quad.mean())

    def sigma_of(log_r: float) -> tuple[float, float]:
        """The best ``(sigma, b)`` on the ray ``b^2 = r sigma^2`` (the mean needs only r)."""
        r = math.exp(log_r)
        m = solve(1.0, math.sqrt(r), aty[None])[0][0]
        resid = float((y - op.forward(m)).square().sum())
        s2 = (resid + float(grad(m).square().sum()) / r) / max(observed - slices, 1)
        return math.sqrt(s2), math.sqrt(r * s2)

    if sigma is not None:
        def slope(t: float) -> float:  # the EM step from log b = t, minus t
            return 0.5 * math.log(energy(sigma, math.exp(t)) / dof) - t

        start = 0.5 * math.log(max(float(grad(aty).square().sum()) / dof, 1e-300))
        t = _stationary(slope, start, tol, (start - 15.0, start + 15.0))
        return sigma, math.exp(t)

    def slope_r(log_r: float) -> float:
        s, b = sigma_of(log_r)
        return 0.5 * math.log(energy(s, b) / dof) - math.log(b)

    log_r = _stationary(slope_r, 0.0, tol, (-25.0, 25.0))
    return sigma_of(log_r)


def _stationary(slope: Callable[[float], float], start: float, tol: float,
                bounds: tuple[float, float]) -> float:
    """A root of ``slope`` (an EM step's length in ``log b``, decreasing through 0 at the
    evidence's maximum) within ``bounds``: an EM step, then secant steps aimed 20 % past the
    root (at most ``e^4`` at a time) bracket it; then Brent's method. A bound is returned,
    with a warning, when the slope keeps its sign up to it (the evidence is largest there)."""
    from scipy.optimize import brentq

    seen: dict[float, float] = {}

    def cached(t: float) -> float:  # Brent evaluates the bracket's ends again
        if t not in seen:
            seen[t] = slope(t)
        return seen[t]

    lo_bound, hi_bound = bounds
    a = min(max(start, lo_bound), hi_bound)
    fa = cached(a)
    d = fa
    for _ in range(60):
        if fa == 0.0:
            return a
        b = min(max(a + math.copysign(min(max(abs(d), 1e-3), 4.0), fa), lo_bound), hi_bound)
        fb = cached(b)
        if (fb > 0) != (fa > 0) or fb == 0.0:
            lo, hi = (a, b) if a < b else (b, a)
            return b if fb == 0.0 else float(brentq(cached, lo, hi, xtol=tol))
        if b in bounds:
            warnings.warn(f"the evidence still grows at the end of the search (log b or "
                          f"log b^2/sigma^2 = {b:.1f}): its maximum may lie beyond",
                          ConvergenceWarning, stacklevel=4)
            return b
        # the secant's root, aimed 20 % past it; twice the last step when it points back
        d = -fb * (b - a) / (fb - fa) if fb != fa else 2 * (b - a)
        d = 1.2 * d if math.isfinite(d) and d * fb > 0 else 2 * (b - a)
        a, fa = b, fb
    raise RuntimeError("the evidence's stationary point was not bracketed in 60 steps")
