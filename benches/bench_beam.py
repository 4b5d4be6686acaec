"""Beam search bookkeeping per decoding step: fastlogits.BeamSearch.step vs transformers 5.23.

What is timed is what ``GenerationMixin._beam_search`` does between ``log_softmax + processors`` and
the next forward pass: adding the beam scores, ``_get_top_k_continuations``, the stopping criteria
(max length + EOS), ``_get_running_beams_for_next_iteration``, ``_update_finished_beams``, the cache
reorder indices, ``_check_early_stop_heuristic`` and ``_beam_search_has_unfinished_sequences`` (whose
result Python reads, as the ``while`` loop does). transformers' side calls those helper methods directly
on realistic tensors; the model forward, the log-softmax, the processors and the KV-cache reordering are
left out of both sides.

    .venv/bin/python benches/bench_beam.py [--reps 200] [--quick]

Prints a markdown table and writes benches/results/beam.md and benches/results/beam.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import fastlogits as fl  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from fastlogits import _native  # noqa: E402
from transformers import GPT2Config, GPT2LMHeadModel  # noqa: E402
from transformers.generation.stopping_criteria import (  # noqa: E402
    EosTokenCriteria,
    MaxLengthCriteria,
    StoppingCriteriaList,
)

transformers.logging.set_verbosity_error()

V = 50257
K = 5
PROMPT = 32
MAX_NEW = 128
CUR_GEN = 48  # generated tokens so far when the step is timed
EOS = [50256]


def log_probs(rows: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # GPT-2-like: a few plausible tokens, a long flat tail.
    logits = torch.randn(rows, V, generator=g) * 2.5
    return torch.log_softmax(logits, dim=-1)


def median_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


# ----------------------------------------------------------------------------------------------
# transformers


class HFBookkeeping:
    """One iteration of `_beam_search`'s loop body after the processors, on fixed state tensors."""

    def __init__(self, B: int, do_sample: bool):
        self.m = GPT2LMHeadModel(
            GPT2Config(vocab_size=8, n_positions=8, n_embd=8, n_layer=1, n_head=1)
        ).eval()
        self.B, self.do_sample = B, do_sample
        self.max_length = PROMPT + MAX_NEW
        self.cur_len = PROMPT + CUR_GEN
        self.keep = max(2, 1 + len(EOS)) * K
        g = torch.Generator().manual_seed(B)
        self.running_sequences = torch.randint(0, V, (B, K, self.max_length), generator=g)
        self.sequences = self.running_sequences.clone()
        self.running_beam_scores = -torch.rand(B, K, generator=g) * 20 - 40
        self.beam_scores = torch.full((B, K), -1.0e9)
        self.beam_scores[:, :2] = -2.0
        self.is_sent_finished = torch.zeros(B, K, dtype=torch.bool)
        self.is_sent_finished[:, :2] = True
        self.unsat = torch.ones(B, 1, dtype=torch.bool)
        self.running_beam_indices = torch.randint(0, B * K, (B, K, MAX_NEW), dtype=torch.int32, generator=g)
        self.beam_indices = self.running_beam_indices.clone()
        self.top_num_beam_mask = torch.cat(
            (torch.ones(K, dtype=torch.bool), torch.zeros(self.keep - K, dtype=torch.bool))
        )
        eos = torch.tensor(EOS)
        self.criteria = StoppingCriteriaList([MaxLengthCriteria(self.max_length), EosTokenCriteria(eos)])

    def step(self, lp: torch.Tensor) -> bool:
        m, B, cur_len, plen = self.m, self.B, self.cur_len, PROMPT
        log_probs = m._unflatten_beam_dim(lp, B, K)
        log_probs = log_probs + self.running_beam_scores[:, :, None]
        log_probs = torch.reshape(log_probs, (B, -1))
        topk_log_probs, topk_running_sequences, topk_running_beam_indices = m._get_top_k_continuations(
            accumulated_log_probs=log_probs,
            running_sequences=self.running_sequences,
            running_beam_indices=self.running_beam_indices,
            cur_len=cur_len,
            decoder_prompt_len=plen,
            do_sample=self.do_sample,
            beams_to_keep=self.keep,
            num_beams=K,
            batch_size=B,
        )
        hits = self.criteria(m._flatten_beam_dim(topk_running_sequences[:, :, : cur_len + 1]), None)
        hits = m._unflatten_beam_dim(hits, B, self.keep)
        running_sequences, running_beam_scores, running_beam_indices = (
            m._get_running_beams_for_next_iteration(
                topk_log_probs=topk_log_probs,
                topk_running_sequences=topk_running_sequences,
                topk_running_beam_indices=topk_running_beam_indices,
                next_token_hits_stopping_criteria=hits,
                num_beams=K,
            )
        )
        sequences, beam_scores, beam_indices, is_sent_finished = m._update_finished_beams(
            sequences=self.sequences,
            topk_running_sequences=topk_running_sequences,
            beam_scores=self.beam_scores,
            topk_log_probs=topk_log_probs,
            beam_indices=self.beam_indices,
            topk_running_beam_indices=topk_running_beam_indices,
            is_early_stop_heuristic_unsatisfied=self.unsat,
            is_sent_finished=self.is_sent_finished,
            next_token_hits_stopping_criteria=hits,
            top_num_beam_mask=self.top_num_beam_mask,
            num_beams=K,
            cur_len=cur_len,
            decoder_prompt_len=plen,
            length_penalty=1.0,
            early_stopping=False,
        )
        beam_idx = m._flatten_beam_dim(running_beam_indices[..., cur_len - plen])  # noqa: F841 (the cache reorder's input)
        unsat = m._check_early_stop_heuristic(
            is_early_stop_heuristic_unsatisfied=self.unsat,
            running_beam_scores=running_beam_scores,
            beam_scores=beam_scores,
            is_sent_finished=is_sent_finished,
            cur_len=cur_len + 1,
            max_length=self.max_length,
            decoder_prompt_len=plen,
            early_stopping=False,
            length_penalty=1.0,
        )
        return not m._beam_search_has_unfinished_sequences(unsat, is_sent_finished, hits, False)


# ----------------------------------------------------------------------------------------------
# fastlogits


def new_search(B: int, do_sample: bool, warm: list[torch.Tensor], native: bool):
    prompt = np.random.default_rng(B).integers(0, V, (B, PROMPT))
    if native:
        bs = _native.BeamSearch(
            np.repeat(prompt, K, axis=0).astype(np.int64), K, PROMPT + 100_000,
            eos_token_id=EOS, do_sample=do_sample, seed=1,
        )  # fmt: skip
    else:
        bs = fl.BeamSearch(prompt, K, max_new_tokens=100_000, eos_token_id=EOS, do_sample=do_sample, seed=1)
    for i in range(CUR_GEN):  # reach a realistic cur_len
        bs.step(warm[i % len(warm)])
    return bs


def time_all(B: int, do_sample: bool, reps: int) -> tuple[list[float], list[float], list[float]]:
    """Per-step times of transformers, fastlogits.BeamSearch and the native class, each measured in its
    own block after a warm-up. (Measuring them in turns is unfair on a small machine: torch's OpenMP
    workers keep spinning for a while after each torch call and take the cores fastlogits' pool needs.)"""
    tin = [log_probs(B * K, s) for s in range(4)]
    nin = [t.numpy() for t in tin]
    times: tuple[list[float], list[float], list[float]] = ([], [], [])
    hf = HFBookkeeping(B, do_sample)
    with torch.no_grad():
        for i in range(30):  # warm-up: torch's first calls (allocator, thread pool) are much slower
            hf.step(tin[i % len(tin)])
        for i in range(reps):
            t0 = time.perf_counter()
            hf.step(tin[i % len(tin)])
            times[0].append(time.perf_counter() - t0)
    time.sleep(0.5)  # let torch's worker threads go to sleep
    for j, native in enumerate((False, True)):
        bs = new_search(B, do_sample, nin, native)
        for i in range(reps):
            x = nin[i % len(nin)]
            t0 = time.perf_counter()
            done = bs.step(x)[2]
            times[j + 1].append(time.perf_counter() - t0)
            if done:  # (does not happen with these inputs; keep the search alive if it does)
                bs = new_search(B, do_sample, nin, native)
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--quick", action="store_true", help="20 repetitions")
    args = ap.parse_args()
    reps = 20 if args.quick else args.reps

    rows = []
    for do_sample in (False, True):
        for B in (1, 8):
            # Two rounds, the lower median of each: less sensitive to other processes on the machine.
            rounds = [[median_us(t) for t in time_all(B, do_sample, reps)] for _ in range(2)]
            hf, py, nat = (min(r[i] for r in rounds) for i in range(3))
            rows.append(
                dict(
                    do_sample=do_sample,
                    batch_size=B,
                    num_beams=K,
                    vocab=V,
                    transformers_us=round(hf, 1),
                    fastlogits_us=round(py, 1),
                    fastlogits_native_us=round(nat, 1),
                    speedup=round(hf / py, 2),
                )
            )
            print(f"done: do_sample={do_sample} B={B}", flush=True)

    env = dict(
        python=platform.python_version(),
        torch=torch.__version__,
        transformers=transformers.__version__,
        fastlogits=fl.__version__,
        torch_threads=torch.get_num_threads(),
        fastlogits_threads=fl.get_num_threads(),
        cpu=platform.processor() or platform.machine(),
        reps=reps,
        prompt_length=PROMPT,
        generated_before_timed_step=CUR_GEN,
        transformers_max_length=PROMPT + MAX_NEW,
    )
    lines = [
        f"Beam search bookkeeping per step, median of {reps} steps (lower of two rounds; K = {K}, V = {V}, one EOS id, "
        f"cur_len = {PROMPT + CUR_GEN}; transformers' buffers sized for max_length = {PROMPT + MAX_NEW}). "
        f"torch threads: {env['torch_threads']}, fastlogits threads: {env['fastlogits_threads']}.",
        "",
        "| mode | B | transformers (µs) | fastlogits.BeamSearch.step (µs) | native step (µs) | speedup |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        mode = "beam sampling" if r["do_sample"] else "beam search"
        lines.append(
            f"| {mode} | {r['batch_size']} | {r['transformers_us']:.0f} | {r['fastlogits_us']:.0f} | "
            f"{r['fastlogits_native_us']:.0f} | {r['speedup']:.1f}x |"
        )
    table = "\n".join(lines)
    print()
    print(table)
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "beam.md").write_text(table + "\n")
    (out / "beam.json").write_text(json.dumps(dict(env=env, results=rows), indent=2) + "\n")


if __name__ == "__main__":
    main()
