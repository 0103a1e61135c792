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
``E_q grad U = 0`` and the precision is ``E_q grad^2 U``. Both expectations are over each
pixel's two differences ``(D x)_i ~ N((D m)_i, Sigma_i)`` under ``q``, with ``Sigma_i``
their full ``2 x 2`` covariance (they share the pixel ``x_i``: correlated at about 0.4),
by a 1-D quadrature per pixel (:func:`norm_moments`): the mean's equation takes ``2 x 2``
blocks ``M_i`` with ``E_q[(Dx)_i / |Dx|_i] = M_i (D m)_i``, the precision the blocks
``E_q[(I - \hat g \hat g^T) / |g|]``. (``gradient_covariance="isotropic"``: the two
differences read as independent with equal variances, Rice moments in closed form,
:func:`_exact_weights`, one weight per pixel.) The bound's ``sqrt(E|g|^2)`` exceeds
``E|g|``, so its ``q`` is narrower (measured against long MCMC chains: std 6-7 % low on
denoising, 14 % with a blur; within 1 % and 2.5 % with the exact weights). VB-EM
(``learn``) runs on the bound, and ``q`` is then refit at the learned parameters.

The marginal variances of ``x`` and of its gradient under ``q`` are the diagonal of an
inverse that no transform diagonalises (``W`` varies over the image). They are taken from
a *locally stationary* approximation: at pixel ``i`` the field is read as the stationary
Gaussian field of precision ``A^T A / \sigma^2 + \tilde w_i D^T D / b`` with
``\tilde w_i`` the mean weight of the differences that touch the pixel (four inside, fewer
on the border; a quarter of the diagonal of ``D^T W D`` inside; with ``2 x 2`` blocks the
pixel's own block counts along ``(1, 1)``, the direction both its differences move in),
whose marginal variances are averages over the DCT spectrum,

.. math::

    \mathrm{Var}(x_i) \approx \frac{1}{N} \sum_k \frac{1}{a_k / \sigma^2 + \tilde w_i \mu_k / b},
    \qquad
    \mathrm{Var}((Dx)_i) \approx \frac{1}{N} \sum_k \frac{\mu_k}{a_k / \sigma^2 + \tilde w_i
    \mu_k / b},

and the covariance of the pixel's two differences ``\frac{1}{4N} \sum_k \mu_{r,k}
\mu_{c,k} / (a_k / \sigma^2 + \tilde w_i \mu_k / b)`` in the interior,
tabulated on a grid of ``\tilde w`` and interpolated (:func:`stationary_moments` evaluates
them at one weight; with ``2 x 2`` blocks a difference's variance is read at the geometric
mean of its two pixels' ``\tilde w``, which brought the mean at the corners of a blurred
square from 0.044 to 0.005 of the dense fixed point); within ``_BORDER`` pixels of the
image's border the spectral average is replaced by the exact weighting of a Neumann field's
DCT basis at that distance (border pixels have fewer neighbours, hence more variance; on
small images the plain average also overstates the interior). ``a_k`` is the operator's DCT
symbol of ``A^T A``, or its mean gain scaled by the local gain ``(A^T A 1)_i`` for an operator
without one (e.g. a mask). Deterministic and ``O(N)`` per sweep: no Monte Carlo noise anywhere.

``q``'s mean is the stationary point of the Gaussian ELBO, not the posterior mean. With
``mean_correction="tilted"`` (by default with an operator) the returned mean adds the
first-order correction by the tilted distributions (Opper, Paquet & Winther 2013): ``q`` is
the product of the Gaussian data term and one Gaussian site per pixel,
``exp(-g^T H_i g / (2 b) + g^T (H_i - M_i) \mu_i / b)`` (``H_i``, ``M_i`` the precision's
and the mean's ``2 x 2`` blocks, ``\mu_i = (D m)_i``); replacing one site by ``exp(-|g| /
b)`` moves the mean of ``g_i`` from ``\mu_i`` to that of the tilted distribution
(:func:`tilted_mean`, the cavity ``N(\Sigma_i^{-1} - H_i / b, ...)`` times the TV term) and
that of ``x`` by ``Q^{-1} D_i^T \Sigma_i^{-1}`` of the difference; the correction sums these
over the pixels (one PCG solve).
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
           "WEIGHT_RULES", "GRADIENT_COVARIANCES", "MEAN_CORRECTIONS", "norm_moments",
           "stationary_moments", "tilted_mean"]

#: the parameters ``tv_variational(..., learn=...)`` can refine by VB-EM
LEARNABLE = ("sigma", "scale")
#: accepted values of ``tv_variational(..., init=...)``
STARTS = ("auto", "map", "gaussian")
#: accepted values of ``tv_variational(..., weights=...)``
WEIGHT_RULES = ("bound", "exact")
#: accepted values of ``tv_variational(..., gradient_covariance=...)``
GRADIENT_COVARIANCES = ("full", "isotropic")
#: accepted values of ``tv_variational(..., mean_correction=...)``
MEAN_CORRECTIONS = ("auto", "tilted", "none")

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
#: Gauss-Legendre nodes of the 1-D integrals of :func:`norm_moments` (relative error below
#: 4e-6 on correlations up to 0.9 and variance ratios up to e^4, against adaptive quadrature)
_NORM_NODES = 16
#: angles of the trapezoid rule of :func:`tilted_mean` (3e-3 of the cavity's width against a
#: fine grid; the corrected mean of a 64 x 64 blur case within 6e-6 of 64 angles' mean)
_TILT_NODES = 24


@dataclass(frozen=True)
class TVVariational:
    """The fitted ``q(x) = N(mean, Q^{-1})`` of :func:`tv_variational`.

    Attributes
    ----------
    mean, std : torch.Tensor
        Mean and (locally stationary) marginal std of ``q``, the image's shape; the mean
        with the tilted correction when it was applied (``mean_correction``), and the
        draws then centred on it.
    map : torch.Tensor or None
        The TV MAP at the final ``sigma`` and ``b`` (relative gap ``1e-4`` for ``A = I``,
        ``1e-3`` with an operator); ``None`` when ``map_estimate=False``.
    samples : torch.Tensor or None
        Exact draws of ``q`` (perturb-and-optimise), ``(num, *image)``.
    sigma, scale : torch.Tensor
        The noise std and prior scale at the end (refined when learned), one per image.
    weights : torch.Tensor
        The weights of the precision ``Q`` per pixel (per direction if anisotropic): the
        majoriser's ``1 / sqrt(u)`` (``weights="bound"``) or ``E_q`` of TV's Hessian
        (``"exact"``): its ``2 x 2`` blocks ``(..., 3, H, W)`` (``H_rr, H_rc, H_cc``) with
        ``gradient_covariance="full"``, their isotropic part (half the trace, one per
        pixel) with ``"isotropic"``.
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
        sigma^2``: ``weights`` for ``"bound"``; for ``"exact"`` ``E_q[(Dx) / |Dx|]`` per unit
        of ``D m``: one per pixel with ``gradient_covariance="isotropic"``, the ``2 x 2``
        block ``M`` with ``E_q[(Dx)_i / |Dx|_i] = M_i (D m)_i`` with ``"full"``, shape
        ``(..., 3, H, W)`` (``M_rr, M_rc, M_cc``; row and column differences).
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
    gradient_covariance: str = "full",
    mean_correction: str = "auto",
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
        Whether to return ``map``, the TV MAP at the final parameters: the restored image
        (at the TV posterior's own scale the posterior mean is a noisier image than the
        MAP). Default (``None``): yes, with any operator (for ``A = I`` it is the start,
        or one more fused ROF solve at learned parameters; with an operator one certified
        primal-dual solve, 8-15 % more time with a blur); ``False`` skips it
        (``map`` is then ``None``).
    init : {"auto", "map", "gaussian"}, default "auto"
        The starting mean: the TV MAP, or the stationary Gaussian posterior's mean (see
        above); ``"auto"``: the MAP for ``A = I``, the Gaussian with an operator.
    weights : {"exact", "bound"}, default "exact"
        ``"bound"``: the weights of the quadratic majoriser, ``1 / sqrt(E_q |D x|^2)``, for
        the mean and the precision (Babacan et al.: the ``q`` that maximises the bound).
        ``"exact"`` (isotropic TV; anisotropic takes ``"bound"``): the stationary point of
        the exact Gaussian ELBO, ``E_q grad U = 0`` and ``Q = E_q grad^2 U`` (Opper &
        Archambeau 2009), with ``E_q`` of TV's gradient and Hessian per pixel (see
        ``gradient_covariance``). The bound's ``sqrt(E|g|^2) >= E|g|`` penalises spread, so
        its ``q`` is narrower: against long MCMC chains the std was 6-7 % low with
        ``"bound"`` and within 1 % with ``"exact"`` on denoising, 14 % and 2.5 % low with a
        blur. With
        ``learn``, the parameters come from the bound's VB-EM (its M-step; with the exact
        weights the scale runs away, 2-4x too large with a blur), and ``q`` is then refit
        at them with the exact weights.
    gradient_covariance : {"full", "isotropic"}, default "full"
        What the exact weights read of each pixel's two differences under ``q``:
        ``"full"``, their ``2 x 2`` covariance (the two share the pixel, so they are
        correlated, at about 0.4), with ``E_q[(Dx) / |Dx|]`` and ``E_q`` of the Hessian by
        :func:`norm_moments` (the mean's and the precision's weights are then ``2 x 2``
        blocks); ``"isotropic"``, independent with equal variances (their mean), the Rice
        moments of :func:`_exact_weights` (and the Hessian's isotropic part). No effect
        with ``weights="bound"`` or anisotropic TV. Against long MCMC chains (camera 64,
        9x9 blur, sigma 0.05) ``"full"`` left 10 of 4096 pixels off by more than 0.01
        (largest 0.0123) where ``"isotropic"`` left 46 (0.0185).
    mean_correction : {"auto", "tilted", "none"}, default "auto"
        ``"tilted"``: the returned mean is ``q``'s plus the first-order correction by the
        tilted distributions (one parallel expectation-propagation step from ``q``): for
        each pixel the mean of its two differences under the cavity (``q``'s marginal
        without the pixel's Gaussian site) times ``exp(-|g| / b)``, by
        :func:`tilted_mean`, less ``q``'s, in natural units, and the mean moves by ``Q^{-1}
        D^T`` of it (one more PCG solve; the std and the draws' spread are ``q``'s). With
        the exact weights and ``gradient_covariance="full"`` only. ``"auto"``: with an
        operator (camera 64, 9x9 blur, sigma 0.05 and 0.1, against references of 16
        SK-ROCK chains whose mean's Monte Carlo error is 0.0014-0.0021 at the median pixel:
        the mean squared error in units of that error 1.26-1.64 without, 1.07-1.12 with it,
        the largest error 0.0073-0.0087 without, 0.0065-0.0085 with it), not for ``A = I``
        (no measurable change there, and 1 s more at 512 x 512). ``"none"``: ``q``'s mean.

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
    if gradient_covariance not in GRADIENT_COVARIANCES:
        raise ValueError(f"gradient_covariance must be one of {GRADIENT_COVARIANCES}, got "
                         f"{gradient_covariance!r}")
    correlated = gradient_covariance == "full"
    if mean_correction not in MEAN_CORRECTIONS:
        raise ValueError(f"mean_correction must be one of {MEAN_CORRECTIONS}, got "
                         f"{mean_correction!r}")
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
    # values per image that observe it (a mask's zero-filled pixels do not): the noise
    # level's update divides by it
    n_obs = op.num_observed(tuple(y.shape)) / (y.numel() // math.prod(y.shape[-event_dim:]))
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

    def weights_of(g: torch.Tensor, vg: torch.Tensor,
                   cg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The weights of the mean's equation and of the precision at ``(D m, Cov_q D x)``:
        the mean's are ``2 x 2`` blocks ``(..., 3, H, W)`` (:func:`_correlated_weights`)
        with the full covariance, one weight per pixel (or direction) otherwise."""
        if rule[0] == "exact" and isotropic:
            if correlated:
                return _correlated_weights(g, vg, cg, valid)
            return _exact_weights(g, vg, valid)
        wt = _weights(g, vg, isotropic, valid)
        return wt, wt

    def blocks(wt: torch.Tensor) -> bool:
        return isotropic and wt.dim() == len(shape) + 1

    def gradient_weights(wt: torch.Tensor) -> torch.Tensor:
        return wt.unsqueeze(-3) if isotropic else wt

    def weighted(wt: torch.Tensor, gv: torch.Tensor) -> torch.Tensor:
        """``W D v`` with ``W`` a weight per pixel (direction) or a ``2 x 2`` block."""
        if blocks(wt):
            return _block_product(wt, gv)
        return gradient_weights(wt) * gv

    def scalar(wt: torch.Tensor) -> torch.Tensor:
        """A weight per pixel for the preconditioners: a block's isotropic part."""
        return (wt[..., 0, :, :] + wt[..., 2, :, :]) / 2 if blocks(wt) else wt

    def apply_q(v: torch.Tensor, wt: torch.Tensor, s2: torch.Tensor, bb: torch.Tensor):
        return adjoint(op.forward(v)) / s2 - div(weighted(wt, grad(v))) / bb

    def pixel_weight(wt: torch.Tensor) -> torch.Tensor:
        """A quarter of the diagonal of ``D^T W D`` (:func:`_pixel_weight`)."""
        return _pixel_weight_blocks(wt) if blocks(wt) else _pixel_weight(wt, isotropic)

    def variance_weight(wt: torch.Tensor) -> torch.Tensor:
        """The weight the locally stationary variances read at each pixel: with ``2 x 2``
        blocks the mean over the differences that exist there (:func:`_existing_weight`),
        otherwise :func:`_pixel_weight`'s."""
        return _existing_weight(wt) if blocks(wt) else pixel_weight(wt)

    def preconditioner(wt: torch.Tensor, s2: torch.Tensor, bb: torch.Tensor):
        if pixelwise:  # the diagonal of Q: cheap, and it follows the weights' variations
            wd = 4 * pixel_weight(wt)
            inv_d = 1.0 / (data_diag / s2 + wd / bb)

            def jacobi(r: torch.Tensor) -> torch.Tensor:
                return r * inv_d

            return jacobi
        wbar = _mean_weight(scalar(wt), isotropic, dims)
        c = symbol * (gain_mean / symbol[0, 0]) if not op.is_identity else symbol
        inv = 1.0 / (c / s2 + wbar * mu / bb)

        def prec(r: torch.Tensor) -> torch.Tensor:
            return idct2(dct2(r) * inv)

        return prec

    cache: dict = {}  # the table of stationary variances, rebuilt when sigma or the range moves

    def variances(wt: torch.Tensor, s2: torch.Tensor, bb: torch.Tensor):
        """Locally stationary marginal variances of x and of each gradient component."""
        eff = variance_weight(wt) / local  # the prior's weight per unit data gain
        tau = eff / bb  # (..., H, W)
        lo, hi = float(tau.min()), float(tau.max())
        cached = cache.get("table")
        if (cached is None or cache["s2"] is not s2 or lo < cache["lo"] or hi > cache["hi"]):
            # a wider range than needed, so that the next sweeps reuse it
            cache.update(table=_stationary_table(lo / 4, hi * 4, spectrum / s2, tau),
                         s2=s2, lo=lo / 4, hi=hi * 4)
        if blocks(wt):
            # a difference's variance read at the geometric mean of its two pixels' weights
            # (replicated at the last row / column, where it does not exist)
            down = torch.cat([tau[..., 1:, :], tau[..., -1:, :]], dim=-2)
            right = torch.cat([tau[..., :, 1:], tau[..., :, -1:]], dim=-1)
            taus = (tau, (tau * down).sqrt(), (tau * right).sqrt(), tau)
        else:
            taus = (tau,) * 4
        vx, vg, cg = _interpolate(cache["table"], taus, classes)
        vx, vg, cg = vx / local, vg / local.unsqueeze(-3), cg / local
        both = valid.prod(-3)  # the covariance exists where both differences do
        return vx, vg * valid, cg * both  # vg (..., 2, H, W), cg (..., H, W)

    s2 = sigma**2
    if map_estimate is None:
        map_estimate = True
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
            _, vg, _ = variances(wt, s2, scale)
            u0 = (grad(m).square() + vg).sum(-3).mean(dims, keepdim=True)
    g = grad(m)
    # the gradients' variances at the start: a stationary field of the MAP's mean weight,
    # then a few sweeps of weights <-> variances at the fixed mean
    u0 = g.square().sum(-3).mean(dims, keepdim=True)  # mean |D m|^2 per image
    wt = _weights(g * 0, (u0 / 2).unsqueeze(-3).expand_as(g), isotropic, valid)
    vx, vg, cg = variances(wt, s2, scale)
    for _ in range(_START_SWEEPS):
        wt, wc = weights_of(g, vg, cg)
        vx, vg, cg = variances(wc, s2, scale)
    history: list[float] = []
    elbos: list[float] = []
    converged = False
    start_scale, start_sigma = scale.clone(), sigma.clone()
    it = 0
    learning = learn
    while it < max_iter:
        it += 1
        wt, wc = weights_of(g, vg, cg)  # the mean's and the precision's weights
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
        vx, vg, cg = variances(wc, s2, scale)
        if "sigma" in learning:
            resid = (op.forward(m_new) - y).square().sum(dims, keepdim=True)
            wv = _weighted_gradient_variance(wc, vg, isotropic, event_dim, cg)
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
                                  n_pixels, n_obs, dof, cg).sum()))
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
    correction = None
    if mean_correction == "auto":
        mean_correction = "none" if op.is_identity else "tilted"
    if mean_correction == "tilted" and rule[0] == "exact" and isotropic and correlated:
        # the first-order correction of the mean by the tilted distributions (one parallel
        # EP step from q): Q dm = D^T r, r the pixels' shifts in natural units
        r = _tilted_shift(g, vg, cg, wt, wc, scale, valid)
        correction, cg_it, _, _ = pcg(functools.partial(apply_q, wt=wc, s2=s2, bb=scale),
                                      -div(r), precondition=preconditioner(wc, s2, scale),
                                      tol=max(cg_tol, 1e-3), max_iter=max_cg,
                                      event_dim=event_dim)
        cg_total += cg_it
    if not map_estimate:
        x_map = None
    elif learn or x_map is None:  # the MAP at the final parameters
        x_map = _tv_map(y, op, s2.sqrt(), scale, event_dim, isotropic,
                        init=x_map if x_map is not None else m)
    samples = None
    if correction is not None:
        m = m + correction
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
    w_mean1, w_prec1 = _one_difference_weights(g2.sqrt(), v)
    zero = torch.zeros_like(v)
    two, one = n > 1.5, (n > 0.5) & (n < 1.5)
    w_mean = torch.where(two, w_mean2, torch.where(one, w_mean1, zero))
    w_prec = torch.where(two, w_prec2, torch.where(one, w_prec1, zero))
    return w_mean, w_prec


def norm_moments(mu_r: torch.Tensor, mu_c: torch.Tensor, var_r: torch.Tensor,
                 var_c: torch.Tensor, cov: torch.Tensor, *, nodes: int = _NORM_NODES,
                 hessian: bool = False):
    r"""``E[g / |g|]``, ``E[1 / |g|]`` (and ``E`` of ``|g|``'s Hessian) for ``g ~ N(mu, Sigma)``.

    With ``1 / r = (2 / sqrt(pi)) int_0^inf exp(-s^2 r^2) ds`` and the Gaussian integral
    ``E[exp(-s^2 |g|^2) (1, g)] = p(s) (1, A_s^{-1} mu)``, ``A_s = I + 2 s^2 Sigma``,
    ``p(s) = det(A_s)^{-1/2} exp(-s^2 mu^T A_s^{-1} mu)``, both are 1-D integrals,

    .. math::

        E \frac{1}{|g|} = \frac{2}{\sqrt\pi} \int_0^\infty p(s)\, ds, \qquad
        E \frac{g}{|g|} = M \mu, \quad M = \frac{2}{\sqrt\pi} \int_0^\infty p(s)
        A_s^{-1} ds,

    ``M`` symmetric positive definite (for ``Sigma = v I`` it is ``w I`` with ``w`` the
    Rice moment of :func:`_exact_weights`). With ``hessian``, also ``H = E[(I - g g^T /
    |g|^2) / |g|]``, from ``1 / r^3 = (4 / sqrt(pi)) int_0^inf s^2 exp(-s^2 r^2) ds`` and
    ``E[g g^T exp(-s^2 |g|^2)] = p(s) (A_s^{-1} Sigma + nu nu^T)``, ``nu = A_s^{-1} mu``.
    They are taken by ``nodes``-point
    Gauss-Legendre quadrature in ``phi`` after ``s = kappa tan(phi)``, ``kappa = (|mu|^2 +
    tr Sigma)^{-1/2}`` (smooth on ``[0, pi / 2]``: the integrand's tail is ``O(s^{-2})``).
    Elementwise over broadcast tensors; ``Sigma`` must be positive definite.

    Parameters
    ----------
    mu_r, mu_c : torch.Tensor
        The mean of the two components.
    var_r, var_c, cov : torch.Tensor
        Their variances and covariance.
    nodes : int, default 16
        Quadrature nodes.
    hessian : bool, default False
        Also return the entries of ``H``.

    Returns
    -------
    (m_rr, m_rc, m_cc, inv_mean) or (m_rr, m_rc, m_cc, inv_mean, h_rr, h_rc, h_cc)
        The entries of ``M``, ``E[1 / |g|]`` (``= tr H``), and those of ``H``.

    Examples
    --------
    >>> import math, torch
    >>> t = lambda v: torch.tensor(v, dtype=torch.float64)
    >>> m_rr, m_rc, m_cc, inv = norm_moments(t(0.0), t(0.0), t(1.0), t(1.0), t(0.0))
    >>> round(float(inv), 10) == round(math.sqrt(math.pi / 2), 10)  # E 1/|g|, g ~ N(0, I)
    True
    >>> float(m_rc) == 0.0 and abs(float(m_rr - m_cc)) < 1e-12
    True
    """
    import numpy as np

    x, wq = np.polynomial.legendre.leggauss(int(nodes))
    phi = (x + 1) * math.pi / 4
    tan2 = np.tan(phi) ** 2
    coef = wq * math.pi / 4 * (1 + tan2)  # d(tan phi) = (1 + tan^2) d phi
    k2 = 1.0 / (mu_r.square() + mu_c.square() + var_r + var_c)
    ar, ac, ax = 2 * k2 * var_r, 2 * k2 * var_c, 2 * k2 * cov
    d1, d2 = ar + ac, ar * ac - ax.square()  # det A = 1 + T d1 + T^2 d2, T = tan^2
    q0 = k2 * (mu_r.square() + mu_c.square())  # s^2 mu^T A^-1 mu = T (q0 + T q1) / det A
    q1 = k2 * (ac * mu_r.square() - 2 * ax * mu_r * mu_c + ar * mu_c.square())
    p0 = torch.zeros_like(k2)
    s0, s1 = torch.zeros_like(k2), torch.zeros_like(k2)
    if hessian:  # sum_k c_k T^j p_k / det^i: (i, j) = (1, 2), (2, 1), (2, 2), (2, 3)
        j1, k1, k2s, k3 = (torch.zeros_like(k2) for _ in range(4))
    for tt, ck in zip(tan2.tolist(), coef.tolist(), strict=True):
        inv_det = torch.add(d1, d2, alpha=tt).mul_(tt).add_(1).reciprocal_()
        pk = torch.add(q0, q1, alpha=tt).mul_(inv_det).mul_(-tt).exp_().mul_(inv_det.sqrt())
        p0.add_(pk, alpha=ck)
        pk.mul_(inv_det)
        s0.add_(pk, alpha=ck)
        s1.add_(pk, alpha=ck * tt)
        if hessian:
            j1.add_(pk, alpha=ck * tt * tt)
            pk.mul_(inv_det)
            k1.add_(pk, alpha=ck * tt)
            k2s.add_(pk, alpha=ck * tt * tt)
            k3.add_(pk, alpha=ck * tt**3)
    root = k2.sqrt()
    f = (2 / math.sqrt(math.pi)) * root
    inv = f * p0
    m_rr, m_rc, m_cc = (s0 + ac * s1) * f, -ax * s1 * f, (s0 + ar * s1) * f
    if not hessian:
        return m_rr, m_rc, m_cc, inv
    # E[g g^T / |g|^3] = (4 / sqrt(pi)) kappa^3 sum_k c_k T p_k (A^-1 Sigma + nu nu^T), with
    # A^-1 Sigma = (Sigma + T delta I) / det and nu = (mu + T u) / det
    delta = 2 * k2 * (var_r * var_c - cov.square())
    u_r, u_c = ac * mu_r - ax * mu_c, ar * mu_c - ax * mu_r
    f3 = (4 / math.sqrt(math.pi)) * root * k2
    iso = j1 * delta  # the T delta I part (s1 = sum_k c_k T p_k / det)
    e_rr = s1 * var_r + iso + k1 * mu_r.square() + 2 * k2s * mu_r * u_r + k3 * u_r.square()
    e_cc = s1 * var_c + iso + k1 * mu_c.square() + 2 * k2s * mu_c * u_c + k3 * u_c.square()
    e_rc = s1 * cov + k1 * mu_r * mu_c + k2s * (mu_r * u_c + mu_c * u_r) + k3 * u_r * u_c
    return m_rr, m_rc, m_cc, inv, inv - f3 * e_rr, -f3 * e_rc, inv - f3 * e_cc


def _correlated_weights(g: torch.Tensor, vg: torch.Tensor, cg: torch.Tensor,
                        valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The exact Gaussian ELBO's weights with the full covariance of each pixel's two
    differences (isotropic TV): the mean's ``2 x 2`` block ``M`` with ``E_q[(Dx)_i /
    |Dx|_i] = M_i (D m)_i``, ``(..., 3, H, W)`` (``M_rr, M_rc, M_cc``), and the precision's
    ``E_q`` of TV's Hessian, blocks the same way (``H_rr, H_rc, H_cc``; with its isotropic
    part instead, the std was 0.936 of the reference's with a blur, against 0.975), both by
    :func:`norm_moments`.
    The pixels of the last row and column, with one difference (``valid`` is
    :func:`_valid_directions`'), take the folded normal's of :func:`_one_difference_weights`
    (``M = w I``); the last pixel, with none, 0."""
    tiny = torch.finfo(vg.dtype).tiny ** 0.5
    v_r, v_c = vg[..., 0, :, :].clamp_min(tiny), vg[..., 1, :, :].clamp_min(tiny)
    bound = 0.999 * (v_r * v_c).sqrt()
    c = torch.maximum(torch.minimum(cg, bound), -bound)  # positive definite
    m_rr, m_rc, m_cc, _, h_rr, h_rc, h_cc = norm_moments(
        g[..., 0, :, :], g[..., 1, :, :], v_r, v_c, c, hessian=True)
    h = (h_rr, h_rc, h_cc)
    for sel, k in (((Ellipsis, -1, slice(None, -1)), 1), ((Ellipsis, slice(None, -1), -1), 0)):
        w_mean1, w_prec1 = _one_difference_weights(g[..., k, :, :][sel], vg[..., k, :, :][sel])
        m_rr[sel], m_cc[sel], m_rc[sel] = w_mean1, w_mean1, 0.0
        for j, hj in enumerate(h):
            hj[sel] = 0.0 if j == 1 else w_prec1
    corner = (Ellipsis, -1, -1)
    for t in (m_rr, m_rc, m_cc) + h:
        t[corner] = 0.0
    return torch.stack([m_rr, m_rc, m_cc], dim=-3), torch.stack(h, dim=-3)


def _one_difference_weights(mu: torch.Tensor, v: torch.Tensor):
    """The exact weights of a pixel with one difference ``N(mu, v)`` (folded normal):
    ``w^{mean} = erf(|t| / sqrt 2) / |mu|``, ``w^{prec} = 2 phi(t) / sqrt(v)``,
    ``t = mu / sqrt(v)`` (see :func:`_exact_weights`)."""
    tiny = torch.finfo(v.dtype).tiny ** 0.5
    root = v.clamp_min(tiny).sqrt()
    t = mu.abs() / root
    w_mean = torch.where(t < 1e-4, math.sqrt(2 / math.pi) / root,
                         torch.special.erf(t / math.sqrt(2)) / (t * root).clamp_min(tiny))
    return w_mean, math.sqrt(2 / math.pi) * torch.exp(-t.square() / 2) / root


def _ray_moments(t: torch.Tensor):
    r"""``J_k(t) = int_0^inf x^k exp(-x^2 / 2 + t x) dx`` for ``k = 0, 1, 2``, scaled by
    ``exp(-e)`` with ``e = max(t, 0)^2 / 2`` (returned first): ``J_0 = sqrt(pi / 2)
    erfcx(-t / sqrt 2)`` below 0, ``sqrt(2 pi) e^{t^2 / 2} Phi(t)`` above, ``J_1 = 1 + t
    J_0``, ``J_2 = t + (1 + t^2) J_0``."""
    neg = t < 0
    zero = torch.zeros_like(t)
    tn, tp = torch.where(neg, t, zero), torch.where(neg, zero, t)
    j0 = torch.where(neg, math.sqrt(math.pi / 2) * torch.special.erfcx(-tn / math.sqrt(2)),
                     math.sqrt(2 * math.pi) * torch.special.ndtr(tp))
    e = torch.where(neg, torch.ones_like(t), torch.exp(-tp.square() / 2))
    return tp.square() / 2, j0, e + t * j0, t * e + (1 + t.square()) * j0


def tilted_mean(l_rr: torch.Tensor, l_rc: torch.Tensor, l_cc: torch.Tensor,
                e_r: torch.Tensor, e_c: torch.Tensor, a: torch.Tensor | float, *,
                nodes: int = _TILT_NODES) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The mean of ``p(g) ~ N(g; Lambda^{-1} eta, Lambda^{-1}) exp(-a |g|)``, ``g`` in 2-D.

    In polar coordinates about ``g = 0`` the radial integrals are closed forms (with
    ``u`` the direction, ``alpha = u^T Lambda u``, ``t = (u^T eta - a) / sqrt(alpha)``,
    ``int_0^inf r^k exp(-alpha r^2 / 2 + (u^T eta - a) r) dr = alpha^{-(k + 1) / 2}
    J_k(t)``), so the mean is a ratio of two integrals over the angle, taken by the
    trapezoid rule on ``nodes`` angles concentrated about the direction of the Gaussian's
    mean by a Moebius map of the circle (by ``2 / kappa``, ``kappa`` its distance from 0 in
    units of ``sqrt(tr Lambda^{-1})``). Against a 1201 x 1201 grid: relative error (in units of
    ``sqrt(tr Lambda^{-1})``) about 1e-5 with 64 nodes for axis ratios up to 3.3.
    ``Lambda`` must be positive definite; elementwise over broadcast tensors.

    Examples
    --------
    >>> import torch
    >>> t = lambda v: torch.tensor(v, dtype=torch.float64)
    >>> m_r, m_c = tilted_mean(t(1.0), t(0.0), t(1.0), t(0.0), t(0.0), 1.0)
    >>> abs(float(m_r)) < 1e-12 and abs(float(m_c)) < 1e-12  # symmetric: mean 0
    True
    """
    det = l_rr * l_cc - l_rc.square()
    c_r, c_c = (l_cc * e_r - l_rc * e_c) / det, (l_rr * e_c - l_rc * e_r) / det
    norm_c = (c_r.square() + c_c.square()).sqrt()
    kappa = norm_c * (det / (l_rr + l_cc)).sqrt()
    rho = (2 / kappa.clamp_min(1e-30)).clamp(max=1.0)
    q = (1 - rho) / (1 + rho)
    safe = norm_c > 0
    cos0 = torch.where(safe, c_r / norm_c.clamp_min(1e-300), torch.ones_like(c_r))
    sin0 = torch.where(safe, c_c / norm_c.clamp_min(1e-300), torch.zeros_like(c_c))
    ones = torch.ones_like(q)
    a = a if torch.is_tensor(a) else torch.as_tensor(a, dtype=q.dtype, device=q.device)
    z = torch.zeros_like(q)
    n_r, n_c = torch.zeros_like(q), torch.zeros_like(q)
    top = None
    for k in range(nodes):
        phi = 2 * math.pi * k / nodes
        cp, sp = math.cos(phi), math.sin(phi)
        # e^{i theta} = e^{i theta_0} (e^{i phi} + q) / (1 + q e^{i phi}); its weight
        # d theta / d phi = (1 - q^2) / |1 + q e^{i phi}|^2
        den = 1 + q * (2 * cp + q)
        wq = (1 - q.square()) / den
        vr, vc = ((cp + q) * (1 + q * cp) + q * sp * sp) / den, wq * sp if sp else 0 * ones
        ur, uc = cos0 * vr - sin0 * vc, sin0 * vr + cos0 * vc
        s = (l_rr * ur.square() + 2 * l_rc * ur * uc + l_cc * uc.square()).sqrt()
        ex, _, j1, j2 = _ray_moments((e_r * ur + e_c * uc - a) / s)
        if top is None:  # the exponents are relative to the first node's (then rescaled)
            top = ex
        grow = ex > top
        if bool(grow.any()):
            shrink = torch.exp(torch.where(grow, top - ex, torch.zeros_like(ex)))
            z, n_r, n_c = z * shrink, n_r * shrink, n_c * shrink
            top = torch.maximum(top, ex)
        f = wq * torch.exp(ex - top) / s.square()
        z = z + f * j1
        f = f * j2 / s
        n_r, n_c = n_r + f * ur, n_c + f * uc
    return n_r / z, n_c / z


def _tilted_mean_1d(lam: torch.Tensor, eta: torch.Tensor, a) -> torch.Tensor:
    """The mean of ``N(g; eta / lam, 1 / lam) exp(-a |g|)`` (closed form, :func:`_ray_moments`
    on both half-lines)."""
    s = lam.sqrt()
    ep, j0p, j1p, _ = _ray_moments((eta - a) / s)
    em, j0m, j1m, _ = _ray_moments((-eta - a) / s)
    top = torch.maximum(ep, em)
    fp, fm = torch.exp(ep - top), torch.exp(em - top)
    return (fp * j1p - fm * j1m) / (s * (fp * j0p + fm * j0m))


def _tilted_shift(g: torch.Tensor, vg: torch.Tensor, cg: torch.Tensor, wt: torch.Tensor,
                  wc: torch.Tensor, scale: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    r"""Per pixel ``Sigma_i^{-1} (E_{p_i} g - mu_i)``, ``(..., 2, H, W)``: what the mean of
    ``g_i = (D x)_i`` moves by when ``q``'s Gaussian site of the pixel's TV term is replaced
    by the term itself (the tilted distribution ``p_i ~ q_{\setminus i}(g) exp(-|g| / b)``,
    ``q_{\setminus i}`` the cavity: ``q``'s marginal ``N(mu_i, Sigma_i)`` divided by the site
    ``exp(-g^T H_i g / (2 b) + g^T (H_i - M_i) mu_i / b)``), in ``q``'s natural units. The
    mean of ``x`` then moves by ``Q^{-1} D^T`` of it (the first-order correction; zero where
    the cavity is not positive definite). Float64 inside."""
    dt = g.dtype
    g, vg, cg, wt, wc = (v.to(torch.float64) for v in (g, vg, cg, wt, wc))
    b = scale.to(torch.float64)
    a = (1.0 / b).expand_as(g[..., 0, :, :])
    tiny = torch.finfo(torch.float64).tiny ** 0.5
    out = torch.zeros_like(g)
    # two differences: 2 x 2 blocks
    v_r, v_c = vg[..., 0, :-1, :-1].clamp_min(tiny), vg[..., 1, :-1, :-1].clamp_min(tiny)
    bound = 0.999 * (v_r * v_c).sqrt()
    c = torch.maximum(torch.minimum(cg[..., :-1, :-1], bound), -bound)
    det = v_r * v_c - c.square()
    p_rr, p_rc, p_cc = v_c / det, -c / det, v_r / det  # Sigma^{-1}
    bi = b[..., :1, :1] if b.dim() >= 2 else b
    h_rr, h_rc, h_cc = (wc[..., k, :-1, :-1] / bi for k in range(3))
    d_rr, d_rc, d_cc = ((wc[..., k, :-1, :-1] - wt[..., k, :-1, :-1]) / bi for k in range(3))
    mu_r, mu_c = g[..., 0, :-1, :-1], g[..., 1, :-1, :-1]
    l_rr, l_rc, l_cc = p_rr - h_rr, p_rc - h_rc, p_cc - h_cc
    e_r = p_rr * mu_r + p_rc * mu_c - (d_rr * mu_r + d_rc * mu_c)
    e_c = p_rc * mu_r + p_cc * mu_c - (d_rc * mu_r + d_cc * mu_c)
    ok = (l_rr > 0) & (l_rr * l_cc - l_rc.square() > 0)
    one = torch.ones_like(l_rr)
    t_r, t_c = tilted_mean(torch.where(ok, l_rr, one), torch.where(ok, l_rc, 0 * one),
                           torch.where(ok, l_cc, one), torch.where(ok, e_r, 0 * one),
                           torch.where(ok, e_c, 0 * one), a[..., :-1, :-1])
    dr, dc = torch.where(ok, t_r - mu_r, 0 * one), torch.where(ok, t_c - mu_c, 0 * one)
    out[..., 0, :-1, :-1] = p_rr * dr + p_rc * dc
    out[..., 1, :-1, :-1] = p_rc * dr + p_cc * dc
    # one difference: the last row's column differences, the last column's row differences
    for k, sel in ((1, (Ellipsis, -1, slice(None, -1))), (0, (Ellipsis, slice(None, -1), -1))):
        v = vg[..., k, :, :][sel].clamp_min(tiny)
        hk, mk = wc[..., 2 * k, :, :][sel], wt[..., 2 * k, :, :][sel]
        bs = b.expand_as(g[..., 0, :, :])[sel]
        mu1 = g[..., k, :, :][sel]
        lam = 1 / v - hk / bs
        eta = mu1 / v - (hk - mk) * mu1 / bs
        ok1 = lam > 0
        t1 = _tilted_mean_1d(torch.where(ok1, lam, torch.ones_like(lam)),
                             torch.where(ok1, eta, torch.zeros_like(eta)), a[sel])
        out[..., k, :, :][sel] = torch.where(ok1, (t1 - mu1) / v, torch.zeros_like(v))
    return (out * valid).to(dt)


def _block_product(wt: torch.Tensor, gv: torch.Tensor) -> torch.Tensor:
    """``M g`` per pixel: ``wt`` ``(..., 3, H, W)`` the symmetric blocks ``(M_rr, M_rc,
    M_cc)``, ``gv`` ``(..., 2, H, W)``."""
    g0, g1 = gv[..., 0, :, :], gv[..., 1, :, :]
    return torch.stack([wt[..., 0, :, :] * g0 + wt[..., 1, :, :] * g1,
                        wt[..., 1, :, :] * g0 + wt[..., 2, :, :] * g1], dim=-3)


def _block_sqrt(wt: torch.Tensor) -> torch.Tensor:
    """The square roots of symmetric positive semi-definite ``2 x 2`` blocks ``(..., 3, H,
    W)``: ``(W + sqrt(det W) I) / sqrt(tr W + 2 sqrt(det W))``."""
    a, b, c = wt[..., 0, :, :], wt[..., 1, :, :], wt[..., 2, :, :]
    d = (a * c - b.square()).clamp_min(0).sqrt()
    t = (a + c + 2 * d).clamp_min(torch.finfo(wt.dtype).tiny).sqrt()
    return torch.stack([(a + d) / t, b / t, (c + d) / t], dim=-3)


def _pixel_weight_blocks(wt: torch.Tensor) -> torch.Tensor:
    """A quarter of the diagonal of ``D^T W D`` with ``2 x 2`` blocks ``(..., 3, H, W)``:
    the pixel's own block seen along ``(1, 1)`` (both its differences move with it),
    ``W_rr + W_cc + 2 W_rc``, plus the row block of the pixel above and the column block of
    the pixel to the left (replicated at the first row and column), as
    :func:`_pixel_weight` for one weight per pixel."""
    rr, rc, cc = wt[..., 0, :, :], wt[..., 1, :, :], wt[..., 2, :, :]
    up = torch.cat([rr[..., :1, :], rr[..., :-1, :]], dim=-2)
    left = torch.cat([cc[..., :, :1], cc[..., :, :-1]], dim=-1)
    return (rr + cc + 2 * rc + up + left) / 4


def _existing_weight(wt: torch.Tensor) -> torch.Tensor:
    """The mean weight of the differences that exist at each pixel, ``2 x 2`` blocks ``(...,
    3, H, W)``: the pixel's own block along ``(1, 1)`` (``W_rr + W_cc + 2 W_rc``, two
    differences; on the last row only ``W_cc``, on the last column only ``W_rr``, one),
    the row block of the pixel above and the column block of the pixel to the left (where
    they exist), over their number (4 inside, 3 on an edge, 2 at a corner).

    This is the uniform weight of the Neumann field whose border class the pixel reads
    (:func:`_spectral_moments`: a border pixel with fewer differences). The quarter of
    the diagonal of ``D^T W D`` (:func:`_pixel_weight_blocks`) agrees inside and for a
    uniform weight, but on an edge it counts a missing difference by a replicated weight:
    on the last row and column the pixel's one difference twice. There the weights vary
    most (a single difference's Hessian ``2 phi(t) / sqrt(v)`` vanishes across an edge),
    and against the dense ``Q^{-1}`` (camera 64, 9 x 9 blur) the last row's ``Var x`` was
    off by 7.5 % rms (1.0 % on the first row); with this weight 1.1 %.
    """
    rr, rc, cc = wt[..., 0, :, :], wt[..., 1, :, :], wt[..., 2, :, :]
    h, w = wt.shape[-2:]
    opts = dict(dtype=wt.dtype, device=wt.device)
    own_r = torch.ones((h, 1), **opts)  # the pixel's row difference exists
    own_r[-1] = 0
    own_c = torch.ones((1, w), **opts)
    own_c[..., -1] = 0
    has_up, has_left = own_r.flip(-2), own_c.flip(-1)  # 0 on the first row / column
    up = torch.cat([torch.zeros_like(rr[..., :1, :]), rr[..., :-1, :]], dim=-2)
    left = torch.cat([torch.zeros_like(cc[..., :, :1]), cc[..., :, :-1]], dim=-1)
    total = rr * own_r + cc * own_c + 2 * rc * own_r * own_c + up + left
    count = own_r + own_c + has_up + has_left
    return total / count.clamp_min(1)


def stationary_moments(tau: float, data: torch.Tensor):
    r"""The marginal (co)variances of a stationary Gaussian field on a Neumann grid.

    The field has precision ``C data C^T + tau D^T D`` (``C`` the orthonormal 2-D DCT,
    ``data`` the ``(H, W)`` DCT symbol of the data term, e.g. ``A^T A / sigma^2`` for an
    operator diagonalised by the DCT, ``D`` the forward differences); these are the
    quantities the engine tabulates in ``tau`` and reads per pixel (locally stationary).
    Exact for images of at most ``2 * 16 + 1`` pixels a side; on larger ones the interior,
    beyond 16 pixels from the border, reads the spectral mean.

    Parameters
    ----------
    tau : float
        The prior's weight ``w / b``.
    data : torch.Tensor
        ``(H, W)`` positive (or ``>= 0`` with ``tau > 0``): the data term's DCT symbol.

    Returns
    -------
    (var_x, var_diff, cov_diff) : tuple of torch.Tensor
        ``Var x_i`` ``(H, W)``; the variances of the row and column differences ``(2, H,
        W)`` (0 where the difference does not exist); the covariance of the two differences
        at each pixel ``(H, W)`` (0 on the last row and column).

    Examples
    --------
    >>> import torch
    >>> vx, vd, cd = stationary_moments(1.0, torch.ones(4, 5, dtype=torch.float64))
    >>> vx.shape, vd.shape, cd.shape, bool((cd[:-1, :-1] > 0).all())
    (torch.Size([4, 5]), torch.Size([2, 4, 5]), torch.Size([4, 5]), True)
    """
    if not isinstance(data, torch.Tensor) or data.dim() != 2:
        raise ValueError(f"data must be an (H, W) tensor, got {type(data).__name__}")
    h, w = data.shape
    t = torch.tensor([float(tau)], dtype=data.dtype, device=data.device)
    table, cross = _spectral_moments(t, data)
    classes = _classes(h, w, data.device)
    out = [table[0, q, classes[q], 0].reshape(h, w) for q in range(3)]
    valid = _valid_directions((h, w), data.dtype, data.device)
    cov = cross[0, classes[3], 0].reshape(h, w) * valid.prod(0)
    return out[0], torch.stack(out[1:]) * valid, cov


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
    r"""Marginal (co)variances of a stationary Neumann field, per distance from the border.

    The field has precision ``data + t mu`` in the DCT basis (``mu = mu_r + mu_c`` the
    Neumann Laplacian's eigenvalues), ``t`` on a log grid covering ``lo`` to ``hi`` with
    nodes on the lattice ``exp(k * _LOG_STEP)``; ``data`` is ``(..., hs, ws)`` (one spectrum
    per image, or one for all). See :func:`_spectral_moments` for what is tabulated.
    Returns ``(log lo, log hi, table, cross)``.
    """
    la, lb = math.log(max(lo, 1e-30)), math.log(max(hi, 1e-30))
    step = _LOG_STEP
    while (lb - la) / step + 2 > _MAX_NODES:
        step *= 2
    k0, k1 = math.floor(la / step), math.ceil(lb / step)
    k1 = max(k1, k0 + 1)
    t = (torch.arange(k0, k1 + 1, dtype=torch.float64) * step).exp().to(
        dtype=like.dtype, device=like.device)
    table, cross = _spectral_moments(t, data)
    return k0 * step, k1 * step, table, cross


def _spectral_moments(t: torch.Tensor, data: torch.Tensor):
    r"""The (co)variances of the stationary Neumann fields of precision ``data + t_g mu``.

    A pixel's variance is its DCT basis functions' squares weighted by
    ``1 / (data + t mu)``: away from the border the spectral mean, within ``_BORDER``
    pixels of it (where the field has fewer neighbours) a separable correction; with
    ``phi_k`` the 1-D DCT-II basis (``theta_k = pi k / n``, ``k > 0``) and ``i`` the pixel's
    index,

    .. math::

        n \phi_k(i)^2 = 1 + \cos(\theta_k (2 i + 1)), \qquad
        n (\phi_k(i + 1) - \phi_k(i))^2 = \mu_k (1 - \cos(2 \theta_k (i + 1))),

        n (\phi_k(i + 1) - \phi_k(i)) \phi_k(i) = \cos\theta_k - 1
        + \cos(2 \theta_k (i + 1)) - \cos(\theta_k (2 i + 1)),

    the first two the same at both ends by symmetry (``i`` the distance from the nearest
    border), the third (a difference times its first pixel: the covariance of the row and
    the column difference at a pixel is the product of one per axis) not: it reads the
    distance ``i`` from the first border, ``n - 1 - i`` from the last, and its interior
    mean ``cos theta_k - 1 = -mu_k / 2``. ``t`` is ``(grid,)``, ``data`` ``(..., hs, ws)``.

    Returns ``(table, cross)``: ``table`` ``(images, 3, classes, grid)`` holds ``Var x`` and
    the variances of the row and of the column differences per class ``row_class *
    (_BORDER + 1) + col_class`` (:func:`_classes`); ``cross`` ``(images, cross classes,
    grid)`` the covariance of the pixel's row and column differences per class
    (:func:`_cross_classes`).
    """
    opts = dict(dtype=t.dtype, device=t.device)
    hs, ws = data.shape[-2:]
    theta_r = torch.arange(hs, **opts) * math.pi / hs
    theta_c = torch.arange(ws, **opts) * math.pi / ws
    mu_r = (4 * torch.sin(theta_r / 2) ** 2)[:, None]
    mu_c = (4 * torch.sin(theta_c / 2) ** 2)[None, :]
    data = data.reshape(-1, hs, ws).to(**opts)
    inv = 1.0 / (data[:, None] + t[None, :, None, None] * (mu_r + mu_c))  # (images, grid, ..)
    fr, gr = _border_factors(theta_r)
    fc, gc = _border_factors(theta_c)
    n_freq = hs * ws

    def sep(v: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        out = torch.einsum("ngkl,ak,bl->nabg", v, rows, cols) / n_freq
        return out.reshape(out.shape[0], -1, out.shape[-1])  # (images, classes, grid)

    table = torch.stack([sep(inv, fr, fc), sep(inv * mu_r, gr, fc), sep(inv * mu_c, fr, gc)],
                        dim=1)  # (images, 3, classes, grid)
    cross = sep(inv, _cross_factors(theta_r), _cross_factors(theta_c))
    return table, cross


def _border_factors(theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per distance from the border (``0 .. _BORDER``; farther pixels read ``_BORDER``): the
    factors of the pixel's and of its difference's variance at each frequency ``theta``
    (see :func:`_spectral_moments`)."""
    d = torch.arange(_BORDER + 1, dtype=theta.dtype, device=theta.device)[:, None]
    f = 1 + torch.cos(theta[None, :] * (2 * d + 1))
    g = 1 - torch.cos(2 * theta[None, :] * (d + 1))
    f[:, 0], g[:, 0] = 1.0, 1.0  # the constant basis function: 1 / n everywhere
    return f, g


def _cross_factors(theta: torch.Tensor) -> torch.Tensor:
    """``(2 * _BORDER + 1, freq)``: ``n (phi_k(i + 1) - phi_k(i)) phi_k(i)`` at the distances
    ``i = 0 .. _BORDER`` from the first border (the last row is read by the interior too:
    the frequency sums' endpoint terms do not vanish, but no longer depend on ``i``), and
    at the distances ``1 .. _BORDER`` of ``i`` from the last pixel (:func:`_spectral_moments`)."""
    d = torch.arange(_BORDER + 1, dtype=theta.dtype, device=theta.device)[:, None]
    th = theta[None, :]
    base = torch.cos(th) - 1
    near = base + torch.cos(2 * th * (d + 1)) - torch.cos(th * (2 * d + 1))
    far = base + torch.cos(2 * th * d) - torch.cos(th * (2 * d + 1))  # i = n - 1 - d
    return torch.cat([near, far[1:]], dim=0)  # k = 0: all 0 (a constant has no difference)


def _classes(h: int, w: int, device) -> torch.Tensor:
    """``(4, H * W)`` classes (see :func:`_spectral_moments`) of ``Var x``, of the row and
    the column differences' variances (the distances from the nearest border, of the pixel
    or of the difference, capped at ``_BORDER``) and of their covariance
    (:func:`_cross_classes`) at each pixel."""
    def dist(n: int, diff: bool) -> torch.Tensor:
        i = torch.arange(n, device=device)
        far = (n - 2 if diff else n - 1) - i
        return torch.minimum(i, far.clamp_min(0)).clamp_max(_BORDER)

    c = _BORDER + 1
    rx, rd, cx, cd = dist(h, False), dist(h, True), dist(w, False), dist(w, True)
    return torch.stack([(rx[:, None] * c + cx[None, :]).reshape(-1),
                        (rd[:, None] * c + cx[None, :]).reshape(-1),
                        (rx[:, None] * c + cd[None, :]).reshape(-1),
                        _cross_classes(h, w, device)])


def _cross_classes(h: int, w: int, device) -> torch.Tensor:
    """``(H * W,)`` rows of the product of :func:`_cross_factors` for each pixel: index ``i``
    up to ``_BORDER`` from the first border, ``_BORDER + d`` at ``d = n - 1 - i in 1 ..
    _BORDER`` from the last (the last pixel itself has no difference: any row), and
    ``_BORDER`` (the interior) elsewhere; on at most ``2 * _BORDER + 2`` pixels every
    index is exact."""
    def pos(n: int) -> torch.Tensor:
        i = torch.arange(n, device=device)
        d = (n - 1 - i).clamp_min(1)
        return torch.where(i <= _BORDER, i,
                           torch.where(d <= _BORDER, _BORDER + d,
                                       torch.full_like(i, _BORDER)))

    c = 2 * _BORDER + 1
    return (pos(h)[:, None] * c + pos(w)[None, :]).reshape(-1)


def _interpolate(table, taus, classes):
    """Linear interpolation in ``log tau`` of the tabulated (co)variances, each pixel reading
    the row of its border class (``classes``: ``(4, H * W)``) at its ``tau`` of that
    quantity (``taus``: four tensors ``(..., H, W)``, the same one or not). Returns
    ``Var x``, the differences' variances ``(..., 2, H, W)`` and their covariance ``(..., H,
    W)``."""
    a, b, values, cross = table
    n_tables, _, n_cls, n_grid = values.shape
    hw = classes.shape[-1]
    out, done = [], {}
    for q, tau in enumerate(taus):
        if id(tau) not in done:
            pos = ((tau.clamp_min(1e-30).log() - a) * ((n_grid - 1) / (b - a))).clamp(
                0, n_grid - 1)
            j = pos.floor().clamp(max=n_grid - 2)
            done[id(tau)] = ((pos - j).reshape(n_tables, -1), j.long().reshape(n_tables, -1))
        frac, j = done[id(tau)]
        reps = j.shape[-1] // hw  # batch images sharing one table
        idx = classes[q].repeat(reps)[None, :] * n_grid + j  # (tables, pixels)
        flat = (values[:, q] if q < 3 else cross).reshape(n_tables, -1)
        lo, hi = flat.gather(1, idx), flat.gather(1, idx + 1)
        out.append((lo + frac * (hi - lo)).reshape(tau.shape))
    return out[0], torch.stack(out[1:3], dim=-3), out[3]


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


def _weighted_gradient_variance(wt, vg, isotropic, event_dim, cg=None) -> torch.Tensor:
    """``sum_i w_i Var((Dx)_i)`` per image (``tr(D^T W D Q^{-1})``); with ``2 x 2`` blocks
    ``(..., 3, H, W)`` ``sum_i tr(W_i Cov((Dx)_i))``, ``cg`` the covariances."""
    if isotropic and wt.dim() == vg.dim() and wt.shape[-3] == 3:
        per = (wt[..., 0, :, :] * vg[..., 0, :, :] + wt[..., 2, :, :] * vg[..., 1, :, :]
               + 2 * wt[..., 1, :, :] * cg)
    elif isotropic:
        per = wt * vg.sum(-3)
    else:
        per = (wt * vg).sum(-3)
    return per.sum(tuple(range(-event_dim, 0)), keepdim=True)


def _bound(y, op, m, g, vg, vx, s2, scale, wt, isotropic, dims, n, n_obs, dof, cg=None):
    """The evidence lower bound of the fitted ``q`` (up to a constant), one per image."""
    resid = (op.forward(m) - y).square().sum(dims, keepdim=True)
    wv = _weighted_gradient_variance(wt, vg, isotropic, len(dims), cg)
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
    if isotropic and wt.dim() == m.dim() + 1:  # 2 x 2 blocks: D^T W^(1/2) e2
        noise = _block_product(_block_sqrt(wt), e2)
    else:
        noise = (wt.sqrt().unsqueeze(-3) if isotropic else wt.sqrt()) * e2
    rhs = adjoint(e1) / sigma - div(noise) / scale.sqrt()  # covariance Q
    delta, _, _, _ = pcg(apply, rhs, precondition=prec, tol=tol, max_iter=max_iter,
                         event_dim=event_dim)
    return m + delta
