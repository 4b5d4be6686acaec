"""Two builds of the native module, timed in the same process, interleaved: did a change move performance?

    .venv/bin/python benches/bench_ab.py --before /path/to/old/_native.abi3.so [--after NEW.so] [--reps 40]

``--before``: the ``_native`` extension of the build to compare against (for instance the one in a wheel of
an earlier commit: ``maturin build --release`` there, then unzip ``fastlogits/_native.abi3.so``).
``--after`` defaults to the one fastlogits imports. Both are loaded side by side; every case runs the same
inputs through both, alternating A/B/A/B, and reports the medians and the after/before ratio (< 1: faster).
Single timings on a shared machine vary by ±30 %; the ratio of interleaved medians is far steadier.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np

V, L = 50257, 256


def load(path: str, package: str) -> ModuleType:
    """The extension at `path` as `<package>._native` (its init function is found by the last component)."""
    spec = importlib.util.spec_from_file_location(f"{package}._native", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def logits(batch: int, seed: int = 0) -> np.ndarray:
    """GPT-2-like rows: `-1.5 ln(rank)`, ranks shuffled (about 3.2 nats)."""
    rng = np.random.default_rng(seed)
    base = (-1.5 * np.log(np.arange(1, V + 1))).astype(np.float32)
    return np.stack([rng.permutation(base) for _ in range(batch)])


def chains(n: ModuleType) -> dict[str, list]:
    P, neg = n.Processor, float("-inf")
    return {
        "temperature": [P.temperature(0.8)],
        "top_k 50": [P.top_k(50, neg, 1)],
        "top_p 0.95": [P.top_p(0.95, neg, 1)],
        "min_p 0.05": [P.min_p(0.05, neg, 1)],
        "typical 0.9": [P.typical(0.9, neg, 1)],
        "repetition 1.2": [P.repetition_penalty(1.2, 0)],
        "no-repeat 3": [P.no_repeat_ngram(3)],
        "chain": [
            P.repetition_penalty(1.2, 0),
            P.no_repeat_ngram(3),
            P.temperature(0.8),
            P.top_k(50, neg, 1),
            P.top_p(0.95, neg, 1),
        ],
    }


def cases(n: ModuleType, batch: int) -> dict[str, Callable[[], object]]:
    """Name -> a call on fresh-enough buffers (the scores are restored from a copy outside the timing
    would cost as much as the call: processors are timed on a buffer they keep rewriting, as in a loop)."""
    rng = np.random.default_rng(1)
    ids = rng.integers(0, V, size=(batch, L), dtype=np.int64)
    src = logits(batch)
    out: dict[str, Callable[[], object]] = {}
    for name, procs in chains(n).items():
        pipe = n.Pipeline(procs)
        dst = np.empty_like(src)
        if name == "chain":
            buf = src.copy()
            step = iter(range(10**9))
            out["chain + draw"] = lambda p=pipe, b=buf, s=step: (
                np.copyto(b, src),
                p.sample(ids, b, 0, next(s), True),
            )
            out["chain + draw, tokens only"] = lambda p=pipe, b=buf, s=step: (
                np.copyto(b, src),
                p.sample(ids, b, 0, next(s), False),
            )
        out[f"{name} (new tensor)"] = lambda p=pipe, d=dst: p.apply_into(ids, src, d)
    return out


def beam_case(n: ModuleType, batch: int, beams: int = 5) -> Callable[[], object]:
    lp = n.log_softmax(logits(batch * beams, 2))
    prompt = np.ones((batch * beams, 4), np.int64)

    def run() -> None:
        bs = n.BeamSearch(prompt, beams, 4 + 8, eos_token_id=[0])
        for _ in range(4):
            bs.step(lp)

    return run


def time_call(f: Callable[[], object], inner: int) -> float:
    t = time.perf_counter()
    for _ in range(inner):
        f()
    return (time.perf_counter() - t) / inner * 1e6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", required=True, help="the _native extension to compare against")
    ap.add_argument("--after", help="default: the one `import fastlogits` finds")
    ap.add_argument("--reps", type=int, default=30, help="A/B pairs per case (medians over them)")
    ap.add_argument("--batches", default="1,8,64")
    args = ap.parse_args(argv)
    if args.after is None:
        import fastlogits._native as after_mod

        after_path = after_mod.__file__
    else:
        after_path = args.after
    a, b = load(args.before, "ab_before"), load(str(after_path), "ab_after")
    a.set_num_threads(0)
    b.set_num_threads(0)
    print(f"before: {Path(args.before).resolve()}\nafter:  {Path(after_path).resolve()}")
    print(f"V={V}, L={L}, {args.reps} interleaved A/B repetitions per case; µs per call, medians\n")
    print("| case | B | before µs | after µs | after/before |\n|---|---:|---:|---:|---:|")
    ratios = []
    for batch in [int(x) for x in args.batches.split(",")]:
        ca, cb = cases(a, batch), cases(b, batch)
        ca["beam step (K=5, 4 steps)"] = beam_case(a, batch)
        cb["beam step (K=5, 4 steps)"] = beam_case(b, batch)
        for name in ca:
            fa, fb = ca[name], cb[name]
            fa(), fb()  # warm up (pools, scratch, history states)
            t0 = time.perf_counter()
            fa()
            once = time.perf_counter() - t0
            inner = max(1, int(0.01 / max(once, 1e-7)))
            ta, tb = [], []
            for _ in range(args.reps):
                ta.append(time_call(fa, inner))
                tb.append(time_call(fb, inner))
            ma, mb = statistics.median(ta), statistics.median(tb)
            ratios.append(mb / ma)
            print(f"| {name} | {batch} | {ma:,.1f} | {mb:,.1f} | {mb / ma:.3f} |", flush=True)
    gm = float(np.exp(np.mean(np.log(ratios))))
    print(f"\ngeometric mean of after/before over {len(ratios)} cases: {gm:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
