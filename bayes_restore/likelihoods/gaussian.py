"""Gaussian noise after a linear operator: the L2 data term."""

from __future__ import annotations

import math

import torch
from pyro.distributions import constraints

from bayes_restore._validation import check_positive
from bayes_restore.operators import LinearOperator

from ._base import OperatorLikelihood

__all__ = ["GaussianLikelihood"]


class GaussianLikelihood(OperatorLikelihood):
    r"""``y ~ Normal(A x, sigma^2 I)``: Gaussian noise after a linear operator.

    .. math::

        \log p(y \mid x) = -\frac{|y - A x|^2}{2 \sigma^2} - M \log(\sigma \sqrt{2 \pi})

    with ``M`` the number of observed values.

    Parameters
    ----------
    x : torch.Tensor
        The image, shape ``(..., H, W)`` or ``(..., C, H, W)``.
    sigma : float or torch.Tensor
        Noise standard deviation, > 0; broadcastable to ``A x`` (a scalar, one per
        image, or one per pixel).
    operator : LinearOperator, optional
        ``A``; the identity when ``None``.
    event_dim : int, default 2
        Trailing dimensions of one observation: 2 for ``(H, W)``, 3 for ``(C, H, W)``.

    Examples
    --------
    >>> import torch
    >>> lik = GaussianLikelihood(torch.zeros(4, 4), 0.1)
    >>> lik.event_shape
    torch.Size([4, 4])
    >>> round(float(lik.log_prob(torch.zeros(4, 4))), 4)  # 16 * -log(0.1 sqrt(2 pi))
    22.1383
    """

    arg_constraints = {"sigma": constraints.positive}
    has_rsample = True
    _params = ("sigma",)
    noise = "gaussian"

    @property
    def noise_scale(self) -> torch.Tensor:
        """``sigma``: what the engines' fast paths ask for."""
        return self.sigma

    def __init__(
        self,
        x: torch.Tensor,
        sigma: float | torch.Tensor,
        operator: LinearOperator | None = None,
        *,
        event_dim: int = 2,
        validate_args: bool | None = None,
    ) -> None:
        check_positive(sigma, "sigma")
        self._setup(x, operator, {"sigma": sigma}, event_dim, validate_args)

    @property
    def mean(self) -> torch.Tensor:
        return self.loc.expand(self.batch_shape + self.event_shape)

    @property
    def variance(self) -> torch.Tensor:
        return (self.sigma**2).expand(self.batch_shape + self.event_shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        sigma = self.sigma.to(value.dtype)
        elementwise = -0.5 * ((value - self.loc) / sigma) ** 2 - torch.log(
            sigma * math.sqrt(2 * math.pi)
        )
        return self._sum_event(elementwise, value)

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        shape = torch.Size(sample_shape) + self.batch_shape + self.event_shape
        noise = torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device)
        return self.loc + self.sigma * noise

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)
