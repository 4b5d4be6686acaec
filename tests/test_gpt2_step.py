"""The lean GPT-2 step (owned KV cache) against transformers' own forward: bit-identical logits and caches,
the same tokens; and the cases where fastlogits.generate keeps the model's forward."""

from __future__ import annotations

import fastlogits as fl
import numpy as np
import pytest
import torch
from fastlogits.transformers import _gpt2
from hypothesis import given, settings
from hypothesis import strategies as st
from models import left_padded, tiny_gpt2
from transformers import GPT2Config, GPT2LMHeadModel


@pytest.fixture
def lean_calls(monkeypatch):
    """Counts the lean step's forward calls."""
    calls = []
    orig = _gpt2.LeanGPT2.forward

    def spy(self, ids, pos):
        calls.append(tuple(ids.shape))
        return orig(self, ids, pos)

    monkeypatch.setattr(_gpt2.LeanGPT2, "forward", spy)
    return calls


def _same_cache(a, b) -> None:
    assert len(a.layers) == len(b.layers)
    for x, y in zip(a.layers, b.layers, strict=True):
        assert torch.equal(x.keys, y.keys) and torch.equal(x.values, y.values)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 3), st.integers(1, 9), st.integers(1, 12), st.integers(0, 2**32 - 1), st.booleans())
def test_greedy_logits_and_cache_are_bit_identical(batch, prompt_len, max_new, seed, mask):
    model = tiny_gpt2()
    rng = np.random.default_rng(seed)
    ids = torch.from_numpy(rng.integers(0, 48, size=(batch, prompt_len)))
    kw = dict(max_new_tokens=max_new, return_dict_in_generate=True, output_logits=True, pad_token_id=0)
    if mask:
        kw["attention_mask"] = torch.ones_like(ids)  # no padding: the lean step still applies
    ref = model.generate(ids, **kw)
    got = fl.generate(model, ids, **kw)
    assert torch.equal(got.sequences, ref.sequences)
    assert len(got.logits) == len(ref.logits)
    for a, b in zip(ref.logits, got.logits, strict=True):
        assert torch.equal(a, b)
    _same_cache(got.past_key_values, ref.past_key_values)


def test_the_lean_step_runs_where_it_applies(lean_calls):
    model = tiny_gpt2()
    ids = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])
    fl.generate(model, ids, max_new_tokens=5, do_sample=False, eos_token_id=None, pad_token_id=0)
    assert lean_calls == [(2, 4)] + [(2, 1)] * 4  # the prompt, then one token per row


@settings(max_examples=15, deadline=None)
@given(st.integers(2, 4), st.integers(1, 3), st.integers(1, 6), st.integers(1, 10), st.integers(0, 2**32 - 1))
def test_beam_search_is_identical_with_the_owned_cache(beams, batch, prompt_len, max_new, seed):
    """Beam reordering happens in the owned cache: sequences, beam indices and scores equal transformers';
    the returned cache equals the one fastlogits returns with the model's own forward (transformers' differs
    after the last step, where every continuation is masked by -1e9 and the order of the resulting float32
    ties among the running beams is torch.topk's, unspecified: see `fastlogits_core::beam`)."""
    model = tiny_gpt2()
    rng = np.random.default_rng(seed)
    ids = torch.from_numpy(rng.integers(0, 48, size=(batch, prompt_len)))
    kw = dict(num_beams=beams, max_new_tokens=max_new, return_dict_in_generate=True, output_scores=True)
    kw.update(pad_token_id=0, num_return_sequences=1)
    ref = model.generate(ids, **kw)
    got = fl.generate(model, ids, **kw)
    assert torch.equal(got.sequences, ref.sequences)
    assert torch.equal(got.beam_indices, ref.beam_indices)
    torch.testing.assert_close(got.sequences_scores, ref.sequences_scores, rtol=0, atol=1e-5)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FASTLOGITS_GPT2_STEP", "transformers")
        other = fl.generate(model, ids, **kw)
    assert torch.equal(other.sequences, got.sequences)
    _same_cache(got.past_key_values, other.past_key_values)


def test_sampling_draws_the_same_tokens_as_with_the_models_forward(monkeypatch):
    model = tiny_gpt2()
    ids = torch.tensor([[1, 2, 3], [4, 5, 6]])
    kw = dict(do_sample=True, top_k=20, temperature=0.9, max_new_tokens=12, seed=7, pad_token_id=0)
    lean = fl.generate(model, ids, **kw)
    monkeypatch.setenv("FASTLOGITS_GPT2_STEP", "transformers")
    assert torch.equal(lean, fl.generate(model, ids, **kw))


def test_gpt2_124m_shape_is_bit_identical():
    """The real GPT-2 shape (random weights): greedy logits and beam sequences equal transformers'."""
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config()).eval()
    ids = torch.randint(0, 50257, (2, 8))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0  # a left-padded row
    kw = dict(max_new_tokens=4, return_dict_in_generate=True, output_logits=True, pad_token_id=0)
    kw["attention_mask"] = mask
    ref, got = model.generate(ids, **kw), fl.generate(model, ids, **kw)
    assert torch.equal(got.sequences, ref.sequences)
    assert all(torch.equal(a, b) for a, b in zip(ref.logits, got.logits, strict=True))
    kw = dict(num_beams=3, max_new_tokens=3, pad_token_id=0, attention_mask=torch.ones_like(ids[:1]))
    assert torch.equal(fl.generate(model, ids[:1], **kw), model.generate(ids[:1], **kw))


def test_where_the_models_forward_is_kept():
    model = tiny_gpt2()
    ids, mask = left_padded(np.random.default_rng(0), 3, 48, 5, pad=0)
    base = dict(attention_mask=torch.ones_like(ids), position_ids=None, logits_to_keep=1, use_cache=True)
    assert _gpt2.unsupported(model, base, False) is None
    assert _gpt2.unsupported(model, dict(base, attention_mask=mask), False) is None  # padding: its masks
    assert "attentions" in _gpt2.unsupported(model, base, True)
    assert "use_cache" in _gpt2.unsupported(model, dict(base, use_cache=False), False)
    eager = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=32, n_positions=32))
    eager.config._attn_implementation = "eager"
    assert "eager" in _gpt2.unsupported(eager.eval(), base, False)
    assert "training" in _gpt2.unsupported(eager.train(), base, False)


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 4), st.integers(2, 8), st.integers(1, 10), st.integers(0, 2**32 - 1), st.integers(1, 3))
def test_left_padded_batches_are_bit_identical(batch, prompt_len, max_new, seed, beams):
    """Padding: transformers gives SDPA boolean masks (causal and padding over the prompt, padding after);
    the lean step gives it the same ones, as views of one buffer. Logits and cache bit-identical (greedy),
    sequences and beam indices identical (beams)."""
    model = tiny_gpt2()
    ids, mask = left_padded(np.random.default_rng(seed), batch, 48, prompt_len, pad=0)
    kw = dict(attention_mask=mask, max_new_tokens=max_new, pad_token_id=0, return_dict_in_generate=True)
    if beams == 1:
        kw["output_logits"] = True
    else:
        kw.update(num_beams=beams, output_scores=True)
    ref, got = model.generate(ids, **kw), fl.generate(model, ids, **kw)
    assert torch.equal(got.sequences, ref.sequences)
    if beams == 1:
        assert all(torch.equal(a, b) for a, b in zip(ref.logits, got.logits, strict=True))
        _same_cache(got.past_key_values, ref.past_key_values)
    else:
        assert torch.equal(got.beam_indices, ref.beam_indices)


def test_padded_batches_take_the_lean_step(lean_calls):
    model = tiny_gpt2()
    ids, mask = left_padded(np.random.default_rng(1), 3, 48, 6, pad=0)
    assert not bool(mask.all())
    ref = model.generate(ids, attention_mask=mask, max_new_tokens=6, pad_token_id=0)
    assert torch.equal(fl.generate(model, ids, attention_mask=mask, max_new_tokens=6, pad_token_id=0), ref)
    assert lean_calls[0] == (3, 6)


@settings(max_examples=10, deadline=None)
@given(st.integers(1, 3), st.integers(2, 6), st.integers(1, 8), st.integers(0, 2**32 - 1), st.integers(1, 3))
def test_bfloat16_equals_transformers_running_the_same_bfloat16_model(
    batch, prompt_len, max_new, seed, beams
):
    model = GPT2LMHeadModel(tiny_gpt2().config)
    model.load_state_dict(tiny_gpt2().state_dict())
    model = model.to(torch.bfloat16).eval()
    ids, mask = left_padded(np.random.default_rng(seed), batch, 48, prompt_len, pad=0)
    kw = dict(attention_mask=mask, max_new_tokens=max_new, pad_token_id=0, num_beams=beams)
    kw.update(return_dict_in_generate=True, output_logits=True)
    ref, got = model.generate(ids, **kw), fl.generate(model, ids, **kw)
    assert torch.equal(got.sequences, ref.sequences)
    if beams == 1:
        assert all(torch.equal(a, b) for a, b in zip(ref.logits, got.logits, strict=True))


def test_dtype_resolution():
    from fastlogits.gpt2 import native_bf16, resolve_dtype

    assert resolve_dtype(None) is torch.float32 and resolve_dtype("float32") is torch.float32
    assert resolve_dtype("bf16") is torch.bfloat16 and resolve_dtype(torch.bfloat16) is torch.bfloat16
    assert resolve_dtype("auto") is (torch.bfloat16 if native_bf16("cpu") else torch.float32)
    for bad in ("float16", torch.float16, 3):
        with pytest.raises(fl.InvalidArgumentError, match="`dtype` has to be one of auto, float32, bfloat16"):
            resolve_dtype(bad)
