"""``python -m reelops.cli``: the ``reelops`` command."""

import sys

from reelops.cli import main

sys.exit(main())
