"""`python -m userexport_cli`: the same as the `userexport` console script."""

import sys

from .main import main

sys.exit(main())
