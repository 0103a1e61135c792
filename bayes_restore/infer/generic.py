"""Generic MAP for any Pyro model: optimise the log joint of all latent sites (the reference)."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from typing import Any

import pyro.poutine as poutine
import torch
from pyro.infer.autoguide.initialization import InitMessenger, init_to_feasible, init_to_median
from pyro.poutine.util import site_is_subsample
from torch.distributions import biject_to
from tqdm.auto import tqdm

from bayes_restore._validation import check_seed
from bayes_restore.exceptions import ConvergenceWarning
from bayes_restore.models import X_SITE
from bayes_restore.posterior import SolverInfo

__all__ = [
    "generic_map",
    "initial_trace",
    "make_generator",
    "check_random_source",
    "draw_seed",
    "seeded_global_rng",
    "data_device",
    "DEFAULT_SEED",
    "model_arguments",
]


def model_arguments(kwargs: dict, model_kwargs: Any) -> dict:
    """The model's keyword arguments: an engine's ``**kwargs`` merged with ``model_kwargs``.

    ``model_kwargs`` keeps a model's own arguments apart from the engine's options: a model
    with its own ``tol`` or ``seed`` gets them through it. A name given both ways is an
    error.

    Examples
    --------
    >>> model_arguments({"sigma": 0.1}, {"tol": 3})
    {'sigma': 0.1, 'tol': 3}
    """
    if model_kwargs is None:
        return dict(kwargs)
    if not isinstance(model_kwargs, Mapping):
        raise TypeError(f"model_kwargs must be a mapping, got {type(model_kwargs).__name__}")
    twice = sorted(set(kwargs) & set(model_kwargs))
    if twice:
        raise TypeError(f"model argument(s) {twice} given both as keywords and in model_kwargs")
    return {**kwargs, **model_kwargs}

_LBFGS_INNER = 5


# --- randomness: one seed per run, no global side effects -----------------------------------


class _DefaultSeed(int):
    """The engines' default ``seed=0``: the integer 0, told apart from an explicit ``seed=0``.

    ``generator=`` with the default seed is fine; with a seed the caller gave, even 0, it is
    an error (two sources of randomness).
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "0"

    def __reduce__(self):
        return (_default_seed, ())


def _default_seed() -> _DefaultSeed:
    return DEFAULT_SEED


#: default ``seed`` of every engine (an ``int`` equal to 0)
DEFAULT_SEED = _DefaultSeed(0)


def make_generator(
    seed: Any, generator: torch.Generator | None, device: torch.device | str | None
) -> torch.Generator:
    """The run's source of randomness: ``generator`` itself, or a new one seeded by ``seed``.

    The new generator lives on ``device`` (the data's: CUDA draws need a CUDA generator);
    ``seed=None`` seeds it from the operating system's entropy. ``seed`` is checked
    (``TypeError``/``ValueError`` naming it); giving ``generator`` with a ``seed`` other than
    the default (or ``None``) is a ``ValueError``.
    """
    checked = check_random_source(seed, generator)
    if generator is not None:
        return generator
    gen = torch.Generator(device=torch.device("cpu" if device is None else device))
    if checked is None:
        gen.seed()
    else:
        gen.manual_seed(checked)
    return gen


def check_random_source(seed: Any, generator: Any) -> int | None:
    """``seed`` checked (an int >= 0 or None), and not given together with ``generator``."""
    checked = check_seed(seed)
    if generator is not None:
        if seed is not None and seed is not DEFAULT_SEED:
            raise ValueError(
                f"give generator= or seed=, not both (got seed={checked} and a generator)"
            )
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    return checked


def draw_seed(gen: torch.Generator) -> int:
    """An integer seed drawn from ``gen`` (for a sub-stream: a chain, Pyro's global RNG)."""
    return int(torch.randint(0, 2**62, (1,), generator=gen, device=gen.device))


@contextmanager
def seeded_global_rng(seed: int, device: torch.device | str | None = None) -> Iterator[None]:
    """Run a block with torch's global RNG seeded by ``seed``, restored afterwards.

    For code that draws from the global RNG (Pyro's SVI, NUTS, ``init_to_median``): the
    CPU generator and, for a CUDA (or other accelerator) ``device``, that device's default
    generator are saved, seeded, and restored on exit, so the caller's global state is
    untouched and other devices are neither seeded nor initialised.
    """
    device = torch.device("cpu" if device is None else device)
    with ExitStack() as stack:
        if device.type == "cpu":
            stack.enter_context(torch.random.fork_rng(devices=[]))
            torch.default_generator.manual_seed(seed)
        else:
            module = torch.get_device_module(device.type)
            index = device.index if device.index is not None else module.current_device()
            stack.enter_context(
                torch.random.fork_rng(devices=[index], device_type=device.type)
            )
            torch.default_generator.manual_seed(seed)
            if device.type == "cuda":
                with torch.cuda.device(index):
                    torch.cuda.manual_seed(seed)  # this device only, not manual_seed_all
            else:
                module.manual_seed(seed)
        yield


def data_device(args: tuple, kwargs: dict) -> torch.device:
    """The device of the first tensor among the model's arguments (the data's), else CPU."""
    for value in (*args, *kwargs.values()):
        if torch.is_tensor(value):
            return value.device
    return torch.device("cpu")


# --- tracing and the generic MAP ------------------------------------------------------------


def initial_trace(
    model: Callable,
    args: tuple,
    kwargs: dict,
    init: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> poutine.Trace:
    """Trace ``model`` once without calling ``sample()`` on the image site.

    The image ``"x"`` starts at ``init`` if given, else at ``A^T y`` (for a
    :class:`~bayes_restore.likelihoods.GaussianLikelihood`), else at an observed
    value of the same shape, else at zero. Other latent sites start at their
    prior median (or a feasible point), estimated from prior draws: those come from
    ``generator`` (a fixed seed when ``None``) through a seeded and restored global RNG
    (:func:`seeded_global_rng`), so the trace is reproducible and leaves the caller's
    global state alone. A model with no other latent site draws nothing.
    """
    fallback = init_to_median(fallback=init_to_feasible)

    with ExitStack() as stack:
        seeded = []

        def init_fn(site):
            if site["name"] == X_SITE:
                shape = site["fn"].shape()
                if init is not None:
                    return torch.as_tensor(init).expand(shape).clone()
                return torch.zeros(shape)
            if not seeded:  # the first random draw of the trace: seed the global RNG now
                gen = torch.Generator().manual_seed(0) if generator is None else generator
                device = gen.device if generator is not None else data_device(args, kwargs)
                stack.enter_context(seeded_global_rng(draw_seed(gen), device))
                seeded.append(True)
            return fallback(site)

        with poutine.block():
            trace = poutine.trace(InitMessenger(init_fn)(model)).get_trace(*args, **kwargs)
    if X_SITE not in trace.nodes or trace.nodes[X_SITE]["type"] != "sample":
        raise ValueError(f"the model has no sample site named {X_SITE!r} (the latent image)")
    if trace.nodes[X_SITE]["is_observed"]:
        raise ValueError(f"the image site {X_SITE!r} must be latent, not observed")
    if init is None:
        x_site = trace.nodes[X_SITE]
        x0 = _data_init(trace, x_site["value"].shape)
        if x0 is not None:
            x_site["value"] = x0
    return trace


def _data_init(trace: poutine.Trace, shape: torch.Size) -> torch.Tensor | None:
    for site in trace.nodes.values():
        if site["type"] != "sample" or not site["is_observed"]:
            continue
        value, fn = site["value"], site["fn"]
        operator = getattr(fn, "operator", None)
        if operator is not None:
            try:
                x0 = operator.adjoint(value)
                return x0.expand(shape).clone().detach()
            except RuntimeError:
                pass
        if torch.is_tensor(value) and value.is_floating_point():
            try:
                return value.expand(shape).clone().detach()
            except RuntimeError:
                continue
    return None


def generic_map(
    model: Callable,
    args: tuple = (),
    kwargs: dict | None = None,
    *,
    init: torch.Tensor | None = None,
    optimizer: str = "lbfgs",
    tol: float = 1e-9,
    max_iter: int = 2000,
    progress: bool = False,
    lr: float | None = None,
    seed: int | None = DEFAULT_SEED,
) -> tuple[dict[str, torch.Tensor], SolverInfo]:
    """Maximise ``log p(latents, observations)`` of a Pyro model by gradient methods.

    Every latent site is optimised jointly in unconstrained space (as Pyro's
    ``AutoDelta`` does: the mode of the density in the constrained space, no
    Jacobian). The image site ``"x"`` starts at the data.

    Parameters
    ----------
    model : callable
        A Pyro model with a latent site ``"x"``.
    args, kwargs
        Passed to the model.
    init : torch.Tensor, optional
        Starting image.
    optimizer : {"lbfgs", "adam"}
        L-BFGS with a strong-Wolfe line search (default), or Adam with a learning
        rate halved whenever the objective stops decreasing.
    tol : float, default 1e-9
        Stop when, for 5 checks in a row (every iteration for Adam, every 5 for
        L-BFGS), the decrease of the objective is at most ``tol`` times the decrease
        achieved since the start.
    max_iter : int, default 2000
        Iteration cap (a :class:`ConvergenceWarning` when hit).
    progress : bool, default False
        Show a progress bar.
    lr : float, optional
        Learning rate (L-BFGS: 1; Adam: 1e-2 by default).
    seed : int or None, default 0
        Seeds the only random step, the starting point of the latent sites other than the
        image (their prior median, estimated from prior draws): the same call gives the
        same result every time. ``None``: fresh entropy from the operating system. The
        caller's global RNG state is left untouched.

    Returns
    -------
    values : dict of str to torch.Tensor
        The MAP value of every latent site.
    info : SolverInfo
    """
    kwargs = {} if kwargs is None else kwargs
    if optimizer not in ("lbfgs", "adam"):
        raise ValueError(f"optimizer must be 'lbfgs' or 'adam', got {optimizer!r}")
    gen = make_generator(seed, None, data_device(args, kwargs))
    start = time.perf_counter()
    trace = initial_trace(model, args, kwargs, init, generator=gen)
    latent = [
        name
        for name, site in trace.nodes.items()
        if site["type"] == "sample" and not site["is_observed"] and not site_is_subsample(site)
    ]
    dtype = trace.nodes[X_SITE]["value"].dtype
    transforms = {name: biject_to(trace.nodes[name]["fn"].support) for name in latent}
    params = {
        name: transforms[name].inv(trace.nodes[name]["value"].detach()).clone().requires_grad_()
        for name in latent
    }

    def constrained() -> dict[str, torch.Tensor]:
        return {name: transforms[name](u) for name, u in params.items()}

    def objective() -> torch.Tensor:
        conditioned = poutine.condition(model, data=constrained())
        with poutine.block():
            tr = poutine.trace(conditioned).get_trace(*args, **kwargs)
        return -tr.log_prob_sum()

    if optimizer == "lbfgs":
        opt: torch.optim.Optimizer = torch.optim.LBFGS(
            list(params.values()),
            lr=1.0 if lr is None else lr,
            max_iter=_LBFGS_INNER,  # one iteration per step() stalls in torch's LBFGS
            history_size=20,
            line_search_fn="strong_wolfe",
            tolerance_grad=0.0,
            tolerance_change=0.0,
        )
    else:
        opt = torch.optim.Adam(list(params.values()), lr=1e-2 if lr is None else lr)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = objective()
        loss.backward()
        return loss

    with torch.no_grad():
        f0 = float(objective())
    f_prev, best = f0, f0
    history = [f0]
    quiet_steps, stalls, it, converged = 0, 0, 0, False
    bar = tqdm(total=max_iter, desc=f"MAP ({optimizer})", disable=not progress, leave=False)
    try:
        while it < max_iter:
            loss = opt.step(closure)
            if optimizer == "lbfgs":
                done = opt.state[opt.param_groups[0]["params"][0]]["n_iter"]
                bar.update(done - it)
                it = done
            else:
                it += 1
                bar.update(1)
            with torch.no_grad():
                f = float(objective()) if optimizer == "lbfgs" else float(loss)
            if not math.isfinite(f):
                raise FloatingPointError(
                    f"the log joint became {f} at iteration {it}; try optimizer='adam' or a "
                    "different init"
                )
            history.append(f)
            bar.set_postfix(objective=f"{f:.6g}", refresh=False)
            decrease = f_prev - f
            progress_made = max(f0 - min(f, best), 1e-300)
            if abs(decrease) <= tol * progress_made:
                quiet_steps += 1
            else:
                quiet_steps = 0
            if optimizer == "adam" and f >= best:
                stalls += 1
                if stalls >= 10:
                    for group in opt.param_groups:
                        group["lr"] *= 0.5
                    stalls = 0
            best = min(best, f)
            f_prev = f
            if quiet_steps >= 5:
                converged = True
                break
    finally:
        bar.close()
    if not converged:
        warnings.warn(
            f"generic MAP ({optimizer}) stopped at max_iter={max_iter} before the objective "
            f"settled (tol={tol:.1e})",
            ConvergenceWarning,
            stacklevel=2,
        )
    with torch.no_grad():
        values = {name: v.detach().to(dtype) if name == X_SITE else v.detach()
                  for name, v in constrained().items()}
    info = SolverInfo(
        solver=optimizer,
        iterations=it,
        converged=converged,
        time=time.perf_counter() - start,
        objective=history[-1],
        history=tuple(history),
    )
    return values, info


def log_joint(model: Callable, values: dict[str, Any], *args: Any, **kwargs: Any) -> torch.Tensor:
    """``log p(values, observations)`` of a Pyro model (sum over all sites)."""
    with poutine.block():
        tr = poutine.trace(poutine.condition(model, data=values)).get_trace(*args, **kwargs)
    return tr.log_prob_sum()

