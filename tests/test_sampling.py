"""Sampling, greedy, log-softmax and top-n log-probabilities against torch."""

from __future__ import annotations

import fastlogits as fl
import numpy as np
import pytest
import torch
from helpers import cases
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import chisquare


def softmax64(row: np.ndarray) -> np.ndarray:
    r = row.astype(np.float64)
    e = np.exp(r - r.max())
    return e / e.sum()


def draws(scores: np.ndarray, n: int, seed: int) -> np.ndarray:
    """(n, B) tokens: one call per step, as a decoding loop makes them."""
    return np.stack([fl.sample(scores, seed=seed, step=t) for t in range(n)])


@pytest.mark.parametrize(
    "name,make",
    [
        ("dense", lambda rng: rng.normal(0, 1.0, (3, 40)).astype(np.float32)),
        ("peaked", lambda rng: (rng.normal(0, 1.0, (3, 40)) * 3).astype(np.float32)),
        # After top-k: few finite entries among many -inf (the sparse path).
        (
            "sparse",
            lambda rng: np.where(rng.random((3, 4000)) < 0.006, rng.normal(0, 1, (3, 4000)), -np.inf).astype(
                np.float32
            ),
        ),
    ],
)
def test_chi_square_goodness_of_fit(name, make):
    """Counts of 20,000 seeded draws per row fit softmax(scores) (chi-square, p > 1e-3). The seeds are
    fixed, so this is deterministic, not flaky."""
    rng = np.random.default_rng(123)
    scores = make(rng)
    n = 20_000
    toks = draws(scores, n, seed=2024)
    for b in range(scores.shape[0]):
        p = softmax64(scores[b])
        support = p > 0
        assert np.all(support[toks[:, b]]), "a token with probability 0 was drawn"
        counts = np.bincount(toks[:, b], minlength=len(p))[support]
        expected = p[support] * n
        # Merge low-expectation cells so the chi-square approximation holds.
        order = np.argsort(expected)
        exp_s, cnt_s = expected[order], counts[order]
        small = np.cumsum(exp_s) < 50
        obs = np.concatenate([[cnt_s[small].sum()], cnt_s[~small]]) if small.any() else cnt_s
        ex = np.concatenate([[exp_s[small].sum()], exp_s[~small]]) if small.any() else exp_s
        stat, pval = chisquare(obs, ex)
        assert pval > 1e-3, f"row {b}: chi2={stat:.1f} p={pval:.2e}"


def test_same_seed_same_tokens_at_one_and_two_threads():
    rng = np.random.default_rng(7)
    scores = rng.normal(0, 1, (64, 50257)).astype(np.float32)  # large enough to use the pool
    default = fl.get_num_threads()
    try:
        fl.set_num_threads(1)
        one = [fl.sample(scores, seed=99, step=s) for s in range(3)]
        fl.set_num_threads(2)
        assert fl.get_num_threads() == 2
        two = [fl.sample(scores, seed=99, step=s) for s in range(3)]
    finally:
        fl.set_num_threads(default)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(one[0], one[1]), "different steps must give different draws"


def test_seed_and_step_determine_the_draw():
    scores = np.random.default_rng(0).normal(0, 1, (8, 100)).astype(np.float32)
    a = fl.sample(scores, seed=5, step=3)
    np.testing.assert_array_equal(a, fl.sample(scores, seed=5, step=3))
    s = fl.Sampler(seed=5)
    got = [s(scores) for _ in range(4)]
    np.testing.assert_array_equal(got[3], a)
    assert s.step == 4


@given(cases(max_v=5000, max_l=0, all_inf_rows=False))
def test_greedy_equals_torch_argmax(case):
    s = case.scores.copy()
    s[:, ::7] = s[:, :1]  # create ties: the first maximum must win
    ref = torch.argmax(torch.from_numpy(s), dim=-1).numpy()
    np.testing.assert_array_equal(fl.greedy(s), ref)


def exact_log_softmax(scores: np.ndarray) -> np.ndarray:
    r = scores.astype(np.float64)
    m = r.max(axis=1, keepdims=True)
    return (r - m) - np.log(np.exp(r - m).sum(axis=1, keepdims=True))


def torch_error(scores: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """|torch's float32 log-softmax - the exact one| per element (0 where -inf)."""
    with np.errstate(invalid="ignore"):
        err = np.abs(ref.astype(np.float64) - exact_log_softmax(scores))
    return np.nan_to_num(err, nan=0.0)


def assert_close_to_torch(got: np.ndarray, ref: np.ndarray, atol: np.ndarray, rtol: float = 1e-6) -> None:
    diff = np.abs(got.astype(np.float64) - ref)
    bad = diff > atol + rtol * np.abs(ref)
    if bad.any():
        j = int(np.argmax(bad))
        raise AssertionError(
            f"{bad.sum()} values differ, e.g. {got[j]} vs torch {ref[j]} (tolerance {atol[j]})"
        )


@given(cases(max_v=20000, max_l=0, all_inf_rows=False))
def test_log_softmax_equals_torch(case):
    ref = torch.log_softmax(torch.from_numpy(case.scores), dim=-1).numpy()
    got = fl.log_softmax(case.scores)
    assert np.array_equal(np.isneginf(ref), np.isneginf(got))
    fin = np.isfinite(ref)
    # torch rounds (max + log-sum) in float32: its absolute error grows with |max| and the vocabulary
    # (1.2e-5 seen at V = 17,896); fastlogits' is smaller (test_log_softmax_is_accurate). So the two must
    # agree within 1e-5 plus torch's own distance to the exact (float64) result.
    assert_close_to_torch(got[fin], ref[fin], 1e-5 + torch_error(case.scores, ref)[fin])


@given(cases(max_v=20000, max_l=0, all_inf_rows=False))
def test_log_softmax_is_accurate(case):
    exact = exact_log_softmax(case.scores)
    got = fl.log_softmax(case.scores)
    fin = np.isfinite(exact)
    assert np.array_equal(fin, np.isfinite(got))
    np.testing.assert_allclose(got[fin], exact[fin], rtol=1e-6, atol=1e-6)


@given(cases(max_v=20000, max_l=0, all_inf_rows=False), st.integers(1, 20))
def test_top_logprobs_equals_torch_topk(case, n):
    n = min(n, case.V)
    lp = torch.log_softmax(torch.from_numpy(case.scores), dim=-1)
    # Reference order: by value, ties by lower id (a stable sort on -value).
    order = np.argsort(-lp.numpy(), axis=-1, kind="stable")[:, :n]
    ref_vals = np.take_along_axis(lp.numpy(), order, axis=-1)
    vals, ids = fl.top_logprobs(case.scores, n)
    finite = np.isfinite(ref_vals)
    np.testing.assert_array_equal(ids[finite], order[finite])
    tol = 1e-5 + np.take_along_axis(torch_error(case.scores, lp.numpy()), order, axis=-1)  # see above
    assert_close_to_torch(vals[finite], ref_vals[finite], tol[finite])
    assert np.all(ids[~finite] == -1) and np.all(np.isneginf(vals[~finite]))


def test_torch_in_torch_out():
    s = torch.randn(4, 30)
    out = fl.sample(s, seed=1)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.int64 and out.shape == (4,)
    assert torch.equal(fl.greedy(s), torch.argmax(s, dim=-1))
    assert isinstance(fl.log_softmax(s.half()), torch.Tensor)


@pytest.mark.parametrize("fn", [fl.sample, fl.greedy, fl.log_softmax, lambda s: fl.top_logprobs(s, 2)])
def test_all_neg_inf_row_is_a_clear_error(fn):
    s = np.zeros((3, 5), np.float32)
    s[1] = -np.inf
    with pytest.raises(fl.InvalidArgumentError, match="row 1 of scores is all -inf"):
        fn(s)


@pytest.mark.parametrize("bad,what", [(np.nan, "NaN"), (np.inf, r"\+inf")])
def test_nan_and_pos_inf_are_errors(bad, what):
    s = np.zeros((2, 5), np.float32)
    s[1, 3] = bad
    with pytest.raises(fl.InvalidArgumentError, match=rf"scores\[1, 3\] is {what}"):
        fl.sample(s, seed=0)


def test_bad_seed_and_n():
    s = np.zeros((1, 5), np.float32)
    with pytest.raises(fl.InvalidArgumentError, match="seed"):
        fl.sample(s, seed=-1)
    with pytest.raises(fl.InvalidArgumentError, match="n"):
        fl.top_logprobs(s, 0)
    with pytest.raises(fl.InvalidArgumentError, match=r"\[1, V = 5\]"):
        fl.top_logprobs(s, 6)


@given(cases(max_v=60000, max_b=8, all_inf_rows=False), st.integers(0, 2**32 - 1), st.data())
def test_pipeline_sample_equals_pipeline_then_sample(case, seed, data):
    """The fused call draws the same tokens from the same processed scores as the two separate calls
    (sparse rows after top-k / top-p, and dense rows)."""
    k = data.draw(st.sampled_from([None, 1, 5, 50, 5000]))
    procs = [fl.RepetitionPenaltyLogitsProcessor(1.3), fl.TemperatureLogitsWarper(0.7)]
    if k is not None:
        procs.append(fl.TopKLogitsWarper(k))
    if data.draw(st.booleans()):
        procs.append(fl.TopPLogitsWarper(0.9))
    a, b = case.scores.copy(), case.scores.copy()
    tokens = fl.LogitsPipeline(procs).sample(case.ids, a, seed=seed, step=3)
    fl.LogitsPipeline(procs)(case.ids, b)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(tokens, fl.sample(b, seed=seed, step=3))
