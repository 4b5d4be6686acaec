"""Conversions between what users pass (NumPy arrays, torch tensors) and what the native layer takes.

The native layer takes C-contiguous float32 scores and int64/int32 ids, and writes scores in place.
Here every other input is converted, and the result is given back in the caller's type:

* a writable, C-contiguous float32 NumPy array, or a contiguous float32 CPU torch tensor that does
  not require grad, is processed **in place** (the tensor through ``tensor.numpy()``, which shares
  its memory) and returned as the same object;
* anything else (float16/bfloat16/float64, non-contiguous or read-only arrays, CUDA tensors) is
  copied to float32 on the host, processed, and returned as a **new** array/tensor of the input's
  dtype and device; the input is left untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ._native import InvalidArgumentError, InvalidTypeError

__all__ = ["as_scores", "as_ids", "batch_size", "in_place", "is_torch", "to_like"]


def is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "numpy")


def _check_2d(shape: tuple[int, ...], name: str, what: str) -> None:
    if len(shape) != 2:
        raise InvalidTypeError(f"`{name}` must be 2-D ({what}), got shape {tuple(shape)}")


def _check_device(t: Any, name: str) -> None:
    if t.device.type == "meta":
        raise InvalidTypeError(f"`{name}` is a tensor on the meta device (it holds no values)")


def as_scores(scores: Any, name: str = "scores") -> tuple[np.ndarray, Callable[[np.ndarray], Any]]:
    """A float32 C-contiguous writable array to process, and how to turn it back into the caller's type.
    The array is the caller's own memory exactly when :func:`in_place` says so."""
    if is_torch(scores):
        import torch

        _check_2d(tuple(scores.shape), name, "batch, vocab")
        _check_device(scores, name)
        if not scores.dtype.is_floating_point:
            raise InvalidTypeError(f"`{name}` must hold floats, got {scores.dtype}")
        if in_place(scores):
            return scores.numpy(), lambda _work: scores
        work = scores.detach().to(device="cpu", dtype=torch.float32, copy=True).contiguous().numpy()

        def back_torch(w: np.ndarray) -> Any:
            out = torch.from_numpy(w).to(dtype=scores.dtype)
            if scores.dtype != torch.float32 and bool(torch.isposinf(out).any()):
                raise _overflow(name, scores.dtype)
            return out.to(device=scores.device)

        return work, back_torch
    try:
        arr = scores if isinstance(scores, np.ndarray) else np.asarray(scores)
    except ValueError:  # ragged lists
        raise InvalidTypeError(f"`{name}` has to be a (batch, vocab) array of floats") from None
    _check_2d(arr.shape, name, "batch, vocab")
    if arr.dtype.kind != "f":
        raise InvalidTypeError(f"`{name}` must hold floats, got {arr.dtype}")
    if in_place(scores):
        return arr, lambda _work: scores
    work = np.array(arr, dtype=np.float32, order="C", copy=True)
    if arr.dtype == np.float32:
        return work, lambda w: w

    def back_numpy(w: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):
            out = w.astype(arr.dtype)
        if np.isposinf(out).any():
            raise _overflow(name, arr.dtype)
        return out

    return work, back_numpy


def _overflow(name: str, dtype: Any) -> InvalidArgumentError:
    """The processed float32 scores do not fit back into the caller's narrower dtype (+inf would be
    returned); the caller's array is not modified."""
    return InvalidArgumentError(
        f"the processed `{name}` exceed the range of {dtype} (they would become +inf): pass float32 scores"
    )


def in_place(scores: Any) -> bool:
    """Whether `scores` is processed in its own memory: a writable, aligned, C-contiguous float32 NumPy
    array, or a contiguous float32 CPU tensor that does not require grad."""
    if is_torch(scores):
        import torch

        return (
            scores.device.type == "cpu"
            and scores.dtype == torch.float32
            and scores.is_contiguous()
            and not scores.requires_grad
            and scores.data_ptr() % 4 == 0
        )
    return (
        isinstance(scores, np.ndarray)
        and scores.dtype == np.float32
        and scores.flags.c_contiguous
        and scores.flags.writeable
        and scores.flags.aligned
    )


def as_ids(input_ids: Any, name: str = "input_ids") -> np.ndarray:
    """A C-contiguous int64/int32 (B, L) array (shared with a CPU tensor when possible)."""
    if is_torch(input_ids):
        import torch

        _check_2d(tuple(input_ids.shape), name, "batch, length")
        _check_device(input_ids, name)
        t = input_ids.detach()
        if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
            raise InvalidTypeError(f"`{name}` must hold integers, got {t.dtype}")
        if t.dtype not in (torch.int64, torch.int32):
            t = t.to(torch.int64)
        return t.to("cpu").contiguous().numpy()
    try:
        arr = input_ids if isinstance(input_ids, np.ndarray) else np.asarray(input_ids)
    except ValueError:  # ragged lists
        raise InvalidTypeError(f"`{name}` has to be a (batch, length) array of ints") from None
    if arr.ndim == 2 and arr.size == 0 and arr.dtype.kind == "f":
        arr = arr.astype(np.int64)  # np.asarray([[]]) is float64
    _check_2d(arr.shape, name, "batch, length")
    if arr.dtype.kind not in "iu" or arr.dtype == np.bool_:
        raise InvalidTypeError(f"`{name}` must hold integers, got {arr.dtype}")
    if arr.dtype not in (np.int64, np.int32) or not arr.flags.aligned:
        if arr.dtype.kind == "u" and arr.size and arr.max() > np.iinfo(np.int64).max:
            raise InvalidArgumentError(f"`{name}` holds ids beyond the int64 range")
        arr = np.array(arr, dtype=np.int64, order="C", copy=True)
    return np.ascontiguousarray(arr)


def batch_size(scores: Any) -> int | None:
    """The number of rows of a (batch, vocab) array or tensor, None if it is not 2-D."""
    shape = tuple(scores.shape) if hasattr(scores, "shape") else np.shape(scores)
    return int(shape[0]) if len(shape) == 2 else None


def to_like(values: np.ndarray, like: Any) -> Any:
    """`values` as a torch tensor on `like`'s device when `like` is one, else unchanged."""
    if is_torch(like):
        import torch

        return torch.from_numpy(values).to(like.device)
    return values
