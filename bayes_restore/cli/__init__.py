"""The ``bayes-restore`` command line (``python -m bayes_restore``).

Exit codes: 0 success; 2 a problem with the command's input (a bad option or value, an
unreadable or missing file, an output that exists...), told in one line on stderr; 1 an
internal error, shown as a traceback (please report it); 128 + N when stopped by signal N
(130 for SIGINT, 143 for SIGTERM). Outputs are written all or none: every file goes to a
hidden temporary file beside its target first and they are renamed together at the end; an
error or a SIGINT/SIGTERM/SIGHUP removes the temporary files and leaves no partial set.

Layout: ``options.py`` (the parser and its option types), ``checks.py`` (output names,
option combinations, reading the inputs, the operator), ``restore_command.py`` (the
restore subcommands and the writing of their outputs), ``camera_demo.py`` (``demo``),
``entry.py`` (:func:`main`, the signal handling and the exit codes).
"""

from .camera_demo import demo
from .checks import UserError as UserError
from .entry import main
from .options import PRIORS as PRIORS
from .options import PROG as PROG
from .options import build_parser as build_parser

__all__ = ["main", "demo"]
