"""The exact Gaussian-gradient posterior for operators that share the prior's DCT-II basis.

The Neumann gradient prior is diagonal in the orthonormal 2-D DCT-II basis. An operator
whose structure describes itself in that basis (``dct_aliasing``, a
:class:`~bayes_restore.operators.DCTAliasing`: a reflective blur by a symmetric kernel, a
box decimation whose factor divides the image, a constant gain) maps each basis image of
the image to one basis image of the observation, several high-resolution frequencies
landing on the same low-resolution one (aliasing). In that basis the posterior precision

.. math::

    Q = \\frac{A^T A}{\\sigma^2} + \\frac{D^T D}{b^2}

is block-diagonal: one block per observed frequency, made of its ``fh fw`` aliases, each
block a diagonal (the prior, ``mu / b^2``) plus a rank-one matrix (``g g^T / sigma^2``,
``g`` the aliases' gains). Sherman-Morrison inverts each block in closed form, so the mean,
exact draws, the log evidence and the *exact* per-pixel variance cost a few FFT-sized passes
(the derivation is in the documentation's Derivations page). The per-pixel variance is the
diagonal of ``C^T Sigma C``; products of two cosines of aliased frequencies are cosines of
even frequencies (product-to-sum), so the whole diagonal is accumulated on a grid of
frequencies and comes out of one inverse DCT.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch

from bayes_restore.differences import dct2, idct2, laplacian_eigenvalues
from bayes_restore.operators import DCTAliasing, LinearOperator

__all__ = ["SpectralGaussian", "dct_aliasing", "observed_prior_gain"]


def observed_prior_gain(operator: LinearOperator, y: torch.Tensor) -> torch.Tensor:
    """:func:`prior_gain` of ``operator`` for observations like ``y``, or a ``ValueError``.

    The prior's variance as the observation sees it, per DCT coefficient of ``y`` (the
    closed-form evidence); raises, naming the operator, when it has no such description.

    Examples
    --------
    >>> import torch
    >>> from bayes_restore.operators import Downsample
    >>> observed_prior_gain(Downsample(2), torch.zeros(4, 4, dtype=torch.float64)).shape
    torch.Size([4, 4])
    """
    image = tuple(operator.input_shape(tuple(y.shape[-2:])))
    aliasing = dct_aliasing(operator, image, y)
    if aliasing is None:
        raise ValueError(
            f"no closed-form evidence for {operator!r} on {image} images: it needs an "
            "operator that shares the prior's DCT-II basis (Blur(psf, boundary='reflect') "
            "with a symmetric psf, Downsample(f) with f dividing the image)"
        )
    return prior_gain(aliasing, y)


def dct_aliasing(
    operator: LinearOperator, shape: tuple[int, int], like: torch.Tensor
) -> DCTAliasing | None:
    """The operator in the DCT-II basis of ``shape`` images, if its structure says so.

    ``None`` when the operator's structure does not describe itself in that basis (a
    periodic blur, a mask, a general operator), when the factors do not divide the image, or
    when the description is not one the closed forms cover (the constant image's alias group
    must be observed through the constant alone).

    Examples
    --------
    >>> import torch
    >>> from bayes_restore.operators import Downsample, Mask
    >>> like = torch.zeros((), dtype=torch.float64)
    >>> dct_aliasing(Downsample(2), (8, 8), like).factors
    (2, 2)
    >>> dct_aliasing(Mask(torch.rand(8, 8) < 0.5), (8, 8), like) is None
    True
    """
    structure = operator.structure()
    describe = getattr(structure, "dct_aliasing", None)
    if describe is None:
        return None
    h, w = shape
    aliasing = describe(h, w, like)
    if aliasing is None:
        return None
    fh, fw = aliasing.factors
    if h % fh or w % fw or tuple(aliasing.gain.shape) != (h, w):
        return None
    # the constant's group {2 M q} x {2 M p}: only the constant itself may be observed
    rows, cols = _axis(h, fh, like.device), _axis(w, fw, like.device)
    gain = aliasing.gain.to(dtype=like.dtype, device=like.device)
    group = gain[rows.index[0::rows.m]][:, cols.index[0::cols.m]]
    group = group * rows.valid[0::rows.m, None] * cols.valid[None, 0::cols.m]
    if bool((group.flatten()[1:] != 0).any()):
        return None
    return DCTAliasing((fh, fw), gain)


@dataclass(frozen=True)
class _Axis:
    """One axis of length ``n = f m`` in the aliases' layout ``(p, k')``, flattened ``p m + k'``.

    The aliases of the low-resolution frequency ``k'`` are ``k_p = 2 m ceil(p / 2) +- k'``
    (``+`` for even ``p``), ``p = 0 .. f - 1``.
    """

    n: int
    f: int
    m: int
    index: torch.Tensor  # (f m,) the frequency k_p(k') (clamped into range)
    valid: torch.Tensor  # (f m,) the alias exists and is not a duplicate
    slot: torch.Tensor  # (n,) the alias slot p m + k' of each frequency
    live: torch.Tensor  # (n,) the frequency is observed (fold(k) < m)
    norm: torch.Tensor  # (n,) the orthonormal DCT factor a_k (float64)
    block2: torch.Tensor  # (f f,) block of the k'-dependent product term of each pair (p q)
    block0: torch.Tensor  # (f f,) block of its constant term
    target: torch.Tensor  # (2 n,) frequency index of each kappa after folding
    sign: torch.Tensor  # (2 n,) its sign (0: the frequency n, which vanishes)


@lru_cache(maxsize=64)
def _axis(n: int, f: int, device: torch.device) -> _Axis:
    m = n // f
    p = torch.arange(f)[:, None]
    kp = torch.arange(m)[None, :]
    q = (p + 1) // 2
    sgn = 1 - 2 * (p % 2)
    k = 2 * m * q + sgn * kp  # (f, m)
    valid = (k >= 0) & (k < n) & ~((p % 2 == 1) & (kp == 0))
    index = torch.where(valid, k, torch.zeros_like(k)).reshape(-1)
    slot = torch.zeros(n, dtype=torch.long)
    slot[index[valid.reshape(-1)]] = torch.arange(f * m)[valid.reshape(-1)]
    kk = torch.arange(n)
    r = kk % (2 * m)
    live = torch.where(r <= m, r, 2 * m - r) < m
    norm = torch.full((n,), math.sqrt(2.0 / n), dtype=torch.float64)
    norm[0] = math.sqrt(1.0 / n)
    # cos(k_p x) cos(k_q x) = (cos((k_p - k_q) x) + cos((k_p + k_q) x)) / 2 with x = pi (2i+1)
    # / 2n: one of the two frequencies is 2 m c (constant), the other 2 m c +- 2 k'; as
    # kappa = K / 2 = m b + k' they fall in the block b (mod 2 f: K is 4n-periodic, even)
    block2 = torch.zeros(f * f, dtype=torch.long)
    block0 = torch.zeros(f * f, dtype=torch.long)
    qs, ss = [(i + 1) // 2 for i in range(f)], [1 - 2 * (i % 2) for i in range(f)]
    for i in range(f):
        for j in range(f):
            for c, slope in ((qs[i] - qs[j], ss[i] - ss[j]), (qs[i] + qs[j], ss[i] + ss[j])):
                if slope == 0:
                    block0[i * f + j] = c % (2 * f)
                else:  # K = 2 m c + slope k' = +- (2 m (slope/2) c + 2 k')
                    block2[i * f + j] = (c * slope // 2) % (2 * f)
    kappa = torch.arange(2 * n)
    fold = torch.where(kappa <= n, kappa, 2 * n - kappa)
    big = 2 * fold
    target = torch.where(big < n, big, (2 * n - big).clamp_min(0))
    target = torch.where(big == n, torch.zeros_like(big), target).clamp_max(n - 1)
    sign = torch.where(big < n, 1.0, -1.0).to(torch.float64)
    sign = torch.where(big == n, torch.zeros_like(sign), sign)
    return _Axis(n, f, m, index.to(device), valid.reshape(-1).to(device), slot.to(device),
                 live.to(device), norm.to(device), block2.to(device), block0.to(device),
                 target.to(device), sign.to(device))


class SpectralGaussian:
    r"""The posterior ``N(m, Q^{-1})`` of the Gaussian-gradient prior for a DCT-aliasing ``A``.

    Parameters
    ----------
    aliasing : DCTAliasing
        The operator in the DCT-II basis (:func:`dct_aliasing`).
    sigma, scale : torch.Tensor
        Noise std and prior scale ``b``, one per image: shape ``batch + (1, 1)`` (or any
        shape ending in ``(1, 1)``), in the working dtype and on the working device.

    Examples
    --------
    >>> import torch
    >>> from bayes_restore.operators import Downsample
    >>> like = torch.zeros((), dtype=torch.float64)
    >>> post = SpectralGaussian(dct_aliasing(Downsample(2), (8, 8), like),
    ...                         torch.tensor([[0.1]], dtype=torch.float64),
    ...                         torch.tensor([[0.05]], dtype=torch.float64))
    >>> y = torch.rand(4, 4, dtype=torch.float64)
    >>> post.mean(y).shape, post.std().shape
    (torch.Size([8, 8]), torch.Size([8, 8]))
    """

    def __init__(self, aliasing: DCTAliasing, sigma: torch.Tensor, scale: torch.Tensor) -> None:
        gain = aliasing.gain
        h, w = gain.shape
        fh, fw = aliasing.factors
        dtype, device = sigma.dtype, sigma.device
        self.shape = (h, w)
        self.rows, self.cols = _axis(h, fh, device), _axis(w, fw, device)
        self.diagonal = (fh, fw) == (1, 1)
        self.s2, self.b2 = torch.broadcast_tensors(sigma.square(), scale.square())
        b2 = self.b2
        gain = gain.to(dtype=dtype, device=device)
        mu = laplacian_eigenvalues(h, w, dtype=dtype, device=device)
        self.gain = gain
        self.mu = mu
        self.prior = mu / b2  # D, batch + (H, W)
        if float(gain[0, 0].abs()) == 0.0:
            raise ValueError("the operator does not observe the constant image (A 1 = 0): the "
                             "posterior is improper")
        if self.diagonal:
            self.var = 1.0 / (self.prior + gain.square() / self.s2)  # Sigma is diagonal
            return
        lead = self.prior.shape[:-2]
        # Sigma = D^-1 - sum_groups w w^T / den (Sherman-Morrison); the constant is its own
        # group (D = 0 there): its variance s^2 / g_00^2, no rank-one term
        d_safe = torch.where(mu > 0, self.prior, torch.ones_like(self.prior))
        dinv = 1.0 / d_safe
        dinv[..., 0, 0] = (self.s2 / gain[0, 0].square()).reshape(lead)
        self.dinv = dinv
        gm = self._gather(gain) * self._valid()
        self.gain_m = gm  # the aliases' gains, (fh, Mh, fw, Mw)
        u = gm.clone()
        u[0, 0, 0, 0] = 0.0
        self.w_m = u / self._gather(d_safe)  # D^-1 g, batch + (fh, Mh, fw, Mw)
        self.den = self.s2 + (u * self.w_m).sum((-4, -2))  # batch + (Mh, Mw)

    # --- layout -------------------------------------------------------------------------

    def _gather(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., H, W)`` frequencies -> ``(..., fh, Mh, fw, Mw)`` aliases."""
        r, c = self.rows, self.cols
        x = x.index_select(-2, r.index).index_select(-1, c.index)
        return x.reshape(x.shape[:-2] + (r.f, r.m, c.f, c.m))

    def _scatter(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., fh, Mh, fw, Mw)`` aliases -> ``(..., H, W)`` (unobserved frequencies: 0)."""
        r, c = self.rows, self.cols
        x = x.reshape(x.shape[:-4] + (r.f * r.m, c.f * c.m))
        x = x.index_select(-2, r.slot).index_select(-1, c.slot)
        return x * (r.live[:, None] & c.live[None, :])

    def _valid(self) -> torch.Tensor:
        r, c = self.rows, self.cols
        v = r.valid[:, None] & c.valid[None, :]
        return v.reshape(r.f, r.m, c.f, c.m).to(self.s2.dtype)

    def _low(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., Mh, Mw)`` observation frequencies broadcast over the aliases."""
        return x[..., None, :, None, :]

    def _rank_one(self, v_m: torch.Tensor) -> torch.Tensor:
        """``sum_groups w (w^T v) / den`` in the aliases' layout."""
        t = (self.w_m * v_m).sum((-4, -2)) / self.den
        return self.w_m * self._low(t)

    def apply_covariance(self, v: torch.Tensor) -> torch.Tensor:
        """``Sigma v`` for DCT coefficients ``v`` of shape ``(..., H, W)``."""
        if self.diagonal:
            return self.var * v
        return self.dinv * v - self._scatter(self._rank_one(self._gather(v)))

    # --- the posterior --------------------------------------------------------------------

    def mean(self, y: torch.Tensor) -> torch.Tensor:
        """The posterior mean ``Q^{-1} A^T y / sigma^2`` of observations ``y`` (``..., Mh, Mw``)."""
        y_hat = dct2(y)
        if self.diagonal:
            return idct2(self.var * self.gain * y_hat / self.s2)
        rhs_m = self.gain_m * self._low(y_hat / self.s2)
        m_m = self._gather(self.dinv) * rhs_m - self._rank_one(rhs_m)
        return idct2(self._scatter(m_m))

    def sample(self, mean: torch.Tensor, num: int, generator: torch.Generator) -> torch.Tensor:
        """``num`` exact draws ``mean + C^T Sigma^{1/2}``-distributed, shape ``(num, *mean.shape)``.

        Diagonal ``Sigma``: ``sqrt(Sigma) z``. Aliasing blocks: ``Sigma r`` with ``r``'s
        covariance ``Q`` (``r = sqrt(D) z_2 + g z_1 / sigma``, ``z_1`` of the observation's
        size), which has covariance ``Sigma Q Sigma = Sigma``.
        """
        dtype, device = mean.dtype, mean.device
        shape = (num,) + tuple(mean.shape)
        z = torch.randn(shape, generator=generator, dtype=dtype, device=generator.device)
        z = z.to(device)
        if self.diagonal:
            return mean + idct2(self.var.sqrt() * z)
        low = shape[:-2] + (self.rows.m, self.cols.m)
        z1 = torch.randn(low, generator=generator, dtype=dtype, device=generator.device)
        z1 = z1.to(device)
        rhs = self.prior.sqrt() * z + self._scatter(
            self.gain_m * self._low(z1 / self.s2.sqrt()))
        return mean + idct2(self.apply_covariance(rhs))

    def variance(self) -> torch.Tensor:
        """The exact per-pixel posterior variance, shape ``batch + (H, W)``.

        ``diag(C^T Sigma C)``: each product of two basis cosines is half a sum of cosines of
        even frequencies; their coefficients are accumulated on a ``2H x 2W`` grid of half
        frequencies ``kappa``, folded onto the ``H x W`` DCT frequencies and summed by one
        inverse DCT.
        """
        r, c = self.rows, self.cols
        h, w = self.shape
        dinv = self.var if self.diagonal else self.dinv
        lead = dinv.shape[:-2]
        a_h = r.norm.to(dinv.dtype)
        a_w = c.norm.to(dinv.dtype)
        grid = dinv.new_zeros(lead + (2 * h, 2 * w))
        # the diagonal part: c_k^2 = a_k^2 (1 + cos 2k x) / 2 along each axis
        x = dinv * (a_h[:, None] ** 2 * a_w[None, :] ** 2 / 4)
        grid[..., :h, :w] += x
        grid[..., 0, :w] += x.sum(-2)
        grid[..., :h, 0] += x.sum(-1)
        grid[..., 0, 0] += x.sum((-2, -1))
        if not self.diagonal:
            # the rank-one parts: -sum_groups (sum_pr Omega_pr c_kp c_lr)^2 / den, in the
            # layout (p, r, k', l') so that the products run over contiguous (k', l') planes
            omega = self.w_m * (self._gather(a_h[:, None] * a_w[None, :]))
            omega = (omega / self._low(self.den.sqrt())).transpose(-3, -2).contiguous()
            fh, mh, fw, mw = r.f, r.m, c.f, c.m
            nl = len(lead)
            t = omega[..., :, None, :, None, :, :] * omega[..., None, :, None, :, :, :]
            t = t.mul_(-0.25).reshape(lead + (fh * fh, fw * fw, mh, mw))  # (p q), (r s), k', l'
            # each pair has one block for its k'-dependent term (slope 2) and one for its
            # constant term (slope 0: summed over the frequency, put at 0): scatter-adds
            t2 = t.new_zeros(lead + (fh * fh, 2 * fw, mh, mw)).index_add_(nl + 1, c.block2, t)
            t0 = t.new_zeros(lead + (fh * fh, 2 * fw, mh)).index_add_(nl + 1, c.block0,
                                                                       t.sum(-1))
            blocks = grid.view(lead + (2 * fh, mh, 2 * fw, mw)).transpose(-3, -2)  # b c k' l'
            blocks += t.new_zeros(lead + (2 * fh, 2 * fw, mh, mw)).index_add_(nl, r.block2, t2)
            blocks[..., 0, :] += t.new_zeros(lead + (2 * fh, 2 * fw, mw)).index_add_(
                nl, r.block0, t2.sum(-2))
            blocks[..., :, 0] += t.new_zeros(lead + (2 * fh, 2 * fw, mh)).index_add_(
                nl, r.block2, t0)
            blocks[..., 0, 0] += t.new_zeros(lead + (2 * fh, 2 * fw)).index_add_(
                nl, r.block0, t0.sum(-1))
        folded = grid.new_zeros(lead + (h, 2 * w))
        folded.index_add_(folded.dim() - 2, r.target, grid * r.sign.to(grid.dtype)[:, None])
        out = grid.new_zeros(lead + (h, w))
        out.index_add_(out.dim() - 1, c.target, folded * c.sign.to(grid.dtype))
        return idct2(out / (a_h[:, None] * a_w[None, :]))

    def std(self) -> torch.Tensor:
        """The exact per-pixel posterior standard deviation, shape ``batch + (H, W)``."""
        return self.variance().clamp_min(0).sqrt()

    def log_evidence(self, y: torch.Tensor) -> torch.Tensor:
        """``log p(y | sigma, b)`` without the constant mode (flat prior), shape ``batch``.

        The observation's DCT coefficients are independent, ``y_hat_k' ~ N(0, sigma^2 + b^2
        nu_k')`` with ``nu_k' = sum_aliases g^2 / mu``.
        """
        y_hat = dct2(y)
        var = self.s2 + self.b2 * self._prior_gain()
        terms = -0.5 * (y_hat.square() / var + torch.log(2 * math.pi * var))
        terms = terms.clone()
        terms[..., 0, 0] = 0.0
        return terms.sum((-2, -1))

    def _prior_gain(self) -> torch.Tensor:
        """``nu_k' = sum over the aliases of k' of g^2 / mu`` (the constant group: 0)."""
        mu_safe = torch.where(self.mu > 0, self.mu, torch.ones_like(self.mu))
        if self.diagonal:
            nu = self.gain.square() / mu_safe
        else:
            nu = (self.gain_m.square() / self._gather(mu_safe)).sum((-4, -2))
        nu = nu.clone()
        nu[0, 0] = 0.0
        return nu


def prior_gain(aliasing: DCTAliasing, like: torch.Tensor) -> torch.Tensor:
    """``nu``: the prior's variance per observed DCT frequency in units of ``b^2`` (evidence).

    Shape: the observation's ``(Mh, Mw)``; the constant frequency gets 0 (left out).

    Examples
    --------
    >>> import torch
    >>> from bayes_restore.operators import Identity
    >>> like = torch.zeros((), dtype=torch.float64)
    >>> nu = prior_gain(dct_aliasing(Identity(), (4, 4), like), like)
    >>> round(float(nu[0, 1]), 6)  # 1 / mu_01 = 1 / (4 sin^2(pi / 8))
    1.707107
    """
    one = torch.ones((1, 1), dtype=like.dtype, device=like.device)
    return SpectralGaussian(aliasing, one, one)._prior_gain()
