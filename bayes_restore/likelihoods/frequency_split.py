"""A Gaussian low-pass and Laplace (or Gaussian) high-pass residual: the frequency-split law."""

from __future__ import annotations

import functools
import math

import torch
from pyro.distributions import constraints
from torch import distributions as td

from bayes_restore._validation import broadcast_shape, check_positive
from bayes_restore.operators import Blur, LinearOperator, gaussian_psf

from ._base import OperatorLikelihood

__all__ = ["FrequencySplitLikelihood", "gaussian_low_pass"]


def gaussian_low_pass(cutoff_sigma: float, *, size: int | None = None) -> Blur:
    """The low-pass filter of the frequency-split likelihood and loss: a periodic Gaussian blur.

    Parameters
    ----------
    cutoff_sigma : float
        Standard deviation of the Gaussian kernel in pixels, > 0: its frequency
        response is ``exp(-2 pi^2 sigma^2 f^2)``, half power near ``f = 0.19 / sigma``
        cycles per pixel.
    size : int, optional
        Odd kernel size; default ``2 ceil(3 sigma) + 1`` (the kernel truncated at
        three standard deviations and renormalised to sum 1).

    Returns
    -------
    Blur
        ``Blur(gaussian_psf(size, cutoff_sigma), boundary="periodic")``; the high-pass
        is ``r - low_pass.forward(r)``. Calls with the same arguments share one
        (cached) instance: treat it as immutable.

    Examples
    --------
    >>> gaussian_low_pass(1.0)
    Blur(psf (7, 7), boundary='periodic')
    """
    check_positive(cutoff_sigma, "cutoff_sigma")
    if size is None:
        size = 2 * math.ceil(3 * float(cutoff_sigma)) + 1
    return _low_pass(float(cutoff_sigma), size)


@functools.lru_cache(maxsize=32)
def _low_pass(cutoff_sigma: float, size: int) -> Blur:
    # shared instances keep the Blur's cached transfer functions across model calls
    return Blur(gaussian_psf(size, cutoff_sigma), boundary="periodic")


class FrequencySplitLikelihood(OperatorLikelihood):
    r"""Gaussian on the low-pass of the residual, Laplace (or Gaussian) on its high-pass.

    With the residual ``r = y - A x``, ``P`` the periodic Gaussian low-pass
    :func:`gaussian_low_pass` and ``Q = I - P`` the high-pass,

    .. math::

        \log p(y \mid x) = \sum_i \log \mathcal{N}\big((P r)_i; 0, \sigma_L^2\big)
                         + \sum_i \log \text{Laplace}\big((Q r)_i; 0, b_H\big)
                         \;[+ \log C]

    the likelihood reading of a frequency-specific loss (L2 on low frequencies, a
    sharper, heavier-tailed term on high frequencies).

    **Normalisation, honestly.** ``P r`` and ``Q r`` are not independent coordinates
    of ``y`` (both are images of the same ``r``), so the product of their two
    normalised densities is not normalised in ``y``: with ``high="laplace"`` this is a
    *pseudo-likelihood*. It is a proper density up to a constant ``C(sigma_L, b_H,
    cutoff)`` (the exponent is coercive in ``r``), and that constant depends on
    neither ``x`` nor ``y`` (the density depends on ``y - A x`` only). So MAP and
    posterior sampling of ``x`` at fixed noise parameters are exact; learning
    ``sigma_L`` or ``b_H`` from this ``log_prob`` is not. With ``high="gaussian"`` the
    density is Gaussian with the circulant precision ``P^T P / sigma_L^2 + Q^T Q /
    b_H^2``, the exact ``log C`` is known from the blur's Fourier eigenvalues, and
    ``log_prob`` includes it: a proper likelihood (then ``sigma_L`` and ``b_H`` must
    be one number per image).

    Parameters
    ----------
    x : torch.Tensor
        The image, shape ``(..., H, W)`` or ``(..., C, H, W)``.
    sigma_low : float or torch.Tensor
        ``sigma_L > 0``, the standard deviation of the low-pass residual.
    scale_high : float or torch.Tensor
        ``b_H > 0``: the Laplace scale (``high="laplace"``) or the standard deviation
        (``high="gaussian"``) of the high-pass residual.
    operator : LinearOperator, optional
        ``A``; the identity when ``None``. The split acts on the observation grid.
    cutoff_sigma : float, default 1.0
        Width in pixels of the Gaussian low-pass kernel.
    high : {"laplace", "gaussian"}, default "laplace"
        The law of the high-pass residual.
    event_dim : int, default 2
        2 for ``(H, W)`` observations, 3 for ``(C, H, W)``.

    Examples
    --------
    >>> import torch
    >>> lik = FrequencySplitLikelihood(torch.zeros(8, 8), 0.05, 0.02, cutoff_sigma=1.0)
    >>> lik.log_prob(torch.zeros(8, 8)).shape
    torch.Size([])
    """

    arg_constraints = {"sigma_low": constraints.positive, "scale_high": constraints.positive}
    _params = ("sigma_low", "scale_high")
    _options = ("low_pass", "high")

    def __init__(
        self,
        x: torch.Tensor,
        sigma_low: float | torch.Tensor,
        scale_high: float | torch.Tensor,
        operator: LinearOperator | None = None,
        *,
        cutoff_sigma: float = 1.0,
        high: str = "laplace",
        event_dim: int = 2,
        validate_args: bool | None = None,
    ) -> None:
        check_positive(sigma_low, "sigma_low")
        check_positive(scale_high, "scale_high")
        if high not in ("laplace", "gaussian"):
            raise ValueError(f"high must be 'laplace' or 'gaussian', got {high!r}")
        self.low_pass = gaussian_low_pass(cutoff_sigma)
        self.high = high
        self._setup(
            x, operator, {"sigma_low": sigma_low, "scale_high": scale_high}, event_dim,
            validate_args,
        )
        if high == "gaussian":
            for name in self._params:
                shape = getattr(self, name).shape
                if any(s != 1 for s in shape[max(len(shape) - event_dim, 0) :]):
                    raise ValueError(
                        f"{name} must be one number per image for high='gaussian' (size 1 "
                        f"in the {event_dim} event dimensions), got shape {tuple(shape)}"
                    )

    @property
    def has_rsample(self) -> bool:  # noqa: D102
        return self.high == "gaussian"

    @property
    def mean(self) -> torch.Tensor:
        """``A x``: both residual laws are symmetric about zero."""
        return self.loc.expand(self.batch_shape + self.event_shape)

    def _split(self, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        low = self.low_pass.forward(r)
        return low, r - low

    def _spectra(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """``|p_k|^2`` and ``|1 - p_k|^2``: the eigenvalues of ``P^T P`` and ``Q^T Q``."""
        h, w = self.event_shape[-2:]
        delta = torch.zeros((h, w), dtype=dtype, device=self.loc.device)
        delta[0, 0] = 1.0
        p = torch.fft.fft2(self.low_pass.forward(delta))
        return p.abs().square(), (1 - p).abs().square()

    def _per_image(self, name: str, dtype: torch.dtype) -> torch.Tensor:
        """A parameter that is one number per image, shaped like the batch."""
        value = self._param(name, dtype)
        ones = (1,) * self.event_dim
        full = value.expand(broadcast_shape(value.shape, self.batch_shape + ones))
        return full.reshape(self.batch_shape)

    def _precision_eigenvalues(self, dtype: torch.dtype) -> torch.Tensor:
        """Eigenvalues of ``P^T P / sigma_L^2 + Q^T Q / b_H^2``, shape ``batch + (H, W)``."""
        p2, q2 = self._spectra(dtype)
        s_low = self._per_image("sigma_low", dtype)[..., None, None]
        s_high = self._per_image("scale_high", dtype)[..., None, None]
        return p2 / s_low**2 + q2 / s_high**2

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        dtype = self._dtype(value)
        low, high = self._split(value.to(dtype) - self.loc.to(dtype))
        s_low, s_high = self._param("sigma_low", dtype), self._param("scale_high", dtype)
        zero = torch.zeros((), dtype=dtype, device=low.device)
        elementwise = td.Normal(zero, s_low, validate_args=False).log_prob(low)
        if self.high == "laplace":
            elementwise = elementwise + td.Laplace(zero, s_high, validate_args=False).log_prob(high)
            return self._sum_event(elementwise, value)
        elementwise = elementwise + td.Normal(zero, s_high, validate_args=False).log_prob(high)
        return self._sum_event(elementwise, value) + self._log_normaliser_correction(dtype)

    def _log_normaliser_correction(self, dtype: torch.dtype) -> torch.Tensor:
        """Exact minus product normaliser (Gaussian case), one value per image.

        ``0.5 log det Lambda - (M / 2) log(2 pi)`` replaces the product's
        ``-M log(2 pi sigma_L b_H)``.
        """
        channels = self.event_shape[0] if self.event_dim == 3 else 1
        m = channels * self.event_shape[-2] * self.event_shape[-1]
        half_logdet = 0.5 * channels * torch.log(self._precision_eigenvalues(dtype)).sum((-2, -1))
        log_scales = torch.log(
            self._per_image("sigma_low", dtype) * self._per_image("scale_high", dtype)
        )
        return half_logdet + m * log_scales + 0.5 * m * math.log(2 * math.pi)

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        if self.high != "gaussian":
            raise NotImplementedError(
                "FrequencySplitLikelihood(high='laplace') has no sampler (its law of y is "
                "known only up to a constant); use high='gaussian'"
            )
        dtype = self.loc.dtype
        shape = torch.Size(sample_shape) + self.batch_shape + self.event_shape
        noise = torch.randn(shape, dtype=dtype, device=self.loc.device)
        lam = self._precision_eigenvalues(dtype)
        if self.event_dim == 3:
            lam = lam.unsqueeze(-3)
        r = torch.fft.ifft2(torch.fft.fft2(noise) * lam.rsqrt()).real
        return self.loc + r

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)
