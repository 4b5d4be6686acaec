"""Choosing tokens from scores: seeded sampling, greedy, log-softmax, top-n log-probabilities.

Scores may be NumPy arrays or torch tensors (any float dtype, any device; non-float32 or non-CPU
input is copied to float32 on the host). Results come back as NumPy arrays, or as torch tensors on the
input's device when the input is a tensor.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

from . import _native
from ._arrays import as_scores, to_like
from ._validate import check_seed, check_seeds, check_step

__all__ = ["sample", "greedy", "log_softmax", "top_logprobs", "Sampler", "stream_key"]


def stream_key(seed: int, *names: Any) -> int:
    """The 64-bit key of the random stream named ``(seed, *names)``: the first 8 bytes (little-endian) of
    the BLAKE2b hash of ``json.dumps([seed, *names])`` (compact, UTF-8), so the same on every machine and
    Python version. ``names`` are JSON values (an example's id, a sequence number...): ``1`` and ``"1"``
    name different streams. Give such keys as per-row ``seed`` to :func:`sample` (and to
    ``fastlogits.generate``) and each row draws the same tokens wherever it sits in a batch."""
    seed = check_seed(seed)
    try:
        text = json.dumps([seed, *names], ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise _native.InvalidArgumentError(f"stream names must be JSON values: {e}") from None
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


def _read(scores: Any) -> np.ndarray:
    work, _ = as_scores(scores)
    return work


def sample(scores: Any, *, seed: Any = None, step: int = 0) -> Any:
    """One token id per row, drawn from ``softmax(scores[row])``.

    The draw for row ``r`` is a pure function of ``(seed, r, step)`` (Philox4x32-10 counter-based
    streams), so the result does not depend on the number of threads; pass a new ``step`` at every
    decoding step (or use :class:`Sampler`). ``seed=None`` draws a fresh seed. ``seed`` may also be one key
    per row (a sequence or uint64 array of ints in [0, 2**64), e.g. from :func:`stream_key`): row ``r`` then
    draws from ``(seed[r], step)`` alone, whatever its position in the batch. ``-inf`` scores have
    probability 0; a row that is all ``-inf``, or holds NaN / ``+inf``, raises ``InvalidArgumentError``.
    """
    seed, step = check_seeds(seed), check_step(step)
    out = _native.sample(scores, seed, step)  # None: not a C-contiguous float32 array, convert
    if out is None:
        return to_like(_native.sample(_read(scores), seed, step), scores)
    return out


def greedy(scores: Any) -> Any:
    """Index of the first maximum of each row (``torch.argmax``). An all ``-inf`` row raises
    ``InvalidArgumentError`` (torch would return 0)."""
    return to_like(_native.greedy(_read(scores)), scores)


def log_softmax(scores: Any) -> Any:
    """``log_softmax`` of each row as a new float32 array / tensor."""
    return to_like(_native.log_softmax(_read(scores)), scores)


def top_logprobs(scores: Any, n: int) -> tuple[Any, Any]:
    """The ``n`` most likely tokens of each row, most likely first (ties: lower id first):
    ``(logprobs (B, n) float32, ids (B, n) int64)``. Rows with fewer than ``n`` finite scores are padded
    with id ``-1`` and ``-inf``."""
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool):
        raise _native.InvalidArgumentError(f"`n` has to be a positive int, but is {n!r}")
    values, ids = _native.top_logprobs(_read(scores), int(n))  # the range [1, V]: checked natively
    return to_like(values, scores), to_like(ids, scores)


class Sampler:
    """Stateful convenience over :func:`sample`: call it once per decoding step.

    >>> s = Sampler(seed=0)
    >>> tokens = s(scores)   # step 0, then 1, 2, ...
    """

    def __init__(self, seed: int | None = None):
        self.seed = check_seed(seed)
        self.step = 0

    def __call__(self, scores: Any) -> Any:
        out = sample(scores, seed=self.seed, step=self.step)
        self.step += 1
        return out

    def __repr__(self) -> str:
        return f"Sampler(seed={self.seed}, step={self.step})"
