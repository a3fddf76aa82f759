"""`python -m app.cli`: the same as the `imgsearch` console script."""

import sys

from app.cli import main

sys.exit(main())
