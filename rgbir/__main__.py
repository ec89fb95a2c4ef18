"""``python -m rgbir`` = the ``rgbir`` command."""

import sys

from .cli import main

sys.exit(main())
