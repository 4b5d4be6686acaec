"""Concurrency soak (`make soak`; not part of `make test`): N threads call fastlogits at once for a set
time, and every result is compared, bit for bit (NaN-aware: the bytes), with the result of the same call
made single-threaded beforehand.

    .venv/bin/python tests/stress/soak.py --seconds 60 --threads 8 [--report soak.json]

Workloads (each thread cycles through all of them, picking inputs at random):

shared-stateless-pipeline   one LogitsPipeline of stateless warpers (temperature, top-k, top-p, min-p,
                            typical, epsilon) shared by all threads
shared-hf-top-p             one fastlogits.hf.TopPLogitsWarper shared by all threads (torch tensors)
per-thread-stateful         a repetition-penalty + no-repeat-ngram pipeline per thread, decoding
                            sequences of growing histories (the incremental state path)
shared-stateful             the same pipeline shared by all threads: interleaved histories must
                            rebuild the state and give the single-threaded result
shared-pipeline-sample      LogitsPipeline.sample on the shared stateless pipeline, fixed seeds
                            (tokens and processed scores)
shared-stateful-sample      LogitsPipeline.sample on a shared stateful pipeline (from_generation_config)
fastlogits-sample           fastlogits.sample / log_softmax / top_logprobs with fixed seeds

Reports calls, errors (by type and message) and mismatches; exit status 1 if any. A call that never
returns is reported as a hang (exit status 2) after --grace seconds.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import random
import re
import sys
import threading
import time
import traceback
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import fastlogits as fl  # noqa: E402
import strategies as S  # noqa: E402

B, V, L0, T, K = 8, 2000, 24, 6, 12  # batch, vocabulary, prompt length, steps per sequence, inputs


def _normalize(msg: str) -> str:
    return re.sub(r"[-+]?\d+(\.\d*)?([eE][-+]?\d+)?", "N", msg.split("\n")[0])[:200]


class Inputs:
    """K prompts of L0 + T tokens and K x T score arrays (deterministic)."""

    def __init__(self, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.hist = [S.histories(rng, B, L0 + T, V, repeat_vocab=12) for _ in range(K)]
        self.scores = [[S.realistic_scores(rng, B, V) for _ in range(T)] for _ in range(K)]

    def ids(self, k: int, t: int) -> np.ndarray:
        return np.ascontiguousarray(self.hist[k][:, : L0 + t])


def stateless_pipeline() -> fl.LogitsPipeline:
    return fl.LogitsPipeline(
        [
            fl.TemperatureLogitsWarper(0.7),
            fl.TopKLogitsWarper(200),
            fl.TopPLogitsWarper(0.9),
            fl.MinPLogitsWarper(0.02),
            fl.TypicalLogitsWarper(0.95),
            fl.EpsilonLogitsWarper(3e-5),
        ]
    )


def stateful_pipeline() -> fl.LogitsPipeline:
    return fl.LogitsPipeline([fl.RepetitionPenaltyLogitsProcessor(1.3), fl.NoRepeatNGramLogitsProcessor(3)])


def stateful_sampling_pipeline() -> fl.LogitsPipeline:
    return fl.LogitsPipeline.from_generation_config(
        do_sample=True, temperature=0.8, top_k=100, top_p=0.95, repetition_penalty=1.2, no_repeat_ngram_size=2
    )


class Workloads:
    """name -> run(k) -> list of arrays. The shared objects are built once; `per-thread-stateful` builds
    one pipeline per thread (thread-local)."""

    def __init__(self, inp: Inputs):
        import fastlogits.hf
        import torch

        self.inp = inp
        self.torch = torch
        self.shared = stateless_pipeline()
        self.shared_stateful = stateful_pipeline()
        self.shared_sampling = stateful_sampling_pipeline()
        self.hf_top_p = fastlogits.hf.TopPLogitsWarper(0.9)
        self.local = threading.local()
        self.table = {
            "shared-stateless-pipeline": self.shared_stateless,
            "shared-hf-top-p": self.shared_hf,
            "per-thread-stateful": self.per_thread_stateful,
            "shared-stateful": self.shared_stateful_run,
            "shared-pipeline-sample": self.shared_sample,
            "shared-stateful-sample": self.shared_stateful_sample,
            "fastlogits-sample": self.sampling,
        }

    def shared_stateless(self, k: int) -> list[np.ndarray]:
        return [self.shared(self.inp.ids(k, T), self.inp.scores[k][0].copy())]

    def shared_hf(self, k: int) -> list[np.ndarray]:
        t = self.torch
        out = self.hf_top_p(t.from_numpy(self.inp.ids(k, T)), t.from_numpy(self.inp.scores[k][1].copy()))
        return [out.numpy()]

    def _sequence(self, pipe: fl.LogitsPipeline, k: int) -> list[np.ndarray]:
        return [pipe(self.inp.ids(k, t), self.inp.scores[k][t].copy()) for t in range(T)]

    def per_thread_stateful(self, k: int) -> list[np.ndarray]:
        pipe = getattr(self.local, "pipe", None)
        if pipe is None:
            pipe = self.local.pipe = stateful_pipeline()
        return self._sequence(pipe, k)

    def shared_stateful_run(self, k: int) -> list[np.ndarray]:
        return self._sequence(self.shared_stateful, k)

    def shared_sample(self, k: int) -> list[np.ndarray]:
        s = self.inp.scores[k][2].copy()
        tokens = self.shared.sample(self.inp.ids(k, T), s, seed=1000 + k, step=k)
        return [tokens, s]

    def shared_stateful_sample(self, k: int) -> list[np.ndarray]:
        out = []
        for t in range(T):
            s = self.inp.scores[k][t].copy()
            out += [self.shared_sampling.sample(self.inp.ids(k, t), s, seed=7 + k, step=t), s]
        return out

    def sampling(self, k: int) -> list[np.ndarray]:
        s = self.inp.scores[k][3]
        values, ids = fl.top_logprobs(s, 5)
        return [fl.sample(s, seed=k, step=3), fl.log_softmax(s), values, ids]


def same(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit-identical (NaN payloads and signed zeros included)."""
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def describe(a: np.ndarray, b: np.ndarray) -> str:
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype or a.shape != b.shape:
        return f"got {a.dtype}{a.shape}, expected {b.dtype}{b.shape}"
    x, y = a.reshape(-1), b.reshape(-1)
    neq = np.flatnonzero(~((x == y) | (np.isnan(x) & np.isnan(y))) if a.dtype.kind == "f" else x != y)
    if not len(neq):
        return "same values, different bits (signed zero / NaN payload)"
    i = int(neq[0])
    return f"{len(neq)} of {a.size} elements differ; first at flat index {i}: got {x[i]!r}, expected {y[i]!r}"


class Soak:
    def __init__(self, workloads: Workloads, reference: dict):
        self.w = workloads
        self.ref = reference
        self.lock = threading.Lock()
        self.calls: Counter = Counter()
        self.errors: Counter = Counter()
        self.error_examples: dict[tuple, str] = {}
        self.mismatches: Counter = Counter()
        self.mismatch_examples: dict[str, str] = {}

    def thread(self, tid: int, start: threading.Barrier, deadline: float) -> None:
        rng = random.Random(tid)
        names = list(self.w.table)
        start.wait()
        n = tid
        while time.monotonic() < deadline:
            name = names[n % len(names)]
            n += 1
            k = rng.randrange(K)
            try:
                got = self.w.table[name](k)
            except BaseException as e:  # noqa: BLE001  (PanicException included)
                key = (name, f"{type(e).__module__}.{type(e).__qualname__}", _normalize(str(e)))
                with self.lock:
                    self.calls[name] += 1
                    self.errors[key] += 1
                    self.error_examples.setdefault(
                        key, f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=-3)}"
                    )
                continue
            expected = self.ref[name, k]
            bad = [j for j, (a, b) in enumerate(zip(got, expected)) if not same(a, b)]
            with self.lock:
                self.calls[name] += 1
                if bad or len(got) != len(expected):
                    self.mismatches[name] += 1
                    if bad:
                        j = bad[0]
                        self.mismatch_examples.setdefault(
                            name, f"input {k}, output {j}: {describe(got[j], expected[j])}"
                        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", 60)))
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument(
        "--grace", type=float, default=60.0, help="seconds past the end before threads count as hung"
    )
    ap.add_argument("--report", help="write the JSON summary here")
    args = ap.parse_args(argv)
    faulthandler.enable()

    inp = Inputs()
    # Single-threaded references: every workload on every input, each on fresh objects (the from-scratch
    # semantics), then once more on the shared objects (single-threaded reuse must agree too).
    ref_w = Workloads(inp)
    reference = {(name, k): fn(k) for name, fn in ref_w.table.items() for k in range(K)}
    w = Workloads(inp)
    pre_mismatch = []
    for name, fn in w.table.items():
        for k in range(K):
            got = fn(k)
            if not all(same(a, b) for a, b in zip(got, reference[name, k])):
                pre_mismatch.append(f"{name} input {k}")

    soak = Soak(w, reference)
    start = threading.Barrier(args.threads)
    t0 = time.monotonic()
    deadline = t0 + args.seconds
    threads = [
        threading.Thread(target=soak.thread, args=(i, start, deadline), daemon=True, name=f"soak-{i}")
        for i in range(args.threads)
    ]
    print(
        f"soak: {args.threads} threads x {len(w.table)} workloads for {args.seconds:.0f} s "
        f"(fastlogits pool: {fl.get_num_threads()} threads) ...",
        flush=True,
    )
    for t in threads:
        t.start()
    hung = []
    for t in threads:
        t.join(max(0.0, deadline + args.grace - time.monotonic()))
        if t.is_alive():
            hung.append(t.name)
    elapsed = time.monotonic() - t0
    with soak.lock:
        rep = {
            "seconds": round(elapsed, 1),
            "threads": args.threads,
            "calls": dict(soak.calls),
            "total_calls": sum(soak.calls.values()),
            "errors": [
                {
                    "workload": k[0],
                    "type": k[1],
                    "message": k[2],
                    "count": n,
                    "example": soak.error_examples[k],
                }
                for k, n in soak.errors.most_common()
            ],
            "mismatches": [
                {"workload": k, "count": n, "example": soak.mismatch_examples.get(k, "")}
                for k, n in soak.mismatches.most_common()
            ],
            "single_threaded_reuse_mismatches": pre_mismatch,
            "hung_threads": hung,
        }
    print("=" * 100)
    print(f"soak: {rep['total_calls']} calls in {rep['seconds']} s with {args.threads} threads")
    for name in w.table:
        errs = sum(n for k, n in soak.errors.items() if k[0] == name)
        print(
            f"  {name:28s} calls {soak.calls[name]:7d}  errors {errs:7d}  mismatches {soak.mismatches[name]:7d}"
        )
    if pre_mismatch:
        print(f"single-threaded reuse differs from fresh objects: {pre_mismatch}")
    for e in rep["errors"]:
        print("-" * 100)
        print(f"ERROR x{e['count']} in {e['workload']}: {e['type']}: {e['message']}")
        print("\n".join("    " + line for line in e["example"].strip().split("\n")[-6:]))
    for m in rep["mismatches"]:
        print("-" * 100)
        print(f"MISMATCH x{m['count']} in {m['workload']}: {m['example']}")
    if hung:
        print(f"HUNG threads (still running {args.grace:.0f} s after the end): {hung}")
        faulthandler.dump_traceback(all_threads=True)
    print("=" * 100)
    if args.report:
        Path(args.report).write_text(json.dumps(rep, indent=2))
        print(f"report: {args.report}")
    if hung:
        sys.stdout.flush()
        os._exit(2)  # hung threads cannot be joined
    return 1 if rep["errors"] or rep["mismatches"] or pre_mismatch else 0


if __name__ == "__main__":
    sys.exit(main())
