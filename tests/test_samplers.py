"""Warpers transformers does not have, against straightforward float64 references written here from their
published definitions (llama.cpp's `src/llama-sampling.cpp`: `top_n_sigma`, `temp_ext`), on hypothesis-drawn
rows (ties, -inf entries, tiny vocabularies, per-row parameters).

Excluded where equality is not defined: a score within float32 rounding of top-nσ's cut (fastlogits sums in
float64, llama.cpp in float32)."""

from __future__ import annotations

import fastlogits as fl
import numpy as np
import pytest
import torch
from helpers import assert_same, cases
from hypothesis import assume, given
from hypothesis import strategies as st

NEG = -np.inf
filter_values = st.sampled_from([NEG, NEG, -1e4])


# -- references (float64, from llama.cpp's definitions) ------------------------------------------------------


def ref_top_n_sigma(row: np.ndarray, n: float, filter_value: float = NEG) -> np.ndarray:
    out = row.copy()
    fin = np.isfinite(row)
    if fin.sum() < 2:
        return out
    x = row[fin].astype(np.float64)
    cut = x.max() - n * x.std()  # population standard deviation, as llama.cpp
    out[row.astype(np.float64) < cut] = filter_value
    return out


def top_n_sigma_cut(row: np.ndarray, n: float) -> float | None:
    x = row[np.isfinite(row)].astype(np.float64)
    return None if len(x) < 2 else float(x.max() - n * x.std())


def ref_dynamic_temperature(row: np.ndarray, t: float, r: float, e: float) -> np.ndarray:
    if r <= 0:
        return (row / np.float32(t)).astype(np.float32)
    fin = np.isfinite(row)
    n = int(fin.sum())
    if n < 2:
        return row.copy()
    x = row[fin].astype(np.float64)
    p = np.exp(x - x.max())
    p /= p.sum()
    h = -(p[p > 0] * np.log(p[p > 0])).sum()
    lo, hi = max(0.0, t - r), t + r
    dyn = lo + (hi - lo) * min(h / np.log(n), 1.0) ** e
    if dyn <= 0 or np.abs(x).max() / dyn >= np.finfo(np.float32).max:
        out = np.full_like(row, NEG)
        out[row == row[fin].max()] = row[fin].max()
        return out
    return (row / np.float32(dyn)).astype(np.float32)


def run(proc, scores: np.ndarray) -> np.ndarray:
    return proc(np.zeros((scores.shape[0], 0), np.int64), scores.copy())


# -- top-nσ --------------------------------------------------------------------------------------------------


@given(cases(max_l=0), st.floats(0.01, 5.0), filter_values)
def test_top_n_sigma_matches_the_definition(case, n, filter_value):
    for row in case.scores:
        cut = top_n_sigma_cut(row, n)
        if cut is not None:
            fin = row[np.isfinite(row)].astype(np.float64)
            assume(np.min(np.abs(fin - cut)) > 1e-5 * max(1.0, abs(cut)))
    ref = np.stack([ref_top_n_sigma(r, n, filter_value) for r in case.scores])
    assert_same(ref, run(fl.TopNSigmaLogitsWarper(n, filter_value), case.scores))


@given(cases(max_l=0, max_b=6), st.data())
def test_top_n_sigma_per_row_equals_row_by_row(case, data):
    ns = data.draw(st.lists(st.sampled_from([0.3, 1.0, 2.5]), min_size=case.B, max_size=case.B))
    together = run(fl.TopNSigmaLogitsWarper(ns), case.scores)
    for i, n in enumerate(ns):
        assert_same(run(fl.TopNSigmaLogitsWarper(n), case.scores[i : i + 1]), together[i : i + 1])


def test_top_n_sigma_small_cases():
    s = np.array([[1.0, 2.0, 3.0, NEG], [5.0, NEG, NEG, NEG], [2.0, 2.0, 2.0, 2.0]], np.float32)
    out = run(fl.TopNSigmaLogitsWarper(1.0), s)
    # row 0: mean 2, sigma sqrt(2/3) = 0.816: cut 2.18 keeps 3 only; one finite value / all equal: unchanged
    assert out[0].tolist() == [NEG, NEG, 3.0, NEG]
    assert out[1].tolist() == s[1].tolist() and out[2].tolist() == s[2].tolist()
    # The kept set does not depend on the temperature (max and sigma scale alike).
    big = np.random.default_rng(0).normal(0, 3, (4, 500)).astype(np.float32)
    a = np.isfinite(run(fl.TopNSigmaLogitsWarper(1.5), big))
    b = np.isfinite(run(fl.TopNSigmaLogitsWarper(1.5), big / np.float32(0.7)))
    assert (a == b).all()


# -- dynamic temperature -------------------------------------------------------------------------------------


@given(
    cases(max_l=0),
    st.floats(0.05, 3.0),
    st.one_of(st.just(0.0), st.floats(0.0, 3.0)),
    st.sampled_from([0.0, 0.5, 1.0, 2.0]),
)
def test_dynamic_temperature_matches_the_definition(case, t, r, e):
    ref = np.stack([ref_dynamic_temperature(row, t, r, e) for row in case.scores])
    got = run(fl.DynamicTemperatureLogitsWarper(t, r, e), case.scores)
    assert (np.isneginf(ref) == np.isneginf(got)).all()
    fin = np.isfinite(ref)
    np.testing.assert_allclose(got[fin], ref[fin], rtol=2e-6, atol=1e-30)


def test_dynamic_temperature_range_zero_is_the_temperature_and_entropy_moves_it():
    s = np.random.default_rng(1).normal(0, 2, (3, 1000)).astype(np.float32)
    assert_same(run(fl.TemperatureLogitsWarper(0.7), s), run(fl.DynamicTemperatureLogitsWarper(0.7, 0.0), s))
    # A flat row gets (nearly) the highest temperature, a peaked one (nearly) the lowest.
    flat = np.zeros((1, 1000), np.float32) + np.float32(1e-3) * np.arange(1000, dtype=np.float32)
    peaked = np.full((1, 1000), -50.0, np.float32)
    peaked[0, 3] = 10.0
    out_flat = run(fl.DynamicTemperatureLogitsWarper(1.0, 0.5), flat)
    out_peaked = run(fl.DynamicTemperatureLogitsWarper(1.0, 0.5), peaked)
    assert abs(float(flat[0, 999] / out_flat[0, 999]) - 1.5) < 1e-2
    assert abs(float(peaked[0, 3] / out_peaked[0, 3]) - 0.5) < 1e-2
    # Temperature 0 at the low end (t = range) on a one-hot row: the limit keeps the maximum only.
    onehot = np.full((1, 8), NEG, np.float32)
    onehot[0, 2], onehot[0, 5] = 0.0, -200.0
    out = run(fl.DynamicTemperatureLogitsWarper(0.5, 0.5, 1.0), onehot)
    assert np.isfinite(out[0]).sum() == 1 and out[0, 2] == 0.0


@given(cases(max_l=0, max_b=5), st.data())
def test_dynamic_temperature_per_row_equals_row_by_row(case, data):
    ts = data.draw(st.lists(st.sampled_from([0.5, 1.0]), min_size=case.B, max_size=case.B))
    rs = data.draw(st.lists(st.sampled_from([0.0, 0.4, 1.0]), min_size=case.B, max_size=case.B))
    together = run(fl.DynamicTemperatureLogitsWarper(ts, rs, 2.0), case.scores)
    for i in range(case.B):
        one = run(fl.DynamicTemperatureLogitsWarper(ts[i], rs[i], 2.0), case.scores[i : i + 1])
        assert_same(one, together[i : i + 1])


# -- bad input, the chain, generate ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, needle",
    [
        (lambda: fl.TopNSigmaLogitsWarper(0.0), "top_n_sigma.*> 0"),
        (lambda: fl.TopNSigmaLogitsWarper(-1.0), "top_n_sigma"),
        (lambda: fl.TopNSigmaLogitsWarper(float("nan")), "top_n_sigma"),
        (lambda: fl.TopNSigmaLogitsWarper([1.0, 0.0]), "top_n_sigma"),
        (lambda: fl.TopNSigmaLogitsWarper("x"), "top_n_sigma"),
        (lambda: fl.DynamicTemperatureLogitsWarper(0.0, 0.5), "temperature.*> 0"),
        (lambda: fl.DynamicTemperatureLogitsWarper(1.0, -0.5), "dynatemp_range.*>= 0"),
        (lambda: fl.DynamicTemperatureLogitsWarper(1.0, 0.5, float("inf")), "dynatemp_exponent"),
        (lambda: fl.DynamicTemperatureLogitsWarper(1.0, [0.5, -1.0]), "dynatemp_range"),
    ],
)
def test_bad_parameters_are_named(make, needle):
    with pytest.raises(fl.InvalidArgumentError, match=needle):
        make()


def test_per_row_count_must_match_the_batch():
    with pytest.raises(fl.ShapeError, match="top_n_sigma.*2 per-row values.*3 rows"):
        run(fl.TopNSigmaLogitsWarper([1.0, 2.0]), np.zeros((3, 5), np.float32))


def test_generation_config_keys_build_the_documented_order():
    pipe = fl.LogitsPipeline.from_generation_config(
        do_sample=True, temperature=0.8, dynatemp_range=0.3, dynatemp_exponent=2.0, top_h=0.5, top_n_sigma=1.5,
        top_k=40, top_p=0.9,
    )  # fmt: skip
    names = [type(p).__name__ for p in pipe]
    assert names == [
        "DynamicTemperatureLogitsWarper", "TopHLogitsWarper", "TopNSigmaLogitsWarper", "TopKLogitsWarper",
        "TopPLogitsWarper",
    ]  # fmt: skip
    d = pipe.processors[0]
    assert (d.temperature, d.dynatemp_range, d.exponent) == (0.8, 0.3, 2.0)
    plain = fl.LogitsPipeline.from_generation_config(do_sample=True, temperature=0.8, dynatemp_range=0.0)
    assert [type(p).__name__ for p in plain] == ["TemperatureLogitsWarper", "TopKLogitsWarper"]


def test_generate_takes_the_new_keys():
    """`fastlogits.generate(..., top_n_sigma=...)`: transformers' generate would reject the key as a model
    input; fastlogits builds the warper. A tiny n keeps only the maximum: the sampled tokens are greedy's."""
    from models import tiny_gpt2

    model = tiny_gpt2()
    ids = torch.tensor([[5, 9, 2, 5], [1, 2, 3, 4]])
    greedy = fl.generate(model, ids, max_new_tokens=8, do_sample=False, pad_token_id=0)
    sampled = fl.generate(
        model, ids, max_new_tokens=8, do_sample=True, top_n_sigma=1e-6, seed=3, pad_token_id=0
    )
    assert torch.equal(greedy, sampled)
    a = fl.generate(model, ids, max_new_tokens=8, do_sample=True, dynatemp_range=0.5, top_h=0.9, seed=4,
                    pad_token_id=0)  # fmt: skip
    b = fl.generate(model, ids, max_new_tokens=8, do_sample=True, dynatemp_range=0.5, top_h=0.9, seed=4,
                    pad_token_id=0)  # fmt: skip
    assert torch.equal(a, b)
    with pytest.raises(fl.InvalidArgumentError, match="top_n_sigma"):
        fl.generate(model, ids, max_new_tokens=3, do_sample=True, top_n_sigma=-1.0, pad_token_id=0)


def test_hf_adapters_return_a_new_tensor():
    s = torch.randn(2, 50)
    before = s.clone()
    pairs = [
        (fl.hf.TopNSigmaLogitsWarper(1.0), fl.TopNSigmaLogitsWarper(1.0)),
        (fl.hf.DynamicTemperatureLogitsWarper(1.0, 0.5), fl.DynamicTemperatureLogitsWarper(1.0, 0.5)),
    ]
    for adapter, plain in pairs:
        out = adapter(None, s)
        assert out is not s and torch.equal(s, before)
        assert torch.equal(torch.from_numpy(run(plain, s.numpy())), out)
