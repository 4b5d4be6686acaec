"""fastlogits.ray: the file job on Ray actors, and generate_dataset, give the local engine's rows byte for byte.

The Ray tests start a local Ray (2 CPUs, no dashboard) once for the module; each Ray Data execution starts
its actors afresh (importing torch in each: ~10 s on 2 cores), so the tests keep to a few executions.
"""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest
from fastlogits import batch
from fastlogits.errors import InvalidArgumentError

# Ray Data's own deprecation notices (its context's old settings), not fastlogits'.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray")

HAVE_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(not HAVE_RAY, reason="Ray is not installed (pip install 'fastlogits[ray]')")

GEN = {"max_new_tokens": 8, "do_sample": True, "top_k": 20, "temperature": 0.9}


@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint) -> str:
    """The tiny GPT-2 checkpoint (conftest), which the actors load by path."""
    return tiny_checkpoint


@pytest.fixture(scope="module")
def lm(checkpoint):
    from fastlogits.gpt2 import GPT2

    return GPT2.load(checkpoint)


@pytest.fixture(scope="module")
def local_ray():
    if not HAVE_RAY:
        pytest.skip("Ray is not installed (pip install 'fastlogits[ray]')")
    import ray

    if ray.is_initialized():  # pragma: no cover - another module's Ray
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    yield ray
    ray.shutdown()


def write_input(path, n: int = 30) -> None:
    """Ids of both kinds (strings, integers, none: the line number); prompts of different lengths."""
    words = "the quick brown fox jumps over a lazy dog while it rains".split()
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            obj = {"prompt": " ".join(words[: 1 + i % len(words)]) + f" {i}"}
            if i % 3 == 0:
                obj["id"] = f"ex-{i}"
            elif i % 3 == 1:
                obj["id"] = 1000 + i
            f.write(json.dumps(obj) + "\n")


def job(checkpoint: str) -> dict:
    return batch.job_settings(checkpoint, "float32", seed=7, field="prompt", id_field="id", gen_kwargs=GEN)


# -- without a Ray cluster ------------------------------------------------------------------------------------


def test_missing_ray_names_the_extra(monkeypatch):
    import fastlogits.ray as flray

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ModuleNotFoundError
    monkeypatch.setitem(sys.modules, "ray.data", None)
    with pytest.raises(ModuleNotFoundError) as e:
        flray.RayEngine("gpt2")
    assert e.value.name == "ray"
    assert "pip install 'fastlogits[ray]'" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ModuleNotFoundError, match=r"fastlogits\[ray\]"):
        flray.generate_dataset(object())


@needs_ray
def test_the_module_imports_the_real_ray():
    import fastlogits.ray as flray
    import ray

    assert flray.require_ray() is ray and hasattr(ray, "init") and ray.__name__ == "ray"


def test_model_spec(checkpoint, lm, monkeypatch):
    from fastlogits.ray import ModelSpec

    with pytest.raises(InvalidArgumentError, match="no model"):
        ModelSpec(None)
    assert ModelSpec(checkpoint).identity() == batch.model_identity(lm)
    assert ModelSpec(None, random_weights=True).identity() == ("random-weights", "float32")
    monkeypatch.setenv("FASTLOGITS_TOKENIZER", "/some/tokenizer")
    assert ModelSpec("gpt2").tokenizer == "/some/tokenizer"  # the driver's choice travels with the spec
    assert ModelSpec("gpt2", tokenizer="/x").tokenizer == "/x"


@needs_ray
@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"batch_size": 0}, "batch_size"),
        ({"concurrency": 0}, "concurrency"),
        ({"num_threads": -1}, "num_threads"),
    ],
)
def test_bad_arguments(local_ray, checkpoint, kwargs, needle):
    from fastlogits.ray import RayEngine

    with pytest.raises(InvalidArgumentError, match=needle):
        RayEngine(checkpoint, **kwargs)


# -- on a local Ray --------------------------------------------------------------------------------------------


@needs_ray
def test_ray_job_equals_local_byte_for_byte_and_resumes(local_ray, checkpoint, lm, tmp_path):
    """local batch 1 = local batch 8 = Ray (2 actors × 1 thread, batches of 4), the Ray run resuming an
    output cut short (7 results and a cut-off line) and appending the rest."""
    from fastlogits.ray import ModelSpec, RayEngine

    src = tmp_path / "in.jsonl"
    write_input(src)
    outs = {}
    for bs in (1, 8):
        out = tmp_path / f"local{bs}.jsonl"
        batch.run_job(
            str(src), str(out), batch.LocalEngine(lm, batch_size=bs, seed=7, **GEN), job=job(checkpoint)
        )
        outs[bs] = out.read_bytes()
    assert outs[1] == outs[8]
    lines = outs[8].splitlines(keepends=True)
    assert len(lines) == 30

    out = tmp_path / "ray.jsonl"
    out.write_bytes(b"".join(lines[:7]) + lines[7][:10])  # killed while writing line 8
    engine = RayEngine(ModelSpec(checkpoint), batch_size=4, concurrency=2, num_threads=1, seed=7, **GEN)
    assert engine.name == "ray" and engine.concurrency == 2
    s = batch.run_job(
        str(src), str(out), engine, job=job(checkpoint), extra_meta={"engine": engine.name, "batch_size": 4}
    )
    engine.close()  # the engine found Ray running: it is left alone
    assert local_ray.is_initialized()
    assert out.read_bytes() == outs[8]
    assert (s.already_done, s.generated, s.repaired_partial_line) == (7, 23, True)
    assert s.rows_per_batch == [4, 4, 4, 4, 4, 3]  # one list per batch, as they finish
    assert json.loads((tmp_path / "ray.jsonl.meta.json").read_text())["engine"] == "ray"
    # Everything done: a second run has nothing to send to Ray.
    assert batch.run_job(str(src), str(out), engine, job=job(checkpoint)).generated == 0


@needs_ray
def test_generate_dataset_rows_are_the_local_rows(local_ray, checkpoint, lm):
    """ray.data in, ray.data out: a `text` column as the prompt, ids of one type, several sequences each."""
    from fastlogits.ray import generate_dataset

    gen = {**GEN, "num_return_sequences": 2}
    items = [
        {"key": f"k{i}", "text": f"prompt number {i} is" + " long" * (i % 4), "other": i} for i in range(13)
    ]
    ds = local_ray.data.from_items(items)
    out = generate_dataset(
        ds, checkpoint, field="text", id_field="key", concurrency=2, batch_size=5, seed=7, **gen
    ).take_all()
    examples = [batch.Example(it["key"], it["text"], 0) for it in items]
    want = {r["id"]: r for r in batch.generate_rows(lm, examples, seed=7, **gen)}
    got = {r["id"]: {k: (list(v) if not isinstance(v, str) else v) for k, v in r.items()} for r in out}
    assert set(got) == set(want)
    for k in want:
        assert list(got[k]) == ["id", "prompt", "generated", "num_tokens", "finish_reason"]
        assert {**got[k], "num_tokens": [int(n) for n in got[k]["num_tokens"]]} == want[k], k


@needs_ray
def test_an_actor_that_cannot_load_the_model_is_one_error(local_ray, tmp_path):
    from fastlogits.gpt2 import ModelLoadError
    from fastlogits.ray import RayEngine

    engine = RayEngine(str(tmp_path / "no-such-model"), batch_size=2, concurrency=1, seed=0, max_new_tokens=2)
    with pytest.raises(ModelLoadError, match="could not load GPT-2 weights from"):
        list(engine.run([batch.Example(0, "hello", 1)]))


@needs_ray
def test_cli_engine_ray_writes_the_local_rows(local_ray, checkpoint, tmp_path, capfd):
    """`fastlogits generate --input ... --engine ray --concurrency 2` (the Ray of this process) writes the
    file `--engine local` writes; the engine flags are refused where they do not apply."""
    from fastlogits.cli import main

    src = tmp_path / "in.jsonl"
    write_input(src, 12)
    flags = ["--model", checkpoint, "--seed", "7", "--max-new-tokens", "8", "--do-sample", "--top-k", "20",
             "--temperature", "0.9", "--batch-size", "4", "--quiet"]  # fmt: skip
    local, remote = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    assert main(["generate", "--input", str(src), "--output", str(local), *flags]) == 0
    code = main(["generate", "--input", str(src), "--output", str(remote), *flags, "--engine", "ray",
                 "--concurrency", "2"])  # fmt: skip
    assert code == 0, capfd.readouterr().err
    assert remote.read_bytes() == local.read_bytes()
    assert json.loads((tmp_path / "ray.jsonl.meta.json").read_text())["concurrency"] == 2
    capfd.readouterr()
    assert main(["generate", "a prompt", "--model", checkpoint, "--engine", "ray"]) == 2
    assert "--engine: only applies with --input" in capfd.readouterr().err
    assert main(["generate", "--input", str(src), "--output", str(tmp_path / "x"), "--model", checkpoint,
                 "--concurrency", "2"]) == 2  # fmt: skip
    assert "--concurrency: only applies with --engine ray" in capfd.readouterr().err
