"""The draws of a sampler: streaming moments, bounded storage and per-pixel diagnostics."""

from __future__ import annotations

import math

import torch

__all__ = [
    "DrawStore",
    "BlockSums",
    "ThinnedDraws",
    "QuantisedDraws",
    "convergence_diagnostics",
    "monte_carlo_errors",
]


class DrawStore:
    """Accumulates per-pixel moments of every draw and stores a thinned float32 copy.

    At most ``max_memory`` bytes of draws are stored: when all ``num_samples`` draws of the
    ``num_chains`` chains do not fit, every ``every``-th is (``kept`` of them); the moments
    use all draws (shifted sums in float64).

    Examples
    --------
    >>> import torch
    >>> store = DrawStore(2, 4, (3, 3), "cpu", max_memory=2 * 2 * 9 * 4)
    >>> for value in range(4):
    ...     store.add(torch.full((2, 3, 3), float(value)))
    >>> store.every, tuple(store.samples.shape)
    (2, (2, 2, 3, 3))
    >>> mean, std = store.moments(2, torch.float64)
    >>> float(mean[0, 0]), round(float(std[0, 0]), 4)
    (1.5, 1.1952)
    """

    def __init__(self, num_chains, num_samples, shape, device, max_memory):
        per_draw = num_chains * math.prod(shape) * 4
        fit = max_memory // per_draw
        if fit < 1:
            raise ValueError(
                f"max_memory={max_memory} bytes cannot hold a single draw of {num_chains} "
                f"chains of shape {tuple(shape)} ({per_draw} bytes)"
            )
        self.every = math.ceil(num_samples / min(fit, num_samples))
        self.kept = math.ceil(num_samples / self.every)
        self.samples = torch.empty((num_chains, self.kept) + tuple(shape), dtype=torch.float32,
                                   device=device)
        self.count = 0
        self.shift: torch.Tensor | None = None
        self.s1 = self.s2 = None

    def add(self, x: torch.Tensor) -> None:
        """``x``: one draw of every chain, shape ``(chain, *shape)``."""
        x64 = x.detach().to(torch.float64)
        if self.shift is None:
            self.shift = x64.mean(0)
            self.s1 = torch.zeros_like(self.shift)
            self.s2 = torch.zeros_like(self.shift)
        d = x64 - self.shift
        self.s1 += d.sum(0)
        self.s2 += d.square().sum(0)
        if self.count % self.every == 0:
            self.samples[:, self.count // self.every] = x.detach()
        self.count += 1

    def moments(self, num_chains: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-pixel mean and standard deviation (unbiased) over all chains and draws."""
        n = self.count * num_chains
        m1 = self.s1 / n
        var = (self.s2 / n - m1.square()).clamp_min(0.0) * (n / max(n - 1, 1))
        return (self.shift + m1).to(dtype), var.sqrt().to(dtype)


# --- streaming moments, a bounded thinned subset, per-pixel convergence diagnostics --------


class BlockSums:
    """Per-chain, per-pixel sums of every draw in ``blocks`` equal blocks: moments and R-hat.

    The draws of each chain are summed (``x - shift`` and its square, float32, the shift
    the chain's first draw) into ``blocks`` consecutive blocks of ``size`` draws; when all
    are full, neighbours are merged and ``size`` doubles. The memory is ``2 * blocks``
    float32 images per chain whatever the number of draws. From them: the mean and std of
    all draws (:meth:`moments`) and the split R-hat of all draws (:meth:`rhat`: each chain's
    full blocks cut into two equal halves).

    Examples
    --------
    >>> import torch
    >>> b = BlockSums(2, (1,), blocks=4, device="cpu")
    >>> for v in (1.0, 2.0, 3.0, 6.0):
    ...     b.add(torch.tensor([[v], [v + 1.0]]))
    >>> mean, std = b.moments(torch.float64)
    >>> float(mean[0]), round(float(std[0]), 4)
    (3.5, 2.0702)
    """

    def __init__(self, num_chains: int, shape: tuple[int, ...], *, blocks: int = 8,
                 device=None, chunk: int = 1 << 18) -> None:
        if blocks < 4 or blocks % 2:
            raise ValueError(f"blocks must be an even number >= 4, got {blocks!r}")
        full = (blocks, num_chains) + tuple(shape)
        self.chunk = chunk
        self.s1 = torch.zeros(full, dtype=torch.float32, device=device)
        self.s2 = torch.zeros(full, dtype=torch.float32, device=device)
        self.shift: torch.Tensor | None = None
        self._kernels = None  # the numba kernels, for CPU sums
        self.blocks, self.size, self.current, self.filled, self.count = blocks, 1, 0, 0, 0
        #: threads of the numba kernels (``None``: ``torch.get_num_threads()`` at each call)
        self.threads: int | None = None
        self._arrays: tuple | None = None

    def _threads(self) -> int:
        return self.threads or torch.get_num_threads()

    def add(self, x: torch.Tensor) -> None:
        """``x``: one draw of every chain, shape ``(chain, *shape)``."""
        x = x.detach()
        if self.shift is None:
            self.shift = x.to(torch.float32).clone()
            self._kernels = _fast_kernels(self.shift)
        if self._kernels is not None and x.dtype in (torch.float32, torch.float64):
            # one pass (d = x - shift, s1 += d, s2 += d^2) over the pixels split over threads
            if self._arrays is None:  # (block, chain, pixel) views of the sums, and shift's
                chains = self.shift.shape[0]
                self._arrays = tuple(t.view(t.shape[0], chains, -1).numpy()
                                     for t in (self.s1, self.s2)) + (
                    self.shift.view(chains, -1).numpy(),)
            s1, s2, shift = self._arrays
            self._kernels.block_add(x.contiguous().view(shift.shape).numpy(), shift,
                                    s1[self.current], s2[self.current], threads=self._threads())
        else:
            d = x.to(torch.float32) - self.shift
            self.s1[self.current] += d
            self.s2[self.current].addcmul_(d, d)
        self.count += 1
        self.filled += 1
        if self.filled == self.size:
            self.current += 1
            self.filled = 0
            if self.current == self.blocks:
                half = self.blocks // 2
                for s in (self.s1, self.s2):
                    s[:half] = s[0::2] + s[1::2]
                    s[half:] = 0.0
                self.current, self.size = half, 2 * self.size

    def _chunks(self):
        """Slices of the flattened pixels, ``chunk`` at a time (bounds the float64 copies)."""
        pixels = self.shift[0].numel()
        return [slice(lo, lo + self.chunk) for lo in range(0, pixels, self.chunk)]

    def moments(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-pixel mean and standard deviation (unbiased) over all chains and draws."""
        n = self.count
        shape = self.shift.shape[1:]
        s1_all = self.s1.flatten(2)
        s2_all = self.s2.flatten(2)
        shift = self.shift.flatten(1)
        mean = torch.empty(shift.shape[1], dtype=dtype, device=shift.device)
        std = torch.empty_like(mean)
        for part in self._chunks():
            s1 = s1_all[..., part].sum(0, dtype=torch.float64) / n  # per chain, shifted
            chain_var = (s2_all[..., part].sum(0, dtype=torch.float64) / n
                         - s1.square()).clamp_min(0.0)
            chain_mean = shift[:, part].to(torch.float64) + s1
            m = chain_mean.mean(0)
            total = n * chain_mean.shape[0]
            m2 = chain_var.mean(0) + (chain_mean - m).square().mean(0)  # biased, all draws
            mean[part] = m.to(dtype)
            std[part] = (m2 * total / max(total - 1, 1)).sqrt().to(dtype)
        return mean.reshape(shape), std.reshape(shape)

    def rhat(self) -> torch.Tensor | None:
        """Split R-hat of all draws in full blocks (an odd first block left out), per pixel.

        ``None`` before two blocks are full. Not rank-normalised: the ranks of all draws
        would need all draws.
        """
        full = self.current
        first = full % 2
        if full - first < 2:
            return None
        half = (full - first) // 2
        n = half * self.size
        shape = self.shift.shape[1:]
        if self._kernels is not None:
            return torch.from_numpy(self._kernels.block_rhat(
                self.s1.flatten(2).numpy(), self.s2.flatten(2).numpy(),
                self.shift.flatten(1).numpy(), first, half, n,
                threads=self._threads())).reshape(shape)
        s1_all = self.s1.flatten(2)
        s2_all = self.s2.flatten(2)
        shift = self.shift.flatten(1)
        out = torch.empty(shift.shape[1], dtype=torch.float64, device=shift.device)
        cut = (slice(first, first + half), slice(first + half, full))
        for part in self._chunks():
            h1 = torch.stack([s1_all[c, :, part].sum(0, dtype=torch.float64) for c in cut])
            h2 = torch.stack([s2_all[c, :, part].sum(0, dtype=torch.float64) for c in cut])
            means = (h1 / n + shift[:, part].to(torch.float64)).flatten(0, 1)  # (2 chain, p)
            variances = ((h2 - h1.square() / n) / max(n - 1, 1)).flatten(0, 1).clamp_min(0.0)
            within = variances.mean(0)
            between = means.var(0)
            var_hat = within * (n - 1) / n + between
            out[part] = torch.sqrt(var_hat / within.clamp_min(torch.finfo(torch.float64).tiny))
        return out.reshape(shape)


class ThinnedDraws:
    """A bounded, evenly thinned float32 subset of the draws of each chain.

    Holds at most ``capacity`` (even) draws per chain: when full, every other one is dropped
    and the spacing ``every`` doubles, so the subset always spans the whole run at an even
    spacing (between ``capacity / 2`` and ``capacity`` draws per chain). Split-chain
    diagnostics on it (:func:`convergence_diagnostics`) see the run's whole history.

    Examples
    --------
    >>> import torch
    >>> t = ThinnedDraws(1, (1,), capacity=4, device="cpu")
    >>> for v in range(9):
    ...     _ = t.add(torch.tensor([[float(v)]]))
    >>> t.every, t.draws[0, :, 0].tolist()
    (4, [0.0, 4.0, 8.0])
    """

    def __init__(self, num_chains: int, shape: tuple[int, ...], capacity: int, device) -> None:
        self.capacity = max(4, capacity - capacity % 2)
        # zeros, not empty: the memory is taken (and counted) at once, not as it fills
        self.buffer = self._allocate(num_chains, tuple(shape), device)
        self.every = 1
        self.stored = 0
        self.count = 0
        #: threads of the numba kernels (``None``: ``torch.get_num_threads()`` at each call)
        self.threads: int | None = None

    def _allocate(self, num_chains: int, shape: tuple[int, ...], device) -> torch.Tensor:
        """The buffer ``(chain, capacity, ...)`` (its second axis: the draws)."""
        return torch.zeros((num_chains, self.capacity) + shape, dtype=torch.float32,
                           device=device)

    def _write(self, x: torch.Tensor, row: int) -> None:
        """Store the draw ``x`` of every chain as draw ``row``."""
        self.buffer[:, row] = x.detach()

    @property
    def draws(self) -> torch.Tensor:
        """The stored draws, ``(chain, draw, *shape)`` (a view)."""
        return self.buffer[:, : self.stored]

    def add(self, x: torch.Tensor) -> bool:
        """Offer one draw of every chain; ``True`` when it was stored."""
        keep = self.count % self.every == 0
        if keep:
            if self.stored == self.capacity:
                half = self.capacity // 2
                for i in range(1, half):  # in place, in order: draw 2i is read before written
                    self.buffer[:, i] = self.buffer[:, 2 * i]
                self.stored = half
                self.every *= 2
                keep = self.count % self.every == 0
        if keep:
            self._write(x, self.stored)
            self.stored += 1
        self.count += 1
        return keep


class QuantisedDraws(ThinnedDraws):
    """A bounded, evenly thinned subset of the draws of every pixel, in 16 bits per value.

    Thinned as :class:`ThinnedDraws` (between ``capacity / 2`` and ``capacity`` draws per
    chain, evenly spaced over the run), but each value is stored as the nearest of 65536
    levels of its pixel: ``offset + k * scale``, ``k = 0 .. 65535``, from a centre and a
    spread given once (:meth:`set_bounds`, before the first :meth:`add`), ``width`` spreads
    either side (the levels about ``2 width / 65535`` spreads apart). The map is monotone
    per pixel, so the ranks of the draws, hence the rank-normalised diagnostics, are those of
    the dequantised draws (:meth:`dequantise`): their R-hat and ESS are computed on them
    (:meth:`diagnostics`). Values beyond the range are clipped to its ends (counted in
    ``clipped``). Half the memory of float32: every pixel's draws of a 512 x 512 image fit
    where float32 would need a grid of pixels.

    Examples
    --------
    >>> import torch
    >>> q = QuantisedDraws(1, (2,), capacity=4, device="cpu")
    >>> q.set_bounds(torch.zeros(2), torch.ones(2))
    >>> for v in range(5):
    ...     _ = q.add(torch.tensor([[0.1 * v, -0.1 * v]]))
    >>> q.every, [round(v, 3) for v in q.dequantise()[0, :, 0].tolist()]
    (2, [0.0, 0.2, 0.4])
    """

    def __init__(self, num_chains: int, shape: tuple[int, ...], capacity: int, device, *,
                 width: float = 32.0) -> None:
        self.shape = tuple(shape)
        self.pixels = math.prod(shape)
        self.width = float(width)
        super().__init__(num_chains, shape, capacity, device)
        self.offset: torch.Tensor | None = None  # float64, per pixel
        self.scale: torch.Tensor | None = None
        self._offset32 = self._inverse32 = None
        self.clipped = 0  # values clipped to the range of their levels
        self.encoded = 0  # values stored

    @property
    def ready(self) -> bool:
        """Whether the levels are set (:meth:`set_bounds`)."""
        return self.offset is not None

    def set_bounds(self, centre: torch.Tensor, spread: torch.Tensor) -> None:
        """The levels of each pixel: ``centre +- width * spread`` (the image's shape)."""
        centre = centre.detach().reshape(-1).to(torch.float64).cpu()
        spread = spread.detach().reshape(-1).to(torch.float64).cpu().clamp_min(0.0)
        # a pixel that has not moved yet: a range about the size of its value (or 1e-6)
        floor = 1e-6 * (centre.abs() + spread.max().clamp_min(1e-30))
        half = self.width * torch.maximum(spread, floor)
        self.offset = centre - half
        self.scale = 2.0 * half / 65535.0
        device = self.buffer.device
        self._offset32 = self.offset.to(torch.float32).to(device)
        self._inverse32 = (1.0 / self.scale).to(torch.float32).to(device)

    def _allocate(self, num_chains: int, shape: tuple[int, ...], device) -> torch.Tensor:
        return torch.zeros((num_chains, self.capacity, self.pixels), dtype=torch.int16,
                           device=device)

    def _write(self, x: torch.Tensor, row: int) -> None:
        """Store the draw ``x`` of every chain as draw ``row``, as its pixels' levels."""
        x = x.detach().reshape(x.shape[0], -1)
        out = self.buffer[:, row]
        self.encoded += x.numel()
        if x.device.type == "cpu":
            try:
                from . import _diagnostics_numba as kernels
            except ImportError:
                kernels = None
            if kernels is not None and not kernels.jit_disabled():
                target = out.numpy()  # a view: written in place
                self.clipped += kernels.quantise(
                    x.to(torch.float32).contiguous().numpy(), self._offset32.numpy(),
                    self._inverse32.numpy(), target,
                    threads=self.threads or torch.get_num_threads())
                return
        t = ((x.to(torch.float32) - self._offset32) * self._inverse32 + 0.5).floor_()
        self.clipped += int(((t < 0) | (t > 65535)).sum())
        out.copy_((t.clamp_(0, 65535) - 32768).to(torch.int16))

    def add(self, x: torch.Tensor) -> bool:
        """Offer one draw of every chain ``(chain, *shape)``; ``True`` when it was stored."""
        if not self.ready:
            raise RuntimeError("set_bounds must come before the first draw")
        return super().add(x)

    @property
    def codes(self) -> torch.Tensor:
        """The stored codes ``(chain, draw, pixel)`` (int16, ``k - 32768``; a view)."""
        return self.buffer[:, : self.stored]

    def dequantise(self, every: int = 1, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Every ``every``-th stored draw, ``(chain, draw, *shape)``, as values."""
        codes = self.codes[:, ::every]
        device = codes.device
        kernels = (_fast_kernels(codes) if dtype in (torch.float32, torch.float64)
                   else None)
        if kernels is not None:  # one pass over the codes, split over the threads
            values = torch.empty(codes.shape, dtype=dtype)
            kernels.dequantise(codes.numpy(), self.offset.numpy(), self.scale.numpy(),
                               values.numpy(), threads=self.threads or torch.get_num_threads())
            return values.reshape(codes.shape[:2] + self.shape)
        values = (codes.to(torch.float64) + 32768.0) * self.scale.to(device) + self.offset.to(
            device)
        return values.to(dtype).reshape(codes.shape[:2] + self.shape)

    def diagnostics(self, stride: int = 1, *, folded_rhat: bool = True) -> dict:
        """:func:`convergence_diagnostics` of the stored draws (dequantised), per pixel.

        ``stride > 1``: of every ``stride``-th pixel of every ``stride``-th row only (the
        maps have that grid's shape). ``folded_rhat=False``: ``"rhat"`` is the bulk
        rank-normalised R-hat only (not the larger of it and the folded one), a third
        less time.
        """
        if self.stored < 8:
            raise ValueError("convergence diagnostics need at least 8 draws per chain, got "
                             f"{self.stored}")
        codes, offset, scale, shape = self.codes, self.offset, self.scale, self.shape
        if stride > 1:
            lead, (h, w) = self.shape[:-2], self.shape[-2:]
            grid = lambda t, *head: t.reshape(*head, *lead, h, w)[..., ::stride, ::stride]  # noqa: E731
            codes = grid(codes, *codes.shape[:2]).contiguous()
            shape = tuple(codes.shape[2:])
            codes = codes.reshape(codes.shape[0], codes.shape[1], -1)
            offset = grid(offset).reshape(-1)
            scale = grid(scale).reshape(-1)
        names = ("rhat", "ess_bulk", "ess_tail", "ess_mean", "ess_sq", "kurtosis")
        kernels = _numba_kernels(torch.empty(0), "auto") if codes.device.type == "cpu" else None
        if kernels is not None:
            # a group of pixels at a time, transposed to (pixel, chain, draw): ~32 MiB
            out = torch.empty((len(names), codes.shape[2]), dtype=torch.float64)
            step = max(1, (1 << 24) // (codes.shape[0] * codes.shape[1]))
            for lo in range(0, codes.shape[2], step):
                part = slice(lo, lo + step)
                block = codes[..., part].permute(2, 0, 1).contiguous().numpy()
                out[:, part] = torch.from_numpy(kernels.code_diagnostics(
                    block, offset[part].numpy(), scale[part].numpy(),
                    threads=torch.get_num_threads(), folded_rhat=folded_rhat))
            return {k: out[i].reshape(shape) for i, k in enumerate(names)}
        # no numba: the draws dequantised, a group of pixels at a time
        out = {k: torch.empty(codes.shape[2], dtype=torch.float64) for k in names}
        step = max(1, (1 << 22) // (codes.shape[0] * codes.shape[1]))
        for lo in range(0, codes.shape[2], step):
            part = slice(lo, lo + step)
            values = ((codes[..., part].to(torch.float64) + 32768.0) * scale[part].to(
                codes.device) + offset[part].to(codes.device))
            maps = convergence_diagnostics(values.to(torch.float32))
            for k in names:
                out[k][part] = maps[k].cpu()
        return {k: v.reshape(shape) for k, v in out.items()}


def _fast_kernels(like: torch.Tensor):
    """The numba kernels when they run ``like``'s (a CPU tensor's) sums, else None."""
    if like.device.type != "cpu":
        return None
    try:
        from . import _diagnostics_numba as kernels
    except ImportError:  # numba missing
        return None
    return None if kernels.jit_disabled() else kernels


def _split(x: torch.Tensor) -> torch.Tensor:
    """``(p, chain, draw)`` -> ``(p, 2 chain, draw // 2)``: the first and second halves."""
    n = x.shape[2] // 2
    return torch.cat([x[:, :, :n], x[:, :, x.shape[2] - n:]], 1)


def _rhat(x: torch.Tensor) -> torch.Tensor:
    """Gelman-Rubin R-hat of ``(p, chain, draw)`` (chains already split)."""
    n = x.shape[2]
    within = x.var(2).mean(1)
    between = x.mean(2).var(1)  # B / n
    var_hat = within * (n - 1) / n + between
    return torch.sqrt(var_hat / within.clamp_min(torch.finfo(x.dtype).tiny))


def _ess(x: torch.Tensor) -> torch.Tensor:
    """Effective sample size of ``(p, chain, draw)`` (chains already split), per pixel.

    Geyer's initial monotone sequence on the multi-chain autocorrelation of Vehtari,
    Gelman, Simpson, Carpenter & Buerkner (2021), as ArviZ computes it, vectorised over
    the pixels (autocovariances by FFT).
    """
    m, n = x.shape[1], x.shape[2]
    xc = x - x.mean(2, keepdim=True)
    size = 1 << (2 * n - 1).bit_length()
    f = torch.fft.rfft(xc, n=size, dim=2)
    acov = torch.fft.irfft(f.real.square() + f.imag.square(), n=size, dim=2)[..., :n] / n
    mean_var = acov[..., 0].mean(1) * n / (n - 1)
    var_plus = mean_var * (n - 1) / n
    if m > 1:
        var_plus = var_plus + x.mean(2).var(1)
    var_plus = var_plus.clamp_min(torch.finfo(x.dtype).tiny)
    rho = 1.0 - (mean_var.unsqueeze(1) - acov.mean(1)) / var_plus.unsqueeze(1)  # (p, lag)
    rho[:, 0] = 1.0
    pairs = (n - 1) // 2  # pairs (2k, 2k + 1) with 2k + 1 <= n - 2, as ArviZ's loop
    even = rho[:, 0 : 2 * pairs : 2]
    pair_sum = even + rho[:, 1 : 2 * pairs : 2]
    positive = torch.cumprod((pair_sum > 0).to(x.dtype), 1)
    positive[:, 0] = 1.0  # the first pair always counts
    monotone = torch.cummin(torch.where(positive > 0, pair_sum, pair_sum[:, :1]), 1).values
    tau = -1.0 + 2.0 * (monotone * positive).sum(1)
    # the even term of the first pair left out, when positive (ArviZ's "improve estimation")
    kept = positive.sum(1)
    first_out = kept.long().clamp_max(pairs - 1)
    even_out = even.gather(1, first_out.unsqueeze(1)).squeeze(1)
    tau = tau + torch.where((even_out > 0) & (kept < pairs), even_out, 0.0)
    total = m * n
    return total / tau.clamp_min(1.0 / math.log10(total))


def _z_scale(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rank-normalise ``(p, chain, draw)`` over all chains and draws of each pixel.

    Returns the normal scores and the sorted pooled values ``(p, chain * draw)``.
    """
    p, m, n = x.shape
    values, order = x.reshape(p, m * n).sort(1)
    steps = torch.arange(1, m * n + 1, dtype=x.dtype, device=x.device)
    ranks = torch.empty_like(values).scatter_(1, order, steps.expand(p, -1))
    z = torch.special.ndtri((ranks - 0.375) / (m * n + 0.25))
    return z.reshape(p, m, n), values


def _quantile_sorted(values: torch.Tensor, q: float) -> torch.Tensor:
    """Linear-interpolation quantile of each row of sorted ``values``."""
    pos = q * (values.shape[1] - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, values.shape[1] - 1)
    return torch.lerp(values[:, lo], values[:, hi], pos - lo)


def _numba_kernels(draws: torch.Tensor, backend: str):
    """The numba diagnostics module when it runs ``draws`` (CPU, float32/float64), else None."""
    if backend not in ("auto", "numba", "torch"):
        raise ValueError(f"backend must be 'auto', 'numba' or 'torch', got {backend!r}")
    fits = draws.device.type == "cpu" and draws.dtype in (torch.float32, torch.float64)
    if backend == "torch" or (backend == "auto" and not fits):
        return None
    if not fits:
        raise ValueError("backend='numba' runs float32/float64 CPU draws, got "
                         f"{draws.dtype} on {draws.device}")
    try:
        from . import _diagnostics_numba as kernels
    except ImportError as err:  # numba missing
        if backend == "numba":
            raise ImportError(f"backend='numba' needs numba ({err})") from err
        return None
    if backend == "auto" and kernels.jit_disabled():  # plain Python: far slower than torch
        return None
    return kernels


def convergence_diagnostics(draws: torch.Tensor, *, chunk: int = 1 << 22,
                            backend: str = "auto") -> dict:
    """Per-pixel convergence diagnostics of ``(chain, draw, *shape)`` draws.

    Rank-normalised split R-hat (the larger of the bulk and the folded one), bulk and tail
    effective sample sizes (Vehtari, Gelman, Simpson, Carpenter & Buerkner 2021, the
    quantities of ArviZ's ``rhat``, ``ess(method="bulk"/"tail")``), the ESS of the mean
    (``ess_mean``, split chains, not rank-normalised) and of the squared deviations
    (``ess_sq``, for the Monte Carlo error of the std), and the kurtosis
    ``E[(x - mu)^4] / sigma^4``. Each map has the image's shape (float64); the pixels are
    handled ``chunk // (chain * draw)`` at a time to bound the memory.

    ``backend``: ``"numba"`` computes pixel by pixel in float64 on the CPU, as ArviZ does
    (equal to about 1e-12), summing the autocovariances only as far as Geyer's sequence
    reaches, over ``torch.get_num_threads()`` threads (about 50 us of one core per pixel
    for 2 x 512 draws; 6 x faster than ``"torch"``); ``"torch"`` in float32, vectorised over
    the pixels with FFTs (any device; to about 1e-2 of ArviZ's ESS); ``"auto"``: numba for
    float32/float64 CPU draws, else torch.

    Examples
    --------
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> d = convergence_diagnostics(torch.randn(4, 200, 3, 3, generator=g))
    >>> sorted(d), tuple(d["rhat"].shape)
    (['ess_bulk', 'ess_mean', 'ess_sq', 'ess_tail', 'kurtosis', 'rhat'], (3, 3))
    >>> bool((d["rhat"] < 1.05).all()), bool((d["ess_bulk"] > 400).all())
    (True, True)
    """
    c, n = draws.shape[:2]
    if n < 8:
        raise ValueError(f"convergence diagnostics need at least 8 draws per chain, got {n}")
    shape = tuple(draws.shape[2:])
    flat = draws.reshape(c, n, -1)
    p_total = flat.shape[2]
    step = max(1, chunk // (c * n))
    names = ("rhat", "ess_bulk", "ess_tail", "ess_mean", "ess_sq", "kurtosis")
    kernels = _numba_kernels(draws, backend)
    if kernels is not None:
        out = torch.empty((len(names), p_total), dtype=torch.float64)
        for lo in range(0, p_total, step):
            part = slice(lo, lo + step)
            block = flat[:, :, part].permute(2, 0, 1).contiguous().numpy()
            out[:, part] = torch.from_numpy(kernels.diagnostics(
                block, threads=torch.get_num_threads()))
        return {k: out[i].reshape(shape) for i, k in enumerate(names)}
    out = {k: torch.empty(p_total, dtype=torch.float64, device=draws.device) for k in names}
    for lo in range(0, p_total, step):
        part = slice(lo, lo + step)
        s = _split(flat[:, :, part].permute(2, 0, 1).to(torch.float32).contiguous())
        z, values = _z_scale(s)
        med = _quantile_sorted(values, 0.5)
        zf, _ = _z_scale((s - med[:, None, None]).abs())
        out["rhat"][part] = torch.maximum(_rhat(z), _rhat(zf)).double()
        out["ess_bulk"][part] = _ess(z).double()
        tails = [_ess((s <= _quantile_sorted(values, q)[:, None, None]).to(s.dtype))
                 for q in (0.05, 0.95)]
        out["ess_tail"][part] = torch.minimum(*tails).double()
        out["ess_mean"][part] = _ess(s).double()
        sq = (s - s.mean((1, 2), keepdim=True)).square()
        out["ess_sq"][part] = _ess(sq).double()
        m2 = sq.mean((1, 2)).double()
        m4 = sq.double().square().mean((1, 2))
        out["kurtosis"][part] = m4 / m2.square().clamp_min(torch.finfo(torch.float64).tiny)
    return {k: v.reshape(shape) for k, v in out.items()}


def monte_carlo_errors(std: torch.Tensor, diagnostics: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Monte Carlo standard errors of the per-pixel mean and std.

    ``se(mean) = std / sqrt(ess_mean)``; ``se(std) = std sqrt((kurtosis - 1) / (4 ess_sq))``
    (the delta method on the variance, whose error is ``sqrt((mu_4 - sigma^4) / ess)``).

    Examples
    --------
    >>> import torch
    >>> d = {"ess_mean": torch.tensor([100.0]), "ess_sq": torch.tensor([50.0]),
    ...      "kurtosis": torch.tensor([3.0])}
    >>> [round(float(v), 3) for v in monte_carlo_errors(torch.tensor([1.0]), d)]
    [0.1, 0.1]
    """
    s = std.to(torch.float64)
    mean_se = s / diagnostics["ess_mean"].clamp_min(1.0).sqrt()
    std_se = s * ((diagnostics["kurtosis"] - 1).clamp_min(0.0)
                  / (4 * diagnostics["ess_sq"].clamp_min(1.0))).sqrt()
    return mean_se.to(std.dtype), std_se.to(std.dtype)
