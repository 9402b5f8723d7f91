"""`python -m bench` (what `make bench` runs); `python -m bench -h` lists the options."""

import sys

from bench.runner import main

sys.exit(main())
