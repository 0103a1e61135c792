"""Linear forward operators ``A`` of the observation model ``y = A x + noise``.

An operator acts on the last two dimensions of ``(..., H, W)`` tensors and is
batched over the leading ones. It provides ``forward`` (``A x``), ``adjoint``
(``A^T y``), ``normal`` (``A^T A x``), ``output_shape`` and an upper bound
``norm_bound`` on its operator norm (used for solver step sizes).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["LinearOperator", "Identity"]


class LinearOperator:
    """Interface of the linear operators: subclass and implement ``forward`` and ``adjoint``.

    Subclasses whose output has another spatial shape (decimation) override
    :meth:`output_shape`. ``norm_bound`` must be an upper bound of ``||A||_2``.

    Examples
    --------
    >>> import torch
    >>> class Scale(LinearOperator):
    ...     def forward(self, x):
    ...         return 2 * x
    ...     def adjoint(self, y):
    ...         return 2 * y
    ...     norm_bound = 2.0
    >>> Scale().normal(torch.ones(2, 2))
    tensor([[4., 4.],
            [4., 4.]])
    """

    #: an upper bound on the operator norm ``||A||_2``
    norm_bound: float = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply ``A`` to images of shape ``(..., H, W)``."""
        raise NotImplementedError

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Apply ``A^T`` to observations of shape ``(..., H', W')``."""
        raise NotImplementedError

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """Apply ``A^T A``."""
        return self.adjoint(self.forward(x))

    def output_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        """Shape of ``A x`` for ``x`` of the given shape (same shape by default)."""
        return tuple(shape)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Identity(LinearOperator):
    """The identity ``A = I`` (denoising).

    Examples
    --------
    >>> import torch
    >>> x = torch.ones(2, 3)
    >>> bool(torch.equal(Identity().forward(x), x))
    True
    """

    norm_bound = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return y

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        return x


def as_operator(operator: LinearOperator | None) -> LinearOperator:
    """``None`` means the identity; anything else must be a :class:`LinearOperator`."""
    if operator is None:
        return Identity()
    if not isinstance(operator, LinearOperator):
        raise ValueError(
            "operator must be a bayes_restore.operators.LinearOperator or None, "
            f"got {type(operator).__name__}"
        )
    return operator
