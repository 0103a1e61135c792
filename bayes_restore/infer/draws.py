"""The draws of a sampler: streaming per-pixel moments and memory-bounded storage."""

from __future__ import annotations

import math

import torch

__all__ = ["DrawStore"]


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
