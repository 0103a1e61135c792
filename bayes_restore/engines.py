"""The engine registry: which function runs ``restore(..., method=name)`` and its options."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bayes_restore.posterior import Posterior

__all__ = ["Engine", "ENGINES", "METHODS", "register_engine", "check_method",
           "engine_function", "engine_options", "check_engine_kwargs"]


@dataclass(frozen=True)
class Engine:
    """An inference engine as :func:`~bayes_restore.restore`, the tiles, Dask and the CLI see it.

    Attributes
    ----------
    run : str or callable
        The engine, ``engine(model, y, *, prior, sigma, operator, seed, **options) ->
        Posterior``; a ``"module:function"`` string is imported at the first call (so that
        ``import bayes_restore`` stays light).
    values_per_pixel : int
        Working memory per pixel, in values of the image's dtype (tiles are batched by it).
    gives_std : bool
        Whether the engine gives a per-pixel std and a posterior mean (``"map"`` does not).
    gives_map : bool
        Whether the engine gives the MAP image (``"mcmc"`` does not: a sampler's image is
        its posterior mean).
    """

    run: str | Callable[..., Posterior]
    values_per_pixel: int
    gives_std: bool = True
    gives_map: bool = True

    def function(self) -> Callable[..., Posterior]:
        """The engine's function (imported on first use)."""
        if callable(self.run):
            return self.run
        module, name = self.run.split(":")
        return getattr(importlib.import_module(module), name)


#: the engines by ``method`` name; :func:`register_engine` adds one
ENGINES: dict[str, Engine] = {
    "map": Engine("bayes_restore.infer:map_estimate", 16, gives_std=False),
    "exact": Engine("bayes_restore.infer:exact_posterior", 12),
    "vi": Engine("bayes_restore.infer:variational", 48),
    "mcmc": Engine("bayes_restore.infer:mcmc", 24, gives_map=False),
}

#: the built-in values of ``restore(..., method=...)`` (see :data:`ENGINES` for all)
METHODS = tuple(ENGINES)


def register_engine(name: str, engine: Engine) -> None:
    """Make ``method=name`` run ``engine`` in :func:`~bayes_restore.restore`, the tiles, Dask
    and the CLI.

    Examples
    --------
    >>> from bayes_restore.infer import map_estimate
    >>> register_engine("my-map", Engine(map_estimate, 16, gives_std=False))
    >>> check_method("my-map")
    'my-map'
    >>> _ = ENGINES.pop("my-map")  # undo the example
    """
    if not isinstance(name, str) or not name or name in ENGINES:
        raise ValueError(f"name must be a new engine name, got {name!r}")
    if not isinstance(engine, Engine):
        raise TypeError(f"engine must be an Engine, got {type(engine).__name__}")
    ENGINES[name] = engine


def check_method(method: Any) -> str:
    """``method`` if it names an engine, else a ``ValueError`` listing them."""
    if not isinstance(method, str) or method not in ENGINES:
        raise ValueError(f"method must be one of {tuple(ENGINES)}, got {method!r}")
    return method


def engine_function(method: str) -> Callable[..., Posterior]:
    """The function that runs ``method`` (imported on first use)."""
    return ENGINES[method].function()


#: what restore() passes to the engine itself: not the user's to give twice
_RESERVED = ("prior", "sigma", "operator", "model", "seed", "model_kwargs")


def engine_options(method: str) -> tuple[str, ...]:
    """The keywords the engine of ``method`` takes (what ``restore(**engine_kwargs)`` accepts).

    Examples
    --------
    >>> "num_samples" in engine_options("mcmc")
    True
    """
    params = inspect.signature(engine_function(method)).parameters.values()
    return tuple(p.name for p in params
                 if p.kind == p.KEYWORD_ONLY and p.name not in _RESERVED)


def check_engine_kwargs(method: str, engine_kwargs: dict) -> None:
    """Raise ``TypeError`` for a keyword that the engine of ``method`` does not take."""
    allowed = engine_options(method)
    for key in engine_kwargs:
        if key in ("prior", "sigma", "operator", "seed"):
            raise TypeError(f"restore() got {key}= twice (as its own argument and the engine's)")
        if key not in allowed:
            raise TypeError(
                f"restore() got an unexpected keyword argument {key!r}: method={method!r} "
                f"takes {', '.join(allowed)}"
            )

