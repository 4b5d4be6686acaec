"""Full processor benchmark against transformers (``make bench``).

Writes ``benches/results/processors.{md,json,png}`` and prints the Markdown table. Extra arguments are
passed on to ``python -m fastlogits.bench`` (e.g. ``--only top_p,chain``); see ``benches/README.md``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from fastlogits.bench import main

RESULTS = Path(__file__).resolve().parent / "results"

if __name__ == "__main__":
    sys.exit(main(["--out", str(RESULTS), *sys.argv[1:]]))
