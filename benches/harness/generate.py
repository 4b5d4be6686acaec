"""End-to-end generation benchmark on GPT-2 124M: ``model.generate``, ``fastlogits.generate``, a bare loop and
CTranslate2, float32 and bfloat16, against the weight-streaming floor.

GPT-2 small's shape with random weights (``torch.manual_seed(0)``), CPU, a 16-token prompt. Two copies of the
same weights: the float32 model and a bfloat16 one (``load_state_dict`` of the float32 weights, then
``.to(torch.bfloat16)``); transformers and fastlogits run on the same model in the same dtype. The bare loop
(transformers' forward + ``DynamicCache`` + argmax, greedy cases only) is what any driver of the transformers
model pays for the model and its cache. CTranslate2 (optional: ``requirements-bench.txt``; adapter in
``harness/ctranslate2.py``) runs the same float32 weights converted with its own converter, in float32 and int8
(int8 weights, float32 activations); its CPU backend has no bfloat16 compute type (4.8.5: the bf16 columns
appear only where ``get_supported_compute_types("cpu")`` lists one), so the bfloat16 rows compare fastlogits
with its float32 and int8 runs of the same case.

Each case runs every implementation once to warm up (a few tokens), then ``reps`` rounds, the order rotated
every round; medians of the tokens per second of each round, from the tokens actually produced (a
random-weight model may emit EOS, which ends a row for transformers and fastlogits). Peak RSS (each
implementation alone in a fresh process) unless ``--no-rss`` (and not in ``--quick``). The floor: the weight
bytes read per decoding step (every parameter once: GPT-2's LM head is the tied token embedding; the position
embedding, 0.6 % of the bytes, is counted whole though a step reads one row of it) ÷ the memory read
bandwidth measured in the run (``torch.ones(2**28).sum()``, torch's thread count, best of 5), i.e. the time
per token at B = 1 if the step only streamed its weights.

    python benches/bench_generate.py [--quick | --full] [--reps N] [--no-rss] [--out DIR]

Sets (each case in float32 and bfloat16): ``--quick`` greedy B=1 and the sampling chain B=32, 32 new tokens,
2 rounds, no RSS (about 2 minutes on 2 cores); the default adds beam 5 B=1 and greedy B=16 with 256 new tokens; ``--full`` is the matrix of the issue
(greedy / chain / beam 5, B in {1, 16, 32}, 32 and 256 new tokens: long).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

from . import ctranslate2 as ct2h
from .processors import _CpuMeter, _machine

__all__ = [
    "MODES",
    "TARGETS",
    "cases",
    "read_bandwidth",
    "run_generate_bench",
    "evaluate_targets",
    "to_markdown",
    "plot",
    "main",
]

PROMPT_LEN = 16
NEW_TOKENS = 32  # the short cases (all of --quick)
LONG_NEW_TOKENS = 256
WARMUP_TOKENS = 4
EOS = ct2h.EOS
CHAIN = dict(
    do_sample=True, repetition_penalty=1.2, no_repeat_ngram_size=3, temperature=0.8, top_k=50, top_p=0.95
)
#: the decoding modes, as ``generate`` kwargs (CTranslate2's arguments are translated from these)
MODES: dict[str, dict[str, Any]] = {"greedy": {}, "chain sampling": CHAIN, "beam 5": dict(num_beams=5)}
DTYPES = ("float32", "bfloat16")
SHORT = {"float32": "fp32", "bfloat16": "bf16"}
BATCHES = (1, 16, 32)
#: --quick: (mode, batch), NEW_TOKENS new tokens
QUICK = {("greedy", 1), ("chain sampling", 32)}
IMPLS = ("bare loop", "model.generate", "fastlogits")
#: (what, mode, batch, new tokens, numerator, denominator, bound): the ratio of the two tok/s (a "floor <dtype>"
#: numerator: the floor's tok/s at B = 1, i.e. "within X× of the floor", met when <= bound; else met when >=)
TARGETS: list[tuple[str, str, int, int, str, str, float]] = [
    (
        "fp32 fastlogits ÷ model.generate",
        "greedy",
        1,
        NEW_TOKENS,
        "fastlogits fp32",
        "model.generate fp32",
        1.10,
    ),
    (
        "fp32 fastlogits ÷ model.generate",
        "greedy",
        16,
        LONG_NEW_TOKENS,
        "fastlogits fp32",
        "model.generate fp32",
        1.30,
    ),
    (
        "fp32 fastlogits ÷ model.generate",
        "chain sampling",
        32,
        NEW_TOKENS,
        "fastlogits fp32",
        "model.generate fp32",
        2.0,
    ),
    (
        "fp32 fastlogits ÷ model.generate",
        "beam 5",
        1,
        NEW_TOKENS,
        "fastlogits fp32",
        "model.generate fp32",
        1.30,
    ),
    (
        "bf16 fastlogits ÷ model.generate",
        "greedy",
        1,
        NEW_TOKENS,
        "fastlogits bf16",
        "model.generate bf16",
        1.5,
    ),
    ("bf16 fastlogits ÷ CT2 fp32", "greedy", 1, NEW_TOKENS, "fastlogits bf16", "CT2 fp32", 1.5),
    ("bf16 fastlogits ÷ CT2 fp32", "chain sampling", 32, NEW_TOKENS, "fastlogits bf16", "CT2 fp32", 1.5),
    (
        "bf16 fastlogits step within X× of the floor",
        "greedy",
        1,
        NEW_TOKENS,
        "floor bf16",
        "fastlogits bf16",
        1.3,
    ),
]


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cases(level: str = "default") -> list[tuple[str, int, int]]:
    """(mode, batch, new tokens) of a set, "quick", "default" or "full"; each runs in float32 and bfloat16."""
    order = list(MODES)
    quick = sorted(((m, b, NEW_TOKENS) for m, b in QUICK), key=lambda c: (order.index(c[0]), c[1]))
    if level == "quick":
        return quick
    if level == "default":
        return [*quick, ("beam 5", 1, NEW_TOKENS), ("greedy", 16, LONG_NEW_TOKENS)]
    if level == "full":
        return [(m, b, n) for m in MODES for b in BATCHES for n in (NEW_TOKENS, LONG_NEW_TOKENS)]
    raise ValueError(f"level {level!r}: expected 'quick', 'default' or 'full'")


def read_bandwidth(n: int = 2**28, tries: int = 5) -> float:
    """Memory read bandwidth in bytes/s: ``torch.ones(n).sum()`` (float32, torch's threads), best of ``tries``."""
    import torch

    x = torch.ones(n)
    best = math.inf
    for _ in range(tries):
        t0 = time.perf_counter()
        x.sum()
        best = min(best, time.perf_counter() - t0)
    return n * x.element_size() / best


def _weight_bytes(model) -> int:
    """Bytes of the parameters (``parameters()`` lists a tied weight once)."""
    return sum(p.numel() * p.element_size() for p in model.parameters())


def _bare_loop(model, ids, new_tokens: int):
    """Forward + DynamicCache + argmax: the model's own cost. Returns the (B, new_tokens) new tokens."""
    import torch

    toks = []
    with torch.no_grad():
        out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
        cache = out.past_key_values
        for i in range(new_tokens):
            nxt = out.logits[:, -1].argmax(-1, keepdim=True)
            toks.append(nxt)
            if i == new_tokens - 1:
                break
            out = model(input_ids=nxt, past_key_values=cache, use_cache=True, logits_to_keep=1)
    return torch.cat(toks, 1)


class _Ct2:
    """The CTranslate2 side of a run: the float32 model saved for the converter and the RSS children, and a
    converted model and ``Generator`` per compute type (none when ``ctranslate2`` is missing)."""

    def __init__(self, model, threads: int, need_hf_dir: bool, notes: list[str]) -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="fastlogits-bench-")
        self.hf_dir = os.path.join(self.tmp.name, "hf")
        self.variants: dict[str, list[tuple[str, str]]] = {dt: [] for dt in DTYPES}
        self.dirs: dict[str, str] = {}
        self.generators: dict[str, ct2h.Generator] = {}
        self.conversion: dict[str, float] = {}
        self.skip = ct2h.available()
        if self.skip:
            notes.append(self.skip)
            _log(self.skip)
            if need_hf_dir:
                model.save_pretrained(self.hf_dir)
            return
        ct2h.save_hf(model, self.hf_dir)
        for dt in DTYPES:
            self.variants[dt], note = ct2h.compute_types_for(dt)
            if note:
                notes.append(note)
                _log(note)
            for _label, ct in self.variants[dt]:
                if ct in self.generators:
                    continue
                t0 = time.perf_counter()
                quant = "int8" if ct.startswith("int8") else ct  # weights stored in the type computed in
                path = os.path.join(self.tmp.name, f"ct2-{quant}")
                if not os.path.exists(path):
                    ct2h.convert(model, path, quant, hf_dir=self.hf_dir)
                self.dirs[ct] = path
                self.generators[ct] = ct2h.Generator(path, ct, threads=threads)
                self.conversion[ct] = time.perf_counter() - t0
                _log(f"converted to CTranslate2 {quant} ({self.conversion[ct]:.1f} s), compute type {ct}")

    def info(self, threads: int) -> dict[str, Any] | None:
        if self.skip:
            return None
        return {
            "version": ct2h.version(),
            "supported_compute_types_cpu": sorted(ct2h.supported_compute_types("cpu")),
            "selected_compute_types": {k: g.compute_type for k, g in self.generators.items()},
            "conversion_seconds": self.conversion,
            "intra_threads": threads,
        }


# (run(rep, new tokens) -> output, prompt length in the output, EOS ends a row, dtype or None)
_Impl = tuple[Callable[[int, int], Any], int, Any, Any]


def _implementations(models: dict[str, Any], ct2: _Ct2, mode: str, ids) -> dict[str, _Impl]:
    import fastlogits as fl
    import torch

    kw = MODES[mode]
    common = dict(attention_mask=torch.ones_like(ids), pad_token_id=EOS, **kw)
    impls: dict[str, _Impl] = {}
    for dt, m in models.items():
        s = SHORT[dt]

        def tf_run(rep, n, m=m):
            torch.manual_seed(rep)
            return m.generate(ids, max_new_tokens=n, **common)

        def fl_run(rep, n, m=m):
            return fl.generate(m, ids, seed=rep, max_new_tokens=n, **common)

        if not kw:
            impls[f"bare loop {s}"] = (lambda rep, n, m=m: _bare_loop(m, ids, n), 0, None, dt)
        impls[f"model.generate {s}"] = (tf_run, PROMPT_LEN, EOS, dt)
        impls[f"fastlogits {s}"] = (fl_run, PROMPT_LEN, EOS, dt)
    for dt in DTYPES:
        for label, ct in ct2.variants[dt]:
            g = ct2.generators[ct]
            impls[label] = (lambda rep, n, g=g: g.generate(ids, n, kw, seed=rep), 0, None, None)
    return impls


def _rss_specs(ct2: _Ct2, kw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    specs: dict[str, dict[str, Any]] = {}
    for dt in DTYPES:
        for name, impl in (("model.generate", "transformers"), ("fastlogits", "fastlogits")):
            specs[f"{name} {SHORT[dt]}"] = dict(impl=impl, hf_dir=ct2.hf_dir, dtype=dt, kwargs=kw)
        for label, ct in ct2.variants[dt]:
            specs[label] = dict(impl="ct2", ct2_dir=ct2.dirs[ct], compute_type=ct, kwargs=kw)
    return specs


def _run_case(impls: dict[str, _Impl], new: int, reps: int) -> dict[str, Any]:
    """Warm-up, then ``reps`` interleaved rounds (order rotated); per implementation its seconds, tokens
    produced and median tok/s, and row 0's new tokens of the first round."""
    errors: dict[str, str] = {}
    for k, (run, *_rest) in list(impls.items()):
        try:
            run(0, min(new, WARMUP_TOKENS))
        except Exception as e:  # one implementation failing (a CT2 mode, a dtype) does not stop the case
            errors[k] = f"{type(e).__name__}: {e}"
            _log(f"  {k}: {errors[k]}")
            del impls[k]
    seconds: dict[str, list[float]] = {k: [] for k in impls}
    tokens: dict[str, list[int]] = {k: [] for k in impls}
    row0: dict[str, list[int]] = {}
    order = list(impls)
    meter = _CpuMeter()
    for rep in range(reps if order else 0):
        for k in order[rep % len(order) :] + order[: rep % len(order)]:
            run, plen, eos, _dt = impls[k]
            t0 = time.perf_counter()
            out = run(rep, new)
            seconds[k].append(time.perf_counter() - t0)
            tokens[k].append(sum(ct2h.generated_counts(out, plen, eos)))
            if rep == 0:
                row0[k] = ct2h.id_lists(getattr(out, "sequences", out))[0][plen:]
    return {
        "impls": {
            k: {
                "dtype": impls[k][3],
                "seconds": seconds[k],
                "tokens": tokens[k],
                "tok_per_s": statistics.median(n / t for n, t in zip(tokens[k], seconds[k])),
            }
            for k in impls
        },
        "other_cpu": meter.others(),
        "errors": errors,
        "row0": row0,
    }


def run_generate_bench(
    level: str = "default", reps: int | None = None, rss: bool | None = None
) -> dict[str, Any]:
    """Runs the set ``level`` ("quick", "default", "full"); ``reps`` rounds per case (default 2 in quick, else
    5 for 32 new tokens and 3 for 256); ``rss`` (default: not in quick) adds the peak RSS of each
    implementation, measured alone in a fresh process."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    case_list = cases(level)
    rss = level != "quick" if rss is None else rss
    torch.manual_seed(0)
    m32 = GPT2LMHeadModel(GPT2Config()).eval()
    m16 = GPT2LMHeadModel(GPT2Config())
    m16.load_state_dict(m32.state_dict())
    m16.to(torch.bfloat16).eval()
    models = {"float32": m32, "bfloat16": m16}
    threads = torch.get_num_threads()
    machine = _machine()

    bandwidth = read_bandwidth()
    wbytes = {dt: _weight_bytes(m) for dt, m in models.items()}
    floor = {
        "bandwidth_gb_s": bandwidth / 1e9,
        "method": f"torch.ones(2**28).sum(), {threads} threads, best of 5",
        "weight_bytes": wbytes,
        "ms_per_token": {dt: 1e3 * b / bandwidth for dt, b in wbytes.items()},
        "tok_per_s": {dt: bandwidth / b for dt, b in wbytes.items()},
    }
    _log(
        f"read bandwidth {bandwidth / 1e9:.1f} GB/s; floor at B=1: "
        + ", ".join(f"{dt} {floor['ms_per_token'][dt]:.1f} ms/token" for dt in DTYPES)
    )

    notes: list[str] = []
    ct2 = _Ct2(m32, threads, rss, notes)
    gen = torch.Generator().manual_seed(1)
    rows = []
    for mode, batch, new in case_list:
        ids = torch.randint(0, m32.config.vocab_size, (batch, PROMPT_LEN), generator=gen)
        n_reps = reps or (2 if level == "quick" else 3 if new > NEW_TOKENS else 5)
        impls = _implementations(models, ct2, mode, ids)
        res = _run_case(impls, new, n_reps)
        row: dict[str, Any] = {
            "case": mode,
            "batch": batch,
            "new_tokens": new,
            "kwargs": MODES[mode],
            "reps": n_reps,
            "expected_tokens": batch * new,
            **{k: v for k, v in res.items() if k != "row0"},
        }
        if not MODES[mode]:  # greedy: row 0's tokens against model.generate of the same dtype (CT2: fp32)
            ref = {dt: res["row0"].get(f"model.generate {SHORT[dt]}") for dt in DTYPES}
            row["same_tokens_row0"] = {
                k: sum(a == b for a, b in zip(ref[res["impls"][k]["dtype"] or "float32"] or [], v))
                for k, v in res["row0"].items()
                if not k.startswith("model.generate")
            }
        if rss:
            spec_common = dict(ids=ids.tolist(), max_new_tokens=new, threads=threads)
            row["rss"] = {
                k: ct2h.measure_peak_rss({**spec_common, **spec})
                for k, spec in _rss_specs(ct2, MODES[mode]).items()
            }
        rows.append(row)
        tps = {k: v["tok_per_s"] for k, v in row["impls"].items()}
        _log(
            f"{mode} B={batch} n={new}: "
            + ", ".join(f"{k} {v:.1f}" for k, v in tps.items())
            + " tok/s"
            + (f" (others used {100 * row['other_cpu']:.0f} % CPU)" if row["other_cpu"] is not None else "")
        )
    ct2.tmp.cleanup()
    return {
        "benchmark": "end-to-end generation, GPT-2 124M shape, random weights, CPU: model.generate, "
        "fastlogits.generate, bare loop, CTranslate2; float32 and bfloat16",
        "level": level,
        "prompt_len": PROMPT_LEN,
        "dtypes": list(DTYPES),
        "machine": machine,
        "ctranslate2": ct2.info(threads),
        "ct2_variants": {dt: [label for label, _ in v] for dt, v in ct2.variants.items()},
        "floor": floor,
        "notes": notes,
        "rows": rows,
    }


# -------------------------------------------------------------------------------------------------- report


def _tps(results: dict[str, Any], mode: str, batch: int, new: int, label: str) -> float | None:
    if label.startswith("floor "):
        dt = next(d for d, s in SHORT.items() if s == label.split()[1])
        return results["floor"]["tok_per_s"][dt] if batch == 1 else None
    for r in results["rows"]:
        if (r["case"], r["batch"], r["new_tokens"]) == (mode, batch, new):
            v = r["impls"].get(label)
            return v["tok_per_s"] if v else None
    return None


def evaluate_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    fields = ("what", "case", "batch", "new_tokens", "numerator", "denominator", "bound")
    for target in TARGETS:
        _what, mode, batch, new, num, den, bound = target
        a, b = _tps(results, mode, batch, new, num), _tps(results, mode, batch, new, den)
        value = a / b if a and b else None
        within = num.startswith("floor ")
        met = None if value is None else (value <= bound if within else value >= bound)
        out.append({**dict(zip(fields, target)), "within": within, "value": value, "met": met})
    return out


def _ratio(tps: dict[str, float], a: str, b: str) -> str:
    return f"{tps[a] / tps[b]:.2f}×" if a in tps and b in tps else "–"


def to_markdown(results: dict[str, Any]) -> str:
    m, fl_, ct = results["machine"], results["floor"], results["ctranslate2"]
    reps = sorted({r["reps"] for r in results["rows"]})
    lines = [
        f"End-to-end generation ({results['level']} set): GPT-2 124M shape (random weights), CPU, prompt "
        f"{results['prompt_len']} tokens, "
        "float32 and a bfloat16 copy of the same weights (transformers and fastlogits on the same model); median "
        f"tok/s of {'/'.join(map(str, reps))} interleaved rounds (order rotated), from the tokens actually "
        "produced.",
        f"{m['cpu']}, {m['cpus_usable']} cores; torch {m['torch']} ({m['torch_threads']} threads), transformers "
        f"{m['transformers']}, fastlogits {m['fastlogits']} ({m['fastlogits_threads']} threads, git "
        f"{m.get('git_commit')})"
        + (
            f", CTranslate2 {ct['version']} (intra_threads {ct['intra_threads']}; compute types "
            + ", ".join(f"{k} → {v}" for k, v in ct["selected_compute_types"].items())
            + ")"
            if ct
            else ""
        )
        + f"; {m['date']}.",
        "",
        f"Weight-streaming floor at B=1: {fl_['weight_bytes']['float32'] / 1e6:.0f} MB of weights per token in fp32, "
        f"{fl_['weight_bytes']['bfloat16'] / 1e6:.0f} MB in bf16, ÷ {fl_['bandwidth_gb_s']:.1f} GB/s read "
        f"bandwidth ({fl_['method']}) = {fl_['ms_per_token']['float32']:.1f} ms/token "
        f"({fl_['tok_per_s']['float32']:.1f} tok/s) fp32, {fl_['ms_per_token']['bfloat16']:.1f} ms/token "
        f"({fl_['tok_per_s']['bfloat16']:.1f} tok/s) bf16.",
        "",
    ]
    ct_labels = [k for dt in results["dtypes"] for k in results["ct2_variants"][dt]]
    ct_ratios = [k for k in ("CT2 fp32", "CT2 int8") if k in ct_labels]
    head = ["case", "B", "new", "dtype", *(f"{k} tok/s" for k in (*IMPLS, *ct_labels))]
    head += ["fastlogits ÷ model.generate", *(f"fastlogits ÷ {k}" for k in ct_ratios)]
    head += ["B=1 floor tok/s (fastlogits within)", "other CPU"]
    lines += ["| " + " | ".join(head) + " |", "|---|---:|---:|---|" + "---:|" * (len(head) - 4)]
    footnotes: list[str] = []
    for r in results["rows"]:
        name = f"{r['case']} B={r['batch']} n={r['new_tokens']}"
        for dt in results["dtypes"]:
            s = SHORT[dt]
            tps = {k: v["tok_per_s"] for k, v in r["impls"].items()}
            short = {
                k: statistics.median(v["tokens"])
                for k, v in r["impls"].items()
                if v["dtype"] in (dt, None) and min(v["tokens"]) != r["expected_tokens"]
            }
            cells = [r["case"] + (" †" if short else ""), str(r["batch"]), str(r["new_tokens"]), s]
            cells += [f"{tps[f'{k} {s}']:.1f}" if f"{k} {s}" in tps else "–" for k in IMPLS]
            cells += [
                f"{tps[k]:.1f}" if k in tps and k in results["ct2_variants"][dt] else "–" for k in ct_labels
            ]
            cells.append(_ratio(tps, f"fastlogits {s}", f"model.generate {s}"))
            cells += [_ratio(tps, f"fastlogits {s}", k) for k in ct_ratios]
            if r["batch"] == 1 and f"fastlogits {s}" in tps:
                floor_tps = results["floor"]["tok_per_s"][dt]
                cells.append(f"{floor_tps:.1f} ({floor_tps / tps[f'fastlogits {s}']:.2f}×)")
            else:
                cells.append("")
            cells.append(f"{100 * r['other_cpu']:.0f} %" if r.get("other_cpu") is not None else "?")
            lines.append("| " + " | ".join(cells) + " |")
            if short:
                footnotes.append(
                    f"† {name} {s}: tokens produced per run "
                    + ", ".join(f"{k} {v:.0f}" for k, v in short.items())
                    + f" of {r['expected_tokens']} (EOS); tok/s use the actual counts."
                )
        for k, e in r["errors"].items():
            footnotes.append(f"{name}: {k} failed: {e}")
        if "same_tokens_row0" in r:
            footnotes.append(
                f"{name}: row 0's new tokens equal to model.generate's of the same dtype (CT2: fp32): "
                + ", ".join(f"{k} {v}/{r['new_tokens']}" for k, v in r["same_tokens_row0"].items())
            )
    if ct and not all(results["ct2_variants"][dt] for dt in results["dtypes"]):
        footnotes.append(
            "CTranslate2 has no bfloat16 compute type on this CPU: its columns are empty in the bf16 rows, whose "
            "fastlogits ÷ CT2 ratios compare fastlogits bf16 with CTranslate2's fp32 / int8 of the same case "
            "and run."
        )
    over = [
        f"{r['case']} B={r['batch']} n={r['new_tokens']} {SHORT[dt]} "
        f"{100 * (r['impls'][f'bare loop {SHORT[dt]}']['tok_per_s'] / r['impls'][f'fastlogits {SHORT[dt]}']['tok_per_s'] - 1):+.1f} %"
        for r in results["rows"]
        for dt in results["dtypes"]
        if f"bare loop {SHORT[dt]}" in r["impls"] and f"fastlogits {SHORT[dt]}" in r["impls"]
    ]
    if over:
        footnotes.append("fastlogits' time over the bare loop's (greedy): " + ", ".join(over))
    lines += ["", *footnotes, "", "Targets (issue 11, ratios of this run):", ""]
    for t in evaluate_targets(results):
        case = f"{t['case']} B={t['batch']} n={t['new_tokens']}"
        bound = f"{'≤' if t['within'] else '≥'} {t['bound']}×"
        if t["met"] is None:
            lines.append(f"* {t['what']}, {case}: {bound}: not measured in this run")
        else:
            lines.append(
                f"* {t['what']}, {case}: {t['value']:.2f}× ({bound}) {'met' if t['met'] else 'NOT met'}"
            )
    if any("rss" in r for r in results["rows"]):
        labels = [f"{k} {SHORT[dt]}" for dt in results["dtypes"] for k in IMPLS[1:]] + ct_labels
        lines += [
            "",
            "Peak RSS, MiB: each implementation alone in a fresh process (load the model, generate once): VmHWM "
            "over the whole process; in brackets, the RSS once the model is loaded → the peak while generating "
            "(VmHWM reset after loading), whose difference is the decoding loop's working memory.",
            "",
            "| case | B | new | " + " | ".join(labels) + " |",
            "|---|---:|---:|" + "---:|" * len(labels),
        ]
        for r in results["rows"]:
            rss = r.get("rss", {})
            cells = [r["case"], str(r["batch"]), str(r["new_tokens"])]
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
        lines += [
            f"RSS {r['case']} B={r['batch']} {k}: {v['error']}"
            for r in results["rows"]
            for k, v in r.get("rss", {}).items()
            if "error" in v
        ]
    if results["notes"]:
        lines += ["", *(f"* {n}" for n in results["notes"])]
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Tokens per second per case and dtype (log scale), the B = 1 floor as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [(r, dt) for r in results["rows"] for dt in results["dtypes"]]
    ct_labels = [k for dt in results["dtypes"] for k in results["ct2_variants"][dt]]
    impls = [*IMPLS, *ct_labels]
    colors = dict(zip(impls, ["#999999", "#dd8452", "#4c72b0", "#55a868", "#c44e52", "#8172b3", "#937860"]))
    fig, ax = plt.subplots(figsize=(1.5 * len(groups) + 2, 4.5))
    width = 0.8 / len(impls)
    for k, impl in enumerate(impls):
        xs, ys = [], []
        for i, (r, dt) in enumerate(groups):
            key = impl if impl in ct_labels else f"{impl} {SHORT[dt]}"
            if key in r["impls"] and (impl not in ct_labels or impl in results["ct2_variants"][dt]):
                xs.append(i + (k - (len(impls) - 1) / 2) * width)
                ys.append(r["impls"][key]["tok_per_s"])
        ax.bar(xs, ys, width, label=impl, color=colors[impl])
    for i, (r, dt) in enumerate(groups):
        s = SHORT[dt]
        if r["batch"] == 1:
            ax.hlines(
                results["floor"]["tok_per_s"][dt], i - 0.45, i + 0.45, colors="black", linestyles="dashed"
            )
        fl, tf = r["impls"].get(f"fastlogits {s}"), r["impls"].get(f"model.generate {s}")
        if fl and tf:
            ax.annotate(
                f"{fl['tok_per_s'] / tf['tok_per_s']:.2f}×",
                (i + (impls.index("fastlogits") - (len(impls) - 1) / 2) * width, fl["tok_per_s"]),
                ha="center",
                va="bottom",
                fontsize=8,
            )
    labels = [f"{r['case']}\nB={r['batch']} n={r['new_tokens']}\n{SHORT[dt]}" for r, dt in groups]
    ax.set_xticks(range(len(groups)), labels, fontsize=7)
    ax.set_ylabel("tokens / s")
    ax.set_yscale("log")
    ax.set_title(
        "GPT-2 124M (random weights), CPU; fastlogits ÷ model.generate annotated, dashed: B=1 weight-streaming floor",
        fontsize=9,
    )
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="benches/bench_generate.py", description=__doc__.split("\n\n")[0])
    level = ap.add_mutually_exclusive_group()
    level.add_argument(
        "--quick", action="store_true", help="greedy B=1 and chain B=32, 32 new tokens (~2 min)"
    )
    level.add_argument("--full", action="store_true", help="the whole matrix of the issue (long)")
    ap.add_argument(
        "--reps", type=int, help="rounds per case (default: 2 quick; else 5, 3 for 256 new tokens)"
    )
    ap.add_argument(
        "--no-rss", action="store_true", help="skip the peak-RSS subprocesses (never run in --quick)"
    )
    ap.add_argument("--out", metavar="DIR", help="write generate.json / .md / .png into DIR")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    results = run_generate_bench(
        "quick" if args.quick else "full" if args.full else "default",
        reps=args.reps,
        rss=False if args.no_rss else None,
    )
    results["wall_seconds"] = time.perf_counter() - t0
    md = to_markdown(results)
    print(md, end="")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "generate.json"), "w") as f:
            json.dump(results, f, indent=1)
        with open(os.path.join(args.out, "generate.md"), "w") as f:
            f.write(md)
        plot(results, os.path.join(args.out, "generate.png"))
        _log(f"wrote {args.out}/generate.json, .md, .png ({results['wall_seconds']:.0f} s)")
    return 0
