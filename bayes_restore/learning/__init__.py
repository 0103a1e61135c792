"""Super-resolution networks trained with the package's losses, and their predictive uncertainty.

A small sub-pixel convolution network (:class:`SRNet`) with a regression head (L1 / L2),
a cross-entropy head over the 256 intensities (CS) or a frequency-split head (FCS: L2 on
the low-pass, cross-entropy on the high-pass), trained by :func:`train` on patches of
the images scikit-image ships (:mod:`~bayes_restore.learning.data`), and
:func:`predict`, which returns a :class:`~bayes_restore.Posterior`: for the
cross-entropy heads the mean, std, intervals and draws of each pixel's categorical
predictive distribution.

Not imported by ``import bayes_restore``: ``import bayes_restore.learning``.

Layout: ``network.py`` (:class:`SRNet`), ``data.py`` (images, degradations, patches),
``train.py`` (the training loop and checkpoints), ``predictive.py`` (categorical
moments, quantiles, draws; :class:`NetworkPosterior`), ``predict.py`` (inference).
"""

from .data import (
    DEGRADATIONS,
    TEST_IMAGES,
    TRAIN_IMAGES,
    PatchSampler,
    degrade,
    dihedral,
    load_image,
)
from .network import HEADS, SRNet
from .predict import predict
from .predictive import (
    NetworkDiagnostics,
    NetworkPosterior,
    categorical_moments,
    categorical_quantile,
    categorical_sample,
)
from .train import TrainResult, load_checkpoint, torch_threads, train

__all__ = [
    "SRNet",
    "HEADS",
    "train",
    "TrainResult",
    "load_checkpoint",
    "predict",
    "NetworkPosterior",
    "NetworkDiagnostics",
    "categorical_moments",
    "categorical_quantile",
    "categorical_sample",
    "PatchSampler",
    "load_image",
    "degrade",
    "dihedral",
    "torch_threads",
    "TRAIN_IMAGES",
    "TEST_IMAGES",
    "DEGRADATIONS",
]
