"""The generalized gradient prior family as Pyro distributions (TV, Gaussian-gradient, order beta).

``log p(x | b) = -phi_beta(x) / (beta b^beta) - (N - C) log b + const`` with
``phi_beta(x) = sum |grad x|^beta`` (see ``shared/design.md`` section 1). ``N`` is
the number of values of one image and ``C`` its number of channels: ``phi_beta``
is ``beta``-homogeneous and flat along the ``C`` constant images (one per
channel), so the normaliser of the proper density on their complement is
``b^(N - C) Z(1)``. For a grey image this is the ``(N - 1) log b`` of the design
page. The additive constant ``log Z(1)``, which depends on neither ``x`` nor
``b``, is left out.

The priors are improper along constant images: :meth:`GradientPrior.sample`
raises. Initialise inference at the data instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pyro.distributions import TorchDistribution, constraints

from ._validation import check_positive
from .differences import gradient_energy

__all__ = ["GradientPrior", "GaussianGradient", "TotalVariation", "make_prior", "PRIOR_NAMES"]


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
        Passed to :class:`torch.distributions.Distribution`.

    Examples
    --------
    >>> import pyro, torch
    >>> from bayes_restore.priors import GradientPrior
    >>> prior = GradientPrior(0.1, beta=1.5, shape=(8, 8))
    >>> prior.log_prob(torch.zeros(8, 8)).shape
    torch.Size([])
    >>> def model():
    ...     return pyro.sample("x", prior)
    """

    arg_constraints = {"scale": constraints.positive}
    has_rsample = False

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

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        scale = self.scale.to(device=value.device, dtype=value.dtype)
        return -self.energy(value) / (self.beta * scale**self.beta) - (
            self.degrees_of_freedom * torch.log(scale)
        )

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        raise NotImplementedError(
            f"{type(self).__name__} is improper (flat along constant images) and cannot be "
            "sampled; initialise inference at the data, e.g. init_to_value(values={'x': y})"
        )

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        new = _instance if _instance is not None else type(self).__new__(type(self))
        new.scale = self.scale.expand(batch_shape)
        new.beta = self.beta
        new.isotropic = self.isotropic
        TorchDistribution.__init__(new, batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def __repr__(self) -> str:
        kind = "isotropic" if self.isotropic else "anisotropic"
        return (
            f"{type(self).__name__}(scale: {tuple(self.scale.shape) or float(self.scale)}, "
            f"beta={self.beta:g}, shape={tuple(self.event_shape)}, {kind})"
        )


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
PRIOR_NAMES = {
    "tv": (1.0, True),
    "tv-anisotropic": (1.0, False),
    "gaussian": (2.0, True),
    "gradient": (None, True),
    "gradient-anisotropic": (None, False),
}


def make_prior(
    name: str,
    scale: float | torch.Tensor,
    *,
    shape: Sequence[int],
    beta: float | None = None,
) -> GradientPrior:
    """Build a prior of the family from its name.

    Parameters
    ----------
    name : {"tv", "tv-anisotropic", "gaussian", "gradient", "gradient-anisotropic"}
        ``"gradient"`` is the general order ``beta`` (default 1).
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
