"""``python -m bayes_restore``: the command line."""

import sys

from bayes_restore.cli import main

sys.exit(main())
