"""`fastlogits.evaluate` and `fastlogits evaluate` / `tune --input`: scores against the libraries themselves,
perplexity against transformers, the generated text against `fastlogits generate --input` (a tiny
checkpoint with GPT-2's vocabulary and n_positions = 64, so that the sliding window is exercised)."""

from __future__ import annotations

import json
import math

import pytest

pytest.importorskip("rouge_score")
pytest.importorskip("sacrebleu")

import sacrebleu  # noqa: E402
import torch  # noqa: E402
from fastlogits import evaluate as ev  # noqa: E402
from fastlogits.gpt2 import GPT2  # noqa: E402
from rouge_score import rouge_scorer  # noqa: E402
from test_cli import assert_one_line_error, cli  # noqa: E402, F401

TEXTS = [
    "The quick brown fox jumps over the lazy dog and then runs into the forest where it finds a small river.",
    "In the beginning there was nothing but darkness, and then a light appeared over the water of the sea.",
    "Machine learning models are trained on data, and they learn patterns that help them predict new examples.",
]
LONG = " ".join(f"token{i} and" for i in range(60))  # well over 64 tokens


@pytest.fixture(autouse=True)
def _environment(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("FASTLOGITS_TOKENIZER", raising=False)


@pytest.fixture(scope="module")
def lm(tiny_checkpoint) -> GPT2:  # noqa: F811
    return GPT2.load(tiny_checkpoint)


def _write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


@pytest.fixture
def refs(tmp_path) -> str:
    return _write_jsonl(tmp_path / "refs.jsonl", [{"id": f"r{i}", "text": t} for i, t in enumerate(TEXTS)])


# -- prompts and references ------------------------------------------------------------------------------


def test_prompt_and_reference_split_on_whitespace():
    text = "  One two\tthree\n\nfour   five six "
    assert ev.prompt_of(text, 3) == "One two three"
    assert ev.split_reference(text, 3) == ("One two three", "four five six")
    assert ev.split_reference(text, 6) == ("One two three four five six", "")


# -- scores: the libraries' own numbers ------------------------------------------------------------------


def test_score_equals_rouge_score_and_sacrebleu():
    preds = ["the cat sat on the mat", "a dog runs in parks", "", "completely unrelated words here"]
    refs_ = ["the cat is sitting on a mat", "dogs running in the park", "something", "words here unrelated"]
    out = ev.score(preds, refs_)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    direct = [scorer.score(r, p) for p, r in zip(preds, refs_)]
    for k in ("rouge1", "rouge2", "rougeL"):
        per = [d[k].fmeasure for d in direct]
        assert [s[k] for s in out["per_sample"]] == per
        assert out[k] == pytest.approx(sum(per) / len(per), abs=1e-12)
    assert out["bleu"] == sacrebleu.corpus_bleu(preds, [refs_]).score
    assert out["rouge1"] > 0 and out["bleu"] > 0  # the example has overlap: the comparison is not 0 == 0


# -- perplexity ------------------------------------------------------------------------------------------


def test_corpus_perplexity_is_token_weighted(lm):
    texts = TEXTS[:2] + ["Short one."]
    parts = [lm.nll(t) for t in texts]
    total = sum(s for s, _ in parts) / sum(c for _, c in parts)
    assert ev.corpus_perplexity(lm, texts) == pytest.approx(math.exp(total), rel=1e-12)
    # not the mean of the per-text perplexities (different lengths)
    assert [c for _, c in parts] == [len(lm.tokenizer(t)["input_ids"]) - 1 for t in texts]


def test_single_fitting_text_equals_transformers_loss(lm):
    ids = lm.tokenizer(TEXTS[0], return_tensors="pt")["input_ids"]
    assert ids.shape[1] <= lm.n_positions
    with torch.no_grad():
        expected = float(torch.exp(lm.model(ids, labels=ids).loss))
    assert ev.corpus_perplexity(lm, [TEXTS[0]]) == pytest.approx(expected, rel=1e-6)
    assert lm.perplexity(TEXTS[0]) == pytest.approx(expected, rel=1e-6)


def _guide_perplexity(model, ids, max_length: int, stride: int) -> tuple[float, int]:
    """transformers' perplexity guide ("Perplexity of fixed-length models", sliding window), with the exact
    number of tokens each window predicts (the guide subtracts one per window, which under-counts the windows
    after the first by one token each)."""
    seq_len = ids.size(1)
    nll_sum, n_tokens, prev_end_loc = 0.0, 0, 0
    for begin_loc in range(0, seq_len, stride):
        end_loc = min(begin_loc + max_length, seq_len)
        trg_len = end_loc - prev_end_loc
        input_ids = ids[:, begin_loc:end_loc]
        target_ids = input_ids.clone()
        target_ids[:, :-trg_len] = -100
        with torch.no_grad():
            neg_log_likelihood = model(input_ids, labels=target_ids).loss
        num_loss_tokens = int((target_ids[:, 1:] != -100).sum())
        nll_sum += float(neg_log_likelihood) * num_loss_tokens
        n_tokens += num_loss_tokens
        prev_end_loc = end_loc
        if end_loc == seq_len:
            break
    return math.exp(nll_sum / n_tokens), n_tokens


@pytest.mark.parametrize("stride", [None, 16, 64])
def test_sliding_window_follows_the_perplexity_guide(lm, stride):
    ids = lm.tokenizer(LONG, return_tensors="pt")["input_ids"]
    assert ids.shape[1] > 2 * lm.n_positions
    expected, n = _guide_perplexity(lm.model, ids, lm.n_positions, stride or lm.n_positions // 2)
    if (stride or 32) < lm.n_positions:
        assert n == ids.shape[1] - 1  # every token but the first, once
    else:  # windows that do not overlap: each window's first token has no context and is not scored
        assert n == ids.shape[1] - math.ceil(ids.shape[1] / lm.n_positions)
    nll_sum, count = lm.nll(LONG, stride)
    assert count == n
    assert math.exp(nll_sum / count) == pytest.approx(expected, rel=1e-9)
    assert lm.perplexity(LONG, stride) == pytest.approx(expected, rel=1e-9)
    both = [TEXTS[0], LONG]
    parts = [lm.nll(t, stride) for t in both]
    assert ev.corpus_perplexity(lm, both, stride) == pytest.approx(
        math.exp(sum(s for s, _ in parts) / sum(c for _, c in parts)), rel=1e-12
    )


def test_bad_stride(lm):
    with pytest.raises(ValueError, match="stride"):
        lm.nll(LONG, lm.n_positions + 1)


# -- the Python API --------------------------------------------------------------------------------------


def test_evaluate_file_report(lm, refs):
    report = ev.evaluate_file(refs, lm=lm, prompt_words=6, max_new_tokens=8, seed=1, batch_size=2)
    assert [s["id"] for s in report.samples] == ["r0", "r1", "r2"]
    for s, text in zip(report.samples, TEXTS):
        assert (s["prompt"], s["reference"]) == ev.split_reference(text, 6)
    preds = [s["generated"] for s in report.samples]
    expected = ev.score(preds, [s["reference"] for s in report.samples])
    for k in ("rouge1", "rouge2", "rougeL", "bleu"):
        assert report.metrics[k] == expected[k]
    assert report.metrics["perplexity_reference"] == pytest.approx(ev.corpus_perplexity(lm, TEXTS), rel=1e-12)
    gen_ppl = ev.corpus_perplexity(lm, [s["prompt"] + s["generated"] for s in report.samples])
    assert report.metrics["perplexity_generated"] == pytest.approx(gen_ppl, rel=1e-12)
    assert report.metrics["perplexity_gap"] == pytest.approx(
        abs(math.log(gen_ppl / report.metrics["perplexity_reference"]))
    )
    gen = report.settings["generation"]
    assert gen == {**ev.DEFAULT_GENERATION, "max_new_tokens": 8}
    # the batch size does not change the text (per-example seeds)
    again = ev.evaluate_file(refs, lm=lm, prompt_words=6, max_new_tokens=8, seed=1, batch_size=3)
    assert [s["generated"] for s in again.samples] == preds


# -- the command -----------------------------------------------------------------------------------------


def test_cli_evaluate_report_plot_and_same_text_as_generate(cli, tiny_checkpoint, refs, tmp_path):  # noqa: F811
    out, png = tmp_path / "report.json", tmp_path / "report.png"
    flags = ["--model", tiny_checkpoint, "--max-new-tokens", "8", "--seed", "5"]
    p = cli(
        "evaluate", "--input", refs, "--output", str(out), "--plot", str(png), "--prompt-words", "7", *flags
    )
    assert p.returncode == 0, p.stderr
    assert "ROUGE-L F1" in p.stdout and "BLEU" in p.stdout and "perplexity of the references" in p.stdout
    assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"
    report = json.loads(out.read_text())
    assert set(report) == {"metrics", "samples", "settings", "versions"}
    assert {"rouge1", "rouge2", "rougeL", "bleu", "perplexity_reference", "perplexity_generated"} <= set(
        report["metrics"]
    )
    assert report["settings"]["prompt_words"] == 7 and report["settings"]["seed"] == 5
    assert "sacrebleu" in report["versions"] and "rouge-score" in report["versions"]
    samples = report["samples"]
    assert {"id", "prompt", "generated", "reference", "rouge1", "rouge2", "rougeL"} <= set(samples[0])
    preds, refs_ = [s["generated"] for s in samples], [s["reference"] for s in samples]
    assert report["metrics"]["bleu"] == sacrebleu.corpus_bleu(preds, [refs_]).score

    # `fastlogits generate --input` on the prompts, with the same seed and the notebooks' settings
    prompts = _write_jsonl(
        tmp_path / "prompts.jsonl", [{"id": s["id"], "prompt": s["prompt"]} for s in samples]
    )
    gen_out = tmp_path / "gen.jsonl"
    g = cli(
        "generate", "--input", prompts, "--output", str(gen_out), "--batch-size", "2", *flags,
        "--do-sample", "--top-k", "25", "--top-p", "0.95", "--temperature", "0.7",
    )  # fmt: skip
    assert g.returncode == 0, g.stderr
    rows = [json.loads(line) for line in gen_out.read_text().splitlines()]
    assert [(r["id"], r["generated"]) for r in rows] == [(s["id"], s["generated"]) for s in samples]


def test_cli_tune_on_a_dataset_ranks_the_grid(cli, tiny_checkpoint, refs, tmp_path):  # noqa: F811
    png = tmp_path / "grid.png"
    p = cli(
        "tune", "--input", refs, "--model", tiny_checkpoint, "--prompt-words", "6", "--max-new-tokens", "6",
        "--top-k", "0", "5", "--top-p", "0.9", "--temperature", "1.0", "--metric", "perplexity-gap",
        "--plot", str(png), "--quiet",
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    header = next(i for i, ln in enumerate(lines) if ln.split()[:2] == ["rank", "top_k"])
    rows = [ln.split() for ln in lines[header + 1 :] if ln.split()[0].isdigit()]
    assert [r[0] for r in rows] == ["1", "2"] and sorted(r[1] for r in rows) == ["0", "5"]
    gaps = [float(r[-1]) for r in rows]
    assert gaps == sorted(gaps)  # lower is better
    best = next(ln for ln in lines if ln.startswith("best:"))
    assert f"--top-k {rows[0][1]} " in best
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_cli_tune_single_prompt_still_works(cli, tiny_checkpoint):  # noqa: F811
    p = cli(
        "tune", "Once upon a time", "--validation", "It was a dark and stormy night.", "--model", tiny_checkpoint,
        "--top-k", "0", "--top-p", "0.9", "--temperature", "1.0", "--repeats", "1", "--max-new-tokens", "4",
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert "best: --top-k 0" in p.stdout


# -- mistakes --------------------------------------------------------------------------------------------


def test_missing_field_names_the_line(cli, tiny_checkpoint, tmp_path):  # noqa: F811
    path = _write_jsonl(tmp_path / "r.jsonl", [{"text": TEXTS[0]}, {"body": "no text here"}])
    p = cli("evaluate", "--input", path, "--model", tiny_checkpoint, "--prompt-words", "5")
    assert_one_line_error(p, "--input", "line 2", "'text'", "--skip-invalid")


def test_text_without_words_after_the_prompt(cli, tiny_checkpoint, tmp_path):  # noqa: F811
    path = _write_jsonl(tmp_path / "r.jsonl", [{"text": TEXTS[0]}, {"text": "only four words here"}])
    p = cli("evaluate", "--input", path, "--model", tiny_checkpoint, "--prompt-words", "4")
    assert_one_line_error(p, "--input", "line 2", "4 words", "nothing is left", "--skip-invalid")
    out = tmp_path / "report.json"
    ok = cli(
        "evaluate", "--input", path, "--model", tiny_checkpoint, "--prompt-words", "4", "--skip-invalid",
        "--max-new-tokens", "3", "--output", str(out),
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    report = json.loads(out.read_text())
    assert report["metrics"]["samples"] == 1 and report["metrics"]["skipped_invalid"] == 1


@pytest.mark.parametrize(
    "args, needles",
    [
        (("evaluate",), ("--input",)),
        (("evaluate", "--input", "/nonexistent/refs.jsonl"), ("--input", "/nonexistent/refs.jsonl")),
        (("evaluate", "--input", "REFS", "--num-return-sequences", "2"), ("--num-return-sequences", "use 1")),
        (("evaluate", "--input", "REFS", "--greedy", "--do-sample"), ("--greedy",)),
        (("evaluate", "--input", "REFS", "--stride", "65"), ("--stride", "n_positions = 64")),
        (
            ("evaluate", "--input", "REFS", "--max-new-tokens", "60"),
            ("--input", "line 1", "n_positions = 64"),
        ),
        (("tune", "--input", "REFS", "--metric", "meteor"), ("--metric", "meteor")),
        (("tune", "PROMPT", "--input", "REFS"), ("PROMPT", "--input")),
        (("tune", "PROMPT"), ("--validation",)),
        (("tune", "--input", "REFS", "--repeats", "2"), ("--repeats",)),
        (("tune", "x", "--validation", "y z", "--metric", "bleu"), ("--metric", "only applies with --input")),
    ],
)
def test_mistakes_give_one_line_errors(cli, tiny_checkpoint, refs, args, needles):  # noqa: F811
    argv = [refs if a == "REFS" else a for a in args]
    if len(argv) > 1:
        argv += ["--model", tiny_checkpoint]
    if "REFS" in args:
        argv += ["--prompt-words", "5"]
    assert_one_line_error(cli(*argv), *needles)


def test_missing_eval_extra_names_it(cli, tiny_checkpoint, refs, monkeypatch):  # noqa: F811
    monkeypatch.setitem(__import__("sys").modules, "sacrebleu", None)
    p = cli("evaluate", "--input", refs, "--model", tiny_checkpoint)
    assert_one_line_error(p, "sacrebleu", "pip install 'fastlogits[eval]'")
