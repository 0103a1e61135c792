"""``main``: parse, run a subcommand, and turn its failures and signals into exit codes."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence

from .camera_demo import demo_command
from .checks import UserError
from .options import PROG, build_parser, check_parsed
from .restore_command import restore_command

__all__ = ["main"]


class _Interrupted(BaseException):
    """SIGINT, SIGTERM or SIGHUP arrived: unwind (removing temporary files) and exit."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _interrupts() -> Iterator[dict]:
    """SIGINT, SIGTERM and SIGHUP raise :class:`_Interrupted` (once; later ones wait) so
    that temporary files are removed on the way out; the old handlers come back at the end."""
    from bayes_restore.io import deferrable

    state: dict = {"signum": None, "armed": True}

    def handler(signum, frame):
        if state["signum"] is None:
            state["signum"] = signum
            if state["armed"]:
                raise _Interrupted(signum)

    names = ("SIGINT", "SIGTERM", "SIGHUP")
    old = {}
    if threading.current_thread() is threading.main_thread():
        for name in names:
            if hasattr(signal, name):
                num = getattr(signal, name)
                old[num] = signal.signal(num, deferrable(handler))
    try:
        yield state
    finally:
        state["armed"] = False
        for num, previous in old.items():
            signal.signal(num, previous)


@contextlib.contextmanager
def _summarised_warnings() -> Iterator[None]:
    """Collect warnings and print one line per kind on stderr at the end."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=PendingDeprecationWarning)
        # as in Python's default filters: an interrupt in the middle of a library's import
        # leaves its file unclosed, which says nothing about the restoration
        warnings.filterwarnings("ignore", category=ResourceWarning)
        try:
            yield
        finally:
            kinds: dict[str, list] = {}
            for w in caught:
                kinds.setdefault(w.category.__name__, []).append(w)
            for name, items in kinds.items():
                first = str(items[0].message).splitlines()[0] if str(items[0].message) else ""
                print(f"warning: {len(items)} {name}(s): {first}", file=sys.stderr)


def _interrupt_in(err: BaseException) -> _Interrupted | None:
    """The :class:`_Interrupted` that ``err`` is or comes from (its causes and contexts)."""
    seen: set[int] = set()
    todo = [err]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, _Interrupted):
            return e
        todo.extend([e.__cause__, e.__context__, *getattr(e, "exceptions", ())])
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``bayes-restore``.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit code: 0 done, 2 a user error (one line on stderr), 128 + N stopped by
        signal N. Internal errors are raised (a traceback, exit code 1).
    """
    from bayes_restore.io import remove_temps

    with _interrupts() as state:
        try:
            parser = build_parser()
            try:
                args = parser.parse_args(argv)
                check_parsed(parser, args)
            except SystemExit as done:  # --help, or an argparse error (already printed)
                return done.code if isinstance(done.code, int) else 2
            with _summarised_warnings():
                if args.command == "demo":
                    return demo_command(args)
                return restore_command(args)
        except UserError as err:
            message = str(err).splitlines()[0] if str(err) else "invalid input"
            print(f"{PROG}: error: {message}", file=sys.stderr)
            return 2
        except BaseException as err:
            # the interrupt itself, or an error it caused (Python wraps exceptions raised in
            # some places, e.g. a class being created by an import, in a RuntimeError)
            stop = _interrupt_in(err)
            if stop is None:
                raise
            state["armed"] = False
            remove_temps()
            name = signal.Signals(stop.signum).name
            print(f"{PROG}: interrupted by {name}", file=sys.stderr)
            return 128 + stop.signum
        finally:
            state["armed"] = False
            remove_temps()
