"""Input generation for the stress tools (`fuzz.py`, `soak.py`): the one place that knows how to build
scores, ids and parameters for every public entry point of fastlogits.

The fuzzer does not ship objects to its worker processes: it ships *Python source*. Every strategy here
draws a :class:`Case`, a list of :class:`Step` s whose ``code`` is plain Python (``s1 = ...``,
``out = proc(i2, s1)``), executed in one namespace by the worker. The reproducer of a finding is
therefore exactly the code that ran (see :meth:`Case.source`). Arrays are not spelled out element by
element: their code draws them from a seeded NumPy generator, then writes the special values (NaN,
+-inf, +-3e38, ...) at explicit positions, then gives them their layout (strided, read-only,
misaligned, ...).

A step without ``entry`` is a fixture (setting up inputs): if it raises, the case is discarded. A step
with an ``entry`` is a call of the library under test, classified by the fuzzer.

The soak reuses the plain NumPy generators (:func:`realistic_scores`, :func:`histories`).
"""

from __future__ import annotations

import inspect
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import fastlogits.processors as P
import numpy as np
from hypothesis import strategies as st

NAN = float("nan")
INF = float("inf")

# ---------------------------------------------------------------------------------------------------
# Plain generators (also used by the soak)


def realistic_scores(rng: np.random.Generator, B: int, V: int, dtype=np.float32) -> np.ndarray:
    """Logits shaped like a language model's: a Zipf-ish tail over a shuffled vocabulary plus noise."""
    ranks = np.arange(1, V + 1, dtype=np.float64)
    out = np.empty((B, V), np.float64)
    for b in range(B):
        base = -1.2 * np.log(ranks) * rng.uniform(0.5, 2.0) + rng.normal(0, 0.3, V)
        out[b] = base[rng.permutation(V)] + rng.normal(0, 5)
    return out.astype(dtype)


def histories(
    rng: np.random.Generator, B: int, L: int, V: int, repeat_vocab: int | None = None
) -> np.ndarray:
    """(B, L) int64 token histories; ``repeat_vocab`` draws from a small vocabulary so that n-grams and
    repeated tokens actually occur."""
    hi = min(V, repeat_vocab) if repeat_vocab else V
    return rng.integers(0, hi, size=(B, L), dtype=np.int64)


# ---------------------------------------------------------------------------------------------------
# Source rendering


class Code(str):
    """Python source that :func:`lit` renders as is (numpy scalars, tensors, expressions)."""


def lit(v: Any) -> str:
    """Python source for a parameter value."""
    if isinstance(v, Code):
        return str(v)
    if v is None or isinstance(v, bool):
        return repr(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "float('nan')"
        if math.isinf(v):
            return "float('inf')" if v > 0 else "-float('inf')"
        return repr(v)
    if isinstance(v, int):
        for e in (31, 32, 40, 62, 63, 64):
            for value, text in (
                (2**e, f"2**{e}"),
                (-(2**e), f"-(2**{e})"),
                (2**e - 1, f"2**{e} - 1"),
                (-(2**e) - 1, f"-(2**{e}) - 1"),
            ):
                if v == value:
                    return text
        return repr(v)
    if isinstance(v, str):
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(lit(x) for x in v) + "]"
    if isinstance(v, tuple):
        return "(" + ", ".join(lit(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{lit(k)}: {lit(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot render {v!r}")


_NONFINITE = re.compile(r"float\('(nan|inf)'\)|1e3[89]|1e308|2\*\*6[34]|5e-324|1e-46")


def nonfinite_source(code: str) -> bool:
    """The rendered parameters hold NaN / inf / out-of-range magnitudes (used to label silent-NaN
    findings: a NaN the caller asked for is not the same bug as one the library made up)."""
    return bool(_NONFINITE.search(code))


@dataclass
class Step:
    code: str
    entry: str = ""  # "" = fixture
    check: str = ""  # result check (fuzz.py `check_result`)
    scores: str = ""  # the variable holding the scores the call takes (snapshotted)
    ids: str = ""  # the variable holding the ids the call takes (snapshotted)
    inplace: str = "allowed"  # allowed | never | scratch: what the call may do to `scores`
    nonfinite_params: bool = False
    timeout: float | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class Case:
    family: str
    steps: list[Step]

    def header(self, body: str) -> list[str]:
        lines = ["import numpy as np"]
        if "torch." in body:
            lines.append("import torch")
        if "transformers." in body:
            lines.append("import transformers")
        lines.append("import fastlogits as fl")
        if "fl.hf." in body:
            lines.append("import fastlogits.hf")
        if "tiny_gpt2" in body:
            lines += ["import sys", "sys.path.insert(0, 'tests')  # run from the repository root"]
            lines.append("from models import tiny_gpt2")
        return lines

    def full_steps(self) -> list[Step]:
        """The steps with the imports first (a fixture)."""
        body = "\n".join(s.code for s in self.steps)
        return [Step("\n".join(self.header(body)))] + self.steps

    def to_json(self) -> dict:
        return {"family": self.family, "steps": [asdict(s) for s in self.full_steps()]}


class Builder:
    """Accumulates the steps of one case while strategies draw."""

    def __init__(self, draw, family: str):
        self.draw = draw
        self.family = family
        self.steps: list[Step] = []
        self._n = 0

    def name(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}{self._n}"

    def fixture(self, code: str) -> None:
        self.steps.append(Step(code))

    def call(self, code: str, entry: str, **kw: Any) -> None:
        kw.setdefault("nonfinite_params", nonfinite_source(code))
        self.steps.append(Step(code, entry, **kw))

    def case(self) -> Case:
        return Case(self.family, self.steps)


def chance(draw, n: int) -> bool:
    """True with probability 1/n."""
    return draw(st.integers(0, n - 1)) == 0


# ---------------------------------------------------------------------------------------------------
# Arrays

SIZES_B = [1, 1, 2, 2, 3, 4, 7, 16]
SIZES_V = [1, 2, 3, 5, 8, 8, 17, 17, 64, 64, 257, 1000]
BIG_V = [4097, 50257]
FLOAT_SPECIALS = [NAN, INF] + [-INF] * 4 + [3e38, -3e38, 3.4e38, 1e-45, -0.0, 0.0, 65504.0, 1e30, -1e30, 88.0]
NP_LAYOUTS = ["c"] * 8 + [
    "strided",
    "rowslice",
    "transposed",
    "readonly",
    "misaligned",
    "negstride",
    "broadcast",
    "fortran",
    "list",
]
TORCH_LAYOUTS = ["c"] * 6 + ["strided", "rowslice", "transposed", "expand", "grad", "meta", "misaligned"]


def draw_BV(draw) -> tuple[int, int]:
    B = draw(st.sampled_from(SIZES_B))
    V = draw(st.sampled_from(BIG_V)) if chance(draw, 25) else draw(st.sampled_from(SIZES_V))
    return B, V


def draw_scores(
    b: Builder, B: int, V: int, *, lib: str | None = None, odd: bool = True, layouts: bool = True
) -> str:
    """Adds fixtures that define a scores array; returns its variable name.

    Shapes: mostly (B, V), sometimes (0, V), (B, 0), 1-D, 3-D, 0-D, None. Dtypes: float32 mostly, float16,
    float64, bfloat16 (torch), rarely ints / bool / complex. Values: N(0, 1) times a scale, special values
    at drawn positions, all -inf rows, -inf masks. Layouts: see NP_LAYOUTS / TORCH_LAYOUTS."""
    draw = b.draw
    name = b.name("s")
    if lib is None:
        lib = "torch" if chance(draw, 4) else "np"
    shape: tuple[int, ...] = (B, V)
    if odd and chance(draw, 6):
        shape = draw(st.sampled_from([(0, V), (B, 0), (V,), (1, B, V), (B, V, 1), (), (0, 0)]))
    if odd and chance(draw, 60):
        b.fixture(f"{name} = None")
        return name
    r = draw(st.integers(0, 39))
    if r < 28:
        dtype = "float32"
    elif r < 37:
        dtype = draw(st.sampled_from(["float16", "float64"] + (["bfloat16"] if lib == "torch" else [])))
    else:
        dtype = draw(st.sampled_from(["int64", "bool", "complex64" if lib == "np" else "int32", "uint8"]))
    scale = draw(st.sampled_from([1.0, 1.0, 1.0, 5.0, 1e-3, 100.0, 1e30]))
    seed = draw(st.integers(0, 2**16))
    lines = [f"_v = np.random.default_rng({seed}).standard_normal({lit(shape)}) * {scale!r}"]
    size = math.prod(shape)
    if size and chance(draw, 3):
        n = draw(st.integers(1, min(4, size)))
        pos = draw(st.lists(st.integers(0, size - 1), min_size=n, max_size=n, unique=True))
        vals = draw(st.lists(st.sampled_from(FLOAT_SPECIALS), min_size=n, max_size=n))
        lines.append(f"_v.flat[{lit(pos)}] = {lit(vals)}")
    if len(shape) == 2 and size and chance(draw, 4):
        rows = draw(st.lists(st.integers(0, shape[0] - 1), min_size=1, max_size=shape[0], unique=True))
        lines.append(f"_v[{lit(rows)}] = -np.inf  # all -inf rows")
    if size and chance(draw, 5):
        q = draw(st.sampled_from([0.0, 0.5, 1.0, 2.0]))
        lines.append(f"_v[_v < {q!r}] = -np.inf  # a -inf mask")
    layout = "c"
    if layouts and len(shape) == 2 and size:
        layout = draw(st.sampled_from(TORCH_LAYOUTS if lib == "torch" else NP_LAYOUTS))
    R, C = shape if len(shape) == 2 else (0, 0)  # only used by the 2-D layouts
    if lib == "np":
        dt = f"np.{dtype}"
        lines += {
            "c": [f"{name} = _v.astype({dt})"],
            "strided": [
                f"{name} = np.full(({R}, {2 * C}), 7, {dt})",
                f"{name}[:, ::2] = _v",
                f"{name} = {name}[:, ::2]  # non-contiguous",
            ],
            "rowslice": [
                f"{name} = np.full(({R + 2}, {C}), 7, {dt})",
                f"{name}[1:-1] = _v",
                f"{name} = {name}[1:-1]  # a C-contiguous view inside a larger buffer",
            ],
            "transposed": [f"{name} = np.ascontiguousarray(_v.T).astype({dt}).T  # F-contiguous"],
            "readonly": [f"{name} = _v.astype({dt})", f"{name}.flags.writeable = False"],
            "misaligned": [
                f"_buf = np.zeros(_v.astype({dt}).nbytes + 1, np.uint8)",
                f"{name} = np.ndarray(_v.shape, {dt}, buffer=_buf, offset=1)  # misaligned",
                f"{name}[...] = _v",
            ],
            "negstride": [f"{name} = _v[:, ::-1].astype({dt})[:, ::-1]  # negative strides"],
            "broadcast": [f"{name} = np.broadcast_to(_v[:1].astype({dt}), _v.shape)  # stride 0, read-only"],
            "fortran": [f"{name} = np.asfortranarray(_v.astype({dt}))"],
            "list": [f"{name} = _v.astype({dt}).tolist()"],
        }[layout]
    else:
        dt = f"torch.{dtype}"
        lines += {
            "c": [f"{name} = torch.from_numpy(_v).to({dt})"],
            "strided": [
                f"{name} = torch.full(({R}, {2 * C}), 7, dtype={dt})",
                f"{name}[:, ::2] = torch.from_numpy(_v).to({dt})",
                f"{name} = {name}[:, ::2]  # non-contiguous",
            ],
            "rowslice": [
                f"{name} = torch.full(({R + 2}, {C}), 7, dtype={dt})",
                f"{name}[1:-1] = torch.from_numpy(_v).to({dt})",
                f"{name} = {name}[1:-1]",
            ],
            "transposed": [f"{name} = torch.from_numpy(np.ascontiguousarray(_v.T)).to({dt}).T"],
            "expand": [f"{name} = torch.from_numpy(_v[:1].copy()).to({dt}).expand({R}, {C})"],
            "grad": [f"{name} = torch.from_numpy(_v).to({dt}).requires_grad_(True)"],
            "meta": [f"{name} = torch.empty({lit(shape)}, dtype={dt}, device='meta')"],
            "misaligned": [
                "_w = _v.astype(np.float32)",
                "_buf = np.zeros(_w.nbytes + 1, np.uint8)",
                "_m = np.ndarray(_w.shape, np.float32, buffer=_buf, offset=1)",
                "_m[...] = _w",
                f"{name} = torch.from_numpy(_m).to({dt})  # misaligned when float32",
            ],
        }[layout]
    b.fixture("\n".join(lines))
    return name


ID_SPECIALS = [-1, -1, -2, "V", "V", "V+1", 2**31, 2**31 - 1, 2**63 - 1, -(2**63)]


def draw_ids(
    b: Builder, B: int, V: int, *, lib: str | None = None, odd: bool = True, L: int | None = None
) -> str:
    """Adds fixtures that define an ids array (B, L); returns its variable name. Mostly valid ids in
    [0, V) drawn from a small vocabulary (so that repeats and n-grams occur); sometimes negative ids,
    ids >= V, huge ids, wrong batch, wrong rank, wrong dtype, None, non-contiguous / read-only."""
    draw = b.draw
    name = b.name("i")
    if lib is None:
        lib = "torch" if chance(draw, 4) else "np"
    if L is None:
        L = draw(st.sampled_from([0, 1, 1, 2, 3, 4, 5, 8, 8, 12, 40]))
    shape: tuple[int, ...] = (B, L)
    if odd and chance(draw, 8):
        shape = draw(st.sampled_from([(B + 1, L), (max(B - 1, 0), L), (L,), (B, L, 1), (0, L), ()]))
    if odd and chance(draw, 50):
        b.fixture(f"{name} = None")
        return name
    hi = max(1, min(V, draw(st.sampled_from([3, 5, 50, 10**9]))))
    seed = draw(st.integers(0, 2**16))
    lines = [f"_i = np.random.default_rng({seed}).integers(0, {hi}, size={lit(shape)}, dtype=np.int64)"]
    size = math.prod(shape)
    if odd and size and chance(draw, 6):
        n = draw(st.integers(1, min(3, size)))
        pos = draw(st.lists(st.integers(0, size - 1), min_size=n, max_size=n, unique=True))
        vals = draw(st.lists(st.sampled_from(ID_SPECIALS), min_size=n, max_size=n))
        vals = [V if v == "V" else V + 1 if v == "V+1" else v for v in vals]
        lines.append(f"_i.flat[{lit(pos)}] = {lit(vals)}")
    r = draw(st.integers(0, 29)) if odd else 0
    if lib == "np":
        if r < 20:
            dt = "int64"
        elif r < 24:
            dt = "int32"
        else:
            dt = draw(st.sampled_from(["uint64", "int8", "uint8", "float64", "bool", "int16"]))
        layout = "c"
        if odd and len(shape) == 2 and size:
            layout = draw(st.sampled_from(["c"] * 10 + ["strided", "transposed", "readonly", "list"]))
        lines += {
            "c": [f"{name} = _i.astype(np.{dt})"],
            "strided": [f"{name} = np.repeat(_i.astype(np.{dt}), 2, axis=1)[:, ::2]"],
            "transposed": [f"{name} = np.ascontiguousarray(_i.T).astype(np.{dt}).T"],
            "readonly": [f"{name} = _i.astype(np.{dt})", f"{name}.flags.writeable = False"],
            "list": [f"{name} = _i.tolist()"],
        }[layout]
    else:
        if r < 20:
            dt = "int64"
        elif r < 24:
            dt = "int32"
        else:
            dt = draw(st.sampled_from(["uint8", "float32", "bool", "int16"]))
        lines.append(f"{name} = torch.from_numpy(_i).to(torch.{dt})")
        if odd and len(shape) == 2 and size and chance(draw, 8):
            lines.append(f"{name} = {name}.T.contiguous().T  # non-contiguous")
    b.fixture("\n".join(lines))
    return name


def extend_ids(b: Builder, prev: str, B: int, V: int) -> str:
    """A history that extends `prev` by one token per row (the incremental path of stateful processors)."""
    name = b.name("i")
    seed = b.draw(st.integers(0, 2**16))
    hi = max(1, min(V, 5))
    b.fixture(
        f"{name} = np.concatenate([np.asarray({prev}), "
        f"np.random.default_rng({seed}).integers(0, {hi}, size=({B}, 1))], axis=1).astype(np.asarray({prev}).dtype)"
    )
    return name


# ---------------------------------------------------------------------------------------------------
# Parameters

ABSURD: list[Any] = [
    2**62,
    2**63,
    2**64,
    2**63 - 1,
    -(2**63) - 1,
    2**31,
    2**32,
    10**12,
    -1,
    0,
    -7,
    NAN,
    INF,
    -INF,
    1e-46,
    1e39,
    -1e39,
    1e308,
    5e-324,
    -0.0,
    0.0,
    0.5,
    1.5,
    7.0,
    True,
    False,
    None,
    "abc",
    "",
    "1",
    [],
    [[1, 2], [3]],
    [1.5, NAN],
    [[]],
    (),
    {},
    {1: "a"},
    Code("np.int64(3)"),
    Code("np.int64(-1)"),
    Code("np.uint64(2**64 - 1)"),
    Code("np.float32(float('nan'))"),
    Code("np.float64(0.5)"),
    Code("np.float32(1e-46)"),
    Code("np.bool_(True)"),
    Code("np.array(0.5)"),
    Code("np.array([[0.5]])"),
    Code("np.array([], dtype=np.float64)"),
    Code("np.array([2**63], dtype=np.uint64)"),
    Code("torch.tensor(0.5)"),
    Code("torch.tensor([1, 2])"),
    Code("torch.tensor(float('nan'))"),
    Code("object()"),
    Code("b'ab'"),
    Code("1j"),
    Code("[2**64]"),
    Code("[2**63]"),
    Code("[-1]"),
    Code("[float('inf')]"),
    Code("[None]"),
    Code("{(): 1.0}"),
    Code("{(2**64,): 1.0}"),
    Code("{(1,): float('nan')}"),
    Code("{2**64: 1.0}"),
    Code("{-1: 1.0}"),
    Code("{1: float('nan')}"),
    Code("{1: float('inf')}"),
    Code("(2**63, 2.0)"),
    Code("(1, float('nan'))"),
    Code("(1,)"),
    Code("(-5, 1e39)"),
    Code("(1.5, 2.0)"),
    Code("[[2**63]]"),
    Code("[[-1]]"),
    Code("[[1, 2**64]]"),
]


def plausible(kind: str, B: int, V: int) -> st.SearchStrategy:
    tok = st.integers(0, max(V - 1, 0))
    return {
        "temp": st.one_of(st.floats(0.05, 3.0), st.just(1.0), st.just(0.7)),
        "pos_int": st.integers(1, V + 3),
        "prob": st.one_of(st.floats(0.0, 1.0), st.sampled_from([0.0, 1.0, 0.9, 0.5])),
        "small_prob": st.one_of(st.floats(0.0, 0.3), st.just(3e-4)),
        "penalty": st.one_of(st.floats(0.1, 3.0), st.just(1.2)),
        "oa_penalty": st.floats(-2.0, 2.0),
        "filter": st.sampled_from([-INF, -INF, -1e9, -100.0, 0.0]),
        "min_keep": st.integers(0, 4),
        "ngram": st.integers(1, 4),
        "length": st.integers(0, 12),
        "token": tok,
        "tokens": st.lists(tok, max_size=4),
        "token_lists": st.lists(st.lists(tok, min_size=1, max_size=3), min_size=1, max_size=3),
        "eos": st.one_of(tok, st.lists(tok, min_size=1, max_size=2)),
        "eos_opt": st.one_of(st.none(), tok, st.lists(tok, min_size=1, max_size=2)),
        "seq_bias": st.dictionaries(
            st.lists(tok, min_size=1, max_size=3).map(tuple),
            st.floats(-5.0, 5.0) | st.just(-INF),
            min_size=1,
            max_size=3,
        ),
        "logit_bias": st.dictionaries(tok, st.floats(-5.0, 5.0) | st.just(-INF), max_size=3),
        "decay": st.tuples(st.integers(0, 5), st.floats(1.0, 2.0)),
        "ignore": st.one_of(st.none(), st.integers(0, 3)),
        "device": st.just("cpu"),
        "seed": st.one_of(st.integers(0, 2**64 - 1), st.integers(0, 10)),
        "step": st.integers(0, 100),
        "bool": st.booleans(),
        "any": st.sampled_from([1, 0.5, 2, None]),
    }[kind]


def param(b: Builder, kind: str, B: int, V: int, *, per_row: bool = False, absurd_in: int = 5) -> str:
    """Source of a parameter value: plausible for its kind, a per-row list / array (of the right or a
    wrong length), or (1 in `absurd_in`) an absurd value."""
    draw = b.draw
    if absurd_in and chance(draw, absurd_in):
        return lit(draw(st.sampled_from(ABSURD)))
    if per_row and chance(draw, 4):
        n = B if not chance(draw, 4) else draw(st.sampled_from([0, 1, B + 1, max(B - 1, 0)]))
        values = draw(st.lists(plausible(kind, B, V), min_size=n, max_size=n))
        if chance(draw, 3):
            dt = "np.int64" if kind == "pos_int" else "np.float64"
            return f"np.array({lit(values)}, dtype={dt})"
        return lit(values)
    return lit(draw(plausible(kind, B, V)))


# name -> [(parameter, kind, per-row allowed, required)]
_FILTER = ("filter_value", "filter", False, False)
_KEEP = ("min_tokens_to_keep", "min_keep", False, False)
_DEVICE = ("device", "device", False, False)
PROCESSOR_PARAMS: dict[str, list[tuple[str, str, bool, bool]]] = {
    "FastLogitsProcessor": [],
    "TemperatureLogitsWarper": [("temperature", "temp", True, True)],
    "TopKLogitsWarper": [("top_k", "pos_int", True, True), _FILTER, _KEEP],
    "TopPLogitsWarper": [("top_p", "prob", True, True), _FILTER, _KEEP],
    "MinPLogitsWarper": [("min_p", "prob", True, True), _FILTER, _KEEP],
    "TypicalLogitsWarper": [("mass", "prob", False, False), _FILTER, _KEEP],
    "EpsilonLogitsWarper": [("epsilon", "small_prob", False, True), _FILTER, _KEEP],
    "EtaLogitsWarper": [("epsilon", "small_prob", False, True), _FILTER, _KEEP, _DEVICE],
    "RepetitionPenaltyLogitsProcessor": [
        ("penalty", "penalty", True, True),
        ("prompt_ignore_length", "ignore", True, False),
    ],
    "PresencePenaltyLogitsProcessor": [
        ("penalty", "oa_penalty", False, True),
        ("prompt_length", "length", False, True),
    ],
    "FrequencyPenaltyLogitsProcessor": [
        ("penalty", "oa_penalty", False, True),
        ("prompt_length", "length", False, True),
    ],
    "NoRepeatNGramLogitsProcessor": [("ngram_size", "ngram", False, True)],
    "NoBadWordsLogitsProcessor": [
        ("bad_words_ids", "token_lists", False, True),
        ("eos_token_id", "eos_opt", False, False),
    ],
    "SequenceBiasLogitsProcessor": [("sequence_bias", "seq_bias", False, True)],
    "LogitBiasLogitsProcessor": [("logit_bias", "logit_bias", False, True)],
    "MinLengthLogitsProcessor": [
        ("min_length", "length", False, True),
        ("eos_token_id", "eos", False, True),
        _DEVICE,
    ],
    "MinNewTokensLengthLogitsProcessor": [
        ("prompt_length_to_skip", "length", False, True),
        ("min_new_tokens", "length", False, True),
        ("eos_token_id", "eos", False, True),
        _DEVICE,
    ],
    "SuppressTokensLogitsProcessor": [("suppress_tokens", "tokens", False, True), _DEVICE],
    "SuppressTokensAtBeginLogitsProcessor": [
        ("begin_suppress_tokens", "tokens", False, True),
        ("begin_index", "length", False, True),
        _DEVICE,
    ],
    "ExponentialDecayLengthPenalty": [
        ("exponential_decay_length_penalty", "decay", False, True),
        ("eos_token_id", "eos", False, True),
        ("input_ids_seq_length", "length", False, True),
    ],
}
STATEFUL = {
    "RepetitionPenaltyLogitsProcessor",
    "PresencePenaltyLogitsProcessor",
    "FrequencyPenaltyLogitsProcessor",
    "NoRepeatNGramLogitsProcessor",
    "NoBadWordsLogitsProcessor",
    "SequenceBiasLogitsProcessor",
}


def processor_names() -> list[str]:
    """Every processor class of `fastlogits.processors.__all__` (new ones included: their parameters are
    then drawn generically from the signature)."""
    return list(P.__all__)


def processor_params(cls_name: str) -> list[tuple[str, str, bool, bool]]:
    if cls_name in PROCESSOR_PARAMS:
        return PROCESSOR_PARAMS[cls_name]
    sig = inspect.signature(getattr(P, cls_name).__init__)
    return [
        (p.name, "any", False, p.default is inspect.Parameter.empty)
        for p in list(sig.parameters.values())[1:]
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]


def processor_ctor(
    b: Builder, cls_name: str, B: int, V: int, *, module: str = "fl", absurd_in: int = 5
) -> str:
    """`procN = fl.X(...)` as a call step; returns the variable name."""
    args = []
    for pname, kind, per_row, required in processor_params(cls_name):
        if not required and chance(b.draw, 2):
            continue
        args.append(f"{pname}={param(b, kind, B, V, per_row=per_row, absurd_in=absurd_in)}")
    name = b.name("proc")
    entry = f"{'hf.' if module == 'fl.hf' else ''}{cls_name}.__init__"
    b.call(f"{name} = {module}.{cls_name}({', '.join(args)})", entry)
    return name


# ---------------------------------------------------------------------------------------------------
# Families of cases


@st.composite
def processor_cases(draw, cls_name: str | None = None, hf: bool = False) -> Case:
    """One processor class: its constructor, then 1-3 calls (growing histories for stateful ones), with
    reset / set_begin_index / native / repr in between."""
    names = processor_names()
    if cls_name is None:
        cls_name = draw(st.sampled_from(names))
    b = Builder(draw, ("hf:" if hf else "processor:") + cls_name)
    B, V = draw_BV(draw)
    module = "fl.hf" if hf else "fl"
    prefix = ("hf." if hf else "") + cls_name
    proc = processor_ctor(b, cls_name, B, V, module=module, absurd_in=15 if hf else 5)
    prev_ids = None
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.integers(0, 9))
        if op == 0:
            b.call(f"{proc}.reset()", f"{prefix}.reset")
            continue
        if op == 1 and cls_name == "SuppressTokensAtBeginLogitsProcessor":
            b.call(f"{proc}.set_begin_index({param(b, 'length', B, V)})", f"{prefix}.set_begin_index")
            continue
        if op == 2:
            b.call(f"out = repr({proc}), {proc}.native()", f"{prefix}.native/repr")
            continue
        lib = ("torch" if not chance(draw, 6) else "np") if hf else None
        s = draw_scores(b, B, V, lib=lib)
        if prev_ids is not None and cls_name in STATEFUL and chance(draw, 2):
            i = extend_ids(b, prev_ids, B, V)
        else:
            i = draw_ids(b, B, V, lib=lib)
            prev_ids = i
        b.call(
            f"out = {proc}({i}, {s})",
            f"{prefix}.__call__",
            check="scores",
            scores=s,
            ids=i,
            inplace="never" if hf else "allowed",
        )
    return b.case()


def _pipeline_ops(b: Builder, pipe: str, B: int, V: int, stateful: bool) -> None:
    draw = b.draw
    prev_ids = None
    for _ in range(draw(st.integers(1, 5))):
        op = draw(st.integers(0, 11))
        if op <= 5:
            s = draw_scores(b, B, V)
            if prev_ids is not None and stateful and chance(draw, 2):
                i = extend_ids(b, prev_ids, B, V)
            else:
                i = prev_ids = draw_ids(b, B, V)
            if op <= 3:
                b.call(f"out = {pipe}({i}, {s})", "LogitsPipeline.__call__", check="scores", scores=s, ids=i)
            else:
                kw = [f"seed={param(b, 'seed', B, V, absurd_in=6)}"]
                if chance(draw, 2):
                    kw.append(f"step={param(b, 'step', B, V, absurd_in=6)}")
                ws = "True"
                if chance(draw, 2):
                    ws = param(b, "bool", B, V, absurd_in=8)
                    kw.append(f"write_scores={ws}")
                b.call(
                    f"out = {pipe}.sample({i}, {s}, {', '.join(kw)})",
                    "LogitsPipeline.sample",
                    check="ptokens",
                    scores=s,
                    ids=i,
                    inplace="allowed" if ws == "True" else "scratch",
                    extra={"write_scores": ws == "True"},
                )
        elif op <= 7:
            if chance(draw, 2):
                idx = lit(draw(st.lists(st.integers(0, max(B - 1, 0)), min_size=B, max_size=B)))
            else:
                idx = lit(
                    draw(
                        st.sampled_from(
                            [
                                [-1] * B,
                                [B] * B,
                                [2**63] * B,
                                [2**64] * B,
                                [],
                                list(range(B + 1)),
                                [0.5] * B,
                                Code(f"np.arange({B})[::-1]"),
                                Code(f"torch.arange({B})"),
                                Code(f"np.zeros({B}, np.uint64) + np.uint64(2**64 - 1)"),
                                None,
                                "ab",
                                [[0]] * B,
                            ]
                        )
                    )
                )
            b.call(f"{pipe}.reorder({idx})", "LogitsPipeline.reorder")
        elif op == 8:
            b.call(f"{pipe}.reset()", "LogitsPipeline.reset")
        else:
            b.call(
                f"out = len({pipe}), repr({pipe}), list({pipe}), {pipe}.processors",
                "LogitsPipeline.len/repr/iter",
            )


@st.composite
def pipeline_cases(draw) -> Case:
    """`LogitsPipeline([...])` of 0-4 processors (mostly plausible parameters; sometimes items that are not
    fastlogits processors), then calls / sample / reorder / reset."""
    b = Builder(draw, "pipeline")
    B, V = draw_BV(draw)
    items = []
    names = [n for n in processor_names() if n != "FastLogitsProcessor"]
    for _ in range(draw(st.integers(0, 4))):
        items.append(processor_ctor(b, draw(st.sampled_from(names)), B, V, absurd_in=25))
    stateful = any("Repetition" in s.code or "NGram" in s.code or "Penalty" in s.code for s in b.steps)
    if chance(draw, 12):
        items.insert(
            draw(st.integers(0, len(items))),
            draw(
                st.sampled_from(
                    [
                        "None",
                        "'top_k'",
                        "lambda i, s: s",
                        "transformers.TopKLogitsWarper(3)",
                        "fl.FastLogitsProcessor()",
                        "fl.TopKLogitsWarper(2).native()",
                    ]
                )
            ),
        )
    form = "[" + ", ".join(items) + "]"
    if chance(draw, 15):
        form = draw(st.sampled_from(["5", "None", f"({', '.join(items)}{',' if items else ''})", "iter([])"]))
    b.call(f"pipe = fl.LogitsPipeline({form})", "LogitsPipeline.__init__")
    _pipeline_ops(b, "pipe", B, V, stateful)
    return b.case()


GEN_KWARGS: dict[str, str] = {
    "do_sample": "bool",
    "temperature": "temp",
    "top_k": "pos_int",
    "top_p": "prob",
    "min_p": "prob",
    "typical_p": "prob",
    "epsilon_cutoff": "small_prob",
    "eta_cutoff": "small_prob",
    "repetition_penalty": "penalty",
    "no_repeat_ngram_size": "ngram",
    "bad_words_ids": "token_lists",
    "min_length": "length",
    "min_new_tokens": "length",
    "eos_token_id": "eos",
    "exponential_decay_length_penalty": "decay",
    "suppress_tokens": "tokens",
    "begin_suppress_tokens": "tokens",
    "num_beams": "ngram",
    "presence_penalty": "oa_penalty",
    "frequency_penalty": "oa_penalty",
    "logit_bias": "logit_bias",
    "encoder_repetition_penalty": "penalty",
    "encoder_no_repeat_ngram_size": "ngram",
    "max_length": "length",
    "renormalize_logits": "bool",
    "remove_invalid_values": "bool",
}
GEN_RARE = {
    "guidance_scale": [None, 1.0, 1.5],
    "forced_bos_token_id": [None, 0],
    "forced_eos_token_id": [None, 1],
    "sequence_bias": [None, [[[1], 1.0]], {(1,): 1.0}],
    "top_k": [0, None],
    "top_p": [1.0, None],
}


@st.composite
def generation_config_cases(draw) -> Case:
    """`LogitsPipeline.from_generation_config(...)` with random settings (a GenerationConfig, a dict or
    None, overridden by keyword arguments), then calls / sample / reorder / reset."""
    b = Builder(draw, "from_generation_config")
    B, V = draw_BV(draw)
    chosen = draw(st.lists(st.sampled_from(sorted(GEN_KWARGS)), max_size=6, unique=True))
    kwargs = {}
    if "do_sample" not in chosen:
        kwargs["do_sample"] = "True" if not chance(draw, 4) else "False"
    for k in chosen:
        kwargs[k] = param(
            b, GEN_KWARGS[k], B, V, per_row=k in ("temperature", "top_k", "top_p", "min_p"), absurd_in=10
        )
    if chance(draw, 6):
        k = draw(st.sampled_from(sorted(GEN_RARE)))
        kwargs[k] = lit(draw(st.sampled_from(GEN_RARE[k])))
    gc = "None"
    if chance(draw, 3):
        # Some settings in a config object / dict, the rest as keyword arguments.
        moved = [k for k in kwargs if chance(draw, 2)]
        inner = ", ".join(f"{k}={kwargs.pop(k)}" for k in moved)
        if chance(draw, 2):
            b.fixture(f"gc = transformers.GenerationConfig({inner})")
            gc = "gc"
        else:
            gc = "dict(" + inner + ")"
    args = [gc] + [f"{k}={v}" for k, v in kwargs.items()]
    if chance(draw, 2):
        args.append(f"input_ids_seq_length={param(b, 'length', B, V, absurd_in=6)}")
    if chance(draw, 5):
        seed = draw(st.integers(0, 2**16))
        b.fixture(f"mask = (np.random.default_rng({seed}).random(({B}, 4)) < 0.7).astype(np.int64)")
        args.append("attention_mask=mask")
    if chance(draw, 6):
        args.append("logits_processor=[fl.TopKLogitsWarper(2), fl.MinPLogitsWarper(0.1)]")
    b.call(
        f"pipe = fl.LogitsPipeline.from_generation_config({', '.join(args)})",
        "LogitsPipeline.from_generation_config",
    )
    _pipeline_ops(b, "pipe", B, V, True)
    return b.case()


N_VALUES = [0, -1, 1, 2, 3, 2**31, 2**32, 2**40, 10**12, 2**63, 2**64, 2**63 - 1, 1.5, None, True]


@st.composite
def sampling_cases(draw) -> Case:
    """fastlogits.sample / greedy / log_softmax / top_logprobs / Sampler on random scores."""
    fn = draw(st.sampled_from(["sample", "greedy", "log_softmax", "top_logprobs", "Sampler"]))
    b = Builder(draw, "sampling:" + fn)
    B, V = draw_BV(draw)
    if fn == "Sampler":
        seed = param(b, "seed", B, V, absurd_in=4) if not chance(draw, 5) else ""
        b.call(f"smp = fl.Sampler({seed})", "Sampler.__init__")
    for _ in range(draw(st.integers(1, 3))):
        s = draw_scores(b, B, V)
        if fn == "sample":
            kw = [f"seed={param(b, 'seed', B, V, absurd_in=4)}"]
            if chance(draw, 2):
                kw.append(f"step={param(b, 'step', B, V, absurd_in=4)}")
            b.call(
                f"out = fl.sample({s}, {', '.join(kw)})",
                "fastlogits.sample",
                check="tokens",
                scores=s,
                inplace="never",
            )
        elif fn == "greedy":
            b.call(f"out = fl.greedy({s})", "fastlogits.greedy", check="greedy", scores=s, inplace="never")
        elif fn == "log_softmax":
            b.call(
                f"out = fl.log_softmax({s})",
                "fastlogits.log_softmax",
                check="log_softmax",
                scores=s,
                inplace="never",
            )
        elif fn == "top_logprobs":
            n = (
                lit(draw(st.sampled_from(N_VALUES + [Code("np.int64(2)"), Code("np.uint64(2**64 - 1)")])))
                if chance(draw, 2)
                else lit(draw(st.integers(1, V + 2)))
            )
            b.call(
                f"out = fl.top_logprobs({s}, {n})",
                "fastlogits.top_logprobs",
                check="top_logprobs",
                scores=s,
                inplace="never",
            )
        else:
            b.call(f"out = smp({s})", "Sampler.__call__", check="tokens", scores=s, inplace="never")
    return b.case()


@st.composite
def beam_cases(draw) -> Case:
    """fastlogits.BeamSearch: constructor (random settings), steps with random log-probs, finalize and the
    accessors."""
    b = Builder(draw, "beam")
    B = draw(st.sampled_from([1, 1, 2, 3]))
    K = draw(st.sampled_from([1, 2, 2, 3, 4]))
    V = draw(st.sampled_from([1, 2, 3, 5, 8, 17, 64]))
    i = draw_ids(b, B, V, L=draw(st.sampled_from([0, 1, 2, 4])))
    kw = [f"num_beams={param(b, 'pos_int', B, K + 1, absurd_in=5) if chance(draw, 3) else K}"]
    if chance(draw, 8):
        kw.append(f"max_length={param(b, 'length', B, V, absurd_in=3)}")
        if chance(draw, 3):
            kw.append(f"max_new_tokens={param(b, 'length', B, V)}")
    else:
        kw.append(f"max_new_tokens={param(b, 'ngram', B, V, absurd_in=6)}")
    for name, kind, p in (
        ("length_penalty", "oa_penalty", 3),
        ("early_stopping", "bool", 3),
        ("num_return_sequences", "ngram", 4),
        ("eos_token_id", "eos_opt", 2),
        ("pad_token_id", "token", 3),
        ("do_sample", "bool", 2),
        ("seed", "seed", 2),
    ):
        if chance(draw, p):
            value = param(b, kind, B, V, absurd_in=12)
            if name == "num_return_sequences" and not chance(draw, 8):
                value = lit(draw(st.integers(1, K)))
            if name == "early_stopping" and chance(draw, 3):
                value = "'never'"
            kw.append(f"{name}={value}")
    b.call(f"bs = fl.BeamSearch({i}, {', '.join(kw)})", "BeamSearch.__init__")
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.integers(0, 9))
        if op <= 5:
            lp = draw_scores(b, B * K, V, odd=chance(draw, 2))
            b.call(f"out = bs.step({lp})", "BeamSearch.step", check="beam_step", scores=lp, inplace="never")
        elif op == 6:
            b.call("out = bs.finalize()", "BeamSearch.finalize")
        elif op == 7:
            b.call(
                "out = bs.running_sequences(), bs.running_scores(), bs.cur_len, bs.is_done, bs.entries_done, repr(bs)",
                "BeamSearch.accessors",
            )
        else:
            m = draw_ids(b, B, 2)
            b.call(f"out = bs.expand({m})", "BeamSearch.expand")
    return b.case()


THREADS = [
    0,
    1,
    1,
    2,
    2,
    3,
    3,
    8,
    8,
    64,
    3000,
    -1,
    2**31,
    2**32,
    2**63,
    2**64,
    1.5,
    NAN,
    None,
    "4",
    True,
    Code("np.int64(2)"),
]


@st.composite
def threads_cases(draw) -> Case:
    """set_num_threads(n), then work on a batch large enough to use the pool."""
    b = Builder(draw, "threads")
    n = lit(draw(st.sampled_from(THREADS)))
    b.call(f"fl.set_num_threads({n})", "set_num_threads", extra={"sticky": f"fl.set_num_threads({n})"})
    b.call("out = fl.get_num_threads()", "get_num_threads")
    B, V = draw(st.sampled_from([(16, 4097), (64, 257), (3, 50257)]))
    s = draw_scores(b, B, V, lib="np", odd=False, layouts=False)
    i = draw_ids(b, B, V, lib="np", odd=False)
    b.call(
        f"out = fl.LogitsPipeline([fl.RepetitionPenaltyLogitsProcessor(1.3), fl.TopPLogitsWarper(0.9)])({i}, {s})",
        "LogitsPipeline.__call__",
        check="scores",
        scores=s,
        ids=i,
    )
    b.call(f"out = fl.sample({s}, seed=1)", "fastlogits.sample", check="tokens", scores=s, inplace="never")
    return b.case()


T_PROCS = [
    "transformers.TemperatureLogitsWarper({temp})",
    "transformers.TopKLogitsWarper({k})",
    "transformers.TopPLogitsWarper({p})",
    "transformers.MinPLogitsWarper({p})",
    "transformers.TypicalLogitsWarper({p})",
    "transformers.EpsilonLogitsWarper({e})",
    "transformers.EtaLogitsWarper({e})",
    "transformers.RepetitionPenaltyLogitsProcessor({pen})",
    "transformers.NoRepeatNGramLogitsProcessor({n})",
    "transformers.SequenceBiasLogitsProcessor({{({t},): 1.5}})",
    "transformers.NoBadWordsLogitsProcessor([[{t}]], eos_token_id={t2})",
    "transformers.MinLengthLogitsProcessor({n}, {t})",
    "transformers.MinNewTokensLengthLogitsProcessor({n}, {n}, {t})",
    "transformers.SuppressTokensLogitsProcessor([{t}])",
    "transformers.SuppressTokensAtBeginLogitsProcessor([{t}], {n})",
    "transformers.ExponentialDecayLengthPenalty(({n}, 1.5), {t}, {n})",
    "transformers.InfNanRemoveLogitsProcessor()",
]


def _t_proc(b: Builder, B: int, V: int) -> str:
    d = b.draw
    tmpl = d(st.sampled_from(T_PROCS))
    t = d(st.integers(0, max(V - 1, 0)))
    return tmpl.format(
        temp=d(st.sampled_from([0.5, 0.7, 1.3])),
        k=d(st.integers(1, V + 2)),
        p=d(st.sampled_from([0.1, 0.5, 0.9])),
        e=d(st.sampled_from([1e-4, 0.01, 0.1])),
        pen=d(st.sampled_from([0.8, 1.2, 2.0])),
        n=d(st.integers(1, 4)),
        t=t,
        t2=(t + 1) % max(V, 1),
    )


@st.composite
def hf_cases(draw) -> Case:
    """fastlogits.hf: the transformers.LogitsProcessor adapters on torch tensors (meta, requires_grad, bf16,
    non-contiguous ...), `to_native` of transformers processors, and `NativeChain`."""
    kind = draw(st.sampled_from(["adapter", "adapter", "adapter", "to_native", "chain"]))
    if kind == "adapter":
        names = [n for n in processor_names() if n != "FastLogitsProcessor"]
        return draw(processor_cases(cls_name=draw(st.sampled_from(names)), hf=True))
    b = Builder(draw, "hf:" + kind)
    B, V = draw_BV(draw)
    if kind == "to_native":
        b.fixture(f"tp = {_t_proc(b, B, V)}")
        b.call("proc = fl.hf.to_native(tp)", "hf.to_native")
        b.fixture("assert proc is not None  # (no native equivalent: the case ends here)")
        s = draw_scores(b, B, V, lib="torch")
        i = draw_ids(b, B, V, lib="torch")
        b.call(
            f"out = proc({i}, {s})",
            "hf.to_native(...).__call__",
            check="scores",
            scores=s,
            ids=i,
            inplace="allowed",
        )
        return b.case()
    items = []
    for _ in range(draw(st.integers(1, 4))):
        r = draw(st.integers(0, 5))
        if r <= 2:
            items.append(_t_proc(b, B, V))
        elif r <= 4:
            items.append(
                processor_ctor(
                    b,
                    draw(
                        st.sampled_from(
                            [
                                "TopKLogitsWarper",
                                "TopPLogitsWarper",
                                "RepetitionPenaltyLogitsProcessor",
                                "NoRepeatNGramLogitsProcessor",
                            ]
                        )
                    ),
                    B,
                    V,
                    absurd_in=0,
                )
            )
        else:
            items.append(
                draw(
                    st.sampled_from(
                        [
                            "lambda i, s: s * 2",
                            "lambda i, s: s[:, :1]",
                            "lambda i, s: s.double()",
                            "lambda i, s: None",
                        ]
                    )
                )
            )
    b.call(f"chain = fl.hf.NativeChain([{', '.join(items)}])", "hf.NativeChain.__init__")
    python_items = any(not x.startswith("proc") for x in items)
    prev = None
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.integers(0, 5))
        s = draw_scores(b, B, V, lib="np", odd=chance(draw, 3))
        i = (
            extend_ids(b, prev, B, V)
            if prev and chance(draw, 2)
            else draw_ids(b, B, V, lib="np", odd=chance(draw, 3))
        )
        prev = i
        if op <= 2:
            b.call(
                f"out = chain({i}, {s})",
                "hf.NativeChain.__call__",
                check="inplace_scores",
                scores=s,
                ids=i,
                extra={"python_items": python_items},
            )
        elif op <= 4:
            seed = param(b, "seed", B, V, absurd_in=5)
            ws = draw(st.sampled_from(["True", "False"]))
            b.call(
                f"out = chain.sample({i}, {s}, {seed}, {param(b, 'step', B, V, absurd_in=5)}, {ws})",
                "hf.NativeChain.sample",
                check="ptokens",
                scores=s,
                ids=i,
                inplace="allowed" if ws == "True" else "scratch",
                extra={"write_scores": ws == "True", "python_items": python_items},
            )
        else:
            idx = lit(draw(st.lists(st.integers(-1, B), min_size=B, max_size=B)))
            b.call(f"chain.reorder(np.array({idx}))", "hf.NativeChain.reorder")
    return b.case()


GPT2_VOCAB = 48

GENERATE_KWARGS: dict[str, str] = {
    "do_sample": "bool",
    "num_beams": "ngram",
    "temperature": "temp",
    "top_k": "pos_int",
    "top_p": "prob",
    "min_p": "prob",
    "typical_p": "prob",
    "epsilon_cutoff": "small_prob",
    "repetition_penalty": "penalty",
    "no_repeat_ngram_size": "ngram",
    "num_return_sequences": "ngram",
    "min_new_tokens": "length",
    "bad_words_ids": "token_lists",
    "eos_token_id": "eos",
    "pad_token_id": "token",
    "return_dict_in_generate": "bool",
    "output_scores": "bool",
    "early_stopping": "bool",
    "length_penalty": "oa_penalty",
    "suppress_tokens": "tokens",
}


@st.composite
def generate_cases(draw) -> Case:
    """fastlogits.generate / stream on the tiny random GPT-2 of tests/models.py (slow: few of them)."""
    b = Builder(draw, "generate")
    B = draw(st.sampled_from([1, 2, 3]))
    L = draw(st.sampled_from([1, 2, 5]))
    seed = draw(st.integers(0, 2**16))
    b.fixture("model = tiny_gpt2()")
    b.fixture(f"ids = torch.from_numpy(np.random.default_rng({seed}).integers(0, {GPT2_VOCAB}, ({B}, {L})))")
    args = ["model", "ids"]
    if chance(draw, 3):
        b.fixture(f"mask = torch.ones(({B}, {L}), dtype=torch.long)\nmask[0, : {L - 1}] = 0  # left padding")
        args.append("attention_mask=mask")
    args.append(f"max_new_tokens={param(b, 'ngram', B, GPT2_VOCAB, absurd_in=8)}")
    pads = []
    for k in draw(st.lists(st.sampled_from(sorted(GENERATE_KWARGS)), max_size=5, unique=True)):
        v = param(b, GENERATE_KWARGS[k], B, GPT2_VOCAB, absurd_in=8)
        if k in ("pad_token_id", "eos_token_id"):
            pads.append(v)
        args.append(f"{k}={v}")
    if chance(draw, 2):
        args.append(f"seed={param(b, 'seed', B, GPT2_VOCAB, absurd_in=6)}")
    fn = "stream" if chance(draw, 6) else "generate"
    code = f"out = fl.generate({', '.join(args)})"
    if fn == "stream":
        code = f"out = torch.stack(list(fl.stream({', '.join(args)})), dim=1)"
    b.call(code, f"fastlogits.{fn}", check="generate", timeout=60.0, extra={"pad": pads, "prompt": L})
    return b.case()


FAMILIES = {
    "processor": lambda: processor_cases(),
    "pipeline": pipeline_cases,
    "from_generation_config": generation_config_cases,
    "sampling": sampling_cases,
    "beam": beam_cases,
    "threads": threads_cases,
    "hf": hf_cases,
    "generate": generate_cases,
}
# Relative frequencies (generate is slow; threads changes the worker's state).
WEIGHTS = {
    "processor": 10,
    "pipeline": 5,
    "from_generation_config": 4,
    "sampling": 5,
    "beam": 4,
    "threads": 1,
    "hf": 5,
    "generate": 1,
}


@st.composite
def cases(draw, families: tuple[str, ...] | None = None) -> Case:
    """A case of any family (weighted as WEIGHTS)."""
    names = [f for f in (families or FAMILIES) for _ in range(WEIGHTS[f])]
    fam = draw(st.sampled_from(names))
    return draw(FAMILIES[fam]())


# FASTLOGITS_NUM_THREADS values the fuzzer's workers start with (None: unset).
ENV_THREADS = (
    [None] * 6 + ["2"] * 2 + ["0", "1", "3000", "-1", "abc", "", " 4 ", "1e3", "99999999999999999999", "2.5"]
)
