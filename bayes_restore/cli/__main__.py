"""``python -m bayes_restore.cli``: the command line."""

import sys

from bayes_restore.cli import main

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
