"""Every processor against the transformers 5.23 class of the same name, on the same inputs.

Property: identical -inf mask and finite values equal within 1e-6 relative (in practice the values
are bit-identical). Inputs: B 1-16, V 1-60000, L 0-300, peaked / typical / flat logits, -inf entries,
rows that are all -inf, repeated ids. Examples where equality is not defined are rejected by the
`assume_*` margins of helpers.py (a cumulative mass within 1e-6 of a threshold, a logit within 2e-6
of a probability threshold, exact ties at a top-p / typical / min-p re-keep boundary): see there.
"""

from __future__ import annotations

import inspect

import fastlogits as fl
import numpy as np
import pytest
import transformers.generation.logits_process as hf
from helpers import (
    assert_same,
    assume_min_p_margin,
    assume_prob_floor_margin,
    assume_top_h_margin,
    assume_top_p_margin,
    assume_typical_margin,
    cases,
    entropy64,
    run_fl,
    run_hf,
)
from hypothesis import assume, given
from hypothesis import strategies as st

filter_values = st.sampled_from([-float("inf"), -float("inf"), -1e4, -50.0])
min_keeps = st.sampled_from([1, 1, 2, 5])


def check(name: str, case, *args, **kwargs) -> None:
    ref = run_hf(getattr(hf, name)(*args, **kwargs), case.ids, case.scores)
    got = run_fl(getattr(fl, name)(*args, **kwargs), case.ids, case.scores)
    assert_same(ref, got)


@given(cases(), st.floats(0.05, 5.0))
def test_temperature(case, t):
    check("TemperatureLogitsWarper", case, t)


@given(cases(), st.integers(1, 200), filter_values, min_keeps)
def test_top_k(case, k, filter_value, min_keep):
    """Ties with the k-th value are kept by both (transformers removes `scores < kth`)."""
    check("TopKLogitsWarper", case, k, filter_value=filter_value, min_tokens_to_keep=min_keep)


@given(
    cases(),
    st.one_of(st.floats(0.0, 1.0), st.sampled_from([0.0, 0.5, 0.9, 0.95, 1.0])),
    filter_values,
    min_keeps,
)
def test_top_p(case, top_p, filter_value, min_keep):
    """Excluded: a cumulative mass within 1e-6 of 1 - top_p; a tie at the boundary token."""
    assume_top_p_margin(case.scores, top_p, min_keep)
    check("TopPLogitsWarper", case, top_p, filter_value=filter_value, min_tokens_to_keep=min_keep)


@given(
    cases(), st.one_of(st.floats(0.0, 1.0), st.sampled_from([0.0, 0.05, 0.1, 1.0])), filter_values, min_keeps
)
def test_min_p(case, min_p, filter_value, min_keep):
    """Excluded: a logit within 2e-6 of max + log(min_p); a tie at the min_tokens_to_keep-th value."""
    assume_min_p_margin(case.scores, min_p, min_keep)
    check("MinPLogitsWarper", case, min_p, filter_value=filter_value, min_tokens_to_keep=min_keep)


@given(cases(), st.one_of(st.floats(0.01, 0.999), st.sampled_from([0.05, 0.4, 0.9])), filter_values)
def test_top_h(case, top_h, filter_value):
    """transformers 5.23's top-h. Excluded: a tie at the 100th place, a cumulative entropy within 1e-5 of the
    threshold (top_h = 1 puts the last of the 100 exactly on it: left out), a probability at float32's
    underflow edge."""
    assume(np.isfinite(case.scores).any(axis=1).all())  # (all -inf rows: see the test below)
    assume_top_h_margin(case.scores, top_h)
    check("TopHLogitsWarper", case, top_h, filter_value=filter_value)


def test_top_h_all_neg_inf_row():
    """transformers' top-h raises ValueError for a row that is all -inf (torch.distributions.Categorical
    rejects its NaN normalized logits); fastlogits leaves the row as it is, as its other warpers do (a draw
    from it then raises)."""
    import torch

    s = np.array([[1.0, 2.0, 0.5], [-np.inf, -np.inf, -np.inf]], dtype=np.float32)
    with pytest.raises(ValueError):
        hf.TopHLogitsWarper(0.5)(None, torch.from_numpy(s.copy()))
    out = fl.TopHLogitsWarper(0.5)(None, s.copy())
    ref = hf.TopHLogitsWarper(0.5)(None, torch.from_numpy(s[:1].copy())).numpy()
    assert_same(ref, out[:1])
    assert np.isneginf(out[1]).all()


@given(cases(), st.floats(0.01, 0.99), filter_values, min_keeps)
def test_typical(case, mass, filter_value, min_keep):
    """Excluded: a cumulative mass within 1e-6 of `mass`; boundary keys closer than 2e-5."""
    assume_typical_margin(case.scores, mass, min_keep)
    check("TypicalLogitsWarper", case, mass, filter_value=filter_value, min_tokens_to_keep=min_keep)


@given(cases(), st.floats(1e-6, 0.5), filter_values, min_keeps)
def test_epsilon(case, eps, filter_value, min_keep):
    """Excluded: a logit within 2e-6 of the probability threshold."""
    assume_prob_floor_margin(case.scores, lambda row: float(np.float32(eps)))
    check("EpsilonLogitsWarper", case, eps, filter_value=filter_value, min_tokens_to_keep=min_keep)


@given(cases(all_inf_rows=False), st.floats(1e-6, 0.5), filter_values, min_keeps)
def test_eta(case, eps, filter_value, min_keep):
    """Excluded: a logit within 2e-6 of the threshold min(eps, sqrt(eps) exp(-H)); rows that are all
    -inf (transformers' Categorical raises on them; fastlogits leaves them unchanged)."""
    assume_prob_floor_margin(case.scores, lambda row: min(eps, np.sqrt(eps) * np.exp(-entropy64(row))))
    check("EtaLogitsWarper", case, eps, filter_value=filter_value, min_tokens_to_keep=min_keep)


@given(cases(), st.floats(0.1, 10.0), st.one_of(st.none(), st.integers(0, 50)))
def test_repetition_penalty(case, penalty, ignore):
    check("RepetitionPenaltyLogitsProcessor", case, penalty, prompt_ignore_length=ignore)


@given(cases(), st.floats(0.1, 10.0), st.data())
def test_repetition_penalty_per_row_ignore(case, penalty, data):
    """The tensor form of prompt_ignore_length, as generate passes it (left-padding lengths)."""
    import torch

    ignore = data.draw(st.lists(st.integers(0, case.ids.shape[1]), min_size=case.B, max_size=case.B))
    ref = run_hf(
        hf.RepetitionPenaltyLogitsProcessor(penalty, prompt_ignore_length=torch.tensor(ignore)),
        case.ids,
        case.scores,
    )
    got = run_fl(
        fl.RepetitionPenaltyLogitsProcessor(penalty, prompt_ignore_length=np.array(ignore)),
        case.ids,
        case.scores,
    )
    assert_same(ref, got)


@given(cases(), st.integers(1, 6))
def test_no_repeat_ngram(case, n):
    check("NoRepeatNGramLogitsProcessor", case, n)


@st.composite
def token_seqs(draw, V: int, ids: np.ndarray, max_len: int = 4):
    """Token sequences, some ending histories' suffixes so that multi-token entries fire."""
    seqs = []
    for _ in range(draw(st.integers(1, 6))):
        if ids.shape[1] and draw(st.booleans()):
            row = draw(st.integers(0, ids.shape[0] - 1))
            n = draw(st.integers(1, min(max_len - 1, ids.shape[1])))
            seq = [int(t) for t in ids[row, -n:]] + [draw(st.integers(0, V - 1))]
        else:
            seq = draw(st.lists(st.integers(0, V - 1), min_size=1, max_size=max_len))
        seqs.append(seq)
    return seqs


@given(st.data(), cases(max_l=30))
def test_no_bad_words(data, case):
    seqs = data.draw(token_seqs(case.V, case.ids))
    eos = data.draw(
        st.one_of(
            st.none(),
            st.integers(0, case.V - 1),
            st.lists(st.integers(0, case.V - 1), min_size=1, max_size=3),
        )
    )
    if eos is not None and all(
        len(s) == 1 and s[0] in ([eos] if isinstance(eos, int) else eos) for s in seqs
    ):
        seqs.append([0, 0])  # transformers rejects a list that is all EOS singletons
    check("NoBadWordsLogitsProcessor", case, seqs, eos_token_id=eos)


@given(st.data(), cases(max_l=30))
def test_sequence_bias(data, case):
    seqs = data.draw(token_seqs(case.V, case.ids))
    biases = data.draw(st.lists(st.floats(-10, 10), min_size=len(seqs), max_size=len(seqs)))
    as_dict = data.draw(st.booleans())
    arg = {tuple(s): b for s, b in zip(seqs, biases)} if as_dict else [[s, b] for s, b in zip(seqs, biases)]
    check("SequenceBiasLogitsProcessor", case, arg)


@given(cases(max_l=60), st.integers(0, 80), st.data())
def test_min_length(case, min_length, data):
    eos = data.draw(
        st.one_of(st.integers(0, case.V - 1), st.lists(st.integers(0, case.V - 1), min_size=1, max_size=3))
    )
    check("MinLengthLogitsProcessor", case, min_length, eos)


@given(cases(max_l=60), st.integers(0, 60), st.integers(0, 30), st.data())
def test_min_new_tokens(case, skip, min_new, data):
    eos = data.draw(
        st.one_of(st.integers(0, case.V - 1), st.lists(st.integers(0, case.V - 1), min_size=1, max_size=3))
    )
    check("MinNewTokensLengthLogitsProcessor", case, skip, min_new, eos)


@given(cases(max_l=20), st.data())
def test_suppress_tokens(case, data):
    toks = data.draw(st.lists(st.integers(0, case.V - 1), max_size=10))
    check("SuppressTokensLogitsProcessor", case, toks)


@given(cases(max_l=20), st.data())
def test_suppress_tokens_at_begin(case, data):
    toks = data.draw(st.lists(st.integers(0, case.V - 1), max_size=10))
    begin = data.draw(st.sampled_from([case.ids.shape[1], 0, 5]))
    check("SuppressTokensAtBeginLogitsProcessor", case, toks, begin)


@given(cases(max_l=60), st.integers(-5, 40), st.floats(0.5, 2.0), st.integers(0, 30), st.data())
def test_exponential_decay_length_penalty(case, start, factor, prompt_len, data):
    eos = data.draw(
        st.one_of(st.integers(0, case.V - 1), st.lists(st.integers(0, case.V - 1), min_size=1, max_size=3))
    )
    check("ExponentialDecayLengthPenalty", case, (start, factor), eos, prompt_len)


def test_every_transformers_processor_of_the_issue_exists_with_the_same_name():
    names = [
        "TemperatureLogitsWarper", "TopKLogitsWarper", "TopPLogitsWarper", "MinPLogitsWarper",
        "TypicalLogitsWarper", "EpsilonLogitsWarper", "EtaLogitsWarper", "TopHLogitsWarper",
        "RepetitionPenaltyLogitsProcessor",
        "NoRepeatNGramLogitsProcessor", "NoBadWordsLogitsProcessor", "SequenceBiasLogitsProcessor",
        "MinLengthLogitsProcessor", "MinNewTokensLengthLogitsProcessor", "SuppressTokensLogitsProcessor",
        "SuppressTokensAtBeginLogitsProcessor", "ExponentialDecayLengthPenalty",
    ]  # fmt: skip
    for n in names:
        assert hasattr(hf, n) and hasattr(fl, n), n
        ours, theirs = inspect.signature(getattr(fl, n)), inspect.signature(getattr(hf, n))
        assert list(ours.parameters) == list(theirs.parameters), n
        for p in ours.parameters.values():
            assert p.default == theirs.parameters[p.name].default, (n, p.name)


@pytest.mark.parametrize("k", [1, 3])
def test_top_k_ties_are_kept(k):
    """Deterministic example of the documented tie rule."""
    s = np.array([[1.0, 3.0, 3.0, 3.0, 2.0]], np.float32)
    ids = np.zeros((1, 0), np.int64)
    assert_same(run_hf(hf.TopKLogitsWarper(k), ids, s), run_fl(fl.TopKLogitsWarper(k), ids, s))


@pytest.mark.parametrize(
    "name,arg", [("TopPLogitsWarper", 0.5), ("TypicalLogitsWarper", 0.5), ("MinPLogitsWarper", 0.5)]
)
@pytest.mark.parametrize("min_keep", [2, 3])
def test_min_tokens_to_keep_beyond_the_finite_tokens_keeps_neg_inf(name, arg, min_keep):
    """With fewer finite tokens than min_tokens_to_keep, transformers' re-keep covers -inf tokens too: with a
    finite filter value they must stay -inf (found by the thorough profile)."""
    s = np.array([[13.015655, -0.14293046, 1.0], [-np.inf, 3.2065272, -np.inf]], np.float32)[:, :min_keep]
    ids = np.zeros((2, 0), np.int64)
    kw = dict(filter_value=-1e4, min_tokens_to_keep=min_keep)
    assert_same(run_hf(getattr(hf, name)(arg, **kw), ids, s), run_fl(getattr(fl, name)(arg, **kw), ids, s))
