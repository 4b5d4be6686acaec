"""The `fastlogits` command, run as a subprocess (random-weight GPT-2 124M, the bundled tokenizer)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

MODEL = ["--random-weights"]


def run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    env.pop("FASTLOGITS_TOKENIZER", None)  # the bundled tokenizer must be enough
    return subprocess.run(
        [sys.executable, "-m", "fastlogits", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def assert_one_line_error(p: subprocess.CompletedProcess, *needles: str) -> None:
    assert p.returncode == 2, p
    assert "Traceback" not in p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, p.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def test_help_on_every_command():
    top = run("--help")
    assert top.returncode == 0 and "generate" in top.stdout and "tune" in top.stdout
    for cmd in ("generate", "next-token", "perplexity", "tune", "bench"):
        p = run(cmd, "--help")
        assert p.returncode == 0, cmd
        assert "usage: fastlogits " + cmd in p.stdout


def test_generate_same_seed_same_text():
    args = ("generate", "The history of", *MODEL, "--max-new-tokens", "8", "--do-sample", "--top-p", "0.9")
    a = run(*args, "--seed", "5")
    b = run(*args, "--seed", "5")
    c = run(*args, "--seed", "6")
    assert a.returncode == 0, a.stderr
    assert a.stdout == b.stdout
    assert a.stdout.startswith("The history of") and len(a.stdout.strip()) > len("The history of")
    assert c.stdout != a.stdout
    assert "random weights" in a.stderr.lower()


def test_generate_several_prompts_and_sequences():
    p = run(
        "generate",
        "A",
        "B",
        *MODEL,
        "--max-new-tokens",
        "3",
        "--num-beams",
        "2",
        "--num-return-sequences",
        "2",
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.count("--- prompt") == 4


def test_next_token_table_and_plot(tmp_path):
    png = tmp_path / "next.png"
    p = run("next-token", "Hello world", *MODEL, "--top-k", "7", "--temperature", "0.7", "--plot", str(png))
    assert p.returncode == 0, p.stderr
    rows = [ln for ln in p.stdout.splitlines() if ln.strip() and ln.split()[0].isdigit()]
    assert len(rows) == 7
    probs = [float(r.split()[-2]) for r in rows]
    assert probs == sorted(probs, reverse=True)
    assert png.exists() and png.stat().st_size > 1000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_perplexity_text_and_file(tmp_path):
    text = "The quick brown fox jumps over the lazy dog."
    a = run("perplexity", text, *MODEL)
    f = tmp_path / "t.txt"
    f.write_text(text)
    b = run("perplexity", "--file", str(f), *MODEL)
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    assert a.stdout == b.stdout and a.stdout.startswith("perplexity ")
    assert float(a.stdout.split()[1]) > 1


def test_tune_small_grid():
    p = run(
        "tune", "Once upon a time", "--validation", "It was a dark and stormy night.", *MODEL,
        "--top-k", "0", "20", "--top-p", "0.9", "--temperature", "1.0", "--repeats", "2", "--max-new-tokens", "4",
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert "validation text perplexity" in p.stdout
    assert p.stdout.count("±") >= 3  # two cells + the best line
    assert "best: --top-k" in p.stdout


@pytest.mark.parametrize(
    "args,needles",
    [
        (("generate", "x", "--top-p", "1.7"), ("--top-p", "1.7")),
        (("generate", "x", "--temperature", "0"), ("--temperature",)),
        (("generate", "x", "--max-new-tokens", "-3"), ("--max-new-tokens",)),
        (("generate", "x", "--early-stopping", "sometimes"), ("--early-stopping",)),
        (("generate", "x", "--num-return-sequences", "3"), ("--num-return-sequences",)),
        (("next-token",), ("PROMPT",)),
        (("perplexity",), ("TEXT", "--file")),
        (("perplexity", "--file", "/nonexistent/f.txt", *MODEL), ("--file",)),
        (("frobnicate",), ("frobnicate",)),
        (("generate", "x", "--model", "/nonexistent/gpt2"), ("/nonexistent/gpt2", "--random-weights")),
        (("generate", "x", *MODEL, "--tokenizer", "/nonexistent/tok"), ("/nonexistent/tok", "--tokenizer")),
    ],
)
def test_mistakes_give_one_line_errors(args, needles):
    assert_one_line_error(run(*args), *needles)


def test_bench_quick_writes_tables_json_and_pngs(tmp_path):
    p = run("bench", "--quick", "--out", str(tmp_path), timeout=900)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "speedup" in p.stdout and "fastlogits tok/s" in p.stdout
    for name in (
        "processors.json",
        "processors.md",
        "processors.png",
        "generate.json",
        "generate.md",
        "generate.png",
    ):
        f = tmp_path / name
        assert f.exists() and f.stat().st_size > 200, name
