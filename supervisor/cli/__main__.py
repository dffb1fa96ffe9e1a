"""``python -m supervisor.cli``: the same as the ``pipevisor`` console script."""

import sys

from .parser import main

sys.exit(main())
