"""History-dependent processors keep per-row state between calls; it must always equal a recomputation
from the full history, whatever sequence of histories they see."""

from __future__ import annotations

import fastlogits as fl
import numpy as np
import torch
import transformers.generation.logits_process as hf
from hypothesis import given
from hypothesis import strategies as st

V = 12


@st.composite
def histories(draw):
    """A sequence of batches of histories: mostly one token appended per step, sometimes several, the
    same history again, a rewritten history, a truncated one, or a new batch size."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    b = draw(st.integers(1, 4))
    cur = rng.integers(0, V, size=(b, draw(st.integers(0, 8))))
    out = [cur]
    for _ in range(draw(st.integers(1, 25))):
        move = draw(st.sampled_from(["append"] * 6 + ["append3", "same", "rewrite", "truncate", "rebatch"]))
        if move == "append":
            cur = np.concatenate([cur, rng.integers(0, V, size=(b, 1))], axis=1)
        elif move == "append3":
            cur = np.concatenate([cur, rng.integers(0, V, size=(b, 3))], axis=1)
        elif move == "rewrite" and cur.shape[1]:
            cur = cur.copy()
            cur[rng.integers(b), rng.integers(cur.shape[1])] = rng.integers(0, V)
        elif move == "truncate" and cur.shape[1]:
            cur = cur[:, : rng.integers(cur.shape[1])]
        elif move == "rebatch":
            b = int(rng.integers(1, 5))
            cur = rng.integers(0, V, size=(b, cur.shape[1]))
        out.append(cur)
    return out


@given(histories(), st.integers(1, 4), st.floats(0.5, 2.0), st.integers(0, 5))
def test_state_follows_any_history(hist, n, penalty, ignore):
    rng = np.random.default_rng(0)
    ours = fl.LogitsPipeline(
        [
            fl.RepetitionPenaltyLogitsProcessor(penalty, prompt_ignore_length=ignore),
            fl.NoRepeatNGramLogitsProcessor(n),
        ]
    )
    for ids in hist:
        s = rng.normal(size=(ids.shape[0], V)).astype(np.float32)
        ref = hf.LogitsProcessorList(
            [
                hf.RepetitionPenaltyLogitsProcessor(penalty, prompt_ignore_length=ignore),
                hf.NoRepeatNGramLogitsProcessor(n),
            ]
        )(torch.from_numpy(ids), torch.from_numpy(s.copy())).numpy()
        np.testing.assert_array_equal(ours(ids, s.copy()), ref)


def presence_frequency_reference(
    ids: np.ndarray, s: np.ndarray, presence: float, frequency: float, prompt: int
):
    """The OpenAI / vLLM definition, written out: counts over generated tokens only."""
    out = s.copy()
    for r in range(ids.shape[0]):
        counts = np.bincount(ids[r, prompt:], minlength=s.shape[1]).astype(np.float32)
        out[r] -= np.float32(frequency) * counts
        out[r] -= np.float32(presence) * (counts > 0)
    return out


@given(histories(), st.floats(-2, 2), st.floats(-2, 2), st.integers(0, 6))
def test_presence_and_frequency_penalties(hist, presence, frequency, prompt):
    rng = np.random.default_rng(1)
    ours = fl.LogitsPipeline(
        [
            fl.FrequencyPenaltyLogitsProcessor(frequency, prompt),
            fl.PresencePenaltyLogitsProcessor(presence, prompt),
        ]
    )
    for ids in hist:
        s = rng.normal(size=(ids.shape[0], V)).astype(np.float32)
        np.testing.assert_allclose(
            ours(ids, s.copy()),
            presence_frequency_reference(ids, s, presence, frequency, prompt),
            rtol=1e-6,
            atol=1e-6,
        )


@given(st.integers(0, 2**32 - 1), st.integers(2, 4), st.integers(1, 3))
def test_reorder_after_beam_step(seed, beams, n):
    """After `reorder(beam_idx)` the incremental state continues the chosen rows' histories."""
    rng = np.random.default_rng(seed)
    ours = fl.LogitsPipeline([fl.NoRepeatNGramLogitsProcessor(n), fl.RepetitionPenaltyLogitsProcessor(1.4)])
    ids = rng.integers(0, V, size=(beams, 5))
    for _ in range(12):
        s = rng.normal(size=(beams, V)).astype(np.float32)
        ref = hf.LogitsProcessorList(
            [hf.NoRepeatNGramLogitsProcessor(n), hf.RepetitionPenaltyLogitsProcessor(1.4)]
        )(torch.from_numpy(ids), torch.from_numpy(s.copy())).numpy()
        np.testing.assert_array_equal(ours(ids, s.copy()), ref)
        beam_idx = rng.integers(0, beams, size=beams)
        ours.reorder(beam_idx)
        ids = np.concatenate([ids[beam_idx], rng.integers(0, V, size=(beams, 1))], axis=1)
