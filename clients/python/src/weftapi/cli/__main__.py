"""`python -m weftapi.cli`: the `weft` command."""

import sys

from weftapi.cli import main

sys.exit(main())
