"""LogitsPipeline against transformers' LogitsProcessorList and `generate`'s processor construction."""

from __future__ import annotations

import copy
import functools
import re

import fastlogits as fl
import numpy as np
import pytest
import torch
import transformers.generation.logits_process as hf
from fastlogits.transformers import to_native
from fastlogits.transformers.generation import _start
from helpers import (
    assert_same,
    assume_min_p_margin,
    assume_prob_floor_margin,
    assume_top_h_margin,
    assume_top_p_margin,
    assume_typical_margin,
    cases,
    entropy64,
)
from hypothesis import assume, given
from hypothesis import strategies as st
from transformers import GenerationConfig, GPT2Config, GPT2LMHeadModel, WatermarkingConfig

# (class name, strategy of constructor kwargs, margin check on the scores it receives)
SPECS = {
    "RepetitionPenaltyLogitsProcessor": (st.fixed_dictionaries({"penalty": st.floats(0.5, 3.0)}), None),
    "NoRepeatNGramLogitsProcessor": (st.fixed_dictionaries({"ngram_size": st.integers(1, 4)}), None),
    "TemperatureLogitsWarper": (st.fixed_dictionaries({"temperature": st.floats(0.2, 3.0)}), None),
    "TopKLogitsWarper": (st.fixed_dictionaries({"top_k": st.integers(1, 100)}), None),
    "TopPLogitsWarper": (
        st.fixed_dictionaries({"top_p": st.floats(0.05, 1.0)}),
        lambda s, kw: assume_top_p_margin(s, kw["top_p"]),
    ),
    "MinPLogitsWarper": (
        st.fixed_dictionaries({"min_p": st.floats(0.0, 0.5)}),
        lambda s, kw: assume_min_p_margin(s, kw["min_p"]),
    ),
    "TypicalLogitsWarper": (
        st.fixed_dictionaries({"mass": st.floats(0.05, 0.95)}),
        lambda s, kw: assume_typical_margin(s, kw["mass"]),
    ),
    "EpsilonLogitsWarper": (
        st.fixed_dictionaries({"epsilon": st.floats(1e-5, 0.2)}),
        lambda s, kw: assume_prob_floor_margin(s, lambda row: float(np.float32(kw["epsilon"]))),
    ),
    "EtaLogitsWarper": (
        st.fixed_dictionaries({"epsilon": st.floats(1e-5, 0.2)}),
        lambda s, kw: (
            assume(not np.isneginf(s).all(axis=1).any()),  # transformers' Categorical raises on these
            assume_prob_floor_margin(
                s, lambda row: min(kw["epsilon"], np.sqrt(kw["epsilon"]) * np.exp(-entropy64(row)))
            ),
        ),
    ),
}


@st.composite
def chains(draw):
    names = draw(st.lists(st.sampled_from(sorted(SPECS)), min_size=1, max_size=6))
    return [(n, draw(SPECS[n][0])) for n in names]


@given(cases(all_inf_rows=False), chains())
def test_chain_equals_processor_list(case, chain):
    """A pipeline equals the same processors applied one by one by transformers. Margins are checked
    on the scores each margin-sensitive processor actually receives."""
    ids_t = torch.from_numpy(case.ids)
    cur = torch.from_numpy(case.scores.copy())
    for name, kw in chain:
        margin = SPECS[name][1]
        if margin is not None:
            margin(cur.numpy(), kw)
        cur = getattr(hf, name)(**kw)(ids_t, cur)
    got = fl.LogitsPipeline([getattr(fl, n)(**kw) for n, kw in chain])(case.ids, case.scores.copy())
    assert_same(cur.numpy(), got)


@given(cases(all_inf_rows=False), chains(), st.integers(0, 2**32 - 1), st.booleans())
def test_sample_is_sample_of_the_processed_scores(case, chain, seed, write_scores):
    """`pipeline.sample` (the fused draw) gives the tokens `fastlogits.sample` draws from the processed
    scores with the same seed and step; with write_scores=True the buffer then holds exactly those scores,
    with write_scores=False (scratch buffer, rows not written out) the tokens are still the same."""
    pipeline = lambda: fl.LogitsPipeline([getattr(fl, n)(**kw) for n, kw in chain])  # noqa: E731
    processed = pipeline()(case.ids, case.scores.copy())
    assume(not np.isneginf(processed).all(axis=1).any())
    buf = case.scores.copy()
    got = pipeline().sample(case.ids, buf, seed=seed, step=3, write_scores=write_scores)
    np.testing.assert_array_equal(got, fl.sample(processed, seed=seed, step=3))
    if write_scores:
        np.testing.assert_array_equal(buf, processed)


@functools.cache
def tiny_model(eos: int = 7, vocab: int = 100) -> GPT2LMHeadModel:
    torch.manual_seed(0)
    cfg = GPT2Config(
        vocab_size=vocab, n_positions=64, n_embd=16, n_layer=1, n_head=2, eos_token_id=eos, bos_token_id=eos
    )
    return GPT2LMHeadModel(cfg).eval()


def prepared_config(model, kwargs: dict) -> GenerationConfig:
    """The config `generate` works from: user kwargs over the model's generation config over defaults."""
    return model._prepare_generation_config(None, **kwargs)[0]


def hf_processors(model, cfg: GenerationConfig, prompt_len: int, attention_mask):
    cfg = copy.deepcopy(cfg)
    model._prepare_special_tokens(cfg, True, device="cpu")
    return model._get_logits_processor(
        generation_config=cfg,
        input_ids_seq_length=prompt_len,
        encoder_input_ids=None,
        prefix_allowed_tokens_fn=None,
        logits_processor=hf.LogitsProcessorList(),
        device="cpu",
        model_kwargs={"attention_mask": attention_mask},
    )


gen_kwargs = st.fixed_dictionaries(
    {},
    optional={
        "do_sample": st.booleans(),
        "temperature": st.sampled_from([0.7, 1.0, 1.3]),
        "top_k": st.sampled_from([0, 5, 50, None]),
        "top_p": st.sampled_from([0.8, 0.95, 1.0]),
        "min_p": st.sampled_from([0.05, 0.1]),
        "typical_p": st.sampled_from([0.5, 0.9, 1.0]),
        "top_h": st.sampled_from([0.3, 0.9]),
        "epsilon_cutoff": st.sampled_from([0.0, 3e-4]),
        "eta_cutoff": st.sampled_from([0.0, 3e-4]),
        "repetition_penalty": st.sampled_from([1.0, 1.2]),
        "no_repeat_ngram_size": st.sampled_from([0, 2, 3]),
        "bad_words_ids": st.sampled_from([[[3], [5, 6]], [[7]]]),
        "sequence_bias": st.just({(4,): 1.5, (5, 9): -2.0}),
        "min_length": st.sampled_from([0, 3, 30]),
        "min_new_tokens": st.sampled_from([0, 4]),
        "suppress_tokens": st.just([1, 2]),
        "begin_suppress_tokens": st.just([8]),
        "exponential_decay_length_penalty": st.just((2, 1.5)),
        "num_beams": st.sampled_from([1, 3]),
        "eos_token_id": st.sampled_from([7, [7, 9]]),
    },
)


@given(gen_kwargs, st.integers(1, 4), st.integers(1, 12), st.integers(0, 2**32 - 1))
def test_from_generation_config_matches_generate(kwargs, batch, prompt_len, seed):
    """Same processor classes, in the same order, with the same effect as `generate()` builds."""
    model = tiny_model()
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 100, size=(batch, prompt_len + 3))
    mask = np.ones_like(ids)
    mask[0, : rng.integers(0, prompt_len)] = 0  # left padding on the first row
    cfg = prepared_config(model, dict(kwargs))
    ref_list = hf_processors(model, cfg, prompt_len, torch.from_numpy(mask))
    # What `generate` does: the model's generation config, then the user's keyword arguments.
    pipe = fl.LogitsPipeline.from_generation_config(
        model.generation_config, input_ids_seq_length=prompt_len, attention_mask=mask, **kwargs
    )
    assert [type(p).__name__ for p in pipe] == [type(p).__name__ for p in ref_list]
    scores = rng.normal(0, 2, size=(batch, 100)).astype(np.float32)
    cur = torch.from_numpy(scores.copy())
    ids_t = torch.from_numpy(ids)
    for p in ref_list:
        name = type(p).__name__
        if name == "TopPLogitsWarper":
            assume_top_p_margin(cur.numpy(), p.top_p, p.min_tokens_to_keep)
        elif name == "MinPLogitsWarper":
            assume_min_p_margin(cur.numpy(), p.min_p, p.min_tokens_to_keep)
        elif name == "TypicalLogitsWarper":
            assume_typical_margin(cur.numpy(), p.mass, p.min_tokens_to_keep)
        elif name == "TopHLogitsWarper":
            assume_top_h_margin(cur.numpy(), p.top_h)
        elif name in ("EpsilonLogitsWarper", "EtaLogitsWarper"):
            assume(not np.isneginf(cur.numpy()).all(axis=1).any())
        cur = p(ids_t, cur)
    assert_same(cur.numpy(), pipe(ids, scores.copy()))


class Ban(hf.LogitsProcessor):
    """A user processor fastlogits has no equivalent of (runs as a Python callable)."""

    def __call__(self, input_ids, scores):
        scores = scores.clone()
        scores[:, 13] = -float("inf")
        return scores


# The user's `logits_processor=` entries: transformers' own (of classes `generate` also builds from the config,
# so that the merge replaces them, and others), fastlogits' (hf adapters and plain), and one fastlogits lacks.
USER_PROCESSORS = (
    lambda: hf.TopKLogitsWarper(3),
    lambda: hf.TemperatureLogitsWarper(0.9),
    lambda: hf.RepetitionPenaltyLogitsProcessor(1.5),
    lambda: hf.NoRepeatNGramLogitsProcessor(2),
    lambda: hf.NoBadWordsLogitsProcessor([[11], [12, 14]], 7),
    lambda: hf.SequenceBiasLogitsProcessor({(15,): -1.0}),
    lambda: hf.MinLengthLogitsProcessor(5, 7),
    lambda: hf.SuppressTokensLogitsProcessor([16]),
    lambda: fl.hf.SuppressTokensLogitsProcessor([9]),
    lambda: fl.hf.TopKLogitsWarper(4),
    lambda: fl.MinPLogitsWarper(0.2),
    Ban,
)

_NO_OP = {
    # transformers' NoBadWords whose words were all EOS singletons holds nothing: to_native gives an empty
    # suppression, the builder an empty bias; both leave the scores as they are.
    "Processor(SuppressTokens(SuppressTokens { tokens: [] }))",
    "Processor(SequenceBias(SequenceBias { single: [], groups: [], max_id: 0 }))",
}


def as_run(p) -> tuple[str, str]:
    """A processor of a chain as NativeChain runs it: its class name and its native parameters (transformers'
    processors converted by `to_native`), or, for one fastlogits lacks, the object itself."""
    n = to_native(p)
    if n is None:
        return type(p).__name__, f"python callable {id(p)}"
    spec = repr(n.native())
    if spec in _NO_OP:
        spec = "no-op"
    if isinstance(n, fl.EtaLogitsWarper):
        # transformers keeps eta's epsilon as a float32 tensor; the native core rounds it to float32 itself.
        spec = re.sub(r"eps: ([^,]+)", lambda m: f"eps: {float(np.float32(float(m[1])))}", spec)
    return type(p).__name__, spec


@given(gen_kwargs, st.integers(1, 3), st.integers(1, 12), st.integers(0, 2**32 - 1), st.data())
def test_generate_builds_the_chain_transformers_builds(kwargs, batch, prompt_len, seed, data):
    """`fastlogits.generate` builds its chain from the resolved config (the one builder behind
    `from_generation_config`), with the user's processors merged in: the same classes, in the same order,
    with the same parameters, as the list transformers' `_get_logits_processor` built in that very call."""
    model = tiny_model()
    rng = np.random.default_rng(seed)
    ids = torch.from_numpy(rng.integers(0, 100, size=(batch, prompt_len)))
    mask = torch.ones_like(ids)
    if data.draw(st.booleans()):
        mask[0, : rng.integers(0, prompt_len)] = (
            0  # left padding on the first row (else generate drops the mask)
        )
    made = [f() for f in USER_PROCESSORS]
    # (repeats: the same object twice, which transformers' merge appends once)
    user = [made[i] for i in data.draw(st.lists(st.integers(0, len(made) - 1), max_size=5))]
    kw = dict(kwargs, max_new_tokens=2)
    if user:
        kw["logits_processor"] = hf.LogitsProcessorList(user)
    decoding = _start(model, ids, mask, None, 0, None, kw)
    assert decoding.chain_source == "generation_config"
    assert [as_run(p) for p in decoding.processors] == [as_run(p) for p in decoding.hf_processors]


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(forced_eos_token_id=5),
        dict(forced_bos_token_id=5),
        dict(renormalize_logits=True, repetition_penalty=1.3),
        dict(remove_invalid_values=True),
        dict(encoder_repetition_penalty=1.3),
        dict(encoder_no_repeat_ngram_size=2),
        dict(guidance_scale=1.5),
        dict(watermarking_config=WatermarkingConfig(bias=2.0)),
        dict(min_length=True),  # (a bool count: the builder rejects it, transformers accepts it)
    ],
    ids=lambda kw: next(iter(kw)),
)
def test_generate_runs_transformers_list_where_the_builder_lacks_a_processor(kwargs):
    """Settings that select processors fastlogits does not implement: `generate` runs the list transformers
    built, those processors as transformers' own (greedy: the same tokens as `model.generate`)."""
    model = tiny_model()
    ids = torch.tensor([[5, 9, 2, 5, 9], [1, 2, 3, 4, 6]])
    kw = dict(kwargs, max_new_tokens=6)
    decoding = _start(model, ids, None, None, 0, None, dict(kw))
    assert decoding.chain_source == "transformers"
    assert all(a is b for a, b in zip(decoding.processors, decoding.hf_processors, strict=True))
    if not kw.get("do_sample") and "guidance_scale" not in kw:
        assert torch.equal(fl.generate(model, ids, **kw), model.generate(ids, **kw))


def test_custom_generate_hook_runs_transformers_list(monkeypatch):
    """`custom_generate=fastlogits.hf.decode` sees only the merged list, not the user's entries: it runs it."""
    from fastlogits.transformers._loop import _Decoding

    seen = []
    run = _Decoding.run

    def recording_run(self):
        seen.append(self.chain_source)
        return run(self)

    monkeypatch.setattr(_Decoding, "run", recording_run)
    model = tiny_model()
    ids = torch.tensor([[5, 9, 2]])
    kw = dict(max_new_tokens=5, repetition_penalty=1.3, logits_processor=[hf.NoRepeatNGramLogitsProcessor(2)])
    ref = model.generate(ids, **kw)
    assert torch.equal(model.generate(ids, **kw, custom_generate=fl.hf.decode), ref)
    assert torch.equal(fl.generate(model, ids, **kw), ref)
    assert seen == ["transformers", "generation_config"]


def test_do_sample_defaults_to_top_k_50():
    pipe = fl.LogitsPipeline.from_generation_config(do_sample=True)
    assert [type(p).__name__ for p in pipe] == ["TopKLogitsWarper"]
    assert pipe.processors[0].top_k == 50
    assert len(fl.LogitsPipeline.from_generation_config(do_sample=True, top_k=0)) == 0
    assert len(fl.LogitsPipeline.from_generation_config(do_sample=True, top_k=None)) == 0
    assert len(fl.LogitsPipeline.from_generation_config(do_sample=False, temperature=0.5)) == 0


@pytest.mark.parametrize(
    "kwargs",
    [{"guidance_scale": 2.0}, {"forced_eos_token_id": 3}, {"renormalize_logits": True}],
)
def test_unsupported_settings_are_errors(kwargs):
    with pytest.raises(fl.InvalidArgumentError, match=next(iter(kwargs))):
        fl.LogitsPipeline.from_generation_config(do_sample=True, **kwargs)


def test_custom_processor_replaces_the_built_one():
    custom = fl.TopKLogitsWarper(3)
    pipe = fl.LogitsPipeline.from_generation_config(
        repetition_penalty=1.5, logits_processor=[custom, fl.SuppressTokensLogitsProcessor([1])]
    )
    names = [type(p).__name__ for p in pipe]
    assert names == ["RepetitionPenaltyLogitsProcessor", "TopKLogitsWarper", "SuppressTokensLogitsProcessor"]


def test_custom_processor_listed_twice_is_merged_as_transformers_merges_it():
    a, b = fl.SuppressTokensLogitsProcessor([1]), fl.SuppressTokensLogitsProcessor([2])
    ref = tiny_model()._merge_criteria_processor_list(hf.LogitsProcessorList(), [a, b, a])
    pipe = fl.LogitsPipeline.from_generation_config(logits_processor=[a, b, a])
    assert [id(p) for p in pipe] == [id(p) for p in ref] == [id(a), id(b)]


@given(cases(max_v=3000, max_b=8, all_inf_rows=False), st.data())
def test_per_row_parameters(case, data):
    """temperature, top_k, top_p, min_p and repetition_penalty given per row equal transformers run
    row by row with each row's value."""
    B = case.B
    t = data.draw(st.lists(st.floats(0.3, 2.0), min_size=B, max_size=B))
    k = data.draw(st.lists(st.integers(1, 60), min_size=B, max_size=B))
    p = data.draw(st.lists(st.floats(0.1, 1.0), min_size=B, max_size=B))
    mp = data.draw(st.lists(st.floats(0.0, 0.3), min_size=B, max_size=B))
    rp = data.draw(st.lists(st.floats(0.5, 2.0), min_size=B, max_size=B))
    ref = np.empty_like(case.scores)
    for r in range(B):
        row = torch.from_numpy(case.scores[r : r + 1].copy())
        ids = torch.from_numpy(case.ids[r : r + 1])
        row = hf.RepetitionPenaltyLogitsProcessor(rp[r])(ids, row)
        row = hf.TemperatureLogitsWarper(t[r])(ids, row)
        row = hf.TopKLogitsWarper(k[r])(ids, row)
        assume_top_p_margin(row.numpy(), p[r])
        row = hf.TopPLogitsWarper(p[r])(ids, row)
        assume_min_p_margin(row.numpy(), mp[r])
        row = hf.MinPLogitsWarper(mp[r])(ids, row)
        ref[r] = row.numpy()[0]
    pipe = fl.LogitsPipeline(
        [
            fl.RepetitionPenaltyLogitsProcessor(rp),
            fl.TemperatureLogitsWarper(np.array(t)),
            fl.TopKLogitsWarper(k),
            fl.TopPLogitsWarper(p),
            fl.MinPLogitsWarper(mp),
        ]
    )
    assert_same(ref, pipe(case.ids, case.scores.copy()))


def test_per_row_length_must_match_batch():
    pipe = fl.LogitsPipeline([fl.TemperatureLogitsWarper([0.5, 0.7])])
    with pytest.raises(fl.InvalidArgumentError, match="temperature.*2 per-row values.*3 rows"):
        pipe(np.zeros((3, 1), np.int64), np.zeros((3, 5), np.float32))
