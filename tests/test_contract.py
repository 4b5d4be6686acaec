"""The drop-in contract of `fastlogits.hf`: each class behaves as transformers 5.23's processor of the same
name, called as transformers' processors are called.

For every class, on the same inputs as transformers: the same values and -inf mask, a new tensor returned
and the input left unchanged, `input_ids=None` accepted by the processors that do not read it, the
arguments transformers accepts accepted (edge cases included), use inside `model.generate` (scores
processed, logits raw, sequences identical), and instances shared by threads.
"""

from __future__ import annotations

import threading

import fastlogits as fl
import numpy as np
import pytest
import torch
import transformers.generation.logits_process as T
from fastlogits import hf
from models import tiny_gpt2
from transformers import LogitsProcessorList

V = 300
B = 3
L = 12
EOS = 7

# (class name, args) valid in transformers 5.23, including the edge cases it accepts.
CASES = [
    ("TemperatureLogitsWarper", (0.7,)),
    ("TemperatureLogitsWarper", (1e-3,)),
    ("TopKLogitsWarper", (5,)),
    ("TopKLogitsWarper", (5, -10.0, 7)),
    ("TopKLogitsWarper", (2**63,)),
    ("TopPLogitsWarper", (0.9,)),
    ("TopPLogitsWarper", (1.0,)),
    ("TopPLogitsWarper", (0.999999,)),
    ("TopPLogitsWarper", (0.0, -float("inf"), 3)),
    ("TopPLogitsWarper", (0.5, -5.0, 2)),
    ("TopPLogitsWarper", (torch.tensor(0.8),)),
    ("MinPLogitsWarper", (0.1,)),
    ("MinPLogitsWarper", (0.2, -float("inf"), 2**62)),
    ("MinPLogitsWarper", (torch.tensor(0.05),)),
    ("TypicalLogitsWarper", (0.9,)),
    ("TypicalLogitsWarper", (1e-9,)),
    ("TopHLogitsWarper", (0.4,)),
    ("TopHLogitsWarper", (0.9, -7.5)),
    ("EpsilonLogitsWarper", (3e-3,)),
    ("EpsilonLogitsWarper", (0.999999,)),
    ("EtaLogitsWarper", (3e-3,)),
    ("EtaLogitsWarper", (1e-9, -float("inf"), 4)),
    ("RepetitionPenaltyLogitsProcessor", (1.3,)),
    ("RepetitionPenaltyLogitsProcessor", (0.7, 4)),
    ("NoRepeatNGramLogitsProcessor", (2,)),
    ("NoRepeatNGramLogitsProcessor", (2**63,)),
    ("NoBadWordsLogitsProcessor", ([[1], [2, 3], [4, 5, 6]], EOS)),
    ("NoBadWordsLogitsProcessor", ([[EOS]], EOS)),  # every bad word is the EOS: nothing is banned
    ("NoBadWordsLogitsProcessor", ([[EOS], [EOS]], [EOS, 8])),
    ("NoBadWordsLogitsProcessor", ([[], [5]], EOS)),  # an empty sequence never applies
    ("NoBadWordsLogitsProcessor", ([[5]], -1)),  # a negative EOS filters nothing
    ("SequenceBiasLogitsProcessor", ({(1,): 2.5, (2, 3): -1.0},)),
    ("SequenceBiasLogitsProcessor", ([[[4], 1.0], [[], 3.0], [[6, 9], 2.0, "ignored"]],)),
    ("MinLengthLogitsProcessor", (50, EOS)),
    ("MinLengthLogitsProcessor", (50, [-1, 10**6])),  # ids outside the vocabulary match nothing
    ("MinLengthLogitsProcessor", (2**64, EOS)),
    ("MinNewTokensLengthLogitsProcessor", (4, 20, [EOS, 8])),
    ("SuppressTokensLogitsProcessor", ([1, 2],)),
    ("SuppressTokensLogitsProcessor", ([1, -3, 10**6],)),
    ("SuppressTokensAtBeginLogitsProcessor", ([1, 2], L)),
    ("SuppressTokensAtBeginLogitsProcessor", ([1, 2], -1)),
    ("SuppressTokensAtBeginLogitsProcessor", ([1, 2], None)),
    ("ExponentialDecayLengthPenalty", ((2, 1.5), EOS, 5)),
    ("ExponentialDecayLengthPenalty", ((2.5, 1.5, "extra"), [EOS, 9], 5)),
]
IDS = [f"{n}{a}" for n, a in CASES]

# Classes whose transformers counterpart ignores `input_ids` (and accepts None).
NO_IDS = {
    "TemperatureLogitsWarper",
    "TopKLogitsWarper",
    "TopPLogitsWarper",
    "MinPLogitsWarper",
    "TypicalLogitsWarper",
    "TopHLogitsWarper",
    "EpsilonLogitsWarper",
    "EtaLogitsWarper",
    "SuppressTokensLogitsProcessor",
}


def inputs(seed: int, contiguous: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    s = (rng.normal(size=(B, V)) * 3).astype(np.float32)
    s[rng.random((B, V)) < 0.05] = -np.inf
    ids = torch.from_numpy(rng.integers(0, 12, size=(B, L)))  # small ids: repeats, n-grams, bad words
    scores = torch.from_numpy(s)
    if not contiguous:
        wide = torch.full((B, 2 * V), 123.0)
        wide[:, ::2] = scores
        scores = wide[:, ::2]
    return ids, scores


def assert_same(got: torch.Tensor, ref: torch.Tensor) -> None:
    assert got.dtype == ref.dtype and got.shape == ref.shape
    assert torch.equal(torch.isneginf(got), torch.isneginf(ref)), "different -inf masks"
    fin = ~torch.isneginf(ref)
    torch.testing.assert_close(got[fin], ref[fin], rtol=1e-6, atol=0)


@pytest.mark.parametrize("name,args", CASES, ids=IDS)
@pytest.mark.parametrize("contiguous", [True, False])
def test_same_result_new_tensor_input_unchanged(name, args, contiguous):
    for seed in range(3):
        ids, scores = inputs(seed, contiguous)
        before = scores.clone()
        ref = getattr(T, name)(*args)(ids, scores.clone())
        proc = getattr(hf, name)(*args)
        assert isinstance(proc, T.LogitsProcessor)
        got = proc(ids, scores)
        assert isinstance(got, torch.Tensor) and got.data_ptr() != scores.data_ptr()
        assert torch.equal(scores, before), "the input was modified"
        assert_same(got, ref)
        if name in NO_IDS:
            got_none = getattr(hf, name)(*args)(None, scores)
            assert_same(got_none, getattr(T, name)(*args)(None, scores.clone()))
            assert torch.equal(scores, before)


@pytest.mark.parametrize(
    "proc",
    [
        hf.RepetitionPenaltyLogitsProcessor(1.2),
        hf.NoRepeatNGramLogitsProcessor(2),
        hf.NoBadWordsLogitsProcessor([[1, 2]]),
        hf.MinLengthLogitsProcessor(5, EOS),
        hf.ExponentialDecayLengthPenalty((1, 1.1), EOS, 2),
    ],
    ids=lambda p: type(p).__name__,
)
def test_processors_that_read_the_history_say_so_when_it_is_none(proc):
    _, scores = inputs(0)
    with pytest.raises(fl.InvalidArgumentError, match="input_ids.*None"):
        proc(None, scores)


def test_extensions_return_new_tensors_too():
    ids, scores = inputs(1)
    before = scores.clone()
    for proc in (
        hf.PresencePenaltyLogitsProcessor(0.5, 4),
        hf.FrequencyPenaltyLogitsProcessor(0.5, 4),
        hf.LogitBiasLogitsProcessor({3: 1.5, 4: -float("inf")}),
    ):
        got = proc(ids, scores)
        assert got.data_ptr() != scores.data_ptr() and torch.equal(scores, before)
    assert torch.equal(hf.LogitBiasLogitsProcessor({3: 1.0})(None, scores)[:, 3], scores[:, 3] + 1.0)


def test_other_dtypes_come_back_as_new_tensors_of_that_dtype():
    ids, scores = inputs(2)
    for dtype in (torch.float64, torch.bfloat16, torch.float16):
        s = scores.to(dtype)
        before = s.clone()
        got = hf.TopKLogitsWarper(7)(ids, s)
        assert got.dtype == dtype and torch.equal(s, before)
        assert torch.equal(torch.isneginf(got), torch.isneginf(T.TopKLogitsWarper(7)(ids, s.clone())))


# -- inside transformers' own generate ----------------------------------------------------------------------


def chain(mod) -> LogitsProcessorList:
    return LogitsProcessorList(
        [
            mod.RepetitionPenaltyLogitsProcessor(1.3),
            mod.NoRepeatNGramLogitsProcessor(2),
            mod.NoBadWordsLogitsProcessor([[5, 6], [EOS]], EOS),
            mod.TemperatureLogitsWarper(0.8),
            mod.TopKLogitsWarper(20),
            mod.TopPLogitsWarper(0.9),
        ]
    )


@pytest.mark.parametrize("mode", ["greedy", "sample", "beam"])
def test_inside_model_generate_scores_are_processed_and_logits_raw(mode):
    model = tiny_gpt2()
    ids = torch.tensor([[1, 2, 3, 4], [9, 8, 7, 6]])
    kw = dict(
        max_new_tokens=8,
        return_dict_in_generate=True,
        output_scores=True,
        output_logits=True,
        pad_token_id=0,
        do_sample=mode == "sample",
        top_k=None,
        top_p=None,
        num_beams=3 if mode == "beam" else 1,
    )
    out = {}
    for name, mod in (("transformers", T), ("fastlogits", hf)):
        torch.manual_seed(0)  # the same draws for the same distributions
        out[name] = model.generate(ids, logits_processor=chain(mod), **kw)
    ref, got = out["transformers"], out["fastlogits"]
    assert torch.equal(got.sequences, ref.sequences)
    assert len(got.scores) == len(ref.scores) and len(got.logits) == len(ref.logits)
    for a, b in zip(ref.scores, got.scores):
        assert_same(b, a)
    for a, b in zip(ref.logits, got.logits):
        assert torch.equal(a, b), "output_logits must be the raw logits"
    if mode != "beam":
        # The raw logits are not the processed scores (the bug this guards against: processing in place).
        assert not torch.equal(got.logits[0], got.scores[0])


# -- threads ------------------------------------------------------------------------------------------------


def run_threads(n: int, work) -> list:
    results: list = [None] * n
    errors: list = []

    def target(i: int) -> None:
        try:
            results[i] = work(i)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    return results


def test_a_shared_stateless_processor_is_shareable():
    proc = hf.TopPLogitsWarper(0.9)
    rng = np.random.default_rng(0)
    batches = [torch.from_numpy(rng.normal(size=(4, 5000)).astype(np.float32)) for _ in range(8)]
    expected = [T.TopPLogitsWarper(0.9)(None, b.clone()) for b in batches]

    def work(i: int) -> bool:
        return all(torch.equal(proc(None, batches[(i + j) % 8]), expected[(i + j) % 8]) for j in range(40))

    assert all(run_threads(4, work))


def test_a_shared_stateful_pipeline_serves_threads_one_at_a_time():
    pipe = fl.LogitsPipeline(
        [fl.RepetitionPenaltyLogitsProcessor(1.3), fl.NoRepeatNGramLogitsProcessor(2), fl.TopKLogitsWarper(9)]
    )
    rng = np.random.default_rng(1)
    cases = [
        (rng.integers(0, 30, size=(3, 40)), rng.normal(size=(3, 2000)).astype(np.float32)) for _ in range(6)
    ]
    expected = []
    for ids, s in cases:  # each reference from a fresh pipeline (rebuilding the state is always correct)
        fresh = fl.LogitsPipeline(pipe.processors)
        expected.append(fresh(ids, s.copy()))

    def work(i: int) -> bool:
        ok = True
        for j in range(30):
            ids, s = cases[(i + j) % 6]
            ok &= np.array_equal(pipe(ids, s.copy()), expected[(i + j) % 6])
        return ok

    assert all(run_threads(4, work))


def test_a_fused_processor_equals_the_list_with_one_copy():
    model_list = chain(T)
    fused = hf.FusedLogitsProcessor(chain(T))  # transformers' own instances, converted
    assert len(fused) == len(model_list)
    for seed in range(3):
        ids, scores = inputs(seed)
        before = scores.clone()
        got = fused(ids, scores)
        assert got.data_ptr() != scores.data_ptr() and torch.equal(scores, before)
        assert_same(got, model_list(ids, scores.clone()))
    with pytest.raises(fl.InvalidArgumentError, match="FusedLogitsProcessor.*MinPLogitsWarper|implements"):
        hf.FusedLogitsProcessor([T.ForcedBOSTokenLogitsProcessor(1)])
