"""Bad and extreme input: a clear fastlogits exception naming the argument, never a crash, a panic, a hang,
a silent NaN / +inf or a half-modified buffer. Each test is a finding of the robustness review (issue 9);
`make fuzz` and `make soak` search further."""

from __future__ import annotations

import os
import subprocess
import sys

import fastlogits as fl
import numpy as np
import pytest
import torch
import transformers.generation.logits_process as T
from fastlogits import hf
from hypothesis import given
from hypothesis import strategies as st
from models import tiny_gpt2

rng = np.random.default_rng(0)
SCORES = rng.normal(size=(3, 257)).astype(np.float32)
IDS = rng.integers(0, 257, size=(3, 9))


# -- no process abort, no panic -----------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, -1, 258, 2**40, 10**12, 2**63, 2**64, 2**70])
def test_top_logprobs_checks_n_before_allocating(n):
    with pytest.raises(fl.InvalidArgumentError, match=r"`n` has to be in \[1, V = 257\]"):
        fl.top_logprobs(SCORES, n)


@pytest.mark.parametrize("big", [2**31, 2**62, 2**63 - 1, 2**63, 2**64, 2**100])
def test_huge_counts_mean_all_as_in_transformers(big):
    """`top_k` / `min_tokens_to_keep` beyond the vocabulary keep everything; ints beyond int64 are
    accepted as transformers accepts them (no OverflowError, no panic)."""
    s = torch.from_numpy(SCORES)
    for name, args in [
        ("TopKLogitsWarper", (big,)),
        ("TopKLogitsWarper", (3, -float("inf"), big)),
        ("MinPLogitsWarper", (0.5, -float("inf"), big)),
        ("TopPLogitsWarper", (0.1, -float("inf"), big)),
        ("TypicalLogitsWarper", (0.2, -float("inf"), big)),
        ("EpsilonLogitsWarper", (0.1, -float("inf"), big)),
        ("EtaLogitsWarper", (0.1, -float("inf"), big)),
        ("NoRepeatNGramLogitsProcessor", (big,)),
    ]:
        got = getattr(hf, name)(*args)(torch.from_numpy(IDS), s)
        ref = getattr(T, name)(*args)(torch.from_numpy(IDS), s.clone())
        assert torch.equal(torch.isneginf(got), torch.isneginf(ref)), name


def test_a_huge_min_tokens_to_keep_in_a_chain_is_not_a_half_modified_batch():
    pipe = fl.LogitsPipeline(
        [fl.RepetitionPenaltyLogitsProcessor(1.5), fl.MinPLogitsWarper(0.5, min_tokens_to_keep=2**62)]
    )
    s = SCORES.copy()
    pipe(IDS, s)  # keeps every token: only the penalty applies
    assert not np.isinf(s).any()


@pytest.mark.parametrize("value", ["3000", "5000", "-1", "abc", "1e3", "2.5"])
def test_thread_count_from_the_environment_is_bounded(value):
    env = dict(os.environ, FASTLOGITS_NUM_THREADS=value)
    r = subprocess.run([sys.executable, "-c", "import fastlogits"], env=env, capture_output=True, text=True)
    if value == "3000":
        assert r.returncode == 0, r.stderr  # within [0, 4096]: started
        return
    assert r.returncode != 0
    assert "ParameterError" in r.stderr and "FASTLOGITS_NUM_THREADS" in r.stderr
    assert "[0, 4096]" in r.stderr and "Panic" not in r.stderr


def test_setting_the_same_thread_count_again_does_not_restart_the_pool():
    n = fl.get_num_threads()
    fl.set_num_threads(n)
    assert fl.get_num_threads() == n


# -- parameters that do not survive float32 ------------------------------------------------------------------


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: fl.TemperatureLogitsWarper(1e-46), r"temperature.*float32"),
        (lambda: fl.TemperatureLogitsWarper(1e39), r"temperature.*float32"),
        (lambda: fl.TemperatureLogitsWarper(1e-40), r"temperature.*float32"),
        (lambda: fl.RepetitionPenaltyLogitsProcessor(1e-40), r"penalty.*float32"),
        (lambda: fl.RepetitionPenaltyLogitsProcessor(1e39), r"penalty.*float32"),
        (lambda: fl.LogitBiasLogitsProcessor({1: 1e39}), r"logit_bias.*token 1.*float32"),
        (lambda: fl.SequenceBiasLogitsProcessor({(1, 2): -1e39}), r"sequence_bias.*float32"),
        (lambda: fl.TopPLogitsWarper([]), r"`top_p` is an empty list"),
        (lambda: fl.TemperatureLogitsWarper([]), r"`temperature` is an empty list"),
        (lambda: fl.TopKLogitsWarper([]), r"`top_k` is an empty list"),
    ],
)
def test_parameters_are_checked_as_the_float32_they_become(make, match):
    with pytest.raises(fl.InvalidArgumentError, match=match):
        make()


# -- a processor that overflows is named, and the buffer is left unchanged -----------------------------------

HUGE = np.array([[3e38, 1.0, -2.0, 0.5, -np.inf, 2.0]], np.float32)


@pytest.mark.parametrize(
    "procs,culprit",
    [
        ([fl.TemperatureLogitsWarper(0.7)], "TemperatureLogitsWarper"),
        ([fl.TemperatureLogitsWarper(0.7), fl.TopPLogitsWarper(0.9)], "TemperatureLogitsWarper"),
        (
            [
                fl.RepetitionPenaltyLogitsProcessor(1.2),
                fl.TemperatureLogitsWarper(0.5),
                fl.TopKLogitsWarper(3),
            ],
            "TemperatureLogitsWarper",
        ),  # the fused sampling chain
        ([fl.LogitBiasLogitsProcessor({0: 1e38, 3: 1.0})], "LogitBiasLogitsProcessor"),
        (
            [fl.LogitBiasLogitsProcessor({0: 1e38}), fl.TemperatureLogitsWarper(0.9), fl.TopKLogitsWarper(2)],
            "LogitBiasLogitsProcessor",
        ),  # overflow in a logged point update of the fused chain
        ([fl.RepetitionPenaltyLogitsProcessor(0.5)], "RepetitionPenaltyLogitsProcessor"),
        ([fl.ExponentialDecayLengthPenalty((0, 1e300), 5, 0)], "ExponentialDecayLengthPenalty"),
    ],
    ids=lambda x: x if isinstance(x, str) else "+".join(type(p).__name__[:8] for p in x),
)
def test_overflow_names_the_processor_and_leaves_the_buffer_unchanged(procs, culprit):
    ids = np.array([[0, 5, 5]])
    pipe = fl.LogitsPipeline(procs)
    for call in (
        lambda s: pipe(ids, s),
        lambda s: pipe.sample(ids, s, seed=0),
        lambda s: pipe.sample(ids, s, seed=0, write_scores=False),
    ):
        s = HUGE.copy()
        with pytest.raises(
            fl.InvalidArgumentError, match=rf"{culprit} turned scores\[0, \d\] = .* into \+inf"
        ) as e:
            call(s)
        assert "left unchanged" in str(e.value) and "is +inf: scores must be finite" not in str(e.value)
        np.testing.assert_array_equal(s, HUGE)
    if culprit != "ExponentialDecayLengthPenalty":  # (its factor overflows on any score)
        ok = np.array([[3.0, 1.0, -2.0, 0.5, -np.inf, 2.0]], np.float32)
        pipe(ids, ok)  # the same chain on ordinary scores: no error
        assert not np.isnan(ok).any() and not np.isposinf(ok).any()


def test_the_checked_path_gives_the_fast_paths_results():
    """Scores near the float32 limit that do not overflow take the checked path (the bound cannot rule
    the overflow out): same result as processing a scaled-down copy, scaled back."""
    s = np.array([[1e38, 5e37, -3e38, 1.0]], np.float32)
    got = fl.LogitsPipeline([fl.TemperatureLogitsWarper(2.0), fl.TopKLogitsWarper(3)])(
        np.zeros((1, 0), np.int64), s.copy()
    )
    np.testing.assert_array_equal(got, np.array([[5e37, 2.5e37, -np.inf, 0.5]], np.float32))


def test_scores_that_do_not_fit_back_into_float16_are_an_error():
    s = torch.tensor([[65504.0, 1.0, -3.0]], dtype=torch.float16)
    before = s.clone()
    with pytest.raises(fl.InvalidArgumentError, match="range of torch.float16"):
        fl.RepetitionPenaltyLogitsProcessor(0.145)(torch.tensor([[0]]), s)
    assert torch.equal(s, before)


# -- one rule for generation settings -----------------------------------------------------------------------

BAD_SETTINGS = [
    dict(top_p=float("nan")),
    dict(top_p=1.7),
    dict(top_p=float("inf")),
    dict(typical_p=float("nan")),
    dict(typical_p=0.0),
    dict(epsilon_cutoff=-1.0),
    dict(epsilon_cutoff=float("inf")),
    dict(epsilon_cutoff=1.0),
    dict(eta_cutoff=2.0),
    dict(eta_cutoff=float("nan")),
]


@pytest.mark.parametrize("kw", BAD_SETTINGS, ids=lambda kw: f"{next(iter(kw))}={next(iter(kw.values()))}")
def test_generation_settings_transformers_would_skip_are_rejected_everywhere(kw):
    name = next(iter(kw))
    with pytest.raises(fl.InvalidArgumentError, match=f"`{name}` has to be"):
        fl.LogitsPipeline.from_generation_config(do_sample=True, **kw)
    with pytest.raises(ValueError, match=f"`{name}` has to be"):  # (typical_p=0: transformers' own check)
        fl.generate(tiny_gpt2(), torch.tensor([[1, 2]]), do_sample=True, max_new_tokens=2, **kw)


def test_settings_that_mean_off_are_not_errors():
    pipe = fl.LogitsPipeline.from_generation_config(
        do_sample=True, top_k=0, top_p=1.0, typical_p=1.0, epsilon_cutoff=0.0, eta_cutoff=0.0
    )
    assert len(pipe) == 0


@pytest.mark.parametrize("beams", [0, -1, 2.0])
def test_num_beams_must_be_positive(beams):
    with pytest.raises(fl.InvalidArgumentError, match="num_beams"):
        fl.generate(tiny_gpt2(), torch.tensor([[1, 2]]), num_beams=beams, max_new_tokens=2)
    with pytest.raises(fl.InvalidArgumentError, match="num_beams"):
        fl.LogitsPipeline.from_generation_config(num_beams=beams)


def test_bad_words_that_are_all_eos_are_a_no_op_everywhere():
    model = tiny_gpt2()
    eos = model.config.eos_token_id
    ids = torch.tensor([[1, 2, 4]])
    ref = model.generate(ids, max_new_tokens=5, bad_words_ids=[[eos]], pad_token_id=0)
    assert torch.equal(fl.generate(model, ids, max_new_tokens=5, bad_words_ids=[[eos]], pad_token_id=0), ref)
    pipe = fl.LogitsPipeline.from_generation_config(bad_words_ids=[[eos]], eos_token_id=eos)
    s = SCORES.copy()
    np.testing.assert_array_equal(pipe(IDS, s), SCORES)
    assert hf.to_native(T.NoBadWordsLogitsProcessor([[eos]], eos)) is not None


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(eos_token_id=[float("inf")], min_length=3), "eos_token_id"),
        (dict(eos_token_id=[1.5, float("nan")], min_length=3), "eos_token_id"),
        (dict(no_repeat_ngram_size=[]), "no_repeat_ngram_size"),
        (dict(repetition_penalty=[[1, 2], [3]]), "repetition_penalty"),
        (
            dict(min_new_tokens=2, eos_token_id=1, input_ids_seq_length=torch.tensor(float("nan"))),
            "input_ids_seq_length",
        ),
    ],
)
def test_from_generation_config_rejects_malformed_settings_cleanly(kw, match):
    with pytest.raises(fl.FastLogitsError, match=match):
        fl.LogitsPipeline.from_generation_config(**kw)


def test_zero_dimensional_settings_count_as_scalars():
    pipe = fl.LogitsPipeline.from_generation_config(
        do_sample=True, top_k=0, top_p=torch.tensor(0.5), eta_cutoff=np.array(0.01)
    )
    assert [type(p).__name__ for p in pipe] == ["TopPLogitsWarper", "EtaLogitsWarper"]


# -- exception hygiene --------------------------------------------------------------------------------------


def test_meta_tensors_are_rejected_by_name():
    with pytest.raises(fl.InvalidTypeError, match="`scores`.*meta"):
        fl.TopKLogitsWarper(3)(torch.tensor([[1]]), torch.empty(1, 5, device="meta"))
    with pytest.raises(fl.InvalidTypeError, match="`input_ids`.*meta"):
        fl.RepetitionPenaltyLogitsProcessor(1.2)(
            torch.empty(1, 2, dtype=torch.long, device="meta"), torch.zeros(1, 5)
        )


def test_misaligned_views_are_converted_like_other_layouts():
    raw = np.zeros(4 * SCORES.size + 1, np.uint8)
    view = np.frombuffer(raw.data, dtype=np.float32, count=SCORES.size, offset=1).reshape(SCORES.shape)
    assert not view.flags.aligned
    view[...] = SCORES
    got = fl.TopKLogitsWarper(5)(IDS, view)
    np.testing.assert_array_equal(got, fl.TopKLogitsWarper(5)(IDS, SCORES.copy()))
    ids_raw = np.zeros(8 * IDS.size + 3, np.uint8)
    ids_view = np.frombuffer(ids_raw.data, dtype=np.int64, count=IDS.size, offset=3).reshape(IDS.shape)
    ids_view[...] = IDS
    np.testing.assert_array_equal(
        fl.RepetitionPenaltyLogitsProcessor(1.5)(ids_view, SCORES.copy()),
        fl.RepetitionPenaltyLogitsProcessor(1.5)(IDS, SCORES.copy()),
    )


def test_reorder_before_the_first_call_checks_its_indices():
    pipe = fl.LogitsPipeline([fl.RepetitionPenaltyLogitsProcessor(1.2)])
    with pytest.raises(fl.InvalidArgumentError, match=r"beam_idx.*5.*\[0, 2\)"):
        pipe.reorder([0, 5])
    with pytest.raises(fl.InvalidArgumentError, match="beam_idx"):
        pipe.reorder([0, -1])
    pipe.reorder([1, 0])


def test_huge_beam_search_sizes_are_rejected_by_name():
    ids = np.array([[1, 2]])
    for kw, match in [
        (dict(num_beams=2**64, max_new_tokens=2), "num_beams"),
        (dict(num_beams=2**33, max_new_tokens=2), "num_beams"),
        (dict(num_beams=2, max_length=2**63), "max_length"),
    ]:
        with pytest.raises(fl.InvalidArgumentError, match=match):
            fl.BeamSearch(ids, **kw)


def test_abstract_base_and_bad_pipeline_arguments():
    with pytest.raises(fl.InvalidTypeError, match="base class"):
        fl.FastLogitsProcessor()
    with pytest.raises(fl.InvalidTypeError, match="list of fastlogits processors"):
        fl.LogitsPipeline(5)
    with pytest.raises(fl.InvalidTypeError, match="2-D"):
        hf.TopKLogitsWarper(3)(torch.zeros((5, 1), dtype=torch.long), torch.zeros(64))


def test_native_chain_checks_its_buffers_and_restores_them_on_error():
    chain = hf.NativeChain([lambda i, s: s * 2, fl.TopKLogitsWarper(2)])
    with pytest.raises(fl.InvalidTypeError, match="scores.*float32"):
        chain.sample(np.zeros((2, 0), np.int64), np.ones((2, 5)), 0, 0, True)
    s = np.ones((2, 5), np.float32)
    s[1, 3] = np.nan  # rejected by the native step, after the Python step doubled the buffer
    before = s.copy()
    with pytest.raises(fl.InvalidArgumentError, match="NaN"):
        chain(np.zeros((2, 0), np.int64), s)
    np.testing.assert_array_equal(s, before)
    with pytest.raises(fl.InvalidTypeError, match="returned NoneType"):
        hf.NativeChain([lambda i, s: None])(np.zeros((1, 0), np.int64), np.ones((1, 3), np.float32))


def test_generate_and_stream_stay_functions():
    from fastlogits import gpt2  # noqa: F401  (imports the decoding module)

    assert callable(fl.generate) and callable(fl.stream) and not isinstance(fl.generate, type(fl))


# -- a standing property: any bad row leaves every row unchanged --------------------------------------------


@given(st.integers(0, 2**32 - 1), st.sampled_from(["nan", "inf", "overflow"]), st.booleans())
def test_any_error_leaves_the_whole_batch_unchanged(seed, kind, fused):
    r = np.random.default_rng(seed)
    s = (r.normal(size=(4, 500)) * 4).astype(np.float32)
    row, col = r.integers(4), r.integers(500)
    s[row, col] = {"nan": np.nan, "inf": np.inf, "overflow": 3e38}[kind]
    ids = r.integers(0, 500, size=(4, 30))
    procs = [
        fl.RepetitionPenaltyLogitsProcessor(0.8),
        fl.NoRepeatNGramLogitsProcessor(2),
        fl.TemperatureLogitsWarper(0.5),
    ]
    procs += [fl.TopKLogitsWarper(40), fl.TopPLogitsWarper(0.9)] if fused else [fl.TopPLogitsWarper(0.9)]
    pipe = fl.LogitsPipeline(procs)
    before = s.copy()
    with pytest.raises(fl.InvalidArgumentError):
        pipe.sample(ids, s, seed=seed)
    np.testing.assert_array_equal(s, before)


def test_beam_search_token_ids_beyond_int64_and_expand_shapes():
    ids = np.zeros((1, 4), np.int64)
    for kw in (dict(pad_token_id=2**64), dict(eos_token_id=2**64), dict(eos_token_id=[1, 2**63])):
        with pytest.raises(fl.InvalidArgumentError, match="token id"):
            fl.BeamSearch(ids, num_beams=2, max_new_tokens=3, **kw)
    bs = fl.BeamSearch(ids, num_beams=3, max_new_tokens=1)
    for bad in (torch.tensor(1), np.array(1), np.zeros((2, 4))):
        with pytest.raises(fl.InvalidArgumentError, match="batch_size = 1"):
            bs.expand(bad)
    assert bs.expand(np.ones((1, 4))).shape == (3, 4)


def test_ragged_per_row_settings_and_negative_strides_are_rejected_cleanly():
    with pytest.raises(fl.InvalidArgumentError, match="typical_p"):
        fl.LogitsPipeline.from_generation_config(do_sample=True, typical_p=[[1, 2], [3]])
    chain = hf.NativeChain([fl.RepetitionPenaltyLogitsProcessor(2.0), T.InfNanRemoveLogitsProcessor()])
    s = np.zeros((7, 1), np.float32)[:, ::-1]
    with pytest.raises(fl.InvalidTypeError, match="scores"):
        chain.sample(np.zeros((7, 5), np.int64), s, 1, 0, True)


def test_drawing_from_a_row_that_is_all_neg_inf_leaves_the_scores_unchanged():
    s = np.full((2, 6), -np.inf, np.float32)
    s[0, 2] = 1.0
    before = s.copy()
    for procs in ([fl.TopPLogitsWarper(0.9)], [fl.TemperatureLogitsWarper(0.5), fl.TopKLogitsWarper(2)]):
        with pytest.raises(fl.InvalidArgumentError, match="row 1 of scores is all -inf"):
            fl.LogitsPipeline(procs).sample(np.zeros((2, 0), np.int64), s, seed=0)
        np.testing.assert_array_equal(s, before)


# -- findings of the independent review ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "procs,scores,culprit",
    [
        # the decay scale overflows float32 (0 * inf would be NaN) or is NaN (a negative factor, fractional power)
        (
            [fl.ExponentialDecayLengthPenalty((0, 1e30), 1, 0)],
            [[0.0, 0.0, 0.0, 0.0]],
            "ExponentialDecayLengthPenalty",
        ),
        (
            [fl.ExponentialDecayLengthPenalty((0.5, -2.0), 1, 0)],
            [[1.0, 2.0, 3.0, 4.0]],
            "ExponentialDecayLengthPenalty",
        ),
        # two biases whose float32 sum is +inf, on a row with no finite score (-inf + inf = NaN)
        (
            [fl.SequenceBiasLogitsProcessor({(1,): 3e38, (0, 1): 3e38})],
            [[-np.inf, -np.inf, 0.0, -np.inf]],
            "SequenceBiasLogitsProcessor",
        ),
        # a chain that raises the maximum past float32, then lowers it
        (
            [fl.TemperatureLogitsWarper(0.5), fl.TemperatureLogitsWarper(2.0)],
            [[3e38, 0, 1, 2]],
            "TemperatureLogitsWarper",
        ),
        (
            [
                fl.RepetitionPenaltyLogitsProcessor(1.1),
                fl.TemperatureLogitsWarper(0.5),
                fl.TopKLogitsWarper(2),
                fl.TemperatureLogitsWarper(2.0),
            ],
            [[3e38, 0, 1, 2]],
            "TemperatureLogitsWarper",
        ),
    ],
)
def test_no_overflow_escapes_the_bound(procs, scores, culprit):
    s = np.array(scores, np.float32)
    before = s.copy()
    for call in (
        lambda x: fl.LogitsPipeline(procs)(np.array([[0, 1, 0]]), x),
        lambda x: fl.LogitsPipeline(procs).sample(np.array([[0, 1, 0]]), x, seed=0),
    ):
        with pytest.raises(fl.InvalidArgumentError, match=culprit):
            call(s)
        np.testing.assert_array_equal(s, before)


def test_warpers_ignore_input_ids_as_transformers_does():
    ids = torch.tensor([[1, -100, 3], [20, 2, 1]])
    s = torch.randn(2, 10)
    for name, args in [
        ("TopKLogitsWarper", (3,)),
        ("TemperatureLogitsWarper", (0.5,)),
        ("SuppressTokensLogitsProcessor", ([1],)),
    ]:
        assert_same = torch.equal(getattr(hf, name)(*args)(ids, s), getattr(T, name)(*args)(ids, s.clone()))
        assert assert_same, name
    # Length rules read only the length: any ids.
    got = hf.MinLengthLogitsProcessor(5, 2)(ids, s)
    assert torch.equal(got, T.MinLengthLogitsProcessor(5, 2)(ids, s.clone()))
    with pytest.raises(fl.InvalidArgumentError, match="outside the vocabulary"):  # the history is read here
        hf.RepetitionPenaltyLogitsProcessor(1.2)(ids, s)


def test_fork_while_another_thread_uses_a_pipeline():
    script = """
import os, signal, threading, time, numpy as np, fastlogits as fl
pipe = fl.LogitsPipeline([fl.RepetitionPenaltyLogitsProcessor(1.2), fl.NoRepeatNGramLogitsProcessor(2)])
s = np.random.default_rng(0).normal(size=(64, 20000)).astype(np.float32)
ids = np.random.default_rng(1).integers(0, 20000, size=(64, 300))
stop = False
def work():
    while not stop:
        pipe(ids, s.copy())
t = threading.Thread(target=work); t.start(); time.sleep(0.2)
codes = []
for _ in range(4):
    pid = os.fork()
    if pid == 0:
        signal.alarm(20)
        a = pipe(ids, s.copy())                       # the lock may be held by a thread of the parent
        b = fl.LogitsPipeline(pipe.processors)(ids, s.copy())
        os._exit(0 if np.array_equal(a, b) else 3)
    codes.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
stop = True; t.join()
print(codes)
"""
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "[0, 0, 0, 0]", (r.stdout, r.stderr)


@pytest.mark.parametrize(
    "call",
    [
        lambda: fl.LogitsPipeline.from_generation_config(do_sample=True, top_p=10**400),
        lambda: fl.LogitsPipeline.from_generation_config(do_sample=np.array([True, False]), top_p=0.5),
        lambda: fl.LogitsPipeline.from_generation_config(
            do_sample=True, epsilon_cutoff=torch.tensor([0.1, 0.2])
        ),
        lambda: fl.LogitsPipeline.from_generation_config([1, 2]),
        lambda: fl.LogitsPipeline.from_generation_config(
            repetition_penalty=1.2, attention_mask=[[1, 1], [1]]
        ),
        lambda: fl.MinPLogitsWarper(10**400),
        lambda: hf.FusedLogitsProcessor(5),
        lambda: fl.RepetitionPenaltyLogitsProcessor(1.2)([[1, 2], [3]], np.zeros((2, 5), np.float32)),
        lambda: fl.BeamSearch(np.zeros((1, 1000), np.int64), num_beams=2**31, max_new_tokens=1),
    ],
)
def test_more_malformed_arguments_are_fastlogits_errors(call):
    with pytest.raises(fl.FastLogitsError):
        call()


def test_top_p_one_on_scores_whose_probabilities_underflow():
    r = np.random.default_rng(3)
    s = torch.from_numpy((r.normal(size=(4, 50257)) * 30).astype(np.float32))
    for p in (1.0, 1 - 1e-7, 0.999999):
        got = hf.TopPLogitsWarper(p)(None, s)
        ref = T.TopPLogitsWarper(p)(None, s.clone())
        assert torch.equal(torch.isneginf(got), torch.isneginf(ref)), p
        assert 0 < int(torch.isneginf(ref).sum()) < s.numel()  # (the case exercises removal)
