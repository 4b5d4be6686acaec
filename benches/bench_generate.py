"""End-to-end generation benchmark: model.generate, fastlogits.generate, a bare loop and CTranslate2 (when
installed), float32 and bfloat16, against the weight-streaming floor (``make bench``).

Writes ``benches/results/generate.{md,json,png}``. Extra arguments are passed on to the harness
(``benches/harness/generate.py``): ``--quick`` / ``--full``, ``--reps N``, ``--no-rss``; see
``benches/README.md``.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness.generate import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["--out", str(HERE / "results"), *sys.argv[1:]]))
