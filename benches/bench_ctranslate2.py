"""End-to-end generation against CTranslate2: ``model.generate`` vs ``fastlogits.generate`` vs CTranslate2.

GPT-2 124M's shape with random weights (``torch.manual_seed(0)``), CPU. CTranslate2 runs the same weights,
converted with its own converter, in float32 and int8 (int8 weights, float32 activations). The implementations
run in the same process, interleaved rep by rep (the order rotates each rep); medians; tokens per second from
the tokens each side actually produced. Peak RSS: each implementation alone in a fresh process (see
``benches/harness/ctranslate2.py``). CTranslate2 is optional: ``pip install -r requirements-bench.txt``
(without it its columns are skipped with a message).

    python benches/bench_ctranslate2.py [--reps N] [--full] [--no-rss] [--out DIR]

Default cases: greedy B=1, chain sampling B=32, beam 5 B=1, 32 new tokens, float32. ``--full``: the matrix of
the issue (greedy / chain sampling / beam 5, B in {1, 16, 32}, 32 and 256 new tokens, float32 and bfloat16):
long on a small machine (beam 5 at B=32 with 256 tokens is minutes per run).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness import ctranslate2 as ct2h  # noqa: E402

PROMPT_LEN = 16
QUICK_CASES: list[tuple[str, int, int, str]] = [
    ("greedy", 1, 32, "float32"),
    ("chain sampling", 32, 32, "float32"),
    ("beam 5", 1, 32, "float32"),
]


def full_cases() -> list[tuple[str, int, int, str]]:
    return [
        (mode, batch, new, dtype)
        for dtype in ("float32", "bfloat16")
        for mode in ct2h.MODES
        for batch in (1, 16, 32)
        for new in (32, 256)
    ]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git_commit() -> str | None:
    import subprocess

    try:
        p = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--exclude", "*"],
            cwd=HERE,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return p.stdout.strip() or None


def _cpu_meter():
    """Fraction of the CPUs used by other processes during a case (the processor benchmark's meter)."""
    try:
        from harness.processors import _CpuMeter

        return _CpuMeter()
    except Exception:
        return None


def run_ct2_bench(
    cases: list[tuple[str, int, int, str]], reps: int = 3, rss: bool = True, log=print
) -> dict[str, Any]:
    import torch
    import transformers
    from transformers import GPT2Config, GPT2LMHeadModel

    notes: list[str] = []
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config()).eval()
    threads = torch.get_num_threads()
    models = {"float32": model}

    try:
        import fastlogits as fl

        fl_version = fl.__version__
    except Exception as e:  # the extension not built, or mid-edit
        fl = None
        fl_version = None
        notes.append(f"fastlogits rows skipped: import failed ({type(e).__name__}: {e})")
        log(notes[-1])

    skip = ct2h.available()
    if skip:
        notes.append(skip)
        log(skip)

    tmp = tempfile.TemporaryDirectory(prefix="fastlogits-ct2-")
    hf_dir = os.path.join(tmp.name, "hf")
    ct2_dirs: dict[str, str] = {}  # compute type -> converted model
    generators: dict[str, ct2h.Generator] = {}
    conversion: dict[str, float] = {}
    variants: dict[str, list[tuple[str, str]]] = {}
    if not skip:
        ct2h.save_hf(model, hf_dir)
        for dtype in sorted({c[3] for c in cases}):
            vs, note = ct2h.compute_types_for(dtype)
            variants[dtype] = vs
            if note:
                notes.append(note)
                log(note)
            for _label, compute_type in vs:
                if compute_type in ct2_dirs:
                    continue
                t0 = time.perf_counter()
                # the weights stored in the type they are computed in ("int8_bfloat16" stores int8)
                quant = "int8" if compute_type.startswith("int8") else compute_type
                path = os.path.join(tmp.name, f"ct2-{quant}")
                if not os.path.exists(path):
                    ct2h.convert(model, path, quant, hf_dir=hf_dir)
                ct2_dirs[compute_type] = path
                generators[compute_type] = ct2h.Generator(path, compute_type, threads=threads)
                conversion[compute_type] = time.perf_counter() - t0
                log(
                    f"converted to CTranslate2 {quant} ({conversion[compute_type]:.1f} s), "
                    f"compute type {generators[compute_type].compute_type}"
                )
    elif rss:
        ct2h.save_hf(model, hf_dir)

    gen = torch.Generator().manual_seed(1)
    rows = []
    for mode, batch, new, dtype in cases:
        if dtype not in models:
            models[dtype] = copy.deepcopy(model).to(getattr(torch, dtype))
        m = models[dtype]
        ids = torch.randint(0, 50257, (batch, PROMPT_LEN), generator=gen)
        hf_kwargs = dict(
            attention_mask=torch.ones_like(ids),
            max_new_tokens=new,
            pad_token_id=ct2h.EOS,
            **ct2h.MODES[mode][0],
        )
        impls: dict[str, Any] = {}

        def tf_run(rep, m=m, ids=ids, kw=hf_kwargs):
            torch.manual_seed(rep)
            t0 = time.perf_counter()
            out = m.generate(ids, **kw)
            return time.perf_counter() - t0, out

        impls["model.generate"] = (tf_run, PROMPT_LEN)
        if fl is not None:

            def fl_run(rep, m=m, ids=ids, kw=hf_kwargs):
                t0 = time.perf_counter()
                out = fl.generate(m, ids, seed=rep, **kw)
                return time.perf_counter() - t0, out

            impls["fastlogits"] = (fl_run, PROMPT_LEN)
        for label, compute_type in variants.get(dtype, []):

            def ct_run(rep, g=generators[compute_type], ids=ids, new=new, mode=mode):
                t0 = time.perf_counter()
                out = ct2h.ct2_generate(g, ids, new, mode, seed=rep)
                return time.perf_counter() - t0, out

            impls[label] = (ct_run, 0)

        meter = _cpu_meter()
        times: dict[str, list[float]] = {k: [] for k in impls}
        tokens: dict[str, list[int]] = {k: [] for k in impls}
        errors: dict[str, str] = {}
        first: dict[str, list[int]] = {}
        for k, (f, plen) in list(impls.items()):  # warm-up (and the outputs of the sanity check)
            try:
                _, out = f(0)
            except Exception as e:
                errors[k] = f"{type(e).__name__}: {e}"
                log(f"  {k}: {errors[k]}")
                del impls[k], times[k], tokens[k]
                continue
            rows_ = ct2h.id_lists(getattr(out, "sequences", out))
            first[k] = rows_[0][plen:]
        order = list(impls)
        for rep in range(reps):
            rot = order[rep % len(order) :] + order[: rep % len(order)]
            for k in rot:
                f, plen = impls[k]
                dt, out = f(rep)
                times[k].append(dt)
                tokens[k].append(sum(ct2h.generated_counts(out, plen, eos=ct2h.EOS if plen else None)))
        others = meter.others() if meter is not None else None
        tps = {k: statistics.median(n / t for n, t in zip(tokens[k], times[k])) for k in impls}
        base = tps.get("model.generate")
        row: dict[str, Any] = {
            "case": mode,
            "batch": batch,
            "new_tokens": new,
            "dtype": dtype,
            "tok_per_s": tps,
            "vs_model_generate": {k: v / base for k, v in tps.items()} if base else {},
            "seconds": times,
            "tokens": tokens,
            "expected_tokens": batch * new,
            "other_cpu": others,
            "errors": errors,
        }
        if mode == "greedy" and "model.generate" in first:
            row["greedy_same_tokens_row0"] = {
                k: sum(a == b for a, b in zip(first["model.generate"], v))
                for k, v in first.items()
                if k != "model.generate"
            }
        if rss:
            row["rss"] = {}
            spec_common = dict(mode=mode, ids=ids.tolist(), max_new_tokens=new, threads=threads)
            specs: dict[str, dict[str, Any]] = {
                "model.generate": dict(impl="transformers", hf_dir=hf_dir, dtype=dtype),
            }
            if fl is not None:
                specs["fastlogits"] = dict(impl="fastlogits", hf_dir=hf_dir, dtype=dtype)
            for label, compute_type in variants.get(dtype, []):
                specs[label] = dict(impl="ct2", ct2_dir=ct2_dirs[compute_type], compute_type=compute_type)
            for k, spec in specs.items():
                row["rss"][k] = ct2h.measure_peak_rss({**spec_common, **spec})
        rows.append(row)
        log(
            f"{mode:>15} B={batch:<3} n={new:<4} {dtype:<8} "
            + "  ".join(f"{k} {v:8.1f} tok/s" for k, v in tps.items())
            + (f"  (others used {100 * others:.0f} % CPU)" if others is not None else "")
        )
    tmp.cleanup()

    ct2_info = None
    if not skip:
        ct2_info = {
            "version": ct2h.version(),
            "supported_compute_types_cpu": sorted(ct2h.supported_compute_types("cpu")),
            "selected_compute_types": {k: g.compute_type for k, g in generators.items()},
            "conversion_seconds": conversion,
            "intra_threads": threads,
        }
    return {
        "benchmark": "end-to-end generation vs CTranslate2, GPT-2 124M shape, random weights, CPU",
        "prompt_len": PROMPT_LEN,
        "reps": reps,
        "machine": {
            "cpu": _cpu_model(),
            "cores": os.cpu_count(),
            "torch_threads": threads,
            "fastlogits_threads": fl.get_num_threads() if fl is not None else None,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "fastlogits": fl_version,
            "git": _git_commit(),
        },
        "ctranslate2": ct2_info,
        "notes": notes,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "rows": rows,
    }


def to_markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    ct = results["ctranslate2"]
    lines = [
        "End-to-end generation vs CTranslate2: GPT-2 124M shape (random weights), CPU, prompt "
        f"{results['prompt_len']} tokens, median of {results['reps']} interleaved runs (order rotated per run).",
        f"{m['cpu']}, {m['cores']} cores; torch {m['torch']} ({m['torch_threads']} threads), transformers "
        f"{m['transformers']}, fastlogits {m['fastlogits']} ({m['fastlogits_threads']} threads, git {m.get('git')})"
        + (
            f", CTranslate2 {ct['version']} (intra_threads {ct['intra_threads']}; compute types "
            + ", ".join(f"{k} → {v}" for k, v in ct["selected_compute_types"].items())
            + ")"
            if ct
            else ""
        )
        + f"; {results['date']}.",
        "",
    ]
    labels: list[str] = []
    for r in results["rows"]:
        labels += [k for k in r["tok_per_s"] if k not in labels]
    others = [k for k in labels if k != "model.generate"]
    head = ["case", "B", "new", "dtype", *(f"{k} tok/s" for k in labels)]
    head += [f"{k} ÷ model.generate" for k in others]
    fl_vs_ct = "fastlogits" in labels and "CT2 fp32" in labels
    if fl_vs_ct:
        head.append("fastlogits ÷ CT2 fp32")
    head.append("other CPU")
    lines += ["| " + " | ".join(head) + " |", "|---|---:|---:|---|" + "---:|" * (len(head) - 4)]
    footnotes: list[str] = []
    for r in results["rows"]:
        tps = r["tok_per_s"]
        short = {
            k: v
            for k, v in ((k, sum(v)) for k, v in r["tokens"].items())
            if v != r["expected_tokens"] * len(r["tokens"][k])
        }
        cells = [r["case"] + (" †" if short else ""), str(r["batch"]), str(r["new_tokens"]), r["dtype"]]
        cells += [f"{tps[k]:.1f}" if k in tps else "–" for k in labels]
        cells += [f"{r['vs_model_generate'][k]:.2f}×" if k in r["vs_model_generate"] else "–" for k in others]
        if fl_vs_ct:
            cells.append(
                f"{tps['fastlogits'] / tps['CT2 fp32']:.2f}×"
                if "fastlogits" in tps and "CT2 fp32" in tps
                else "–"
            )
        cells.append(f"{100 * r['other_cpu']:.0f} %" if r.get("other_cpu") is not None else "?")
        lines.append("| " + " | ".join(cells) + " |")
        if short:
            footnotes.append(
                f"† {r['case']} B={r['batch']}: tokens produced per run "
                + ", ".join(f"{k} {statistics.median(v):.0f}" for k, v in r["tokens"].items())
                + f" of {r['expected_tokens']} (EOS); tok/s use the actual counts."
            )
        for k, e in r.get("errors", {}).items():
            footnotes.append(f"{r['case']} B={r['batch']} {r['dtype']}: {k} failed: {e}")
        if "greedy_same_tokens_row0" in r:
            footnotes.append(
                f"greedy B={r['batch']}: new tokens of row 0 equal to model.generate's: "
                + ", ".join(f"{k} {v}/{r['new_tokens']}" for k, v in r["greedy_same_tokens_row0"].items())
            )
    lines += [""] + footnotes
    if any("rss" in r for r in results["rows"]):
        lines += [
            "",
            "Peak RSS, MiB: each implementation alone in a fresh process (load the model, generate once): "
            "VmHWM over the whole process; in brackets, the RSS once the model is loaded → the peak while "
            "generating (VmHWM reset after loading), whose difference is the decoding loop's working memory.",
            "",
            "| case | B | new | dtype | " + " | ".join(labels) + " |",
            "|---|---:|---:|---|" + "---:|" * len(labels),
        ]
        for r in results["rows"]:
            rss = r.get("rss", {})
            cells = [r["case"], str(r["batch"]), str(r["new_tokens"]), r["dtype"]]
            for k in labels:
                v = rss.get(k)
                if v is None:
                    cells.append("–")
                elif "error" in v:
                    cells.append("error")
                else:
                    gen = v.get("generate_peak_rss_mib")
                    gen = f" → {gen:.0f}" if gen is not None else ""
                    cells.append(f"{v['peak_rss_mib']:.0f} ({v['rss_loaded_mib']:.0f}{gen})")
            lines.append("| " + " | ".join(cells) + " |")
        errs = [
            (r, k, v["error"]) for r in results["rows"] for k, v in r.get("rss", {}).items() if "error" in v
        ]
        for r, k, e in errs:
            lines.append(f"\nRSS {r['case']} B={r['batch']} {k}: {e}")
    if results["notes"]:
        lines += [""] + [f"* {n}" for n in results["notes"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="benches/bench_ctranslate2.py", description=__doc__)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--full", action="store_true", help="the full matrix of the issue (long)")
    ap.add_argument("--no-rss", action="store_true", help="skip the peak-RSS subprocesses")
    ap.add_argument("--out", metavar="DIR", help="write ctranslate2.md and ctranslate2.json there")
    args = ap.parse_args(argv)
    cases = full_cases() if args.full else QUICK_CASES
    results = run_ct2_bench(cases, reps=args.reps, rss=not args.no_rss)
    md = to_markdown(results)
    print(md)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "ctranslate2.json"), "w") as f:
            json.dump(results, f, indent=1)
        with open(os.path.join(args.out, "ctranslate2.md"), "w") as f:
            f.write(md + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
