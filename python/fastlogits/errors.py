"""The exceptions fastlogits raises (defined by the native extension; re-exported here and by `fastlogits`).

* :class:`FastLogitsError`: the base of all of them.
* :class:`InvalidArgumentError` (also a ``ValueError``): a bad argument or input; more precisely one of
  :class:`ParameterError` (a parameter out of its processor's range), :class:`ShapeError` (arrays whose shapes
  do not fit), :class:`InvalidValueError` (NaN / ``+inf`` scores, ids outside the vocabulary, no token left to
  draw), :class:`FloatOverflowError` (a processor turned valid scores into NaN / ``+inf``; the scores are left
  unchanged).
* :class:`InvalidTypeError` (also a ``TypeError``): an argument of the wrong type, dtype or dimensionality.
* :class:`FastLogitsInternalError` (also a ``RuntimeError``): a bug in fastlogits, not the caller's mistake.

Every message names the argument and the allowed values.
"""

from ._native import (
    FastLogitsError,
    FastLogitsInternalError,
    FloatOverflowError,
    InvalidArgumentError,
    InvalidTypeError,
    InvalidValueError,
    ParameterError,
    ShapeError,
)

__all__ = [
    "FastLogitsError",
    "FastLogitsInternalError",
    "FloatOverflowError",
    "InvalidArgumentError",
    "InvalidTypeError",
    "InvalidValueError",
    "ParameterError",
    "ShapeError",
]
