"""fastlogits.BeamSearch against transformers' ``generate(num_beams=...)``.

Two comparisons per drawn configuration, both with a tiny random GPT-2:

* **replay**: the processed log-probabilities transformers used at each step (``output_scores=True``)
  are fed to ``BeamSearch.step``; the bookkeeping alone must give transformers' ``sequences``,
  ``sequences_scores`` and ``beam_indices``, and stop at the same step;
* **decoding loop**: a test-only loop runs the model with its KV cache (reordered with the returned
  ``beam_idx``), left padding (attention mask + position ids, as ``generate`` builds them), the
  logits processors (transformers' or fastlogits', with ``LogitsPipeline.reorder``) and
  ``BeamSearch``; the outputs must again be transformers'.

EOS tokens are chosen among the model's most likely first tokens and biased (``SequenceBias``) so that
hypotheses finish at different steps. ``torch.topk`` orders exactly equal scores in an unspecified way,
so examples where two candidates competing for a place tie exactly are rejected (``assume``); the
vocabulary is kept larger than ``beams_to_keep`` so that the ``-1e9``-scored initial beams never compete.
"""

from __future__ import annotations

import functools

import fastlogits as fl
import numpy as np
import pytest
import torch
import transformers
from hypothesis import assume, event, given
from hypothesis import strategies as st
from scipy.stats import chisquare
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LogitsProcessorList,
    NoRepeatNGramLogitsProcessor,
    SequenceBiasLogitsProcessor,
)
from transformers.cache_utils import DynamicCache

transformers.logging.set_verbosity_error()


@functools.cache
def tiny_gpt2(vocab: int) -> GPT2LMHeadModel:
    torch.manual_seed(1000 + vocab)
    cfg = GPT2Config(
        vocab_size=vocab,
        n_positions=64,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
        initializer_range=0.2,  # peaked enough that beams differ clearly (entropy ~3 nats)
    )
    return GPT2LMHeadModel(cfg).eval()


def position_ids(mask: torch.Tensor) -> torch.Tensor:
    """As ``generate`` builds them: ``cumsum(mask) - 1``, 0 on padding."""
    return (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)


# ----------------------------------------------------------------------------------------------
# Configurations


@st.composite
def beam_configs(draw):
    K = draw(st.integers(2, 8))
    n_eos = draw(st.integers(0, 3))
    keep = max(2, 1 + n_eos) * K
    V = draw(st.sampled_from([v for v in (24, 40, 64) if v >= keep + 4]))
    B = draw(st.integers(1, 3))
    L = draw(st.integers(1, 8))
    pads = [draw(st.integers(0, L - 1)) if draw(st.booleans()) else 0 for _ in range(B)]
    return dict(
        K=K,
        V=V,
        B=B,
        L=L,
        pads=pads,
        n_eos=n_eos,
        eos_from_top=draw(st.booleans()),
        bias=draw(st.sampled_from([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])),
        max_new=draw(st.integers(1, 30)),
        lp=draw(st.one_of(st.sampled_from([-2.0, -1.0, 0.0, 0.5, 1.0, 2.0]), st.floats(-2.0, 2.0))),
        es=draw(st.sampled_from([True, False, "never"])),
        nrs=draw(st.integers(1, K)),
        pad=draw(st.sampled_from([None, 0, 1, 7])),
        ngram=draw(st.sampled_from([0, 0, 2, 3])),
        fast_procs=draw(st.booleans()),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


def materialize(c: dict):
    """The prompt, its attention mask and the EOS ids of a drawn configuration."""
    model = tiny_gpt2(c["V"])
    rng = np.random.default_rng(c["seed"])
    ids = torch.from_numpy(rng.integers(0, c["V"], (c["B"], c["L"]))).long()
    mask = torch.ones_like(ids)
    for b, p in enumerate(c["pads"]):
        mask[b, :p] = 0
        ids[b, :p] = c["pad"] if c["pad"] is not None else 0
    eos: list[int] = []
    if c["n_eos"]:
        if c["eos_from_top"]:
            with torch.no_grad():
                first = model(ids, attention_mask=mask, position_ids=position_ids(mask)).logits[0, -1]
            eos = [int(t) for t in torch.argsort(first, descending=True)[: c["n_eos"]]]
        else:
            eos = [int(t) for t in rng.choice(c["V"], c["n_eos"], replace=False)]
    return model, ids, mask, eos


def hf_processors(c: dict, eos: list[int]) -> list:
    procs = []
    if c["ngram"]:
        procs.append(NoRepeatNGramLogitsProcessor(c["ngram"]))
    if eos and c["bias"]:
        procs.append(SequenceBiasLogitsProcessor({(e,): c["bias"] for e in eos}))
    return procs


def fl_processors(c: dict, eos: list[int]) -> list:
    procs = []
    if c["ngram"]:
        procs.append(fl.NoRepeatNGramLogitsProcessor(c["ngram"]))
    if eos and c["bias"]:
        procs.append(fl.SequenceBiasLogitsProcessor({(e,): float(c["bias"]) for e in eos}))
    return procs


def run_generate(c: dict, model, ids, mask, eos):
    with torch.no_grad():
        return model.generate(
            ids,
            attention_mask=mask,
            num_beams=c["K"],
            max_new_tokens=c["max_new"],
            length_penalty=c["lp"],
            early_stopping=c["es"],
            num_return_sequences=c["nrs"],
            eos_token_id=eos or None,
            pad_token_id=c["pad"],
            do_sample=False,
            logits_processor=LogitsProcessorList(hf_processors(c, eos)),
            return_dict_in_generate=True,
            output_scores=True,
        )


def new_search(c: dict, ids, eos, **kw) -> fl.BeamSearch:
    return fl.BeamSearch(
        ids,
        c["K"],
        max_new_tokens=c["max_new"],
        length_penalty=c["lp"],
        early_stopping=c["es"],
        num_return_sequences=c["nrs"],
        eos_token_id=eos or None,
        pad_token_id=c["pad"],
        **kw,
    )


def assume_no_ties(bs: fl.BeamSearch, log_probs: torch.Tensor, keep: int) -> None:
    """The ``keep + 1`` best accumulated scores of every entry are distinct (``-inf`` counts as a tie):
    otherwise ``torch.topk`` may pick either of two equal candidates."""
    B, K = bs.batch_size, bs.num_beams
    acc = log_probs.numpy().reshape(B, K, -1) + bs.running_scores().numpy().reshape(B, K, 1)
    top = -np.sort(-acc.reshape(B, -1), axis=1)[:, : keep + 1]
    with np.errstate(invalid="ignore"):
        assume(bool(np.all(np.diff(top, axis=1) < 0)))


def assert_same_output(got, hf) -> None:
    np.testing.assert_array_equal(got.sequences.numpy(), hf.sequences.numpy())
    np.testing.assert_array_equal(got.beam_indices.numpy(), hf.beam_indices.long().numpy())
    np.testing.assert_allclose(got.sequences_scores.numpy(), hf.sequences_scores.numpy(), rtol=0, atol=1e-5)


def decode(c: dict, model, ids, mask, eos, fast: bool, **kw):
    """The test-only decoding loop: model + KV cache + processors + BeamSearch."""
    bs = new_search(c, ids, eos, **kw)
    am = bs.expand(mask)
    pos = position_ids(am)
    inp = bs.running_sequences()
    cache = DynamicCache(config=model.config)
    if fast:
        pipe = fl.LogitsPipeline(fl_processors(c, eos))
    else:
        procs = LogitsProcessorList(hf_processors(c, eos))
    scores = []
    with torch.no_grad():
        while True:
            out = model(
                input_ids=inp,
                attention_mask=None if bool(am.all()) else am,
                position_ids=pos,
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=1,
            )
            log_probs = torch.log_softmax(out.logits[:, -1].float(), dim=-1)
            log_probs = (
                pipe(bs.running_sequences(), log_probs) if fast else procs(bs.running_sequences(), log_probs)
            )
            scores.append(log_probs.clone())
            next_tokens, beam_idx, done = bs.step(log_probs)
            if done:
                break
            cache = out.past_key_values
            cache.reorder_cache(beam_idx)
            if fast:
                pipe.reorder(beam_idx)
            inp = next_tokens[:, None]
            pos = pos[:, -1:] + 1
            am = torch.cat([am, am.new_ones((am.shape[0], 1))], dim=-1)
    return bs, scores


# ----------------------------------------------------------------------------------------------
# Against generate


@given(beam_configs())
def test_matches_generate(c):
    model, ids, mask, eos = materialize(c)
    hf = run_generate(c, model, ids, mask, eos)
    keep = max(2, 1 + len(eos)) * c["K"]
    lengths = (hf.beam_indices >= 0).sum(dim=1)
    event(f"returned hypotheses of different lengths: {bool(lengths.min() < lengths.max())}")
    event(f"stopped before max_length: {len(hf.scores) < c['max_new']}")

    # Replay transformers' own log-probabilities through the bookkeeping.
    bs = new_search(c, ids, eos)
    for t, s in enumerate(hf.scores):
        assert not bs.is_done, f"stopped after {t} steps, transformers ran {len(hf.scores)}"
        assume_no_ties(bs, s, keep)
        running = bs.running_sequences()
        assert running.shape == (c["B"] * c["K"], c["L"] + t)
        next_tokens, beam_idx, done = bs.step(s)
        assert done == (t == len(hf.scores) - 1)
        # Each new running row continues a row of its own batch entry and appends next_tokens.
        assert torch.all(beam_idx // c["K"] == torch.arange(c["B"] * c["K"]) // c["K"])
        new = bs.running_sequences()
        assert torch.equal(new[:, :-1], running[beam_idx])
        assert torch.equal(new[:, -1], next_tokens)
    assert bs.is_done and all(bs.entries_done)
    assert_same_output(bs.finalize(), hf)

    # The full decoding loop: model, KV cache, left padding, processors.
    bs, scores = decode(c, model, ids, mask, eos, c["fast_procs"])
    assert len(scores) == len(hf.scores)
    assert_same_output(bs.finalize(), hf)


@pytest.mark.parametrize("pad", [None, 0, 3])
def test_padding_value_follows_transformers(pad):
    """Hypotheses that end early are padded with ``pad_token_id or eos_token_id[0]``: a padding id of 0
    is falsy in Python, so transformers pads with the EOS id instead."""
    c = dict(K=3, V=40, B=2, L=4, pads=[0, 0], n_eos=1, eos_from_top=True, bias=3.0, max_new=8, lp=1.0,
             es=False, nrs=3, pad=pad, ngram=0, fast_procs=False, seed=5)  # fmt: skip
    model, ids, mask, eos = materialize(c)
    hf = run_generate(c, model, ids, mask, eos)
    bs, _ = decode(c, model, ids, mask, eos, fast=False)
    out = bs.finalize()
    assert_same_output(out, hf)
    lengths = (out.beam_indices >= 0).sum(dim=1)
    assert lengths.min() < lengths.max(), "the example must have hypotheses of different lengths"
    fill = pad if pad else eos[0]
    short = int(lengths.argmin())
    assert torch.all(out.sequences[short, c["L"] + int(lengths[short]) :] == fill)


def test_no_eos_runs_to_max_length():
    c = dict(K=4, V=24, B=2, L=3, pads=[0, 1], n_eos=0, eos_from_top=False, bias=0.0, max_new=6, lp=1.5,
             es=True, nrs=4, pad=None, ngram=2, fast_procs=True, seed=9)  # fmt: skip
    model, ids, mask, eos = materialize(c)
    hf = run_generate(c, model, ids, mask, eos)
    bs, scores = decode(c, model, ids, mask, eos, fast=True)
    assert len(scores) == 6 and bs.cur_len == 3 + 6
    out = bs.finalize()
    assert_same_output(out, hf)
    assert out.sequences.shape == (8, 9) and bool((out.beam_indices >= 0).all())


def test_numpy_in_numpy_out():
    rng = np.random.default_rng(0)
    bs = fl.BeamSearch(np.array([[1, 2], [3, 4]]), 2, max_length=5, eos_token_id=[0], pad_token_id=9)
    assert (bs.batch_size, bs.num_beams, bs.prompt_length, bs.max_length, bs.cur_len) == (2, 2, 2, 5, 2)
    np.testing.assert_array_equal(bs.running_sequences(), [[1, 2], [1, 2], [3, 4], [3, 4]])
    np.testing.assert_array_equal(bs.expand(np.array([[1, 1], [0, 1]])), [[1, 1], [1, 1], [0, 1], [0, 1]])
    done = False
    while not done:
        lp = np.log(rng.dirichlet(np.ones(6), size=4)).astype(np.float64)  # any float dtype
        tokens, idx, done = bs.step(lp)
        assert isinstance(tokens, np.ndarray) and tokens.dtype == np.int64 and idx.dtype == np.int64
    out = bs.finalize()
    assert isinstance(out, fl.beam.BeamSearchOutput)
    assert out.sequences.dtype == np.int64 and out.sequences_scores.dtype == np.float32
    assert out.sequences.shape[0] == 2 and out.beam_indices.shape == (2, out.sequences.shape[1] - 2)


# ----------------------------------------------------------------------------------------------
# Beam sampling


def ordered_pair_probs(p: np.ndarray) -> dict[frozenset, float]:
    """P(the first two draws without replacement are {i, j})."""
    out = {}
    for i in range(len(p)):
        for j in range(i + 1, len(p)):
            out[frozenset((i, j))] = p[i] * p[j] / (1 - p[i]) + p[j] * p[i] / (1 - p[j])
    return out


def test_sampling_distribution_matches_multinomial_without_replacement():
    """One step to max_length with K = 2, V = 5, no EOS: ``beams_to_keep = 4`` candidates are drawn and
    only the first ``K = 2`` drawn may finish, so the returned pair is the first two draws of ordered
    sampling without replacement (``torch.multinomial(..., replacement=False)``). Chi-square of 6000
    seeds against the exact probabilities, and torch's own draws against the same (checks the
    specification). Fixed seeds: deterministic."""
    p = np.array([0.05, 0.1, 0.15, 0.3, 0.4])
    lp = np.log(np.tile(p, (2, 1))).astype(np.float32)
    exact = ordered_pair_probs(p)
    keys = list(exact)
    n = 6000
    counts = dict.fromkeys(keys, 0)
    for seed in range(n):
        bs = fl.BeamSearch(
            np.array([[0]]), 2, max_new_tokens=1, num_return_sequences=2, do_sample=True, seed=seed
        )
        _, _, done = bs.step(lp)
        assert done
        counts[frozenset(bs.finalize().sequences[:, 1].tolist())] += 1
    expected = np.array([exact[k] * n for k in keys])
    assert chisquare([counts[k] for k in keys], expected).pvalue > 1e-3

    torch.manual_seed(0)
    draws = torch.multinomial(torch.tensor(p).expand(n, 5), 4)[:, :2].tolist()
    tcounts = dict.fromkeys(keys, 0)
    for d in draws:
        tcounts[frozenset(d)] += 1
    assert chisquare([tcounts[k] for k in keys], expected).pvalue > 1e-3


def test_sampling_same_seed_same_result_at_one_and_two_threads():
    rng = np.random.default_rng(3)
    B, K, V = 2, 5, 50257  # large enough for the thread pool
    steps = [torch.log_softmax(torch.from_numpy(rng.normal(0, 2, (B * K, V))).float(), -1) for _ in range(4)]
    prompt = np.array([[1, 2, 3], [4, 5, 6]])

    def run(seed):
        bs = fl.BeamSearch(prompt, K, max_new_tokens=4, eos_token_id=[7, 8], do_sample=True, seed=seed)
        outs = []
        for s in steps:
            tokens, idx, done = bs.step(s)
            outs.append((tokens.tolist(), idx.tolist()))
            if done:
                break
        return outs, [x.tolist() for x in bs.finalize()]

    default = fl.get_num_threads()
    try:
        fl.set_num_threads(1)
        one = run(11)
        fl.set_num_threads(2)
        two = run(11)
    finally:
        fl.set_num_threads(default)
    assert one == two
    assert run(12) != one


def test_sampling_decoding_loop_is_consistent():
    c = dict(K=4, V=40, B=2, L=3, pads=[0, 2], n_eos=2, eos_from_top=True, bias=1.0, max_new=12, lp=1.0,
             es=False, nrs=2, pad=None, ngram=2, fast_procs=True, seed=1)  # fmt: skip
    model, ids, mask, eos = materialize(c)
    a, _ = decode(c, model, ids, mask, eos, fast=True, do_sample=True, seed=5)
    b, _ = decode(c, model, ids, mask, eos, fast=True, do_sample=True, seed=5)
    for x, y in zip(a.finalize(), b.finalize()):
        assert torch.equal(x, y)
    out = a.finalize()
    assert torch.equal(out.sequences[:, : c["L"]], ids.repeat_interleave(2, dim=0))
    for r in range(out.beam_indices.shape[0]):
        entry = r // c["nrs"]
        idx = out.beam_indices[r][out.beam_indices[r] >= 0]
        assert torch.all(idx // c["K"] == entry)
    assert torch.all(out.sequences_scores[::2] >= out.sequences_scores[1::2])


# ----------------------------------------------------------------------------------------------
# Bad input


def test_parameter_errors_match_transformers():
    ids = np.array([[1, 2]])
    with pytest.raises(
        ValueError, match=r"`num_return_sequences` \(3\) has to be smaller or equal to `num_beams` \(2\)\."
    ):
        fl.BeamSearch(ids, 2, max_new_tokens=3, num_return_sequences=3)
    with pytest.raises(
        fl.InvalidArgumentError, match="`early_stopping` must be a boolean or 'never', but is sometimes"
    ):
        fl.BeamSearch(ids, 2, max_new_tokens=3, early_stopping="sometimes")
    # transformers accepts 1 (== True) but then treats it as False (`early_stopping is True`): refused here.
    with pytest.raises(fl.InvalidArgumentError, match="`early_stopping` must be a boolean or 'never'"):
        fl.BeamSearch(ids, 2, max_new_tokens=3, early_stopping=1)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(fl.InvalidArgumentError, match="`num_beams` has to be a positive integer"):
            fl.BeamSearch(ids, bad, max_new_tokens=3)
    with pytest.raises(fl.InvalidArgumentError, match="`max_new_tokens` must be greater than 0, but is 0"):
        fl.BeamSearch(ids, 2, max_new_tokens=0)
    with pytest.raises(
        fl.InvalidArgumentError, match="Input length of input_ids is 2, but `max_length` is set to 2"
    ):
        fl.BeamSearch(ids, 2, max_length=2)
    with pytest.raises(fl.InvalidArgumentError, match="exactly one of"):
        fl.BeamSearch(ids, 2)
    with pytest.raises(fl.InvalidArgumentError, match="length_penalty"):
        fl.BeamSearch(ids, 2, max_new_tokens=3, length_penalty=float("nan"))
    with pytest.raises(fl.InvalidArgumentError, match="eos_token_id"):
        fl.BeamSearch(ids, 2, max_new_tokens=3, eos_token_id="2")
    with pytest.raises(fl.InvalidArgumentError, match="seed"):
        fl.BeamSearch(ids, 2, max_new_tokens=3, do_sample=True, seed=-1)
    with pytest.raises(fl.InvalidTypeError):
        fl.BeamSearch(np.array([1, 2]), 2, max_new_tokens=3)
    # The same messages come from transformers:
    for kw, msg in [
        (dict(num_return_sequences=3), "has to be smaller or equal to `num_beams`"),
        (dict(early_stopping="sometimes"), "must be a boolean or 'never'"),
        (dict(max_new_tokens=0), "must be greater than 0"),
    ]:
        with pytest.raises(ValueError, match=msg):
            transformers.GenerationConfig(num_beams=2, **kw).validate()
    # The native class validates too.
    with pytest.raises(fl.InvalidArgumentError, match="has to be smaller or equal"):
        fl._native.BeamSearch(np.zeros((2, 1), np.int64), 2, 3, num_return_sequences=3)
    with pytest.raises(fl.InvalidArgumentError, match="batch_size \\* num_beams"):
        fl._native.BeamSearch(np.zeros((3, 1), np.int64), 2, 3)
    with pytest.raises(fl.InvalidArgumentError, match="early_stopping"):
        fl._native.BeamSearch(np.zeros((2, 1), np.int64), 2, 3, early_stopping="always")
    with pytest.raises(fl.InvalidTypeError, match="prompt"):
        fl._native.BeamSearch(np.zeros((2, 1), np.int32), 2, 3)


def test_step_errors_leave_the_state_unchanged():
    rng = np.random.default_rng(1)
    bs = fl.BeamSearch(np.array([[1, 2], [3, 4]]), 3, max_new_tokens=5, eos_token_id=[1, 2])
    lp = np.log(rng.dirichlet(np.ones(12), size=6)).astype(np.float32)
    bs.step(lp)

    def state():
        return (bs.cur_len, bs.running_sequences().tolist(), bs.running_scores().tolist(),
                [x.tolist() for x in bs.finalize()], bs.is_done)  # fmt: skip

    before = state()
    bad = lp.copy()
    bad[4, 7] = np.nan
    with pytest.raises(fl.InvalidArgumentError, match=r"log_probs\[4, 7\] is NaN"):
        bs.step(bad)
    bad[4, 7] = np.inf
    with pytest.raises(fl.InvalidArgumentError, match=r"log_probs\[4, 7\] is \+inf"):
        bs.step(bad)
    with pytest.raises(fl.InvalidArgumentError, match="has 5 rows"):
        bs.step(lp[:5])
    with pytest.raises(fl.InvalidTypeError):
        bs.step(lp[0])
    with pytest.raises(fl.InvalidTypeError):
        bs.step(lp.astype(np.int64))
    with pytest.raises(fl.InvalidArgumentError, match="more than num_beams"):
        bs.step(lp[:, :2])  # beams_to_keep = 3 * 3 = 9 > 3 * 2 candidates
    with pytest.raises(fl.InvalidTypeError):
        fl._native.BeamSearch(np.zeros((3, 1), np.int64), 3, 3).step(lp.astype(np.float64))
    assert state() == before
    # A non-contiguous float32 view is accepted (copied).
    wide = np.zeros((6, 24), np.float32)
    wide[:, ::2] = lp
    ref = fl.BeamSearch(np.array([[1, 2], [3, 4]]), 3, max_new_tokens=5, eos_token_id=[1, 2])
    ref.step(lp)
    a = bs.step(wide[:, ::2])
    b = ref.step(lp)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    while not bs.is_done:
        bs.step(lp)
    with pytest.raises(fl.InvalidArgumentError, match="finished"):
        bs.step(lp)


def test_all_neg_inf_entry_cannot_be_sampled():
    lp = np.full((2, 4), -np.inf, np.float32)
    bs = fl.BeamSearch(np.array([[0]]), 2, max_new_tokens=2, do_sample=True, seed=0)
    with pytest.raises(fl.InvalidArgumentError, match="nothing to sample"):
        bs.step(lp)
    # Without sampling, -inf candidates are ranked like any other (torch.topk returns them too).
    bs = fl.BeamSearch(np.array([[0]]), 2, max_new_tokens=2)
    tokens, idx, done = bs.step(lp)
    assert tokens.tolist() == [0, 1] and idx.tolist() == [0, 0]
    # The best running score, -inf, cannot beat an unfinished slot's -1e9: the early-stop heuristic
    # is satisfied and the search ends (as in transformers).
    assert done
