"""The fastlogits processors as ``transformers.LogitsProcessor`` subclasses, with the same names, for
transformers' own generation loops (``model.generate(logits_processor=LogitsProcessorList([...]))``).

Like transformers' processors they return a new tensor and never modify ``scores`` (so ``output_logits`` /
``output_scores`` of ``generate`` stay what transformers returns); on CPU float32 tensors the copy is made
inside the native call. ``input_ids`` may be None for the processors that do not read it (the warpers). On
CUDA (or float16 / bfloat16) tensors they are still correct: the scores are copied to host float32,
processed, and copied back as a new tensor of the input's dtype and device (a device round trip per call: for
GPU generation keep torch's processors). Instances may be shared by threads, as transformers' can.
"""

from __future__ import annotations

from transformers import LogitsProcessor

from .. import processors as P

__all__ = [n for n in P.__all__ if n != "FastLogitsProcessor"]  # each defined below


# Each class: the fastlogits processor first (its `__call__` comes before `LogitsProcessor`'s in the MRO), with
# transformers' contract (`_returns_new`: a new tensor, `scores` unchanged).


class TemperatureLogitsWarper(P.TemperatureLogitsWarper, LogitsProcessor):
    __doc__ = P.TemperatureLogitsWarper.__doc__
    _returns_new = True


class TopKLogitsWarper(P.TopKLogitsWarper, LogitsProcessor):
    __doc__ = P.TopKLogitsWarper.__doc__
    _returns_new = True


class TopPLogitsWarper(P.TopPLogitsWarper, LogitsProcessor):
    __doc__ = P.TopPLogitsWarper.__doc__
    _returns_new = True


class MinPLogitsWarper(P.MinPLogitsWarper, LogitsProcessor):
    __doc__ = P.MinPLogitsWarper.__doc__
    _returns_new = True


class TypicalLogitsWarper(P.TypicalLogitsWarper, LogitsProcessor):
    __doc__ = P.TypicalLogitsWarper.__doc__
    _returns_new = True


class TopHLogitsWarper(P.TopHLogitsWarper, LogitsProcessor):
    __doc__ = P.TopHLogitsWarper.__doc__
    _returns_new = True


class TopNSigmaLogitsWarper(P.TopNSigmaLogitsWarper, LogitsProcessor):
    __doc__ = P.TopNSigmaLogitsWarper.__doc__
    _returns_new = True


class DynamicTemperatureLogitsWarper(P.DynamicTemperatureLogitsWarper, LogitsProcessor):
    __doc__ = P.DynamicTemperatureLogitsWarper.__doc__
    _returns_new = True


class XTCLogitsWarper(P.XTCLogitsWarper, LogitsProcessor):
    __doc__ = P.XTCLogitsWarper.__doc__
    _returns_new = True


class DRYLogitsProcessor(P.DRYLogitsProcessor, LogitsProcessor):
    __doc__ = P.DRYLogitsProcessor.__doc__
    _returns_new = True


class EpsilonLogitsWarper(P.EpsilonLogitsWarper, LogitsProcessor):
    __doc__ = P.EpsilonLogitsWarper.__doc__
    _returns_new = True


class EtaLogitsWarper(P.EtaLogitsWarper, LogitsProcessor):
    __doc__ = P.EtaLogitsWarper.__doc__
    _returns_new = True


class RepetitionPenaltyLogitsProcessor(P.RepetitionPenaltyLogitsProcessor, LogitsProcessor):
    __doc__ = P.RepetitionPenaltyLogitsProcessor.__doc__
    _returns_new = True


class PresencePenaltyLogitsProcessor(P.PresencePenaltyLogitsProcessor, LogitsProcessor):
    __doc__ = P.PresencePenaltyLogitsProcessor.__doc__
    _returns_new = True


class FrequencyPenaltyLogitsProcessor(P.FrequencyPenaltyLogitsProcessor, LogitsProcessor):
    __doc__ = P.FrequencyPenaltyLogitsProcessor.__doc__
    _returns_new = True


class NoRepeatNGramLogitsProcessor(P.NoRepeatNGramLogitsProcessor, LogitsProcessor):
    __doc__ = P.NoRepeatNGramLogitsProcessor.__doc__
    _returns_new = True


class NoBadWordsLogitsProcessor(P.NoBadWordsLogitsProcessor, LogitsProcessor):
    __doc__ = P.NoBadWordsLogitsProcessor.__doc__
    _returns_new = True


class SequenceBiasLogitsProcessor(P.SequenceBiasLogitsProcessor, LogitsProcessor):
    __doc__ = P.SequenceBiasLogitsProcessor.__doc__
    _returns_new = True


class LogitBiasLogitsProcessor(P.LogitBiasLogitsProcessor, LogitsProcessor):
    __doc__ = P.LogitBiasLogitsProcessor.__doc__
    _returns_new = True


class MinLengthLogitsProcessor(P.MinLengthLogitsProcessor, LogitsProcessor):
    __doc__ = P.MinLengthLogitsProcessor.__doc__
    _returns_new = True


class MinNewTokensLengthLogitsProcessor(P.MinNewTokensLengthLogitsProcessor, LogitsProcessor):
    __doc__ = P.MinNewTokensLengthLogitsProcessor.__doc__
    _returns_new = True


class SuppressTokensLogitsProcessor(P.SuppressTokensLogitsProcessor, LogitsProcessor):
    __doc__ = P.SuppressTokensLogitsProcessor.__doc__
    _returns_new = True


class SuppressTokensAtBeginLogitsProcessor(P.SuppressTokensAtBeginLogitsProcessor, LogitsProcessor):
    __doc__ = P.SuppressTokensAtBeginLogitsProcessor.__doc__
    _returns_new = True


class ExponentialDecayLengthPenalty(P.ExponentialDecayLengthPenalty, LogitsProcessor):
    __doc__ = P.ExponentialDecayLengthPenalty.__doc__
    _returns_new = True
