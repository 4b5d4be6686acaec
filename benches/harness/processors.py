"""Processor benchmark: fastlogits against transformers, measured in the same run.

Microseconds per decoding step for each logits processor and for the sampling chain (repetition
penalty 1.2, no-repeat 3-grams, temperature 0.8, top-k 50, top-p 0.95, then the draw), GPT-2 shapes
(V = 50257, history L = 256), batches 1 / 8 / 64, three logit families (peaked, typical, flat).

Method (see ``benches/README.md``):

* transformers and fastlogits are timed in the same run, **interleaved** block by block (in proportion
  to their planned repetitions), so load changes on the machine hit both; the speedup is
  ``median(transformers) / median(fastlogits)``.
* every call gets fresh scores: a pristine base array is copied into a work buffer before the call
  (untimed); only the call is timed (``time.perf_counter_ns``). fastlogits gets the NumPy float32 work
  buffer (processed in place), transformers a ``torch.from_numpy`` view of its own work buffer, under
  ``torch.inference_mode()``.
* histories are realistic decoding steps: within a block of ``BLOCK`` timed calls, call ``j`` sees
  ``ids[:, :L + j]`` (one new token per call), for both implementations. Each block uses a fresh
  fastlogits instance primed by untimed calls on ``ids[:, :L - 2]`` and ``ids[:, :L - 1]``, so its
  incremental history state is exercised exactly as in ``generate`` while the history length stays
  within ``[L, L + BLOCK)``.
* repetitions are chosen per case from a short pilot: enough for a stable median (a time budget and a
  minimum count), capped for very slow transformers cases.

torch, transformers and matplotlib are imported lazily: ``import fastlogits`` does not need them.

Usage: ``python benches/bench_processors.py [--quick] [--out DIR] [--only top_p,chain]`` (or ``fastlogits bench``
from a checkout).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

__all__ = [
    "run_processor_bench",
    "to_markdown",
    "write_results",
    "evaluate_targets",
    "make_logits",
    "main",
]

VOCAB = 50257
HISTORY = 256
HISTORY_LONG = 2048
BATCHES = (1, 8, 64)
FAMILIES = ("peaked", "typical", "flat")
POOL_ROWS = 64  # distinct score rows per family; batches rotate over them
BLOCK = 16  # timed calls per block (the history grows by one token per call within a block)
BLOCK_S = 0.05  # ... and at most about this many seconds
PRIME = 2  # untimed calls that build a fresh fastlogits instance's history state before a block
PILOT = 3  # timed-but-discarded calls per implementation used to choose the repetition counts
SEED = 0

# key -> (label, class name shared by fastlogits and transformers, constructor args)
PROCESSORS: dict[str, tuple[str, str, tuple[Any, ...]]] = {
    "temperature": ("temperature 0.8", "TemperatureLogitsWarper", (0.8,)),
    "top_k": ("top-k 50", "TopKLogitsWarper", (50,)),
    "top_p": ("top-p 0.95", "TopPLogitsWarper", (0.95,)),
    "min_p": ("min-p 0.05", "MinPLogitsWarper", (0.05,)),
    "typical": ("typical 0.9", "TypicalLogitsWarper", (0.9,)),
    "epsilon": ("epsilon 3e-4", "EpsilonLogitsWarper", (3e-4,)),
    "eta": ("eta 3e-4", "EtaLogitsWarper", (3e-4,)),
    "repetition": ("repetition 1.2", "RepetitionPenaltyLogitsProcessor", (1.2,)),
    "no_repeat": ("no-repeat 3", "NoRepeatNGramLogitsProcessor", (3,)),
}
CHAIN = ("repetition", "no_repeat", "temperature", "top_k", "top_p")
# The chain + draw, two ways for fastlogits: "chain" writes the processed scores back into the buffer (as
# transformers' processors produce them); "chain_tokens" only wants the tokens (`write_scores=False`, what
# fastlogits.generate does unless output_scores is asked for). transformers does the same work for both.
# Through `fastlogits.hf` (transformers' contract: a new tensor, the input unchanged): "chain_fused" is one
# `hf.FusedLogitsProcessor` (one copy, inside the native call), "chain_hf" the five hf processors one after
# the other (a copy each, as transformers' processors allocate one each); both then `fastlogits.sample`.
CHAINS = {
    "chain": "chain + draw",
    "chain_tokens": "chain + draw, tokens only",
    "chain_fused": "chain + draw, hf fused (new tensor)",
    "chain_hf": "chain + draw, 5 hf processors (new tensors)",
}
ORDER = (*CHAINS, *PROCESSORS)


def label_of(key: str) -> str:
    return CHAINS[key] if key in CHAINS else PROCESSORS[key][0]


# Targets (ratios to transformers measured in the same run).
SPEEDUP_TARGETS: tuple[tuple[str, str, int, float], ...] = (
    ("chain", "typical", 1, 120.0),
    ("chain", "typical", 64, 180.0),
    ("chain_tokens", "typical", 1, 120.0),
    ("chain_tokens", "typical", 64, 180.0),
    ("chain_fused", "typical", 1, 100.0),
    ("chain_fused", "typical", 64, 100.0),
    ("top_p", "typical", 1, 50.0),
    ("top_p", "flat", 1, 15.0),
)
# "About the same cost per step": fastlogits no-repeat-3 at L=2048 within this factor of L=256.
NO_REPEAT_TOLERANCE = 1.25


@dataclass(frozen=True)
class Budget:
    """Repetition policy: ``n = clamp(target_s / t, min_reps, ...)``, capped at ``cap_s / t`` timed seconds
    (but never below ``floor_reps``) and at ``max_reps``."""

    target_s: float
    min_reps: int
    cap_s: float
    floor_reps: int
    max_reps: int

    def reps(self, seconds_per_call: float) -> int:
        t = max(seconds_per_call, 1e-7)
        n = max(math.ceil(self.target_s / t), self.min_reps)
        return int(min(n, max(math.ceil(self.cap_s / t), self.floor_reps), self.max_reps))


FULL_BUDGET = Budget(target_s=1.0, min_reps=20, cap_s=3.0, floor_reps=8, max_reps=4000)
QUICK_BUDGET = Budget(target_s=0.25, min_reps=12, cap_s=0.8, floor_reps=5, max_reps=800)


@dataclass(frozen=True)
class Quiet:
    """Guard against other processes: torch's thread pool slows down by orders of magnitude when the
    cores are oversubscribed (fastlogits much less), which would inflate the speedups. When the previous
    measurement saw other processes use ``idle`` of the CPUs or more, wait before the next case (up to
    ``wait_s``, ``total_wait_s`` over the run) until they use less; a case during which they used
    more than ``busy`` is run again (up to ``retries`` times), the least disturbed attempt is kept
    and flagged if still disturbed."""

    busy: float
    idle: float
    wait_s: float
    total_wait_s: float
    retries: int


FULL_QUIET = Quiet(busy=0.10, idle=0.05, wait_s=60.0, total_wait_s=600.0, retries=2)
QUICK_QUIET = Quiet(busy=0.10, idle=0.05, wait_s=5.0, total_wait_s=20.0, retries=1)


@dataclass(frozen=True)
class Case:
    key: str  # a PROCESSORS or CHAINS key
    family: str
    batch: int
    history: int

    @property
    def label(self) -> str:
        return label_of(self.key)


def full_cases() -> list[Case]:
    cases = [Case(k, f, b, HISTORY) for k in ORDER for f in FAMILIES for b in BATCHES]
    cases += [Case("no_repeat", "typical", b, HISTORY_LONG) for b in BATCHES]
    return cases


def quick_cases() -> list[Case]:
    cases = [Case("chain", f, b, HISTORY) for f in FAMILIES for b in (1, 64)]
    cases += [
        Case(k, "typical", b, HISTORY) for k in ("chain_tokens", "chain_fused", "chain_hf") for b in (1, 64)
    ]
    cases += [Case(k, "typical", b, HISTORY) for k in ("top_k", "top_p") for b in (1, 64)]
    cases += [Case("top_p", "flat", 1, HISTORY)]
    cases += [Case("no_repeat", "typical", 1, h) for h in (HISTORY, HISTORY_LONG)]
    return cases


# --------------------------------------------------------------------------------------------------
# Inputs


def _entropy(logits: np.ndarray) -> np.ndarray:
    """Entropy (nats) of softmax of each row, in float64."""
    x = logits.astype(np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    p = np.exp(x)
    z = p.sum(axis=-1, keepdims=True)
    p /= z
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(p > 0, p * np.log(p), 0.0)
    return -plogp.sum(axis=-1)


def _bisect(f: Callable[[float], float], lo: float, hi: float, target: float, iters: int = 60) -> float:
    """x in [lo, hi] with f(x) = target, for f monotone."""
    increasing = f(hi) > f(lo)
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if (f(mid) < target) == increasing:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def make_logits(
    family: str, rows: int = POOL_ROWS, vocab: int = VOCAB, seed: int = SEED
) -> tuple[np.ndarray, dict[str, Any]]:
    """``(rows, vocab)`` float32 logits of one family and a description (parameters, measured entropy).

    * ``typical``: Zipf exponent 1.5 over a shuffled vocabulary, ``logit = -1.5 * ln(rank)`` with the
      ranks permuted independently per row (~3.2 nats, like GPT-2 on web text);
    * ``peaked``: the same shape with the exponent solved for an entropy of 0.5 nats;
    * ``flat``: ``N(0, sigma)`` with sigma solved for an entropy of 10.7 nats (like a random-init GPT-2).
    """
    rng = np.random.default_rng([seed, FAMILIES.index(family)])
    log_rank = np.log(np.arange(1, vocab + 1, dtype=np.float64))
    if family in ("typical", "peaked"):
        if family == "typical":
            s = 1.5
        else:
            s = _bisect(lambda e: float(_entropy((-e * log_rank)[None])[0]), 1.5, 20.0, 0.5)
        shape = (-s * log_rank).astype(np.float32)
        out = np.empty((rows, vocab), dtype=np.float32)
        for r in range(rows):
            out[r] = shape[rng.permutation(vocab)]
        desc = {"kind": "zipf", "exponent": s}
    elif family == "flat":
        z = rng.standard_normal((rows, vocab))
        sigma = _bisect(lambda sd: float(_entropy(sd * z[:1])[0]), 1e-3, 3.0, 10.7)
        out = (sigma * z).astype(np.float32)
        desc = {"kind": "normal", "sigma": sigma}
    else:
        raise ValueError(f"unknown family {family!r}")
    ent = _entropy(out)
    desc.update(entropy_nats=float(ent.mean()), entropy_min=float(ent.min()), entropy_max=float(ent.max()))
    return out, desc


def make_history(rows: int, length: int, vocab: int = VOCAB, seed: int = SEED) -> np.ndarray:
    """``(rows, length)`` int64 token ids drawn i.i.d. from a Zipf(1.1) law over a shuffled vocabulary
    (text-like repetition rates, so the repetition penalty and the n-gram bans have work to do)."""
    rng = np.random.default_rng([seed, 99])
    p = np.arange(1, vocab + 1, dtype=np.float64) ** -1.1
    p /= p.sum()
    perm = rng.permutation(vocab).astype(np.int64)
    return np.ascontiguousarray(perm[rng.choice(vocab, size=(rows, length), p=p)])


# --------------------------------------------------------------------------------------------------
# Implementations


def _fl_factory(case: Case, seed: int) -> Callable[[], Callable[[np.ndarray, np.ndarray], Any]]:
    """Builds a fresh fastlogits callable ``f(ids, scores)`` (scores: NumPy float32, in place)."""
    import fastlogits as fl

    def proc(key: str) -> Any:
        _, cls, args = PROCESSORS[key]
        return getattr(fl, cls)(*args)

    if case.key not in CHAINS:
        return lambda: proc(case.key)
    write_scores = case.key == "chain"
    if case.key in ("chain_fused", "chain_hf"):
        from fastlogits import hf

        def make_hf() -> Callable[[np.ndarray, np.ndarray], Any]:
            procs = [getattr(hf, PROCESSORS[k][1])(*PROCESSORS[k][2]) for k in CHAIN]
            steps = [hf.FusedLogitsProcessor(procs)] if case.key == "chain_fused" else procs
            step = [0]

            def call(ids: np.ndarray, scores: np.ndarray) -> Any:
                x = scores
                for p in steps:
                    x = p(ids, x)  # a new array each time; `scores` is left unchanged
                tokens = fl.sample(x, seed=seed, step=step[0])
                step[0] += 1
                return tokens

            return call

        return make_hf

    def make() -> Callable[[np.ndarray, np.ndarray], Any]:
        pipe = fl.LogitsPipeline([proc(k) for k in CHAIN])
        step = [0]

        def call(ids: np.ndarray, scores: np.ndarray) -> Any:
            # Processes `scores` and draws from them: what `fl.sample(pipe(ids, scores), ...)` gives, in one
            # native call (fastlogits.generate's decoding loop does the same, with write_scores=False).
            tokens = pipe.sample(ids, scores, seed=seed, step=step[0], write_scores=write_scores)
            step[0] += 1
            return tokens

        return call

    return make


def _fl_processors_only(case: Case) -> Callable[[np.ndarray, np.ndarray], Any]:
    import fastlogits as fl

    keys = CHAIN if case.key in CHAINS else (case.key,)
    return fl.LogitsPipeline([getattr(fl, PROCESSORS[k][1])(*PROCESSORS[k][2]) for k in keys])


def _tf_callable(case: Case, draw: bool = True) -> Callable[[Any, Any], Any]:
    """transformers' callable ``f(ids_tensor, scores_tensor)``; the chain ends with `_sample`'s draw."""
    import torch
    from transformers.generation import logits_process as lp

    def proc(key: str) -> Any:
        _, cls, args = PROCESSORS[key]
        return getattr(lp, cls)(*args)

    if case.key not in CHAINS:
        return proc(case.key)
    processors = lp.LogitsProcessorList([proc(k) for k in CHAIN])
    if not draw:
        return processors

    def call(input_ids: Any, scores: Any) -> Any:
        next_token_scores = processors(input_ids, scores)
        probs = torch.nn.functional.softmax(next_token_scores, dim=-1)
        return torch.multinomial(probs, num_samples=1).squeeze(1)

    return call


# --------------------------------------------------------------------------------------------------
# Timing


def _stats(times_ns: Sequence[int]) -> dict[str, Any]:
    a = np.asarray(times_ns, dtype=np.float64) / 1e3
    p10, p25, p50, p75, p90 = np.percentile(a, [10, 25, 50, 75, 90])
    return {
        "median_us": float(p50),
        "p10_us": float(p10),
        "p25_us": float(p25),
        "p75_us": float(p75),
        "p90_us": float(p90),
        "mean_us": float(a.mean()),
        "min_us": float(a.min()),
        "n": int(a.size),
    }


class _Bench:
    """Runs the blocks of one case for both implementations, sharing the inputs."""

    def __init__(self, case: Case, pool: np.ndarray, ids: np.ndarray, seed: int):
        import torch

        self.torch = torch
        self.case = case
        b = case.batch
        self.bases = [pool[s : s + b] for s in range(0, pool.shape[0] - b + 1, b)]
        self.ids = ids[:b]
        self.fl_work = np.empty((b, pool.shape[1]), dtype=np.float32)
        self.tf_work = np.empty((b, pool.shape[1]), dtype=np.float32)
        self.tf_scores = torch.from_numpy(self.tf_work)  # shares tf_work's memory
        self.make_fl = _fl_factory(case, seed)
        self.tf = _tf_callable(case)
        self.fl_times: list[int] = []
        self.tf_times: list[int] = []
        self.fl_calls = 0
        self.tf_calls = 0

    def hist(self, n: int) -> np.ndarray:
        return np.ascontiguousarray(self.ids[:, :n])

    def fl_block(self, k: int, out: list[int]) -> None:
        f = self.make_fl()  # fresh instance: its state is built by the untimed priming calls
        work, L = self.fl_work, self.case.history
        for n in range(L - PRIME, L):
            np.copyto(work, self.bases[0])
            f(self.hist(n), work)
        clock = time.perf_counter_ns
        for j in range(k):
            h = self.hist(L + j)
            np.copyto(work, self.bases[self.fl_calls % len(self.bases)])
            self.fl_calls += 1
            t0 = clock()
            f(h, work)
            out.append(clock() - t0)

    def tf_block(self, k: int, out: list[int]) -> None:
        torch, L, st = self.torch, self.case.history, self.tf_scores
        clock = time.perf_counter_ns
        with torch.inference_mode():
            for j in range(k):
                h = torch.from_numpy(self.hist(L + j))
                np.copyto(self.tf_work, self.bases[self.tf_calls % len(self.bases)])
                self.tf_calls += 1
                t0 = clock()
                self.tf(h, st)
                out.append(clock() - t0)

    def check(self) -> dict[str, Any]:
        """One untimed call of each implementation on the same input: tokens kept per row (the two
        must do the same work) and the number of positions where the masks differ."""
        torch, L = self.torch, self.case.history
        h = self.hist(L)
        a = np.array(self.bases[0], copy=True)
        _fl_processors_only(self.case)(h, a)
        with torch.inference_mode():
            b = _tf_callable(self.case, draw=False)(
                torch.from_numpy(h), torch.from_numpy(self.bases[0].copy())
            )
        b = b.numpy()
        ka, kb = np.isfinite(a), np.isfinite(b)
        return {
            "kept_fastlogits": float(ka.sum(axis=1).mean()),
            "kept_transformers": float(kb.sum(axis=1).mean()),
            "mask_differences": int((ka != kb).sum()),
        }

    def run(self, budget: Budget) -> dict[str, Any]:
        check = self.check()
        pilot_fl: list[int] = []
        pilot_tf: list[int] = []
        self.fl_block(PILOT, pilot_fl)
        self.tf_block(PILOT, pilot_tf)
        t_fl, t_tf = float(np.median(pilot_fl)) / 1e9, float(np.median(pilot_tf)) / 1e9
        blocks = {"fl": _split(budget.reps(t_fl), t_fl), "tf": _split(budget.reps(t_tf), t_tf)}
        done = {"fl": 0, "tf": 0}
        gc.collect()
        gc.disable()
        try:
            while done["fl"] < len(blocks["fl"]) or done["tf"] < len(blocks["tf"]):
                # the implementation furthest behind its plan runs next: blocks interleave in proportion
                side = min(
                    (s for s in ("fl", "tf") if done[s] < len(blocks[s])),
                    key=lambda s: done[s] / len(blocks[s]),
                )
                k = blocks[side][done[side]]
                if side == "fl":
                    self.fl_block(k, self.fl_times)
                else:
                    self.tf_block(k, self.tf_times)
                done[side] += 1
        finally:
            gc.enable()
        fl_s, tf_s = _stats(self.fl_times), _stats(self.tf_times)
        c = self.case
        return {
            "key": c.key,
            "label": c.label,
            "family": c.family,
            "batch": c.batch,
            "history": c.history,
            "transformers": tf_s,
            "fastlogits": fl_s,
            "speedup": tf_s["median_us"] / fl_s["median_us"],
            "speedup_p25_p75": [tf_s["p25_us"] / fl_s["p75_us"], tf_s["p75_us"] / fl_s["p25_us"]],
            "check": check,
        }


def _split(n: int, seconds_per_call: float) -> list[int]:
    """``n`` calls as blocks of at most ``BLOCK`` calls and about ``BLOCK_S`` seconds (slow cases get
    short blocks, so that the two implementations still alternate often)."""
    size = max(1, min(BLOCK, math.ceil(BLOCK_S / max(seconds_per_call, 1e-9))))
    nb = max(1, math.ceil(n / size))
    return [n // nb + (1 if i < n % nb else 0) for i in range(nb)]


def _floor(pool: np.ndarray, batch: int, budget: Budget) -> dict[str, Any]:
    """One NumPy pass over the logits (``scores.max(axis=-1)``): a lower bound for any processor."""
    bases = [pool[s : s + batch] for s in range(0, pool.shape[0] - batch + 1, batch)]
    clock = time.perf_counter_ns
    times: list[int] = []

    def go(n: int) -> None:
        for i in range(n):
            base = bases[i % len(bases)]
            t0 = clock()
            base.max(axis=-1)
            times.append(clock() - t0)

    go(PILOT)
    n = budget.reps(float(np.median(times)) / 1e9)
    times.clear()
    go(n)
    return {"batch": batch, "numpy_max": _stats(times)}


def _busy_seconds() -> float | None:
    """CPU seconds spent busy by the whole machine (all CPUs, steal included), from /proc/stat."""
    try:
        with open("/proc/stat") as fh:
            f = fh.readline().split()
    except OSError:
        return None
    if not f or f[0] != "cpu":
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in f[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    t = os.times()
    return t.user + t.system


class _CpuMeter:
    """Fraction of the machine's CPUs used by *other* processes since construction (None if unknown)."""

    def __init__(self) -> None:
        self.wall, self.busy, self.own = time.perf_counter(), _busy_seconds(), _own_seconds()

    def others(self) -> float | None:
        busy = _busy_seconds()
        wall = time.perf_counter() - self.wall
        if busy is None or self.busy is None or wall <= 0:
            return None
        other = (busy - self.busy) - (_own_seconds() - self.own)
        return max(0.0, other) / (wall * (os.cpu_count() or 1))


def _wait_quiet(idle: float, max_wait: float, window: float = 0.5) -> float:
    """Sleeps in ``window`` steps until other processes use < ``idle`` of the CPUs; returns the wait."""
    start = time.perf_counter()
    while True:
        m = _CpuMeter()
        time.sleep(window)
        used = m.others()
        waited = time.perf_counter() - start
        if used is None or used < idle or waited >= max_wait:
            return waited


# --------------------------------------------------------------------------------------------------
# Driver


def _native_build() -> dict[str, Any]:
    """Which build of the extension: file name, sha256 prefix and modification time."""
    import fastlogits as fl

    native = Path(fl._native.__file__)
    return {
        "file": native.name,
        "sha256": hashlib.sha256(native.read_bytes()).hexdigest()[:16],
        "mtime": _dt.datetime.fromtimestamp(native.stat().st_mtime, _dt.timezone.utc).strftime(
            "%Y-%m-%d %H:%M UTC"
        ),
    }


def _machine() -> dict[str, Any]:
    import fastlogits as fl
    import torch
    import transformers

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = os.cpu_count()
    commit = None
    try:
        here = Path(__file__).resolve().parent
        commit = (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        pass
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "cpus_usable": affinity,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "fastlogits": fl.__version__,
        "git_commit": commit,
        "native_build": _native_build(),
        "torch_threads": torch.get_num_threads(),
        "fastlogits_threads": fl.get_num_threads(),
    }


def _check_only(only: Sequence[str]) -> None:
    unknown = set(only) - set(ORDER) - {"floor"}
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}; choose from {[*ORDER, 'floor']}")


def run_processor_bench(
    quick: bool = False,
    *,
    only: Sequence[str] | None = None,
    seed: int = SEED,
    progress: TextIO | None = sys.stderr,
) -> dict[str, Any]:
    """Runs the processor benchmark and returns every measurement (JSON-serialisable).

    ``quick``: a subset (chain on the three families, top-k / top-p, the target cases) with fewer
    repetitions. ``only``: restrict to these keys (``PROCESSORS`` and ``CHAINS`` keys, ``"floor"``).
    ``progress``: where to report each case as it finishes (None: silent).
    """
    import torch

    started = time.perf_counter()
    machine = _machine()  # now: the extension file hashed is (almost surely) the one loaded
    torch.manual_seed(seed)
    budget = QUICK_BUDGET if quick else FULL_BUDGET
    quiet_budget = QUICK_QUIET if quick else FULL_QUIET
    cases = quick_cases() if quick else full_cases()
    floor_batches: tuple[int, ...] = (1, 64) if quick else BATCHES
    if only is not None:
        _check_only(only)
        cases = [c for c in cases if c.key in only]
        if "floor" not in only:
            floor_batches = ()

    families = sorted({c.family for c in cases} | ({"typical"} if floor_batches else set()))
    pools, fam_desc = {}, {}
    for f in families:
        pools[f], fam_desc[f] = make_logits(f, seed=seed)
    ids = make_history(POOL_ROWS, HISTORY_LONG + BLOCK + PILOT, seed=seed)

    def say(msg: str) -> None:
        if progress is not None:
            print(msg, file=progress, flush=True)

    say(
        f"fastlogits bench ({'quick' if quick else 'full'}): {len(cases)} cases, "
        f"floor at B={list(floor_batches)}"
    )
    waited = 0.0

    last_background: list[float | None] = [1.0]  # background load seen during the previous measurement

    def settle() -> None:
        nonlocal waited
        prev = last_background[0]
        if prev is not None and prev >= quiet_budget.idle and quiet_budget.total_wait_s > waited:
            waited += _wait_quiet(
                quiet_budget.idle, min(quiet_budget.wait_s, quiet_budget.total_wait_s - waited)
            )

    def bg(r: dict[str, Any]) -> float:
        return r["background_cpu"] if r["background_cpu"] is not None else 0.0

    results = []
    for i, case in enumerate(cases, 1):
        attempts = []
        for attempt in range(1 + quiet_budget.retries):
            settle()
            t0, meter = time.perf_counter(), _CpuMeter()
            r = _Bench(case, pools[case.family], ids, seed).run(budget)
            r["background_cpu"] = last_background[0] = meter.others()
            r["wall_s"] = time.perf_counter() - t0
            attempts.append(r)
            if bg(r) <= quiet_budget.busy:
                break
            say(
                f"[{i:>2}/{len(cases)}] {case.label} {case.family} B={case.batch}: other processes used "
                f"{bg(r):.0%} of the CPUs (tf {r['transformers']['median_us']:.0f} us, fl "
                f"{r['fastlogits']['median_us']:.1f} us)"
                + (", running it again" if attempt < quiet_budget.retries else "")
            )
        r = min(attempts, key=bg)
        r["attempts"] = len(attempts)
        r["contended"] = bg(r) > quiet_budget.busy
        results.append(r)
        chk = r["check"]
        warn = "  [DISTURBED by other processes]" if r["contended"] else ""
        if chk["mask_differences"] > max(2, 1e-3 * chk["kept_transformers"] * case.batch):
            warn += f"  [masks differ at {chk['mask_differences']} positions]"
        say(
            f"[{i:>2}/{len(cases)}] {case.label:<15} {case.family:<7} B={case.batch:<2} L={case.history:<4} "
            f"tf {r['transformers']['median_us']:>10.1f} us  fl {r['fastlogits']['median_us']:>8.1f} us  "
            f"{r['speedup']:>7.1f}x  (n={r['transformers']['n']}/{r['fastlogits']['n']}, "
            f"{r['wall_s']:.1f} s){warn}"
        )
    floors = []
    for b in floor_batches:
        settle()
        meter = _CpuMeter()
        floors.append(_floor(pools["typical"], b, budget))
        floors[-1]["background_cpu"] = last_background[0] = meter.others()
        say(f"floor numpy max B={b:<2} {floors[-1]['numpy_max']['median_us']:.1f} us")

    out: dict[str, Any] = {
        "mode": "quick" if quick else "full",
        "machine": machine,
        "setup": {
            "vocab": VOCAB,
            "history": HISTORY,
            "history_long": HISTORY_LONG,
            "block": BLOCK,
            "prime_calls": PRIME,
            "seed": seed,
            "budget": vars(budget),
            "quiet": vars(quiet_budget),
            "waited_for_quiet_s": waited,
            "families": fam_desc,
            "history_ids": "i.i.d. Zipf(1.1) over a shuffled vocabulary",
            "fastlogits_input": "NumPy float32 C-contiguous work buffer, processed in place",
            "transformers_input": "torch.from_numpy(work buffer), under torch.inference_mode()",
            "chain": [PROCESSORS[k][0] for k in CHAIN],
            "chain_draw_transformers": "torch.multinomial(torch.softmax(scores, -1), 1)",
            "chain_draw_fastlogits": "pipeline.sample(ids, scores, seed=seed, step=t)",
            "chain_tokens_draw_fastlogits": "pipeline.sample(ids, scores, seed=seed, step=t, write_scores=False)",
            "chain_fused_fastlogits": "fl.sample(hf.FusedLogitsProcessor(chain)(ids, scores), ...)",
            "chain_hf_fastlogits": "x = scores; for p in hf_chain: x = p(ids, x); fl.sample(x, ...)",
        },
        "cases": results,
        "floor": floors,
    }
    if _native_build()["sha256"] != machine["native_build"]["sha256"]:
        machine["native_build"]["replaced_during_run"] = True
        say("warning: the fastlogits extension file was rebuilt during the run (results: the old build)")
    out["targets"] = evaluate_targets(out)
    out["wall_s"] = time.perf_counter() - started
    return out


def _find(results: dict[str, Any], key: str, family: str, batch: int, history: int = HISTORY) -> Any:
    for r in results["cases"]:
        if (r["key"], r["family"], r["batch"], r["history"]) == (key, family, batch, history):
            return r
    return None


def evaluate_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The project's targets, each ``met`` True / False, or None when the case was not measured."""
    out = []
    for key, family, batch, goal in SPEEDUP_TARGETS:
        r = _find(results, key, family, batch)
        label = label_of(key)
        out.append(
            {
                "name": f"{label}, {family}, B={batch}: speedup >= {goal:g}x",
                "target": goal,
                "value": None if r is None else r["speedup"],
                "met": None if r is None else bool(r["speedup"] >= goal),
                "disturbed": None if r is None else bool(r.get("contended")),
            }
        )
    batches = sorted({r["batch"] for r in results["cases"] if r["key"] == "no_repeat"})
    for b in batches:
        short, long_ = (_find(results, "no_repeat", "typical", b, h) for h in (HISTORY, HISTORY_LONG))
        if short is None or long_ is None:
            continue
        fl_ratio = long_["fastlogits"]["median_us"] / short["fastlogits"]["median_us"]
        tf_ratio = long_["transformers"]["median_us"] / short["transformers"]["median_us"]
        out.append(
            {
                "name": (
                    f"no-repeat 3, B={b}: fastlogits cost per step at L={HISTORY_LONG} within "
                    f"{NO_REPEAT_TOLERANCE:g}x of L={HISTORY}"
                ),
                "target": NO_REPEAT_TOLERANCE,
                "value": fl_ratio,
                "transformers_ratio": tf_ratio,
                "fastlogits_us": [short["fastlogits"]["median_us"], long_["fastlogits"]["median_us"]],
                "transformers_us": [short["transformers"]["median_us"], long_["transformers"]["median_us"]],
                "met": bool(fl_ratio <= NO_REPEAT_TOLERANCE),
                "disturbed": bool(short.get("contended") or long_.get("contended")),
            }
        )
    return out


# --------------------------------------------------------------------------------------------------
# Reporting


def _us(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}"


def _x(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}"


def _sort_key(r: dict[str, Any]) -> tuple[int, int, int, int]:
    return (ORDER.index(r["key"]), r["history"], FAMILIES.index(r["family"]), r["batch"])


def to_markdown(results: dict[str, Any]) -> str:
    """The results as a Markdown report (header, table, history-length table, floor, targets)."""
    m, s = results["machine"], results["setup"]
    fam = ", ".join(
        f"{f} {d['entropy_nats']:.2f} nats ("
        + (f"Zipf s={d['exponent']:.2f}" if d["kind"] == "zipf" else f"N(0, {d['sigma']:.3f})")
        + ")"
        for f, d in s["families"].items()
    )
    lines = [
        f"# fastlogits vs transformers: logits processors, µs per decoding step ({results['mode']})",
        "",
        f"- {m['date']}; {m['cpu']}, {m['cpus_usable']} usable cores; torch threads {m['torch_threads']}, "
        f"fastlogits threads {m['fastlogits_threads']}",
        f"- Python {m['python']}, NumPy {m['numpy']}, torch {m['torch']}, transformers {m['transformers']}, "
        f"fastlogits {m['fastlogits']}"
        + (f" (git {m['git_commit']}" if m.get("git_commit") else " (")
        + f"; extension built {m['native_build']['mtime']}, sha256 {m['native_build']['sha256']}"
        + ("; its file was rebuilt during the run" if m["native_build"].get("replaced_during_run") else "")
        + ")",
        f"- V = {s['vocab']}, history L = {s['history']} (grows by one token per call, within "
        f"[L, L+{s['block']})); logits: {fam}",
        "- medians of per-call times, both implementations in the same run, interleaved block by block, "
        "fresh scores copied before every call (untimed); fastlogits on NumPy float32 in place, "
        "transformers on torch tensors under `inference_mode`",
        f"- chain + draw = {', '.join(s['chain'])}, then the draw (transformers: "
        f"`{s['chain_draw_transformers']}`; fastlogits: `{s['chain_draw_fastlogits']}`)",
        "- hf rows: the processors of `fastlogits.hf` return a new array and leave their input unchanged, "
        f"as transformers' do (fused: `{s.get('chain_fused_fastlogits', '')}`, one copy made inside the native "
        f"call; 5 hf processors: `{s.get('chain_hf_fastlogits', '')}`, a copy each)",
        "",
        "| processor | family | B | transformers µs | fastlogits µs | speedup × |",
        "|---|---|--:|--:|--:|--:|",
    ]
    for r in sorted(results["cases"], key=_sort_key):
        label = r["label"] + (f" (L={r['history']})" if r["history"] != s["history"] else "")
        label += " †" if r.get("contended") else ""
        lines.append(
            f"| {label} | {r['family']} | {r['batch']} | {_us(r['transformers']['median_us'])} | "
            f"{_us(r['fastlogits']['median_us'])} | {_x(r['speedup'])} |"
        )
    nr = sorted(
        (r for r in results["cases"] if r["key"] == "no_repeat" and r["family"] == "typical"),
        key=lambda r: (r["batch"], r["history"]),
    )
    if any(r["history"] != s["history"] for r in nr):
        lines += [
            "",
            "No-repeat 3-gram cost per step against the history length (typical family):",
            "",
            "| B | L | transformers µs | fastlogits µs | speedup × |",
            "|--:|--:|--:|--:|--:|",
        ]
        for r in nr:
            lines.append(
                f"| {r['batch']} | {r['history']}{' †' if r.get('contended') else ''} | "
                f"{_us(r['transformers']['median_us'])} | "
                f"{_us(r['fastlogits']['median_us'])} | {_x(r['speedup'])} |"
            )
    if results["floor"]:
        lines += ["", "Floor: one NumPy pass over the logits, `scores.max(axis=-1)`:", ""]
        lines += ["| B | numpy µs |", "|--:|--:|"]
        lines += [f"| {f['batch']} | {_us(f['numpy_max']['median_us'])} |" for f in results["floor"]]
    if results["targets"]:
        lines += ["", "Targets (ratios measured in the same run):", ""]
        for t in results["targets"]:
            if t["met"] is None:
                lines.append(f"- not measured: {t['name']}")
                continue
            status = "MET" if t["met"] else "NOT MET"
            if "transformers_ratio" in t:
                a, b = t["fastlogits_us"]
                c, d = t["transformers_us"]
                detail = (
                    f"fastlogits {_us(a)} → {_us(b)} µs ({t['value']:.2f}x); "
                    f"transformers {_us(c)} → {_us(d)} µs ({t['transformers_ratio']:.2f}x)"
                )
            else:
                detail = f"{_x(t['value'])}x"
            if t.get("disturbed"):
                detail += " († disturbed by other processes: not reliable)"
            lines.append(f"- **{status}** {t['name']}: {detail}")
    disturbed = [r for r in results["cases"] if r.get("contended")]
    if disturbed:
        q = s["quiet"]
        lines += [
            "",
            f"† {len(disturbed)} case(s) ran while other processes used more than {q['busy']:.0%} of the "
            "CPUs "
            f"(worst {max(r['background_cpu'] for r in disturbed):.0%}) even after {q['retries']} "
            "retries: torch's thread pool suffers far more than fastlogits from oversubscribed cores, so "
            "these speedups are inflated. Re-run on a quiet machine.",
        ]
    lines += [
        "",
        f"Total wall time {results['wall_s']:.0f} s (waited {s['waited_for_quiet_s']:.0f} s for quiet).",
    ]
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Bar chart of the speedups (log scale): one panel per family, groups of bars per processor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    cases = results["cases"]
    families = [f for f in FAMILIES if any(r["family"] == f for r in cases)]
    batches = sorted({r["batch"] for r in cases})
    fig, axes = plt.subplots(
        len(families), 1, figsize=(13, 3.6 * len(families)), squeeze=False, constrained_layout=True
    )
    colors = {1: "#4C72B0", 8: "#DD8452", 64: "#55A868"}
    width = 0.8 / max(1, len(batches))
    for ax, fam in zip(axes[:, 0], families):
        rows = sorted((r for r in cases if r["family"] == fam), key=_sort_key)
        groups: list[tuple[str, int]] = []
        for r in rows:
            g = (r["key"], r["history"])
            if g not in groups:
                groups.append(g)
        for bi, b in enumerate(batches):
            xs, ys, hatch = [], [], []
            for gi, g in enumerate(groups):
                r = next((r for r in rows if (r["key"], r["history"]) == g and r["batch"] == b), None)
                if r is not None:
                    xs.append(gi + (bi - (len(batches) - 1) / 2) * width)
                    ys.append(r["speedup"])
                    hatch.append("//" if r.get("contended") else "")
            bars = ax.bar(xs, ys, width, color=colors.get(b))
            for rect, y, h in zip(bars, ys, hatch):
                rect.set_hatch(h)
                ax.annotate(
                    f"{y:.0f}" if y >= 10 else f"{y:.1f}",
                    (rect.get_x() + rect.get_width() / 2, y),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                )
        names = []
        for key, hist in groups:
            name = label_of(key)
            names.append(name + (f"\nL={hist}" if hist != HISTORY else ""))
        ax.set_xticks(range(len(groups)), names, fontsize=8)
        ax.set_yscale("log")
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_ylabel("speedup × (log)")
        ent = results["setup"]["families"][fam]["entropy_nats"]
        ax.set_title(f"{fam} logits ({ent:.1f} nats): transformers median / fastlogits median", fontsize=10)
        handles = [Patch(color=colors.get(b), label=f"B={b}") for b in batches]
        if any(r.get("contended") for r in rows):
            handles.append(Patch(facecolor="white", edgecolor="black", hatch="//", label="disturbed"))
        ax.legend(handles=handles, fontsize=8, loc="upper right")
        ax.grid(axis="y", which="both", alpha=0.3)
    m = results["machine"]
    fig.suptitle(
        f"fastlogits {m['fastlogits']} vs transformers {m['transformers']} — {m['cpu']}, "
        f"{m['cpus_usable']} cores, V={results['setup']['vocab']}, L={results['setup']['history']}",
        fontsize=11,
    )
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_results(
    results: dict[str, Any], out_dir: str | os.PathLike[str], stem: str = "processors"
) -> dict[str, Path]:
    """Writes ``<stem>.json`` (every measurement), ``<stem>.md`` and ``<stem>.png`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / f"{stem}.json", "md": out / f"{stem}.md", "png": out / f"{stem}.png"}
    paths["json"].write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    paths["md"].write_text(to_markdown(results), encoding="utf-8")
    plot(results, paths["png"])
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="fastlogits bench", description="Logits processors: fastlogits vs transformers, µs per step."
    )
    parser.add_argument("--quick", action="store_true", help="a subset with fewer repetitions (~1 min)")
    parser.add_argument("--out", metavar="DIR", help="write processors.json / .md / .png into DIR")
    parser.add_argument(
        "--only",
        metavar="KEYS",
        help=f"comma-separated subset of: {', '.join([*ORDER, 'floor'])}",
    )
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    only = [k.strip() for k in args.only.split(",") if k.strip()] if args.only else None
    if only is not None:
        try:
            _check_only(only)
        except ValueError as e:
            parser.error(str(e))
    results = run_processor_bench(args.quick, only=only, seed=args.seed)
    print(to_markdown(results), end="")
    if args.out:
        paths = write_results(results, args.out)
        print(f"wrote {', '.join(str(p) for p in paths.values())}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
