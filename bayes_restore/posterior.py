"""``Posterior``: the one result type of every engine (MAP, mean, std, samples, diagnostics)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

__all__ = [
    "Posterior",
    "SolverInfo",
    "Diagnostics",
    "MAPDiagnostics",
    "ExactDiagnostics",
    "VIDiagnostics",
    "MCMCDiagnostics",
    "TiledDiagnostics",
    "with_diagnostics",
    "sampler_info",
]


@dataclass(frozen=True)
class SolverInfo:
    """What an optimisation engine did.

    Attributes
    ----------
    solver : str
        Which solver ran: ``"dct"`` (closed form), ``"pdhg"`` (primal-dual), ``"admm"``
        (TV with an operator diagonal in the FFT or the DCT, a blur: ADMM, gap-certified),
        ``"pcg"``
        (conjugate gradients of the Gaussian posterior mean), ``"lbfgs"`` or ``"adam"``
        (generic path on Pyro's log joint).
    iterations : int
        Iterations performed (0 for a closed form).
    converged : bool
        Whether the stopping rule was met before the iteration cap.
    gap : float or None
        Final relative primal-dual gap (``(P - D) / P``), where the solver has one; for
        ``"pcg"`` the final relative residual.
    objective : float or None
        Final objective: ``-log p(x, y)`` for the generic path, the primal energy
        ``|A x - y|^2 + lambda TV(x)`` for PDHG (TV-L1: ``|x - y|_1 + lambda TV(x)``).
    time : float
        Wall time in seconds.
    history : tuple of float
        Objective (or relative gap, for PDHG) recorded along the way.
    backend : str or None
        What ran the iterations of a fast solver: ``"numba"`` (fused CPU kernels) or
        ``"torch"`` (eager tensor operations, any device); ``None`` elsewhere.
    """

    solver: str
    iterations: int
    converged: bool
    time: float
    gap: float | None = None
    objective: float | None = None
    history: tuple[float, ...] = ()
    backend: str | None = None


@dataclass(frozen=True, kw_only=True)
class Diagnostics(Mapping):
    """What an engine reports besides its images: a small typed, frozen record.

    Read its fields as attributes (``post.diagnostics.gaussian``) or as a read-only
    mapping (``post.diagnostics["gaussian"]``, ``"sampler" in post.diagnostics``): the
    keys are the fields that are set (not ``None``) and those of ``extra``. Each engine
    has its own subclass; :meth:`replace` returns a copy with fields changed, and keys
    that are not fields go to ``extra``.

    Attributes
    ----------
    gaussian : bool
        Whether the marginals are Gaussian, so that :meth:`Posterior.interval` may use
        ``mean +- z std`` without draws.
    observed : array or tensor, optional
        The observation, for ArviZ's ``observed_data``.
    parameters : mapping, optional
        The model parameters used and what was estimated
        (:func:`~bayes_restore.restore` fills it).
    extra : mapping
        Anything else (a user's engine, later additions).

    Examples
    --------
    >>> d = MAPDiagnostics(latents={})
    >>> d["gaussian"], "parameters" in d, d.replace(parameters={"sigma": 0.1})["parameters"]
    (False, False, {'sigma': 0.1})
    """

    gaussian: bool = False
    observed: Any = None
    parameters: Mapping[str, Any] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def _fields(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self) if f.name != "extra"]

    def __getitem__(self, key: str) -> Any:
        if key != "extra" and key in self._fields():
            value = getattr(self, key)
            if value is None:
                raise KeyError(key)
            return value
        return self.extra[key]

    def __iter__(self):
        yield from (n for n in self._fields() if getattr(self, n) is not None)
        yield from self.extra

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def replace(self, **changes: Any) -> Diagnostics:
        """A copy with fields changed; keys that are not fields are merged into ``extra``."""
        names = set(self._fields())
        known = {k: v for k, v in changes.items() if k in names}
        other = {k: v for k, v in changes.items() if k not in names}
        if other:
            known["extra"] = {**self.extra, **other}
        return dataclasses.replace(self, **known)


@dataclass(frozen=True, kw_only=True)
class MAPDiagnostics(Diagnostics):
    """:func:`~bayes_restore.infer.map_estimate`: the values of the other latent sites."""

    latents: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class ExactDiagnostics(Diagnostics):
    """:func:`~bayes_restore.infer.exact_posterior`: how the std was computed.

    ``std_method`` is ``"exact"`` (the DCT closed form; ``aliasing`` the operator's
    aliasing factors in that basis, ``(1, 1)`` for a diagonal one, ``None`` for ``A = I``)
    or ``"perturb-optimise"`` (Monte Carlo draws, ``num_draws`` of them, each a PCG solve;
    ``std_mc_error`` the estimated relative Monte Carlo error of the std at the median
    pixel, ``std_rtol`` the target it was drawn to, ``None`` for a fixed number of draws);
    ``sigma`` and ``prior_scale`` are the per-image noise std and prior scale of the
    recognised model (tensors).
    """

    gaussian: bool = True
    std_method: str = "exact"
    sigma: Any = None
    prior_scale: Any = None
    num_draws: int | None = None
    cg_iterations: int | None = None
    cg_residual: float | None = None
    draw_iterations: int | None = None
    draw_residual: float | None = None
    tol: float | None = None
    preconditioner: str | None = None
    aliasing: tuple[int, int] | None = None
    std_mc_error: float | None = None
    std_rtol: float | None = None


@dataclass(frozen=True, kw_only=True)
class VIDiagnostics(Diagnostics):
    """:func:`~bayes_restore.infer.variational`: the ELBO trace and the fitted guide."""

    gaussian: bool = True
    elbo: tuple[float, ...] = ()
    guide: Any = None


@dataclass(frozen=True, kw_only=True)
class MCMCDiagnostics(Diagnostics):
    """:func:`~bayes_restore.infer.mcmc`: the sampler, its settings and what it cost.

    ``step_size``, ``lambda_MY`` (the Moreau-Yosida parameter) and ``lipschitz`` are one
    number, or one per image; ``num_draws_kept`` draws are kept in memory, every
    ``storage_thin``-th. ``scale`` (a summary mapping: ``mean``, ``std``, ``interval``,
    ...) and ``scale_samples`` are set when the prior scale was sampled with the image;
    ``latents`` (NUTS) summarises the other latent sites.

    Convergence (every run, from the draws' per-pixel rank-normalised split R-hat and bulk
    and tail effective sample sizes): ``converged`` (every pixel met ``target_rhat`` and
    ``target_ess``; ``None`` when no targets were set, i.e. a fixed ``num_samples``),
    ``rhat_max``, ``ess_bulk_min``, ``ess_bulk_median``, ``ess_tail_min`` (over the pixels),
    ``std_mc_error`` and ``mean_mc_error`` (the Monte Carlo standard errors of the std and
    mean maps relative to the std, at the median pixel), ``convergence`` (per-pixel maps
    ``rhat``, ``ess_bulk``, ``ess_tail``: where the slow pixels are), ``diagnostic_draws``
    (draws per chain the diagnostics saw, every ``diagnostic_thin``-th; for a fixed budget of
    more than ``2^24`` values, or a run to convergence whose draws of every pixel fit
    neither in ``max_memory / 2`` as float32 nor in ``max_memory`` as 16-bit levels
    (2048 x 2048: every 12th), on every ``diagnostic_stride``-th pixel of every
    ``diagnostic_stride``-th row, without the per-pixel ``mean_mcse``/``std_mcse``: their
    cost grows like the draws), ``diagnostic_values`` (``"int16 levels"`` when every pixel's
    draws were kept as 16-bit levels, whose ranks are the draws': 512 x 512 with two chains
    at the default ``max_memory``; ``quantisation_clipped``: the fraction of values clipped
    to their pixel's range) and ``checks`` (one
    mapping per convergence check: ``draws``, ``seconds``, ``rhat_max``, ``ess_bulk_min``,
    ``ess_tail_min``). ``preconditioner``: the metric of the Langevin steps, ``"none"`` or
    ``"diagonal"`` (diagonal in the operator's basis: DCT frequencies for a reflective
    symmetric blur, pixels for a pixel-diagonal operator).
    """

    sampler: str = ""
    preconditioner: str | None = None
    step_size: Any = None
    lambda_MY: Any = None  # noqa: N815 - the literature's name
    smoothing: Any = None
    lipschitz: Any = None
    stages: int | None = None
    prox_iter: int | None = None
    num_chains: int | None = None
    warmup: int | None = None
    thin: int | None = None
    num_steps: int | None = None
    gradient_evaluations: int | None = None
    prox_evaluations: int | None = None
    num_draws: int | None = None
    num_draws_kept: int | None = None
    storage_thin: int | None = None
    acceptance_rate: Any = None
    divergences: Any = None
    max_plate_nesting: int | None = None
    latents: Mapping[str, Any] | None = None
    wall_time: float | None = None
    sample_stats: Mapping[str, Any] | None = None
    scale: Mapping[str, Any] | None = None
    scale_samples: Any = None
    converged: bool | None = None
    target_ess: float | None = None
    target_rhat: float | None = None
    rhat_max: float | None = None
    ess_bulk_min: float | None = None
    ess_bulk_median: float | None = None
    ess_tail_min: float | None = None
    std_mc_error: float | None = None
    mean_mc_error: float | None = None
    convergence: Mapping[str, Any] | None = None
    diagnostic_draws: int | None = None
    diagnostic_thin: int | None = None
    diagnostic_stride: int | None = None
    checks: tuple[Mapping[str, Any], ...] | None = None


@dataclass(frozen=True, kw_only=True)
class TiledDiagnostics(Diagnostics):
    """:func:`~bayes_restore.restore_tiled`: how the image was tiled."""

    tiles: Mapping[str, Any] = field(default_factory=dict)


def sampler_info(sampler: str, steps: int, seconds: float, converged: bool = True) -> SolverInfo:
    """The :class:`SolverInfo` of a sampler that ran its ``steps`` (all chains).

    ``converged``: for a fixed number of draws, that the chains ran as asked (whether they
    mixed is in the diagnostics' R-hat and effective sample sizes); for a run to
    convergence, that every pixel met the targets.
    """
    return SolverInfo(solver=sampler, iterations=int(steps), converged=bool(converged),
                      time=seconds)


def with_diagnostics(post: Posterior, **changes: Any) -> Posterior:
    """``post`` with its diagnostics record updated (a plain mapping is merged)."""
    d = post.diagnostics
    new = d.replace(**changes) if isinstance(d, Diagnostics) else {**d, **changes}
    return dataclasses.replace(post, diagnostics=new)


@dataclass(frozen=True)
class Posterior:
    """Result of an inference engine: point estimates, uncertainty and diagnostics.

    Fields hold numpy arrays when the input was numpy and tensors when it was a
    tensor. A field an engine does not compute is ``None``.

    Attributes
    ----------
    method : str
        The engine: ``"map"``, ``"exact"``, ``"vi"``, ``"mcmc"`` (``"network"`` for a
        network's predictive distribution, :func:`bayes_restore.learning.predict`).
    map : array or tensor, optional
        The maximum a posteriori image.
    mean : array or tensor, optional
        Posterior mean.
    std : array or tensor, optional
        Per-pixel posterior standard deviation.
    samples : array or tensor, optional
        Draws of shape ``(chain, draw, *image_shape)``.
    info : SolverInfo, optional
        What the engine did: solver or sampler, iterations, convergence, wall time.
    diagnostics : Diagnostics or mapping
        What the engine reports besides the images: a typed record per engine
        (:class:`MAPDiagnostics`, :class:`ExactDiagnostics`, :class:`VIDiagnostics`,
        :class:`MCMCDiagnostics`), readable as attributes or as a mapping.
    mean_mcse, std_mcse : array or tensor, optional
        Per-pixel Monte Carlo standard errors of ``mean`` and ``std`` (samplers): how far
        the maps may be from what infinitely long chains would give.

    Examples
    --------
    >>> import numpy as np
    >>> post = Posterior(method="map", map=np.zeros((2, 2)))
    >>> post.point.shape
    (2, 2)
    """

    method: str
    map: Any = None
    mean: Any = None
    std: Any = None
    samples: Any = None
    info: SolverInfo | None = None
    diagnostics: Mapping[str, Any] = field(default_factory=dict)
    mean_mcse: Any = None
    std_mcse: Any = None

    @property
    def point(self) -> Any:
        """The posterior mean when known, else the MAP."""
        return self.mean if self.mean is not None else self.map

    def interval(self, prob: float = 0.9) -> tuple[Any, Any]:
        """Per-pixel equal-tailed credible interval ``(lower, upper)`` of mass ``prob``.

        In closed form, ``mean -+ z std``, for an engine whose marginals are Gaussian
        (``diagnostics["gaussian"]``: the exact and variational engines, whose ``std`` is
        that of the marginals themselves), else from the samples (MCMC). Quantiles of a
        hundred draws would add their own Monte Carlo error to the interval.

        Raises
        ------
        ValueError
            When ``prob`` is not in (0, 1) or the engine gave no uncertainty (MAP).
        """
        if not 0 < prob < 1:
            raise ValueError(f"prob must be in (0, 1), got {prob!r}")
        alpha = (1 - prob) / 2
        gaussian = (self.std is not None and self.mean is not None
                    and bool(self.diagnostics.get("gaussian")))
        if self.samples is not None and not gaussian:
            s = _as_torch(self.samples)
            flat = s.reshape((-1,) + tuple(s.shape[2:])).to(torch.float64)
            q = torch.tensor([alpha, 1 - alpha], dtype=flat.dtype, device=flat.device)
            lo, hi = torch.quantile(flat, q, dim=0)
            dtype = s.dtype
            return self._like(lo.to(dtype)), self._like(hi.to(dtype))
        if gaussian:
            z = math.sqrt(2) * torch.special.erfinv(torch.tensor(1 - 2 * alpha)).item()
            mean, std = _as_torch(self.mean), _as_torch(self.std)
            return self._like(mean - z * std), self._like(mean + z * std)
        raise ValueError(
            f"method {self.method!r} gives no uncertainty: use restore(..., method='exact', "
            "'vi' or 'mcmc') for per-pixel intervals"
        )

    def coverage(self, truth: Any, prob: float = 0.9) -> float:
        """Fraction of pixels whose ``prob`` credible interval contains ``truth``.

        On data drawn from the model, a calibrated engine gives about ``prob``.
        """
        lo, hi = self.interval(prob)
        lo, hi, t = _as_torch(lo), _as_torch(hi), _as_torch(np.asarray(truth)
                                                         if not torch.is_tensor(truth) else truth)
        t = t.to(device=lo.device, dtype=lo.dtype)
        if t.shape != lo.shape:
            raise ValueError(f"truth has shape {tuple(t.shape)}, expected {tuple(lo.shape)}")
        return float(((t >= lo) & (t <= hi)).double().mean())

    def to_arviz(self, observed: Any = None) -> Any:
        """The draws as ArviZ's own container (``InferenceData`` on ArviZ 0.x).

        Groups: ``posterior`` with variable ``"image"`` of dims
        ``(chain, draw, [batch,] [channel,] y, x)``; ``observed_data`` (``"observed"``) when
        ``observed`` is given or was recorded by the engine; ``sample_stats`` when the
        engine recorded per-draw statistics. When the engine sampled the prior scale
        (``diagnostics["scale_samples"]``), ``posterior`` also has ``"scale"``, dims
        ``(chain, draw)``. ArviZ's ``ess``, ``rhat``, ``hdi`` and
        ``summary`` work on it unchanged. A sampler's Monte Carlo standard errors
        (``mean_mcse``, ``std_mcse``) are the group ``mcse`` (variables ``"mean"`` and
        ``"std"``, the image's dims).

        Raises
        ------
        ValueError
            When the engine kept no draws (MAP, or exact without ``num_samples``).

        Examples
        --------
        >>> import numpy as np, arviz as az
        >>> draws = np.random.default_rng(0).normal(size=(2, 50, 3, 4))
        >>> post = Posterior(method="mcmc", samples=draws)
        >>> idata = post.to_arviz()
        >>> az.ess(idata)["image"].shape
        (3, 4)
        """
        if self.samples is None:
            raise ValueError(
                f"method {self.method!r} kept no draws: nothing to give ArviZ (use "
                "method='mcmc' or 'vi', or 'exact' with num_samples > 0)"
            )
        from ._arviz import to_inference_data

        if observed is None:
            observed = self.diagnostics.get("observed")
        stats = self.diagnostics.get("sample_stats")
        scale = self.diagnostics.get("scale_samples")
        to_np = lambda v: _as_torch(v).detach().cpu().numpy()  # noqa: E731
        return to_inference_data(
            to_np(self.samples),
            observed=None if observed is None else to_np(observed),
            sample_stats=None if stats is None else {k: to_np(v) for k, v in stats.items()},
            attrs={"method": self.method, "engine": "bayes_restore"},
            extra=None if scale is None else {"scale": to_np(scale)},
            mcse=None if self.mean_mcse is None else {
                "mean": to_np(self.mean_mcse), "std": to_np(self.std_mcse)},
        )

    def with_fields(self, **changes: Any) -> Posterior:
        """A copy with some fields replaced."""
        return dataclasses.replace(self, **changes)

    def _like(self, t: torch.Tensor) -> Any:
        ref = next(
            (v for v in (self.map, self.mean, self.std, self.samples) if v is not None), None
        )
        return t.cpu().numpy() if isinstance(ref, np.ndarray) else t

    def as_numpy(self) -> Posterior:
        """A copy whose image fields are numpy arrays."""
        return self.map_images(lambda t: t.detach().cpu().numpy())

    def map_images(self, fn: Callable[[torch.Tensor], Any]) -> Posterior:
        """A copy with ``fn`` applied to each image field (``map``, ``mean``, ``std``, ...).

        The image fields: ``map``, ``mean``, ``std``, ``samples``, ``mean_mcse``, ``std_mcse``.

        ``fn`` gets a tensor (numpy fields are viewed as tensors) and works on the
        trailing image dimensions: ``samples`` has two more leading ones.

        Examples
        --------
        >>> import numpy as np
        >>> post = Posterior(method="map", map=np.ones((2, 2)))
        >>> float(post.map_images(lambda t: 2 * t).map.sum())
        8.0
        """
        names = ("map", "mean", "std", "samples", "mean_mcse", "std_mcse")
        return dataclasses.replace(
            self, **{n: fn(_as_torch(getattr(self, n)))
                     for n in names if getattr(self, n) is not None}
        )

    def __repr__(self) -> str:
        parts = [f"method={self.method!r}"]
        for name in ("map", "mean", "std", "samples"):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{name}: {type(value).__name__}{tuple(value.shape)}")
        if self.info is not None:
            i = self.info
            gap = "" if i.gap is None else f", gap={i.gap:.2e}"
            parts.append(
                f"solver={i.solver!r} ({i.iterations} it{gap}, {i.time:.3g} s, "
                f"{'converged' if i.converged else 'NOT converged'})"
            )
        return f"Posterior({', '.join(parts)})"


def _as_torch(value: Any) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(value)) if isinstance(value, np.ndarray) else value
