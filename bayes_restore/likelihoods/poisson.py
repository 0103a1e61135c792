"""Poisson counts of a linear operator's output: shot noise with a gain."""

from __future__ import annotations

import torch
from pyro.distributions import constraints
from torch import distributions as td

from bayes_restore._validation import check_positive
from bayes_restore.operators import LinearOperator

from ._base import OperatorLikelihood

__all__ = ["PoissonLikelihood"]


class PoissonLikelihood(OperatorLikelihood):
    r"""``y ~ Poisson(gain * A x)``: photon counts (shot noise) with a gain.

    .. math::

        \log p(y \mid x) = \sum_i \big[y_i \log \lambda_i - \lambda_i - \log(y_i!)\big],
        \qquad \lambda = \text{gain} \cdot \rho(A x)

    ``y`` holds non-negative integer counts; ``x`` is in intensity units, so that
    ``gain`` is the expected count at intensity 1 (photons per unit intensity; the
    noise-to-signal ratio at intensity ``u`` is ``1 / sqrt(gain u)``).

    The rate must be positive, but ``A x`` of a free image may be zero or negative
    during inference. ``rho`` is the identity for ``A x >= floor`` and continues it
    below by ``rho(u) = floor * exp(u / floor - 1)``: positive, continuously
    differentiable, and increasing, so gradients never vanish abruptly (a hard
    clamp would stall L-BFGS and NUTS on pixels that step below zero). The model is
    exact wherever ``A x >= floor``; choose ``floor`` well below one count's intensity
    ``1 / gain``.

    Parameters
    ----------
    x : torch.Tensor
        The image (intensities), shape ``(..., H, W)`` or ``(..., C, H, W)``.
    gain : float or torch.Tensor
        Expected count per unit intensity, > 0, broadcastable to ``A x``.
    operator : LinearOperator, optional
        ``A``; the identity when ``None``.
    floor : float, default 1e-6
        Intensity below which the rate is continued exponentially (see above), > 0.
    event_dim : int, default 2
        2 for ``(H, W)`` observations, 3 for ``(C, H, W)``.

    Examples
    --------
    >>> import torch
    >>> lik = PoissonLikelihood(torch.full((2, 2), 0.5), gain=4.0)  # rate 2 per pixel
    >>> round(float(lik.log_prob(torch.full((2, 2), 2.0))), 4)  # 4 (2 log 2 - 2 - log 2)
    -5.2274
    """

    arg_constraints = {"gain": constraints.positive}
    has_rsample = False
    _params = ("gain",)
    _options = ("floor",)

    def __init__(
        self,
        x: torch.Tensor,
        gain: float | torch.Tensor,
        operator: LinearOperator | None = None,
        *,
        floor: float = 1e-6,
        event_dim: int = 2,
        validate_args: bool | None = None,
    ) -> None:
        check_positive(gain, "gain")
        check_positive(floor, "floor")
        self.floor = float(floor)
        self._setup(x, operator, {"gain": gain}, event_dim, validate_args)

    @property
    def support(self):  # noqa: D102
        return constraints.independent(constraints.nonnegative_integer, len(self.event_shape))

    @property
    def rate(self) -> torch.Tensor:
        """``gain * rho(A x)``: the expected counts (see the class notes for ``rho``)."""
        return self._rate(self.loc.dtype)

    def _rate(self, dtype: torch.dtype) -> torch.Tensor:
        u = self.loc.to(dtype)
        below = self.floor * torch.exp(torch.clamp(u, max=self.floor) / self.floor - 1.0)
        return self._param("gain", dtype) * torch.where(u >= self.floor, u, below)

    def _elementwise(self, dtype: torch.dtype) -> td.Distribution:
        return td.Poisson(self._rate(dtype), validate_args=False)
