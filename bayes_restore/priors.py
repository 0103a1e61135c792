"""The generalized gradient prior family as Pyro distributions (TV, Gaussian-gradient, order beta).

``log p(x | b) = -phi_beta(x) / (beta b^beta) - (N - C) log b + const`` with
``phi_beta(x) = sum |grad x|^beta`` (derived on the Derivations page of the
documentation). ``N`` is the number of values of one image and ``C`` its number of
channels: ``phi_beta`` is ``beta``-homogeneous and flat along the ``C`` constant images
(one per channel), so the normaliser of the proper density on their complement is
``b^(N - C) Z(1)``; for a grey image, ``(N - 1) log b``. The additive constant
``log Z(1)``, which depends on neither ``x`` nor ``b``, is left out.

The priors are improper along constant images. :meth:`GradientPrior.sample` draws
from their *proper part*: the law of the image given that the mean of every channel
is 0 (exact for ``beta = 2``; for other orders a documented surrogate whose energy
has the exact law, see :meth:`GradientPrior.sample`). This is what Pyro's
``init_to_sample``, autoguides, ``Predictive`` and ``NUTS`` call; the package's own
engines never sample the prior, they start at the data.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from pyro.distributions import TorchDistribution, constraints

from ._validation import check_positive
from .differences import gradient_energy, idct2, laplacian_eigenvalues

__all__ = [
    "GradientPrior",
    "GaussianGradient",
    "TotalVariation",
    "make_prior",
    "register_prior",
    "PRIOR_NAMES",
]


class GradientPrior(TorchDistribution):
    r"""Generalized gradient prior of order ``beta`` and scale ``b`` on images.

    .. math::

        \log p(x \mid b) = -\frac{\sum_{pixels} |\nabla x|^\beta}{\beta\, b^\beta}
                           - (N - C) \log b + \text{const}

    Parameters
    ----------
    scale : float or torch.Tensor
        The scale ``b > 0``. A tensor's shape is the batch shape.
    beta : float, default 1.0
        The order: 1 is total variation (a Laplace prior on gradients), 2 the
        Gaussian-gradient (GMRF, Tikhonov) prior; ``beta < 1`` is non-convex.
    shape : sequence of int
        The image shape ``(H, W)`` or ``(C, H, W)``: the event shape.
    isotropic : bool, default True
        Euclidean norm of the two differences at each pixel; ``False`` sums
        ``|dx|^beta + |dy|^beta``. Irrelevant for ``beta = 2``.
    validate_args : bool, optional
        Passed to :class:`torch.distributions.Distribution`: whether ``log_prob``
        checks that the value is in the support (no NaN). The shape of the value is
        always checked.

    Notes
    -----
    The density is improper: flat along the ``C`` constant images. :meth:`sample`
    draws from its proper part, the law given that every channel has mean 0
    (exact for ``beta = 2``, a documented surrogate otherwise); ``mean`` and
    ``variance`` are undefined and raise, as for any improper law. Draws are
    returned in the scale's dtype if the scale was given as a floating tensor,
    else in torch's default dtype.

    Examples
    --------
    >>> import pyro, torch
    >>> from bayes_restore.priors import GradientPrior
    >>> prior = GradientPrior(0.1, beta=1.5, shape=(8, 8))
    >>> prior.log_prob(torch.zeros(8, 8)).shape
    torch.Size([])
    >>> prior.sample((5,)).shape  # draws with zero mean, for Pyro's init and Predictive
    torch.Size([5, 8, 8])
    >>> def model():
    ...     return pyro.sample("x", prior)
    """

    arg_constraints = {"scale": constraints.positive}

    def __init__(
        self,
        scale: float | torch.Tensor,
        beta: float = 1.0,
        *,
        shape: Sequence[int],
        isotropic: bool = True,
        validate_args: bool | None = None,
    ) -> None:
        check_positive(scale, "scale")
        try:
            beta = float(beta)
        except (TypeError, ValueError):
            raise ValueError(f"beta must be a positive number, got {beta!r}") from None
        if not (beta > 0 and beta < float("inf")):
            raise ValueError(f"beta must be a positive number, got {beta!r}")
        shape = tuple(int(s) for s in shape)
        if len(shape) not in (2, 3) or min(shape) < 1:
            raise ValueError(f"shape must be (H, W) or (C, H, W) with positive sizes, got {shape}")
        if isinstance(scale, torch.Tensor) and scale.is_floating_point():
            self._sample_dtype = scale.dtype
        else:
            self._sample_dtype = torch.get_default_dtype()
        if not isinstance(scale, torch.Tensor):
            # a Python number keeps its full precision; log_prob casts to the image's dtype
            scale = torch.as_tensor(scale, dtype=torch.float64)
        self.scale = scale
        self.beta = beta
        self.isotropic = bool(isotropic) or beta == 2.0
        super().__init__(scale.shape, torch.Size(shape), validate_args=validate_args)

    @property
    def support(self):  # noqa: D102 - the constraint of the event
        return constraints.independent(constraints.real, len(self.event_shape))

    @property
    def num_channels(self) -> int:
        """``C``: 1 for ``(H, W)`` images."""
        return self.event_shape[0] if len(self.event_shape) == 3 else 1

    @property
    def degrees_of_freedom(self) -> int:
        """``N - C``: the exponent of ``b`` in the normaliser."""
        n = 1
        for s in self.event_shape:
            n *= s
        return n - self.num_channels

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        """``phi_beta(x) = sum |grad x|^beta`` over the event, shape ``x``'s batch shape.

        This is the regulariser ``R(x)`` of the variational energy: solvers and the
        training losses call it rather than re-implementing it.
        """
        return gradient_energy(
            x, self.beta, isotropic=self.isotropic, event_dim=len(self.event_shape)
        )

    def weight(self, sigma: float | torch.Tensor) -> torch.Tensor:
        """``lambda = 2 sigma^2 / (beta b^beta)``: the energy weight for noise level ``sigma``."""
        return 2 * torch.as_tensor(sigma) ** 2 / (self.beta * self.scale**self.beta)

    def with_shape(self, shape: Sequence[int]) -> GradientPrior:
        """The same prior (scale, order, isotropy) on images of another ``shape``.

        What tiled and chunked restoration ask of a prior instance: each tile gets the
        prior at its own size.

        Examples
        --------
        >>> TotalVariation(0.1, shape=(64, 64)).with_shape((3, 16, 16)).event_shape
        torch.Size([3, 16, 16])
        """
        new = type(self).__new__(type(self))
        GradientPrior.__init__(new, self.scale, self.beta, shape=shape,
                               isotropic=self.isotropic, validate_args=self._validate_args)
        new._sample_dtype = self._sample_dtype
        return new

    @property
    def gradient_order(self) -> float:
        """``beta``: the capability the engines ask for to run their gradient-prior fast paths.

        A prior of another family simply has no such attribute (engines then take the
        generic Pyro path); a subclass that changes the law should return ``None``.
        """
        return self.beta

    @property
    def has_rsample(self) -> bool:
        """Reparameterised draws exist for ``beta = 2`` (the exact Gaussian sampler)."""
        return self.beta == 2.0

    def _check_value_shape(self, value: torch.Tensor) -> None:
        """The shape checks of torch's ``_validate_sample``, run whatever ``validate_args`` is.

        The value must end with the event shape and broadcast with
        ``batch_shape + event_shape``; a wrong image shape is a bug, never a
        value-domain question, so it is refused even with validation off.
        """
        if not isinstance(value, torch.Tensor):
            raise ValueError(
                f"the value argument to log_prob must be a torch.Tensor, got {type(value).__name__}"
            )
        event = tuple(self.event_shape)
        actual = tuple(value.shape)
        if len(actual) < len(event) or actual[len(actual) - len(event) :] != event:
            raise ValueError(
                f"value of shape {actual} does not end with the event shape {event} of "
                f"{type(self).__name__}: the right-most size of value must match event_shape"
            )
        expected = tuple(self.batch_shape) + event
        for i, j in zip(reversed(actual), reversed(expected), strict=False):
            if i != 1 and j != 1 and i != j:
                raise ValueError(
                    f"value of shape {actual} is not broadcastable with batch_shape + "
                    f"event_shape {expected} of {type(self).__name__}"
                )

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """``log p(value | b)`` without the constant ``log Z(1)``, shape ``batch`` broadcast.

        Raises ``ValueError`` if ``value`` does not end with the event shape or does
        not broadcast with ``batch_shape + event_shape`` (always), or holds NaN
        (when ``validate_args``).
        """
        self._check_value_shape(value)
        if self._validate_args:
            self._validate_sample(value)
        scale = self.scale.to(device=value.device, dtype=value.dtype)
        return -self.energy(value) / (self.beta * scale**self.beta) - (
            self.degrees_of_freedom * torch.log(scale)
        )

    def sample(
        self, sample_shape: torch.Size = torch.Size(), *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        r"""Draws from the proper part of the prior: every channel has mean exactly 0.

        The prior is flat along constant images, so it has no draws; conditioning
        on the per-channel mean leaves a proper law on the zero-mean subspace of
        dimension ``N - C``, and that is what is sampled (channels are independent).

        - ``beta = 2`` (exact): a Gaussian with precision ``grad^T grad / b^2`` on the
          non-constant modes. In the orthonormal DCT-II basis that diagonalises
          ``grad^T grad`` (Neumann boundary, :func:`~bayes_restore.differences.dct2`),
          coefficient ``(k, l) != (0, 0)`` is ``N(0, b^2 / mu_kl)`` with
          ``mu_kl = 4 sin^2(pi k / 2H) + 4 sin^2(pi l / 2W)``, and ``(0, 0)`` is 0.
        - other ``beta`` (a surrogate, *not* an exact prior draw): no closed-form
          sampler exists. Because ``phi_beta`` is ``beta``-homogeneous, the prior
          splits into a radius and a direction: ``phi_beta(x_c) / (beta b^beta)``
          of each channel is exactly ``Gamma((HW - 1) / beta, 1)``, independent of
          the direction ``x_c / phi_beta(x_c)^(1/beta)``. The draw takes the
          direction of the unit-scale Gaussian draw above and rescales it so that
          its energy is an exact draw of that Gamma law. So the energy (and
          every scale-only statistic: ``E phi_beta = (HW - 1) b^beta`` per channel)
          has the prior's law, while the shape of the image is Gaussian-smooth,
          not piecewise constant as TV images are. Use these draws to initialise
          inference or to check shapes and scales, not as TV prior samples.

        Every random number comes from torch's generator (``generator`` if given,
        else the global one), so ``pyro.set_rng_seed`` makes draws reproducible.

        Parameters
        ----------
        sample_shape : torch.Size, default ()
            Leading shape of the draws.
        generator : torch.Generator, optional
            Source of the random numbers (default: torch's global generator).

        Returns
        -------
        torch.Tensor
            Shape ``sample_shape + batch_shape + event_shape``, no gradient.

        Examples
        --------
        >>> import torch
        >>> x = GaussianGradient(0.1, shape=(3, 16, 16)).sample((4,))
        >>> x.shape, bool(x.mean((-2, -1)).abs().max() < 1e-5)
        (torch.Size([4, 3, 16, 16]), True)
        """
        with torch.no_grad():
            return self._draw(torch.Size(sample_shape), generator)

    def rsample(
        self, sample_shape: torch.Size = torch.Size(), *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Reparameterised :meth:`sample` (differentiable in the scale): ``beta = 2`` only.

        The draw is ``b`` times a draw at unit scale. For other orders the sampler
        is a surrogate (see :meth:`sample`), so a gradient through it would be
        the gradient of another law: ``NotImplementedError``.
        """
        if not self.has_rsample:
            raise NotImplementedError(
                f"{type(self).__name__} with beta={self.beta:g} has no exact sampler, hence no "
                "reparameterised one; sample() draws a documented surrogate"
            )
        return self._draw(torch.Size(sample_shape), generator)

    def _draw(self, sample_shape: torch.Size, generator: torch.Generator | None) -> torch.Tensor:
        device = self.scale.device
        dtype = self._sample_dtype
        event_dim = len(self.event_shape)
        batch = tuple(self.batch_shape)
        shape = torch.Size(sample_shape) + self.batch_shape + self.event_shape
        h, w = self.event_shape[-2:]
        # unit-scale Gaussian on the non-constant DCT modes (the (0, 0) mode stays 0)
        mu = laplacian_eigenvalues(h, w, dtype=dtype, device=device)
        inv_sqrt_mu = torch.where(mu > 0, mu.clamp_min(1e-300).rsqrt(), torch.zeros_like(mu))
        z = torch.randn(shape, generator=generator, dtype=dtype, device=device)
        unit = idct2(z * inv_sqrt_mu)
        b = self.scale.to(dtype=dtype).expand(self.batch_shape)
        if self.beta == 2.0:
            return unit * b.reshape(batch + (1,) * event_dim)
        # radius of each channel: phi_beta(x_c) = beta b^beta Gamma((HW - 1) / beta)
        phi = gradient_energy(unit, self.beta, isotropic=self.isotropic, event_dim=2)
        energy = _standard_gamma((h * w - 1) / self.beta, phi.shape, generator, dtype, device)
        target = self.beta * b.reshape(batch + (1,) * (event_dim - 2)) ** self.beta * energy
        positive = phi > 0
        factor = torch.where(
            positive, (target / torch.where(positive, phi, 1.0)) ** (1 / self.beta), 0.0
        )
        return unit * factor[..., None, None]

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        new = _instance if _instance is not None else type(self).__new__(type(self))
        new.scale = self.scale.expand(batch_shape)
        new.beta = self.beta
        new.isotropic = self.isotropic
        new._sample_dtype = self._sample_dtype
        TorchDistribution.__init__(new, batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def __repr__(self) -> str:
        kind = "isotropic" if self.isotropic else "anisotropic"
        return (
            f"{type(self).__name__}(scale: {tuple(self.scale.shape) or float(self.scale)}, "
            f"beta={self.beta:g}, shape={tuple(self.event_shape)}, {kind})"
        )


def _standard_gamma(
    concentration: float,
    shape: torch.Size,
    generator: torch.Generator | None,
    dtype: torch.dtype,
    device,
) -> torch.Tensor:
    """``Gamma(concentration, 1)`` draws from torch's generator (Marsaglia and Tsang, 2000).

    Exact rejection sampling from normal and uniform draws, so an explicit
    ``generator`` works (``torch._standard_gamma`` takes none). Concentrations
    below 1 use ``Gamma(a) = Gamma(a + 1) U^(1/a)``; 0 gives 0.
    """
    if concentration <= 0:
        return torch.zeros(shape, dtype=dtype, device=device)
    a = concentration if concentration >= 1 else concentration + 1
    d = a - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    numel = math.prod(shape)
    out = torch.empty(numel, dtype=dtype, device=device)
    pending = torch.arange(numel, device=device)
    while pending.numel():
        n = pending.numel()
        x = torch.randn(n, generator=generator, dtype=dtype, device=device)
        u = torch.rand(n, generator=generator, dtype=dtype, device=device)
        v = (1 + c * x) ** 3
        ok = v > 0
        log_v = torch.log(torch.where(ok, v, torch.ones_like(v)))
        accept = ok & (torch.log(u) < 0.5 * x * x + d - d * v + d * log_v)
        out[pending[accept]] = (d * v)[accept]
        pending = pending[~accept]
    out = out.reshape(shape)
    if concentration < 1:
        u = torch.rand(shape, generator=generator, dtype=dtype, device=device)
        out = out * u ** (1.0 / concentration)
    return out


class GaussianGradient(GradientPrior):
    """Gaussian-gradient prior (``beta = 2``): a GMRF, the Tikhonov / ridge regulariser.

    ``log p(x | b) = -|grad x|^2 / (2 b^2) - (N - C) log b + const``. Smooths
    noise and edges alike.

    Examples
    --------
    >>> import torch
    >>> prior = GaussianGradient(0.5, shape=(2, 2))
    >>> float(prior.energy(torch.tensor([[0., 1.], [0., 1.]])))
    2.0
    """

    def __init__(
        self,
        scale: float | torch.Tensor,
        *,
        shape: Sequence[int],
        validate_args: bool | None = None,
    ) -> None:
        super().__init__(scale, 2.0, shape=shape, validate_args=validate_args)


class TotalVariation(GradientPrior):
    """Total-variation prior (``beta = 1``): a Laplace prior on gradients, the lasso of images.

    ``log p(x | b) = -TV(x) / b - (N - C) log b + const``. Keeps edges.

    Examples
    --------
    >>> import torch
    >>> prior = TotalVariation(0.1, shape=(2, 2), isotropic=False)
    >>> float(prior.energy(torch.tensor([[0., 1.], [2., 4.]])))  # |2| + |3| + |1| + |2|
    8.0
    """

    def __init__(
        self,
        scale: float | torch.Tensor,
        *,
        shape: Sequence[int],
        isotropic: bool = True,
        validate_args: bool | None = None,
    ) -> None:
        super().__init__(scale, 1.0, shape=shape, isotropic=isotropic, validate_args=validate_args)


#: prior names understood by :func:`make_prior` (and ``denoise(prior=...)``): (beta, isotropic)
#: for the gradient family; names added by :func:`register_prior` are listed as (None, None)
PRIOR_NAMES: dict[str, tuple[float | None, bool | None]] = {
    "tv": (1.0, True),
    "tv-anisotropic": (1.0, False),
    "gaussian": (2.0, True),
    "gradient": (None, True),
    "gradient-anisotropic": (None, False),
}

#: factories of the priors registered by name beyond the gradient family
_REGISTERED: dict[str, Callable[..., TorchDistribution]] = {}


def register_prior(name: str, factory: Callable[..., TorchDistribution]) -> None:
    """Make ``name`` a prior name of :func:`make_prior`, hence of ``denoise``, ``restore``,
    ``restore_tiled``, ``restore_dask`` and the command line's ``--prior``.

    ``factory(scale, *, shape, beta=None)`` returns a Pyro distribution over images of
    event shape ``shape``. The engines use what the distribution provides: its
    ``log_prob`` always (generic MAP, NUTS), ``energy(x)`` and ``weight(sigma)`` if it
    has them (``weight=`` given instead of ``scale=`` needs a
    ``scale_from_weight(sigma, weight)`` static method on the factory's result class, or
    is refused), and a ``gradient_order`` only if it is exactly a gradient prior.

    Examples
    --------
    >>> import torch
    >>> class Huber(GradientPrior):  # any TorchDistribution over images works
    ...     gradient_order = None  # not the gradient family: the generic engines run
    >>> register_prior("my-huber", lambda scale, *, shape, beta=None: Huber(scale, shape=shape))
    >>> make_prior("my-huber", 0.1, shape=(4, 4)).event_shape
    torch.Size([4, 4])
    >>> _ = PRIOR_NAMES.pop("my-huber"), _REGISTERED.pop("my-huber")  # undo the example
    """
    if not isinstance(name, str) or not name or name.lower() != name:
        raise ValueError(f"name must be a non-empty lower-case string, got {name!r}")
    if name in PRIOR_NAMES:
        raise ValueError(f"prior name {name!r} is taken")
    if not callable(factory):
        raise TypeError(f"factory must be callable, got {type(factory).__name__}")
    _REGISTERED[name] = factory
    PRIOR_NAMES[name] = (None, None)


def make_prior(
    name: str,
    scale: float | torch.Tensor,
    *,
    shape: Sequence[int],
    beta: float | None = None,
) -> TorchDistribution:
    """Build a prior from its name.

    Parameters
    ----------
    name : {"tv", "tv-anisotropic", "gaussian", "gradient", "gradient-anisotropic"} or str
        ``"gradient"`` is the general order ``beta`` (default 1); or a name added by
        :func:`register_prior`.
    scale : float or torch.Tensor
        The scale ``b > 0``.
    shape : sequence of int
        The image shape ``(H, W)`` or ``(C, H, W)``.
    beta : float, optional
        The order for ``"gradient"``; for the named cases it may only repeat their
        order (1 for TV, 2 for ``"gaussian"``).

    Examples
    --------
    >>> make_prior("gradient", 0.1, shape=(8, 8), beta=1.5)
    GradientPrior(scale: 0.1, beta=1.5, shape=(8, 8), isotropic)
    """
    if not isinstance(name, str) or name.lower() not in PRIOR_NAMES:
        raise ValueError(f"unknown prior name {name!r}; expected one of {sorted(PRIOR_NAMES)}")
    if name.lower() in _REGISTERED:
        return _REGISTERED[name.lower()](scale, shape=tuple(shape), beta=beta)
    fixed_beta, isotropic = PRIOR_NAMES[name.lower()]
    if fixed_beta is not None and beta is not None and float(beta) != fixed_beta:
        raise ValueError(
            f"beta={beta!r} contradicts prior={name!r} (order {fixed_beta:g}); use "
            "prior='gradient' for a general order"
        )
    order = fixed_beta if fixed_beta is not None else (1.0 if beta is None else beta)
    if order == 2.0:
        return GaussianGradient(scale, shape=shape)
    if order == 1.0:
        return TotalVariation(scale, shape=shape, isotropic=isotropic)
    return GradientPrior(scale, order, shape=shape, isotropic=isotropic)
