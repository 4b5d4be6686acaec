"""End-to-end generation benchmark: ``fastlogits.generate`` against ``model.generate`` on GPT-2 124M.

The same model (GPT-2 small's shape, random weights, CPU), the same prompt and arguments, measured in the same
run with the implementations interleaved rep by rep; medians. A bare loop (transformers forward + KV cache +
argmax, nothing else) is the floor: what any driver pays for the model itself.

    python benches/bench_generate.py [--quick] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from typing import Any

__all__ = ["run_generate_bench", "to_markdown", "main", "CASES"]

NEW_TOKENS = 32
PROMPT_LEN = 16
CHAIN = dict(
    do_sample=True, repetition_penalty=1.2, no_repeat_ngram_size=3, temperature=0.8, top_k=50, top_p=0.95
)
# (name, batch, generate kwargs, target speed-up over model.generate or None)
CASES: list[tuple[str, int, dict[str, Any], float | None]] = [
    ("greedy", 1, {}, 1.10),
    ("greedy", 32, {}, None),
    ("chain sampling", 1, CHAIN, 1.2),
    ("chain sampling", 32, CHAIN, 2.0),
    ("top-p 0.95", 32, dict(do_sample=True, top_k=0, top_p=0.95), 2.2),
    ("beam 5", 1, dict(num_beams=5), 1.3),
]
QUICK = {("greedy", 1), ("chain sampling", 1), ("chain sampling", 32)}


def _bare_loop(model, ids, new_tokens: int) -> None:
    """Forward + DynamicCache + argmax: the floor."""
    import torch

    with torch.no_grad():
        out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
        cache = out.past_key_values
        for i in range(new_tokens):
            nxt = out.logits[:, -1].argmax(-1, keepdim=True)
            if i == new_tokens - 1:
                break
            out = model(input_ids=nxt, past_key_values=cache, use_cache=True, logits_to_keep=1)


def run_generate_bench(quick: bool = False, reps: int | None = None, log=print) -> dict[str, Any]:
    import fastlogits as fl
    import torch
    import transformers
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config()).eval()
    reps = reps or (3 if quick else 7)
    gen = torch.Generator().manual_seed(1)
    rows = []
    for name, batch, kwargs, target in CASES:
        if quick and (name, batch) not in QUICK:
            continue
        ids = torch.randint(0, 50257, (batch, PROMPT_LEN), generator=gen)
        mask = torch.ones_like(ids)
        common = dict(attention_mask=mask, max_new_tokens=NEW_TOKENS, pad_token_id=50256, **kwargs)
        impls = {
            "transformers": lambda ids=ids, common=common: model.generate(ids, **common),
            "fastlogits": lambda ids=ids, common=common: fl.generate(model, ids, seed=0, **common),
        }
        if not kwargs:
            impls["bare loop"] = lambda ids=ids: _bare_loop(model, ids, NEW_TOKENS)
        for f in impls.values():  # warm-up
            f()
        times: dict[str, list[float]] = {k: [] for k in impls}
        for _ in range(reps):
            for k, f in impls.items():
                t0 = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - t0)
        tokens = batch * NEW_TOKENS
        med = {k: statistics.median(v) for k, v in times.items()}
        row = {
            "case": name,
            "batch": batch,
            "kwargs": {k: v for k, v in kwargs.items()},
            "tok_per_s": {k: tokens / v for k, v in med.items()},
            "seconds": times,
            "speedup": med["transformers"] / med["fastlogits"],
            "target": target,
        }
        if "bare loop" in med:
            row["overhead_vs_bare"] = med["fastlogits"] / med["bare loop"] - 1.0
        rows.append(row)
        log(
            f"{name:>15} B={batch:<3} transformers {row['tok_per_s']['transformers']:7.1f} tok/s  "
            f"fastlogits {row['tok_per_s']['fastlogits']:7.1f} tok/s  x{row['speedup']:.2f}"
            + (f"  bare {row['tok_per_s']['bare loop']:.1f} tok/s" if "bare loop" in med else "")
        )
    return {
        "benchmark": "end-to-end generation, GPT-2 124M shape, random weights, CPU",
        "new_tokens": NEW_TOKENS,
        "prompt_len": PROMPT_LEN,
        "reps": reps,
        "quick": quick,
        "machine": {
            "cpu": _cpu_model(),
            "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "fastlogits_threads": fl.get_num_threads(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "fastlogits": fl.__version__,
        },
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "rows": rows,
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def to_markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"End-to-end generation: GPT-2 124M shape (random weights), CPU, {results['new_tokens']} new tokens, "
        f"prompt {results['prompt_len']} tokens, median of {results['reps']} interleaved runs.",
        f"{m['cpu']}, {m['cores']} cores; torch {m['torch']} ({m['torch_threads']} threads), "
        f"transformers {m['transformers']}, fastlogits {m['fastlogits']}; {results['date']}.",
        "",
        "| case | B | bare loop tok/s | model.generate tok/s | fastlogits tok/s | speed-up | target |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in results["rows"]:
        tps = r["tok_per_s"]
        bare = f"{tps['bare loop']:.1f}" if "bare loop" in tps else ""
        if r["target"] is None:
            target = ""
        else:
            target = f"≥ {r['target']}× {'met' if r['speedup'] >= r['target'] else 'NOT met'}"
        lines.append(
            f"| {r['case']} | {r['batch']} | {bare} | {tps['transformers']:.1f} | {tps['fastlogits']:.1f} | "
            f"{r['speedup']:.2f}× | {target} |"
        )
    over = [r for r in results["rows"] if "overhead_vs_bare" in r]
    if over:
        lines.append("")
        lines.append(
            "Driver overhead over the bare loop (target ≤ 3 %): "
            + ", ".join(f"B={r['batch']} {100 * r['overhead_vs_bare']:+.1f} %" for r in over)
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="benches/bench_generate.py", description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--reps", type=int)
    ap.add_argument("--out", metavar="DIR")
    args = ap.parse_args(argv)
    results = run_generate_bench(quick=args.quick, reps=args.reps)
    md = to_markdown(results)
    print(md)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "generate.json"), "w") as f:
            json.dump(results, f, indent=1)
        with open(os.path.join(args.out, "generate.md"), "w") as f:
            f.write(md + "\n")
        plot(results, os.path.join(args.out, "generate.png"))
    return 0


def plot(results: dict[str, Any], path: str) -> None:
    """Tokens per second per case: bare loop, model.generate, fastlogits.generate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["rows"]
    labels = [f"{r['case']}\nB={r['batch']}" for r in rows]
    impls = ["bare loop", "transformers", "fastlogits"]
    colors = {"bare loop": "#999999", "transformers": "#dd8452", "fastlogits": "#4c72b0"}
    fig, ax = plt.subplots(figsize=(1.6 * len(rows) + 2, 4))
    width = 0.27
    for k, impl in enumerate(impls):
        xs = [i + (k - 1) * width for i in range(len(rows))]
        ys = [r["tok_per_s"].get(impl, 0.0) for r in rows]
        ax.bar(xs, ys, width, label=impl, color=colors[impl])
    for i, r in enumerate(rows):
        ax.annotate(
            f"{r['speedup']:.2f}×",
            (i + width, r["tok_per_s"]["fastlogits"]),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.set_xticks(range(len(rows)), labels, fontsize=8)
    ax.set_ylabel("tokens / s")
    ax.set_yscale("log")
    ax.set_title("GPT-2 124M (random weights), CPU: fastlogits.generate vs model.generate")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
