"""The Python side's one copy of each argument check: types and conversions only (only Python can tell an
int from a float, a list from a tensor). Ranges are checked once, natively, with messages that name the
argument; the few range checks here are those Python must make before it allocates (seeds, steps).

Every failure is a :class:`fastlogits.InvalidArgumentError` naming the argument.
"""

from __future__ import annotations

import secrets
from typing import Any

import numpy as np

from ._arrays import is_torch
from .errors import InvalidArgumentError

__all__ = [
    "as_float",
    "check_min_tokens",
    "check_seed",
    "check_seeds",
    "check_step",
    "int_min_tokens",
    "is_int",
    "per_row",
    "positive_int",
    "scalar",
    "token_iterable",
    "token_list",
]


def is_int(x: Any) -> bool:
    """A Python or NumPy integer, not a bool."""
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def scalar(value: Any) -> Any:
    """A 0-d array / tensor as a Python number (other values unchanged)."""
    if (is_torch(value) or isinstance(value, np.ndarray)) and value.ndim == 0:
        return value.item()
    return value


def as_float(value: Any, name: str, what: str) -> float:
    """`float(value)` as transformers converts the argument, failing with a fastlogits error."""
    try:
        return float(scalar(value))
    except (TypeError, ValueError, OverflowError):
        raise InvalidArgumentError(f"`{name}` has to be {what}, but is {value!r}") from None


def per_row(value: Any, name: str) -> list[Any] | None:
    """A per-row parameter (list / 1-D array / 1-D tensor) as a list, or None if `value` is a scalar (a
    0-d array or tensor counts as one, as in transformers)."""
    if is_torch(value):
        if value.device.type == "meta":
            raise InvalidArgumentError(f"`{name}` is a tensor on the meta device (it holds no values)")
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        if value.ndim > 1:
            raise InvalidArgumentError(
                f"`{name}` has to be a number or one number per row (1-D), got shape {value.shape}"
            )
        return None if value.ndim == 0 else value.tolist()
    if isinstance(value, (list, tuple)):
        return list(value)
    return None


def token_list(ids: Any, name: str) -> list[int]:
    """int | list[int] | tensor | array -> list[int] (transformers' `eos_token_id` forms)."""
    if is_torch(ids) or isinstance(ids, np.ndarray):
        ids = ids.tolist()
    if is_int(ids):
        return [int(ids)]
    try:
        return [int(t) for t in ids]
    except (TypeError, ValueError, OverflowError):
        raise InvalidArgumentError(f"`{name}` has to be an int or a list of ints, but is {ids!r}") from None


def token_iterable(tokens: Any, name: str) -> list[int]:
    """transformers' `torch.tensor(list(tokens))`."""
    if is_torch(tokens) or isinstance(tokens, np.ndarray):
        tokens = tokens.tolist()
    try:
        tokens = list(tokens)
    except TypeError:
        raise InvalidArgumentError(f"`{name}` has to be a list of token ids, but is {tokens!r}") from None
    return token_list(tokens, name)


def check_min_tokens(min_tokens_to_keep: Any) -> None:
    """transformers' `isinstance(min_tokens_to_keep, int)` (the range is checked natively)."""
    if not isinstance(min_tokens_to_keep, int):
        raise InvalidArgumentError(
            f"`min_tokens_to_keep` has to be a positive integer, but is {min_tokens_to_keep}"
        )


def int_min_tokens(min_tokens_to_keep: Any) -> int:
    """transformers' `int(min_tokens_to_keep)` (epsilon, eta)."""
    try:
        return int(min_tokens_to_keep)
    except (TypeError, ValueError, OverflowError):
        raise InvalidArgumentError(
            f"`min_tokens_to_keep` has to be a positive integer, but is {min_tokens_to_keep!r}"
        ) from None


def positive_int(name: str, x: Any) -> int:
    if not is_int(x) or x < 1:
        raise InvalidArgumentError(f"`{name}` has to be a positive integer, but is {x!r}")
    return int(x)


def check_seed(seed: Any) -> int:
    """A sampling seed in [0, 2**64); None draws a fresh one."""
    if seed is None:
        return secrets.randbits(64)
    if not is_int(seed) or not 0 <= seed < 2**64:
        raise InvalidArgumentError(f"`seed` has to be an int in [0, 2**64), but is {seed!r}")
    return int(seed)


def check_seeds(seed: Any) -> int | np.ndarray:
    """:func:`check_seed`, or per-row keys: a non-empty 1-D sequence / array of ints in [0, 2**64), given
    back as a C-contiguous uint64 array (their number is checked against the rows natively)."""
    if seed is None or is_int(seed):
        return check_seed(seed)
    if (
        isinstance(seed, np.ndarray)
        and seed.dtype == np.uint64
        and seed.ndim == 1
        and len(seed)
        and seed.flags.c_contiguous
    ):
        return seed  # already what this gives back (a decoding loop passes the same keys at every step)
    if is_torch(seed):
        seed = seed.detach().cpu().numpy()
    if isinstance(seed, (str, bytes, float)) or not hasattr(seed, "__len__"):
        raise InvalidArgumentError(
            f"`seed` has to be an int in [0, 2**64) or a sequence of per-row keys, but is {seed!r}"
        )
    values = list(np.asarray(seed, dtype=object).reshape(-1)) if np.ndim(seed) == 1 else None
    if values is None or not values:
        raise InvalidArgumentError(
            f"`seed` as per-row keys has to be a non-empty 1-D sequence of ints, got shape {np.shape(seed)}"
        )
    for i, v in enumerate(values):
        if not is_int(v) or not 0 <= int(v) < 2**64:
            raise InvalidArgumentError(f"`seed[{i}]` has to be an int in [0, 2**64), but is {v!r}")
    return np.array([int(v) for v in values], dtype=np.uint64)


def check_step(step: Any) -> int:
    """A sampling step (the stream's counter) in [0, 2**64)."""
    if not is_int(step) or not 0 <= step < 2**64:
        raise InvalidArgumentError(f"`step` has to be an int in [0, 2**64), but is {step!r}")
    return int(step)
