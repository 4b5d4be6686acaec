"""Logits processors with the names, constructor arguments, defaults and validation of transformers 5.23.

Every class is callable as ``proc(input_ids, scores) -> scores``: ``input_ids`` is ``(batch, length)``
int64/int32, ``scores`` is ``(batch, vocab)`` float, each a NumPy array or a torch tensor.

In place or not
    A writable C-contiguous float32 NumPy array, or a contiguous float32 CPU tensor that does not require
    grad, is modified **in place** and returned (zero copy). Any other input (float16, bfloat16, float64,
    non-contiguous or read-only arrays, CUDA tensors) is processed on a float32 host copy and returned as
    a **new** array/tensor of the input's dtype and device; the input is left unchanged. transformers
    itself always returns a new tensor: write ``scores = proc(input_ids, scores)`` and both behave alike.

Errors
    Bad parameters raise :class:`fastlogits.InvalidArgumentError` (a ``ValueError``) with transformers'
    message where it has one; wrong array types raise :class:`fastlogits.InvalidTypeError` (a
    ``TypeError``). Bad inputs (ids outside ``[0, vocab)``, NaN or ``+inf`` scores, mismatched batch sizes,
    ``vocab == 0``, empty batch) raise ``InvalidArgumentError`` and leave ``scores`` unchanged.

State
    Processors that read the history (repetition / presence / frequency penalties, no-repeat n-gram)
    keep per-row state between calls and update it with the new tokens only when the history extends the
    previous one; any other history is rebuilt from scratch, so reusing an instance is always correct.

Exactness
    Values kept are bit-identical to transformers' float32 results. Masks are identical except where a
    probability mass lies within ~1e-6 of a threshold (torch's float32 softmax and ours differ in the
    last bits there) and where values tie exactly at a top-k / top-p boundary (torch's sort is unstable;
    fastlogits keeps every tied token, as transformers' top-k does).

Beyond transformers
    ``temperature``, ``top_k``, ``top_p``, ``min_p`` and the repetition ``penalty`` accept one value per
    row (a list or 1-D array of length ``batch``). :class:`PresencePenaltyLogitsProcessor`,
    :class:`FrequencyPenaltyLogitsProcessor` and :class:`LogitBiasLogitsProcessor` add OpenAI / vLLM
    style penalties and biases.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from . import _native
from ._arrays import as_ids, as_scores, batch_size, in_place, is_torch, to_like
from ._validate import (
    as_float,
    check_min_tokens,
    check_seed,
    int_min_tokens,
    is_int,
    per_row,
    scalar,
    token_iterable,
    token_list,
)
from .errors import InvalidArgumentError, InvalidTypeError

__all__ = [
    "FastLogitsProcessor",
    "TemperatureLogitsWarper",
    "TopKLogitsWarper",
    "TopPLogitsWarper",
    "MinPLogitsWarper",
    "TypicalLogitsWarper",
    "TopHLogitsWarper",
    "TopNSigmaLogitsWarper",
    "DynamicTemperatureLogitsWarper",
    "XTCLogitsWarper",
    "DRYLogitsProcessor",
    "EpsilonLogitsWarper",
    "EtaLogitsWarper",
    "RepetitionPenaltyLogitsProcessor",
    "PresencePenaltyLogitsProcessor",
    "FrequencyPenaltyLogitsProcessor",
    "NoRepeatNGramLogitsProcessor",
    "NoBadWordsLogitsProcessor",
    "SequenceBiasLogitsProcessor",
    "LogitBiasLogitsProcessor",
    "MinLengthLogitsProcessor",
    "MinNewTokensLengthLogitsProcessor",
    "SuppressTokensLogitsProcessor",
    "SuppressTokensAtBeginLogitsProcessor",
    "ExponentialDecayLengthPenalty",
]

NEG_INF = -float("inf")


def _ids_for(pipe: _native.Pipeline, input_ids: Any, scores: Any) -> Any:
    """What the native call needs of `input_ids`, read as transformers' processors read them: the ids for
    processors that read the history; only the length (``input_ids.shape[-1]``, any dtype or batch) for
    the length rules; nothing for the warpers (``warper(None, scores)`` is common)."""
    batch = batch_size(scores)
    batch = 0 if batch is None else batch
    if not pipe.reads_input_ids:
        return np.zeros((batch, 0), np.int64)
    if input_ids is None:
        raise InvalidArgumentError(
            "`input_ids` is None, but this processor reads the token history (its ids or its length): "
            "pass the (batch, length) input_ids"
        )
    if pipe.reads_history:
        return input_ids
    try:
        shape = tuple(input_ids.shape) if hasattr(input_ids, "shape") else np.shape(input_ids)
    except ValueError:  # ragged lists
        shape = ()
    if len(shape) == 0:
        raise InvalidTypeError(f"`input_ids` has to be a (batch, length) array, got shape {shape}")
    return np.empty((batch, shape[-1]), np.int32)  # never read: only its length is


def apply_native(pipe: _native.Pipeline, input_ids: Any, scores: Any, copy: bool = False) -> Any:
    """Runs a native pipeline on user inputs (see the module docstring for in-place rules). Arrays the
    native layer takes as they are (float32 / int64 / int32, C-contiguous, writable scores) go straight
    through; anything else is converted first. ``copy=True``: the result is always a new array / tensor
    and `scores` is left unchanged (transformers' contract; the copy is made inside the native call)."""
    input_ids = _ids_for(pipe, input_ids, scores)
    if copy:
        # Fast path: a float32 host array the native layer reads as it is, into a new array (the native
        # call declines, returning False, whatever it cannot take as it is; the general path converts).
        if type(scores) is np.ndarray:
            if scores.dtype == np.float32 and scores.ndim == 2:
                out = np.empty(scores.shape, np.float32)
                if pipe.apply_into(input_ids, scores, out) or pipe.apply_into(as_ids(input_ids), scores, out):
                    return out
        elif is_torch(scores) and scores.ndim == 2 and in_place(scores):
            out = np.empty(tuple(scores.shape), np.float32)
            src = scores.numpy()
            if pipe.apply_into(input_ids, src, out) or pipe.apply_into(as_ids(input_ids), src, out):
                return to_like(out, scores)
    elif pipe(input_ids, scores):
        return scores
    work, back = as_scores(scores)
    if copy and in_place(scores):  # (defensive: the fast path takes every such array)
        work = work.copy()
        back = (lambda w: to_like(w, scores)) if is_torch(scores) else (lambda w: w)
    if not pipe(as_ids(input_ids), work):
        raise AssertionError("converted arrays were declined")  # as_scores / as_ids guarantee them
    return back(work)


def sample_native(
    pipe: _native.Pipeline, input_ids: Any, scores: Any, seed: int, step: int, write_scores: bool = True
) -> Any:
    """`apply_native`, then the sampler's draw from the processed scores (one native call)."""
    input_ids = _ids_for(pipe, input_ids, scores)
    tokens = pipe.sample(input_ids, scores, seed, step, write_scores)
    if tokens is not None:
        return tokens
    work, back = as_scores(scores)
    tokens = pipe.sample(as_ids(input_ids), work, seed, step, write_scores)
    if write_scores:
        back(work)  # in place when possible; a converted copy cannot be given back (documented)
    return tokens


class FastLogitsProcessor:
    """Base class: a configured native processor, callable on its own or combined in a
    :class:`fastlogits.LogitsPipeline`.

    Calls may come from several threads at once: a processor without history state runs them in parallel;
    one with history state (penalties, n-gram ban, bad words, sequence bias) serves them one at a time."""

    _spec: _native.Processor
    _pipe: _native.Pipeline | None = None
    #: True for the `fastlogits.hf` classes: return a new tensor, leave the input unchanged.
    _returns_new: bool = False

    def __new__(cls, *args: Any, **kwargs: Any):
        if cls is FastLogitsProcessor:
            raise InvalidTypeError("FastLogitsProcessor is a base class: use one of the processors")
        return super().__new__(cls)

    def native(self) -> _native.Processor:
        """The native processor (for building pipelines)."""
        return self._spec

    def _pipeline(self) -> _native.Pipeline:
        pipe = self._pipe
        if pipe is None:
            pipe = self._pipe = _native.Pipeline([self._spec])
        return pipe

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        """``input_ids`` may be None for processors that do not read the history (the warpers,
        ``LogitBias``, ``SuppressTokens``), as transformers allows."""
        return apply_native(self._pipeline(), input_ids, scores, copy=self._returns_new)

    def reset(self) -> None:
        """Forgets the histories seen so far."""
        if self._pipe is not None:
            self._pipe.reset()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._spec!r})"


class TemperatureLogitsWarper(FastLogitsProcessor):
    """``scores / temperature`` (in place; see the module docstring).

    ``temperature``: a float > 0 (a Python float, as transformers requires), or one float per row (list /
    1-D array). It must also be a normal float32 (about 1.2e-38 to 3.4e38): the division is done in float32.
    """

    def __init__(self, temperature: float | Sequence[float]):
        rows = per_row(temperature, "temperature")
        if rows is None and not isinstance(temperature, float):
            raise InvalidArgumentError(
                f"`temperature` (={temperature}) has to be a strictly positive float, otherwise your next "
                "token scores will be invalid."
            )
        self.temperature = temperature
        self._spec = _native.Processor.temperature(temperature if rows is None else rows)


class TopKLogitsWarper(FastLogitsProcessor):
    """Keeps the ``top_k`` highest scores and every score tied with the k-th; the rest become
    ``filter_value`` (in place). ``top_k``: an int > 0, or one per row."""

    def __init__(
        self, top_k: int | Sequence[int], filter_value: float = NEG_INF, min_tokens_to_keep: int = 1
    ):
        rows = per_row(top_k, "top_k")
        if rows is None and not isinstance(top_k, int):
            raise InvalidArgumentError(f"`top_k` has to be a strictly positive integer, but is {top_k}")
        if rows is not None and not all(is_int(k) for k in rows):
            raise InvalidArgumentError(f"`top_k` has to hold strictly positive integers, but is {rows}")
        if not isinstance(min_tokens_to_keep, (int, np.integer)):
            raise InvalidArgumentError(
                f"`min_tokens_to_keep` has to be an integer, but is {min_tokens_to_keep!r}"
            )
        self.top_k = max(top_k, min_tokens_to_keep) if rows is None else rows
        self.filter_value = filter_value
        self.min_tokens_to_keep = min_tokens_to_keep
        self._spec = _native.Processor.top_k(
            top_k if rows is None else rows,
            as_float(filter_value, "filter_value", "a float"),
            int(min_tokens_to_keep),
        )


class TopPLogitsWarper(FastLogitsProcessor):
    """Nucleus filtering: keeps the most likely tokens whose cumulative probability reaches ``top_p``
    (the token that crosses it included); the rest become ``filter_value`` (in place).

    A token is kept iff the probability mass ranked above it is < ``top_p``. Equal to transformers'
    mask except for a cumulative mass within ~1e-6 of ``1 - top_p`` and for exact ties at the boundary
    (kept here; arbitrary in torch's unstable sort). For ``1 - top_p < 1e-5`` (``top_p = 1`` included) the
    removed mass is summed from the least likely token up, as transformers does, so that ``top_p = 1``
    removes exactly the tokens whose float32 probability is 0. ``top_p``: a float in [0, 1], or one per
    row.
    """

    def __init__(
        self, top_p: float | Sequence[float], filter_value: float = NEG_INF, min_tokens_to_keep: int = 1
    ):
        rows = per_row(top_p, "top_p")
        if rows is None:
            top_p = as_float(top_p, "top_p", "a float > 0 and < 1")
        check_min_tokens(min_tokens_to_keep)
        self.top_p = top_p if rows is None else rows
        self.filter_value = filter_value
        self.min_tokens_to_keep = min_tokens_to_keep
        self._spec = _native.Processor.top_p(
            self.top_p, as_float(filter_value, "filter_value", "a float"), min_tokens_to_keep
        )


class MinPLogitsWarper(FastLogitsProcessor):
    """Removes tokens with ``prob < min_p * max_prob``, then re-keeps the ``min_tokens_to_keep`` most
    likely (in place). ``min_p``: a float in [0, 1], or one per row.

    Where the re-kept tokens have float32 probability 0 (logits ~100 below the maximum), transformers'
    ``topk`` over equal zeros picks arbitrary ones; fastlogits keeps the highest logits (same count)."""

    def __init__(
        self, min_p: float | Sequence[float], filter_value: float = NEG_INF, min_tokens_to_keep: int = 1
    ):
        rows = per_row(min_p, "min_p")
        value = scalar(min_p)
        if rows is None and not isinstance(value, (int, float, np.number)):  # (transformers: no float())
            raise InvalidArgumentError(f"`min_p` has to be a float in the [0, 1] interval, but is {min_p!r}")
        check_min_tokens(min_tokens_to_keep)
        self.min_p = min_p if rows is None else rows
        self.filter_value = filter_value
        self.min_tokens_to_keep = min_tokens_to_keep
        self._spec = _native.Processor.min_p(
            as_float(value, "min_p", "a float in the [0, 1] interval") if rows is None else rows,
            as_float(filter_value, "filter_value", "a float"),
            min_tokens_to_keep,
        )


class TypicalLogitsWarper(FastLogitsProcessor):
    """Locally typical sampling: keeps the tokens whose surprisal is closest to the entropy until their
    mass reaches ``mass`` (in place).

    For ``mass`` within ~1e-5 of 1, transformers' float32 cumulative sum over the whole sorted vocabulary
    is itself off by about that much, so the masks can then differ by tokens of that total mass."""

    def __init__(self, mass: float = 0.9, filter_value: float = NEG_INF, min_tokens_to_keep: int = 1):
        mass = as_float(mass, "typical_p", "a float > 0 and < 1")
        check_min_tokens(min_tokens_to_keep)
        self.mass = mass
        self.filter_value = filter_value
        self.min_tokens_to_keep = min_tokens_to_keep
        self._spec = _native.Processor.typical(
            mass, as_float(filter_value, "filter_value", "a float"), min_tokens_to_keep
        )


class TopHLogitsWarper(FastLogitsProcessor):
    """Top-H sampling (transformers 5.23, arXiv 2509.02510): among the 100 most likely tokens, keeps the most
    likely ones while their cumulative entropy ``-sum p ln p`` (``p`` renormalized over those 100) stays
    ``<= top_h`` times the entropy of the 100, and always the most likely one (in place).

    Where transformers' float32 sums put a token's cumulative entropy within rounding of the threshold, or
    values tie at the 100th place (``torch.topk``'s order among equal values is unspecified; fastlogits takes
    the lower id), the kept sets can differ by that token. A row that is all ``-inf`` is left as it is
    (transformers raises ``ValueError`` from ``torch.distributions.Categorical``'s validation)."""

    def __init__(self, top_h: float, filter_value: float = NEG_INF):
        top_h = as_float(top_h, "top_h", "a float in the range (0, 1]")
        self.top_h = top_h
        self.top_n = 100
        self.filter_value = filter_value
        self._spec = _native.Processor.top_h(top_h, as_float(filter_value, "filter_value", "a float"))


def _floats(value: Any, name: str, what: str) -> float | list[float]:
    """A float parameter, or one per row (each checked natively)."""
    rows = per_row(value, name)
    if rows is not None:
        return [as_float(v, name, what) for v in rows]
    return as_float(scalar(value), name, what)


class TopNSigmaLogitsWarper(FastLogitsProcessor):
    """Top-nσ (llama.cpp ``top_n_sigma``; Tang et al., "Top-nσ: Not All Logits Are You Need", arXiv
    2411.07641): tokens whose score is below ``max - n * sigma`` get ``filter_value`` (in place), sigma the
    standard deviation (population) of the row's finite scores. ``n``: a float > 0, or one per row. Rows with
    fewer than two finite scores are unchanged. No transformers counterpart.

    The kept set does not depend on the temperature (max and sigma scale alike) nor on a constant added to
    every score (the moments are taken about the row's first finite score). A score within rounding of the
    cut may be decided differently from llama.cpp's float32 sums."""

    def __init__(self, n: float | Sequence[float], filter_value: float = NEG_INF):
        self.n = _floats(n, "top_n_sigma", "a finite float > 0")
        self.filter_value = filter_value
        self._spec = _native.Processor.top_n_sigma(self.n, as_float(filter_value, "filter_value", "a float"))


class DynamicTemperatureLogitsWarper(FastLogitsProcessor):
    """Dynamic temperature (llama.cpp ``temp_ext``, "entropy-based sampling"): each row is divided by
    ``T_min + (T_max - T_min) * (H / ln N) ** exponent`` with ``T_min = max(0, temperature - dynatemp_range)``,
    ``T_max = temperature + dynatemp_range``, ``H`` the entropy of the row's softmax and ``N`` its number of
    finite scores (llama.cpp's candidates): confident rows get a low temperature, flat ones a high one (in
    place). ``dynatemp_range = 0`` is the plain temperature. Each argument: a float, or one per row.

    Where the temperature comes out 0 (or so small that dividing overflows float32), its limit is taken:
    the maximal scores are kept, the others set to ``-inf`` (llama.cpp divides by it). No transformers
    counterpart: in a generation config it replaces ``TemperatureLogitsWarper``."""

    def __init__(
        self,
        temperature: float | Sequence[float],
        dynatemp_range: float | Sequence[float],
        exponent: float | Sequence[float] = 1.0,
    ):
        self.temperature = _floats(temperature, "temperature", "a float in (0, 1.7e38]")
        self.dynatemp_range = _floats(dynatemp_range, "dynatemp_range", "a float in [0, 1.7e38]")
        self.exponent = _floats(exponent, "dynatemp_exponent", "a finite float >= 0")
        self._spec = _native.Processor.dynamic_temperature(
            self.temperature, self.dynatemp_range, self.exponent
        )


class XTCLogitsWarper(FastLogitsProcessor):
    """XTC, "exclude top choices" (llama.cpp ``xtc``, after kobold.cpp / text-generation-webui): with
    probability ``probability`` per row and step, every token whose probability is ``>= threshold`` is
    removed (set to ``-inf``) except the least probable of them; nothing happens when fewer than two
    qualify, or when fewer than ``min_tokens_to_keep`` tokens would remain (in place). ``threshold``,
    ``probability``: floats in [0, 1], or one per row (a threshold above 0.5 never applies: at most one
    token can reach it). No transformers counterpart.

    **Whether it applies** is drawn from the row's random stream, so it is reproducible: in a call that
    also draws the tokens (``LogitsPipeline.sample``, ``fastlogits.generate``), from the draw's stream at
    that step (its per-row keys included: a row decides the same wherever it sits in the batch); in a plain
    call, from ``(seed, row, history length)`` (``seed=None``: a fresh random seed), so a plain call needs
    ``input_ids`` (their length is the step). Among tokens tied at the
    least qualifying probability, the one with the highest id is kept (llama.cpp's sort leaves it open)."""

    def __init__(
        self,
        threshold: float | Sequence[float],
        probability: float | Sequence[float],
        min_tokens_to_keep: int = 1,
        seed: int | None = None,
    ):
        self.threshold = _floats(threshold, "xtc_threshold", "a float in [0, 1]")
        self.probability = _floats(probability, "xtc_probability", "a float in [0, 1]")
        check_min_tokens(min_tokens_to_keep)
        self.min_tokens_to_keep = min_tokens_to_keep
        self.seed = check_seed(seed)
        self._spec = _native.Processor.xtc(self.threshold, self.probability, min_tokens_to_keep, self.seed)


#: llama.cpp's default DRY sequence breakers.
DRY_SEQUENCE_BREAKERS = ("\n", ":", '"', "*")


def dry_sequence_breaker_ids(tokenizer: Any, breakers: Sequence[str] = DRY_SEQUENCE_BREAKERS) -> list[int]:
    """The ids of the tokens whose text contains one of ``breakers`` (default: llama.cpp's newline, ``:``,
    ``"``, ``*``), for :class:`DRYLogitsProcessor`'s ``sequence_breaker_ids``. ``tokenizer``: a transformers
    tokenizer (its ``batch_decode``). llama.cpp also treats a string split over several tokens as a
    multi-token breaker; fastlogits' breakers are single tokens."""
    if isinstance(breakers, str) or not all(isinstance(b, str) and b for b in breakers):
        raise InvalidArgumentError(
            f"`dry_sequence_breakers` has to be a list of non-empty strings, but is {breakers!r}"
        )
    vocab = len(tokenizer)
    texts = tokenizer.batch_decode([[i] for i in range(vocab)])
    return [i for i, text in enumerate(texts) if any(b in text for b in breakers)]


class DRYLogitsProcessor(FastLogitsProcessor):
    """DRY, "Don't Repeat Yourself" (llama.cpp ``dry``, after kobold.cpp): a token that would extend a repeat
    of an earlier part of the context loses ``multiplier * base ** (length - allowed_length)``, for repeats
    of ``length >= allowed_length`` tokens (in place). ``penalty_last_n``: how many of the last tokens count
    (-1: the whole history, 0: off). Repeats do not reach back past a sequence breaker
    (``sequence_breaker_ids``: token ids, see :func:`dry_sequence_breaker_ids`), and a breaker is never
    penalized. ``multiplier=0`` is off. No transformers counterpart.

    The row's repeats are kept up to date as its history grows (like the n-gram ban): a step costs
    O(earlier occurrences of the newest token), not O(history) or O(history²). The exponent is capped as
    llama.cpp caps it (``88.72 / ln(base)``)."""

    def __init__(
        self,
        multiplier: float,
        base: float = 1.75,
        allowed_length: int = 2,
        sequence_breaker_ids: Sequence[int] = (),
        penalty_last_n: int = -1,
    ):
        self.multiplier = as_float(multiplier, "dry_multiplier", "a float in [0, 3.4e38]")
        self.base = as_float(base, "dry_base", "a float in [1, 3.4e38]")
        for name, v in (("dry_allowed_length", allowed_length), ("dry_penalty_last_n", penalty_last_n)):
            if not is_int(v):
                raise InvalidArgumentError(f"`{name}` has to be an int, but is {v!r}")
        self.allowed_length = int(allowed_length)
        self.penalty_last_n = int(penalty_last_n)
        self.sequence_breaker_ids = token_list(sequence_breaker_ids, "sequence_breaker_ids")
        self._spec = _native.Processor.dry(
            self.multiplier, self.base, self.allowed_length, self.sequence_breaker_ids, self.penalty_last_n
        )


class EpsilonLogitsWarper(FastLogitsProcessor):
    """Removes tokens with ``prob < epsilon`` except the ``min_tokens_to_keep`` most likely (in place)."""

    def __init__(self, epsilon: float, filter_value: float = NEG_INF, min_tokens_to_keep: int = 1):
        epsilon = as_float(epsilon, "epsilon_cutoff", "a float > 0 and < 1")
        min_tokens_to_keep = int_min_tokens(min_tokens_to_keep)
        self.epsilon = epsilon
        self.filter_value = filter_value
        self.min_tokens_to_keep = min_tokens_to_keep
        self._spec = _native.Processor.epsilon(
            epsilon, as_float(filter_value, "filter_value", "a float"), min_tokens_to_keep
        )


class EtaLogitsWarper(FastLogitsProcessor):
    """Removes tokens with ``prob < min(epsilon, sqrt(epsilon) * exp(-entropy))`` except the
    ``min_tokens_to_keep`` most likely (in place). ``device`` is accepted for compatibility and unused."""

    def __init__(
        self, epsilon: float, filter_value: float = NEG_INF, min_tokens_to_keep: int = 1, device: str = "cpu"
    ):
        epsilon = as_float(epsilon, "eta_cutoff", "a float > 0 and < 1")
        min_tokens_to_keep = int_min_tokens(min_tokens_to_keep)
        self.epsilon = epsilon
        self.filter_value = filter_value
        self.min_tokens_to_keep = min_tokens_to_keep
        self._spec = _native.Processor.eta(
            epsilon, as_float(filter_value, "filter_value", "a float"), min_tokens_to_keep
        )


def _ignore_lengths(prompt_ignore_length: Any) -> Any:
    if prompt_ignore_length is None:
        return 0
    rows = per_row(prompt_ignore_length, "prompt_ignore_length")
    if rows is not None:
        if not all(is_int(n) for n in rows):
            raise InvalidArgumentError(
                f"`prompt_ignore_length` has to hold one integer per row, but is {prompt_ignore_length!r}"
            )
        return [int(n) for n in rows]
    value = scalar(prompt_ignore_length)
    if not is_int(value):
        raise InvalidArgumentError(
            f"`prompt_ignore_length` has to be an int or a 1-D tensor, but is {prompt_ignore_length!r}"
        )
    return int(value)


class RepetitionPenaltyLogitsProcessor(FastLogitsProcessor):
    """For every distinct token of the history: ``s < 0 ? s * penalty : s / penalty`` (in place).

    ``prompt_ignore_length``: the first positions to skip, an int or one per row (as ``generate`` passes
    the left-padding lengths). ``penalty``: a float > 0 (and a normal float32), or one per row.
    """

    def __init__(self, penalty: float | Sequence[float], prompt_ignore_length: Any = None):
        rows = per_row(penalty, "penalty")
        if rows is None and not isinstance(penalty, float):
            raise InvalidArgumentError(f"`penalty` has to be a strictly positive float, but is {penalty}")
        self.penalty = penalty if rows is None else rows
        self.prompt_ignore_length = prompt_ignore_length
        self._spec = _native.Processor.repetition_penalty(
            penalty if rows is None else rows, _ignore_lengths(prompt_ignore_length)
        )


class PresencePenaltyLogitsProcessor(FastLogitsProcessor):
    """OpenAI / vLLM presence penalty: ``scores[t] -= penalty`` for every token ``t`` generated so far
    (positions ``>= prompt_length``; the prompt does not count). ``penalty`` in [-2, 2]. Not in
    transformers."""

    def __init__(self, penalty: float, prompt_length: int):
        self.penalty = penalty
        self.prompt_length = prompt_length
        self._spec = _native.Processor.presence_penalty(
            as_float(penalty, "presence_penalty", "a float in [-2, 2]"), prompt_length
        )


class FrequencyPenaltyLogitsProcessor(FastLogitsProcessor):
    """OpenAI / vLLM frequency penalty: ``scores[t] -= penalty * count(t)`` over the generated tokens
    (positions ``>= prompt_length``). ``penalty`` in [-2, 2]. Not in transformers."""

    def __init__(self, penalty: float, prompt_length: int):
        self.penalty = penalty
        self.prompt_length = prompt_length
        self._spec = _native.Processor.frequency_penalty(
            as_float(penalty, "frequency_penalty", "a float in [-2, 2]"), prompt_length
        )


class NoRepeatNGramLogitsProcessor(FastLogitsProcessor):
    """Bans (``-inf``) every token that would repeat an n-gram of the history, prompt included.
    The n-gram index is kept per row and updated with each new token (cost per step independent of
    the history length)."""

    def __init__(self, ngram_size: int):
        if not isinstance(ngram_size, int):
            raise InvalidArgumentError(
                f"`ngram_size` has to be a strictly positive integer, but is {ngram_size}"
            )
        self.ngram_size = ngram_size
        self._spec = _native.Processor.no_repeat_ngram(ngram_size)


def _check_token_lists(lists: Any, name: str, what: str) -> None:
    if any(any((not is_int(t) or t < 0) for t in seq) for seq in lists):
        raise InvalidArgumentError(
            f"Each list in `{name}` has to be a list of positive integers, but is {what}."
        )


class SequenceBiasLogitsProcessor(FastLogitsProcessor):
    """Adds a bias to the last token of each sequence when the history ends with the others
    (single-token sequences: always). ``sequence_bias``: ``{tuple(ids): float}`` or
    ``[[ids, float], ...]``; biases must be floats, as in transformers (and within the float32 range, or
    ``-inf``). An empty id list in the list form is accepted and never applies (as in transformers)."""

    def __init__(self, sequence_bias: Any):
        self.sequence_bias = sequence_bias
        sb = sequence_bias
        if not isinstance(sb, (dict, list)) or len(sb) == 0:
            raise InvalidArgumentError(
                f"`sequence_bias` has to be a non-empty dictionary, or non-empty list of lists but is {sb}."
            )
        if isinstance(sb, dict):
            if any(not isinstance(k, tuple) for k in sb):
                raise InvalidArgumentError(
                    f"`sequence_bias` has to be a dict with tuples as keys, but is {sb}."
                )
            if any(any((not is_int(t) or t < 0) for t in k) or len(k) == 0 for k in sb):
                raise InvalidArgumentError(
                    "Each key in `sequence_bias` has to be a non-empty tuple of positive integers, but is "
                    f"{sb}."
                )
            if any(not isinstance(b, float) for b in sb.values()):
                raise InvalidArgumentError(
                    f"`sequence_bias` has to be a dict with floats as values, but is {sb}."
                )
            entries = [(list(map(int, k)), float(b)) for k, b in sb.items()]
        else:

            def valid(pair: Any) -> bool:
                # transformers reads pair[0] and pair[1] only (further items are ignored).
                return (
                    isinstance(pair, (list, tuple))
                    and len(pair) >= 2
                    and isinstance(pair[0], list)
                    and all(is_int(t) and t >= 0 for t in pair[0])
                    and isinstance(pair[1], float)
                )

            if any(not valid(p) for p in sb):
                raise InvalidArgumentError(
                    "Each element in `sequence_bias` has to be a non-empty list of lists of positive "
                    "integers "
                    f"and float, but is {sb}."
                )
            merged = {tuple(p[0]): p[1] for p in sb}
            entries = [(list(map(int, k)), float(b)) for k, b in merged.items()]
        self._spec = _native.Processor.sequence_bias(entries)


class NoBadWordsLogitsProcessor(FastLogitsProcessor):
    """Bans (``-inf``) the last token of each sequence of ``bad_words_ids`` when the history ends with the
    others. As in transformers, single tokens equal to an EOS id are not banned (so ``[[eos]]`` with
    ``eos_token_id=eos`` bans nothing), and an empty sequence never applies."""

    def __init__(self, bad_words_ids: list[list[int]], eos_token_id: Any = None):
        self.bad_word_ids = bad_words_ids
        if not isinstance(bad_words_ids, list) or len(bad_words_ids) == 0:
            raise InvalidArgumentError(f"`bad_words_ids` has to be a non-empty list, but is {bad_words_ids}.")
        if any(not isinstance(w, list) for w in bad_words_ids):
            raise InvalidArgumentError(f"`bad_words_ids` has to be a list of lists, but is {bad_words_ids}.")
        _check_token_lists(bad_words_ids, "bad_words_ids", str(bad_words_ids))
        eos = None if eos_token_id is None else token_list(eos_token_id, "eos_token_id")
        self._spec = _native.Processor.bad_words([list(map(int, w)) for w in bad_words_ids], eos)


class LogitBiasLogitsProcessor(FastLogitsProcessor):
    """Adds ``logit_bias[token]`` to every row (OpenAI ``logit_bias``; ``-inf`` bans). Not in transformers."""

    def __init__(self, logit_bias: dict[int, float]):
        if not isinstance(logit_bias, dict):
            raise InvalidArgumentError(
                f"`logit_bias` has to be a dict {{token_id: bias}}, but is {logit_bias!r}"
            )
        if any(not is_int(t) for t in logit_bias):
            raise InvalidArgumentError(
                f"`logit_bias` keys have to be token ids (ints), but are {list(logit_bias)}"
            )
        self.logit_bias = logit_bias
        self._spec = _native.Processor.logit_bias(
            [(int(t), as_float(b, "logit_bias", "a dict of float biases")) for t, b in logit_bias.items()]
        )


class MinLengthLogitsProcessor(FastLogitsProcessor):
    """EOS gets ``-inf`` while the history (prompt included) is shorter than ``min_length``. As in
    transformers, EOS ids outside the vocabulary match nothing. ``device`` is accepted for compatibility
    and unused."""

    def __init__(self, min_length: int, eos_token_id: Any, device: str = "cpu"):
        if not isinstance(min_length, int):
            raise InvalidArgumentError(f"`min_length` has to be a non-negative integer, but is {min_length}")
        self.min_length = min_length
        self.eos_token_id = token_list(eos_token_id, "eos_token_id")
        self._spec = _native.Processor.min_length(min_length, self.eos_token_id)


class MinNewTokensLengthLogitsProcessor(FastLogitsProcessor):
    """EOS gets ``-inf`` until ``min_new_tokens`` tokens follow the first ``prompt_length_to_skip``
    (EOS ids outside the vocabulary match nothing)."""

    def __init__(
        self, prompt_length_to_skip: int, min_new_tokens: int, eos_token_id: Any, device: str = "cpu"
    ):
        for name, value in [
            ("prompt_length_to_skip", prompt_length_to_skip),
            ("min_new_tokens", min_new_tokens),
        ]:
            if not isinstance(value, int):
                raise InvalidArgumentError(f"`{name}` has to be a positive integer, but is {value}")
        self.prompt_length_to_skip = prompt_length_to_skip
        self.min_new_tokens = min_new_tokens
        self.eos_token_id = token_list(eos_token_id, "eos_token_id")
        self._spec = _native.Processor.min_new_tokens(
            prompt_length_to_skip, min_new_tokens, self.eos_token_id
        )


class SuppressTokensLogitsProcessor(FastLogitsProcessor):
    """``suppress_tokens`` get ``-inf`` at every step (ids outside the vocabulary suppress nothing)."""

    def __init__(self, suppress_tokens: Any, device: str = "cpu"):
        self.suppress_tokens = token_iterable(suppress_tokens, "suppress_tokens")
        self._spec = _native.Processor.suppress_tokens(self.suppress_tokens)


class SuppressTokensAtBeginLogitsProcessor(FastLogitsProcessor):
    """``begin_suppress_tokens`` get ``-inf`` at the step where the history length is ``begin_index``
    (transformers compares without validating: a negative or non-integral index never matches)."""

    def __init__(self, begin_suppress_tokens: Any, begin_index: int, device: str = "cpu"):
        self.begin_suppress_tokens = token_iterable(begin_suppress_tokens, "begin_suppress_tokens")
        self.set_begin_index(begin_index)

    def set_begin_index(self, begin_index: int) -> None:
        self.begin_index = begin_index
        value = scalar(begin_index)
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            value = int(value)
        index = int(value) if is_int(value) or isinstance(value, bool) else -1  # -1: never
        self._spec = _native.Processor.suppress_tokens_at_begin(self.begin_suppress_tokens, index)
        self._pipe = None


class ExponentialDecayLengthPenalty(FastLogitsProcessor):
    """After ``start`` new tokens, raises the EOS score by ``|s| * (factor ** (n - start) - 1)``.
    ``exponential_decay_length_penalty`` is ``(start, factor)`` (further items are ignored, a fractional
    start is kept, as in transformers)."""

    def __init__(
        self,
        exponential_decay_length_penalty: tuple[int, float],
        eos_token_id: Any,
        input_ids_seq_length: int,
    ):
        try:
            start, factor = exponential_decay_length_penalty[0], exponential_decay_length_penalty[1]
        except (TypeError, IndexError, KeyError):
            raise InvalidArgumentError(
                "`exponential_decay_length_penalty` has to be a (start, factor) tuple, but is "
                f"{exponential_decay_length_penalty!r}"
            ) from None
        start = as_float(start, "exponential_decay_length_penalty", "a (start, factor) tuple of numbers")
        factor = as_float(factor, "exponential_decay_length_penalty", "a (start, factor) tuple of numbers")
        length = as_float(input_ids_seq_length, "input_ids_seq_length", "a number")
        self.regulation_start = start + length
        self.regulation_factor = factor
        if is_torch(eos_token_id) and eos_token_id.is_floating_point():
            raise InvalidArgumentError(
                f"`eos_token_id` has to be a list of positive integers, but is {eos_token_id}"
            )
        self.eos_token_id = token_list(eos_token_id, "eos_token_id")
        self._spec = _native.Processor.exponential_decay(start, factor, self.eos_token_id, length)
