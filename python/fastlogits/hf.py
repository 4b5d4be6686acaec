"""Drop-in pieces for transformers' own generation loops.

* Every fastlogits processor as a subclass of ``transformers.LogitsProcessor`` with the same name, usable in
  ``model.generate(logits_processor=LogitsProcessorList([...]))``:

  >>> from transformers import LogitsProcessorList
  >>> from fastlogits.hf import TopPLogitsWarper, NoRepeatNGramLogitsProcessor
  >>> model.generate(ids, do_sample=True, top_k=0,
  ...                logits_processor=LogitsProcessorList([NoRepeatNGramLogitsProcessor(3), TopPLogitsWarper(0.9)]))

  On CPU float32 tensors they work in place, zero-copy. On CUDA (or float16 / bfloat16) tensors they are
  still correct: the scores are copied to host float32, processed, and copied back as a new tensor of the
  input's dtype and device (a device round trip per call: for GPU generation keep torch's processors).

* :func:`to_native` / :class:`NativeChain`: run an existing ``LogitsProcessorList`` (for instance the one
  ``generate`` builds) natively: transformers processors that fastlogits implements are converted from their
  attributes; any other processor (a user's own, or one fastlogits lacks) runs as is, in order.

* The one-line swap for an existing ``model.generate(...)`` call is :func:`fastlogits.generate`
  (``fastlogits.generate(model, ...)`` with the same arguments), or, keeping the call itself,
  ``model.generate(..., custom_generate=fastlogits.hf.decode)``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
import transformers.generation.logits_process as T
from transformers import LogitsProcessor

from . import _native
from . import processors as P

__all__ = ["NativeChain", "to_native", "decode", *P.__all__[1:]]


def _adapter(cls: type) -> type:
    return type(
        cls.__name__,
        (cls, LogitsProcessor),
        {
            "__doc__": f"{cls.__doc__}\n\n    A ``transformers.LogitsProcessor`` (fastlogits.hf).",
            "__module__": __name__,
        },
    )


# The fastlogits processors as transformers.LogitsProcessor subclasses, same names.
for _name in P.__all__[1:]:
    globals()[_name] = _adapter(getattr(P, _name))
del _name


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
    if t is T.EpsilonLogitsWarper:
        return P.EpsilonLogitsWarper(proc.epsilon, proc.filter_value, proc.min_tokens_to_keep)
    if t is T.EtaLogitsWarper:
        return P.EtaLogitsWarper(float(_tolist(proc.epsilon)), proc.filter_value, proc.min_tokens_to_keep)
    if t is T.RepetitionPenaltyLogitsProcessor:
        return P.RepetitionPenaltyLogitsProcessor(proc.penalty, _tolist(proc.prompt_ignore_length))
    if t is T.NoRepeatNGramLogitsProcessor:
        return P.NoRepeatNGramLogitsProcessor(proc.ngram_size)
    if t in (T.SequenceBiasLogitsProcessor, T.NoBadWordsLogitsProcessor):
        # Both hold the final {tuple(ids): bias} dict (bad words: -inf, EOS singletons already removed).
        return P.SequenceBiasLogitsProcessor({tuple(k): float(v) for k, v in proc.sequence_bias.items()})
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
            (proc.regulation_start, proc.regulation_factor), _eos(proc.eos_token_id), 0
        )
    return None


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

    def __call__(self, ids: np.ndarray, scores: np.ndarray) -> None:
        """Processes ``scores`` ((B, V) float32, C-contiguous) in place given ``ids`` ((B, L) int64,
        C-contiguous)."""
        self._run(ids, scores, self.steps)

    def sample(
        self, ids: np.ndarray, scores: np.ndarray, seed: int, step: int, write_scores: bool = True
    ) -> np.ndarray:
        """Processes ``scores`` in place and draws one token per row (``fastlogits.sample`` semantics); when
        the chain ends natively, the draw is fused into its last call. ``write_scores=False``: only the
        tokens are wanted, ``scores`` is scratch (see ``LogitsPipeline.sample``)."""
        if self.steps and self.steps[-1][0] == "native":
            self._run(ids, scores, self.steps[:-1])
            tokens = self.steps[-1][1].sample(ids, scores, seed, step, write_scores)
        else:
            self._run(ids, scores, self.steps)
            tokens = _native.sample(scores, seed, step)
        if tokens is None:
            raise _native.InvalidTypeError("internal: the decoding buffers must be C-contiguous")
        return tokens

    @staticmethod
    def _run(ids: np.ndarray, scores: np.ndarray, steps) -> None:
        ids_t = None
        for kind, step in steps:
            if kind == "native":
                if not step(ids, scores):
                    raise _native.InvalidTypeError("internal: the decoding buffers must be C-contiguous")
            else:
                if ids_t is None:
                    ids_t = torch.from_numpy(ids)
                out = step(ids_t, torch.from_numpy(scores))
                if out.data_ptr() != scores.ctypes.data:
                    scores[...] = out.detach().to("cpu", torch.float32).numpy()

    def reorder(self, beam_idx: np.ndarray) -> None:
        idx = [int(i) for i in beam_idx]
        for kind, step in self.steps:
            if kind == "native":
                step.reorder(idx)

    def __len__(self) -> int:
        return len(self.steps)


def decode(
    model, input_ids, logits_processor, stopping_criteria, generation_config, tokenizer=None, **model_kwargs
):
    """``custom_generate`` hook: ``model.generate(..., custom_generate=fastlogits.hf.decode)`` keeps the
    ``generate`` call and runs its decoding loop in fastlogits (see :func:`fastlogits.generate`)."""
    from .generate import _decoder

    return _decoder(seed=None, streamer=None)(
        model,
        input_ids,
        logits_processor,
        stopping_criteria,
        generation_config,
        tokenizer=tokenizer,
        **model_kwargs,
    ).run()
