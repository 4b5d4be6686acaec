"""The `fastlogits` command (random-weight GPT-2 124M or a tiny checkpoint, the bundled tokenizer).

Most cases call ``fastlogits.cli.main(argv)`` in this process: a subprocess pays for importing torch and
transformers every time (seconds each). What needs a process of its own runs as one: ``python -m fastlogits``
(the entry point; also compared with the in-process result), the command without torch installed, and a
reader of stdout that goes away (exit status 141).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from dataclasses import dataclass

import pytest
from fastlogits.cli import main

MODEL = ["--random-weights"]


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def _env() -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    env.pop("FASTLOGITS_TOKENIZER", None)  # the bundled tokenizer must be enough
    return env


def run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """`python -m fastlogits ARGS` in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "fastlogits", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(),
    )


def run_without(module: str, *args: str) -> subprocess.CompletedProcess:
    """The command on a Python where `module` cannot be imported (as if its extra were not installed)."""
    code = f"import sys; sys.modules[{module!r}] = None; from fastlogits.cli import main; sys.exit(main())"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300, env=_env()
    )


@pytest.fixture(autouse=True)
def _cli_environment(monkeypatch):
    """What a fresh `fastlogits` process sees: offline, no $FASTLOGITS_TOKENIZER (the bundled tokenizer must
    be enough), and transformers' logging at "error" (main() sets TRANSFORMERS_VERBOSITY before transformers
    is imported; here it was imported already)."""
    import transformers

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_VERBOSITY", "error")
    monkeypatch.delenv("FASTLOGITS_TOKENIZER", raising=False)
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    yield
    transformers.logging.set_verbosity(verbosity)


@pytest.fixture
def cli(capfd):
    """``cli(*args)``: ``fastlogits ARGS`` in this process -> Result(exit status, stdout, stderr). A bytes
    argument is decoded as Python decodes argv (UTF-8, undecodable bytes as surrogate escapes)."""

    def call(*args: str | bytes) -> Result:
        argv = [a.decode("utf-8", "surrogateescape") if isinstance(a, bytes) else a for a in args]
        capfd.readouterr()  # only this command's output
        try:
            code = main(argv)
        except SystemExit as e:  # --help
            code = e.code
        out, err = capfd.readouterr()
        return Result(0 if code is None else code, out, err)

    return call


def assert_one_line_error(p: Result | subprocess.CompletedProcess, *needles: str) -> None:
    assert p.returncode == 2, p
    assert "Traceback" not in p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, p.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def test_help_on_every_command(cli):
    top = run("--help")  # the entry point, in a subprocess
    assert top.returncode == 0 and "generate" in top.stdout and "tune" in top.stdout
    for cmd in ("generate", "next-token", "perplexity", "tune", "bench"):
        p = cli(cmd, "--help")
        assert p.returncode == 0, cmd
        assert "usage: fastlogits " + cmd in p.stdout


def test_generate_same_seed_same_text(cli):
    # The same seed gives the same text in another process (a: `python -m fastlogits`), another seed another.
    args = ("generate", "The history of", *MODEL, "--max-new-tokens", "8", "--do-sample", "--top-p", "0.9")
    a = run(*args, "--seed", "5")
    b = cli(*args, "--seed", "5")
    c = cli(*args, "--seed", "6")
    assert a.returncode == 0, a.stderr
    assert b.returncode == 0 and c.returncode == 0, b.stderr + c.stderr
    assert a.stdout == b.stdout
    assert a.stdout.startswith("The history of") and len(a.stdout.strip()) > len("The history of")
    assert c.stdout != a.stdout
    assert "random weights" in a.stderr.lower()
    assert "random weights" in b.stderr.lower()


def test_generate_in_bfloat16_equals_transformers_bfloat16_model(cli, tiny_checkpoint):
    """--dtype bfloat16: the text of transformers' generate on the same checkpoint cast to bfloat16."""
    import torch
    from fastlogits.gpt2 import GPT2

    p = cli("generate", "A b", "--model", tiny_checkpoint, "--max-new-tokens", "6", "--dtype", "bfloat16")
    assert p.returncode == 0, p.stderr
    lm = GPT2.load(tiny_checkpoint, dtype="bfloat16")
    assert lm.model.dtype is torch.bfloat16
    ids, mask = lm.encode("A b")
    ref = lm.model.generate(
        ids, attention_mask=mask, max_new_tokens=6, pad_token_id=lm.tokenizer.eos_token_id
    )
    assert p.stdout.strip().endswith(lm.tokenizer.decode(ref[0, ids.shape[1] :]).strip())


def test_generate_several_prompts_and_sequences(cli, tiny_checkpoint):
    p = cli(
        "generate",
        "A",
        "B",
        "--model",
        tiny_checkpoint,
        "--max-new-tokens",
        "3",
        "--num-beams",
        "2",
        "--num-return-sequences",
        "2",
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.count("--- prompt") == 4


def test_next_token_table_and_plot(cli, tiny_checkpoint, tmp_path):
    png = tmp_path / "next.png"
    p = cli(
        "next-token", "Hello world", "--model", tiny_checkpoint, "--top-k", "7", "--temperature", "0.7",
        "--plot", str(png),
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    rows = [ln for ln in p.stdout.splitlines() if ln.strip() and ln.split()[0].isdigit()]
    assert len(rows) == 7
    probs = [float(r.split()[-2]) for r in rows]
    assert probs == sorted(probs, reverse=True)
    assert png.exists() and png.stat().st_size > 1000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_perplexity_text_and_file(cli, tiny_checkpoint, tmp_path):
    text = "The quick brown fox jumps over the lazy dog."
    a = cli("perplexity", text, "--model", tiny_checkpoint)
    f = tmp_path / "t.txt"
    f.write_text(text)
    b = cli("perplexity", "--file", str(f), "--model", tiny_checkpoint)
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    assert a.stdout == b.stdout and a.stdout.startswith("perplexity ")
    assert float(a.stdout.split()[1]) > 1


def test_tune_small_grid(cli, tiny_checkpoint):
    p = cli(
        "tune", "Once upon a time", "--validation", "It was a dark and stormy night.", "--model", tiny_checkpoint,
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
        (("generate", "x", *MODEL, "--dtype", "float16"), ("--dtype", "bfloat16")),
    ],
)
def test_mistakes_give_one_line_errors(cli, args, needles):
    assert_one_line_error(cli(*args), *needles)


def test_bench_quick_writes_tables_json_and_pngs(cli, monkeypatch, tmp_path):
    # `bench --quick` as it ships measures for a minute or more (GPT-2 124M generations on a 2-core machine):
    # here the same command writes its tables, JSON and charts from the smallest settings: each kind of
    # processor case of the quick set once (B = 1), 3 timed calls per implementation, no waiting for a quiet
    # machine; one generation case of 2 new tokens on a one-layer GPT-2 body (GPT-2's vocabulary).
    import importlib
    from pathlib import Path

    import transformers

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benches"))
    bench = importlib.import_module("harness.processors")  # the modules `fastlogits bench` imports
    bench_generate = importlib.import_module("harness.generate")

    one_of_each: dict[tuple[str, int], bench.Case] = {}
    for case in bench.quick_cases():
        if case.batch == 1:
            one_of_each.setdefault((case.key, case.history), case)
    monkeypatch.setattr(bench, "quick_cases", lambda: list(one_of_each.values()))
    monkeypatch.setattr(
        bench, "QUICK_BUDGET", bench.Budget(target_s=0.0, min_reps=3, cap_s=0.0, floor_reps=3, max_reps=3)
    )
    monkeypatch.setattr(
        bench,
        "QUICK_QUIET",
        bench.Quiet(busy=math.inf, idle=math.inf, wait_s=0.0, total_wait_s=0.0, retries=0),
    )
    monkeypatch.setattr(bench_generate, "QUICK", {("greedy", 1)})
    monkeypatch.setattr(bench_generate, "NEW_TOKENS", 2)
    gpt2_config = transformers.GPT2Config  # bench_generate builds GPT2LMHeadModel(GPT2Config())
    monkeypatch.setattr(
        transformers, "GPT2Config", lambda: gpt2_config(n_positions=64, n_embd=16, n_layer=1, n_head=2)
    )
    p = cli("bench", "--quick", "--out", str(tmp_path))
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


# -- misuse: one line on stderr naming the argument, exit status 2, no traceback; checked before the weights
# load (assert_one_line_error also rules out the "RANDOM weights" note that loading prints) --------------


@pytest.mark.parametrize(
    "args,needles",
    [
        (("generate", b"\xff\xfe", *MODEL), ("PROMPT", "UTF-8", "0xff")),
        (("generate", "fine", b"ab\xffc", *MODEL), ("PROMPT", "prompt 2", "UTF-8", "0xff at offset 2")),
        (("next-token", b"\xc3", *MODEL), ("PROMPT", "UTF-8", "0xc3")),
        (("perplexity", b"caf\xe9 au lait", *MODEL), ("TEXT", "UTF-8", "0xe9")),
        (("tune", "x", "--validation", b"\xfe", *MODEL), ("--validation", "UTF-8")),
    ],
)
def test_non_utf8_text_arguments(cli, args, needles):
    # Python hands undecodable argv bytes over as surrogate escapes, which the tokenizer cannot take
    # (`cli` decodes the bytes arguments the same way).
    assert_one_line_error(cli(*args), *needles)


def test_unknown_device(cli):
    assert_one_line_error(
        cli("generate", "x", *MODEL, "--device", "bogus"), "--device", "'bogus'", "cpu, cuda"
    )


def test_cuda_device_without_a_gpu(cli):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    assert_one_line_error(cli("generate", "x", *MODEL, "--device", "cuda"), "--device", "no CUDA device")


def test_plot_without_matplotlib_names_the_extra(cli, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if the [plot] extra were not installed
    png = tmp_path / "next.png"
    p = cli("next-token", "x", *MODEL, "--plot", str(png))
    assert_one_line_error(p, "--plot", "matplotlib", "pip install 'fastlogits[plot]'")
    assert not png.exists()


def test_missing_torch_names_the_extra():
    # A subprocess (cheap: torch is never imported): `fastlogits` itself must import without torch.
    p = run_without("torch", "generate", "x", *MODEL)
    assert_one_line_error(p, "torch", "pip install 'fastlogits[torch]'")


def test_binary_file_for_perplexity(cli, tmp_path):
    f = tmp_path / "random.bin"
    f.write_bytes(b"\xff\xfe" + os.urandom(2000))
    assert_one_line_error(cli("perplexity", "--file", str(f), *MODEL), "--file", str(f), "not UTF-8 text")


@pytest.mark.parametrize(
    "args,needles",
    [
        (
            ("generate", "x", *MODEL, "--max-new-tokens", "2000"),
            ("--max-new-tokens", "2000", "n_positions = 1024", "<= 1023"),
        ),
        (("generate", "word " * 1100, *MODEL), ("PROMPT", "n_positions = 1024")),
        (("next-token", "word " * 1100, *MODEL), ("PROMPT", "n_positions = 1024")),
        (
            ("tune", "x", "--validation", "a b c", *MODEL, "--max-new-tokens", "1024"),
            ("--max-new-tokens", "n_positions = 1024"),
        ),
    ],
)
def test_beyond_n_positions(cli, args, needles):
    assert_one_line_error(cli(*args), *needles)


def test_n_positions_of_a_checkpoint_comes_from_its_config(cli, tiny_checkpoint):
    prompt = "one two three four"  # 4 tokens
    bad = cli("generate", prompt, "--model", tiny_checkpoint, "--max-new-tokens", "61")
    assert_one_line_error(bad, "--max-new-tokens", "n_positions = 64", "<= 60")
    ok = cli("generate", prompt, "--model", tiny_checkpoint, "--max-new-tokens", "60")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith(prompt)


@pytest.mark.parametrize(
    "where,needles",
    [
        ("missing/dir/next.png", ("--plot", "does not exist")),
        (".", ("--plot", "is a directory")),
        ("next.xyz", ("--plot", "'xyz' is not an image format", "png")),
        ("", ("--plot", "file name")),
    ],
)
def test_bad_plot_path(cli, tmp_path, where, needles):
    path = str(tmp_path / where) if where else ""
    assert_one_line_error(cli("next-token", "x", *MODEL, "--plot", path), *needles)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "args,needles",
    [
        (("generate", "", *MODEL), ("PROMPT", "empty")),
        (("generate", "A", "", *MODEL), ("PROMPT", "prompt 2 is empty")),
        (("next-token", "", *MODEL), ("PROMPT", "empty")),
        (("tune", "", "--validation", "a b c", *MODEL), ("PROMPT", "empty")),
        (("tune", "x", "--validation", "a", *MODEL), ("--validation", "at least 2")),
        (("perplexity", "", *MODEL), ("TEXT", "0 tokens", "at least 2")),
        (("perplexity", "x", *MODEL), ("TEXT", "1 token", "at least 2")),
    ],
)
def test_empty_or_too_short_texts(cli, args, needles):
    assert_one_line_error(cli(*args), *needles)


def test_bench_outside_a_checkout_says_where_it_runs(cli, monkeypatch, tmp_path):
    import fastlogits.cli as cli_module

    monkeypatch.setattr(cli_module, "__file__", str(tmp_path / "site-packages" / "fastlogits" / "cli.py"))
    monkeypatch.chdir(tmp_path)
    assert_one_line_error(cli("bench", "--quick"), "bench", "source checkout")
    assert not any(tmp_path.iterdir()), "bench wrote into the current directory"


def test_bench_out_not_a_writable_directory(cli, tmp_path):
    f = tmp_path / "a-file"
    f.write_text("x")
    assert_one_line_error(cli("bench", "--quick", "--out", str(f)), "--out", "not a directory")
    assert_one_line_error(cli("bench", "--quick", "--out", str(f / "sub")), "--out", "cannot create")


def test_reader_going_away_is_not_an_error(tiny_checkpoint, tmp_path):
    # `fastlogits next-token ... | head -1`: stop quietly (exit status 141 = 128 + SIGPIPE), no message.
    # A subprocess: the command's own stdout is a pipe that its reader closes.
    args = ["next-token", "Hello", "--model", tiny_checkpoint, "--top-k", "50000"]
    with open(tmp_path / "stderr", "w+") as err:
        p = subprocess.Popen(
            [sys.executable, "-m", "fastlogits", *args], stdout=subprocess.PIPE, stderr=err, env=_env()
        )
        first = p.stdout.readline()
        p.stdout.close()
        rc = p.wait(timeout=300)
        err.seek(0)
        stderr = err.read()
    assert first.startswith(b"next token after 'Hello'")
    assert rc == 141, stderr
    assert "Traceback" not in stderr and "error" not in stderr.lower() and "pipe" not in stderr.lower()
