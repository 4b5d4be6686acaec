"""Bad input: a clear exception naming the argument and the allowed values, the buffer unchanged,
never a crash or a hang."""

from __future__ import annotations

import fastlogits as fl
import numpy as np
import pytest
import torch

IDS = np.array([[1, 2, 3], [4, 5, 6]], np.int64)


def scores(b: int = 2, v: int = 10) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(b, v)).astype(np.float32)


ALL = [
    fl.TemperatureLogitsWarper(0.7),
    fl.TopKLogitsWarper(3),
    fl.TopPLogitsWarper(0.9),
    fl.MinPLogitsWarper(0.1),
    fl.TypicalLogitsWarper(0.9),
    fl.TopHLogitsWarper(0.5),
    fl.EpsilonLogitsWarper(0.01),
    fl.EtaLogitsWarper(0.01),
    fl.RepetitionPenaltyLogitsProcessor(1.3),
    fl.PresencePenaltyLogitsProcessor(0.5, 1),
    fl.FrequencyPenaltyLogitsProcessor(0.5, 1),
    fl.NoRepeatNGramLogitsProcessor(2),
    fl.NoBadWordsLogitsProcessor([[1], [2, 3]]),
    fl.SequenceBiasLogitsProcessor({(1,): 1.0}),
    fl.LogitBiasLogitsProcessor({1: -2.0}),
    fl.MinLengthLogitsProcessor(5, 0),
    fl.MinNewTokensLengthLogitsProcessor(1, 5, 0),
    fl.SuppressTokensLogitsProcessor([1]),
    fl.SuppressTokensAtBeginLogitsProcessor([1], 3),
    fl.ExponentialDecayLengthPenalty((1, 1.5), 0, 1),
]
ALL_IDS = [type(p).__name__ for p in ALL]


def assert_rejected(proc, ids, s, exc, match):
    before = s.copy()
    with pytest.raises(exc, match=match):
        proc(ids, s)
    np.testing.assert_array_equal(s, before)  # unchanged, including NaN positions


@pytest.mark.parametrize("proc", ALL, ids=ALL_IDS)
class TestEveryProcessor:
    def test_nan_scores(self, proc):
        s = scores()
        s[1, 4] = np.nan
        assert_rejected(proc, IDS, s, fl.InvalidArgumentError, r"scores\[1, 4\] is NaN")

    def test_pos_inf_scores(self, proc):
        s = scores()
        s[0, 2] = np.inf
        assert_rejected(proc, IDS, s, ValueError, r"scores\[0, 2\] is \+inf")

    # The ids are checked where they are read (penalties, n-gram ban, bad words, sequence bias); as in
    # transformers, the length rules read only their length and the warpers nothing.

    def test_ids_out_of_vocab(self, proc):
        for bad in (10, 99, -1):
            ids = IDS.copy()
            ids[1, 2] = bad
            if proc.native().reads_history:
                assert_rejected(
                    proc, ids, scores(), fl.InvalidArgumentError, rf"input_ids\[1, 2\] = {bad} .*\[0, 10\)"
                )
            else:
                np.testing.assert_array_equal(proc(ids, scores()), proc(IDS, scores()))

    def test_batch_mismatch(self, proc):
        if proc.native().reads_history:
            assert_rejected(proc, IDS[:1], scores(), fl.InvalidArgumentError, "same batch size")
        else:
            np.testing.assert_array_equal(proc(IDS[:1], scores()), proc(IDS, scores()))

    def test_wrong_ndim(self, proc):
        with pytest.raises(fl.InvalidTypeError, match="scores.*2-D"):
            proc(IDS, scores()[0])
        if proc.native().reads_history:
            with pytest.raises(TypeError, match="input_ids.*2-D"):
                proc(IDS[0], scores())
        else:  # (the length of 1-D ids is their size, as `input_ids.shape[-1]` in transformers)
            np.testing.assert_array_equal(proc(IDS[0], scores()), proc(IDS, scores()))

    def test_wrong_dtypes(self, proc):
        with pytest.raises(fl.InvalidTypeError, match="scores.*floats"):
            proc(IDS, np.zeros((2, 10), np.int64))
        if proc.native().reads_history:
            with pytest.raises(fl.InvalidTypeError, match="input_ids.*integers"):
                proc(IDS.astype(np.float32), scores())
        else:
            np.testing.assert_array_equal(proc(IDS.astype(np.float32), scores()), proc(IDS, scores()))

    def test_empty_batch_and_empty_vocab(self, proc):
        with pytest.raises(fl.InvalidArgumentError, match="batch must not be empty"):
            proc(np.zeros((0, 3), np.int64), np.zeros((0, 10), np.float32))
        with pytest.raises(fl.InvalidArgumentError, match="V = 0"):
            proc(IDS, np.zeros((2, 0), np.float32))

    def test_read_only_and_non_contiguous_are_copied(self, proc):
        s = scores(2, 20)
        ref = proc(IDS, s.copy())
        ro = s.copy()
        ro.flags.writeable = False
        out = proc(IDS, ro)
        assert out is not ro
        np.testing.assert_array_equal(out, ref)
        wide = np.zeros((2, 40), np.float32)
        wide[:, ::2] = s
        view = wide[:, ::2]
        out = proc(IDS, view)
        np.testing.assert_array_equal(out, ref)
        np.testing.assert_array_equal(view, s)  # the view (and the array behind it) is untouched


BAD_PARAMS = [
    (fl.TemperatureLogitsWarper, (0.0,), "temperature.*strictly positive.*do_sample=False"),
    (fl.TemperatureLogitsWarper, (-1.0,), "temperature.*strictly positive"),
    (fl.TemperatureLogitsWarper, (1,), "temperature.*strictly positive float"),
    (fl.TemperatureLogitsWarper, (float("nan"),), "temperature"),
    (fl.TemperatureLogitsWarper, ([0.5, -1.0],), "temperature"),
    (fl.TopKLogitsWarper, (0,), "top_k.*strictly positive integer"),
    (fl.TopKLogitsWarper, (2.5,), "top_k.*strictly positive integer"),
    (fl.TopKLogitsWarper, ([3, 0],), "top_k"),
    (fl.TopPLogitsWarper, (1.7,), r"top_p.*> 0 and < 1.*1\.7"),
    (fl.TopPLogitsWarper, (-0.1,), "top_p"),
    (fl.TopPLogitsWarper, (float("nan"),), "top_p"),
    (fl.TopPLogitsWarper, (0.5, -float("inf"), 0), "min_tokens_to_keep.*positive integer"),
    (fl.TopPLogitsWarper, (0.5, float("nan")), "filter_value"),
    (fl.MinPLogitsWarper, (1.5,), r"min_p.*\[0, 1\]"),
    (fl.MinPLogitsWarper, (0.1, -float("inf"), 0), "min_tokens_to_keep"),
    (fl.TypicalLogitsWarper, (1.0,), "typical_p.*> 0 and < 1"),
    (fl.TypicalLogitsWarper, (0.0,), "typical_p"),
    (fl.TopHLogitsWarper, (0.0,), r"top_h.*\(0, 1\]"),
    (fl.TopHLogitsWarper, (1.5,), "top_h"),
    (fl.TopHLogitsWarper, (float("nan"),), "top_h"),
    (fl.EpsilonLogitsWarper, (1.0,), "epsilon_cutoff.*> 0 and < 1"),
    (fl.EpsilonLogitsWarper, (0.1, -float("inf"), 0), "min_tokens_to_keep"),
    (fl.EtaLogitsWarper, (0.0,), "eta_cutoff"),
    (fl.RepetitionPenaltyLogitsProcessor, (0.0,), "penalty.*strictly positive float"),
    (fl.RepetitionPenaltyLogitsProcessor, (2,), "penalty.*strictly positive float"),
    (fl.RepetitionPenaltyLogitsProcessor, (1.2, -1), "prompt_ignore_length"),
    (fl.PresencePenaltyLogitsProcessor, (3.0, 0), r"presence_penalty.*\[-2, 2\]"),
    (fl.FrequencyPenaltyLogitsProcessor, (0.5, -2), "prompt_length"),
    (fl.NoRepeatNGramLogitsProcessor, (0,), "ngram_size.*strictly positive integer"),
    (fl.NoRepeatNGramLogitsProcessor, (2.0,), "ngram_size"),
    (fl.NoBadWordsLogitsProcessor, ([],), "bad_words_ids.*non-empty list"),
    (fl.NoBadWordsLogitsProcessor, ([1, 2],), "bad_words_ids.*list of lists"),
    (fl.NoBadWordsLogitsProcessor, ([[1, -2]],), "bad_words_ids.*positive integers"),
    (fl.SequenceBiasLogitsProcessor, ({},), "sequence_bias.*non-empty"),
    (fl.SequenceBiasLogitsProcessor, ({(1,): 2},), "sequence_bias.*floats as values"),
    (fl.SequenceBiasLogitsProcessor, ({(1,): float("nan")},), "sequence_bias"),
    (fl.SequenceBiasLogitsProcessor, ({(): 1.0},), "sequence_bias"),
    (fl.SequenceBiasLogitsProcessor, ([[[1], 2]],), "sequence_bias"),
    (fl.LogitBiasLogitsProcessor, ({-1: 1.0},), "logit_bias"),
    (fl.LogitBiasLogitsProcessor, ({1: float("inf")},), "logit_bias"),
    (fl.MinLengthLogitsProcessor, (-1, 0), "min_length.*non-negative"),
    (fl.MinNewTokensLengthLogitsProcessor, (-1, 2, 0), "prompt_length_to_skip"),
    (fl.MinNewTokensLengthLogitsProcessor, (1, -2, 0), "min_new_tokens"),
    (fl.ExponentialDecayLengthPenalty, ((1, float("inf")), 0, 1), "exponential_decay_length_penalty"),
    (fl.ExponentialDecayLengthPenalty, ((1, 1.5), -4, 1), "eos_token_id"),
]


@pytest.mark.parametrize("cls,args,match", BAD_PARAMS, ids=[f"{c.__name__}{a}" for c, a, _ in BAD_PARAMS])
def test_bad_parameters(cls, args, match):
    with pytest.raises(ValueError, match=match) as e:
        cls(*args)
    assert isinstance(e.value, fl.FastLogitsError)


@pytest.mark.parametrize(
    "proc,match",
    [
        (fl.ExponentialDecayLengthPenalty((1, 1.5), 12, 1), r"eos_token_id.*12.*\[0, 10\)"),
        (fl.LogitBiasLogitsProcessor({11: 1.0}), r"logit_bias.*11"),
        (fl.SequenceBiasLogitsProcessor({(3, 10): 1.0}), r"vocabulary size is 10.*\[10\]"),
        (fl.TemperatureLogitsWarper([0.5, 0.6, 0.7]), r"temperature.*3 per-row values.*2 rows"),
    ],
)
def test_vocabulary_and_batch_dependent_errors(proc, match):
    assert_rejected(proc, IDS, scores(), fl.InvalidArgumentError, match)


def test_extreme_parameters_do_not_crash():
    s = scores(2, 10)
    for proc in (
        fl.TopKLogitsWarper(10**12),
        fl.TopPLogitsWarper(0.5, min_tokens_to_keep=10**9),
        fl.NoRepeatNGramLogitsProcessor(10**6),
        fl.MinLengthLogitsProcessor(10**12, 0),
        fl.ExponentialDecayLengthPenalty((0, 1e10), 0, 0),
    ):
        out = proc(IDS, s.copy())
        assert out.shape == s.shape


def test_torch_cuda_like_inputs_are_rejected_cleanly():
    with pytest.raises(fl.InvalidTypeError, match="scores.*floats"):
        fl.TopKLogitsWarper(2)(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 5, dtype=torch.int32))


def test_thread_count_bounds():
    with pytest.raises(fl.InvalidArgumentError, match=r"`n` has to be in \[0, 4096\]"):
        fl.set_num_threads(-1)
    with pytest.raises(fl.InvalidArgumentError, match="num_threads"):
        fl.set_num_threads(10**6)


@pytest.mark.parametrize("k", [3, 30])
def test_sampling_chain_rejects_nan_in_a_later_row_and_restores_the_earlier_ones(k):
    """Chains of point updates then top-k validate inside the top-k read; the penalties already applied
    to earlier rows must be undone (k=30 > the sparse cap of V=100 exercises the deferred dense mask)."""
    rng = np.random.default_rng(0)
    s = rng.normal(size=(4, 100)).astype(np.float32)
    s[3, 50] = np.nan
    ids = rng.integers(0, 100, size=(4, 20))
    pipe = fl.LogitsPipeline(
        [
            fl.RepetitionPenaltyLogitsProcessor(1.5),
            fl.NoRepeatNGramLogitsProcessor(1),
            fl.LogitBiasLogitsProcessor({1: 3.0}),
            fl.TemperatureLogitsWarper(0.7),
            fl.TopKLogitsWarper(k),
            fl.TopPLogitsWarper(0.9),
        ]
    )
    before = s.copy()
    with pytest.raises(fl.InvalidArgumentError, match=r"scores\[3, 50\] is NaN"):
        pipe(ids, s)
    np.testing.assert_array_equal(s, before)
    for write_scores in (True, False):
        with pytest.raises(fl.InvalidArgumentError, match=r"scores\[3, 50\] is NaN"):
            pipe.sample(ids, s, seed=0, write_scores=write_scores)
        np.testing.assert_array_equal(s, before)
    s[3, 50] = 0.0  # fixed: the same pipeline (and its history state) now works
    tokens = pipe.sample(ids, s, seed=0)
    assert tokens.shape == (4,)


@pytest.mark.parametrize(
    "call,cls",
    [
        (lambda: fl.TopPLogitsWarper(1.7), fl.ParameterError),
        (lambda: fl.RepetitionPenaltyLogitsProcessor(1.2)(IDS[:1], scores()), fl.ShapeError),
        (lambda: fl.TopKLogitsWarper(3)(IDS, np.full((2, 10), np.nan, np.float32)), fl.InvalidValueError),
        (
            lambda: fl.TemperatureLogitsWarper(0.5)(IDS, np.full((2, 10), 3e38, np.float32)),
            fl.FloatOverflowError,
        ),
    ],
)
def test_each_core_error_has_its_class(call, cls):
    """One class per core error variant, each an InvalidArgumentError (a ValueError) as before."""
    with pytest.raises(cls) as e:
        call()
    assert isinstance(e.value, fl.InvalidArgumentError) and isinstance(e.value, ValueError)
    assert type(e.value).__module__ == "fastlogits"
