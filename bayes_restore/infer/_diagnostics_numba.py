"""Per-pixel convergence diagnostics on the CPU (numba): rank-normalised R-hat, bulk/tail ESS.

The quantities of :func:`~bayes_restore.infer.draws.convergence_diagnostics` (Vehtari,
Gelman, Simpson, Carpenter & Buerkner 2021; ArviZ's ``rhat(method="rank")`` and
``ess(method="bulk"/"tail"/"mean")``), computed pixel by pixel in float64 the way ArviZ's
reference code does, but without the FFTs: the autocovariances are summed lag by lag and
only as far as Geyer's initial positive sequence reaches (a few lags for well-mixed or
thinned draws, instead of every lag of a zero-padded FFT), the ranks come from one sort per
pixel (the folded draws' ranks by merging the two sides of the sorted draws around the
median), and the normal scores of the ranks from a table (the ranks of ``N`` draws, ties
averaged, are multiples of 1/2: ``2N + 1`` possible scores).

Layout: the draws of a group of pixels as ``(pixel, chain, draw)`` (contiguous; float32, the
stored draws, sorted by a radix sort of their bits, or float64);
the results ``(6, pixel)``: R-hat, bulk ESS, tail ESS, ESS of the mean, ESS of the squared
deviations and the kurtosis. Odd draw counts are handled as ArviZ does: the split chains
leave out each chain's middle draw, the median (of the folded R-hat) is the split draws',
the tail quantiles are those of all draws.
The kernels release the GIL; :func:`diagnostics` splits the pixels over the shared worker
threads.

Compiled on first use and cached on disk (``cache=True``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from bayes_restore._numba_pool import jit_disabled as jit_disabled
from bayes_restore._numba_pool import run_all

_JIT = {"nogil": True, "cache": True, "fastmath": False, "boundscheck": False,
        "error_model": "numpy"}

#: rows of the result: the names of :func:`~bayes_restore.infer.draws.convergence_diagnostics`
NAMES = ("rhat", "ess_bulk", "ess_tail", "ess_mean", "ess_sq", "kurtosis")
#: ESS of draws that do not vary (ArviZ: the number of draws)
_RESOLUTION = float(np.finfo(float).resolution)


@njit(inline="always", **_JIT)
def _chain_means(s):  # pragma: no cover
    """The mean of each chain of ``(chain, draw)``."""
    m, n = s.shape
    means = np.empty(m)
    for j in range(m):
        mu = 0.0
        for t in range(n):
            mu += s[j, t]
        means[j] = mu / n
    return means


@njit(inline="always", **_JIT)
def _between(means):  # pragma: no cover
    """The sample variance of the chain means (``m - 1`` in the denominator)."""
    m = means.shape[0]
    grand = 0.0
    for j in range(m):
        grand += means[j]
    grand /= m
    b = 0.0
    for j in range(m):
        d = means[j] - grand
        b += d * d
    return b / (m - 1)


@njit(**_JIT)
def _rhat(s):  # pragma: no cover
    """Gelman-Rubin R-hat of ``(chain, draw)`` (chains already split)."""
    m, n = s.shape
    means = _chain_means(s)
    within = 0.0
    for j in range(m):
        mu = means[j]
        v = 0.0
        for t in range(n):
            d = s[j, t] - mu
            v += d * d
        within += v / (n - 1)
    within /= m
    between = n * _between(means)
    return math.sqrt((between / within + n - 1) / n)


@njit(**(_JIT | {"fastmath": True}))
def _acov_mean(s, means, lag):  # pragma: no cover
    """Mean over the chains of the biased autocovariance at ``lag`` of ``(chain, draw)``."""
    m, n = s.shape
    total = 0.0
    for j in range(m):
        mu = means[j]
        acc = 0.0
        for t in range(n - lag):
            acc += (s[j, t] - mu) * (s[j, t + lag] - mu)
        total += acc / n
    return total / m


@njit(**_JIT)
def _ess(s, rho):  # pragma: no cover
    """Effective sample size of ``(chain, draw)`` (chains already split): ArviZ's ``_ess``.

    Geyer's initial positive then monotone sequence on the multi-chain autocorrelation;
    the autocovariances are computed only up to the lag where the positive sequence stops.
    ``rho``: scratch of at least ``draw`` entries.
    """
    m, n = s.shape
    lo = s[0, 0]
    hi = s[0, 0]
    for j in range(m):
        for t in range(n):
            v = s[j, t]
            if v < lo:
                lo = v
            if v > hi:
                hi = v
    if hi - lo < _RESOLUTION:
        return float(m * n)
    means = _chain_means(s)
    acov0 = _acov_mean(s, means, 0)
    mean_var = acov0 * n / (n - 1.0)
    var_plus = mean_var * (n - 1.0) / n
    if m > 1:
        var_plus += _between(means)
    for t in range(n):
        rho[t] = 0.0
    rho_even = 1.0
    rho[0] = rho_even
    rho_odd = 1.0 - (mean_var - _acov_mean(s, means, 1)) / var_plus
    rho[1] = rho_odd
    t = 1
    while t < n - 3 and rho_even + rho_odd > 0.0:
        rho_even = 1.0 - (mean_var - _acov_mean(s, means, t + 1)) / var_plus
        rho_odd = 1.0 - (mean_var - _acov_mean(s, means, t + 2)) / var_plus
        if rho_even + rho_odd >= 0:
            rho[t + 1] = rho_even
            rho[t + 2] = rho_odd
        t += 2
    max_t = t - 2
    if rho_even > 0:
        rho[max_t + 1] = rho_even
    t = 1
    while t <= max_t - 2:
        if rho[t + 1] + rho[t + 2] > rho[t - 1] + rho[t]:
            rho[t + 1] = (rho[t - 1] + rho[t]) / 2.0
            rho[t + 2] = rho[t + 1]
        t += 2
    total = m * n
    tau = -1.0
    for k in range(max_t + 1):
        tau += 2.0 * rho[k]
    if max_t + 1 < n:
        tau += rho[max_t + 1]
    tau = max(tau, 1.0 / math.log10(total))
    return total / tau


@njit(**_JIT)
def _quantile(sorted_values, q):  # pragma: no cover
    """Linear-interpolation quantile (numpy's default, R's type 7) of sorted values."""
    n = sorted_values.shape[0]
    pos = q * (n - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, n - 1)
    return sorted_values[lo] + (pos - lo) * (sorted_values[hi] - sorted_values[lo])


@njit(**_JIT)
def _scores(sorted_keys, order, ztab, z):  # pragma: no cover
    """Normal scores of the ranks (ties averaged): ``z[order[k]]`` for sorted ``sorted_keys``.

    ``ztab[i + j]`` is the score of the average rank ``(i + j) / 2`` of a tie group of the
    (1-based) sorted positions ``i .. j``.
    """
    n = sorted_keys.shape[0]
    k = 0
    while k < n:
        e = k
        while e + 1 < n and sorted_keys[e + 1] == sorted_keys[k]:
            e += 1
        score = ztab[(k + 1) + (e + 1)]
        for i in range(k, e + 1):
            z[order[i]] = score
        k = e + 1


@njit(**_JIT)
def _radix_argsort(values, order, keys, spare_keys, spare_order, count):  # pragma: no cover
    """``order``: the stable ascending order of float32 ``values`` (LSD radix, 4 x 8 bits)."""
    n = values.shape[0]
    bits = values.view(np.uint32)
    for i in range(n):
        k = np.int64(bits[i])
        keys[i] = 0xFFFFFFFF - k if k >= 0x80000000 else k + 0x80000000
        order[i] = i
    src_k, src_o, dst_k, dst_o = keys, order, spare_keys, spare_order
    for shift in range(0, 32, 8):
        count[:] = 0
        for i in range(n):
            count[(src_k[i] >> shift) & 255] += 1
        run = 0
        for b in range(256):
            c = count[b]
            count[b] = run
            run += c
        for i in range(n):
            d = (src_k[i] >> shift) & 255
            at = count[d]
            count[d] = at + 1
            dst_k[at] = src_k[i]
            dst_o[at] = src_o[i]
        src_k, src_o, dst_k, dst_o = dst_k, dst_o, src_k, src_o
    # four passes: the result is back in keys / order


@njit(**_JIT)
def _pixels(x, ztab, out, lo, hi, radix):  # pragma: no cover
    """Diagnostics of the pixels ``lo .. hi - 1`` of ``x`` ``(pixel, chain, draw)`` into ``out``.

    ``radix``: ``x`` is float32 (its values are sorted by the bits).
    """
    c, n = x.shape[1], x.shape[2]
    h = n // 2
    m = 2 * c
    total = m * h
    s = np.empty((m, h))
    z = np.empty((m, h))
    zf = np.empty((m, h))
    work = np.empty((m, h))
    flat_s = s.reshape(total)
    flat_z = z.reshape(total)
    flat_zf = zf.reshape(total)
    flat_w = work.reshape(total)
    every_draw = np.empty(c * n)
    sorted_split = np.empty(total)
    split_index = np.empty(total, dtype=np.int64)
    folded = np.empty(total)
    folded_index = np.empty(total, dtype=np.int64)
    rho = np.empty(h + 2)
    single = np.empty(total, dtype=np.float32)
    order = np.empty(total, dtype=np.int64)
    keys = np.empty(total, dtype=np.int64)
    spare_keys = np.empty(total, dtype=np.int64)
    spare_order = np.empty(total, dtype=np.int64)
    count = np.empty(256, dtype=np.int64)
    for p in range(lo, hi):
        # the split chains: first and last h draws of each chain (ArviZ's _split_chains)
        for j in range(c):
            for t in range(h):
                s[j, t] = x[p, j, t]
                s[c + j, t] = x[p, j, n - h + t]
        # ranks and median of the split draws; tail quantiles of all draws (ArviZ's
        # choices: the same values when the chains have an even length)
        if radix:
            for k in range(total):
                single[k] = flat_s[k]
            _radix_argsort(single, order, keys, spare_keys, spare_order, count)
        else:
            order[:] = np.argsort(flat_s, kind="quicksort")
        for k in range(total):
            sorted_split[k] = flat_s[order[k]]
            split_index[k] = order[k]
        _scores(sorted_split, split_index, ztab, flat_z)
        every = sorted_split
        if n % 2:
            every = every_draw
            for j in range(c):
                for t in range(n):
                    every[j * n + t] = x[p, j, t]
            every.sort()
        med = _quantile(sorted_split, 0.5)
        # folded |s - med| in increasing order: merge the two sides of the sorted draws
        right = 0
        while right < total and sorted_split[right] < med:
            right += 1
        left = right - 1
        k = 0
        while left >= 0 or right < total:
            if right >= total or (left >= 0 and med - sorted_split[left]
                                  <= sorted_split[right] - med):
                folded[k] = med - sorted_split[left]
                folded_index[k] = split_index[left]
                left -= 1
            else:
                folded[k] = sorted_split[right] - med
                folded_index[k] = split_index[right]
                right += 1
            k += 1
        _scores(folded, folded_index, ztab, flat_zf)
        out[0, p] = max(_rhat(z), _rhat(zf))
        out[1, p] = _ess(z, rho)
        tail = math.inf
        for q in (0.05, 0.95):
            cut = _quantile(every, q)
            for k in range(total):
                flat_w[k] = 1.0 if flat_s[k] <= cut else 0.0
            tail = min(tail, _ess(work, rho))
        out[2, p] = tail
        out[3, p] = _ess(s, rho)
        mu = 0.0
        for k in range(total):
            mu += flat_s[k]
        mu /= total
        m2 = 0.0
        m4 = 0.0
        for k in range(total):
            d = flat_s[k] - mu
            d2 = d * d
            flat_w[k] = d2
            m2 += d2
            m4 += d2 * d2
        m2 /= total
        m4 /= total
        out[4, p] = _ess(work, rho)
        out[5, p] = m4 / max(m2 * m2, 2.2250738585072014e-308)


def score_table(total: int) -> np.ndarray:
    """Normal scores of the half-integer ranks ``k / 2`` of ``total`` draws (index ``k``).

    ArviZ's ``_z_scale``: ``Phi^-1((rank - 3/8) / (total + 1/4))``.
    """
    import torch

    ranks = torch.arange(2 * total + 2, dtype=torch.float64) / 2.0
    return torch.special.ndtri((ranks - 0.375) / (total + 0.25)).numpy()


def diagnostics(x: np.ndarray, threads: int = 1) -> np.ndarray:
    """The six per-pixel diagnostics of ``x`` ``(pixel, chain, draw)``, as ``(6, pixel)``.

    ``x`` is made float64 and contiguous; the pixels are split over ``threads`` threads.
    """
    if x.dtype != np.float32:
        x = x.astype(np.float64, copy=False)
    x = np.ascontiguousarray(x)
    radix = x.dtype == np.float32
    pixels, c, n = x.shape
    table = score_table(2 * c * (n // 2))
    out = np.empty((6, pixels))
    threads = max(1, min(threads, pixels))
    bounds = np.linspace(0, pixels, threads + 1).astype(np.int64)
    run_all([(_pixels, (x, table, out, int(bounds[i]), int(bounds[i + 1]), radix))
             for i in range(threads)])
    return out
