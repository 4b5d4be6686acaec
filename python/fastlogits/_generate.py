"""`fastlogits.generate`: ``model.generate`` with the per-step work (logits processors, token choice, beam
bookkeeping) done natively.

Everything before the decoding loop is transformers' own code: ``fastlogits.generate`` calls
``model.generate(..., custom_generate=<fastlogits loop>)``, so the generation config is resolved, validated
and defaulted exactly as ``generate`` does it (the model's generation config, ``max_new_tokens``,
attention mask, position ids, expansion for ``num_return_sequences`` / ``num_beams``, the ``DynamicCache``,
the processor list and the stopping criteria). The loop then runs GPT-2 forward passes with that cache and
passes exactly the inputs ``generate`` would pass, so the logits are bit-identical; the processors
``generate`` built are converted to one native call per step (:class:`fastlogits.hf.NativeChain`).

Greedy and beam search give the same tokens as ``model.generate``. Sampling draws from the same
distribution, but with fastlogits' counter-based generator: ``seed=`` makes it reproducible (torch's global
RNG is not used).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from transformers.generation.stopping_criteria import EosTokenCriteria, MaxLengthCriteria
from transformers.generation.utils import (
    GenerateBeamDecoderOnlyOutput,
    GenerateDecoderOnlyOutput,
    GenerationMode,
)

from . import _native
from ._native import InvalidArgumentError
from .hf import NativeChain
from .pipeline import check_generation_values
from .sampling import _seed

__all__ = ["generate", "stream"]

_SUPPORTED_MODES = {
    GenerationMode.GREEDY_SEARCH,
    GenerationMode.SAMPLE,
    GenerationMode.BEAM_SEARCH,
    GenerationMode.BEAM_SAMPLE,
}
_MODE_ARGS = {
    GenerationMode.CONTRASTIVE_SEARCH: "`penalty_alpha` with `top_k`",
    GenerationMode.GROUP_BEAM_SEARCH: "`num_beam_groups`",
    GenerationMode.CONSTRAINED_BEAM_SEARCH: "`constraints` / `force_words_ids`",
    GenerationMode.ASSISTED_GENERATION: "`prompt_lookup_num_tokens` / `use_mtp` / `assistant_early_exit`",
    GenerationMode.DOLA_GENERATION: "`dola_layers`",
}


def generate(
    model,
    input_ids: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    generation_config: Any = None,
    *,
    seed: int | None = None,
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
    fresh seed. ``streamer``: a transformers streamer (``TextStreamer``...) fed the prompt, then each new token
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
    seed: int | None = None,
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
    decoder = _decoder(seed=seed, streamer=streamer)
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


def _decoder(seed: int | None, streamer: Any):
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
        )

    return fastlogits_decode


class _Decoding:
    """The state of one generation: the prompt and config as ``generate`` prepared them, then the loop."""

    def __init__(
        self, model, input_ids, logits_processor, stopping_criteria, cfg, model_kwargs, seed, streamer
    ):
        mode = cfg.get_generation_mode()
        if mode not in _SUPPORTED_MODES:
            raise InvalidArgumentError(
                f"{_MODE_ARGS.get(mode, 'these arguments')} select {getattr(mode, 'value', mode)}, which "
                "fastlogits.generate does not implement (supported: greedy, sampling, beam search, beam sampling)"
            )
        # transformers silently skips out-of-range sampling settings; a typo should not go unnoticed (the
        # rule LogitsPipeline.from_generation_config applies too).
        check_generation_values(cfg)
        n_pos = getattr(model.config, "n_positions", None) or getattr(
            model.config, "max_position_embeddings", None
        )
        if n_pos is not None and cfg.max_length > n_pos:
            raise InvalidArgumentError(
                f"the prompt ({input_ids.shape[1]} tokens) plus the new tokens can reach max_length = "
                f"{cfg.max_length}, beyond the model's n_positions = {n_pos}: shorten the prompt or lower "
                "`max_new_tokens` / `max_length`"
            )
        self.model = model
        self.cfg = cfg
        self.num_beams = cfg.num_beams or 1
        if self.num_beams > 1 and streamer is not None:
            raise ValueError(
                "`streamer` cannot be used with beam search (yet!). Make sure that `num_beams` is set to 1."
            )
        if model_kwargs.get("token_type_ids") is not None:
            raise InvalidArgumentError("`token_type_ids` is not supported by fastlogits.generate")
        self.device = input_ids.device
        self.prompt = input_ids
        self.chain = NativeChain(logits_processor)
        self.criteria = list(stopping_criteria)
        self.seed = _seed(seed)
        self.streamer = streamer
        self.mask = model_kwargs.pop("attention_mask", None)
        self.position_ids = model_kwargs.pop("position_ids", None)
        self.cache = model_kwargs.pop("past_key_values", None)
        self.use_cache = model_kwargs.pop("use_cache", True)
        self.logits_to_keep = model_kwargs.pop("logits_to_keep", None)
        self.extra = model_kwargs  # forwarded unchanged (output_attentions, ...)
        self.result = None

    # -- the forward pass, with exactly the inputs `prepare_inputs_for_generation` builds -----------------

    def _forward(self, ids: torch.Tensor):
        """Logits of the last position for `ids` (the whole prompt first, then one token per row)."""
        model_inputs: dict[str, Any] = {"input_ids": ids}
        if self.cache is not None:
            model_inputs["past_key_values"] = self.cache
        if self.position_ids is not None:
            pos = self.position_ids
            model_inputs["position_ids"] = pos if pos.shape[-1] == ids.shape[1] else pos[..., -ids.shape[1] :]
        if self.mask is not None:
            model_inputs["attention_mask"] = self.mask
        model_inputs["use_cache"] = self.use_cache
        if self.logits_to_keep is not None:
            model_inputs["logits_to_keep"] = self.logits_to_keep
        model_inputs.update(self.extra)
        dev = self.model.device
        if dev.type != "meta" and ids.device != dev:
            model_inputs = {
                k: (v.to(dev) if isinstance(v, torch.Tensor) else v) for k, v in model_inputs.items()
            }
        out = self.model(**model_inputs, return_dict=True)
        if self.use_cache:
            self.cache = out.past_key_values
        return out

    def _advance_inputs(self) -> None:
        """`_update_model_kwargs_for_generation`: one more position per row."""
        if self.position_ids is not None:
            self.position_ids = torch.cat([self.position_ids, self.position_ids[..., -1:] + 1], dim=-1)
        if self.mask is not None:
            self.mask = torch.cat([self.mask, self.mask.new_ones((self.mask.shape[0], 1))], dim=-1)

    # -- running ------------------------------------------------------------------------------------------

    def run(self):
        for _ in self.steps():
            pass
        return self.result

    def steps(self) -> Iterator[torch.Tensor]:
        if self.num_beams > 1:
            yield from self._beam_steps()
        else:
            yield from self._sample_steps()

    def _stop_flags(self, ids: np.ndarray, cur: int, scores: tuple | None) -> np.ndarray:
        """Which rows hit a stopping criterion with their last token (the `StoppingCriteriaList`)."""
        done = np.zeros(ids.shape[0], dtype=bool)
        ids_t = None
        for c in self.criteria:
            if type(c) is MaxLengthCriteria:
                if cur >= c.max_length:
                    done[:] = True
            elif type(c) is EosTokenCriteria:
                done |= np.isin(ids[:, cur - 1], c.eos_token_id.cpu().numpy())
            else:
                if ids_t is None:
                    ids_t = torch.from_numpy(np.ascontiguousarray(ids[:, :cur]))
                done |= c(ids_t, scores).cpu().numpy().astype(bool)
        return done

    def _sample_steps(self) -> Iterator[torch.Tensor]:
        cfg = self.cfg
        prompt = self.prompt.cpu().numpy()
        B, L0 = prompt.shape
        max_len = max(cfg.max_length, L0)
        ids = np.empty((B, max_len), dtype=np.int64)
        ids[:, :L0] = prompt
        cur = L0
        pad = cfg._pad_token_tensor
        pad = int(pad) if pad is not None else None
        has_eos_criteria = any(hasattr(c, "eos_token_id") for c in self.criteria)
        unfinished = np.ones(B, dtype=bool)
        want = cfg.return_dict_in_generate
        scores = () if want and cfg.output_scores else None
        raw = () if want and cfg.output_logits else None
        attentions = () if want and cfg.output_attentions else None
        hidden = () if want and cfg.output_hidden_states else None
        step_ids = self.prompt
        step = 0
        if self.streamer is not None:
            self.streamer.put(self.prompt.cpu())  # what `generate` gives a streamer first
        while True:
            with torch.no_grad():
                out = self._forward(step_ids if self.use_cache else torch.from_numpy(ids[:, :cur]))
                logits = out.logits[:, -1].to(copy=True, dtype=torch.float32, device="cpu")
            if raw is not None:
                raw += (logits.clone(),)
            if attentions is not None:
                attentions += (out.attentions,)
            if hidden is not None:
                hidden += (out.hidden_states,)
            del out
            work = logits.numpy()
            history = np.ascontiguousarray(ids[:, :cur])
            if cfg.do_sample:
                # The processed scores are only kept for output_scores; otherwise `work` is scratch.
                nxt = self.chain.sample(history, work, self.seed, step, write_scores=scores is not None)
            else:
                self.chain(history, work)
                nxt = _native.greedy(work, False)
            if scores is not None:
                scores += (logits,)
            if has_eos_criteria:
                nxt = np.where(unfinished, nxt, pad)
            ids[:, cur] = nxt
            cur += 1
            step += 1
            unfinished &= ~self._stop_flags(ids, cur, scores)
            tokens = torch.from_numpy(nxt)
            if self.streamer is not None:
                self.streamer.put(tokens)
            yield tokens
            if not unfinished.any() or cur >= max_len:
                break
            step_ids = tokens[:, None].to(self.device)
            self._advance_inputs()
        if self.streamer is not None:
            self.streamer.end()
        sequences = torch.from_numpy(ids[:, :cur].copy()).to(self.device)
        if want:
            self.result = GenerateDecoderOnlyOutput(
                sequences=sequences,
                scores=scores,
                logits=raw,
                attentions=attentions,
                hidden_states=hidden,
                past_key_values=self.cache,
            )
        else:
            self.result = sequences

    def _beam_steps(self) -> Iterator[torch.Tensor]:
        """`_beam_search`: log_softmax, the processors on the running sequences, then the native
        bookkeeping; the KV cache and the processors' per-row state follow the chosen beams."""
        from .beam import BeamSearch

        cfg = self.cfg
        K = self.num_beams
        custom = [c for c in self.criteria if type(c) not in (MaxLengthCriteria, EosTokenCriteria)]
        if custom:
            raise InvalidArgumentError(
                f"with num_beams > 1 fastlogits stops on EOS and max_length only; got {type(custom[0]).__name__} "
                "(from `stop_strings`, `max_time` or `stopping_criteria`)"
            )
        eos = cfg._eos_token_tensor
        pad = cfg._pad_token_tensor
        search = BeamSearch(
            self.prompt[::K].cpu().numpy(),  # generate already expanded the prompt to B * K rows
            K,
            max_length=cfg.max_length,
            length_penalty=cfg.length_penalty,
            early_stopping=cfg.early_stopping,
            num_return_sequences=cfg.num_return_sequences,
            eos_token_id=None if eos is None else eos.tolist(),
            pad_token_id=None if pad is None else int(pad),
            do_sample=bool(cfg.do_sample),
            seed=self.seed,
        )
        want = cfg.return_dict_in_generate
        scores = () if want and cfg.output_scores else None
        raw = () if want and cfg.output_logits else None
        attentions = () if want and cfg.output_attentions else None
        hidden = () if want and cfg.output_hidden_states else None
        step_ids = self.prompt
        while True:
            with torch.no_grad():
                out = self._forward(
                    step_ids if self.use_cache else torch.from_numpy(search.running_sequences())
                )
                logits = out.logits[:, -1].to(copy=True, dtype=torch.float32, device="cpu")
                # torch's own log_softmax, bit for bit what `_beam_search` ranks.
                log_probs = torch.nn.functional.log_softmax(logits, dim=-1)
            if raw is not None:
                raw += (logits,)
            if attentions is not None:
                attentions += (out.attentions,)
            if hidden is not None:
                hidden += (out.hidden_states,)
            del out
            work = log_probs.numpy()
            self.chain(search.running_sequences(), work)
            if scores is not None:
                scores += (log_probs.clone(),)
            next_tokens, beam_idx, done = search.step(work)
            yield torch.from_numpy(next_tokens)
            if done:
                break
            if self.cache is not None:
                self.cache.reorder_cache(torch.from_numpy(beam_idx).to(self.model.device))
            self.chain.reorder(beam_idx)
            step_ids = torch.from_numpy(next_tokens)[:, None].to(self.device)
            self._advance_inputs()
        sequences, sequences_scores, beam_indices = search.finalize()
        sequences = torch.from_numpy(sequences).to(self.device)
        if want:
            self.result = GenerateBeamDecoderOnlyOutput(
                sequences=sequences,
                sequences_scores=torch.from_numpy(sequences_scores) if cfg.output_scores else None,
                scores=scores,
                logits=raw,
                beam_indices=torch.from_numpy(beam_indices).to(torch.int32),  # transformers' dtype
                attentions=attentions,
                hidden_states=hidden,
                past_key_values=self.cache,
            )
        else:
            self.result = sequences
