"""The worker threads shared by the package's fused numba kernels, and how tasks run on them."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

__all__ = ["jit_disabled", "pool", "run_all", "torch_threads"]

_POOL: ThreadPoolExecutor | None = None
_POOL_PID = 0
_POOL_LOCK = threading.Lock()


def _after_fork_in_child() -> None:
    global _POOL, _POOL_LOCK
    _POOL, _POOL_LOCK = None, threading.Lock()  # the parent's threads and lock stay behind


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)


def jit_disabled() -> bool:
    """Whether numba runs the kernels as plain Python (``NUMBA_DISABLE_JIT=1``)."""
    import numba

    return bool(numba.config.DISABLE_JIT)


def pool() -> ThreadPoolExecutor:
    """The worker threads (made on first use, and again in a forked child: a pool's
    threads do not survive ``fork``)."""
    global _POOL, _POOL_PID
    with _POOL_LOCK:
        if _POOL is None or _POOL_PID != os.getpid():
            _POOL = ThreadPoolExecutor(max_workers=os.cpu_count() or 1,
                                       thread_name_prefix="bayes_restore-numba")
            _POOL_PID = os.getpid()
        return _POOL


def run_all(tasks: Sequence[tuple[Callable[..., Any], tuple]]) -> None:
    """Run ``fn(*args)`` for every ``(fn, args)`` task, the first on this thread, the others
    on :func:`pool`, and wait for all (also when one fails: no thread may still be writing
    into the arrays when this returns); the first failure is raised.

    Examples
    --------
    >>> out = [0, 0]
    >>> run_all([(out.__setitem__, (0, 1)), (out.__setitem__, (1, 2))])
    >>> out
    [1, 2]
    """
    futures = [pool().submit(fn, *args) for fn, args in tasks[1:]]
    fn, args = tasks[0]
    try:
        fn(*args)
    finally:
        for f in futures:
            f.exception()  # waits
    for f in futures:
        f.result()


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Torch's intra-op threads set to ``n`` for the block, then restored (``None``: left
    alone).

    A loop that alternates the pool's kernels with small torch operations runs torch on one
    thread: torch's idle OpenMP threads spin-wait after each operation and take the cores
    from the kernels' threads (a Langevin chain at 512 x 512 on two threads: 28 against 34
    ms a step).

    Examples
    --------
    >>> import torch
    >>> before = torch.get_num_threads()
    >>> with torch_threads(1):
    ...     torch.get_num_threads()
    1
    >>> torch.get_num_threads() == before
    True
    """
    if n is None:
        yield
        return
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"num_threads must be a positive integer, got {n!r}")
    import torch

    old = torch.get_num_threads()
    if n != old:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n != old:
            torch.set_num_threads(old)
