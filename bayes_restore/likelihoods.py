"""Observation models ``p(y | x)`` as Pyro distributions: a Gaussian through a linear operator."""

from __future__ import annotations

import math

import torch
from pyro.distributions import TorchDistribution, constraints

from ._validation import check_positive
from .operators import LinearOperator, as_operator

__all__ = ["GaussianLikelihood"]


class GaussianLikelihood(TorchDistribution):
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
        if event_dim not in (2, 3):
            raise ValueError(f"event_dim must be 2 or 3, got {event_dim}")
        self.operator = as_operator(operator)
        self.x = x
        self.loc = self.operator.forward(x)
        if not isinstance(sigma, torch.Tensor):
            sigma = torch.as_tensor(sigma, dtype=self.loc.dtype, device=self.loc.device)
        self.sigma = sigma
        full = torch.broadcast_shapes(self.loc.shape, sigma.shape)
        if len(full) < event_dim:
            raise ValueError(f"A x must have at least {event_dim} dimensions, got {tuple(full)}")
        super().__init__(full[:-event_dim], full[-event_dim:], validate_args=validate_args)

    @property
    def support(self):  # noqa: D102
        return constraints.independent(constraints.real, len(self.event_shape))

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
        elementwise = elementwise.expand(torch.broadcast_shapes(elementwise.shape, value.shape))
        return elementwise.sum(tuple(range(-self.event_dim, 0)))

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        shape = torch.Size(sample_shape) + self.batch_shape + self.event_shape
        noise = torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device)
        return self.loc + self.sigma * noise

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        new = _instance if _instance is not None else type(self).__new__(type(self))
        x_event = self.x.shape[self.x.dim() - self.event_dim :]
        new.operator = self.operator
        new.x = self.x.expand(batch_shape + x_event)
        new.loc = self.loc.expand(batch_shape + self.loc.shape[self.loc.dim() - self.event_dim :])
        new.sigma = self.sigma
        TorchDistribution.__init__(new, batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new
