"""fastlogits.generate against model.generate on tiny random GPT-2s (same arguments, same results)."""

from __future__ import annotations

import fastlogits as fl
import numpy as np
import pytest
import torch
import transformers.generation.logits_process as hf
from hypothesis import given
from hypothesis import strategies as st
from models import left_padded, tiny_gpt2
from scipy.stats import chisquare

processor_kwargs = st.fixed_dictionaries(
    {},
    optional={
        "repetition_penalty": st.sampled_from([1.0, 1.3, 0.8]),
        "no_repeat_ngram_size": st.integers(0, 3),
        "bad_words_ids": st.just([[5], [6, 7]]),
        "sequence_bias": st.just({(8,): 2.0, (9, 10): -3.0}),
        "min_new_tokens": st.integers(0, 6),
        "min_length": st.integers(0, 12),
        "suppress_tokens": st.just([11, 12]),
        "begin_suppress_tokens": st.just([3]),
        "exponential_decay_length_penalty": st.just((3, 1.4)),
        "eos_token_id": st.sampled_from([3, [3, 4]]),
        "pad_token_id": st.sampled_from([0, 3]),
    },
)


@given(processor_kwargs, st.integers(1, 3), st.integers(1, 8), st.integers(1, 20), st.integers(0, 2**32 - 1))
def test_greedy_is_token_identical(kwargs, batch, prompt_len, max_new, seed):
    """Left-padded batches, every processor argument, EOS reached at different steps."""
    model = tiny_gpt2()
    rng = np.random.default_rng(seed)
    ids, mask = left_padded(rng, batch, 48, prompt_len, pad=0)
    ref = model.generate(ids, attention_mask=mask, max_new_tokens=max_new, **kwargs)
    got = fl.generate(model, ids, attention_mask=mask, max_new_tokens=max_new, **kwargs)
    assert torch.equal(ref, got)


beam_kwargs = st.fixed_dictionaries(
    {
        "num_beams": st.integers(2, 5),
        "length_penalty": st.floats(-2.0, 2.0),
        "early_stopping": st.sampled_from([True, False, "never"]),
        "max_new_tokens": st.integers(1, 16),
    },
    optional={
        "no_repeat_ngram_size": st.integers(0, 3),
        "repetition_penalty": st.sampled_from([1.0, 1.4]),
        "eos_token_id": st.sampled_from([3, [3, 4], [3, 4, 5]]),
        "pad_token_id": st.sampled_from([0, 3]),
        "min_new_tokens": st.integers(0, 3),
    },
)


@given(beam_kwargs, st.integers(1, 3), st.integers(1, 6), st.integers(0, 2**32 - 1), st.data())
def test_beam_search_is_token_identical(kwargs, batch, prompt_len, seed, data):
    """sequences and beam_indices identical, sequences_scores within 1e-5, left-padded batches, beams
    finishing at different steps (the tiny model emits its EOS often)."""
    kwargs["num_return_sequences"] = data.draw(st.integers(1, kwargs["num_beams"]))
    model = tiny_gpt2()
    rng = np.random.default_rng(seed)
    ids, mask = left_padded(rng, batch, 48, prompt_len, pad=0)
    kw = dict(kwargs, return_dict_in_generate=True, output_scores=True)
    ref = model.generate(ids, attention_mask=mask, **kw)
    got = fl.generate(model, ids, attention_mask=mask, **kw)
    assert type(got) is type(ref)
    assert torch.equal(got.sequences, ref.sequences)
    assert torch.equal(got.beam_indices, ref.beam_indices)
    torch.testing.assert_close(got.sequences_scores, ref.sequences_scores, rtol=0, atol=1e-5)
    assert len(got.scores) == len(ref.scores)
    plain = fl.generate(model, ids, attention_mask=mask, **kwargs)
    assert torch.equal(plain, ref.sequences)


def test_beam_sampling_is_seeded():
    model = tiny_gpt2()
    ids = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])
    kw = dict(num_beams=3, do_sample=True, max_new_tokens=10, num_return_sequences=2, top_k=0)
    a = fl.generate(model, ids, seed=3, **kw)
    assert a.shape[0] == 4
    assert torch.equal(a, fl.generate(model, ids, seed=3, **kw))
    assert any(not torch.equal(a, fl.generate(model, ids, seed=s, **kw)) for s in range(4, 8))


def test_beam_search_rejects_stop_strings_and_streamers():
    model = tiny_gpt2()
    with pytest.raises(ValueError, match="streamer"):
        fl.generate(model, torch.tensor([[1, 2]]), num_beams=2, streamer=Recorder())


@given(st.integers(0, 2**32 - 1), st.sampled_from([True, False]))
def test_return_dict_scores_and_logits(seed, sample):
    """Same output structure and shapes; greedy scores/logits equal to transformers'."""
    model = tiny_gpt2()
    rng = np.random.default_rng(seed)
    ids, mask = left_padded(rng, 2, 48, 5, pad=0)
    kw = dict(max_new_tokens=6, return_dict_in_generate=True, output_scores=True, output_logits=True)
    kw.update(do_sample=sample, top_k=20 if sample else None, repetition_penalty=1.2)
    ref = model.generate(ids, attention_mask=mask, **kw)
    got = fl.generate(model, ids, attention_mask=mask, seed=seed, **kw)
    assert type(got) is type(ref)
    # Sampled rows may all reach EOS early (fastlogits draws with its own generator): only the bounds hold.
    assert got.sequences.shape[0] == ref.sequences.shape[0]
    assert ids.shape[1] < got.sequences.shape[1] <= ids.shape[1] + 6
    assert torch.equal(got.sequences[:, : ids.shape[1]], ids)
    assert len(got.scores) == len(got.logits) == got.sequences.shape[1] - ids.shape[1]
    if not sample:
        assert torch.equal(got.sequences, ref.sequences)
        for a, b in zip(ref.scores + ref.logits, got.scores + got.logits):
            assert torch.equal(torch.isneginf(a), torch.isneginf(b))
            fin = ~torch.isneginf(a)
            torch.testing.assert_close(b[fin], a[fin], rtol=1e-6, atol=0)
    else:
        torch.testing.assert_close(got.logits[0], ref.logits[0], rtol=0, atol=0)  # same prompt, same model


def test_sampling_is_reproducible_and_seed_dependent():
    model = tiny_gpt2()
    ids = torch.tensor([[1, 2, 3, 4]])
    kw = dict(do_sample=True, max_new_tokens=15, top_k=0, temperature=1.5)
    a = fl.generate(model, ids, seed=7, **kw)
    assert torch.equal(a, fl.generate(model, ids, seed=7, **kw))
    assert any(not torch.equal(a, fl.generate(model, ids, seed=s, **kw)) for s in range(8, 12))


def test_sampling_distribution_matches_softmax():
    """First sampled token over many seeds vs softmax of the processed first-step scores (chi-square)."""
    model = tiny_gpt2()
    ids = torch.tensor([[5, 9, 2]])
    kw = dict(do_sample=True, max_new_tokens=1, top_k=10, temperature=2.0, repetition_penalty=1.3)
    with torch.no_grad():
        logits = model(ids).logits[:, -1].float()
    procs = hf.LogitsProcessorList(
        [hf.RepetitionPenaltyLogitsProcessor(1.3), hf.TemperatureLogitsWarper(2.0), hf.TopKLogitsWarper(10)]
    )
    p = torch.softmax(procs(ids, logits).double(), -1)[0].numpy()
    n = 3000
    toks = [int(fl.generate(model, ids, seed=s, **kw)[0, -1]) for s in range(n)]
    counts = np.bincount(toks, minlength=len(p))
    support = p > 0
    assert counts[~support].sum() == 0
    assert chisquare(counts[support], p[support] * n).pvalue > 1e-3


def test_stream_yields_what_generate_returns():
    model = tiny_gpt2()
    rng = np.random.default_rng(3)
    ids, mask = left_padded(rng, 2, 48, 4, pad=0)
    steps = list(fl.stream(model, ids, attention_mask=mask, max_new_tokens=9, eos_token_id=3, pad_token_id=0))
    full = fl.generate(model, ids, attention_mask=mask, max_new_tokens=9, eos_token_id=3, pad_token_id=0)
    assert torch.equal(torch.stack(steps, dim=1), full[:, ids.shape[1] :])


class Recorder:
    def __init__(self):
        self.puts = []
        self.ended = 0

    def put(self, value):
        self.puts.append(value.clone())

    def end(self):
        self.ended += 1


def test_streamer_receives_what_transformers_gives_it():
    model = tiny_gpt2()
    ids = torch.tensor([[4, 8, 15, 16]])
    a, b = Recorder(), Recorder()
    model.generate(ids, max_new_tokens=7, streamer=a)
    fl.generate(model, ids, max_new_tokens=7, streamer=b)
    assert a.ended == b.ended == 1
    assert len(a.puts) == len(b.puts)
    for x, y in zip(a.puts, b.puts):
        assert torch.equal(x.flatten(), y.flatten())


def test_logits_processor_argument_and_fallback_processors():
    """User processors (transformers', fastlogits.hf's, and ones fastlogits lacks) run in order."""
    model = tiny_gpt2()
    ids = torch.tensor([[1, 2, 3, 1, 2]])

    class Ban7(hf.LogitsProcessor):
        def __call__(self, input_ids, scores):
            scores = scores.clone()
            scores[:, 7] = -float("inf")
            return scores

    procs = [hf.NoRepeatNGramLogitsProcessor(2), Ban7(), fl.hf.SuppressTokensLogitsProcessor([9])]
    kw = dict(max_new_tokens=12, logits_processor=hf.LogitsProcessorList(procs))
    assert torch.equal(model.generate(ids, **kw), fl.generate(model, ids, **kw))


def test_custom_generate_hook():
    model = tiny_gpt2()
    ids = torch.tensor([[1, 2, 3]])
    ref = model.generate(ids, max_new_tokens=8, no_repeat_ngram_size=2)
    got = model.generate(ids, max_new_tokens=8, no_repeat_ngram_size=2, custom_generate=fl.hf.decode)
    assert torch.equal(ref, got)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(max_new_tokens=200), fl.InvalidArgumentError, "n_positions"),
        (dict(num_return_sequences=2), ValueError, "num_return_sequences"),
        (dict(num_beams=2, num_return_sequences=3), ValueError, "num_return_sequences"),
        (dict(assistant_model=object()), fl.InvalidArgumentError, "assistant_model"),
        (dict(penalty_alpha=0.6, top_k=4), fl.InvalidArgumentError, "contrastive"),
        (dict(not_a_generate_argument=1), ValueError, "not_a_generate_argument"),
        (dict(top_p=1.7, do_sample=True), fl.InvalidArgumentError, r"top_p.*\[0, 1\].*1.7"),
    ],
)
def test_bad_arguments(kwargs, exc, match):
    model = tiny_gpt2()
    with pytest.raises(exc, match=match):
        fl.generate(model, torch.tensor([[1, 2, 3]]), **kwargs)


def test_bad_inputs():
    model = tiny_gpt2()
    with pytest.raises(fl.InvalidArgumentError, match="empty"):
        fl.generate(model, torch.zeros((1, 0), dtype=torch.long))
    with pytest.raises(fl.InvalidArgumentError, match="attention_mask"):
        fl.generate(model, torch.tensor([[1, 2, 3]]), attention_mask=torch.ones((1, 4), dtype=torch.long))
