"""``SRNet``: a small sub-pixel convolution super-resolution network with a regression,
a cross-entropy (CS) or a frequency-split (FCS) head."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bayes_restore.likelihoods import check_levels, from_levels
from bayes_restore.losses import (
    combine_frequency_split,
    frequency_split_targets,
    intensity_cross_entropy,
    l1_loss,
    l2_loss,
)

__all__ = ["SRNet", "HEADS"]

# bounds of the log-width (1e-4 to e^2): keeps the precision finite in float32
_LOG_WIDTH_MIN, _LOG_WIDTH_MAX = math.log(1e-4), 2.0

#: the heads of :class:`SRNet`, by the loss they are trained with
HEADS = ("l1", "l2", "cs", "fcs")


class SRNet(nn.Module):
    r"""A small super-resolution network (ESPCN-like trunk, bicubic skip) with one of four heads.

    The trunk works at low resolution: ``conv 5x5 (features) - ReLU - conv 3x3 (features)
    - ReLU - conv 3x3 (hr_features * factor^2)``, then a sub-pixel shuffle (Shi et al.,
    "Real-time single image and video super-resolution using an efficient sub-pixel
    convolutional neural network", CVPR 2016) to ``hr_features`` maps at high
    resolution, to which the bicubic upsampling of the input is appended. The head is a
    ``1x1`` convolution of those maps, per pixel:

    - ``"l1"``, ``"l2"``: one value per channel, trained by :func:`~bayes_restore.losses.l1_loss`
      / :func:`~bayes_restore.losses.l2_loss`;
    - ``"cs"``: ``levels`` logits per pixel and channel, ``(N, L, C, H, W)``, trained by
      :func:`~bayes_restore.losses.intensity_cross_entropy` (super-resolution as
      classification of the 256 intensities);
    - ``"fcs"``: a low-pass image ``y_L`` ``(N, C, H, W)`` and ``levels`` logits of the
      high-pass ``(N, L, C, H, W)``, trained by :func:`~bayes_restore.losses.frequency_split_loss`
      (L2 on the Gaussian low-pass of the target, cross-entropy on its high-pass).

    :meth:`loss` is the head's loss, mean over pixel values (FCS: the sum of the mean
    cross-entropy and ``alpha`` times the mean squared error, which is
    ``frequency_split_loss(..., reduction="mean")``).

    The classification logits are a discretised Gaussian plus free residual logits,
    per pixel and channel,

    .. math:: \ell_k = (v_k \mu - v_k^2 / 2)\, e^{-2 \lambda} + r_k,

    the Gaussian ``-(v_k - mu)^2 / (2 s^2)`` of width ``s = exp(lambda)`` up to a constant
    of the pixel (which the softmax ignores), with the centre ``mu``, the log-width
    ``lambda`` (clamped to ``[log 1e-4, 2]``) and the residual ``r`` each a ``1x1``
    convolution of the maps (:attr:`centre`, :attr:`log_width`, :attr:`out`). The width
    is thus learnt at the optimiser's scale: a step of Adam moves each weight of
    :attr:`log_width` by about the learning rate, hence ``log s`` by about that much per
    feature, whereas the width set by weights of the logits (of order ``1 / s^2``, 400 at
    ``s = 0.05``) would barely move. The head is still a full categorical over the
    ``levels`` classes: ``r`` can give it any shape.

    The heads start from the bicubic image: the regression and low-pass heads copy the
    bicubic channel; the CS head's centre copies it and the FCS high-pass centre starts
    at 0; ``log s`` starts at ``log(init_std)`` and ``r`` at about 0. The other weights
    start small and random, from ``seed`` (the global random state is left as it was).

    Parameters
    ----------
    factor : int, default 2
        Upscaling factor (>= 2).
    head : {"l1", "l2", "cs", "fcs"}, default "l1"
    channels : int, default 1
        Image channels.
    features, hr_features : int, default 32, 16
        Widths of the low-resolution trunk and of the high-resolution maps.
    levels : int, default 256
        Classes of the CS / FCS heads.
    cutoff_sigma, alpha, high_range : float, default 1.0
        Of the FCS loss (:func:`~bayes_restore.losses.frequency_split_loss`).
    init_std : float, default 0.05
        Width of the initial predictive distribution of the classification heads.
    seed : int, default 0
        Seeds the initial weights.

    Examples
    --------
    >>> import torch
    >>> net = SRNet(2, "cs", levels=16)
    >>> net(torch.rand(1, 1, 5, 5)).shape  # (N, L, C, H, W)
    torch.Size([1, 16, 1, 10, 10])
    >>> # a black image: -log p(level 0) of the initial Gaussian (std 0.05) around 0
    >>> round(net.loss(net(torch.zeros(1, 1, 5, 5)), torch.zeros(1, 1, 10, 10)).item(), 4)
    0.3647
    """

    def __init__(
        self,
        factor: int = 2,
        head: str = "l1",
        *,
        channels: int = 1,
        features: int = 32,
        hr_features: int = 16,
        levels: int = 256,
        cutoff_sigma: float = 1.0,
        alpha: float = 1.0,
        high_range: float = 1.0,
        init_std: float = 0.05,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if isinstance(factor, bool) or not isinstance(factor, int) or factor < 2:
            raise ValueError(f"factor must be an integer >= 2, got {factor!r}")
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}")
        for name, value in (("channels", channels), ("features", features),
                            ("hr_features", hr_features)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        check_levels(levels)
        if not init_std > 0:
            raise ValueError(f"init_std must be > 0, got {init_std!r}")
        self.factor, self.head, self.channels, self.levels = factor, head, channels, levels
        self.cutoff_sigma, self.alpha, self.high_range = cutoff_sigma, alpha, high_range
        self.config = {
            "factor": factor, "head": head, "channels": channels, "features": features,
            "hr_features": hr_features, "levels": levels, "cutoff_sigma": cutoff_sigma,
            "alpha": alpha, "high_range": high_range, "init_std": init_std, "seed": seed,
        }
        with torch.random.fork_rng(devices=[]):  # layer construction draws from the global RNG
            pad = {"padding_mode": "replicate"}
            self.conv1 = nn.Conv2d(channels, features, 5, padding=2, **pad)
            self.conv2 = nn.Conv2d(features, features, 3, padding=1, **pad)
            self.conv3 = nn.Conv2d(features, hr_features * factor**2, 3, padding=1, **pad)
            width = hr_features + channels
            out = {"l1": channels, "l2": channels, "cs": levels * channels,
                   "fcs": levels * channels}[head]
            self.out = nn.Conv2d(width, out, 1)
            self.low = nn.Conv2d(width, channels, 1) if head == "fcs" else None
            classes = head in ("cs", "fcs")
            #: the centre and the log-width of the Gaussian part of the logits
            self.centre = nn.Conv2d(width, channels, 1) if classes else None
            self.log_width = nn.Conv2d(width, channels, 1) if classes else None
        self._init_weights(torch.Generator().manual_seed(int(seed)), init_std)

    # ------------------------------------------------------------------ weights
    def _init_weights(self, g: torch.Generator, init_std: float) -> None:
        with torch.no_grad():
            for conv in (self.conv1, self.conv2, self.conv3):
                nn.init.kaiming_uniform_(conv.weight, nonlinearity="relu", generator=g)
                conv.bias.zero_()
            hr = self.out.in_channels - self.channels
            identity = torch.eye(self.channels)
            for conv in (self.out, self.low, self.centre, self.log_width):
                if conv is None:
                    continue
                conv.weight.normal_(0.0, 1e-3, generator=g)
                conv.bias.zero_()
            if self.head in ("l1", "l2"):
                self.out.weight[:, hr:, 0, 0] = identity
                return
            if self.low is not None:
                self.low.weight[:, hr:, 0, 0] = identity
            if self.head == "cs":  # a Gaussian of std init_std around the bicubic value
                self.centre.weight[:, hr:, 0, 0] = identity
            self.log_width.bias.fill_(math.log(init_std))  # FCS: high-pass around 0

    def class_values(self, dtype: torch.dtype | None = None, device: Any = None) -> torch.Tensor:
        """``(L,)``: the value of each class (intensities ``k / (L - 1)``; for FCS the
        high-pass values ``-r + 2 r k / (L - 1)``, which add to the low-pass image).

        Examples
        --------
        >>> SRNet(2, "fcs", levels=3).class_values().tolist()
        [-1.0, 0.0, 1.0]
        """
        if self.head in ("l1", "l2"):
            raise ValueError(f"head {self.head!r} has no classes")
        dtype = dtype or self.conv1.weight.dtype
        v = from_levels(torch.arange(self.levels, device=device), self.levels, dtype=dtype)
        return v if self.head == "cs" else -self.high_range + 2 * self.high_range * v

    @property
    def num_parameters(self) -> int:
        """The number of trainable parameters."""
        return sum(p.numel() for p in self.parameters())

    # ------------------------------------------------------------------ forward
    def hr_maps(self, lr: torch.Tensor) -> torch.Tensor:
        """``(N, hr_features + C, H, W)``: the trunk's high-resolution maps and the
        bicubic image."""
        if not isinstance(lr, torch.Tensor) or lr.dim() != 4 or lr.shape[1] != self.channels:
            shape = tuple(lr.shape) if isinstance(lr, torch.Tensor) else type(lr).__name__
            raise ValueError(f"lr must be a (N, {self.channels}, h, w) tensor, got {shape}")
        z = F.relu(self.conv1(lr))
        z = F.relu(self.conv2(z))
        z = F.relu(F.pixel_shuffle(self.conv3(z), self.factor))
        up = F.interpolate(lr, scale_factor=self.factor, mode="bicubic", align_corners=False)
        return torch.cat([z, up], 1)

    def head_forward(self, maps: torch.Tensor) -> Any:
        """The head on (a window of) :meth:`hr_maps`: a ``1x1`` convolution, so it can
        be applied to any crop of the maps.

        The logits are returned as ``(N, L, C, H, W)`` (the layout of the losses) but lie
        in memory classes-last, ``(N, H, W, C, L)``: the softmax over classes then reads
        contiguous memory (:meth:`classes_last`), several times faster on a CPU.
        """
        if self.head in ("l1", "l2"):
            return self.out(maps)
        n, _, h, w = maps.shape
        last = maps.permute(0, 2, 3, 1)  # (N, H, W, features)
        mu = F.linear(last, self.centre.weight[:, :, 0, 0], self.centre.bias)
        log_s = F.linear(last, self.log_width.weight[:, :, 0, 0], self.log_width.bias)
        precision = torch.exp(-2 * log_s.clamp(_LOG_WIDTH_MIN, _LOG_WIDTH_MAX))  # (N, H, W, C)
        # residual + precision (mu v_k - v_k^2 / 2) as one matrix product (as fast as the
        # residual alone): the features and (precision mu, precision) of each channel in,
        # channel c's classes out (output c L + k: classes last in memory)
        v = self.class_values(maps.dtype, maps.device)
        eye = torch.eye(self.channels, dtype=maps.dtype, device=maps.device)
        weight = torch.cat([self.out.weight[:, :, 0, 0], torch.kron(eye, v[:, None]),
                            torch.kron(eye, -0.5 * v.square()[:, None])], 1)
        flat = F.linear(torch.cat([last, precision * mu, precision], -1), weight, self.out.bias)
        logits = flat.reshape(n, h, w, self.channels, self.levels).permute(0, 4, 3, 1, 2)
        return logits if self.head == "cs" else (self.low(maps), logits)

    @staticmethod
    def classes_last(logits: torch.Tensor) -> torch.Tensor:
        """``(N, L, C, H, W)`` logits as ``(N, H, W, C, L)`` (a view for the head's own output)."""
        return logits.permute(0, 3, 4, 2, 1)

    def forward(self, lr: torch.Tensor) -> Any:
        """``(N, C, h, w)`` -> the head's output at ``(H, W) = factor (h, w)``: an image
        (``"l1"``, ``"l2"``), logits ``(N, L, C, H, W)`` (``"cs"``) or ``(low, logits)``
        (``"fcs"``)."""
        return self.head_forward(self.hr_maps(lr))

    def loss(self, output: Any, target: torch.Tensor) -> torch.Tensor:
        """The head's training loss (mean over pixel values) of ``output`` against ``target``."""
        if self.head == "l1":
            return l1_loss(output, target)
        if self.head == "l2":
            return l2_loss(output, target)
        # the cross-entropy terms on (pixels, L) rows of the classes-last logits: the same
        # losses (tests/test_learning.py checks them against the (N, L, C, H, W) calls)
        if self.head == "cs":
            return intensity_cross_entropy(self._rows(output), self._rows(target),
                                           levels=self.levels)
        low, logits = output
        low_target, high_classes = frequency_split_targets(
            target, cutoff_sigma=self.cutoff_sigma, levels=self.levels,
            high_range=self.high_range,
        )
        ce = intensity_cross_entropy(self._rows(logits), self._rows(high_classes),
                                     levels=self.levels)
        return ce + self.alpha * l2_loss(low, low_target)

    def _rows(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, L, C, H, W)`` -> ``(N H W C, L)``; targets ``(N, C, H, W)`` ->
        ``(N H W C,)``."""
        if x.dim() == 5:
            return self.classes_last(x).reshape(-1, self.levels)
        return x.permute(0, 2, 3, 1).reshape(-1)

    def image(self, output: Any) -> torch.Tensor:
        """The restored image of an output: the regression value, the predictive mean of
        the classes (CS), or ``y_L + E[y_H]``
        (FCS, :func:`~bayes_restore.losses.combine_frequency_split`)."""
        if self.head in ("l1", "l2"):
            return output
        if self.head == "cs":
            p = torch.softmax(self.classes_last(output), -1)
            mean = (p * self.class_values(output.dtype, output.device)).sum(-1)
            return mean.movedim(-1, -3)
        low, logits = output
        return combine_frequency_split(low, logits, high_range=self.high_range)

    def extra_repr(self) -> str:
        return f"factor={self.factor}, head={self.head!r}, parameters={self.num_parameters}"
