"""`LogitsPipeline`: a chain of processors applied in one native call per step."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from . import _native
from ._arrays import is_torch, to_like
from ._validate import check_seed, check_step, token_list
from .errors import InvalidArgumentError, InvalidTypeError
from .processors import (
    EpsilonLogitsWarper,
    EtaLogitsWarper,
    ExponentialDecayLengthPenalty,
    FastLogitsProcessor,
    FrequencyPenaltyLogitsProcessor,
    LogitBiasLogitsProcessor,
    MinLengthLogitsProcessor,
    MinNewTokensLengthLogitsProcessor,
    MinPLogitsWarper,
    NoBadWordsLogitsProcessor,
    NoRepeatNGramLogitsProcessor,
    PresencePenaltyLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    SequenceBiasLogitsProcessor,
    SuppressTokensAtBeginLogitsProcessor,
    SuppressTokensLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
    TypicalLogitsWarper,
    apply_native,
    sample_native,
)

__all__ = ["LogitsPipeline", "GENERATION_DEFAULTS", "check_generation_values"]

# transformers 5.23 `GenerationConfig._get_default_generation_params()`: what `generate` uses for a
# field left unset (None) by the user and the model's generation config.
GENERATION_DEFAULTS: dict[str, Any] = {
    "max_length": 20,
    "min_length": 0,
    "do_sample": False,
    "num_beams": 1,
    "temperature": 1.0,
    "top_k": 50,
    "top_p": 1.0,
    "typical_p": 1.0,
    "repetition_penalty": 1.0,
    "length_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "encoder_no_repeat_ngram_size": 0,
    "bad_words_ids": None,
    "num_return_sequences": 1,
    "forced_bos_token_id": None,
    "forced_eos_token_id": None,
    "remove_invalid_values": False,
    "exponential_decay_length_penalty": None,
    "suppress_tokens": None,
    "begin_suppress_tokens": None,
    "epsilon_cutoff": 0.0,
    "eta_cutoff": 0.0,
    "encoder_repetition_penalty": 1.0,
}

# Fields that select logits processors fastlogits does not implement: setting one is an error, never
# silently ignored. (value that means "unset" -> message)
_UNSUPPORTED: dict[str, tuple[Any, ...]] = {
    "guidance_scale": (None, 1, 1.0),
    "forced_bos_token_id": (None,),
    "forced_eos_token_id": (None,),
    "remove_invalid_values": (None, False),
    "renormalize_logits": (None, False),
    "top_h": (None,),
    "watermarking_config": (None,),
    "constraints": (None,),
    "force_words_ids": (None,),
    "penalty_alpha": (None, 0, 0.0),
    "dola_layers": (None,),
}

# Extensions beyond transformers, accepted as keyword arguments only.
_EXTENSIONS = ("presence_penalty", "frequency_penalty", "logit_bias")


# Sampling settings transformers 5.23 silently skips when out of range (its condition is `top_p < 1.0`,
# `0.0 < epsilon_cutoff < 1.0`, ...: top_p = 1.7 or NaN, epsilon_cutoff = -1 build nothing). fastlogits
# rejects them, in `from_generation_config` and in `fastlogits.generate` alike: (off values, lo, hi, lo
# included, what the message says).
_SAMPLING_RANGES: dict[str, tuple[tuple[float, ...], float, float, bool, str]] = {
    "top_p": ((1.0,), 0.0, 1.0, True, "a float in [0, 1] (1: off)"),
    "typical_p": ((1.0,), 0.0, 1.0, False, "a float in (0, 1] (1: off)"),
    "epsilon_cutoff": ((0.0,), 0.0, 1.0, False, "a float in [0, 1) (0: off)"),
    "eta_cutoff": ((0.0,), 0.0, 1.0, False, "a float in [0, 1) (0: off)"),
}


def _get(cfg: Any, name: str) -> Any:
    return cfg.get(name) if isinstance(cfg, dict) else getattr(cfg, name, None)


def check_generation_values(cfg: Any) -> None:
    """The checks fastlogits adds to transformers' for a generation configuration (a dict or a
    ``GenerationConfig``), applied by :meth:`LogitsPipeline.from_generation_config` and
    :func:`fastlogits.generate`: ``num_beams`` >= 1, and, when sampling, ``top_p`` / ``typical_p`` /
    ``epsilon_cutoff`` / ``eta_cutoff`` either off or in their processor's range (transformers would
    silently skip the warper). Raises ``InvalidArgumentError`` naming the setting."""
    beams = _get(cfg, "num_beams")
    if beams is not None and (
        not isinstance(beams, (int, np.integer)) or isinstance(beams, bool) or beams < 1
    ):
        raise InvalidArgumentError(f"`num_beams` has to be a positive integer, but is {beams!r}")
    try:
        sampling = bool(_get(cfg, "do_sample"))
    except (TypeError, ValueError):
        raise InvalidArgumentError(
            f"`do_sample` has to be a bool, but is {_get(cfg, 'do_sample')!r}"
        ) from None
    if not sampling:
        return
    for name, (off, lo, hi, lo_in, what) in _SAMPLING_RANGES.items():
        value = _get(cfg, name)
        if value is None:
            continue
        try:
            per_row = (isinstance(value, (list, tuple, np.ndarray)) or is_torch(value)) and np.ndim(value) > 0
        except ValueError:  # a ragged list
            raise InvalidArgumentError(f"`{name}` has to be {what}, but is {value!r}") from None
        if per_row and name != "top_p":  # (only top_p takes one value per row)
            raise InvalidArgumentError(
                f"`{name}` has to be {what} (one value for the batch), but is {value!r}"
            )
        values = list(value) if per_row else [value]
        for v in values:
            try:
                x = float(v)
            except (TypeError, ValueError, OverflowError):
                raise InvalidArgumentError(f"`{name}` has to be {what}, but is {value!r}") from None
            inside = (lo <= x if lo_in else lo < x) and x < hi
            if not (inside or x in off):
                raise InvalidArgumentError(f"`{name}` has to be {what}, but is {value!r}")


def _resolve(generation_config: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Effective generation parameters, in transformers' order: the config's unset (None) fields take
    the global defaults, then keyword arguments override, an explicit ``None`` included (so
    ``top_k=None`` disables top-k, as in ``generate``)."""
    cfg: dict[str, Any] = {}
    if generation_config is not None:
        if isinstance(generation_config, dict):
            cfg.update(generation_config)
        elif hasattr(generation_config, "__dict__"):
            cfg.update({k: v for k, v in vars(generation_config).items() if not k.startswith("_")})
        else:
            raise InvalidTypeError(
                "`generation_config` has to be a transformers.GenerationConfig, a dict or None, but is "
                f"{type(generation_config).__name__}"
            )
    for k, v in GENERATION_DEFAULTS.items():
        if cfg.get(k) is None:
            cfg[k] = v
    cfg.update(kwargs)
    return cfg


def _eos_list(eos: Any) -> list[int] | None:
    return None if eos is None else token_list(eos, "eos_token_id")


def _not_one(value: Any, name: str = "value") -> bool:
    """transformers' `value != 1.0`, also for per-row lists (any row differs)."""
    if isinstance(value, (list, tuple, np.ndarray)) or is_torch(value):
        try:
            return bool(np.any(np.asarray(value, dtype=np.float64) != 1.0))
        except (TypeError, ValueError):
            raise InvalidArgumentError(
                f"`{name}` has to be a number or one number per row, but is {value!r}"
            ) from None
    return value != 1.0


def _count(cfg: dict[str, Any], name: str) -> int | None:
    """An integer setting (None: unset)."""
    value = cfg.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidArgumentError(f"`{name}` has to be an integer, but is {value!r}")
    return int(value)


def _padding_lengths(attention_mask: Any) -> list[int]:
    """Left-padding length per row: `(mask != 0).argmax(-1)`, as `generate` computes it."""
    if is_torch(attention_mask):
        attention_mask = attention_mask.detach().cpu().numpy()
    try:
        mask = np.asarray(attention_mask)
    except ValueError:  # ragged lists
        raise InvalidArgumentError("`attention_mask` has to be a (batch, length) array") from None
    if mask.ndim != 2:
        raise InvalidArgumentError(f"`attention_mask` must be 2-D (batch, length), got shape {mask.shape}")
    return (mask != 0).argmax(axis=1).astype(np.int64).tolist()


class LogitsPipeline:
    """Processors applied in order by one native call: in place over the ``(batch, vocab)`` scores, GIL
    released, rows in parallel, history state updated incrementally.

    ``pipeline(input_ids, scores) -> scores`` follows the in-place rules of
    :mod:`fastlogits.processors`. Equal to calling the processors one after another.
    """

    def __init__(self, processors: Iterable[FastLogitsProcessor]):
        try:
            self._processors = list(processors)
        except TypeError:
            raise InvalidTypeError(
                f"LogitsPipeline takes a list of fastlogits processors, got {type(processors).__name__}"
            ) from None
        for p in self._processors:
            if not isinstance(p, FastLogitsProcessor):
                raise InvalidArgumentError(
                    f"LogitsPipeline takes fastlogits processors, got {type(p).__name__}"
                )
        self._pipe = _native.Pipeline([p.native() for p in self._processors])

    @property
    def processors(self) -> list[FastLogitsProcessor]:
        return list(self._processors)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        return apply_native(self._pipe, input_ids, scores)

    def sample(
        self,
        input_ids: Any,
        scores: Any,
        *,
        seed: int | None = None,
        step: int = 0,
        write_scores: bool = True,
    ) -> Any:
        """Processes ``scores`` (as calling the pipeline does) and draws one token per row from the result:
        the tokens ``fastlogits.sample(pipeline(input_ids, scores), seed=seed, step=step)`` gives, in one
        native call and one pass over the scores less (the kept tokens are drawn from directly).

        ``write_scores=False``: only the tokens are wanted (a decoding loop that does not return the
        processed scores). ``scores`` is then scratch space and its content afterwards is unspecified; rows
        whose kept set is small (after top-k / top-p / ...) are not written out at all, which saves a write
        of the whole buffer. The tokens are the same either way. Bad input still leaves ``scores``
        unchanged.

        A row the processors leave all ``-inf`` raises ``InvalidArgumentError`` after the scores have been
        processed. With inputs that need converting (see :mod:`fastlogits.processors`) the processed
        scores are not given back: call the pipeline, then :func:`fastlogits.sample`, to get them."""
        tokens = sample_native(
            self._pipe, input_ids, scores, check_seed(seed), check_step(step), bool(write_scores)
        )
        return to_like(tokens, scores) if is_torch(scores) else tokens

    def reset(self) -> None:
        """Forgets the histories seen so far (the next call rebuilds every row's state)."""
        self._pipe.reset()

    def reorder(self, beam_idx: Sequence[int] | Any) -> None:
        """After a beam step: row ``i`` continues the history of row ``beam_idx[i]`` (keeps the
        incremental state valid, like reordering a KV cache)."""
        if is_torch(beam_idx) or isinstance(beam_idx, np.ndarray):
            beam_idx = beam_idx.tolist()
        self._pipe.reorder(beam_idx)

    def __len__(self) -> int:
        return len(self._processors)

    def __iter__(self):
        return iter(self._processors)

    def __repr__(self) -> str:
        inner = ", ".join(type(p).__name__ for p in self._processors)
        return f"LogitsPipeline([{inner}])"

    @classmethod
    def from_generation_config(
        cls,
        generation_config: Any = None,
        *,
        input_ids_seq_length: int | None = None,
        attention_mask: Any = None,
        logits_processor: Sequence[FastLogitsProcessor] | None = None,
        **kwargs: Any,
    ) -> LogitsPipeline:
        """The processors, in the order, that transformers' ``generate()`` builds
        (``GenerationMixin._get_logits_processor``) for this configuration.

        ``generation_config``: a ``transformers.GenerationConfig``, a dict, or None; keyword arguments
        override its fields, and fields left unset take transformers' defaults: ``do_sample=True``
        implies ``top_k=50`` unless ``top_k=0`` or ``top_k=None`` is passed explicitly.

        ``input_ids_seq_length``: the prompt length (needed by ``min_new_tokens``,
        ``exponential_decay_length_penalty``, ``begin_suppress_tokens``, ``presence_penalty`` and
        ``frequency_penalty``). ``attention_mask``: the prompt's mask; its left padding is skipped by the
        repetition penalty, as in ``generate``. ``logits_processor``: custom fastlogits processors; one
        of the same class as a built one replaces it, the others are appended before the sampling
        warpers (transformers' merge rule).

        Beyond transformers: ``presence_penalty``, ``frequency_penalty`` (after the repetition penalty)
        and ``logit_bias``; per-row lists for ``temperature``, ``top_k``, ``top_p``, ``min_p`` and
        ``repetition_penalty``. Settings that select processors fastlogits does not implement
        (``guidance_scale``, ``forced_bos_token_id``, ``renormalize_logits``, ``watermarking_config``, ...)
        raise ``InvalidArgumentError`` naming them.
        """
        extensions = {k: kwargs.pop(k) for k in _EXTENSIONS if k in kwargs}
        cfg = _resolve(generation_config, kwargs)
        check_generation_values(cfg)
        for name, unset in _UNSUPPORTED.items():
            value = cfg.get(name)
            if not any(value is u or (u is not None and value == u) for u in unset):
                raise InvalidArgumentError(
                    f"`{name}={value!r}` selects a logits processor that fastlogits does not implement"
                )
        eos = _eos_list(cfg.get("eos_token_id"))
        prompt_len = input_ids_seq_length
        if prompt_len is not None and (not isinstance(prompt_len, (int, np.integer)) or prompt_len < 0):
            raise InvalidArgumentError(
                f"`input_ids_seq_length` has to be the prompt length (an int >= 0), but is {prompt_len!r}"
            )

        def need_prompt_len(what: str) -> int:
            if prompt_len is None:
                raise InvalidArgumentError(f"`{what}` needs `input_ids_seq_length` (the prompt length)")
            return int(prompt_len)

        procs: list[FastLogitsProcessor] = []
        if cfg.get("sequence_bias") is not None:
            procs.append(SequenceBiasLogitsProcessor(cfg["sequence_bias"]))
        if cfg.get("encoder_repetition_penalty") not in (None, 1.0):
            warnings.warn(
                "`encoder_repetition_penalty` needs encoder inputs: GPT-2 has none; ignoring the argument "
                "(as transformers does).",
                UserWarning,
                stacklevel=2,
            )
        if cfg.get("repetition_penalty") is not None and _not_one(
            cfg["repetition_penalty"], "repetition_penalty"
        ):
            ignore = None if attention_mask is None else _padding_lengths(attention_mask)
            procs.append(
                RepetitionPenaltyLogitsProcessor(cfg["repetition_penalty"], prompt_ignore_length=ignore)
            )
        if extensions.get("frequency_penalty") not in (None, 0, 0.0):
            procs.append(
                FrequencyPenaltyLogitsProcessor(
                    extensions["frequency_penalty"], need_prompt_len("frequency_penalty")
                )
            )
        if extensions.get("presence_penalty") not in (None, 0, 0.0):
            procs.append(
                PresencePenaltyLogitsProcessor(
                    extensions["presence_penalty"], need_prompt_len("presence_penalty")
                )
            )
        if extensions.get("logit_bias"):
            procs.append(LogitBiasLogitsProcessor(extensions["logit_bias"]))
        if (_count(cfg, "no_repeat_ngram_size") or 0) > 0:
            procs.append(NoRepeatNGramLogitsProcessor(cfg["no_repeat_ngram_size"]))
        if cfg.get("encoder_no_repeat_ngram_size") not in (None, 0):
            warnings.warn(
                "`encoder_no_repeat_ngram_size` needs encoder inputs: GPT-2 has none; ignoring the argument "
                "(as transformers does).",
                UserWarning,
                stacklevel=2,
            )
        if cfg.get("bad_words_ids") is not None:
            procs.append(NoBadWordsLogitsProcessor(cfg["bad_words_ids"], eos))
        if (_count(cfg, "min_length") or 0) > 0 and eos is not None:
            procs.append(MinLengthLogitsProcessor(cfg["min_length"], eos))
        if (_count(cfg, "min_new_tokens") or 0) > 0 and eos is not None:
            procs.append(
                MinNewTokensLengthLogitsProcessor(
                    need_prompt_len("min_new_tokens"), cfg["min_new_tokens"], eos
                )
            )
        if cfg.get("exponential_decay_length_penalty") is not None:
            if eos is None:
                raise InvalidArgumentError("`exponential_decay_length_penalty` needs `eos_token_id`")
            procs.append(
                ExponentialDecayLengthPenalty(
                    cfg["exponential_decay_length_penalty"],
                    eos,
                    need_prompt_len("exponential_decay_length_penalty"),
                )
            )
        if cfg.get("suppress_tokens") is not None:
            procs.append(SuppressTokensLogitsProcessor(cfg["suppress_tokens"]))
        if cfg.get("begin_suppress_tokens") is not None:
            procs.append(
                SuppressTokensAtBeginLogitsProcessor(
                    cfg["begin_suppress_tokens"], need_prompt_len("begin_suppress_tokens")
                )
            )
        procs = _merge(procs, list(logits_processor or []))

        if cfg.get("do_sample"):
            num_beams = cfg.get("num_beams") or 1
            min_keep = (len(eos) + 1 if eos is not None else 2) if num_beams > 1 else 1
            # transformers' conditions; `check_generation_values` has rejected what they would skip.
            if cfg.get("temperature") is not None and _not_one(cfg["temperature"], "temperature"):
                # An int other than 1 is rejected, as `generate` rejects it.
                procs.append(TemperatureLogitsWarper(cfg["temperature"]))
            top_k = cfg.get("top_k")
            if top_k is not None and (not isinstance(top_k, (int, float)) or top_k != 0):
                procs.append(TopKLogitsWarper(top_k, min_tokens_to_keep=min_keep))
            if cfg.get("top_p") is not None and _not_one(cfg["top_p"], "top_p"):
                procs.append(TopPLogitsWarper(cfg["top_p"], min_tokens_to_keep=min_keep))
            if cfg.get("min_p") is not None:
                procs.append(MinPLogitsWarper(cfg["min_p"], min_tokens_to_keep=min_keep))
            if cfg.get("typical_p") is not None and cfg["typical_p"] != 1.0:
                procs.append(TypicalLogitsWarper(cfg["typical_p"], min_tokens_to_keep=min_keep))
            if cfg.get("epsilon_cutoff") is not None and cfg["epsilon_cutoff"] != 0.0:
                procs.append(EpsilonLogitsWarper(cfg["epsilon_cutoff"], min_tokens_to_keep=min_keep))
            if cfg.get("eta_cutoff") is not None and cfg["eta_cutoff"] != 0.0:
                procs.append(EtaLogitsWarper(cfg["eta_cutoff"], min_tokens_to_keep=min_keep))
        return cls(procs)


def _merge(
    defaults: list[FastLogitsProcessor], custom: list[FastLogitsProcessor]
) -> list[FastLogitsProcessor]:
    """transformers' `_merge_criteria_processor_list`: a custom processor replaces the built one of the
    same class; the remaining custom ones are appended."""
    if not custom:
        return defaults
    out = [next((c for c in custom if type(c) is type(d)), d) for d in defaults]
    out += [c for c in custom if not any(c is o for o in out)]
    return out
