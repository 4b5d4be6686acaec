"""What comes back, and whether the input is modified (see fastlogits.processors' docstring)."""

from __future__ import annotations

import fastlogits as fl
import numpy as np
import pytest
import torch
import transformers.generation.logits_process as hf

IDS = np.array([[1, 2, 3], [4, 5, 6]])


def data(v: int = 50):
    return np.random.default_rng(0).normal(size=(2, v)).astype(np.float32)


def test_numpy_float32_is_modified_in_place():
    s = data()
    out = fl.TopKLogitsWarper(5)(IDS, s)
    assert out is s
    assert np.isneginf(s).sum() == 2 * 45


def test_torch_float32_cpu_is_modified_in_place_zero_copy():
    s = torch.from_numpy(data())
    ptr = s.data_ptr()
    out = fl.TemperatureLogitsWarper(0.5)(torch.from_numpy(IDS), s)
    assert out is s and out.data_ptr() == ptr
    np.testing.assert_array_equal(s.numpy(), data() / np.float32(0.5))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_other_torch_dtypes_give_a_new_tensor_of_the_same_dtype(dtype):
    s = torch.from_numpy(data()).to(dtype)
    before = s.clone()
    ids = torch.from_numpy(IDS)
    out = fl.TopPLogitsWarper(0.8)(ids, s)
    assert out.dtype == dtype and out is not s
    assert torch.equal(s, before)
    ref = hf.TopPLogitsWarper(0.8)(ids, s.float()).to(dtype)
    assert torch.equal(torch.isneginf(out), torch.isneginf(ref))


def test_numpy_float64_gives_new_float64_array():
    s = data().astype(np.float64)
    before = s.copy()
    out = fl.TemperatureLogitsWarper(2.0)(IDS, s)
    assert out.dtype == np.float64 and out is not s
    np.testing.assert_array_equal(s, before)
    np.testing.assert_array_equal(out, (before.astype(np.float32) / np.float32(2.0)).astype(np.float64))


def test_tensor_that_requires_grad_is_not_modified():
    s = torch.from_numpy(data()).requires_grad_(True)
    out = fl.TopKLogitsWarper(3)(torch.from_numpy(IDS), s)
    assert out is not s and not torch.isneginf(s).any()


def test_non_contiguous_tensor_is_copied():
    base = torch.from_numpy(data(100))
    s = base[:, ::2]
    out = fl.TopKLogitsWarper(3)(torch.from_numpy(IDS), s)
    assert out is not s and not torch.isneginf(base).any()
    assert torch.isneginf(out).sum() == 2 * 47


@pytest.mark.parametrize(
    "ids",
    [
        IDS.astype(np.int32),
        IDS.astype(np.uint16),
        torch.from_numpy(IDS).int(),
        torch.from_numpy(IDS),
        IDS.tolist(),
    ],
    ids=["int32", "uint16", "torch-int32", "torch-int64", "list"],
)
def test_id_types(ids):
    ref = fl.RepetitionPenaltyLogitsProcessor(1.5)(IDS, data())
    np.testing.assert_array_equal(np.asarray(fl.RepetitionPenaltyLogitsProcessor(1.5)(ids, data())), ref)


def test_pipeline_reuse_across_unrelated_batches_is_correct():
    """A processor instance reused on a different history (new prompt, other batch size) rebuilds its
    state: results equal a fresh instance's."""
    proc = fl.NoRepeatNGramLogitsProcessor(2)
    rng = np.random.default_rng(1)
    for b, length in [(2, 10), (2, 11), (3, 4), (2, 30)]:
        ids = rng.integers(0, 6, size=(b, length))
        s = rng.normal(size=(b, 6)).astype(np.float32)
        np.testing.assert_array_equal(proc(ids, s.copy()), fl.NoRepeatNGramLogitsProcessor(2)(ids, s.copy()))
        ref = hf.NoRepeatNGramLogitsProcessor(2)(torch.from_numpy(ids), torch.from_numpy(s.copy())).numpy()
        np.testing.assert_array_equal(proc(ids, s.copy()), ref)
