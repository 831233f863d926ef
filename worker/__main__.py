"""``python -m worker``: the ``eurovoc-worker`` console script."""

import sys

from worker.commands.cli import main

sys.exit(main())
