"""The base class of the operator likelihoods: ``loc = A x``, broadcast parameters, ``expand``."""

from __future__ import annotations

import torch
from pyro.distributions import TorchDistribution, constraints
from torch import distributions as td

from bayes_restore._validation import broadcast_shape
from bayes_restore.operators import LinearOperator, as_operator

__all__ = ["OperatorLikelihood"]


class OperatorLikelihood(TorchDistribution):
    """Shared machinery of the likelihoods: ``loc = A x``, broadcast parameters, ``expand``.

    A likelihood observes ``y`` through ``A x``: its event is the observed image
    (``event_dim`` 2 for ``(H, W)``, 3 for ``(C, H, W)``) and any leading dimensions of
    ``A x`` or of a parameter are batch dimensions. Subclasses call :meth:`_setup` from
    ``__init__``, list their parameter names in ``_params`` (each also in
    ``arg_constraints``) and any other per-instance option in ``_options`` (both are
    carried over by ``expand``), and implement ``log_prob``, usually by returning the
    noise law of each observed value from :meth:`_elementwise`: ``log_prob``,
    ``sample``, ``rsample``, ``mean`` and ``variance`` then follow.

    Examples
    --------
    A Cauchy noise law in six lines:

    >>> import torch
    >>> from pyro.distributions import constraints
    >>> from torch import distributions as td
    >>> class CauchyLikelihood(OperatorLikelihood):
    ...     arg_constraints = {"scale": constraints.positive}
    ...     has_rsample = True
    ...     _params = ("scale",)
    ...     def __init__(self, x, scale, operator=None, *, event_dim=2, validate_args=None):
    ...         self._setup(x, operator, {"scale": scale}, event_dim, validate_args)
    ...     def _elementwise(self, dtype):
    ...         return td.Cauchy(self.loc.to(dtype), self._param("scale", dtype))
    >>> lik = CauchyLikelihood(torch.zeros(2, 3, 3), 0.5)  # a batch of two images
    >>> lik.batch_shape, lik.event_shape
    (torch.Size([2]), torch.Size([3, 3]))
    >>> lik.log_prob(torch.zeros(3, 3)).shape
    torch.Size([2])
    """

    _params: tuple[str, ...] = ()
    _options: tuple[str, ...] = ()
    #: the noise law, for the engines' fast paths: "gaussian", "laplace", or None (the
    #: generic Pyro path). A subclass that changes the law must set it accordingly.
    noise: str | None = None

    @property
    def noise_scale(self) -> torch.Tensor:
        """The scale of the noise law (the fast paths' ``sigma``); only with a ``noise`` law."""
        raise NotImplementedError(f"{type(self).__name__} declares no noise law")

    def _setup(
        self,
        x: torch.Tensor,
        operator: LinearOperator | None,
        params: dict[str, float | torch.Tensor],
        event_dim: int,
        validate_args: bool | None,
    ) -> None:
        if event_dim not in (2, 3):
            raise ValueError(f"event_dim must be 2 or 3, got {event_dim}")
        self.operator = as_operator(operator)
        self.x = x
        self.loc = self.operator.forward(x)
        shapes = [self.loc.shape]
        for name, value in params.items():
            if not isinstance(value, torch.Tensor):
                value = torch.as_tensor(value, dtype=self.loc.dtype, device=self.loc.device)
            setattr(self, name, value)
            shapes.append(value.shape)
        full = broadcast_shape(*shapes)
        if len(full) < event_dim:
            raise ValueError(f"A x must have at least {event_dim} dimensions, got {tuple(full)}")
        TorchDistribution.__init__(
            self, full[:-event_dim], full[-event_dim:], validate_args=validate_args
        )

    @property
    def support(self):  # noqa: D102
        return constraints.independent(constraints.real, len(self.event_shape))

    def _dtype(self, value: torch.Tensor) -> torch.dtype:
        """Compute in the image's precision, or the observation's if that is higher."""
        if value.is_floating_point():
            return torch.promote_types(self.loc.dtype, value.dtype)
        return self.loc.dtype

    def _param(self, name: str, dtype: torch.dtype) -> torch.Tensor:
        return getattr(self, name).to(device=self.loc.device, dtype=dtype)

    def _elementwise(self, dtype: torch.dtype) -> td.Distribution:
        """The noise law of each observed value (a torch distribution shaped like ``A x``)."""
        raise NotImplementedError(f"{type(self).__name__} has no elementwise noise law")

    def _sum_event(self, elementwise: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        elementwise = elementwise.expand(broadcast_shape(elementwise.shape, value.shape))
        return elementwise.sum(tuple(range(-self.event_dim, 0)))

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        dtype = self._dtype(value)
        return self._sum_event(self._elementwise(dtype).log_prob(value.to(dtype)), value)

    def _full(self) -> td.Distribution:
        return self._elementwise(self.loc.dtype).expand(self.batch_shape + self.event_shape)

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        with torch.no_grad():
            return self._full().sample(torch.Size(sample_shape))

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        if not self.has_rsample:
            raise NotImplementedError(f"{type(self).__name__} has no reparameterised sampler")
        return self._full().rsample(torch.Size(sample_shape))

    @property
    def mean(self) -> torch.Tensor:
        return self._full().mean

    @property
    def variance(self) -> torch.Tensor:
        return self._full().variance

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        new = _instance if _instance is not None else type(self).__new__(type(self))
        x_event = self.x.shape[self.x.dim() - self.event_dim :]
        new.operator = self.operator
        new.x = self.x.expand(batch_shape + x_event)
        new.loc = self.loc.expand(batch_shape + self.loc.shape[self.loc.dim() - self.event_dim :])
        for name in self._params + self._options:
            setattr(new, name, getattr(self, name))
        TorchDistribution.__init__(new, batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new
