"""`LogitsPipeline`: a chain of processors applied in one native call per step."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np

from . import _native
from ._arrays import is_torch, to_like
from ._validate import check_seeds, check_step, per_row, token_list
from .errors import InvalidArgumentError, InvalidTypeError
from .processors import (
    DRYLogitsProcessor,
    DynamicTemperatureLogitsWarper,
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
    TopHLogitsWarper,
    TopKLogitsWarper,
    TopNSigmaLogitsWarper,
    TopPLogitsWarper,
    TypicalLogitsWarper,
    XTCLogitsWarper,
    apply_native,
    dry_sequence_breaker_ids,
    sample_native,
)

__all__ = [
    "LogitsPipeline",
    "EXTENSIONS",
    "check_extensions",
    "mirostat_sampler",
    "resolve_dry_breakers",
    "GENERATION_DEFAULTS",
    "build_chain",
    "check_generation_values",
    "encoder_settings",
    "resolve_settings",
    "unsupported_setting",
]

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

# Fields that select logits processors the builder (`build_chain`) does not implement: in
# `from_generation_config` setting one is an error, never silently ignored; `fastlogits.generate` then runs the
# list transformers built. (values that mean "unset")
_UNSUPPORTED: dict[str, tuple[Any, ...]] = {
    "guidance_scale": (None, 1, 1.0),
    "forced_bos_token_id": (None,),
    "forced_eos_token_id": (None,),
    "remove_invalid_values": (None, False),
    "renormalize_logits": (None, False),
    "watermarking_config": (None,),
    "constraints": (None,),
    "force_words_ids": (None,),
    "penalty_alpha": (None, 0, 0.0),
    "dola_layers": (None,),
}

# Fields whose processors read encoder input ids (values that mean "off"): `from_generation_config` has none and
# ignores them with a warning; `generate` gives transformers the prompt as encoder input ids, so its list has them
# and runs as built.
_ENCODER_SETTINGS: dict[str, tuple[Any, ...]] = {
    "encoder_repetition_penalty": (None, 1.0),
    "encoder_no_repeat_ngram_size": (None, 0),
}

# Settings beyond transformers (generation-config keys fastlogits adds), accepted as keyword arguments by
# `LogitsPipeline.from_generation_config` and `fastlogits.generate` (which takes them out before transformers'
# `generate` sees them: it would reject them as model inputs).
EXTENSIONS = (
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "top_n_sigma",
    "dynatemp_range",
    "dynatemp_exponent",
    "xtc_threshold",
    "xtc_probability",
    "dry_multiplier",
    "dry_base",
    "dry_allowed_length",
    "dry_sequence_breakers",
    "dry_penalty_last_n",
    "mirostat",
    "mirostat_tau",
    "mirostat_eta",
)


# A setting that only means something with its switch: given without the switch (absent, not 0 = off, as
# llama.cpp's full parameter sets have it), it would be ignored silently: an error instead.
_NEEDS_SWITCH = {
    "xtc_threshold": "xtc_probability",
    "dynatemp_exponent": "dynatemp_range",
    "dry_base": "dry_multiplier",
    "dry_allowed_length": "dry_multiplier",
    "dry_sequence_breakers": "dry_multiplier",
    "dry_penalty_last_n": "dry_multiplier",
    "mirostat_tau": "mirostat",
    "mirostat_eta": "mirostat",
}


def check_extensions(extensions: dict[str, Any]) -> None:
    """The fastlogits settings given: each dependent one with its switch (see ``_NEEDS_SWITCH``)."""
    for name, switch in _NEEDS_SWITCH.items():
        if extensions.get(name) is not None and extensions.get(switch) is None:
            raise InvalidArgumentError(
                f"`{name}` is set but `{switch}` is not: set `{switch}` too (0 is off)"
            )


def resolve_dry_breakers(extensions: dict[str, Any], tokenizer: Any) -> None:
    """``dry_sequence_breakers`` as token ids (in place): strings are looked up with ``tokenizer``; with DRY on
    and no breakers given, llama.cpp's defaults where a tokenizer is at hand (else none)."""
    if extensions.get("dry_multiplier") in (None, 0, 0.0):
        return
    given = extensions.get("dry_sequence_breakers")
    if given is None:
        if tokenizer is not None:
            extensions["dry_sequence_breakers"] = dry_sequence_breaker_ids(tokenizer)
        return
    if isinstance(given, str):
        given = [given]
    strings = [b for b in given if isinstance(b, str)]
    if not strings:
        return
    if len(strings) != len(given):
        raise InvalidArgumentError("`dry_sequence_breakers` has to be all strings or all token ids")
    if tokenizer is None:
        raise InvalidArgumentError(
            "`dry_sequence_breakers` as strings needs `tokenizer=` (or give token ids)"
        )
    extensions["dry_sequence_breakers"] = dry_sequence_breaker_ids(tokenizer, strings)


# The extensions that choose the draw stage (a sampler), not a processor of the chain.
SAMPLER_EXTENSIONS = ("mirostat", "mirostat_tau", "mirostat_eta")


def mirostat_sampler(extensions: dict[str, Any]) -> Any:
    """The :class:`fastlogits.MirostatV2Sampler` the settings ask for (``mirostat=2``), or None (``mirostat``
    unset or 0); ``mirostat_tau`` (default 5) / ``mirostat_eta`` (default 0.1) without it are an error."""
    from .sampling import MirostatV2Sampler

    mode = extensions.get("mirostat")
    if mode in (None, 0):
        return None
    if isinstance(mode, bool) or mode != 2:
        raise InvalidArgumentError(f"`mirostat` has to be 0 (off) or 2 (Mirostat 2.0), but is {mode!r}")
    tau, eta = extensions.get("mirostat_tau"), extensions.get("mirostat_eta")
    return MirostatV2Sampler(5.0 if tau is None else tau, 0.1 if eta is None else eta)


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
        seed: Any = None,
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
        scores are not given back: call the pipeline, then :func:`fastlogits.sample`, to get them.
        ``seed``: as :func:`fastlogits.sample` (an int, or one key per row)."""
        tokens = sample_native(
            self._pipe, input_ids, scores, check_seeds(seed), check_step(step), bool(write_scores)
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
        (``GenerationMixin._get_logits_processor``) for this configuration: :func:`build_chain`, the
        builder ``fastlogits.generate`` uses too.

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
        extensions = {k: kwargs.pop(k) for k in EXTENSIONS if k in kwargs}
        check_extensions(extensions)
        resolve_dry_breakers(extensions, kwargs.pop("tokenizer", None))
        if mirostat_sampler(extensions) is not None:
            raise InvalidArgumentError(
                "`mirostat=2` chooses the draw, not a logits processor: process with this pipeline, then draw "
                "with fastlogits.MirostatV2Sampler (fastlogits.generate does both)"
            )
        cfg = resolve_settings(generation_config, kwargs)
        check_generation_values(cfg)
        name = unsupported_setting(cfg)
        if name is not None:
            raise InvalidArgumentError(
                f"`{name}={cfg.get(name)!r}` selects a logits processor that fastlogits does not implement"
            )
        for name in encoder_settings(cfg):
            warnings.warn(
                f"`{name}` needs encoder inputs: GPT-2 has none; ignoring the argument (as transformers "
                "does).",
                UserWarning,
                stacklevel=2,
            )
        prompt_len = input_ids_seq_length
        if prompt_len is not None and (not isinstance(prompt_len, (int, np.integer)) or prompt_len < 0):
            raise InvalidArgumentError(
                f"`input_ids_seq_length` has to be the prompt length (an int >= 0), but is {prompt_len!r}"
            )
        return cls(
            build_chain(
                cfg,
                eos_token_id=cfg.get("eos_token_id"),
                input_ids_seq_length=prompt_len,
                attention_mask=attention_mask,
                logits_processor=list(logits_processor or []),
                extensions=extensions,
            )
        )


# -- the chain transformers builds: one builder, used by `LogitsPipeline.from_generation_config` and by
# `fastlogits.generate` -----------------------------------------------------------------------------------


def resolve_settings(
    generation_config: Any, kwargs: dict[str, Any] | None = None, *, defaults: bool = True
) -> dict[str, Any]:
    """Effective generation parameters, in transformers' order: the config's unset (None) fields take
    the global defaults, then keyword arguments override, an explicit ``None`` included (so
    ``top_k=None`` disables top-k, as in ``generate``). ``defaults=False``: the config is one ``generate``
    has resolved already; its None fields stay None (off), as ``_get_logits_processor`` reads them."""
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
    if defaults:
        for k, v in GENERATION_DEFAULTS.items():
            if cfg.get(k) is None:
                cfg[k] = v
    cfg.update(kwargs or {})
    return cfg


def _is_set(value: Any, unset: tuple[Any, ...]) -> bool:
    return not any(value is u or (u is not None and value == u) for u in unset)


def unsupported_setting(cfg: dict[str, Any]) -> str | None:
    """The first of the resolved settings ``cfg`` that selects a processor the builder does not implement
    (``_UNSUPPORTED``), or None."""
    return next((name for name, unset in _UNSUPPORTED.items() if _is_set(cfg.get(name), unset)), None)


def encoder_settings(cfg: dict[str, Any]) -> list[str]:
    """The set settings whose processors read encoder input ids (the builder never builds them:
    ``from_generation_config`` has no encoder inputs; ``generate`` gives transformers the prompt as encoder
    input ids, so its list includes them)."""
    return [name for name, unset in _ENCODER_SETTINGS.items() if _is_set(cfg.get(name), unset)]


class _Settings:
    """What the rules read: the resolved settings, the extensions, the EOS ids, the prompt length and the
    attention mask. Missing values that a selected processor needs raise ``InvalidArgumentError``."""

    def __init__(
        self,
        cfg: dict[str, Any],
        extensions: dict[str, Any],
        eos: list[int] | None,
        prompt_len: int | None,
        attention_mask: Any,
    ):
        self.cfg, self.extensions, self.eos = cfg, extensions, eos
        self._prompt_len, self._mask = prompt_len, attention_mask

    def __getitem__(self, name: str) -> Any:
        return self.cfg.get(name)

    def ext(self, name: str, default: Any = None) -> Any:
        """A fastlogits setting (``default`` when unset)."""
        value = self.extensions.get(name)
        return default if value is None else value

    def ext_on(self, name: str) -> bool:
        """A fastlogits switch set to something other than 0 (a per-row list counts as on)."""
        value = self.extensions.get(name)
        return value is not None and (per_row(value, name) is not None or value != 0)

    def count(self, name: str) -> int:
        """An integer setting, 0 when unset."""
        return _count(self.cfg, name) or 0

    def not_one(self, name: str) -> bool:
        """transformers' ``value is not None and value != 1.0`` (also for per-row lists)."""
        return self.cfg.get(name) is not None and _not_one(self.cfg[name], name)

    def prompt_len(self, what: str) -> int:
        if self._prompt_len is None:
            raise InvalidArgumentError(f"`{what}` needs `input_ids_seq_length` (the prompt length)")
        return int(self._prompt_len)

    def eos_for(self, what: str) -> list[int]:
        if self.eos is None:
            raise InvalidArgumentError(f"`{what}` needs `eos_token_id`")
        return self.eos

    def padding(self) -> list[int] | None:
        """The left padding of each row, skipped by the repetition penalty (as in `generate`)."""
        return None if self._mask is None else _padding_lengths(self._mask)

    def min_keep(self) -> int:
        """The warpers' ``min_tokens_to_keep``: with beams, one token more than the EOS ids (a
        continuation besides EOS), else 1."""
        if (self.cfg.get("num_beams") or 1) > 1:
            return len(self.eos) + 1 if self.eos is not None else 2
        return 1


class _Rule(NamedTuple):
    """One processor of the chain: built when ``when(settings)`` holds, as ``cls(**args(settings))``."""

    cls: type[FastLogitsProcessor]
    when: Callable[[_Settings], bool]
    args: Callable[[_Settings], dict[str, Any]]


def _top_k_on(s: _Settings) -> bool:
    top_k = s["top_k"]
    return top_k is not None and (not isinstance(top_k, (int, float)) or top_k != 0)


# transformers 5.23 `GenerationMixin._get_logits_processor`, in its order: the processors it builds always
# (before the user's processors are merged in), then, when sampling, the warpers. Its rows fastlogits does not
# implement are in `_UNSUPPORTED` (and `_ENCODER_SETTINGS`); the extensions come after the repetition penalty.
# The conditions are transformers' (`check_generation_values` has rejected the out-of-range values for which
# transformers' `top_p < 1.0`, `0.0 < epsilon_cutoff < 1.0`, ... differ from "not off").
_PROCESSOR_RULES: tuple[_Rule, ...] = (
    _Rule(
        SequenceBiasLogitsProcessor,
        lambda s: s["sequence_bias"] is not None,
        lambda s: dict(sequence_bias=s["sequence_bias"]),
    ),
    _Rule(
        RepetitionPenaltyLogitsProcessor,
        lambda s: s.not_one("repetition_penalty"),
        lambda s: dict(penalty=s["repetition_penalty"], prompt_ignore_length=s.padding()),
    ),
    _Rule(
        FrequencyPenaltyLogitsProcessor,
        lambda s: s.ext("frequency_penalty") not in (None, 0, 0.0),
        lambda s: dict(penalty=s.ext("frequency_penalty"), prompt_length=s.prompt_len("frequency_penalty")),
    ),
    _Rule(
        PresencePenaltyLogitsProcessor,
        lambda s: s.ext("presence_penalty") not in (None, 0, 0.0),
        lambda s: dict(penalty=s.ext("presence_penalty"), prompt_length=s.prompt_len("presence_penalty")),
    ),
    # DRY with the penalties (llama.cpp's chain: penalties, then dry).
    _Rule(
        DRYLogitsProcessor,
        lambda s: s.ext_on("dry_multiplier"),
        lambda s: dict(
            multiplier=s.ext("dry_multiplier"),
            base=s.ext("dry_base", 1.75),
            allowed_length=s.ext("dry_allowed_length", 2),
            sequence_breaker_ids=s.ext("dry_sequence_breakers", ()),
            penalty_last_n=s.ext("dry_penalty_last_n", -1),
        ),
    ),
    _Rule(
        LogitBiasLogitsProcessor,
        lambda s: bool(s.ext("logit_bias")),
        lambda s: dict(logit_bias=s.ext("logit_bias")),
    ),
    _Rule(
        NoRepeatNGramLogitsProcessor,
        lambda s: s.count("no_repeat_ngram_size") > 0,
        lambda s: dict(ngram_size=s["no_repeat_ngram_size"]),
    ),
    _Rule(
        NoBadWordsLogitsProcessor,
        lambda s: s["bad_words_ids"] is not None,
        lambda s: dict(bad_words_ids=s["bad_words_ids"], eos_token_id=s.eos),
    ),
    _Rule(
        MinLengthLogitsProcessor,
        lambda s: s.count("min_length") > 0 and s.eos is not None,
        lambda s: dict(min_length=s["min_length"], eos_token_id=s.eos),
    ),
    _Rule(
        MinNewTokensLengthLogitsProcessor,
        lambda s: s.count("min_new_tokens") > 0 and s.eos is not None,
        lambda s: dict(
            prompt_length_to_skip=s.prompt_len("min_new_tokens"),
            min_new_tokens=s["min_new_tokens"],
            eos_token_id=s.eos,
        ),
    ),
    _Rule(
        ExponentialDecayLengthPenalty,
        lambda s: s["exponential_decay_length_penalty"] is not None,
        lambda s: dict(
            exponential_decay_length_penalty=s["exponential_decay_length_penalty"],
            eos_token_id=s.eos_for("exponential_decay_length_penalty"),
            input_ids_seq_length=s.prompt_len("exponential_decay_length_penalty"),
        ),
    ),
    _Rule(
        SuppressTokensLogitsProcessor,
        lambda s: s["suppress_tokens"] is not None,
        lambda s: dict(suppress_tokens=s["suppress_tokens"]),
    ),
    _Rule(
        # begin_index: the prompt length (transformers adds 1 only with `forced_bos_token_id`, unsupported).
        SuppressTokensAtBeginLogitsProcessor,
        lambda s: s["begin_suppress_tokens"] is not None,
        lambda s: dict(
            begin_suppress_tokens=s["begin_suppress_tokens"],
            begin_index=s.prompt_len("begin_suppress_tokens"),
        ),
    ),
)


# The warpers fastlogits adds go where the documented order puts them (ARCHITECTURE.md): dynamic
# temperature replaces the temperature (first: the scale every later warper sees); top-nσ right after top-h,
# before the truncations (its sigma is over the whole row's finite scores, as llama.cpp applies it before top-k).
_WARPER_RULES: tuple[_Rule, ...] = (
    # An int temperature other than 1 is rejected by the processor, as `generate` rejects it.
    _Rule(
        TemperatureLogitsWarper,
        lambda s: s.not_one("temperature") and not s.ext_on("dynatemp_range"),
        lambda s: dict(temperature=s["temperature"]),
    ),
    _Rule(
        DynamicTemperatureLogitsWarper,
        lambda s: s.ext_on("dynatemp_range"),
        lambda s: dict(
            temperature=1.0 if s["temperature"] is None else s["temperature"],
            dynatemp_range=s.ext("dynatemp_range"),
            exponent=s.ext("dynatemp_exponent", 1.0),
        ),
    ),
    _Rule(
        TopHLogitsWarper,
        lambda s: s["top_h"] is not None,
        lambda s: dict(top_h=s["top_h"]),
    ),
    _Rule(
        TopNSigmaLogitsWarper,
        lambda s: s.ext("top_n_sigma") is not None,
        lambda s: dict(n=s.ext("top_n_sigma")),
    ),
    _Rule(
        TopKLogitsWarper,
        _top_k_on,
        lambda s: dict(top_k=s["top_k"], min_tokens_to_keep=s.min_keep()),
    ),
    _Rule(
        TopPLogitsWarper,
        lambda s: s.not_one("top_p"),
        lambda s: dict(top_p=s["top_p"], min_tokens_to_keep=s.min_keep()),
    ),
    _Rule(
        MinPLogitsWarper,
        lambda s: s["min_p"] is not None,
        lambda s: dict(min_p=s["min_p"], min_tokens_to_keep=s.min_keep()),
    ),
    _Rule(
        TypicalLogitsWarper,
        lambda s: s["typical_p"] is not None and s["typical_p"] != 1.0,
        lambda s: dict(mass=s["typical_p"], min_tokens_to_keep=s.min_keep()),
    ),
    _Rule(
        EpsilonLogitsWarper,
        lambda s: s["epsilon_cutoff"] is not None and s["epsilon_cutoff"] != 0.0,
        lambda s: dict(epsilon=s["epsilon_cutoff"], min_tokens_to_keep=s.min_keep()),
    ),
    _Rule(
        EtaLogitsWarper,
        lambda s: s["eta_cutoff"] is not None and s["eta_cutoff"] != 0.0,
        lambda s: dict(epsilon=s["eta_cutoff"], min_tokens_to_keep=s.min_keep()),
    ),
    # XTC last: it removes the top choices of the candidates the truncations left (llama.cpp's order). Its
    # draws come from the sampler's streams (a call without a draw, e.g. beam search's: seed 0).
    _Rule(
        XTCLogitsWarper,
        lambda s: s.ext_on("xtc_probability"),
        lambda s: dict(
            threshold=s.ext("xtc_threshold", 0.1),
            probability=s.ext("xtc_probability"),
            min_tokens_to_keep=s.min_keep(),
            seed=0,
        ),
    ),
)


def _same_type(custom: Any, default: FastLogitsProcessor) -> bool:
    return type(custom) is type(default)


def build_chain(
    cfg: dict[str, Any],
    *,
    eos_token_id: Any = None,
    input_ids_seq_length: int | None = None,
    attention_mask: Any = None,
    logits_processor: Sequence[Any] = (),
    same_class: Callable[[Any, FastLogitsProcessor], bool] = _same_type,
    extensions: dict[str, Any] | None = None,
) -> list[Any]:
    """The chain transformers' ``generate`` builds (``_get_logits_processor``) for the resolved settings
    ``cfg`` (:func:`resolve_settings`; the caller has checked them with :func:`check_generation_values`
    and :func:`unsupported_setting`): fastlogits processors, in transformers' order, from the tables
    ``_PROCESSOR_RULES`` and ``_WARPER_RULES``.

    ``logits_processor``: the caller's own processors, merged as transformers merges them
    (``_merge_criteria_processor_list``: one for which ``same_class(custom, built)`` holds replaces the
    built one, the others are appended), before the sampling warpers; they are returned as given
    (``LogitsPipeline`` needs fastlogits processors; ``fastlogits.generate`` converts transformers' own
    with ``to_native``). ``same_class``: ``type(custom) is type(built)`` by default; ``generate`` compares
    with the transformers class of the same name. ``extensions``: ``presence_penalty``,
    ``frequency_penalty``, ``logit_bias`` (not in transformers)."""
    eos = None if eos_token_id is None else token_list(eos_token_id, "eos_token_id")
    s = _Settings(cfg, extensions or {}, eos, input_ids_seq_length, attention_mask)
    chain: list[Any] = [r.cls(**r.args(s)) for r in _PROCESSOR_RULES if r.when(s)]
    chain = _merge(chain, list(logits_processor), same_class)
    if cfg.get("do_sample"):
        chain += [r.cls(**r.args(s)) for r in _WARPER_RULES if r.when(s)]
    return chain


def _merge(
    defaults: list[Any], custom: list[Any], same_class: Callable[[Any, Any], bool] = _same_type
) -> list[Any]:
    """transformers' `_merge_criteria_processor_list`: a custom processor replaces the built one of the
    same class (the first such custom one); the custom ones not in the result yet are appended."""
    if not custom:
        return defaults
    out = [next((c for c in custom if same_class(c, d)), d) for d in defaults]
    for c in custom:
        if c not in out:
            out.append(c)
    return out
