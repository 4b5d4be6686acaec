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

__all__ = ["sample", "greedy", "log_softmax", "top_logprobs", "Sampler", "MirostatV2Sampler", "stream_key"]


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


class MirostatV2Sampler:
    """Mirostat 2.0 (Basu et al., arXiv 2007.14966; llama.cpp ``mirostat_v2``): a sampler (the draw stage)
    that steers each row's surprise toward ``tau`` bits. Per row it keeps a state ``mu`` (starting at
    ``2 * tau``); at each call it leaves out the tokens whose surprise ``-log2 p`` exceeds ``mu`` (never the
    most likely one), draws from the softmax of the rest, and sets ``mu -= eta * (s - tau)`` with ``s`` the
    drawn token's surprise among those kept.

    >>> mirostat = MirostatV2Sampler(tau=5.0, eta=0.1)
    >>> tokens = mirostat(scores, seed=0, step=t)   # at each step; mirostat.mu: the rows' state

    ``seed`` / ``step``: as :func:`sample` (an int or one key per row). The state is for one batch: a call
    with another number of rows raises; :meth:`reset` forgets it, :meth:`reorder` follows reordered rows
    (beams). The scores are not modified."""

    def __init__(self, tau: float = 5.0, eta: float = 0.1):
        # float32 values (the state is float32): 2 * tau and eta must be finite in float32.
        for name, v, hi in (("mirostat_tau", tau, 1.7e38), ("mirostat_eta", eta, 3.4e38)):
            if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not (0 <= float(v) <= hi):
                raise _native.InvalidArgumentError(f"`{name}` has to be a float in [0, {hi:g}], but is {v!r}")
        self.tau, self.eta = float(tau), float(eta)
        self.mu: np.ndarray | None = None

    def __call__(self, scores: Any, *, seed: Any = None, step: int = 0) -> Any:
        work = _read(scores)
        rows = work.shape[0]
        if self.mu is None:
            self.mu = np.full(rows, 2.0 * self.tau, dtype=np.float32)
        elif len(self.mu) != rows:
            raise _native.ShapeError(
                f"this MirostatV2Sampler holds the state of {len(self.mu)} rows but scores has {rows}: "
                "call reset() for a new batch"
            )
        tokens = _native.mirostat_v2(work, check_seeds(seed), check_step(step), self.tau, self.eta, self.mu)
        return to_like(tokens, scores)

    def reset(self) -> None:
        """Forgets the rows' state (the next call starts from ``2 * tau``)."""
        self.mu = None

    def reorder(self, index: Any) -> None:
        """Row ``i`` continues row ``index[i]`` (beam search's reordering)."""
        if self.mu is not None:
            idx = np.asarray(index, dtype=np.int64)
            if (
                idx.ndim != 1
                or len(idx) != len(self.mu)
                or idx.min(initial=0) < 0
                or idx.max(initial=0) >= len(self.mu)
            ):
                raise _native.InvalidArgumentError(
                    f"`index` has to hold {len(self.mu)} row indices in [0, {len(self.mu)}), got {index!r}"
                )
            self.mu = self.mu[idx].copy()

    def __repr__(self) -> str:
        return f"MirostatV2Sampler(tau={self.tau}, eta={self.eta})"
