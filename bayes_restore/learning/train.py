"""Training loop of :class:`~bayes_restore.learning.SRNet`: seeded, with a progress bar and
resumable checkpoints."""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from bayes_restore._numba_pool import torch_threads

from .data import PatchSampler
from .network import SRNet

__all__ = ["TrainResult", "train", "load_checkpoint", "torch_threads"]


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` did.

    Attributes
    ----------
    losses : tuple of float
        The training loss of every step from the first (those before a resume included).
    step : int
        Steps done so far (``steps`` when the run is complete).
    steps : int
        Steps asked for.
    resumed_from : int
        The step the call started at (0 without a checkpoint).
    time : float
        Wall time of this call in seconds.
    total_time : float
        Wall time of the training so far, the calls before a resume included (as saved
        in the checkpoint).
    """

    losses: tuple[float, ...]
    step: int
    steps: int
    resumed_from: int
    time: float
    total_time: float = 0.0

    @property
    def complete(self) -> bool:
        """Whether all ``steps`` are done."""
        return self.step >= self.steps


def _learning_rate(lr: float, step: int, steps: int) -> float:
    """Cosine decay from ``lr`` to ``lr / 100`` over the run (a function of the step only)."""
    return lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * step / max(steps, 1))))


def load_checkpoint(path: str | os.PathLike) -> tuple[SRNet, dict]:
    """The network saved by :func:`train` at ``path`` and the rest of the checkpoint.

    Returns
    -------
    model : SRNet
        Rebuilt from its saved configuration, with the saved weights, in eval mode.
    state : dict
        ``step``, ``steps``, ``losses``, ``optimizer``, ``generator``, ``settings`` and
        ``time`` (the wall time of the training so far, seconds).

    Examples
    --------
    >>> import tempfile, os, numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "net.pt")
    >>> images = [np.random.default_rng(0).random((24, 24))]
    >>> _ = train(SRNet(2), images, steps=2, batch_size=2, patch_size=8, checkpoint=path,
    ...           progress=False)
    >>> model, state = load_checkpoint(path)
    >>> model.head, state["step"]
    ('l1', 2)
    """
    state = torch.load(Path(path), map_location="cpu", weights_only=False)
    model = SRNet(**state["config"])
    model.load_state_dict(state["model"])
    return model.eval(), state


def train(
    model: SRNet,
    images: PatchSampler | list,
    *,
    steps: int = 1000,
    batch_size: int = 16,
    patch_size: int = 48,
    lr: float = 2e-3,
    degradation: str = "box",
    sigma: float = 0.01,
    seed: int = 0,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 100,
    resume: bool = True,
    stop_after: int | None = None,
    progress: bool = True,
    num_threads: int | None = None,
) -> TrainResult:
    """Train ``model`` in place on random patches with Adam and its head's loss.

    Every random draw (patch positions, flips, noise) comes from one generator seeded
    by ``seed``; the learning rate decays along a cosine from ``lr`` to ``lr / 100``,
    a function of the step only. A checkpoint (model, optimizer, generator state, losses)
    is written every ``checkpoint_every`` steps and at the end; with ``resume=True`` an
    existing checkpoint is loaded and training continues from its step, and the result
    is bit-identical to an uninterrupted run (same thread count).

    Parameters
    ----------
    model : SRNet
        Trained in place (left in eval mode).
    images : PatchSampler or list of arrays
        A :class:`~bayes_restore.learning.PatchSampler`, or grey high-resolution images
        from which one is made with ``model.factor``, ``degradation``, ``patch_size``
        and ``sigma``.
    steps : int, default 1000
        Total optimisation steps (across resumes).
    batch_size : int, default 16
    patch_size : int, default 48
        High-resolution patch side (ignored with a ``PatchSampler``).
    lr : float, default 2e-3
        Initial learning rate of Adam.
    degradation : {"box", "bicubic"}, default "box"
    sigma : float, default 0.01
        Noise std of the low-resolution patches.
    seed : int, default 0
    checkpoint : path, optional
        Where to save (and resume from).
    checkpoint_every : int, default 100
    resume : bool, default True
        Continue from ``checkpoint`` when it exists (else it is overwritten).
    stop_after : int, optional
        Do at most this many steps in this call (the rest on a later resume).
    progress : bool, default True
        Show a tqdm progress bar.
    num_threads : int, optional
        torch's intra-op threads during the call (restored after).

    Returns
    -------
    TrainResult

    Examples
    --------
    >>> import numpy as np
    >>> net = SRNet(2, "l2")
    >>> res = train(net, [np.random.default_rng(0).random((32, 32))], steps=3, batch_size=2,
    ...             patch_size=8, progress=False)
    >>> len(res.losses), res.complete
    (3, True)
    """
    from tqdm.auto import tqdm

    if not isinstance(model, SRNet):
        raise TypeError(f"model must be an SRNet, got {type(model).__name__}")
    for name, value in (("steps", steps), ("batch_size", batch_size),
                        ("checkpoint_every", checkpoint_every)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    sampler = images if isinstance(images, PatchSampler) else PatchSampler(
        images, model.factor, degradation, patch_size=patch_size, sigma=sigma,
        dtype=model.conv1.weight.dtype,
    )
    if sampler.factor != model.factor:
        raise ValueError(f"the sampler's factor {sampler.factor} is not the model's {model.factor}")
    settings = {"steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed,
                "patch_size": sampler.patch_size, "degradation": sampler.degradation,
                "sigma": sampler.sigma}
    generator = torch.Generator().manual_seed(int(seed))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses: list[float] = []
    start, before = 0, 0.0
    path = None if checkpoint is None else Path(checkpoint)
    if path is not None and resume and path.exists():
        state = torch.load(path, map_location="cpu", weights_only=False)
        if state["config"] != model.config:
            raise ValueError(f"checkpoint {path} holds another network: {state['config']}")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        losses, start = list(state["losses"]), int(state["step"])
        before = float(state.get("time", 0.0))

    def save(step: int) -> None:
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save({"config": model.config, "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(), "generator": generator.get_state(),
                    "losses": list(losses), "step": step, "steps": steps,
                    "settings": settings, "time": before + time.perf_counter() - t0}, tmp)
        os.replace(tmp, path)  # atomic: an interrupted save leaves the previous checkpoint

    end = steps if stop_after is None else min(steps, start + int(stop_after))
    t0 = time.perf_counter()
    model.train()
    with torch_threads(num_threads):
        bar = tqdm(range(start, end), total=steps, initial=start, disable=not progress,
                   desc=f"{model.head} x{model.factor}", leave=False)
        for step in bar:
            for group in optimizer.param_groups:
                group["lr"] = _learning_rate(lr, step, steps)
            lr_batch, hr_batch = sampler.sample(batch_size, generator)
            loss = model.loss(model(lr_batch), hr_batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
            if progress:
                bar.set_postfix(loss=f"{losses[-1]:.4g}", refresh=False)
            if (step + 1) % checkpoint_every == 0 and step + 1 < end:
                save(step + 1)
        bar.close()
    save(end)
    model.eval()
    elapsed = time.perf_counter() - t0
    return TrainResult(losses=tuple(losses), step=end, steps=steps, resumed_from=start,
                       time=elapsed, total_time=before + elapsed)

