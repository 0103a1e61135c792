"""Common training losses, each the negative log of a density of the package.

For people who train networks: total variation (the TensorFlow, PyTorch and
isotropic / order-``beta`` conventions), cross-entropy over intensity classes, the
frequency-specific loss of super-resolution, L1 and L2. Each docstring names the
density it is the negative log of (the Derivations page of the documentation), and each is
computed by the code of that density (:func:`~bayes_restore.differences.grad`,
:func:`~bayes_restore.differences.gradient_energy`, the likelihoods' helpers) or by
torch's own function, never by a second copy of a formula.

Images are channels-first: ``(H, W)``, ``(C, H, W)`` or ``(N, C, H, W)`` (more
leading dimensions are batch dimensions).

Layout: ``tv.py`` (total variation), ``cross_entropy.py`` (intensity classes),
``frequency.py`` (the frequency split), ``pixel.py`` (L1, L2), ``_common.py`` (shared
checks and reductions). Every name is importable from ``bayes_restore.losses``.
"""

from .cross_entropy import IntensityCrossEntropyLoss, intensity_cross_entropy
from .frequency import (
    FrequencySplitLoss,
    combine_frequency_split,
    frequency_split_loss,
    frequency_split_targets,
)
from .pixel import l1_loss, l2_loss
from .tv import TV_CONVENTIONS, TVLoss, tv_loss

__all__ = [
    "tv_loss",
    "TVLoss",
    "intensity_cross_entropy",
    "IntensityCrossEntropyLoss",
    "frequency_split_loss",
    "frequency_split_targets",
    "combine_frequency_split",
    "FrequencySplitLoss",
    "l1_loss",
    "l2_loss",
    "TV_CONVENTIONS",
]
