"""Running transformers' processor lists natively.

* :func:`to_native`: the fastlogits equivalent of one processor (itself, or a conversion of a transformers
  processor fastlogits implements, read from its attributes so that it behaves identically).
* :class:`FusedLogitsProcessor`: several processors as one ``transformers.LogitsProcessor`` (one native call,
  one copy).
* :class:`NativeChain`: a whole list over one float32 host buffer (``fastlogits.generate``'s: the chain built
  from the config by ``fastlogits.pipeline.build_chain`` with the user's processors, or transformers' own list
  where the config selects processors fastlogits lacks): consecutive processors fastlogits implements become one
  native call; any other (a user's own, or one fastlogits lacks) runs as is, in order.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
import transformers.generation.logits_process as T
from transformers import LogitsProcessor

from .. import _native
from .. import processors as P
from .._arrays import in_place
from .._validate import check_seeds, check_step
from ..errors import InvalidArgumentError, InvalidTypeError

__all__ = ["FusedLogitsProcessor", "NativeChain", "to_native"]


def _tolist(x: Any) -> Any:
    return x.tolist() if isinstance(x, torch.Tensor) else x


def _eos(x: Any) -> list[int]:
    x = _tolist(x)
    return [x] if isinstance(x, int) else list(x)


def to_native(proc: Any) -> P.FastLogitsProcessor | None:
    """The fastlogits equivalent of one processor: itself if it is a fastlogits processor, a conversion
    of a transformers processor fastlogits implements (read from its attributes, so it behaves
    identically), or None."""
    if isinstance(proc, P.FastLogitsProcessor):
        return proc
    t = type(proc)
    if t is T.TemperatureLogitsWarper:
        return P.TemperatureLogitsWarper(proc.temperature)
    if t is T.TopKLogitsWarper:  # `top_k` is already max(top_k, min_tokens_to_keep)
        return P.TopKLogitsWarper(proc.top_k, filter_value=proc.filter_value)
    if t is T.TopPLogitsWarper:
        return P.TopPLogitsWarper(proc.top_p, proc.filter_value, proc.min_tokens_to_keep)
    if t is T.MinPLogitsWarper:
        return P.MinPLogitsWarper(proc.min_p, proc.filter_value, proc.min_tokens_to_keep)
    if t is T.TypicalLogitsWarper:
        return P.TypicalLogitsWarper(proc.mass, proc.filter_value, proc.min_tokens_to_keep)
    if t is T.TopHLogitsWarper and proc.top_n == 100:
        return P.TopHLogitsWarper(proc.top_h, proc.filter_value)
    if t is T.EpsilonLogitsWarper:
        return P.EpsilonLogitsWarper(proc.epsilon, proc.filter_value, proc.min_tokens_to_keep)
    if t is T.EtaLogitsWarper:
        return P.EtaLogitsWarper(float(_tolist(proc.epsilon)), proc.filter_value, proc.min_tokens_to_keep)
    if t is T.RepetitionPenaltyLogitsProcessor:
        return P.RepetitionPenaltyLogitsProcessor(proc.penalty, _tolist(proc.prompt_ignore_length))
    if t is T.NoRepeatNGramLogitsProcessor:
        return P.NoRepeatNGramLogitsProcessor(proc.ngram_size)
    if t in (T.SequenceBiasLogitsProcessor, T.NoBadWordsLogitsProcessor):
        # Both hold the final {tuple(ids): bias} dict (bad words: -inf, EOS singletons already removed); an
        # empty sequence never applies, and bad words that were all EOS leave an empty dict (no-op).
        bias = {tuple(k): float(v) for k, v in proc.sequence_bias.items() if len(k) > 0}
        return P.SequenceBiasLogitsProcessor(bias) if bias else P.SuppressTokensLogitsProcessor([])
    if t is T.MinLengthLogitsProcessor:
        return P.MinLengthLogitsProcessor(proc.min_length, _eos(proc.eos_token_id))
    if t is T.MinNewTokensLengthLogitsProcessor:
        return P.MinNewTokensLengthLogitsProcessor(
            proc.prompt_length_to_skip, proc.min_new_tokens, _eos(proc.eos_token_id)
        )
    if t is T.SuppressTokensLogitsProcessor:
        return P.SuppressTokensLogitsProcessor(_tolist(proc.suppress_tokens))
    if t is T.SuppressTokensAtBeginLogitsProcessor:
        return P.SuppressTokensAtBeginLogitsProcessor(_tolist(proc.begin_suppress_tokens), proc.begin_index)
    if t is T.ExponentialDecayLengthPenalty:
        return P.ExponentialDecayLengthPenalty(
            (proc.regulation_start, proc.regulation_factor), _tolist(proc.eos_token_id), 0
        )
    return None


class FusedLogitsProcessor(LogitsProcessor):
    """Several processors as one ``transformers.LogitsProcessor``: ``FusedLogitsProcessor([...])(ids, scores)``
    equals applying them one after the other, in one native call that makes the one copy transformers'
    contract needs (a new tensor; ``scores`` is left unchanged) instead of one per processor.

    ``processors``: fastlogits processors, or transformers processors fastlogits implements (converted from
    their attributes, see :func:`to_native`); anything else raises ``InvalidArgumentError``.
    """

    def __init__(self, processors: Iterable[Any]):
        specs = []
        try:
            processors = list(processors)
        except TypeError:
            raise InvalidTypeError(
                f"FusedLogitsProcessor takes a list of processors, got {type(processors).__name__}"
            ) from None
        for p in processors:
            n = to_native(p)
            if n is None:
                raise InvalidArgumentError(
                    f"FusedLogitsProcessor takes processors fastlogits implements, got {type(p).__name__}"
                )
            specs.append(n.native())
        self._pipe = _native.Pipeline(specs)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        return P.apply_native(self._pipe, input_ids, scores, copy=True)

    def reset(self) -> None:
        """Forgets the histories seen so far."""
        self._pipe.reset()

    def __len__(self) -> int:
        return len(self._pipe)


class NativeChain:
    """A sequence of logits processors run over one float32 host buffer: consecutive processors fastlogits
    implements become one native call; the others run as Python callables in between, on torch tensors
    sharing that buffer."""

    def __init__(self, processors: Iterable[Any]):
        self.steps: list[tuple[str, Any]] = []
        native: list[_native.Processor] = []
        self.fallbacks: list[Any] = []
        for p in processors:
            n = to_native(p)
            if n is not None:
                native.append(n.native())
                continue
            if native:
                self.steps.append(("native", _native.Pipeline(native)))
                native = []
            self.steps.append(("python", p))
            self.fallbacks.append(p)
        if native:
            self.steps.append(("native", _native.Pipeline(native)))

    def __call__(self, ids: np.ndarray, scores: np.ndarray, seed: Any = None, step: int = 0) -> None:
        """Processes ``scores`` ((B, V) float32, C-contiguous, writable) in place given ``ids`` ((B, L)
        int64 / int32, C-contiguous). On error ``scores`` is left as it was. ``seed`` / ``step``: the
        streams of a draw that follows (another sampler's), for processors that need randomness (XTC)."""
        _check_buffers(ids, scores)
        stream = None if seed is None else (check_seeds(seed), check_step(step))
        with self._restore_on_error(scores):
            self._run(ids, scores, self.steps, stream)

    def sample(
        self, ids: np.ndarray, scores: np.ndarray, seed: Any, step: int, write_scores: bool = True
    ) -> np.ndarray:
        """Processes ``scores`` in place and draws one token per row (``fastlogits.sample`` semantics); when
        the chain ends natively, the draw is fused into its last call. ``write_scores=False``: only the
        tokens are wanted, ``scores`` is scratch (see ``LogitsPipeline.sample``)."""
        _check_buffers(ids, scores)
        seed, step = check_seeds(seed), check_step(step)
        with self._restore_on_error(scores):
            if self.steps and self.steps[-1][0] == "native":
                self._run(ids, scores, self.steps[:-1], (seed, step))
                tokens = self.steps[-1][1].sample(ids, scores, seed, step, write_scores)
            else:
                self._run(ids, scores, self.steps, (seed, step))
                tokens = _native.sample(scores, seed, step)
        return tokens

    @contextlib.contextmanager
    def _restore_on_error(self, scores: np.ndarray):
        """The native steps leave the buffer unchanged on error; Python steps before them may not have."""
        backup = scores.copy() if self.fallbacks else None
        try:
            yield
        except BaseException:
            if backup is not None:
                scores[...] = backup
            raise

    @staticmethod
    def _run(ids: np.ndarray, scores: np.ndarray, steps, stream=None) -> None:
        ids_t = None
        for kind, step in steps:
            if kind == "native":
                # (the buffers were checked: always taken as they are)
                if stream is None:
                    step(ids, scores)
                else:
                    step(ids, scores, *stream)
            else:
                if ids_t is None:
                    ids_t = torch.from_numpy(ids)
                out = step(ids_t, torch.from_numpy(scores))
                if not isinstance(out, torch.Tensor) or tuple(out.shape) != scores.shape:
                    raise InvalidTypeError(
                        f"the logits processor {type(step).__name__} returned "
                        f"{type(out).__name__ if not isinstance(out, torch.Tensor) else tuple(out.shape)}, "
                        f"not a tensor of shape {scores.shape}"
                    )
                if out.data_ptr() != scores.ctypes.data:
                    scores[...] = out.detach().to("cpu", torch.float32).numpy()

    def reorder(self, beam_idx: np.ndarray) -> None:
        idx = [int(i) for i in beam_idx]
        for kind, step in self.steps:
            if kind == "native":
                step.reorder(idx)

    def __len__(self) -> int:
        return len(self.steps)


def _check_buffers(ids: Any, scores: Any) -> None:
    """NativeChain works in place on buffers it is given as they are: check them first."""
    if not (
        isinstance(scores, np.ndarray)
        and scores.ndim == 2
        and in_place(scores)
        and min(scores.strides) >= 0  # (a size-1 axis may have any stride; torch refuses negative ones)
    ):
        raise InvalidTypeError(
            "`scores` has to be a writable, C-contiguous (batch, vocab) float32 numpy array, got "
            f"{type(scores).__name__} {getattr(scores, 'dtype', '')} {getattr(scores, 'shape', '')}"
        )
    if not (
        isinstance(ids, np.ndarray)
        and ids.ndim == 2
        and ids.dtype in (np.int64, np.int32)
        and ids.flags.c_contiguous
        and ids.flags.aligned
        and min(ids.strides) >= 0
    ):
        raise InvalidTypeError(
            "`ids` has to be a C-contiguous (batch, length) int64 / int32 numpy array, got "
            f"{type(ids).__name__} {getattr(ids, 'dtype', '')} {getattr(ids, 'shape', '')}"
        )
    if ids.shape[0] != scores.shape[0]:
        raise InvalidArgumentError(
            f"`ids` has {ids.shape[0]} rows but `scores` has {scores.shape[0]}: they must have the same batch size"
        )
