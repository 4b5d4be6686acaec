"""`fastlogits.generate`: ``model.generate`` with the per-step work (logits processors, token choice, beam
bookkeeping) done natively.

Everything before the decoding loop is transformers' own code: ``fastlogits.generate`` calls
``model.generate(..., custom_generate=<fastlogits loop>)``, so the generation config is resolved, validated
and defaulted exactly as ``generate`` does it (the model's generation config, ``max_new_tokens``,
attention mask, position ids, expansion for ``num_return_sequences`` / ``num_beams``, the ``DynamicCache``,
the processor list and the stopping criteria). The loop then runs GPT-2 forward passes with that cache and
passes exactly the inputs ``generate`` would pass, so the logits are bit-identical. The processors are built
from the resolved config, the prompt length and the attention mask by the one builder of the chain
transformers builds (``fastlogits.pipeline.build_chain``, also behind ``LogitsPipeline.from_generation_config``),
with the ``logits_processor=`` entries merged in as transformers merges them, and run as one native call per
step (:class:`fastlogits.transformers.NativeChain`). Where the config selects processors fastlogits does not
implement (``guidance_scale``, ``forced_eos_token_id``, ``renormalize_logits``, ...), the list ``generate``
built runs instead, those processors as transformers' own.

Greedy and beam search give the same tokens as ``model.generate``. Sampling draws from the same
distribution, but with fastlogits' counter-based generator: ``seed=`` makes it reproducible (torch's global
RNG is not used).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from ..errors import InvalidArgumentError
from ..pipeline import (
    EXTENSIONS,
    check_extensions,
    check_generation_values,
    mirostat_sampler,
    resolve_dry_breakers,
)
from ._loop import _Decoding

__all__ = ["generate", "stream", "decode"]


def generate(
    model,
    input_ids: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    generation_config: Any = None,
    *,
    seed: Any = None,
    streamer: Any = None,
    **kwargs: Any,
):
    """``model.generate(input_ids, attention_mask=..., generation_config=..., **kwargs)`` computed by
    fastlogits; returns what ``model.generate`` returns (a LongTensor of sequences, or a
    ``GenerateDecoderOnlyOutput`` / ``GenerateBeamDecoderOnlyOutput`` with ``return_dict_in_generate``).

    ``model``: a transformers ``GPT2LMHeadModel`` (any decoder-only causal LM with a ``DynamicCache`` works the
    same way; fastlogits is tested with GPT-2). Supported modes: greedy, sampling, beam search, beam sampling,
    with every logits-processor argument of ``generate`` (processors fastlogits does not implement run as
    transformers' own, in order). ``logits_processor=``, ``stopping_criteria=``, ``stop_strings=`` (with
    ``tokenizer=``), ``output_scores`` / ``output_logits`` / ``output_attentions`` / ``output_hidden_states``
    are honoured. ``seed``: makes sampling reproducible (the same tokens at any thread count); None draws a
    fresh seed; a sequence of ints, one per prompt (e.g. :func:`fastlogits.sampling.stream_key` of an
    example's id), gives each prompt a stream of its own, so its tokens do not depend on the batch it is
    in (with ``num_return_sequences = n``, prompt ``i``'s sequences use ``seed[i]``, then
    ``stream_key(seed[i], k)`` for k = 1..n-1). ``streamer``: a transformers streamer (``TextStreamer``...) fed the prompt, then each new token
    (greedy and sampling). Arguments ``generate`` does not know are rejected by ``generate``'s own validation;
    generation modes fastlogits does not implement (assisted, contrastive, group or constrained beam search)
    raise ``InvalidArgumentError`` naming them.
    """
    return _start(model, input_ids, attention_mask, generation_config, seed, streamer, kwargs).run()


def stream(
    model,
    input_ids: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    generation_config: Any = None,
    *,
    seed: Any = None,
    **kwargs: Any,
) -> Iterator[torch.Tensor]:
    """Like :func:`generate` (greedy or sampling), but yields each step's new tokens, a ``(batch,)`` LongTensor
    (finished rows get the pad token), as soon as they are decided."""
    decoding = _start(model, input_ids, attention_mask, generation_config, seed, None, kwargs)
    if decoding.num_beams > 1:
        raise InvalidArgumentError("streaming needs num_beams=1: beam search decides tokens only at the end")
    yield from decoding.steps()


def _start(model, input_ids, attention_mask, generation_config, seed, streamer, kwargs) -> _Decoding:
    check_generation_values(kwargs)  # before transformers' own handling (again on the merged config)
    if getattr(getattr(model, "config", None), "is_encoder_decoder", False):
        raise InvalidArgumentError(
            "fastlogits.generate drives decoder-only models (GPT-2); got an encoder-decoder"
        )
    for name in ("assistant_model", "prefix_allowed_tokens_fn", "custom_generate", "synced_gpus"):
        if kwargs.get(name) is not None:
            raise InvalidArgumentError(f"`{name}` is not supported by fastlogits.generate")
    if "inputs" in kwargs:
        if input_ids is not None:
            raise InvalidArgumentError("pass the prompt once: `input_ids` or `inputs`, not both")
        input_ids = kwargs.pop("inputs")
    if input_ids is not None and input_ids.ndim == 2 and input_ids.shape[1] == 0:
        raise InvalidArgumentError("`input_ids` is empty: give at least one prompt token")
    if (
        attention_mask is not None
        and input_ids is not None
        and tuple(attention_mask.shape) != tuple(input_ids.shape)
    ):
        raise InvalidArgumentError(
            f"`attention_mask` has shape {tuple(attention_mask.shape)} but `input_ids` has "
            f"{tuple(input_ids.shape)}: they must be equal"
        )
    # Settings transformers does not have (its generate would reject them as model inputs): the builder's.
    extensions = {k: kwargs.pop(k) for k in EXTENSIONS if k in kwargs}
    check_extensions(extensions)
    mirostat_sampler(extensions)  # (its settings checked before transformers prepares anything)
    resolve_dry_breakers(extensions, kwargs.get("tokenizer"))
    # The user's own processors: the native chain is built from the config with them merged in (`_Decoding`).
    decoder = _decoder(
        seed=seed,
        streamer=streamer,
        user_processors=kwargs.get("logits_processor") or [],
        extensions=extensions,
    )
    # transformers prepares everything and hands the loop to `decoder`, which returns a lazy _Decoding.
    decoding = model.generate(
        input_ids,
        generation_config=generation_config,
        attention_mask=attention_mask,
        custom_generate=decoder,
        **kwargs,
    )
    assert isinstance(decoding, _Decoding)
    return decoding


def _decoder(seed: Any, streamer: Any, user_processors: Any = None, extensions: dict[str, Any] | None = None):
    def fastlogits_decode(
        model,
        input_ids,
        logits_processor,
        stopping_criteria,
        generation_config,
        tokenizer=None,
        **model_kwargs,
    ):
        return _Decoding(
            model,
            input_ids,
            logits_processor,
            stopping_criteria,
            generation_config,
            model_kwargs,
            seed,
            streamer,
            user_processors,
            extensions,
        )

    return fastlogits_decode


def decode(
    model, input_ids, logits_processor, stopping_criteria, generation_config, tokenizer=None, **model_kwargs
):
    """``custom_generate`` hook: ``model.generate(..., custom_generate=fastlogits.hf.decode)`` keeps the
    ``generate`` call and runs its decoding loop in fastlogits (see :func:`fastlogits.generate`)."""
    return _decoder(seed=None, streamer=None)(
        model,
        input_ids,
        logits_processor,
        stopping_criteria,
        generation_config,
        tokenizer=tokenizer,
        **model_kwargs,
    ).run()
