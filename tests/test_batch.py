"""Generation over a JSON Lines file (`fastlogits.batch`, `fastlogits generate --input`): per-example seeds
(the text of an example does not depend on the batch it is in), resuming after SIGKILL / SIGINT / a cut-off
line, and bad input named by line and field."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
import torch
from fastlogits import batch
from fastlogits.cli import main
from fastlogits.gpt2 import GPT2
from fastlogits.sampling import stream_key
from test_cli import _env, assert_one_line_error, cli  # noqa: F401

PROMPTS = [
    "The history of the Roman Empire",
    "Once upon a time",
    "In 1990, the",
    "Hello",
    "A quick brown fox jumps over the lazy dog and then",
    "Why",
    "It was the best of times, it was the worst of times,",
    "Numbers: 1, 2, 3,",
    "The capital of France is",
    "def main():",
    "Dear Sir or Madam,",
    "Breaking news:",
]


def write_jsonl(path, rows) -> str:
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write((r if isinstance(r, str) else json.dumps(r)) + "\n")
    return str(path)


@pytest.fixture
def prompts_file(tmp_path) -> str:
    rows = [{"id": f"ex{i}", "prompt": p} if i % 3 else {"prompt": p} for i, p in enumerate(PROMPTS)]
    return write_jsonl(tmp_path / "prompts.jsonl", rows)


SAMPLING = ["--do-sample", "--top-k", "20", "--temperature", "0.9", "--max-new-tokens", "12", "--seed", "7"]


def test_text_does_not_depend_on_the_batch(cli, tiny_checkpoint, prompts_file, tmp_path):  # noqa: F811
    """Batch sizes 1, 5 and 12 (left padding, other rows), and the input reversed: byte-identical rows."""
    outs = []
    for bs in ("1", "5", "12"):
        out = tmp_path / f"out{bs}.jsonl"
        p = cli("generate", "--input", prompts_file, "--output", str(out), "--model", tiny_checkpoint,
                "--batch-size", bs, *SAMPLING)  # fmt: skip
        assert p.returncode == 0, p.stderr
        outs.append(out.read_bytes())
    assert outs[0] == outs[1] == outs[2]
    rows = [json.loads(line) for line in outs[0].splitlines()]
    assert [r["prompt"] for r in rows] == PROMPTS
    assert [r["id"] for r in rows[:3]] == [0, "ex1", "ex2"]  # no id: the 0-based line number
    assert all(r["num_tokens"] == 12 and r["finish_reason"] == "length" for r in rows)
    # Reversed input order (ids kept): the same row for each id.
    rev = write_jsonl(tmp_path / "rev.jsonl", [{"id": r["id"], "prompt": r["prompt"]} for r in rows[::-1]])
    out = tmp_path / "rev_out.jsonl"
    assert cli("generate", "--input", rev, "--output", str(out), "--model", tiny_checkpoint, "--batch-size", "4",
               *SAMPLING).returncode == 0  # fmt: skip
    again = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert all(again[r["id"]] == r for r in rows)


def test_an_example_is_its_own_stream(tiny_checkpoint, prompts_file):  # noqa: F811
    """An example's text is fastlogits.generate on its prompt alone with seed [stream_key(seed, id)]."""
    lm = GPT2.load(tiny_checkpoint)
    examples, _ = batch.read_examples(prompts_file)
    rows = batch.generate_rows(lm, examples[:4], seed=7, do_sample=True, top_k=20, max_new_tokens=10)
    for ex, row in zip(examples[:4], rows):
        (alone,) = lm.generate(
            [ex.text], seed=[stream_key(7, ex.id)], do_sample=True, top_k=20, max_new_tokens=10
        )
        assert row["generated"] == alone
    # Another seed, other text (sampling is on).
    other = batch.generate_rows(lm, examples[:4], seed=8, do_sample=True, top_k=20, max_new_tokens=10)
    assert [r["generated"] for r in other] != [r["generated"] for r in rows]


def test_num_return_sequences_gives_lists(cli, tiny_checkpoint, prompts_file, tmp_path):  # noqa: F811
    out = tmp_path / "o.jsonl"
    p = cli("generate", "--input", prompts_file, "--output", str(out), "--model", tiny_checkpoint,
            "--num-return-sequences", "3", *SAMPLING)  # fmt: skip
    assert p.returncode == 0, p.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(len(r["generated"]) == 3 and len(r["num_tokens"]) == 3 for r in rows)
    assert len(set(rows[0]["generated"])) == 3
    meta = json.loads((tmp_path / "o.jsonl.meta.json").read_text())
    assert meta["job"]["generation"]["num_return_sequences"] == 3 and meta["job"]["seed"] == 7


def test_resume_after_a_cut_off_line_and_with_other_settings(cli, tiny_checkpoint, prompts_file, tmp_path):  # noqa: F811
    full = tmp_path / "full.jsonl"
    args = ["--model", tiny_checkpoint, "--batch-size", "3", *SAMPLING]
    assert cli("generate", "--input", prompts_file, "--output", str(full), *args).returncode == 0
    data = full.read_bytes()
    part = tmp_path / "part.jsonl"
    cut = data.index(b"\n", data.index(b"\n") + 1) + 20  # two rows and a piece of the third
    part.write_bytes(data[:cut])
    (tmp_path / "part.jsonl.meta.json").write_bytes((tmp_path / "full.jsonl.meta.json").read_bytes())
    p = cli("generate", "--input", prompts_file, "--output", str(part), *args)
    assert p.returncode == 0 and "2 already in the output" in p.stderr and "cut-off" in p.stderr, p.stderr
    assert part.read_bytes() == data
    # Nothing left to do: nothing changes.
    p = cli("generate", "--input", prompts_file, "--output", str(part), *args)
    assert p.returncode == 0 and "0 generated, 12 already" in p.stderr and part.read_bytes() == data
    # Other settings on an output that holds results: refused before the model loads.
    p = cli("generate", "--input", prompts_file, "--output", str(part), *args[:-2], "--seed", "8")
    assert_one_line_error(p, "--output", "other settings", "seed=7", "seed=8")


def _kill_midway(cmd: list[str], out, sig: int, total: int) -> subprocess.CompletedProcess:
    """Runs the command, sends `sig` once the output holds a row, waits for the process."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if out.exists() and out.read_bytes().count(b"\n") >= 1:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the job ended before it could be interrupted"
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=240)
    lines = out.read_bytes().count(b"\n")
    assert lines < total, "the job was not interrupted midway"
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_interrupted_job_resumes_to_the_uninterrupted_result(sig, tmp_path, prompts_file):
    """The 124M shape (random weights), one example per batch, killed after its first row; the resumed
    output equals an uninterrupted run's, byte for byte. SIGINT: exit 130, valid JSON Lines."""
    out, ref = tmp_path / "out.jsonl", tmp_path / "ref.jsonl"
    job = ["--input", prompts_file, "--random-weights", "--batch-size", "1", "--quiet", "--do-sample",
           "--max-new-tokens", "6", "--seed", "3"]  # fmt: skip
    cmd = [sys.executable, "-m", "fastlogits", "generate", *job]
    p = _kill_midway([*cmd, "--output", str(out)], out, sig, len(PROMPTS))
    if sig == signal.SIGINT:
        assert p.returncode == 130, p.stderr
        assert "Traceback" not in p.stderr and "run the same command to resume" in p.stderr
        assert out.read_bytes().endswith(b"\n")
        for line in out.read_text().splitlines():
            json.loads(line)
    else:
        assert p.returncode == -signal.SIGKILL
    done = subprocess.run(
        [*cmd, "--output", str(out)], capture_output=True, text=True, env=_env(), timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "already in the output" in done.stderr
    assert main(["generate", *job, "--output", str(ref)]) == 0
    assert out.read_bytes() == ref.read_bytes()


@pytest.mark.parametrize(
    "lines, needles",
    [
        (['{"prompt": "a"}', "{not json"], ["line 2 is not valid JSON"]),
        (['{"prompt": "a"}', '{"text": "b"}'], ["line 2 has no 'prompt' field"]),
        (['{"prompt": 3}'], ["line 1: 'prompt' is a JSON int, not a string"]),
        (['{"prompt": "  "}'], ["line 1: 'prompt' is empty"]),
        (['["a"]'], ["line 1 is a JSON list, not an object"]),
        (['{"id": 1, "prompt": "a"}', '{"id": 1, "prompt": "b"}'], ["line 2", "1 is also the id of line 1"]),
        (['{"id": [1], "prompt": "a"}'], ["ids are strings or integers"]),
        (["", "  "], ["no examples"]),
    ],
)
def test_bad_input_is_named_by_line_and_field(cli, tiny_checkpoint, tmp_path, lines, needles):  # noqa: F811
    src = write_jsonl(tmp_path / "in.jsonl", lines)
    p = cli("generate", "--input", src, "--output", str(tmp_path / "o.jsonl"), "--model", tiny_checkpoint)
    assert_one_line_error(p, "--input", *needles)
    assert not (tmp_path / "o.jsonl").exists()


def test_skip_invalid_counts_and_skips(cli, tiny_checkpoint, tmp_path):  # noqa: F811
    long_prompt = "word " * 80  # over the tiny model's n_positions = 64
    src = write_jsonl(
        tmp_path / "in.jsonl",
        [
            '{"prompt": "a b c"}',
            "{oops",
            '{"text": "x"}',
            json.dumps({"prompt": long_prompt}),
            '{"prompt": "d"}',
        ],
    )
    out = tmp_path / "o.jsonl"
    p = cli(
        "generate", "--input", src, "--output", str(out), "--model", tiny_checkpoint, "--max-new-tokens", "4"
    )
    assert_one_line_error(p, "line 2 is not valid JSON", "--skip-invalid")
    p = cli("generate", "--input", src, "--output", str(out), "--model", tiny_checkpoint, "--max-new-tokens", "4",
            "--skip-invalid")  # fmt: skip
    assert p.returncode == 0 and "2 generated, 3 invalid skipped" in p.stderr, p.stderr
    assert [json.loads(x)["id"] for x in out.read_text().splitlines()] == [0, 4]


def test_output_checks_come_before_the_model(cli, tmp_path, prompts_file):  # noqa: F811
    # (`--model nowhere` would fail if it were loaded: these errors come first)
    bad = ["--model", str(tmp_path / "nowhere")]
    assert_one_line_error(cli("generate", "--input", prompts_file, *bad), "--output", "required")
    assert_one_line_error(
        cli("generate", "--input", prompts_file, "--output", prompts_file, *bad), "--output", "is the input"
    )
    assert_one_line_error(
        cli("generate", "--input", prompts_file, "--output", str(tmp_path / "no" / "o.jsonl"), *bad),
        "does not exist",
    )
    assert_one_line_error(
        cli("generate", "--input", str(tmp_path / "missing.jsonl"), "--output", str(tmp_path / "o"), *bad),
        "--input",
        "cannot read",
    )
    assert_one_line_error(cli("generate", "some prompt", "--input", prompts_file, *bad), "not both")
    assert_one_line_error(cli("generate", "p", "--batch-size", "2", *bad), "--batch-size", "only applies")


def test_generate_file_api(tiny_checkpoint, prompts_file, tmp_path):  # noqa: F811
    out = tmp_path / "o.jsonl"
    s = batch.generate_file(
        prompts_file, str(out), model=tiny_checkpoint, batch_size=4, seed=1, max_new_tokens=5, do_sample=True
    )
    assert (s.total, s.generated, s.already_done, s.tokens) == (12, 12, 0, 60)
    rows = list(batch.iter_jsonl(str(out)))
    assert [r["prompt"] for r in rows] == PROMPTS
    s = batch.generate_file(
        prompts_file, str(out), model=tiny_checkpoint, batch_size=4, seed=1, max_new_tokens=5, do_sample=True
    )
    assert (s.generated, s.already_done) == (0, 12)


def test_greedy_file_job_equals_model_generate(tiny_checkpoint, prompts_file, tmp_path):  # noqa: F811
    """Greedy rows equal transformers' own generate on each prompt alone."""
    from transformers import AutoTokenizer, GPT2LMHeadModel

    out = tmp_path / "o.jsonl"
    batch.generate_file(prompts_file, str(out), model=tiny_checkpoint, batch_size=5, max_new_tokens=6)
    model = GPT2LMHeadModel.from_pretrained(tiny_checkpoint).eval()
    tok = AutoTokenizer.from_pretrained(GPT2.load(tiny_checkpoint).tokenizer.name_or_path)
    for row in batch.iter_jsonl(str(out)):
        ids = tok(row["prompt"], return_tensors="pt")["input_ids"]
        with torch.no_grad():
            ref = model.generate(ids, max_new_tokens=6, do_sample=False, pad_token_id=tok.eos_token_id)
        assert row["generated"] == tok.decode(ref[0, ids.shape[1] :], skip_special_tokens=True)


def test_a_file_that_is_not_ours_is_left_untouched(cli, tiny_checkpoint, prompts_file, tmp_path):  # noqa: F811
    """An --output that holds something else (with a last line without newline) is refused, unchanged."""
    out = tmp_path / "notes.txt"
    out.write_bytes(b"my notes line 1\nmy precious last line")
    p = cli("generate", "--input", prompts_file, "--output", str(out), "--model", tiny_checkpoint)
    assert_one_line_error(p, "not a result row")
    assert out.read_bytes() == b"my notes line 1\nmy precious last line"


def test_lone_surrogates_are_named(cli, tiny_checkpoint, tmp_path):  # noqa: F811
    src = write_jsonl(tmp_path / "in.jsonl", ['{"prompt": "ok"}', '{"prompt": "bad \\ud800 text"}'])
    p = cli("generate", "--input", src, "--output", str(tmp_path / "o.jsonl"), "--model", tiny_checkpoint)
    assert_one_line_error(p, "line 2", "'prompt'", "lone surrogate")
    src = write_jsonl(tmp_path / "in2.jsonl", ['{"id": "\\udc80", "prompt": "ok"}'])
    p = cli("generate", "--input", src, "--output", str(tmp_path / "o2.jsonl"), "--model", tiny_checkpoint)
    assert_one_line_error(p, "line 1", "'id'", "lone surrogate")


def test_settings_that_json_changes_still_resume(tiny_checkpoint, prompts_file, tmp_path):  # noqa: F811
    """logit_bias's int keys become strings in the sidecar: the same settings still resume."""
    out = tmp_path / "o.jsonl"
    kw = dict(model=tiny_checkpoint, batch_size=6, max_new_tokens=3, logit_bias={50256: -5.0})
    assert batch.generate_file(prompts_file, str(out), **kw).generated == 12
    assert batch.generate_file(prompts_file, str(out), **kw).already_done == 12
    assert not (tmp_path / "o.jsonl.meta.json.tmp").exists()
