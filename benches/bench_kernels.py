"""torch's faster paths for the lean GPT-2 step, and what each gives up (issue 11's exploration).

The lean step (``fastlogits/transformers/_gpt2.py``) calls the ops transformers' GPT-2 calls, so its float32
logits are bit-identical to ``model.generate``'s. This script times one decoding step (median of many, the
variants interleaved in the same run) for faster paths torch offers, and measures how far each moves the
logits from the exact step:

* ``exact``: the lean step as ``fastlogits.generate`` runs it;
* ``lm-head K×N``: the LM head reads a transposed, contiguous copy of the tied embedding (``h @ W_kn``, MKL's
  fast GEMV layout, +V·C weights of memory) instead of ``F.linear(h, wte)`` (the layout transformers ties);
* ``torch.compile``: the lean step compiled by inductor (``dynamic=True``: one graph for every cache length);
  its compile time is reported.

GPT-2 124M shape, random weights, a 64-token prompt, B ∈ {1, 5} (greedy, beams), float32 and bfloat16.
Writes ``benches/results/kernels.md`` and ``.json``. ``--quick``: fewer steps, no torch.compile.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "python"))

from fastlogits.transformers._gpt2 import LeanGPT2  # noqa: E402

PROMPT = 64


def _variants(model: GPT2LMHeadModel, compile_: bool) -> dict:
    """name -> a function (B, capacity) -> a primed LeanGPT2-like object with .forward(ids, pos)."""
    w_kn = model.lm_head.weight.detach().t().contiguous()

    def exact(B, cap):
        return LeanGPT2(model, B, cap)

    def head_kn(B, cap):
        lean = LeanGPT2(model, B, cap)
        lean.lm_head = w_kn.t()  # F.linear(h, w_kn.t()) == h @ w_kn: the K×N GEMV layout
        return lean

    out = {"exact": exact, "lm-head K×N": head_kn}
    if compile_:

        def compiled(B, cap):
            lean = LeanGPT2(model, B, cap)
            lean.forward = torch.compile(lean.forward, dynamic=True)
            return lean

        out["torch.compile"] = compiled
    return out


def run(dtype: torch.dtype, batches: list[int], steps: int, rounds: int, compile_: bool) -> list[dict]:
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config()).eval().to(dtype)
    variants = _variants(model, compile_)
    rows = []
    for B in batches:
        gen = torch.Generator().manual_seed(B)
        prompt = torch.randint(0, model.config.vocab_size, (B, PROMPT), generator=gen)
        tokens = torch.randint(0, model.config.vocab_size, (B, steps), generator=gen)
        cap = PROMPT + steps
        times: dict[str, list[float]] = {k: [] for k in variants}
        diff: dict[str, float] = dict.fromkeys(variants, 0.0)
        argmax_same: dict[str, int] = dict.fromkeys(variants, 0)
        first_call: dict[str, float] = {}
        for r in range(rounds):  # interleaved: each round runs every variant over the same steps
            for name, make in variants.items():
                lean = make(B, cap)
                t0 = time.perf_counter()
                lean.forward(prompt, torch.arange(PROMPT).expand(B, -1))
                if r == 0:
                    first_call[name] = time.perf_counter() - t0
                ref = make_ref = None
                if name != "exact":
                    make_ref = LeanGPT2(model, B, cap)
                    make_ref.forward(prompt, torch.arange(PROMPT).expand(B, -1))
                for s in range(steps):
                    ids, pos = tokens[:, s : s + 1], torch.full((B, 1), PROMPT + s)
                    t0 = time.perf_counter()
                    logits = lean.forward(ids, pos)
                    times[name].append(time.perf_counter() - t0)
                    if make_ref is not None and r == 0:
                        ref = make_ref.forward(ids, pos)
                        diff[name] = max(diff[name], float((logits.float() - ref.float()).abs().max()))
                        argmax_same[name] += int((logits.argmax(-1) == ref.argmax(-1)).all())
                    elif r == 0:
                        argmax_same[name] += 1
        base = statistics.median(times["exact"])
        for name in variants:
            med = statistics.median(times[name])
            rows.append(
                {
                    "dtype": str(dtype).replace("torch.", ""),
                    "B": B,
                    "variant": name,
                    "ms_per_step": round(med * 1e3, 2),
                    "speedup_vs_exact": round(base / med, 3),
                    "max_abs_logit_diff": diff[name],
                    "steps_same_argmax": f"{argmax_same[name]}/{steps}",
                    "first_call_s": round(first_call[name], 2),
                }
            )
            print(rows[-1], flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=str(HERE / "results"))
    a = ap.parse_args(argv)
    steps, rounds = (8, 2) if a.quick else (24, 4)
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        rows += run(dtype, [1, 5], steps, rounds, compile_=not a.quick)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.processor()}
    (out / "kernels.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    lines = [
        "# The lean step with torch's faster paths (same run, interleaved medians)",
        "",
        f"torch {meta['torch']}, {meta['threads']} threads; GPT-2 124M shape, random weights, {PROMPT}-token "
        f"prompt, {steps} steps × {rounds} rounds. `diff`: max |logit − exact logit| over the steps. "
        "`first call`: the prompt's forward, for torch.compile its compilation, with inductor's on-disk cache of "
        "earlier runs (cold, 15–28 s were measured on this machine).",
        "",
        "| dtype | B | variant | ms / step | × exact | max diff | same argmax | first call (s) |",
        "|---|--:|---|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['dtype']} | {r['B']} | {r['variant']} | {r['ms_per_step']} | {r['speedup_vs_exact']} | "
            f"{r['max_abs_logit_diff']:.1e} | {r['steps_same_argmax']} | {r['first_call_s']} |"
        )
    (out / "kernels.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
