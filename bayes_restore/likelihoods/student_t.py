"""Student-t noise after a linear operator: a heavy-tailed, robust data term."""

from __future__ import annotations

import torch
from pyro.distributions import constraints
from torch import distributions as td

from bayes_restore._validation import check_positive
from bayes_restore.operators import LinearOperator

from ._base import OperatorLikelihood

__all__ = ["StudentTLikelihood"]


class StudentTLikelihood(OperatorLikelihood):
    r"""``y ~ StudentT(nu, A x, s)``: heavy-tailed noise, a robust data term.

    .. math::

        \log p(y \mid x) = \sum_i \Big[\log\Gamma\big(\tfrac{\nu+1}{2}\big)
            - \log\Gamma\big(\tfrac{\nu}{2}\big) - \tfrac12 \log(\nu\pi) - \log s
            - \tfrac{\nu+1}{2} \log\Big(1 + \frac{(y_i - (A x)_i)^2}{\nu s^2}\Big)\Big]

    A Gaussian scale mixture: it tends to ``Normal(A x, s^2)`` as ``nu -> inf``; small
    ``nu`` (1 is Cauchy) lets outliers through at a logarithmic, not quadratic, cost.
    Non-convex in ``x``: the MAP may have several local optima.

    Parameters
    ----------
    x : torch.Tensor
        The image, shape ``(..., H, W)`` or ``(..., C, H, W)``.
    scale : float or torch.Tensor
        ``s > 0``, broadcastable to ``A x``.
    df : float or torch.Tensor
        Degrees of freedom ``nu > 0``, broadcastable to ``A x``.
    operator : LinearOperator, optional
        ``A``; the identity when ``None``.
    event_dim : int, default 2
        2 for ``(H, W)`` observations, 3 for ``(C, H, W)``.

    Examples
    --------
    >>> import torch
    >>> lik = StudentTLikelihood(torch.zeros(3, 3), 0.1, df=3.0)
    >>> lik.log_prob(torch.zeros(3, 3)).shape
    torch.Size([])
    """

    arg_constraints = {"scale": constraints.positive, "df": constraints.positive}
    has_rsample = True
    _params = ("scale", "df")

    def __init__(
        self,
        x: torch.Tensor,
        scale: float | torch.Tensor,
        df: float | torch.Tensor,
        operator: LinearOperator | None = None,
        *,
        event_dim: int = 2,
        validate_args: bool | None = None,
    ) -> None:
        check_positive(scale, "scale")
        check_positive(df, "df")
        self._setup(x, operator, {"scale": scale, "df": df}, event_dim, validate_args)

    def _elementwise(self, dtype: torch.dtype) -> td.Distribution:
        return td.StudentT(
            self._param("df", dtype),
            self.loc.to(dtype),
            self._param("scale", dtype),
            validate_args=False,
        )
