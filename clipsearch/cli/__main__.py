"""`python -m clipsearch.cli ...` runs the `clipsearch` command."""

import sys

from clipsearch.cli.main import main

sys.exit(main())
