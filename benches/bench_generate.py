"""End-to-end generation benchmark: fastlogits.generate against model.generate (``make bench``).

Writes ``benches/results/generate.{md,json,png}``. Extra arguments are passed on to the harness (e.g.
``--quick``); see ``benches/README.md``.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness.generate import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["--out", str(HERE / "results"), *sys.argv[1:]]))
