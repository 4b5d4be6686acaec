"""A progress bar on stderr: items done / total, tokens per second, time left.

tqdm draws it when installed (``fastlogits[eval]``), else a plain line redrawn in place. Nothing is shown
when stderr is not a terminal (logs, CI) or with ``quiet``.
"""

from __future__ import annotations

import sys
import time
from typing import Any

__all__ = ["Progress"]


class Progress:
    def __init__(
        self, total: int, *, unit: str = "rows", initial: int = 0, quiet: bool = False, desc: str = ""
    ):
        self.total, self.done, self.unit, self.desc = total, initial, unit, desc
        self.tokens = 0
        self.t0 = time.perf_counter()
        self.enabled = not quiet and sys.stderr.isatty()
        self._bar: Any = None
        if self.enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self._bar = tqdm(
                    total=total, initial=initial, unit=f" {unit}", desc=desc or None, file=sys.stderr
                )
            else:
                self._draw()

    def update(self, n: int, tokens: int = 0) -> None:
        self.done += n
        self.tokens += tokens
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(n)
            if self.tokens:
                self._bar.set_postfix_str(f"{self.tokens_per_second:.1f} tok/s", refresh=False)
        else:
            self._draw()

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / max(time.perf_counter() - self.t0, 1e-9)

    def _draw(self) -> None:
        width = 30
        frac = self.done / self.total if self.total else 1.0
        filled = round(width * frac)
        elapsed = time.perf_counter() - self.t0
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        tok = f", {self.tokens_per_second:.1f} tok/s" if self.tokens else ""
        eta_s = f"{eta:5.0f}s" if eta == eta else "    ?"
        print(
            f"\r{self.desc + ' ' if self.desc else ''}[{'#' * filled}{'.' * (width - filled)}] "
            f"{self.done}/{self.total} {self.unit}{tok}, eta {eta_s}",
            end="",
            file=sys.stderr,
            flush=True,
        )

    def close(self) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.close()
        else:
            print(file=sys.stderr, flush=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False
