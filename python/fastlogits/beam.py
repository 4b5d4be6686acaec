"""Beam search bookkeeping, token-identical to transformers' ``generate(num_beams=...)``.

The model and the logits processors stay with the caller; :class:`BeamSearch` does what
``GenerationMixin._beam_search`` does between two forward passes: add the log-probabilities to the beam
scores, pick the ``max(2, 1 + n_eos) * num_beams`` best continuations of every batch entry (without
sorting the ``num_beams * V`` candidates), apply the stopping criteria (``max_length`` and EOS), keep the
best finished hypotheses with their length penalty, and decide when to stop::

    bs = fl.BeamSearch(input_ids, num_beams=4, max_new_tokens=20, eos_token_id=eos)
    mask = bs.expand(attention_mask)                      # (B * K, L), like the model inputs
    pos = (mask.cumsum(-1) - 1).clamp(min=0)              # position ids, as generate builds them
    ids, cache = bs.running_sequences(), None
    while True:
        out = model(ids, attention_mask=mask, position_ids=pos, past_key_values=cache, use_cache=True)
        log_probs = torch.log_softmax(out.logits[:, -1].float(), dim=-1)
        log_probs = processors(bs.running_sequences(), log_probs)   # transformers' or fastlogits'
        next_tokens, beam_idx, done = bs.step(log_probs)
        if done:
            break
        cache = out.past_key_values
        cache.reorder_cache(beam_idx)                     # (and processors.reorder(beam_idx))
        ids, pos = next_tokens[:, None], pos[:, -1:] + 1
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=-1)
    sequences, sequences_scores, beam_indices = bs.finalize()

With ``do_sample=True`` (beam sampling) the candidates are drawn without replacement from
``softmax(log_probs + beam_scores)`` over the ``num_beams * V`` continuations of an entry, as
transformers draws them, but from counter-based Philox streams ``(seed, batch entry, step)``: the same
seed gives the same result at any number of threads (transformers uses torch's global generator, so only
the distribution can match).

Ties: ``torch.topk`` orders exactly equal scores in an unspecified way; here equal scores are ranked by
position (``beam * V + token``, lower first; finished hypotheses already kept before new ones). Results
match transformers whenever no two candidates competing for a place have exactly equal float32 scores.
That fails in practice only at the first step when beam 0 has fewer than ``beams_to_keep`` finite
log-probabilities (a vocabulary smaller than ``beams_to_keep``, or processors banning most tokens): the
other beams start at ``-1e9`` and ``-1e9 + x`` rounds to the same float32 for many ``x``.
"""

from __future__ import annotations

import math
import os
from typing import Any, NamedTuple

import numpy as np

from . import _native
from ._arrays import as_ids, as_scores, is_torch, to_like
from ._validate import check_seeds, is_int, positive_int

__all__ = ["BeamSearch", "BeamSearchOutput"]


class BeamSearchOutput(NamedTuple):
    """What ``generate(..., num_beams=K, return_dict_in_generate=True, output_scores=True)`` returns in
    ``sequences``, ``sequences_scores`` and ``beam_indices``."""

    sequences: Any  # (B * num_return_sequences, L) int64, padded like transformers
    sequences_scores: Any  # (B * num_return_sequences,) float32, length-penalized
    beam_indices: Any  # (B * num_return_sequences, generated) int64, -1 padded


def _id_list(name: str, x: Any) -> list[int] | None:
    if x is None:
        return None
    if is_torch(x) or isinstance(x, np.ndarray):
        x = x.tolist()
    ids = [x] if is_int(x) else list(x) if isinstance(x, (list, tuple)) else None
    if ids is None or not all(is_int(t) and -(2**63) <= t < 2**63 for t in ids):
        raise _native.InvalidArgumentError(
            f"`{name}` has to be an int or a list of ints (token ids, within int64), but is {x!r}"
        )
    return [int(t) for t in ids]


def _physical_memory() -> float:
    """Bytes of RAM (inf when unknown): an allocation beyond it would only get the process killed."""
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return float("inf")


class BeamSearch:
    """Beam search over a batch of prompts.

    Parameters
    ----------
    input_ids:
        The prompts, ``(batch_size, L)`` ints (NumPy, torch or nested lists); one row per batch entry,
        left-padded if their lengths differ (the padding stays part of the sequences, as in transformers).
        The search expands them to ``batch_size * num_beams`` rows (``repeat_interleave``).
    num_beams:
        Beams per entry (>= 1).
    max_length / max_new_tokens:
        Total length (prompt included) or number of new tokens; exactly one must be given.
    length_penalty, early_stopping, num_return_sequences, eos_token_id, pad_token_id, do_sample:
        As in ``transformers.GenerationConfig``. ``early_stopping`` is ``True``, ``False`` or
        ``"never"``. ``eos_token_id`` is an int, a list of ints or ``None`` (no EOS). Finished sequences
        are padded with ``pad_token_id or eos_token_id[0]`` (so a ``pad_token_id`` of 0 falls back to the
        EOS id, as in transformers), or ``-1`` without EOS.
    seed:
        Beam sampling seed (``None``: a fresh random one), or one key per batch entry (see
        :func:`fastlogits.sample`): each entry then draws the same whatever the batch.

    Results are NumPy arrays, or torch tensors when ``input_ids`` (for :meth:`running_sequences`,
    :meth:`finalize`) or ``log_probs`` (for :meth:`step`) is a tensor.
    """

    def __init__(
        self,
        input_ids: Any,
        num_beams: int,
        *,
        max_length: int | None = None,
        max_new_tokens: int | None = None,
        length_penalty: float = 1.0,
        early_stopping: bool | str = False,
        num_return_sequences: int = 1,
        eos_token_id: int | list[int] | None = None,
        pad_token_id: int | None = None,
        do_sample: bool = False,
        seed: Any = None,
    ):
        self._like = input_ids
        ids = as_ids(input_ids).astype(np.int64, copy=False)
        num_beams = positive_int("num_beams", num_beams)
        num_return_sequences = positive_int("num_return_sequences", num_return_sequences)
        if num_return_sequences > num_beams:
            raise _native.InvalidArgumentError(
                f"`num_return_sequences` ({num_return_sequences}) has to be smaller or equal to `num_beams` "
                f"({num_beams})."
            )
        # True / False / "never": checked natively (a NumPy bool counts as a bool).
        es = bool(early_stopping) if isinstance(early_stopping, np.bool_) else early_stopping
        if (
            isinstance(length_penalty, (bool, np.bool_))
            or not isinstance(length_penalty, (int, float, np.integer, np.floating))
            or not math.isfinite(length_penalty)
        ):
            raise _native.InvalidArgumentError(
                f"`length_penalty` has to be a finite float, but is {length_penalty!r}"
            )
        if (max_length is None) == (max_new_tokens is None):
            raise _native.InvalidArgumentError("give exactly one of `max_length` and `max_new_tokens`")
        if max_new_tokens is not None:
            if not is_int(max_new_tokens) or max_new_tokens <= 0:
                raise _native.InvalidArgumentError(
                    f"`max_new_tokens` must be greater than 0, but is {max_new_tokens}."
                )
            max_length = ids.shape[1] + int(max_new_tokens)
        elif not is_int(max_length) or max_length < 0:
            raise _native.InvalidArgumentError(
                f"`max_length` has to be a non-negative integer, but is {max_length!r}"
            )
        if ids.shape[0] == 0:
            raise _native.InvalidArgumentError("`input_ids` has no rows: the batch must not be empty")
        eos = _id_list("eos_token_id", eos_token_id)
        if pad_token_id is not None and (not is_int(pad_token_id) or not -(2**63) <= pad_token_id < 2**63):
            raise _native.InvalidArgumentError(
                f"`pad_token_id` has to be an int (a token id, within int64), but is {pad_token_id!r}"
            )
        if not isinstance(do_sample, (bool, np.bool_)):
            raise _native.InvalidArgumentError(f"`do_sample` has to be a bool, but is {do_sample!r}")
        seed = check_seeds(seed)
        if int(max_length) >= 2**63:
            raise _native.InvalidArgumentError(f"`max_length` has to be below 2**63, but is {max_length}")
        rows = ids.shape[0] * num_beams
        if rows >= 2**32:
            raise _native.InvalidArgumentError(
                f"`batch_size * num_beams` = {rows} is too large: at most 2**32 - 1 running beams"
            )
        need = rows * max(ids.shape[1], 1) * 8 * 4  # the expanded prompt, and the search's own copies
        if need > _physical_memory():
            raise _native.InvalidArgumentError(
                f"`num_beams` = {num_beams} needs {rows} rows of {ids.shape[1]} ids (~{need / 2**30:.0f} GiB), "
                "more than this machine's memory"
            )
        try:
            expanded = np.ascontiguousarray(np.repeat(ids, num_beams, axis=0))
        except MemoryError:
            raise _native.InvalidArgumentError(
                f"`num_beams` = {num_beams} needs {rows} rows of {ids.shape[1]} ids: not enough memory"
            ) from None
        self._batch_size = ids.shape[0]
        self._num_beams = num_beams
        self._prompt_length = ids.shape[1]
        self._max_length = int(max_length)
        self._seed = seed
        self._native = _native.BeamSearch(
            expanded,
            num_beams,
            int(max_length),
            length_penalty=float(length_penalty),
            early_stopping=es,
            num_return_sequences=num_return_sequences,
            eos_token_id=eos,
            pad_token_id=None if pad_token_id is None else int(pad_token_id),
            do_sample=bool(do_sample),
            seed=seed,
        )

    # ------------------------------------------------------------------------------------------
    def step(self, log_probs: Any) -> tuple[Any, Any, bool]:
        """One decoding step.

        ``log_probs``: ``(batch_size * num_beams, V)``, the log-softmax of the model's last logits after
        the logits processors (any float dtype; NaN / ``+inf`` raise ``InvalidArgumentError`` and leave the
        search unchanged). Returns ``(next_tokens, beam_idx, done)``: the token appended to each running
        row (the next model input), the row each new running row continues (reorder the KV cache and any
        per-row state with it), and whether the search is over (then call :meth:`finalize`).
        """
        work, _ = as_scores(log_probs, "log_probs")
        next_tokens, beam_idx, done = self._native.step(work)
        return to_like(next_tokens, log_probs), to_like(beam_idx, log_probs), bool(done)

    def running_sequences(self) -> Any:
        """The running sequences ``(batch_size * num_beams, cur_len)`` int64: the ``input_ids`` the logits
        processors take at the next step."""
        return to_like(self._native.running_sequences(), self._like)

    def running_scores(self) -> Any:
        """Accumulated log-probabilities of the running beams, ``(batch_size * num_beams,)`` float32."""
        return to_like(self._native.running_scores(), self._like)

    def finalize(self) -> BeamSearchOutput:
        """``(sequences, sequences_scores, beam_indices)`` as ``generate`` returns them. Can be called
        before the search is done (it then reports the hypotheses finished so far)."""
        seqs, scores, idx = self._native.finalize()
        return BeamSearchOutput(
            to_like(seqs, self._like), to_like(scores, self._like), to_like(idx, self._like)
        )

    def expand(self, x: Any) -> Any:
        """``x`` (``(batch_size, ...)``, e.g. the attention mask) repeated to one row per beam, as
        ``generate`` expands its inputs (``repeat_interleave(num_beams, dim=0)``)."""
        shape = tuple(x.shape) if is_torch(x) else np.shape(x)
        if len(shape) == 0 or shape[0] != self._batch_size:
            raise _native.InvalidArgumentError(
                f"`x` has to have batch_size = {self._batch_size} rows, but has shape {shape}"
            )
        if is_torch(x):
            return x.repeat_interleave(self._num_beams, dim=0)
        return np.repeat(np.asarray(x), self._num_beams, axis=0)

    # ------------------------------------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        return self._batch_size

    @property
    def num_beams(self) -> int:
        return self._num_beams

    @property
    def prompt_length(self) -> int:
        return self._prompt_length

    @property
    def max_length(self) -> int:
        return self._max_length

    @property
    def seed(self) -> int | np.ndarray:
        return self._seed

    @property
    def cur_len(self) -> int:
        """Length of the running sequences, prompt included."""
        return self._native.cur_len()

    @property
    def is_done(self) -> bool:
        return self._native.is_done()

    @property
    def entries_done(self) -> list[bool]:
        """Per batch entry: its finished hypotheses can no longer change (the search itself stops only
        when every entry is done, as in transformers)."""
        return self._native.entries_done()

    def __repr__(self) -> str:
        return (
            f"BeamSearch(batch_size={self.batch_size}, num_beams={self.num_beams}, cur_len={self.cur_len}, "
            f"max_length={self.max_length}, done={self.is_done})"
        )
