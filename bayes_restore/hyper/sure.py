"""The TV weight by Stein's unbiased risk estimate (SURE) of the ROF denoiser's error."""

from __future__ import annotations

import math
import time
from typing import Any

import torch

from bayes_restore._validation import as_float, check_positive
from bayes_restore.infer.tv import tv_denoise_pdhg

from ._common import golden, tv_problem
from .estimate import ScaleEstimate, make_estimate

__all__ = ["tv_weight_sure", "tv_sure_risk"]

#: seed of SURE's Monte Carlo probe when no generator is given
_SURE_PROBE_SEED = 0
#: the GCV cap looks at the SURE weight and down to 2^-_GCV_OCTAVES of it
_GCV_OCTAVES = 6
#: ... and applies when GCV's fit implies a noise std below this fraction of sigma
_GCV_SIGMA_RATIO = 0.7
#: the sigma_low guard halves the weight at most this many times below SURE's evaluations
_GUARD_OCTAVES = 12
#: ... and leaves SURE's weight alone when its estimated risk is below this fraction of
#: sigma^2 (a large estimated gain: a piecewise-smooth image; the 52 sweep cases that came
#: out worse than the input had 0.32 to 0.89)
_GUARD_TRUST = 0.25


def tv_weight_sure(
    y: Any,
    sigma: float,
    *,
    isotropic: bool = True,
    bounds: tuple[float, float] = (0.1, 4.0),
    rtol: float = 0.03,
    tol: float = 1e-3,
    eps: float | None = None,
    dtype: torch.dtype = torch.float32,
    generator: torch.Generator | None = None,
    gcv_cap: bool = False,
    sigma_low: float | None = None,
) -> ScaleEstimate:
    r"""TV weight minimising Stein's unbiased risk estimate, with a Monte Carlo divergence.

    For the ROF denoiser ``f_w(y) = argmin_x 0.5 |x - y|^2 + w TV(x)``,

    .. math::

        \mathrm{SURE}(w) = \frac{1}{N}\Big(|y - f_w(y)|^2 - N \sigma^2
                           + 2 \sigma^2 \operatorname{div} f_w(y)\Big),
        \qquad
        \operatorname{div} f_w(y) \approx \frac{1}{\varepsilon}
            \langle b, f_w(y + \varepsilon b) - f_w(y) \rangle

    is an unbiased estimate of the per-pixel MSE ``|f_w(y) - x|^2 / N`` (Stein 1981;
    the divergence by one Rademacher probe ``b``, Ramani, Blu & Unser 2008). Both images
    go through one batched :func:`~bayes_restore.infer.tv.tv_denoise_pdhg` call, so they
    see the same iterations: the divergence is that of the map actually computed.
    ``SURE`` is minimised over ``log w`` by golden sections on ``sigma * bounds``
    (about 10 solves); the bracket is widened when the minimum sits at an end.

    SURE is only as good as ``sigma``. An over-estimated noise level (clean texture as
    strong as the noise, at low noise levels) makes it choose too large a weight, which
    erases the texture: worse than the noisy input. With ``gcv_cap`` (off by default: it
    also lowers many correct weights, see the Parameter-free restoration page), generalised
    cross-validation, which needs no ``sigma``, is evaluated with the same probe at the
    SURE weight and at 1/2, 1/4, ... 1/64 of it (7 more solves); its minimiser is taken
    instead of SURE's when it is smaller *and* the noise its fit implies,
    ``|y - f|^2 / (N - div f)``, is below ``(0.7 sigma)^2``: ``sigma`` was over-estimated.
    Where ``sigma`` is right SURE is kept (it is the better criterion then).

    ``sigma_low`` is the other guard against an over-estimated ``sigma`` (what
    :func:`choose_tv_weight` uses when it estimates the noise level): a lower noise level
    that is still plausible. ``SURE`` is affine in ``sigma^2``, so from the same solves the
    estimated gain over the noisy input at any noise level ``s`` is
    ``G(w; s) = 2 s^2 (1 - div f_w / N) - |y - f_w|^2 / N``. The weight is kept if
    ``G(w; sigma_low) >= 0``: the result beats the input even if the noise is only
    ``sigma_low``, and also when SURE's estimated risk is below ``0.25 sigma^2`` (a large
    estimated gain, as on piecewise-smooth images, where TV's gain survives a moderately
    over-estimated ``sigma``: on the sweep, the cases made worse than the input all had
    ``0.32 sigma^2`` or more, and guarding below that cost sharp-edged images up to 5 dB).
    Otherwise the largest weight below SURE's that meets it is found by
    bisection on ``log w`` (SURE decreases up to its minimum, so this is the best weight
    that is safe at both noise levels): about 5-8 more solves. Small weights always meet
    it (``G > 0`` as ``w -> 0``); if none down to ``2^-12`` of SURE's does, that one is
    taken (practically the input).

    Parameters
    ----------
    y : numpy.ndarray or torch.Tensor
        Noisy image(s) ``(H, W)``, ``(C, H, W)`` or ``(N, C, H, W)``: one weight for all
        (each channel has its own TV, as the package's prior).
    sigma : float
        Noise standard deviation (e.g. from :func:`estimate_sigma`).
    isotropic : bool, default True
    bounds : (float, float), default (0.1, 4.0)
        Initial search bracket for ``w / sigma`` (the best ``w / sigma`` of natural
        images lies in 0.3-1.5).
    rtol : float, default 0.03
        Relative precision of the weight (PSNR is flat to 0.01 dB within +-5 %).
    tol : float, default 1e-3
        Relative primal-dual gap of the solves (1e-3 and 1e-4 pick the same weights).
    eps : float, optional
        Finite-difference step; ``2 sigma / N^0.3`` by default (Deledalle et al. 2014).
    dtype : torch.dtype, default torch.float32
        Precision of the solves (float32 is twice as fast; the risk is summed in float64).
    generator : torch.Generator, optional
        Source of the probe ``b``; by default a fixed seed, so that the same image always
        gets the same weight (and ``restore`` / ``denoise`` the same result).
    gcv_cap : bool, default False
        Cap the weight by generalised cross-validation (above).
    sigma_low : float, optional
        A plausible lower noise level (above): the weight must also be an estimated
        improvement on the input at it. ``None`` (default) or ``>= sigma``: SURE's weight.

    Returns
    -------
    ScaleEstimate
        ``method="sure"``; ``trace["weights"]`` (scikit-image units) and
        ``trace["risks"]``, ``trace["sure_weight"]`` (SURE's own choice); with
        ``gcv_cap``, ``trace["gcv"]`` (weight -> GCV) and ``trace["capped"]``; with
        ``sigma_low``, ``trace["sigma_low"]`` and ``trace["guarded"]`` (the weight was
        lowered); ``x`` the MAP at the chosen weight.

    References
    ----------
    S. Ramani, T. Blu, M. Unser, "Monte-Carlo SURE: a black-box optimization of
    regularization parameters for general denoising algorithms", IEEE TIP 17(9), 2008.

    Examples
    --------
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> clean = torch.zeros(64, 64); clean[16:48, 16:48] = 1.0
    >>> noisy = clean + 0.1 * torch.randn(64, 64, generator=g)
    >>> est = tv_weight_sure(noisy, 0.1, generator=g)
    >>> 0.03 < est.skimage_weight < 0.3
    True
    """
    start = time.perf_counter()
    t, event_dim, sigma = tv_problem(y, sigma)
    if not (len(bounds) == 2 and 0 < bounds[0] < bounds[1]):
        raise ValueError(f"bounds must be (low, high) with 0 < low < high, got {bounds!r}")
    check_positive(rtol, "rtol")
    check_positive(tol, "tol")
    risks: dict[float, tuple[float, torch.Tensor, float, float]] = {}
    sure = _SureProblem(t, sigma, event_dim, isotropic, tol, eps, dtype, generator)

    def risk(log_w: float) -> float:
        if log_w not in risks:
            value, _, _, x, rss, df = sure.evaluate_all(math.exp(log_w))
            risks[log_w] = (value, x, rss, df)
        return risks[log_w][0]

    lo, hi = math.log(sigma * bounds[0]), math.log(sigma * bounds[1])
    cache: dict[float, float] = {}
    xtol = math.log1p(rtol)
    for _ in range(6):  # widen the bracket while the minimum sits at one end
        best, _ = golden(risk, lo, hi, xtol=xtol, cache=cache)
        if best - lo < 2 * xtol:
            lo, hi = lo - 2.0, lo + 2 * xtol
        elif hi - best < 2 * xtol:
            lo, hi = hi - 2 * xtol, hi + 2.0
        else:
            break
    log_w = min(risks, key=lambda k: risks[k][0])
    order = sorted(risks)
    trace = {"weights": [math.exp(k) for k in order], "risks": [risks[k][0] for k in order],
             "eps": sure.eps, "sure_weight": math.exp(log_w)}
    x_best = risks[log_w][1]
    solves = len(risks)
    if gcv_cap:
        gcv: dict[float, float] = {}
        w_gcv, x_gcv, noise = math.nan, None, math.inf
        for k in range(_GCV_OCTAVES + 1):
            w = math.exp(log_w) / 2**k
            _, gcv[w], implied, x = sure.evaluate(w)
            if gcv[w] <= min(gcv.values()):
                w_gcv, x_gcv, noise = w, x, implied
        solves += len(gcv)
        # GCV overrules SURE only when its fit says the noise is clearly weaker than sigma
        # (sigma over-estimated); where sigma is right, SURE is the better criterion
        trace.update(gcv=gcv, gcv_sigma=math.sqrt(noise),
                     capped=w_gcv < math.exp(log_w) and noise < (_GCV_SIGMA_RATIO * sigma) ** 2)
        if trace["capped"]:
            log_w, x_best = math.log(w_gcv), x_gcv
    if sigma_low is not None:
        check_positive(sigma_low, "sigma_low")
        sigma_low = as_float(sigma_low, "sigma_low")
        trace.update(sigma_low=sigma_low, guarded=False)
        sure_risk = min(v[0] for v in risks.values())
        if sigma_low < sigma and sure_risk > _GUARD_TRUST * sigma**2:
            before = len(risks)
            guarded = _guard(risk, risks, log_w, sigma_low, xtol)
            solves += len(risks) - before
            if guarded != log_w:
                log_w, x_best = guarded, risks[guarded][1]
                trace["guarded"] = True
    return make_estimate("sure", sigma, math.exp(log_w), start, solves, trace,
                         x_best.to(t.dtype, copy=True))


def _guard(risk, risks: dict, log_w: float, sigma_low: float, xtol: float) -> float:
    """The largest ``log w <= log_w`` whose estimated gain at ``sigma_low`` is >= 0.

    ``risk(log_w)`` solves at a weight and stores ``(SURE, x, rss, df)`` in ``risks``.
    """
    s2 = sigma_low**2

    def safe(k: float) -> bool:
        risk(k)
        _, _, rss, df = risks[k]
        return 2 * s2 * (1 - df) - rss >= 0

    if safe(log_w):
        return log_w
    below = [k for k in risks if k < log_w]
    lo = max((k for k in below if safe(k)), default=None)
    if lo is None:
        lo = min([log_w, *below])
        for _ in range(_GUARD_OCTAVES):
            lo -= math.log(2.0)
            if safe(lo):
                break
        else:
            return lo
    hi = min(k for k in risks if k > lo and not safe(k))
    while hi - lo > xtol:
        mid = 0.5 * (lo + hi)
        if safe(mid):
            lo = mid
        else:
            hi = mid
    return lo


class _SureProblem:
    """The pair ``(y, y + eps b)`` and the SURE of the ROF denoiser at any weight."""

    def __init__(self, t, sigma, event_dim, isotropic, tol, eps, dtype, generator) -> None:
        z = t.to(dtype)
        n = z.numel()
        self.eps = 2 * sigma / n**0.3 if eps is None else as_float(eps, "eps")
        check_positive(self.eps, "eps")
        check_positive(tol, "tol")
        if generator is None:  # a fixed probe: the same image always gets the same weight
            generator = torch.Generator().manual_seed(_SURE_PROBE_SEED)
        probe = torch.randint(0, 2, z.shape, generator=generator, dtype=torch.int8)
        self.probe = (2 * probe - 1).to(dtype=torch.float64, device=z.device)
        self.pair = torch.stack([z, z + self.eps * self.probe.to(z.dtype)])
        self.y64 = z.to(torch.float64)
        self.n, self.sigma, self.event_dim = n, sigma, event_dim
        self.isotropic, self.tol = isotropic, tol

    def risk(self, w: float) -> tuple[float, torch.Tensor]:
        """SURE at scikit-image's weight ``w`` (the energy weight is ``2 w``) and the image."""
        sure, _, _, x = self.evaluate(w)
        return sure, x

    def evaluate(self, w: float) -> tuple[float, float, float, torch.Tensor]:
        """``(SURE, GCV, noise, image)`` at scikit-image's weight ``w``, from one solve.

        GCV (generalised cross-validation, Craven & Wahba 1979) is ``(|y - f|^2 / N) /
        (1 - div f / N)^2``: an estimate of the prediction error that needs no ``sigma``;
        ``noise = |y - f|^2 / (N - div f)`` is the noise variance the fit implies.
        """
        return self.evaluate_all(w)[:4]

    def evaluate_all(self, w: float) -> tuple[float, float, float, torch.Tensor, float, float]:
        """:meth:`evaluate`, and ``|y - f|^2 / N`` and ``div f / N``."""
        x, _ = tv_denoise_pdhg(self.pair, 2 * w, isotropic=self.isotropic,
                               event_dim=self.event_dim, tol=self.tol)
        x0 = x[0].to(torch.float64)
        div = float((self.probe * (x[1].to(torch.float64) - x0)).sum()) / self.eps
        s2, n = self.sigma**2, self.n
        rss = float((self.y64 - x0).square().sum()) / n
        free = 1.0 - div / n
        gcv = rss / free**2 if free > 0 else math.inf
        noise = rss / free if free > 0 else math.inf
        return rss - s2 + 2 * s2 * div / n, gcv, noise, x[0], rss, div / n


def tv_sure_risk(
    y: Any,
    sigma: float,
    skimage_weight: float,
    *,
    isotropic: bool = True,
    tol: float = 1e-3,
    eps: float | None = None,
    dtype: torch.dtype = torch.float32,
    generator: torch.Generator | None = None,
) -> tuple[float, torch.Tensor]:
    r"""Stein's unbiased estimate of the per-pixel MSE of the ROF denoiser at one weight.

    See :func:`tv_weight_sure` for the estimate; this evaluates it at scikit-image's weight
    ``w = sigma^2 / b`` (half the energy weight ``lambda``).

    Parameters
    ----------
    y : numpy.ndarray or torch.Tensor
        Noisy image(s) ``(H, W)``, ``(C, H, W)`` or ``(N, C, H, W)``.
    sigma : float
        Noise standard deviation.
    skimage_weight : float
        ``w > 0`` of ``0.5 |x - y|^2 + w TV(x)``.
    isotropic, tol, eps, dtype, generator
        As in :func:`tv_weight_sure`.

    Returns
    -------
    risk : float
        The estimate of ``|f_w(y) - x|^2 / N``.
    x : torch.Tensor
        ``f_w(y)`` (in ``dtype``).

    Examples
    --------
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> clean = torch.zeros(64, 64); clean[16:48, 16:48] = 1.0
    >>> noisy = clean + 0.1 * torch.randn(64, 64, generator=g)
    >>> risk, x = tv_sure_risk(noisy, 0.1, 0.1, generator=g)
    >>> bool(risk < 0.1**2)  # far better than the noise
    True
    """
    t, event_dim, sigma = tv_problem(y, sigma)
    check_positive(skimage_weight, "skimage_weight")
    sure = _SureProblem(t, sigma, event_dim, isotropic, tol, eps, dtype, generator)
    return sure.risk(as_float(skimage_weight, "skimage_weight"))
