"""`python -m gateway` runs the `driftgate` command line."""

import sys

from gateway.cli import main

sys.exit(main())
