"""Quantised Gaussian noise (integer levels) and the intensity <-> level conventions."""

from __future__ import annotations

import math

import torch
from pyro.distributions import constraints

from bayes_restore._validation import check_positive
from bayes_restore.operators import LinearOperator

from ._base import OperatorLikelihood

__all__ = ["QuantizedGaussianLikelihood", "to_levels", "from_levels", "check_levels"]


def to_levels(x: torch.Tensor, levels: int = 256) -> torch.Tensor:
    """Intensities in ``[0, 1]`` to integer levels ``round(x (L - 1))``, clipped to ``0..L-1``.

    The convention of :class:`QuantizedGaussianLikelihood` and of the cross-entropy
    losses: level ``k`` is the bin ``[(k - 1/2) / (L - 1), (k + 1/2) / (L - 1))``, the
    end bins open to ``-inf`` and ``+inf``. 8-bit data are ``levels=256``.

    Parameters
    ----------
    x : torch.Tensor
        Intensities (any shape; values outside ``[0, 1]`` go to the end levels).
    levels : int, default 256
        ``L >= 2``.

    Returns
    -------
    torch.Tensor
        ``torch.long`` levels, the shape of ``x``.

    Examples
    --------
    >>> import torch
    >>> to_levels(torch.tensor([-0.1, 0.0, 0.5, 1.0, 1.3]))
    tensor([  0,   0, 128, 255, 255])
    """
    check_levels(levels)
    return torch.round(x * (levels - 1)).clamp(0, levels - 1).long()


def from_levels(k: torch.Tensor, levels: int = 256, *, dtype: torch.dtype | None = None):
    """Integer levels back to intensities ``k / (L - 1)`` (the bin centres).

    Examples
    --------
    >>> import torch
    >>> from_levels(torch.tensor([0, 51, 255]))
    tensor([0.0000, 0.2000, 1.0000])
    """
    check_levels(levels)
    dtype = dtype or (k.dtype if k.is_floating_point() else torch.get_default_dtype())
    return k.to(dtype) / (levels - 1)


def check_levels(levels: int) -> None:
    """Refuse a number of levels that is not an integer ``L >= 2``.

    The check of :func:`to_levels`, :func:`from_levels`,
    :class:`QuantizedGaussianLikelihood` and the cross-entropy losses of
    :mod:`bayes_restore.losses`.

    Parameters
    ----------
    levels : int
        The number of quantisation levels ``L``.

    Raises
    ------
    ValueError
        If ``levels`` is not an ``int`` (``bool`` is refused) or is below 2.

    Examples
    --------
    >>> check_levels(256)
    >>> check_levels(1)
    Traceback (most recent call last):
        ...
    ValueError: levels must be an integer >= 2, got 1
    """
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 2:
        raise ValueError(f"levels must be an integer >= 2, got {levels!r}")


def _log1mexp(d: torch.Tensor) -> torch.Tensor:
    """``log(1 - exp(d))`` for ``d < 0``, accurate near 0 and for very negative ``d``."""
    near = d > -math.log(2.0)
    return torch.where(
        near,
        torch.log(-torch.expm1(torch.clamp(d, min=-math.log(2.0)))),
        torch.log1p(-torch.exp(torch.clamp(d, max=-math.log(2.0)))),
    )


def _log_normal_mass(
    a: torch.Tensor, b: torch.Tensor, open_lo: torch.Tensor, open_hi: torch.Tensor
) -> torch.Tensor:
    """``log(Phi(b) - Phi(a))`` for finite ``a < b``, with ``a = -inf`` where ``open_lo`` and
    ``b = +inf`` where ``open_hi``. Accurate in both tails; finite values and gradients.

    The interval is reflected (``Phi(b) - Phi(a) = Phi(-a) - Phi(-b)``) so that it never
    lies right of 0. Then either it lies left of 0, where ``log Phi`` is accurate
    (``log_ndtr``) and the difference is taken in log space, or it contains 0, where
    ``(erf(b / sqrt 2) + erf(-a / sqrt 2)) / 2`` adds two non-negative terms. Every
    branch is evaluated at safe inputs, so ``torch.where`` passes no NaN gradients.
    """
    closed = ~(open_lo | open_hi)
    flip = a > 0
    lo = torch.where(flip, -b, a)
    hi = torch.where(flip, -a, b)
    tail = closed & (hi <= 0)
    central = closed & ~tail
    hi_t, lo_t = torch.where(tail, hi, -1.0), torch.where(tail, lo, -2.0)
    log_hi = torch.special.log_ndtr(hi_t)
    d = torch.clamp(torch.special.log_ndtr(lo_t) - log_hi, max=-torch.finfo(a.dtype).tiny)
    tail_value = log_hi + _log1mexp(d)
    hi_c, lo_c = torch.where(central, hi, 1.0), torch.where(central, lo, -1.0)
    root2 = math.sqrt(2.0)
    central_value = torch.log(0.5 * (torch.erf(hi_c / root2) + torch.erf(-lo_c / root2)))
    value = torch.where(tail, tail_value, central_value)
    value = torch.where(open_lo, torch.special.log_ndtr(b), value)
    value = torch.where(open_hi, torch.special.log_ndtr(-a), value)
    return torch.where(open_lo & open_hi, torch.zeros_like(value), value)


class QuantizedGaussianLikelihood(OperatorLikelihood):
    r"""The integer level of ``Normal(A x, sigma^2)``: Gaussian noise, then quantisation.

    ``y`` holds integer levels ``0 .. L-1`` (8-bit data: ``L = 256``). Intensities in
    ``[0, 1]`` map to levels by ``round(u (L - 1))`` (:func:`to_levels`), so level ``k``
    is the bin ``[(k - 1/2) / (L - 1), (k + 1/2) / (L - 1))`` of the continuous value,
    the first bin open to ``-inf`` and the last to ``+inf`` (values beyond ``[0, 1]``
    clip). With ``mu = A x`` and ``Phi`` the standard normal CDF,

    .. math::

        p(y = k \mid x) = \Phi\Big(\frac{(k + \frac12)/(L-1) - \mu}{\sigma}\Big)
                        - \Phi\Big(\frac{(k - \frac12)/(L-1) - \mu}{\sigma}\Big),

    which sums to 1 over the ``L`` levels exactly. Its negative log is a
    cross-entropy over ``L`` intensity classes whose class probabilities come from
    ``x`` through a Gaussian, not from free logits (compare
    :func:`bayes_restore.losses.intensity_cross_entropy`). For ``sigma`` large
    against the bin width ``1 / (L - 1)`` it approaches the Gaussian density times
    the bin width; for small ``sigma`` it honestly says that a level far from ``A x``
    is (log-)impossible, computed in log space so that tails stay accurate (no
    ``log(0)`` while ``log Phi`` is representable).

    Parameters
    ----------
    x : torch.Tensor
        The image (intensities), shape ``(..., H, W)`` or ``(..., C, H, W)``.
    sigma : float or torch.Tensor
        Standard deviation of the noise before quantisation, in intensity units,
        > 0; broadcastable to ``A x``.
    operator : LinearOperator, optional
        ``A``; the identity when ``None``.
    levels : int, default 256
        The number of levels ``L >= 2``.
    event_dim : int, default 2
        2 for ``(H, W)`` observations, 3 for ``(C, H, W)``.

    Notes
    -----
    The generic MAP starts from ``A^T y``, which is in levels, not intensities: pass
    ``init=from_levels(y)`` (identity operator) to
    :func:`~bayes_restore.infer.map_estimate`. ``sample()`` returns levels as
    floating-point numbers.

    Examples
    --------
    >>> import torch
    >>> lik = QuantizedGaussianLikelihood(torch.full((1, 1), 0.2), 0.01)
    >>> p = lik.log_prob(torch.arange(256.0).reshape(256, 1, 1)).exp()
    >>> round(float(p.sum()), 6), int(p.argmax())
    (1.0, 51)
    """

    arg_constraints = {"sigma": constraints.positive}
    has_rsample = False
    _params = ("sigma",)
    _options = ("levels",)

    def __init__(
        self,
        x: torch.Tensor,
        sigma: float | torch.Tensor,
        operator: LinearOperator | None = None,
        *,
        levels: int = 256,
        event_dim: int = 2,
        validate_args: bool | None = None,
    ) -> None:
        check_positive(sigma, "sigma")
        check_levels(levels)
        self.levels = levels
        self._setup(x, operator, {"sigma": sigma}, event_dim, validate_args)

    @property
    def support(self):  # noqa: D102
        return constraints.independent(
            constraints.integer_interval(0, self.levels - 1), len(self.event_shape)
        )

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        dtype = self._dtype(value)
        k = value.to(dtype)
        n = self.levels - 1
        loc, sigma = self.loc.to(dtype), self._param("sigma", dtype)
        a = ((k - 0.5) / n - loc) / sigma
        b = ((k + 0.5) / n - loc) / sigma
        a, b = torch.broadcast_tensors(a, b)
        elementwise = _log_normal_mass(a, b, (k <= 0).expand_as(a), (k >= n).expand_as(a))
        return self._sum_event(elementwise, value)

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        with torch.no_grad():
            shape = torch.Size(sample_shape) + self.batch_shape + self.event_shape
            noise = torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device)
            continuous = self.loc + self.sigma.to(self.loc.dtype) * noise
            return to_levels(continuous, self.levels).to(self.loc.dtype)
