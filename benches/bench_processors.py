"""Full processor benchmark against transformers (``make bench``).

Writes ``benches/results/processors.{md,json,png}`` and prints the Markdown table. Extra arguments are
passed on to the harness (e.g. ``--only top_p,chain`` or ``--quick``); see ``benches/README.md``.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness.processors import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["--out", str(HERE / "results"), *sys.argv[1:]]))
