"""`python -m fastlogits ...` is the `fastlogits` command."""

import sys

from .cli import main

sys.exit(main())
