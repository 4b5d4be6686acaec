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
    # Far from 0 (a constant added to every score): the float64 reference's kept set, no cancellation.
    rng = np.random.default_rng(3)
    for offset in (1e3, 1e4, 3e4, 1e5):
        far = (offset + rng.standard_normal((2, 50257))).astype(np.float32)
        got = np.isfinite(run(fl.TopNSigmaLogitsWarper(2.5), far))
        ref = np.isfinite(np.stack([ref_top_n_sigma(r, 2.5) for r in far]))
        assert (got == ref).all(), offset
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
    """Values within 1e-5 relative: fastlogits' entropy comes from float32 exponentials (as llama.cpp's,
    summed in float64), the reference's from float64 ones; near-zero entropies and powers below 1 amplify
    the difference."""
    ref = np.stack([ref_dynamic_temperature(row, t, r, e) for row in case.scores])
    got = run(fl.DynamicTemperatureLogitsWarper(t, r, e), case.scores)
    assert (np.isneginf(ref) == np.isneginf(got)).all()
    fin = np.isfinite(ref)
    np.testing.assert_allclose(got[fin], ref[fin], rtol=1e-5, atol=1e-30)


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
        (lambda: fl.DynamicTemperatureLogitsWarper(0.0, 0.5), r"temperature.*\(0, 1.7e38\]"),
        (lambda: fl.DynamicTemperatureLogitsWarper(1e300, 0.0), "temperature"),  # (not a float32)
        (lambda: fl.DynamicTemperatureLogitsWarper(1.0, -0.5), r"dynatemp_range.*\[0, 1.7e38\]"),
        (lambda: fl.DynamicTemperatureLogitsWarper(1.0, 1e39), "dynatemp_range"),
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


# -- XTC -----------------------------------------------------------------------------------------------------


def ref_xtc(row: np.ndarray, threshold: float, min_keep: int = 1) -> np.ndarray:
    """llama.cpp `xtc` once its draw says it applies: all tokens with p >= threshold but the least probable
    (ties: the highest id), when >= 2 qualify and >= min_keep remain."""
    out = row.copy()
    fin = np.isfinite(row)
    n = int(fin.sum())
    if n < 2:
        return out
    x = row.astype(np.float64)
    p = np.zeros(len(row))
    p[fin] = np.exp(x[fin] - x[fin].max())
    p /= p.sum()
    q = np.flatnonzero(fin & (p >= threshold))
    if len(q) < 2 or n - (len(q) - 1) < min_keep:
        return out
    least = row[q].min()
    keep = q[row[q] == least].max()
    out[q[q != keep]] = NEG
    return out


def xtc_margin(row: np.ndarray, threshold: float) -> None:
    fin = np.isfinite(row)
    if fin.sum() < 2 or threshold <= 0:
        return
    x = row[fin].astype(np.float64)
    p = np.exp(x - x.max())
    p /= p.sum()
    assume(np.min(np.abs(p - threshold)) > 1e-5 * threshold)  # (float32 exponentials in fastlogits)


@given(cases(max_l=0), st.floats(0.0, 0.5), st.sampled_from([1, 1, 2, 50]))
def test_xtc_matches_the_definition_when_it_applies(case, threshold, min_keep):
    for row in case.scores:
        xtc_margin(row, threshold)
    ref = np.stack([ref_xtc(r, threshold, min_keep) for r in case.scores])
    assert_same(ref, run(fl.XTCLogitsWarper(threshold, 1.0, min_keep, seed=0), case.scores))


def test_xtc_never_applies_with_probability_0_or_a_threshold_above_one_half():
    s = np.random.default_rng(2).normal(0, 3, (4, 300)).astype(np.float32)
    assert_same(s, run(fl.XTCLogitsWarper(0.01, 0.0), s))
    assert_same(s, run(fl.XTCLogitsWarper(0.51, 1.0), s))


def _two_top_choices(b: int) -> np.ndarray:
    s = np.full((b, 10), -5.0, np.float32)
    s[:, 0], s[:, 1] = 3.0, 2.5  # both >= 0.1 in probability: XTC removes token 0 when it applies
    return s


def test_xtc_applies_with_its_probability_per_row_and_step():
    """Plain calls: the decision is the stream (seed, row, history length); over 64 rows x 100 lengths the
    fraction applied is probability within 5 standard deviations, and each decision is reproducible."""
    p, rows, steps = 0.3, 64, 100
    xtc = fl.XTCLogitsWarper(0.1, p, seed=11)
    s = _two_top_choices(rows)
    applied = np.zeros((steps, rows), bool)
    for t in range(steps):
        ids = np.zeros((rows, t), np.int64)
        applied[t] = np.isneginf(xtc(ids, s.copy())[:, 0])
    n = applied.size
    assert abs(applied.sum() - n * p) < 5 * np.sqrt(n * p * (1 - p))
    again = fl.XTCLogitsWarper(0.1, p, seed=11)(np.zeros((rows, 7), np.int64), s.copy())
    assert (np.isneginf(again[:, 0]) == applied[7]).all()


def test_xtc_in_a_drawing_call_follows_the_row_keys_at_any_thread_count():
    """LogitsPipeline.sample: the decision comes from the draw's stream; with per-row keys a row decides
    (and draws) the same wherever it sits, at 1 and 2 threads."""
    pipe = fl.LogitsPipeline([fl.XTCLogitsWarper(0.1, 0.5)])
    s = _two_top_choices(8)
    keys = [fl.sampling.stream_key(5, i) for i in range(8)]
    old = fl.get_num_threads()
    try:
        out = {}
        for threads in (1, 2):
            fl.set_num_threads(threads)
            out[threads] = [
                pipe.sample(np.zeros((8, 3), np.int64), s.copy(), seed=keys, step=t) for t in range(40)
            ]
        assert all((a == b).all() for a, b in zip(out[1], out[2]))
        rev = [pipe.sample(np.zeros((8, 3), np.int64), s.copy(), seed=keys[::-1], step=t) for t in range(40)]
        assert all((a[::-1] == b).all() for a, b in zip(out[1], rev))
        # Token 0 is drawn only when XTC did not apply: sometimes, not always.
        zeros = sum(int((o == 0).sum()) for o in out[1])
        assert 0 < zeros < 8 * 40
    finally:
        fl.set_num_threads(old)


def test_xtc_bad_parameters():
    for make, needle in [
        (lambda: fl.XTCLogitsWarper(1.5, 0.5), "xtc_threshold.*\\[0, 1\\]"),
        (lambda: fl.XTCLogitsWarper(0.1, -0.1), "xtc_probability"),
        (lambda: fl.XTCLogitsWarper(0.1, 0.5, 0), "min_tokens_to_keep"),
        (lambda: fl.XTCLogitsWarper(0.1, [0.5, 2.0]), "xtc_probability"),
        (lambda: fl.XTCLogitsWarper(0.1, 0.5, seed=-1), "seed"),
    ]:
        with pytest.raises(fl.InvalidArgumentError, match=needle):
            make()
    with pytest.raises(fl.InvalidArgumentError, match="`xtc_threshold` is set but `xtc_probability` is not"):
        fl.LogitsPipeline.from_generation_config(do_sample=True, xtc_threshold=0.2)
    with pytest.raises(fl.InvalidArgumentError, match="`dry_base` is set but `dry_multiplier` is not"):
        fl.LogitsPipeline.from_generation_config(dry_base=2.0)
    # llama.cpp's full parameter set with everything off: accepted, nothing built.
    off = dict(xtc_probability=0.0, xtc_threshold=0.1, dry_multiplier=0.0, dry_base=1.75, dynatemp_range=0.0,
               dynatemp_exponent=1.0, mirostat=0, mirostat_tau=5.0)  # fmt: skip
    assert len(fl.LogitsPipeline.from_generation_config(do_sample=True, top_k=0, **off)) == 0
    pipe = fl.LogitsPipeline.from_generation_config(do_sample=True, top_k=0, xtc_probability=0.5)
    assert [type(p).__name__ for p in pipe] == ["XTCLogitsWarper"] and pipe.processors[0].threshold == 0.1


# -- Mirostat 2.0 --------------------------------------------------------------------------------------------


def ref_mirostat_kept(row: np.ndarray, mu: float) -> np.ndarray:
    """llama.cpp `mirostat_v2`'s candidates: surprise -log2 p <= mu, at least the most likely token."""
    x = row.astype(np.float64)
    fin = np.isfinite(x)
    logz = np.log(np.exp(x[fin] - x[fin].max()).sum()) + x[fin].max()
    surprise = np.full(len(x), np.inf)
    surprise[fin] = -(x[fin] - logz) / np.log(2)
    kept = surprise <= mu
    if not kept.any():
        kept[np.argmax(x)] = True
    return kept


def zipf_rows(b: int, v: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([-1.2 * np.log(rng.permutation(v) + 1.0) for _ in range(b)]).astype(np.float32)


def test_mirostat_follows_its_definition_step_by_step():
    """Each draw lies in the reference's kept set for the row's mu, and mu moves by -eta * (s - tau), s the
    drawn token's surprise among the kept ones."""
    s = zipf_rows(6, 400, 0)
    s[1, 10:] = NEG  # few candidates
    m = fl.MirostatV2Sampler(tau=4.0, eta=0.2)
    for step in range(60):
        mu = np.full(6, 8.0, np.float32) if m.mu is None else m.mu.copy()
        tokens = m(s, seed=1, step=step)
        for r, t in enumerate(tokens):
            kept = ref_mirostat_kept(s[r], float(mu[r]))
            assert kept[t], (step, r)
            x = s[r].astype(np.float64)
            p = np.exp(x[t] - x[kept].max()) / np.exp(x[kept] - x[kept].max()).sum()
            expect = mu[r] - 0.2 * (-np.log2(p) - 4.0)
            assert abs(m.mu[r] - expect) < 1e-4 * max(1.0, abs(expect))


def test_mirostat_draws_from_the_renormalized_kept_set():
    """eta = 0 keeps mu fixed: 20,000 draws of one row follow softmax over the kept tokens (chi-square)."""
    from scipy.stats import chisquare

    row = zipf_rows(1, 60, 3)
    m = fl.MirostatV2Sampler(tau=2.5, eta=0.0)  # mu = 5 bits: p >= 1/32
    counts = np.zeros(60)
    for step in range(20_000):
        counts[m(row, seed=9, step=step)[0]] += 1
    kept = ref_mirostat_kept(row[0], 5.0)
    assert counts[~kept].sum() == 0 and kept.sum() >= 3
    x = row[0, kept].astype(np.float64)
    p = np.exp(x - x.max())
    p /= p.sum()
    assert chisquare(counts[kept], p * counts.sum()).pvalue > 1e-4


def test_mirostat_mean_surprise_converges_to_tau():
    s = zipf_rows(16, 5000, 5)
    m = fl.MirostatV2Sampler(tau=5.0, eta=0.1)
    surprises = []
    for step in range(400):
        before = m.mu
        t = m(s, seed=2, step=step)
        if step >= 200:
            x = s.astype(np.float64)
            lp = x - x.max(1, keepdims=True)
            lp -= np.log(np.exp(lp).sum(1, keepdims=True))
            surprises.append(-lp[np.arange(16), t] / np.log(2))
    # The surprise among the whole distribution, averaged over the second half: within 0.5 bits of tau.
    assert abs(np.mean(surprises) - 5.0) < 0.5, np.mean(surprises)
    assert before is not None


def test_mirostat_is_reproducible_at_any_thread_count_and_follows_row_keys():
    s = zipf_rows(8, 3000, 7)
    keys = [fl.sampling.stream_key(3, i) for i in range(8)]
    old = fl.get_num_threads()
    try:
        runs = []
        for threads in (1, 2):
            fl.set_num_threads(threads)
            m = fl.MirostatV2Sampler()
            runs.append([m(s, seed=keys, step=t) for t in range(20)] + [m.mu.copy()])
        assert all((a == b).all() for a, b in zip(*runs))
        m = fl.MirostatV2Sampler()
        rev = [m(s[::-1].copy(), seed=keys[::-1], step=t) for t in range(20)]
        assert all((a[::-1] == b).all() for a, b in zip(runs[0], rev))
    finally:
        fl.set_num_threads(old)


def test_mirostat_state_and_errors():
    m = fl.MirostatV2Sampler(tau=3.0)
    s = zipf_rows(3, 50, 1)
    m(s, seed=0)
    assert m.mu.shape == (3,)
    m.reorder([2, 2, 0])
    with pytest.raises(fl.ShapeError, match="state of 3 rows"):
        m(s[:2], seed=0)
    m.reset()
    m(s[:2], seed=0)
    with pytest.raises(fl.InvalidArgumentError, match="mirostat_tau"):
        fl.MirostatV2Sampler(tau=-1.0)
    with pytest.raises(fl.InvalidArgumentError, match="mirostat_tau"):
        fl.MirostatV2Sampler(tau=1e39)  # (2 * tau beyond float32)
    with pytest.raises(fl.InvalidArgumentError, match="mirostat_eta"):
        fl.MirostatV2Sampler(eta=1e300)
    huge = fl.MirostatV2Sampler(tau=1.0, eta=3e38)  # mu stays finite (clamped), never NaN
    for t in range(3):
        huge(s, seed=0, step=t)
        assert np.isfinite(huge.mu).all()
    with pytest.raises(fl.InvalidArgumentError, match="all -inf"):
        fl.MirostatV2Sampler()(np.full((1, 4), NEG, np.float32), seed=0)
    before = s.copy()
    fl.MirostatV2Sampler()(s, seed=0)
    assert (s == before).all()  # the scores are read only


def test_generate_with_mirostat():
    from models import tiny_gpt2

    model = tiny_gpt2()
    ids = torch.tensor([[5, 9, 2, 5], [1, 2, 3, 4]])
    kw = dict(max_new_tokens=10, do_sample=True, top_k=0, mirostat=2, mirostat_tau=3.0, pad_token_id=0)
    a, b = fl.generate(model, ids, seed=4, **kw), fl.generate(model, ids, seed=4, **kw)
    assert torch.equal(a, b) and a.shape == (2, 14)
    for bad, needle in [
        (dict(kw, mirostat=1), "0 \\(off\\) or 2"),
        (dict(kw, do_sample=False), "do_sample=True"),
        (dict(kw, num_beams=2), "num_beams=1"),
        (
            dict(max_new_tokens=3, mirostat_tau=3.0, do_sample=True),
            "`mirostat_tau` is set but `mirostat` is not",
        ),
    ]:
        with pytest.raises(fl.InvalidArgumentError, match=needle):
            fl.generate(model, ids, seed=0, **bad)
    with pytest.raises(fl.InvalidArgumentError, match="draw"):
        fl.LogitsPipeline.from_generation_config(do_sample=True, mirostat=2)


def test_cli_flags_of_the_new_samplers(tiny_checkpoint):
    """The CLI passes --top-h / --top-n-sigma / --dynatemp-* / --xtc-* / --mirostat* to generate (a tiny
    checkpoint): same seed, same text; an out-of-range flag is one line naming it."""
    import subprocess
    import sys

    flags = ["--model", tiny_checkpoint, "--max-new-tokens", "6", "--do-sample", "--seed", "5", "--top-h", "0.9",
             "--top-n-sigma", "2", "--dynatemp-range", "0.3", "--xtc-probability", "0.5", "--mirostat", "2",
             "--mirostat-tau", "4"]  # fmt: skip
    cmd = [sys.executable, "-m", "fastlogits", "generate", "Hello there", *flags]
    a = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    b = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert a.returncode == 0, a.stderr
    assert a.stdout == b.stdout and a.stdout.startswith("Hello there")
    bad = subprocess.run(
        [*cmd[:5], "--model", tiny_checkpoint, "--top-n-sigma", "-1"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "--top-n-sigma" in bad.stderr and "Traceback" not in bad.stderr


# -- DRY -----------------------------------------------------------------------------------------------------


def ref_dry(
    scores: np.ndarray, hist: list[int], mult: float, base: float, allowed: int, breakers: set, last_n: int
) -> np.ndarray:
    """llama.cpp `dry`, written plainly (O(N^2)): single-token breakers."""
    out = scores.copy()
    if mult == 0 or last_n == 0:
        return out
    w = hist if last_n == -1 else hist[max(0, len(hist) - last_n) :]
    n = len(w)
    if n <= allowed:
        return out
    rep_limit = n
    for i in range(n):  # i tokens from the end
        if w[n - 1 - i] in breakers:
            rep_limit = i
            break
    if rep_limit < allowed:
        return out
    longest: dict[int, int] = {}
    for j in range(n - 1):  # a copy of the suffix ending at j, followed by w[j + 1]
        m = 0
        while m <= j and w[j - m] == w[n - 1 - m]:
            m += 1
        m = min(m, rep_limit)
        if m >= allowed:
            t = w[j + 1]
            longest[t] = max(longest.get(t, 0), m)
    max_exp = int(np.float32(88.7228391) / np.log(np.float32(base))) if base > 1.000001 else 0
    for t, m in longest.items():
        if t in breakers or t >= len(out):
            continue
        e = m - allowed
        if max_exp > 0 and e > max_exp:
            e = max_exp
        out[t] = np.float32(out[t] - np.float32(mult) * np.float32(base) ** np.float32(e))
    return out


@given(
    st.lists(st.integers(0, 5), min_size=0, max_size=60),
    st.sampled_from([0.0, 0.8, 2.0]),
    st.sampled_from([1.0, 1.75, 3.0]),
    st.integers(1, 4),
    st.sampled_from([(), (0,), (1, 4)]),
    st.sampled_from([-1, 0, 5, 20]),
)
def test_dry_matches_the_definition(hist, mult, base, allowed, breakers, last_n):
    V = 8
    scores = np.random.default_rng(len(hist)).normal(0, 2, (1, V)).astype(np.float32)
    ids = np.array([hist], np.int64).reshape(1, len(hist))
    got = fl.DRYLogitsProcessor(mult, base, allowed, list(breakers), last_n)(ids, scores.copy())
    ref = ref_dry(scores[0], hist, mult, base, allowed, set(breakers), last_n)
    np.testing.assert_allclose(got[0], ref, rtol=1e-6, atol=1e-6)


@given(st.lists(st.integers(0, 6), min_size=1, max_size=80), st.integers(1, 3), st.sampled_from([-1, 7]))
def test_dry_incremental_state_equals_a_fresh_one(hist, allowed, last_n):
    """One processor fed the growing history step by step (incremental) = a fresh one at every step."""
    V = 9
    rng = np.random.default_rng(0)
    inc = fl.DRYLogitsProcessor(1.0, 1.75, allowed, [6], last_n)
    for L in range(1, len(hist) + 1):
        ids = np.array([hist[:L]], np.int64)
        s = rng.normal(0, 1, (1, V)).astype(np.float32)
        fresh = fl.DRYLogitsProcessor(1.0, 1.75, allowed, [6], last_n)(ids, s.copy())
        assert_same(fresh, inc(ids, s.copy()))


def test_dry_worked_example_and_errors():
    # llama.cpp's example: a b c c b c y a b c -> c extends "a b c" (3), b extends "c" (1), y extends "b c" (2)
    a, b, c, y = 0, 1, 2, 3
    hist = [a, b, c, c, b, c, y, a, b, c]
    s = np.zeros((1, 5), np.float32)
    out = fl.DRYLogitsProcessor(1.0, 2.0, 2)(np.array([hist]), s.copy())[0]
    assert out.tolist() == [0.0, 0.0, -2.0, -1.0, 0.0]  # c: 2 ** (3 - 2), y: 2 ** 0; b's repeat 1 < 2
    out = fl.DRYLogitsProcessor(1.0, 2.0, 2, sequence_breaker_ids=[a])(np.array([hist]), s.copy())[0]
    assert out.tolist() == [0.0, 0.0, -1.0, -1.0, 0.0]  # repeats stop at the latest `a`: "b c" at most
    for make, needle in [
        (lambda: fl.DRYLogitsProcessor(-1.0), "dry_multiplier"),
        (lambda: fl.DRYLogitsProcessor(1.0, 0.5), r"dry_base.*\[1, 3.4e38\]"),
        (lambda: fl.DRYLogitsProcessor(1e39), "dry_multiplier"),
        (lambda: fl.DRYLogitsProcessor(1.0, 1e39), "dry_base"),
        (lambda: fl.DRYLogitsProcessor(1.0, 1.75, 0), "dry_allowed_length"),
        (lambda: fl.DRYLogitsProcessor(1.0, 1.75, 2, [-3]), "sequence_breaker_ids"),
        (lambda: fl.DRYLogitsProcessor(1.0, 1.75, 2, [], -2), "dry_penalty_last_n"),
    ]:
        with pytest.raises(fl.InvalidArgumentError, match=needle):
            make()
    with pytest.raises(fl.FastLogitsError, match="sequence_breaker_ids.*outside the vocabulary"):
        fl.DRYLogitsProcessor(1.0, 1.75, 2, [99])(np.array([hist]), s.copy())


def test_dry_breakers_from_strings_and_generate():
    from fastlogits.gpt2 import load_tokenizer
    from models import tiny_gpt2

    tok = load_tokenizer(None)
    ids = fl.dry_sequence_breaker_ids(tok)
    nl = tok.encode("\n")[0]
    assert nl in ids and tok.encode(" the")[0] not in ids
    assert all(any(b in tok.decode([i]) for b in fl.DRY_SEQUENCE_BREAKERS) for i in ids[:50])
    model = tiny_gpt2()
    prompt = torch.tensor([[1, 2, 1, 2, 1, 2]])
    kw = dict(max_new_tokens=8, do_sample=False, pad_token_id=0)
    plain = fl.generate(model, prompt, **kw)
    dry = fl.generate(model, prompt, dry_multiplier=50.0, dry_sequence_breakers=[5], **kw)
    # The greedy continuation repeats "1 2": a strong DRY penalty changes it.
    assert not torch.equal(plain, dry)
    with pytest.raises(fl.InvalidArgumentError, match="needs `tokenizer=`"):
        fl.generate(model, prompt, dry_multiplier=1.0, dry_sequence_breakers=["\n"], **kw)


def test_xtc_follows_the_draw_streams_when_a_python_processor_ends_the_chain():
    """generate's chain with a Python processor after XTC (or with Mirostat drawing): the native part runs
    without the fused draw but with its streams, so XTC's decisions still follow the seed and the row keys."""
    from fastlogits.transformers.convert import NativeChain

    class Identity:
        def __call__(self, ids, scores):
            return scores

    s = _two_top_choices(8)
    ids = np.zeros((8, 3), np.int64)

    def applied(seed):
        w = s.copy()
        NativeChain([fl.XTCLogitsWarper(0.1, 0.5, seed=0), Identity()]).sample(ids, w, seed, 0)
        return tuple(np.isneginf(w[:, 0]))

    assert len({applied(seed) for seed in range(8)}) > 1  # the seed matters
    keys = [fl.sampling.stream_key(1, i) for i in range(8)]
    assert applied(keys) == applied(keys[::-1])[::-1]  # each row follows its key
