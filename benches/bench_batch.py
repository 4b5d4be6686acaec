"""The dataset job's overhead: `fastlogits.batch.generate_file` (JSON Lines in and out, per-example seeds,
a flush + fsync per batch) against in-memory `GPT2.generate` over the same prompts, batch size and seeds.

GPT-2 124M shape (random weights), sampling chain of the seed notebooks (top-k 25, top-p 0.95, temperature
0.7), 32 new tokens; B ∈ {1, 8, 32}. The two run alternately, `--reps` times; the best of each is kept.
Writes ``benches/results/batch.md`` / ``.json``. Target: the job ≥ 0.9× in-memory.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "python"))

from fastlogits import batch  # noqa: E402
from fastlogits.gpt2 import GPT2  # noqa: E402

WORDS = (
    "the history of science shows that many ideas which seemed obvious at first were later found to be wrong "
    "while others that looked strange turned out to describe the world remarkably well over the centuries"
).split()
GEN = dict(do_sample=True, top_k=25, top_p=0.95, temperature=0.7, max_new_tokens=32)


def prompts(n: int) -> list[str]:
    return [" ".join(WORDS[i % 7 : i % 7 + 4 + (i * 5) % 17]) for i in range(n)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", default=str(HERE / "results"))
    a = ap.parse_args(argv)
    lm = GPT2.load(None, random_weights=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for B, n in ((1, 8), (8, 32), (32, 64)):
            src = Path(tmp) / f"in{B}.jsonl"
            src.write_text(
                "".join(json.dumps({"id": i, "prompt": p}) + "\n" for i, p in enumerate(prompts(n)))
            )
            examples, _ = batch.read_examples(str(src))
            best = {"in-memory": float("inf"), "file job": float("inf")}
            tokens = 0
            for r in range(a.reps):
                t0 = time.perf_counter()
                for i in range(0, n, B):
                    chunk = examples[i : i + B]
                    lm.generate([e.text for e in chunk], seed=batch.example_keys(0, chunk), **GEN)
                best["in-memory"] = min(best["in-memory"], time.perf_counter() - t0)
                out = Path(tmp) / f"out{B}_{r}.jsonl"
                t0 = time.perf_counter()
                s = batch.generate_file(str(src), str(out), lm=lm, batch_size=B, seed=0, **GEN)
                best["file job"] = min(best["file job"], time.perf_counter() - t0)
                tokens = s.tokens
            row = {
                "B": B,
                "prompts": n,
                "tokens": tokens,
                "in_memory_tok_s": round(tokens / best["in-memory"], 1),
                "file_job_tok_s": round(tokens / best["file job"], 1),
                "ratio": round(best["in-memory"] / best["file job"], 3),
            }
            rows.append(row)
            print(row, flush=True)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "batch.json").write_text(json.dumps({"gen": GEN, "reps": a.reps, "rows": rows}, indent=1))
    lines = [
        "# Dataset job vs in-memory generation (same prompts, batch size, seeds; best of "
        f"{a.reps}, alternating)",
        "",
        "GPT-2 124M shape, random weights; top-k 25, top-p 0.95, temperature 0.7, 32 new tokens.",
        "",
        "| B | prompts | in-memory tok/s | file job tok/s | job / in-memory |",
        "|--:|--:|--:|--:|--:|",
    ]
    lines += [
        f"| {r['B']} | {r['prompts']} | {r['in_memory_tok_s']} | {r['file_job_tok_s']} | {r['ratio']} |"
        for r in rows
    ]
    (out / "batch.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
