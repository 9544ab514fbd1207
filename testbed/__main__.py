"""``python -m testbed``: the same as the ``testbed`` console script."""

import sys

from testbed.cli import main

sys.exit(main())
