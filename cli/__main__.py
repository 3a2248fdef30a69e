"""``python -m steadyrank.cli``."""

import sys

from steadyrank.cli.main import main

sys.exit(main())
