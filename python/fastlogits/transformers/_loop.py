"""The decoding loop of :func:`fastlogits.generate`: transformers prepares the inputs and the config, this
runs the steps (forward pass with the cache, the processors in one native call, the token choice or the
beam bookkeeping) and assembles what ``generate`` returns."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import transformers.generation.logits_process as T
from transformers import DynamicCache
from transformers.generation.stopping_criteria import EosTokenCriteria, MaxLengthCriteria
from transformers.generation.utils import (
    GenerateBeamDecoderOnlyOutput,
    GenerateDecoderOnlyOutput,
    GenerationMode,
)

from .. import _native
from .._validate import check_seeds
from ..beam import BeamSearch
from ..errors import FastLogitsError, InvalidArgumentError
from ..pipeline import (
    SAMPLER_EXTENSIONS,
    build_chain,
    check_generation_values,
    encoder_settings,
    mirostat_sampler,
    resolve_settings,
    unsupported_setting,
)
from ..sampling import stream_key
from . import _gpt2
from .convert import NativeChain

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


def _same_transformers_class(custom: Any, built: Any) -> bool:
    """transformers' merge compares `type(custom) is type(built)` with its own classes: a user's processor
    replaces the one built from the config when it is the transformers class of the same name."""
    return type(custom) is getattr(T, type(built).__name__, None)


def _step_processors(
    cfg, input_ids: torch.Tensor, attention_mask: Any, built: Any, user: Any, extensions: dict[str, Any]
) -> tuple[list[Any], str]:
    """The processors of a step, in order, and where they come from.

    ``"generation_config"``: the builder of ``LogitsPipeline.from_generation_config``
    (:func:`fastlogits.pipeline.build_chain`) from the config ``generate`` resolved, the prompt length and
    the attention mask it prepared, with the user's ``logits_processor`` entries merged in as transformers
    merges them (as given: :class:`NativeChain` converts them with ``to_native`` or runs them as they are).

    ``"transformers"``: the list ``generate`` built (``built``), where the builder does not make that
    chain: the config selects processors fastlogits does not implement (``guidance_scale``,
    ``forced_bos_token_id``, ``renormalize_logits``, watermarking, ..., and the encoder settings, which
    transformers applies with the prompt as encoder input ids), the builder rejects a setting transformers
    accepted, or the user's list is unknown (``user`` None: the ``custom_generate`` hook sees only the
    merged list). Processors fastlogits lacks then run as transformers' own, in order."""
    if user is None:
        return list(built), "transformers"
    settings = resolve_settings(cfg, defaults=False)  # as generate resolved it (a None is off)
    fallback = unsupported_setting(settings) or next(iter(encoder_settings(settings)), None)
    if fallback is not None:
        if extensions:
            raise InvalidArgumentError(
                f"`{next(iter(extensions))}` (a fastlogits setting) cannot be combined with `{fallback}`, which "
                "fastlogits runs through transformers' own processor list"
            )
        return list(built), "transformers"
    eos = cfg._eos_token_tensor
    try:
        chain = build_chain(
            settings,
            eos_token_id=None if eos is None else eos.tolist(),
            input_ids_seq_length=input_ids.shape[1],
            attention_mask=attention_mask,
            logits_processor=list(user),
            same_class=_same_transformers_class,
            extensions=extensions,
        )
    except FastLogitsError:
        if extensions:
            raise
        return list(built), "transformers"
    return chain, "generation_config"


class _Stepper:
    """The model side of a step: the forward pass with exactly the inputs `prepare_inputs_for_generation`
    builds (cache, position ids, attention mask), the last position's logits as a float32 host tensor, and
    `_update_model_kwargs_for_generation` between steps."""

    def __init__(
        self,
        model,
        model_kwargs: dict[str, Any],
        device: torch.device,
        batch: int,
        capacity: int,
        want_internals: bool,
    ):
        self.model = model
        self.device = device
        # The lean GPT-2 step where it computes exactly what the model's forward computes (see `_gpt2`).
        self.why_not_lean = _gpt2.unsupported(model, model_kwargs, want_internals)
        self.mask = model_kwargs.pop("attention_mask", None)
        self.position_ids = model_kwargs.pop("position_ids", None)
        self.cache = model_kwargs.pop("past_key_values", None)
        self.use_cache = model_kwargs.pop("use_cache", True)
        self.logits_to_keep = model_kwargs.pop("logits_to_keep", None)
        self.extra = model_kwargs  # forwarded unchanged (output_attentions, ...)
        self.lean = None
        if self.why_not_lean is None:
            self.lean = _gpt2.LeanGPT2(model, batch, capacity, self.mask)

    def final_cache(self) -> Any:
        """The cache ``generate`` returns (``past_key_values``): the model's, or the lean step's as one."""
        if self.lean is None:
            return self.cache
        return self.lean.fill(
            self.cache if self.cache is not None else DynamicCache(config=self.model.config)
        )

    def forward(self, ids: torch.Tensor) -> tuple[Any, torch.Tensor]:
        """The model output and its last position's logits (float32, host, a copy) for `ids` (the whole
        prompt first, then one token per row; or the whole sequences without a cache)."""
        if self.lean is not None:
            pos = self.position_ids
            if pos is None:
                pos = torch.arange(self.lean.filled, self.lean.filled + ids.shape[1]).unsqueeze(0)
            elif pos.shape[-1] != ids.shape[1]:
                pos = pos[..., -ids.shape[1] :]
            dev = self.model.device
            # A fresh tensor of the step's own: float32 on the host it is used as is (no copy).
            logits = self.lean.forward(ids.to(dev), pos.to(dev))
            return None, logits.to(dtype=torch.float32, device="cpu")
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
        with torch.no_grad():
            out = self.model(**model_inputs, return_dict=True)
            logits = out.logits[:, -1].to(copy=True, dtype=torch.float32, device="cpu")
        if self.use_cache:
            self.cache = out.past_key_values
        return out, logits

    def reorder(self, beam_idx: np.ndarray) -> None:
        """The cache follows the chosen beams: row `i` continues row `beam_idx[i]`."""
        idx = torch.from_numpy(beam_idx).to(self.model.device)
        if self.lean is not None:
            self.lean.reorder(idx)
        elif self.cache is not None:
            self.cache.reorder_cache(idx)

    def advance(self, beam_idx: np.ndarray | None = None) -> None:
        """One more position per row; with `beam_idx`, the cache follows the chosen beams."""
        if beam_idx is not None:
            self.reorder(beam_idx)
        if self.position_ids is not None:
            self.position_ids = torch.cat([self.position_ids, self.position_ids[..., -1:] + 1], dim=-1)
        if self.mask is not None and self.lean is None:
            self.mask = torch.cat([self.mask, self.mask.new_ones((self.mask.shape[0], 1))], dim=-1)


class _Outputs:
    """What `return_dict_in_generate` asks to keep, step by step."""

    def __init__(self, cfg):
        want = cfg.return_dict_in_generate
        self.want = want
        self.scores: tuple | None = () if want and cfg.output_scores else None
        self.logits: tuple | None = () if want and cfg.output_logits else None
        self.attentions: tuple | None = () if want and cfg.output_attentions else None
        self.hidden: tuple | None = () if want and cfg.output_hidden_states else None

    def add_model_output(self, out, logits: torch.Tensor) -> None:
        """The raw logits (a copy of their own: the caller may process `logits` in place), attentions,
        hidden states."""
        if self.logits is not None:
            self.logits += (logits.clone(),)
        if self.attentions is not None:
            self.attentions += (out.attentions,)
        if self.hidden is not None:
            self.hidden += (out.hidden_states,)

    def add_scores(self, scores: torch.Tensor) -> None:
        if self.scores is not None:
            self.scores += (scores,)

    def fields(self) -> dict[str, Any]:
        return dict(
            scores=self.scores, logits=self.logits, attentions=self.attentions, hidden_states=self.hidden
        )


def _row_seeds(seed: int | np.ndarray, rows: int, cfg) -> int | np.ndarray:
    """The seeds of the loop's rows. Per-prompt keys (one per row of the caller's ``input_ids``) are
    expanded as ``generate`` expands the prompts: for sampling, prompt ``i``'s ``num_return_sequences`` rows
    draw from ``seed[i]`` (the first) and ``stream_key(seed[i], k)`` (the k-th, k >= 1); beam search keeps
    one key per prompt (its batch entries)."""
    if isinstance(seed, int):
        return seed
    beams = cfg.num_beams or 1
    n = 1 if beams > 1 else (cfg.num_return_sequences or 1)
    prompts = rows // (beams * n)
    if len(seed) != prompts:
        raise InvalidArgumentError(
            f"`seed` holds {len(seed)} per-prompt keys but there are {prompts} prompts: give one key per prompt"
        )
    if n == 1:
        return seed
    keys = [int(key) if k == 0 else stream_key(int(key), k) for key in seed for k in range(n)]
    return np.array(keys, dtype=np.uint64)


class _Decoding:
    """One generation: the prompt and config as ``generate`` prepared them, then the loop (greedy / sampling
    or beam search), one step at a time."""

    def __init__(
        self,
        model,
        input_ids,
        logits_processor,
        stopping_criteria,
        cfg,
        model_kwargs,
        seed,
        streamer,
        user_processors=None,
        extensions=None,
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
        # The chain through the one builder (see `_step_processors`); `logits_processor` is the list transformers
        # built, kept for comparison and as the fallback.
        self.hf_processors = list(logits_processor)
        extensions = dict(extensions or {})
        # Mirostat replaces the draw (sampling only); the other extensions are the builder's.
        self.mirostat = mirostat_sampler(
            {k: extensions.pop(k) for k in SAMPLER_EXTENSIONS if k in extensions}
        )
        if self.mirostat is not None and (not cfg.do_sample or self.num_beams > 1):
            raise InvalidArgumentError(
                "`mirostat=2` draws the tokens: it needs do_sample=True and num_beams=1"
            )
        self.processors, self.chain_source = _step_processors(
            cfg, input_ids, model_kwargs.get("attention_mask"), logits_processor, user_processors, extensions
        )
        self.chain = NativeChain(self.processors)
        self.criteria = list(stopping_criteria)
        self.seed = _row_seeds(check_seeds(seed), input_ids.shape[0], cfg)
        self.streamer = streamer
        self.stepper = _Stepper(
            model,
            model_kwargs,
            self.device,
            batch=input_ids.shape[0],
            capacity=max(cfg.max_length, input_ids.shape[1]),
            want_internals=bool(
                cfg.return_dict_in_generate and (cfg.output_attentions or cfg.output_hidden_states)
            ),
        )
        self.result = None

    def run(self):
        for _ in self.steps():
            pass
        return self.result

    def steps(self) -> Iterator[torch.Tensor]:
        """Each step's new tokens, as they are decided; `result` is set at the end."""
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
        """`_sample`: the processors and the token choice (greedy, or a draw) in one native call per step."""
        cfg, model = self.cfg, self.stepper
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
        outputs = _Outputs(cfg)
        step_ids = self.prompt
        step = 0
        if self.streamer is not None:
            self.streamer.put(self.prompt.cpu())  # what `generate` gives a streamer first
        while True:
            out, logits = model.forward(step_ids if model.use_cache else torch.from_numpy(ids[:, :cur]))
            outputs.add_model_output(out, logits)
            del out
            work = logits.numpy()
            history = np.ascontiguousarray(ids[:, :cur])
            if self.mirostat is not None:
                self.chain(history, work, self.seed, step)  # (XTC, if any, draws from the same streams)
                nxt = self.mirostat(work, seed=self.seed, step=step)
            elif cfg.do_sample:
                # The processed scores are only kept for output_scores; otherwise `work` is scratch.
                nxt = self.chain.sample(
                    history, work, self.seed, step, write_scores=outputs.scores is not None
                )
            else:
                self.chain(history, work)
                nxt = _native.greedy(work, False)
            outputs.add_scores(logits)
            if has_eos_criteria:
                nxt = np.where(unfinished, nxt, pad)
            ids[:, cur] = nxt
            cur += 1
            step += 1
            unfinished &= ~self._stop_flags(ids, cur, outputs.scores)
            tokens = torch.from_numpy(nxt)
            if self.streamer is not None:
                self.streamer.put(tokens)
            yield tokens
            if not unfinished.any() or cur >= max_len:
                break
            step_ids = tokens[:, None].to(self.device)
            model.advance()
        if self.streamer is not None:
            self.streamer.end()
        sequences = torch.from_numpy(ids[:, :cur].copy()).to(self.device)
        if outputs.want:
            self.result = GenerateDecoderOnlyOutput(
                sequences=sequences, past_key_values=model.final_cache(), **outputs.fields()
            )
        else:
            self.result = sequences

    def _beam_steps(self) -> Iterator[torch.Tensor]:
        """`_beam_search`: log_softmax, the processors on the running sequences, then the native
        bookkeeping; the KV cache and the processors' per-row state follow the chosen beams."""
        cfg, model = self.cfg, self.stepper
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
        outputs = _Outputs(cfg)
        step_ids = self.prompt
        while True:
            out, logits = model.forward(
                step_ids if model.use_cache else torch.from_numpy(search.running_sequences())
            )
            outputs.add_model_output(out, logits)
            del out
            # torch's own log_softmax, bit for bit what `_beam_search` ranks.
            log_probs = torch.nn.functional.log_softmax(logits, dim=-1)
            work = log_probs.numpy()
            self.chain(search.running_sequences(), work)
            if outputs.scores is not None:
                outputs.add_scores(log_probs.clone())
            next_tokens, beam_idx, done = search.step(work)
            yield torch.from_numpy(next_tokens)
            if done:
                if outputs.want:
                    model.reorder(
                        beam_idx
                    )  # transformers reorders the cache it returns after its last step too
                break
            model.advance(beam_idx)
            self.chain.reorder(beam_idx)
            step_ids = torch.from_numpy(next_tokens)[:, None].to(self.device)
        sequences, sequences_scores, beam_indices = search.finalize()
        sequences = torch.from_numpy(sequences).to(self.device)
        if outputs.want:
            self.result = GenerateBeamDecoderOnlyOutput(
                sequences=sequences,
                sequences_scores=torch.from_numpy(sequences_scores) if cfg.output_scores else None,
                beam_indices=torch.from_numpy(beam_indices).to(torch.int32),  # transformers' dtype
                past_key_values=model.final_cache(),
                **outputs.fields(),
            )
        else:
            self.result = sequences
