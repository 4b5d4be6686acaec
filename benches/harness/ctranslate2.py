"""The CTranslate2 adapter of the generation benchmark (``harness/generate.py``); CTranslate2 is an optional
dependency (``requirements-bench.txt``).

The same GPT-2 weights as the transformers model, converted with CTranslate2's own converter
(``ctranslate2.converters.TransformersConverter``), run by ``ctranslate2.Generator`` on the CPU. The decoding
modes are given as transformers ``generate`` kwargs (``harness.generate.MODES``, the one place their values
are written) and translated by :func:`ct2_kwargs` to ``generate_batch`` arguments:

=========================================================  ==================================================
transformers / fastlogits ``generate`` kwargs              CTranslate2 ``generate_batch``
=========================================================  ==================================================
(none: greedy)                                             ``beam_size=1, sampling_topk=1``
``do_sample, temperature, top_k, top_p,``                  ``sampling_temperature, sampling_topk,
``repetition_penalty, no_repeat_ngram_size``               sampling_topp, repetition_penalty,
                                                           no_repeat_ngram_size``
``num_beams=K``                                            ``beam_size=K, num_hypotheses=1,
                                                           length_penalty=1.0, patience=1.0``
=========================================================  ==================================================

CTranslate2's processors are its own: the knobs are the same, the details (the order of the processors,
whether the prompt counts for the penalties, the beam's stopping rule) need not be, so only greedy decoding is
expected to give the same tokens as transformers (it does, in float32: the benchmark prints the count).

Lengths: the prompt is forwarded at once (``include_prompt_in_result=False``) and every row gets exactly
``max_new_tokens`` new tokens (``min_length = max_length = max_new_tokens``: the end token cannot be chosen
before the last step). transformers and fastlogits stop a row at GPT-2's EOS (50256, also the pad token), which
a random-weight model may emit; :func:`generated_counts` counts what each side actually produced and the
benchmark computes tokens per second from those counts.

Peak RSS: :func:`measure_peak_rss` runs one implementation in a fresh Python process (load the model, generate
once) and reports, in MiB: ``peak_rss_mib``, that process's ``VmHWM`` over its whole life (the high-water mark
of its resident set: interpreter, libraries, weights, loading, generating); ``rss_loaded_mib``, its ``VmRSS``
once the model is loaded (transformers maps the safetensors weights from the file and would page them in only
at the first forward, so the child reads every weight once before this); and, where Linux lets the high-water
mark be reset (``/proc/self/clear_refs``), ``generate_peak_rss_mib``, the high-water mark of the generation
alone (``generate_peak_rss_mib - rss_loaded_mib``: the working memory of the decoding loop, KV cache included).
The CTranslate2 child imports neither torch nor transformers.

This module shares its name with the ``ctranslate2`` package: import it as ``harness.ctranslate2`` (with
``benches/`` on ``sys.path``), never with ``benches/harness/`` itself on the path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

__all__ = [
    "SKIP_MESSAGE",
    "EOS",
    "available",
    "version",
    "supported_compute_types",
    "compute_types_for",
    "save_hf",
    "convert",
    "ct2_kwargs",
    "Generator",
    "generated_counts",
    "id_lists",
    "memory_status",
    "reset_peak_rss",
    "measure_peak_rss",
]

SKIP_MESSAGE = "CTranslate2 rows skipped: pip install -r requirements-bench.txt"
EOS = 50256  # GPT-2's <|endoftext|>: EOS, BOS and (in the benchmarks) the pad token
HERE = Path(__file__).resolve().parent
BENCHES = HERE.parent
BUNDLED_TOKENIZER = BENCHES.parent / "python" / "fastlogits" / "data" / "gpt2_tokenizer"


def available() -> str | None:
    """None when ``ctranslate2`` can be imported, else the one-line message to print instead of its rows."""
    try:
        import ctranslate2  # noqa: F401
    except Exception:  # ImportError, or a broken install (missing shared library...)
        return SKIP_MESSAGE
    return None


def version() -> str | None:
    try:
        import ctranslate2
    except Exception:
        return None
    return ctranslate2.__version__


def supported_compute_types(device: str = "cpu") -> set[str]:
    import ctranslate2

    return set(ctranslate2.get_supported_compute_types(device))


def compute_types_for(dtype: str) -> tuple[list[tuple[str, str]], str | None]:
    """The CTranslate2 variants to run beside a transformers model of ``dtype`` ("float32" or "bfloat16"):
    a list of (label, compute type), and a note for what this CPU build cannot run (or None).

    float32: the float32 model and its int8 quantization (int8 weights, float32 activations).
    bfloat16: "bfloat16" and "int8_bfloat16" where CTranslate2 supports them on this device; CTranslate2's
    CPU backend has no bfloat16 kernels (4.x: ``get_supported_compute_types("cpu")`` lists none), and a
    model converted with ``quantization="bfloat16"`` is then computed in float32."""
    supported = supported_compute_types("cpu")
    if dtype == "float32":
        return [("CT2 fp32", "float32"), ("CT2 int8", "int8")], None
    if dtype != "bfloat16":
        raise ValueError(f"dtype {dtype!r}: expected 'float32' or 'bfloat16'")
    out = [
        (f"CT2 {ct.replace('bfloat16', 'bf16')}", ct)
        for ct in ("bfloat16", "int8_bfloat16")
        if ct in supported
    ]
    note = None
    if not out:
        note = (
            "CTranslate2 bf16 rows skipped: no bfloat16 compute type on this CPU build "
            f"(supported: {', '.join(sorted(supported))})"
        )
    return out, note


def _tokenizer_path(tokenizer: str | os.PathLike[str] | None) -> str:
    if tokenizer is not None:
        return os.fspath(tokenizer)
    env = os.environ.get("FASTLOGITS_TOKENIZER")
    if env:
        return env
    if BUNDLED_TOKENIZER.exists():
        return str(BUNDLED_TOKENIZER)
    from fastlogits.gpt2 import BUNDLED_TOKENIZER as bundled  # an installed fastlogits, outside a checkout

    return bundled


def save_hf(model, out_dir: str | os.PathLike[str], tokenizer: Any = None) -> str:
    """``model.save_pretrained(out_dir)`` plus a GPT-2 tokenizer beside it (the converter reads the vocabulary
    and the BOS/EOS tokens from it). ``tokenizer``: a tokenizer object, a directory, or None for
    ``$FASTLOGITS_TOKENIZER`` / the copy bundled with fastlogits."""
    from transformers import AutoTokenizer

    out_dir = os.fspath(out_dir)
    model.save_pretrained(out_dir)
    if tokenizer is None or isinstance(tokenizer, (str, os.PathLike)):
        tokenizer = AutoTokenizer.from_pretrained(_tokenizer_path(tokenizer))
    if len(tokenizer) != model.config.vocab_size:
        raise ValueError(f"tokenizer has {len(tokenizer)} tokens, the model {model.config.vocab_size}")
    tokenizer.save_pretrained(out_dir)
    return out_dir


def convert(
    model,
    out_dir: str | os.PathLike[str],
    quantization: str = "float32",
    *,
    hf_dir: str | os.PathLike[str] | None = None,
    tokenizer: Any = None,
    force: bool = True,
) -> str:
    """Converts a transformers ``GPT2LMHeadModel`` to a CTranslate2 model directory with CTranslate2's
    converter; returns ``out_dir``. ``quantization``: the weights' storage type ("float32", "int8",
    "bfloat16", ... as the converter accepts). ``hf_dir``: a directory already written by :func:`save_hf`
    (else the model is saved into a temporary one first)."""
    import ctranslate2

    out_dir = os.fspath(out_dir)
    if hf_dir is not None:
        ctranslate2.converters.TransformersConverter(os.fspath(hf_dir)).convert(
            out_dir, quantization=quantization, force=force
        )
        return out_dir
    with tempfile.TemporaryDirectory(prefix="fastlogits-hf-") as tmp:
        save_hf(model, tmp, tokenizer)
        ctranslate2.converters.TransformersConverter(tmp).convert(
            out_dir, quantization=quantization, force=force
        )
    return out_dir


def id_lists(ids: Any) -> list[list[int]]:
    """Token ids as nested lists (a tensor, an array, or already lists)."""
    return ids.tolist() if hasattr(ids, "tolist") else [list(map(int, r)) for r in ids]


def ct2_kwargs(hf_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The ``generate_batch`` arguments of a decoding mode given as transformers ``generate`` kwargs (greedy,
    sampling with temperature / top-k / top-p / repetition penalty / no-repeat n-grams, beam search); the
    defaults of transformers' ``GenerationConfig`` where a knob is not given (top-k 50 when sampling)."""
    kw = dict(hf_kwargs)
    beams = kw.pop("num_beams", 1)
    sample = kw.pop("do_sample", False)
    out: dict[str, Any] = dict(beam_size=beams)
    if beams > 1:
        if sample:
            raise ValueError("beam sampling has no CTranslate2 equivalent")
        out.update(num_hypotheses=1, length_penalty=1.0, patience=1.0)
    elif sample:
        out.update(
            sampling_temperature=kw.pop("temperature", 1.0),
            sampling_topk=kw.pop("top_k", 50),
            sampling_topp=kw.pop("top_p", 1.0),
        )
    else:
        out.update(sampling_topk=1)
    for name in ("repetition_penalty", "no_repeat_ngram_size"):
        if name in kw:
            out[name] = kw.pop(name)
    if kw:
        raise ValueError(f"no CTranslate2 equivalent for {sorted(kw)}")
    return out


class Generator:
    """A ``ctranslate2.Generator`` and the converted vocabulary (``vocabulary.json``: id -> token string)."""

    def __init__(
        self, path: str | os.PathLike[str], compute_type: str = "float32", threads: int | None = None
    ):
        import ctranslate2

        if threads is None:
            try:
                import torch

                threads = torch.get_num_threads()
            except ImportError:
                threads = os.cpu_count() or 1
        self.path = os.fspath(path)
        self.requested_compute_type = compute_type
        self.threads = threads
        self.generator = ctranslate2.Generator(
            self.path, device="cpu", compute_type=compute_type, inter_threads=1, intra_threads=threads
        )
        with open(os.path.join(self.path, "vocabulary.json"), encoding="utf-8") as f:
            self.vocab: list[str] = json.load(f)

    @property
    def compute_type(self) -> str:
        """The compute type CTranslate2 selected (e.g. "int8_float32" for a requested "int8")."""
        return self.generator.compute_type

    def tokens(self, ids: Any) -> list[list[str]]:
        return [[self.vocab[i] for i in row] for row in id_lists(ids)]

    def generate(
        self, ids: Any, max_new_tokens: int, hf_kwargs: dict[str, Any], seed: int | None = 0
    ) -> list[list[int]]:
        """The new token ids of each row of ``ids`` (a (B, T) LongTensor or nested lists of GPT-2 token ids),
        exactly ``max_new_tokens`` each, the prompt not included; ``hf_kwargs``: the decoding mode as
        transformers ``generate`` kwargs (see :func:`ct2_kwargs`)."""
        import ctranslate2

        if seed is not None:
            ctranslate2.set_random_seed(seed)
        results = self.generator.generate_batch(
            self.tokens(ids),
            max_length=max_new_tokens,
            min_length=max_new_tokens,
            include_prompt_in_result=False,
            **ct2_kwargs(hf_kwargs),
        )
        return [r.sequences_ids[0] for r in results]


def generated_counts(out: Any, prompt_len: int, eos: int | None = EOS) -> list[int]:
    """New tokens each row of a ``generate`` output actually produced: up to and including its first EOS
    (after which transformers pads with ``pad_token_id``), else all of them. ``out``: a (B, T + n) tensor or
    a ``GenerateOutput`` (``.sequences``), or the lists returned by :meth:`Generator.generate` (``prompt_len`` 0)."""
    seqs = getattr(out, "sequences", out)
    rows = id_lists(seqs)
    counts = []
    for row in rows:
        new = row[prompt_len:]
        n = len(new)
        if eos is not None and eos in new:
            n = new.index(eos) + 1
        counts.append(n)
    return counts


# --------------------------------------------------------------------------------------------- peak RSS


def memory_status() -> dict[str, float]:
    """This process's VmRSS and VmHWM (peak) in MiB, from /proc/self/status (ru_maxrss where there is none)."""
    out: dict[str, float] = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(value.split()[0]) / 1024
    except OSError:
        import resource

        out["VmHWM"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def reset_peak_rss() -> bool:
    """Resets this process's VmHWM to its current RSS (Linux: ``5`` into ``/proc/self/clear_refs``)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def measure_peak_rss(spec: dict[str, Any], timeout: float = 600) -> dict[str, Any]:
    """Runs one implementation in a fresh Python process: loads the model, generates once, and returns
    ``{"peak_rss_mib", "rss_loaded_mib", "generate_peak_rss_mib", "tokens"}`` (MiB; see the module's
    docstring), or ``{"error": ...}``. ``spec``: ``impl``
    ("transformers", "fastlogits" or "ct2"), ``kwargs`` (the decoding mode as transformers ``generate``
    kwargs), ``ids`` (nested lists), ``max_new_tokens``, ``threads``; ``hf_dir`` and ``dtype`` for transformers / fastlogits; ``ct2_dir`` and ``compute_type`` for
    CTranslate2."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "from harness.ctranslate2 import _child_main; _child_main(sys.argv[2])"
    )
    try:
        p = subprocess.run(
            [sys.executable, "-c", code, str(BENCHES), json.dumps(spec)],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in reversed(p.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    tail = (p.stderr.strip().splitlines() or ["no output"])[-1]
    return {"error": f"exit {p.returncode}: {tail}"}


def _child_main(spec_json: str) -> None:
    spec = json.loads(spec_json)
    impl, hf_kwargs, ids, n = spec["impl"], spec["kwargs"], spec["ids"], spec["max_new_tokens"]
    if impl == "ct2":
        gen = Generator(spec["ct2_dir"], spec["compute_type"], threads=spec["threads"])
        loaded = memory_status()
        reset = reset_peak_rss()
        tokens = sum(generated_counts(gen.generate(ids, n, hf_kwargs), 0, eos=None))
    else:
        import torch
        from transformers import GPT2LMHeadModel

        torch.set_num_threads(spec["threads"])
        dtype = getattr(torch, spec.get("dtype", "float32"))
        model = GPT2LMHeadModel.from_pretrained(spec["hf_dir"], dtype=dtype).eval()
        with torch.no_grad():  # page the weights in: from_pretrained maps them from the file, lazily
            for t in [*model.parameters(), *model.buffers()]:
                t.sum()
        t_ids = torch.tensor(ids, dtype=torch.long)
        kwargs = dict(attention_mask=torch.ones_like(t_ids), max_new_tokens=n, pad_token_id=EOS, **hf_kwargs)
        if impl == "fastlogits":
            import fastlogits as fl

            def run():
                return fl.generate(model, t_ids, seed=0, **kwargs)
        elif impl == "transformers":

            def run():
                with torch.no_grad():
                    return model.generate(t_ids, **kwargs)
        else:
            raise ValueError(f"impl {impl!r}")
        loaded = memory_status()
        reset = reset_peak_rss()
        tokens = sum(generated_counts(run(), t_ids.shape[1]))
    peak = memory_status()
    print(
        json.dumps(
            {
                "peak_rss_mib": max(loaded.get("VmHWM", 0.0), peak.get("VmHWM", 0.0)),
                "rss_loaded_mib": loaded.get("VmRSS"),
                "generate_peak_rss_mib": peak.get("VmHWM") if reset else None,
                "tokens": tokens,
                "torch_loaded": "torch" in sys.modules,
            }
        )
    )
