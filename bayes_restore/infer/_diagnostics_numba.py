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

# sums may be reassociated (vectorised: a float64 sum of 1000 draws then differs from the
# sequential one by about 1e-16 relative); no assumption about NaN or infinities
_JIT = {"nogil": True, "cache": True, "fastmath": {"reassoc", "nsz"},
        "boundscheck": False, "error_model": "numpy"}

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


#: autocovariance lags computed together (one pass over the draws for all of them)
_LAGS = 8


@njit(**_JIT)
def _acov_block(d, first, acov):  # pragma: no cover
    """``acov[first + l]``, ``l < _LAGS = 8`` (as far as the draws reach): the mean over the
    chains of the biased autocovariances of centred ``(chain, draw)`` ``d``, in one pass."""
    m, n = d.shape
    last = min(first + _LAGS, n)
    for lag in range(first, last):
        acov[lag] = 0.0
    for j in range(m):
        a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = 0.0
        full = max(n - first - _LAGS + 1, 0)  # draws t whose every lag is inside the chain
        for t in range(full):
            dt = d[j, t]
            u = t + first
            a0 += dt * d[j, u]
            a1 += dt * d[j, u + 1]
            a2 += dt * d[j, u + 2]
            a3 += dt * d[j, u + 3]
            a4 += dt * d[j, u + 4]
            a5 += dt * d[j, u + 5]
            a6 += dt * d[j, u + 6]
            a7 += dt * d[j, u + 7]
        acc = (a0, a1, a2, a3, a4, a5, a6, a7)
        for lag in range(first, last):
            extra = 0.0
            for t in range(full, n - lag):
                extra += d[j, t] * d[j, t + lag]
            acov[lag] += (acc[lag - first] + extra) / n
    for lag in range(first, last):
        acov[lag] /= m


@njit(**_JIT)
def _ess(s, rho, d):  # pragma: no cover
    """Effective sample size of ``(chain, draw)`` (chains already split): ArviZ's ``_ess``.

    Geyer's initial positive then monotone sequence on the multi-chain autocorrelation;
    the autocovariances are computed only up to the lag where the positive sequence stops
    (``_LAGS`` at a time). ``rho``: scratch of at least ``2 draw + 2 _LAGS + chain``
    entries; ``d``: scratch of ``s``'s shape (the chains centred on their means).
    """
    m, n = s.shape
    acov = rho[n:]
    means = rho[2 * n + 2 * _LAGS:]
    for j in range(m):
        mu = 0.0
        for t in range(n):
            mu += s[j, t]
        means[j] = mu / n
    for j in range(m):
        mu = means[j]
        for t in range(n):
            d[j, t] = s[j, t] - mu
    _acov_block(d, 0, acov)
    if acov[0] < 1e-28:  # nearly constant: ArviZ's test, on the range of the draws
        lo = s[0, 0]
        hi = s[0, 0]
        for j in range(m):
            for t in range(n):
                lo = min(lo, s[j, t])
                hi = max(hi, s[j, t])
        if hi - lo < _RESOLUTION:
            return float(m * n)
    known = _LAGS
    mean_var = acov[0] * n / (n - 1.0)
    var_plus = mean_var * (n - 1.0) / n
    if m > 1:
        var_plus += _between(means[:m])
    rho_even = 1.0
    rho[0] = rho_even
    rho_odd = 1.0 - (mean_var - acov[1]) / var_plus
    rho[1] = rho_odd
    t = 1
    while t < n - 3 and rho_even + rho_odd > 0.0:
        if t + 2 >= known:
            _acov_block(d, known, acov)
            known += _LAGS
        rho_even = 1.0 - (mean_var - acov[t + 1]) / var_plus
        rho_odd = 1.0 - (mean_var - acov[t + 2]) / var_plus
        if rho_even + rho_odd >= 0:
            rho[t + 1] = rho_even
            rho[t + 2] = rho_odd
        else:  # the first negative pair: zero (ArviZ's rho beyond the positive sequence)
            rho[t + 1] = 0.0
            rho[t + 2] = 0.0
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
def _radix_sort(keys, order, spare_keys, spare_order, count, passes):  # pragma: no cover
    """Stable LSD radix sort of the non-negative ``keys``, ``passes`` (even) bytes from the
    lowest: ``keys`` sorted in place and ``order`` the permutation that sorts them."""
    n = keys.shape[0]
    for i in range(n):
        order[i] = i
    src_k, src_o, dst_k, dst_o = keys, order, spare_keys, spare_order
    for shift in range(0, 8 * passes, 8):
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
    # an even number of passes: the result is back in keys / order


@njit(**_JIT)
def _radix_argsort(values, order, keys, spare_keys, spare_order, count):  # pragma: no cover
    """``order``: the stable ascending order of float32 ``values`` (LSD radix, 4 x 8 bits)."""
    bits = values.view(np.uint32)
    for i in range(values.shape[0]):
        k = np.int64(bits[i])
        keys[i] = 0xFFFFFFFF - k if k >= 0x80000000 else k + 0x80000000
    _radix_sort(keys, order, spare_keys, spare_order, count, 4)


@njit(**_JIT)
def _folded_scores(s, sorted_split, split_index, folded, folded_index, ztab,
                   zf):  # pragma: no cover
    """Normal scores ``zf`` of the ranks of ``|s - median|`` (from the sorted split draws)."""
    total = sorted_split.shape[0]
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
    _scores(folded, folded_index, ztab, zf.reshape(total))


@njit(**_JIT)
def _finish(s, order, every, odd, ztab, out, p, scratch, rho, folded_rhat):  # pragma: no cover
    """The six diagnostics of one pixel into ``out[:, p]``, once its split draws are sorted.

    ``s``: the split chains ``(2 chain, draw // 2)``; ``order``: the ascending order of its
    flattened values; ``every``: all draws sorted when ``odd`` (an odd draw count: the tail
    quantiles are those of all draws), else not read. ``scratch``: ``(8, 2 chain, draw // 2)``.
    ``folded_rhat``: the R-hat is the larger of the bulk and the folded one (ArviZ's), else
    the bulk one only (a third of the time less).
    """
    m, h = s.shape
    total = m * h
    flat_s = s.reshape(total)
    z = scratch[0]
    zf = scratch[1]
    work = scratch[2]
    centred = scratch[3]
    flat_z = z.reshape(total)
    flat_w = work.reshape(total)
    sorted_split = scratch[4].reshape(total)
    folded = scratch[5].reshape(total)
    split_index = scratch[6].reshape(total).view(np.int64)
    folded_index = scratch[7].reshape(total).view(np.int64)
    for k in range(total):
        sorted_split[k] = flat_s[order[k]]
        split_index[k] = order[k]
    _scores(sorted_split, split_index, ztab, flat_z)
    if not odd:
        every = sorted_split
    if not folded_rhat:
        out[0, p] = _rhat(z)
    else:
        _folded_scores(s, sorted_split, split_index, folded, folded_index, ztab, zf)
        out[0, p] = max(_rhat(z), _rhat(zf))
    out[1, p] = _ess(z, rho, centred)
    tail = math.inf
    for q in (0.05, 0.95):
        cut = _quantile(every, q)
        for k in range(total):
            flat_w[k] = 1.0 if flat_s[k] <= cut else 0.0
        tail = min(tail, _ess(work, rho, centred))
    out[2, p] = tail
    out[3, p] = _ess(s, rho, centred)
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
    out[4, p] = _ess(work, rho, centred)
    out[5, p] = m4 / max(m2 * m2, 2.2250738585072014e-308)


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
    flat_s = s.reshape(total)
    scratch = np.empty((8, m, h))
    every_draw = np.empty(c * n)
    rho = np.empty(2 * h + 2 * _LAGS + m)
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
        if n % 2:
            for j in range(c):
                for t in range(n):
                    every_draw[j * n + t] = x[p, j, t]
            every_draw.sort()
        _finish(s, order, every_draw, n % 2 == 1, ztab, out, p, scratch, rho, True)


@njit(**_JIT)
def _code_pixels(codes, offset, scale, ztab, out, lo, hi, folded_rhat):  # pragma: no cover
    """Diagnostics of the pixels ``lo .. hi - 1`` of quantised draws into ``out``.

    ``codes``: ``(pixel, chain, draw)`` int16; the draw of code ``k`` is
    ``offset[p] + scale[p] * (k + 32768)`` (float64), whose ranks are those of the codes.
    ``folded_rhat``: as :func:`_finish`.
    """
    c, n = codes.shape[1], codes.shape[2]
    h = n // 2
    m = 2 * c
    total = m * h
    s = np.empty((m, h))
    scratch = np.empty((8, m, h))
    keys = np.empty(total, dtype=np.int32)
    every_draw = np.empty(c * n)
    mids = np.empty(c)
    rho = np.empty(2 * h + 2 * _LAGS + m)
    order = np.empty(total, dtype=np.int64)
    spare_keys = np.empty(total, dtype=np.int32)
    spare_order = np.empty(total, dtype=np.int64)
    count = np.empty(256, dtype=np.int64)
    for p in range(lo, hi):
        a = offset[p]
        b = scale[p]
        for j in range(c):
            for t in range(h):
                u = np.int32(codes[p, j, t]) + 32768
                v = np.int32(codes[p, j, n - h + t]) + 32768
                keys[j * h + t] = u
                keys[(c + j) * h + t] = v
                s[j, t] = a + b * u
                s[c + j, t] = a + b * v
        _radix_sort(keys, order, spare_keys, spare_order, count, 2)  # codes in [0, 65536)
        if n % 2:  # all draws sorted: the split ones merged with the chains' middle draws
            for j in range(c):
                mids[j] = a + b * (np.int32(codes[p, j, h]) + 32768)
            mids[:c].sort()
            i = 0
            k = 0
            flat = s.reshape(total)
            for at in range(total + c):
                if k >= c or (i < total and flat[order[i]] <= mids[k]):
                    every_draw[at] = flat[order[i]]
                    i += 1
                else:
                    every_draw[at] = mids[k]
                    k += 1
        _finish(s, order, every_draw, n % 2 == 1, ztab, out, p, scratch, rho, folded_rhat)


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


def code_diagnostics(codes: np.ndarray, offset: np.ndarray, scale: np.ndarray,
                     threads: int = 1, folded_rhat: bool = True) -> np.ndarray:
    """The six per-pixel diagnostics of quantised draws, as ``(6, pixel)``.

    ``codes``: ``(pixel, chain, draw)`` int16 (contiguous); the draws are
    ``offset + scale * (codes + 32768)`` per pixel (float64), which is what the results are
    those of (equal to :func:`diagnostics` on them). The pixels are split over ``threads``
    threads. ``folded_rhat=False``: the first row is the bulk rank-normalised R-hat only
    (not the larger of it and the folded one): less time per pixel.
    """
    if codes.dtype != np.int16:
        raise TypeError(f"codes must be int16, got {codes.dtype}")
    codes = np.ascontiguousarray(codes)
    pixels, c, n = codes.shape
    offset = np.ascontiguousarray(offset, dtype=np.float64)
    scale = np.ascontiguousarray(scale, dtype=np.float64)
    table = score_table(2 * c * (n // 2))
    out = np.empty((6, pixels))
    threads = max(1, min(threads, pixels))
    bounds = np.linspace(0, pixels, threads + 1).astype(np.int64)
    run_all([(_code_pixels, (codes, offset, scale, table, out, int(bounds[i]),
                             int(bounds[i + 1]), bool(folded_rhat))) for i in range(threads)])
    return out


@njit(nogil=True, cache=True, boundscheck=False, error_model="numpy")
def _dequantise_rows(codes, offset, scale, out, lo, hi):  # pragma: no cover - compiled
    """``out[c, d, p] = (codes[c, d, p] + 32768) * scale[p] + offset[p]`` in float64 (cast
    to ``out``'s dtype) for the pixels ``lo .. hi - 1``. No fastmath: the same rounding as
    the same sum and product in torch."""
    of, sc = offset[lo:hi], scale[lo:hi]
    for c in range(codes.shape[0]):
        for d in range(codes.shape[1]):
            src, dst = codes[c, d, lo:hi], out[c, d, lo:hi]
            for p in range(hi - lo):
                dst[p] = (np.float64(src[p]) + 32768.0) * sc[p] + of[p]


def dequantise(codes: np.ndarray, offset: np.ndarray, scale: np.ndarray, out: np.ndarray,
               threads: int = 1) -> None:
    """The values of the 16-bit codes ``(chain, draw, pixel)`` (any strides) into ``out``
    (float32/float64, same shape): ``(codes + 32768) * scale + offset`` per pixel, in
    float64; the pixels split over ``threads`` threads."""
    pixels = codes.shape[2]
    threads = max(1, min(threads, pixels // 4096 + 1))
    run_all([(_dequantise_rows, (codes, offset, scale, out, pixels * i // threads,
                                 pixels * (i + 1) // threads)) for i in range(threads)])


@njit(**_JIT)
def _quantise_rows(x, offset, inverse, out, lo, hi):  # pragma: no cover
    """``out[c, p] = clip(round((x[c, p] - offset[p]) * inverse[p]), 0, 65535) - 32768`` for
    the pixels ``lo .. hi - 1``; the number of values clipped."""
    clipped = 0
    top = np.float32(65535.0)
    zero = np.float32(0.0)
    of, iv = offset[lo:hi], inverse[lo:hi]
    for c in range(x.shape[0]):
        xc, oc = x[c, lo:hi], out[c, lo:hi]  # rows: the loop vectorises
        for p in range(hi - lo):
            v = np.floor((xc[p] - of[p]) * iv[p] + np.float32(0.5))
            clipped += (v < zero) + (v > top)
            oc[p] = np.int16(np.int32(min(max(v, zero), top)) - 32768)
    return clipped


def quantise(x: np.ndarray, offset: np.ndarray, inverse: np.ndarray, out: np.ndarray,
             threads: int = 1) -> int:
    """16-bit codes of ``x`` ``(chain, pixel)`` into ``out`` (int16, same shape): the nearest
    of ``offset + k / inverse``, ``k = 0 .. 65535``, stored as ``k - 32768`` (a monotone map
    of each pixel's values: their ranks are kept, ties apart). Returns how many were clipped
    to the range."""
    pixels = x.shape[1]
    threads = max(1, min(threads, pixels // 4096 + 1))
    bounds = np.linspace(0, pixels, threads + 1).astype(np.int64)
    counts = [0] * threads

    def part(i: int) -> None:
        counts[i] = _quantise_rows(x, offset, inverse, out, int(bounds[i]), int(bounds[i + 1]))

    run_all([(part, (i,)) for i in range(threads)])
    return int(sum(counts))


# --- the streaming block sums of a run to convergence -------------------------------------


@njit(**_JIT)
def _block_rhat_rows(s1, s2, shift, first, half, n, out, lo, hi):  # pragma: no cover
    """Split R-hat of the pixels ``lo .. hi - 1`` from block sums ``(block, chain, pixel)``:
    blocks ``first .. first + half - 1`` and ``first + half .. first + 2 half - 1`` are the
    two halves of each chain, ``n`` draws each."""
    chains = s1.shape[1]
    m = 2 * chains
    width = 256
    h1 = np.empty((m, width))
    h2 = np.empty((m, width))
    for p0 in range(lo, hi, width):
        p1 = min(p0 + width, hi)
        k = p1 - p0
        h1[:, :k] = 0.0
        h2[:, :k] = 0.0
        for cut in range(2):
            for b in range(first + cut * half, first + (cut + 1) * half):
                for c in range(chains):
                    row = cut * chains + c
                    for i in range(k):
                        h1[row, i] += s1[b, c, p0 + i]
                        h2[row, i] += s2[b, c, p0 + i]
        for i in range(k):
            within = 0.0
            grand = 0.0
            for row in range(m):
                a = h1[row, i]
                within += max((h2[row, i] - a * a / n) / max(n - 1, 1), 0.0)
                grand += a / n + shift[row % chains, p0 + i]
            within /= m
            grand /= m
            between = 0.0
            for row in range(m):
                dev = h1[row, i] / n + shift[row % chains, p0 + i] - grand
                between += dev * dev
            between /= m - 1
            var_hat = within * (n - 1) / n + between
            out[p0 + i] = math.sqrt(var_hat / max(within, 2.2250738585072014e-308))


def block_rhat(s1: np.ndarray, s2: np.ndarray, shift: np.ndarray, first: int, half: int,
               n: int, threads: int = 1) -> np.ndarray:
    """Split R-hat per pixel from the block sums (see :func:`_block_rhat_rows`), float64."""
    pixels = s1.shape[2]
    out = np.empty(pixels)
    threads = max(1, min(threads, pixels // 16384 + 1))
    bounds = np.linspace(0, pixels, threads + 1).astype(np.int64)
    run_all([(_block_rhat_rows, (s1, s2, shift, first, half, n, out, int(bounds[i]),
                                 int(bounds[i + 1]))) for i in range(threads)])
    return out


@njit(**_JIT)
def _add_rows(x, shift, s1, s2, lo, hi):  # pragma: no cover - compiled
    """``d = float32(x) - shift``, ``s1 += d``, ``s2 += d * d`` on the pixels ``lo .. hi - 1``
    of every chain (``(chain, pixel)`` arrays; ``s1``, ``s2`` the current block's)."""
    for c in range(x.shape[0]):
        xc, hc, a, b = x[c, lo:hi], shift[c, lo:hi], s1[c, lo:hi], s2[c, lo:hi]
        for p in range(hi - lo):
            d = np.float32(xc[p]) - hc[p]
            a[p] += d
            b[p] += d * d


def block_add(x: np.ndarray, shift: np.ndarray, s1: np.ndarray, s2: np.ndarray,
              threads: int = 1) -> None:
    """One draw ``x`` ``(chain, pixel)`` into the float32 block sums ``s1``, ``s2`` (its
    current block, ``(chain, pixel)``) of its difference to ``shift``, in one pass; the
    pixels split over ``threads`` threads."""
    pixels = x.shape[1]
    threads = max(1, min(threads, pixels // 16384 + 1))
    bounds = np.linspace(0, pixels, threads + 1).astype(np.int64)
    run_all([(_add_rows, (x, shift, s1, s2, int(bounds[i]), int(bounds[i + 1])))
             for i in range(threads)])
