"""The ``fastlogits`` command: generate, next-token, perplexity, evaluate, tune, bench.

Every command takes the model flags (``--model NAME|PATH`` or ``--random-weights``, ``--tokenizer PATH`` /
``$FASTLOGITS_TOKENIZER``). Generation flags use transformers' argument names with dashes. A mistake in the
arguments gives one line on stderr naming the argument, exit status 2, and no traceback; it is found before the
model's weights load where the arguments allow (text, --plot, --device, --model, --tokenizer, lengths against
the model's n_positions). Ctrl-C exits with status 130; a reader of stdout that goes away (``| head``) ends the
command quietly with status 141.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["main"]

EXIT_USAGE = 2
EXIT_FAILURE = 1
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a program whose reader went away


class UsageError(Exception):
    """A user mistake: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage dump
        raise UsageError(f"{self.prog}: {message}")


# -- argument types: checked before anything is loaded --------------------------------------------------


def _ranged(kind, lo=None, hi=None, lo_open=False, hi_open=False):
    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a valid {kind.__name__}") from None
        if isinstance(v, float) and not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"{text} is not a finite number")
        bad_lo = lo is not None and (v <= lo if lo_open else v < lo)
        bad_hi = hi is not None and (v >= hi if hi_open else v > hi)
        if bad_lo or bad_hi:
            left = "(" if lo_open else "["
            right = ")" if hi_open else "]"
            raise argparse.ArgumentTypeError(
                f"{text} is outside {left}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{right}"
            )
        return v

    return parse


def _early_stopping(text: str):
    low = text.lower()
    if low in ("true", "1", "yes"):
        return True
    if low in ("false", "0", "no"):
        return False
    if low == "never":
        return "never"
    raise argparse.ArgumentTypeError(f"{text!r} is not one of true, false, never")


positive_int = _ranged(int, 1)
non_negative_int = _ranged(int, 0)
unit = _ranged(float, 0.0, 1.0)
open_unit = _ranged(float, 0.0, 1.0, lo_open=True, hi_open=True)
positive_float = _ranged(float, 0.0, lo_open=True)


def _add_model_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument(
        "--model",
        default="gpt2",
        metavar="NAME|PATH",
        help="GPT-2 checkpoint: a local directory or a name in the local HF cache (default: gpt2)",
    )
    g.add_argument(
        "--random-weights",
        action="store_true",
        help="GPT-2 124M shape with random weights (no checkpoint needed; the text is meaningless)",
    )
    g.add_argument(
        "--tokenizer",
        default=None,
        metavar="PATH",
        help="tokenizer directory (default: $FASTLOGITS_TOKENIZER, else the model's)",
    )
    g.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    g.add_argument(
        "--dtype",
        default="float32",
        choices=("auto", "float32", "bfloat16"),
        help="weights' dtype: float32 (default; exact), bfloat16, or auto (bfloat16 where the device computes "
        "it natively: AVX-512 BF16 / AMX CPUs, bf16 GPUs)",
    )


def _add_generation_flags(p: argparse.ArgumentParser, grid: bool = False) -> None:
    g = p.add_argument_group("generation (transformers' generate() arguments)")
    g.add_argument("--max-new-tokens", type=positive_int, default=40)
    g.add_argument("--do-sample", action="store_true", help="sample instead of greedy / beam search")
    if not grid:
        g.add_argument("--temperature", type=positive_float)
        g.add_argument("--top-k", type=non_negative_int)
        g.add_argument("--top-p", type=unit)
    g.add_argument("--min-p", type=unit)
    g.add_argument("--typical-p", type=open_unit)
    g.add_argument(
        "--top-h", type=_ranged(float, 0.0, 1.0, lo_open=True), help="top-h (transformers), in (0, 1]"
    )
    g.add_argument("--top-n-sigma", type=positive_float, metavar="N", help="keep scores >= max - N * sigma")
    g.add_argument(
        "--dynatemp-range",
        type=_ranged(float, 0.0),
        metavar="R",
        help="dynamic temperature: between temperature - R and temperature + R, by the entropy",
    )
    g.add_argument("--dynatemp-exponent", type=_ranged(float, 0.0), metavar="E", help="(default 1)")
    g.add_argument(
        "--xtc-probability", type=unit, metavar="P", help="XTC: chance per step of removing top choices"
    )
    g.add_argument(
        "--xtc-threshold", type=unit, metavar="T", help="XTC: probability a top choice has (default 0.1)"
    )
    g.add_argument("--dry-multiplier", type=_ranged(float, 0.0), metavar="M", help="DRY penalty (0: off)")
    g.add_argument("--dry-base", type=_ranged(float, 1.0), metavar="B", help="DRY base (default 1.75)")
    g.add_argument(
        "--dry-allowed-length", type=positive_int, metavar="N", help="DRY: repeats allowed (default 2)"
    )
    g.add_argument(
        "--dry-penalty-last-n",
        type=_ranged(int, -1),
        metavar="N",
        help="DRY window (-1: all, default; 0: off)",
    )
    g.add_argument(
        "--dry-sequence-breakers",
        nargs="+",
        metavar="S",
        help='DRY: strings repeats do not cross (default: newline : " *)',
    )
    g.add_argument(
        "--mirostat", type=int, choices=(0, 2), help="2: draw with Mirostat 2.0 (needs --do-sample)"
    )
    g.add_argument(
        "--mirostat-tau", type=_ranged(float, 0.0), metavar="TAU", help="target surprise, bits (default 5)"
    )
    g.add_argument(
        "--mirostat-eta", type=_ranged(float, 0.0), metavar="ETA", help="learning rate (default 0.1)"
    )
    g.add_argument("--repetition-penalty", type=positive_float)
    g.add_argument("--no-repeat-ngram-size", type=non_negative_int)
    g.add_argument("--num-beams", type=positive_int)
    g.add_argument("--num-return-sequences", type=positive_int)
    g.add_argument("--length-penalty", type=_ranged(float))
    g.add_argument("--early-stopping", type=_early_stopping, metavar="{true,false,never}")
    g.add_argument("--seed", type=_ranged(int, 0, 2**64 - 1), help="makes sampling reproducible")


def _add_file_flags(p: argparse.ArgumentParser, default_field: str) -> None:
    g = p.add_argument_group("datasets (JSON Lines in, JSON Lines out; resumable: see fastlogits.batch)")
    g.add_argument("--input", metavar="FILE.jsonl", help="one JSON object per line")
    g.add_argument(
        "--output", metavar="FILE.jsonl", help="results, appended per batch (settings in FILE.meta.json)"
    )
    g.add_argument("--field", metavar="NAME", help=f"the text's field (default {default_field})")
    g.add_argument(
        "--id-field", metavar="NAME", help="the id's field (default id; absent: the 0-based line number)"
    )
    g.add_argument("--batch-size", type=positive_int, metavar="N", help="examples per batch (default 8)")
    g.add_argument("--skip-invalid", action="store_true", help="count and skip bad lines instead of stopping")
    g.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_engine_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("where the generation runs (with --input)")
    g.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local (this process, default) or ray (actors on a Ray cluster: pip install 'fastlogits[ray]')",
    )
    g.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="the cluster: auto (this node's), ray://HEAD:10001, or none to start a local Ray (default)",
    )
    g.add_argument(
        "--concurrency", type=positive_int, metavar="N", help="Ray actors (default: the cluster's CPUs)"
    )


def _check_engine_flags(args: argparse.Namespace) -> None:
    if args.engine != "ray":
        for flag in ("ray_address", "concurrency"):
            if getattr(args, flag) is not None:
                raise _arg_error(args, "--" + flag.replace("_", "-"), "only applies with --engine ray")
    else:
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise _arg_error(
                args, "--engine", "ray needs Ray, which is not installed: pip install 'fastlogits[ray]'"
            )


def _make_engine(args: argparse.Namespace, seed: int, kw: dict[str, Any], load):
    """The engine of a file job: this process (``load()`` gives the model) or Ray actors (each loads it)."""
    from . import batch

    if args.engine == "ray":
        from .ray import RayEngine

        return RayEngine(
            _model_spec(args),
            batch_size=args.batch_size or 8,
            concurrency=args.concurrency,
            address=args.ray_address,
            seed=seed,
            **kw,
        )
    return batch.LocalEngine(load(), batch_size=args.batch_size or 8, seed=seed, **kw)


_GEN_KEYS = (
    "max_new_tokens",
    "do_sample",
    "temperature",
    "top_k",
    "top_p",
    "min_p",
    "typical_p",
    "top_h",
    "top_n_sigma",
    "dynatemp_range",
    "dynatemp_exponent",
    "xtc_probability",
    "xtc_threshold",
    "mirostat",
    "mirostat_tau",
    "mirostat_eta",
    "dry_multiplier",
    "dry_base",
    "dry_allowed_length",
    "dry_penalty_last_n",
    "dry_sequence_breakers",
    "repetition_penalty",
    "no_repeat_ngram_size",
    "num_beams",
    "num_return_sequences",
    "length_penalty",
    "early_stopping",
)


def _gen_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    kw = {k: getattr(args, k) for k in _GEN_KEYS if getattr(args, k, None) is not None}
    if not kw.get("do_sample"):
        kw.pop("do_sample", None)
    beams = kw.get("num_beams", 1)
    if kw.get("num_return_sequences", 1) > beams and not kw.get("do_sample"):
        raise UsageError(
            f"--num-return-sequences {kw['num_return_sequences']} needs --do-sample or --num-beams >= it"
        )
    return kw


# -- checks before the model loads: a mistake is reported before minutes of loading or generating ------------

_PLOT_EXTRA = "pip install 'fastlogits[plot]'"
# A module the CLI imports -> the extra of pyproject.toml that installs it.
_EXTRAS = {
    "torch": "torch",
    "transformers": "torch",
    "matplotlib": "plot",
    "rouge_score": "eval",
    "sacrebleu": "eval",
    "nltk": "eval",  # rouge_score's stemmer
    "absl": "eval",  # rouge_score's dependency
    "ray": "ray",
}
_DEVICES = "cpu, cuda, cuda:N or mps"


def _arg_error(args: argparse.Namespace, name: str, message: str) -> UsageError:
    return UsageError(f"fastlogits {args.command}: argument {name}: {message}")


def _shown(path: str) -> str:
    """``path`` printable on stdout: its undecodable bytes (surrogate escapes) as U+FFFD."""
    try:
        return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return path.encode("utf-8", "replace").decode("utf-8")


def _check_text(args: argparse.Namespace, name: str, texts: Sequence[str]) -> None:
    """Text arguments must be UTF-8: Python hands undecodable bytes of argv over as surrogate escapes,
    which the tokenizer cannot take."""
    for i, text in enumerate(texts):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:
            which = f"prompt {i + 1}" if len(texts) > 1 else "the prompt" if name == "PROMPT" else "the text"
            c = ord(text[e.start])
            what = f"byte 0x{c - 0xDC00:02x}" if 0xDC80 <= c <= 0xDCFF else f"lone surrogate U+{c:04X}"
            offset = len(text[: e.start].encode("utf-8"))
            raise _arg_error(
                args, name, f"{which} is not valid UTF-8 ({what} at offset {offset}): give UTF-8 text"
            ) from None


def _check_writable(args: argparse.Namespace, name: str, path: str) -> None:
    if os.path.isdir(path):
        raise _arg_error(args, name, f"{path!r} is a directory: give a file name")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise _arg_error(args, name, f"cannot write {path!r}: the directory {parent!r} does not exist")
    if not os.access(path if os.path.exists(path) else parent, os.W_OK):
        raise _arg_error(args, name, f"cannot write {path!r}: permission denied")


def _check_plot(args: argparse.Namespace) -> str:
    """The file the chart goes to (matplotlib adds ``.png`` to a name without an extension)."""
    path = args.plot
    if not path:
        raise _arg_error(args, "--plot", "give a file name, e.g. --plot next.png")
    try:
        import matplotlib  # noqa: F401
        from matplotlib.backend_bases import FigureCanvasBase
    except ImportError:
        raise _arg_error(args, "--plot", f"needs matplotlib, which is not installed: {_PLOT_EXTRA}") from None
    if os.path.isdir(path):
        raise _arg_error(args, "--plot", f"{path!r} is a directory: give a file name")
    ext = os.path.splitext(path)[1][1:].lower()
    formats = sorted(FigureCanvasBase.get_supported_filetypes())
    if not ext:
        path += ".png"
    elif ext not in formats:
        raise _arg_error(
            args, "--plot", f"{path!r}: {ext!r} is not an image format (use one of: {', '.join(formats)})"
        )
    _check_writable(args, "--plot", path)
    return path


def _check_device(args: argparse.Namespace) -> None:
    import torch

    text = args.device
    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError, TypeError):
        raise _arg_error(args, "--device", f"{text!r} is not a device: use {_DEVICES}") from None
    if dev.type == "cpu":
        return
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise _arg_error(
                args,
                "--device",
                f"{text}: no CUDA device is available (torch.cuda.is_available() is False): use --device cpu",
            )
        n = torch.cuda.device_count()
        if dev.index is not None and dev.index >= n:
            raise _arg_error(
                args,
                "--device",
                f"{text}: there {'is 1 CUDA device' if n == 1 else f'are {n} CUDA devices'} "
                f"(cuda:0 .. cuda:{n - 1})",
            )
        return
    if dev.type in ("mps", "xpu"):
        backend = torch.backends.mps if dev.type == "mps" else getattr(torch, "xpu", None)
        if backend is None or not backend.is_available():
            raise _arg_error(
                args, "--device", f"{text}: no {dev.type.upper()} device is available: use --device cpu"
            )
        return
    raise _arg_error(args, "--device", f"{text!r} is not supported: use {_DEVICES}")


def _model_facts(args: argparse.Namespace):
    """(n_positions, tokenizer) of the model the arguments name, read without its weights; checks
    --device, --model and --tokenizer."""
    from .gpt2 import load_config, load_tokenizer

    _check_device(args)
    cfg = load_config(args.model, random_weights=args.random_weights)
    tok = load_tokenizer(args.tokenizer, args.model, random_weights=args.random_weights)
    n_pos = getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", None)
    return (int(n_pos) if n_pos else None), tok


def _n_tokens(tok, text: str) -> int:
    return len(tok(text)["input_ids"])


def _check_prompts(args, tok, n_pos, prompts: Sequence[str], max_new_tokens: int | None) -> None:
    """Every prompt has a token; the longest one plus ``max_new_tokens`` fits the model's n_positions."""
    counts = [_n_tokens(tok, p) for p in prompts]

    def which(i: int) -> str:
        return f"prompt {i + 1}" if len(prompts) > 1 else "the prompt"

    for i, n in enumerate(counts):
        if n == 0:
            raise _arg_error(args, "PROMPT", f"{which(i)} is empty: give some text")
    if n_pos is None:
        return
    longest = max(counts)
    i = counts.index(longest)
    if max_new_tokens is None:
        if longest > n_pos:
            raise _arg_error(
                args,
                "PROMPT",
                f"{which(i)} has {longest} tokens, more than the model's n_positions = {n_pos}",
            )
        return
    if longest >= n_pos:
        raise _arg_error(
            args,
            "PROMPT",
            f"{which(i)} has {longest} tokens: no room for new tokens within the model's "
            f"n_positions = {n_pos}; shorten it",
        )
    if longest + max_new_tokens > n_pos:
        raise _arg_error(
            args,
            "--max-new-tokens",
            f"{max_new_tokens}: {which(i)} ({longest} token{'s' if longest != 1 else ''}) plus the new tokens "
            f"exceed the model's n_positions = {n_pos}; use --max-new-tokens <= {n_pos - longest} or a "
            "shorter prompt",
        )


def _check_min_tokens(args, name: str, n: int, at_least: int = 2) -> None:
    if n < at_least:
        raise _arg_error(
            args,
            name,
            f"the text has {n} token{'s' if n != 1 else ''}; its perplexity needs at least {at_least}",
        )


def _load(args: argparse.Namespace, tokenizer=None):
    from .gpt2 import GPT2

    lm = GPT2.load(
        args.model,
        tokenizer=args.tokenizer if tokenizer is None else tokenizer,
        random_weights=args.random_weights,
        device=args.device,
        dtype=args.dtype,
    )
    if lm.random_weights:
        print("note: GPT-2 124M shape with RANDOM weights: the text below is meaningless", file=sys.stderr)
    return lm


# -- commands ----------------------------------------------------------------------------------------------


def cmd_generate(args: argparse.Namespace) -> int:
    if args.input is not None:
        if args.prompt:
            raise UsageError("generate: give PROMPT arguments or --input FILE, not both")
        return _generate_file(args)
    if not args.prompt:
        raise UsageError("generate: give a PROMPT (or --input FILE with --output FILE)")
    for flag in ("output", "field", "id_field", "batch_size", "ray_address", "concurrency"):
        if getattr(args, flag) is not None:
            raise _arg_error(args, "--" + flag.replace("_", "-"), "only applies with --input FILE")
    if args.engine != "local":
        raise _arg_error(args, "--engine", "only applies with --input FILE")
    kw = _gen_kwargs(args)
    _check_text(args, "PROMPT", args.prompt)
    n_pos, tok = _model_facts(args)
    _check_prompts(args, tok, n_pos, args.prompt, kw.get("max_new_tokens"))
    lm = _load(args, tok)
    stream = (
        sys.stdout.isatty()
        and len(args.prompt) == 1
        and kw.get("num_beams", 1) == 1
        and kw.get("num_return_sequences", 1) == 1
    )
    if stream:
        sys.stdout.write(args.prompt[0])
        for piece in lm.stream(args.prompt[0], seed=args.seed, **kw):
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
        return 0
    texts = lm.generate(args.prompt, seed=args.seed, **kw)
    n = kw.get("num_return_sequences", 1)
    for i, prompt in enumerate(args.prompt):
        for j in range(n):
            if len(args.prompt) > 1 or n > 1:
                print(f"--- prompt {i + 1}" + (f", sequence {j + 1}" if n > 1 else ""))
            print(prompt + texts[i * n + j])
    return 0


def _file_job_inputs(args: argparse.Namespace, default_field: str):
    """The checks of a file job before the model loads: --output, the input's lines, the prompts' lengths.
    Returns (examples, skipped, tokenizer)."""
    from . import batch

    if args.output is None:
        raise _arg_error(args, "--output", "required with --input: the JSON Lines file the results go to")
    try:
        batch.check_output(args.input, args.output)
    except batch.DatasetError as e:
        raise _arg_error(args, "--output", str(e)) from None
    field = args.field or default_field
    try:
        examples, skipped = batch.read_examples(
            args.input, field=field, id_field=args.id_field or "id", skip_invalid=args.skip_invalid
        )
    except batch.DatasetError as e:
        raise _arg_error(args, "--input", str(e)) from None
    return examples, skipped, field


def _model_spec(args: argparse.Namespace):
    """The model the flags name, as a value (what a Ray actor loads; its identity for a job's settings)."""
    from .gpt2 import ModelSpec

    return ModelSpec(
        None if args.random_weights else args.model,
        random_weights=args.random_weights,
        tokenizer=args.tokenizer,
        device=args.device,
        dtype=args.dtype,
    )


def _generate_file(args: argparse.Namespace) -> int:
    from . import batch
    from ._progress import Progress

    kw = _gen_kwargs(args)
    _check_engine_flags(args)
    examples, skipped, field = _file_job_inputs(args, "prompt")
    n_pos, tok = _model_facts(args)
    try:
        examples, too_long = batch.fit_examples(
            examples, tok, n_pos, kw.get("max_new_tokens"), path=args.input, skip_invalid=args.skip_invalid
        )
    except batch.DatasetError as e:
        raise _arg_error(args, "--input", str(e)) from None
    seed = 0 if args.seed is None else args.seed
    job = batch.job_settings(
        *_model_spec(args).identity(), seed=seed, field=field, id_field=args.id_field or "id", gen_kwargs=kw
    )
    try:
        batch.check_settings(args.output, job)
    except batch.DatasetError as e:
        raise _arg_error(args, "--output", str(e)) from None
    engine = _make_engine(args, seed, kw, lambda: _load(args, tok))
    try:
        s = batch.run_job(
            args.input,
            args.output,
            engine,
            job=job,
            examples=examples,
            skipped=skipped + too_long,
            progress=lambda total, done: Progress(total, initial=done, quiet=args.quiet),
            graceful_interrupt=True,
            extra_meta={
                "batch_size": engine.batch_size,
                "engine": engine.name,
                "concurrency": getattr(engine, "concurrency", 1),
            },
        )
    except KeyboardInterrupt:
        print(
            f"interrupted: the results so far are in {_shown(args.output)}; run the same command to resume",
            file=sys.stderr,
        )
        raise
    finally:
        close = getattr(engine, "close", None)
        if close is not None:
            close()
    print(f"{_shown(args.output)}: {s.describe()}", file=sys.stderr)
    return 0


def cmd_next_token(args: argparse.Namespace) -> int:
    from .gpt2 import readable_token

    _check_text(args, "PROMPT", [args.prompt])
    plot = _check_plot(args) if args.plot is not None else None
    n_pos, tok = _model_facts(args)
    _check_prompts(args, tok, n_pos, [args.prompt], None)
    lm = _load(args, tok)
    rows = lm.next_token_probs(args.prompt, top_k=args.top_k, temperature=args.temperature)
    width = max(len(readable_token(r.text)) for r in rows)
    print(f"next token after {args.prompt!r} (temperature {args.temperature}):")
    print(f"{'rank':>4}  {'token':<{width}}  {'id':>6}  {'prob':>9}")
    top = rows[0].prob if rows else 1.0
    for i, r in enumerate(rows, 1):
        bar = "█" * max(1, round(30 * r.prob / top)) if top > 0 else ""
        print(f"{i:>4}  {readable_token(r.text):<{width}}  {r.token_id:>6}  {r.prob:>9.6f}  {bar}")
    if plot is not None:
        try:
            _plot_next_token(rows, args.prompt, args.temperature, plot)
        except (OSError, RuntimeError, ValueError) as e:
            reason = (e.strerror if isinstance(e, OSError) else None) or str(e).splitlines()[0]
            raise _arg_error(args, "--plot", f"cannot write {plot!r}: {reason}") from None
        print(f"wrote {_shown(plot)}")
    return 0


def _plot_next_token(rows, prompt: str, temperature: float, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .gpt2 import readable_token

    fig, ax = plt.subplots(figsize=(8, 0.3 * len(rows) + 1.5))
    labels = [readable_token(r.text) for r in rows][::-1]
    ax.barh(labels, [r.prob for r in rows][::-1], color="#4c72b0")
    ax.set_xlabel("probability")
    short = prompt if len(prompt) < 60 else prompt[:57] + "..."
    ax.set_title(f"next token after {short!r} (T={temperature})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def cmd_perplexity(args: argparse.Namespace) -> int:
    if (args.text is None) == (args.file is None):
        raise UsageError("perplexity: give a TEXT or --file F (one of them)")
    if args.file is not None:
        try:
            with open(args.file, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise UsageError(
                f"perplexity: argument --file: cannot read {args.file!r}: {e.strerror}"
            ) from None
        except UnicodeDecodeError as e:
            raise UsageError(
                f"perplexity: argument --file: {args.file!r} is not UTF-8 text (byte 0x{e.object[e.start]:02x} "
                f"at offset {e.start}): give a UTF-8 text file"
            ) from None
        name = "--file"
    else:
        text = args.text
        name = "TEXT"
        _check_text(args, name, [text])
    _, tok = _model_facts(args)  # longer texts than n_positions are scored with a sliding window
    n = _n_tokens(tok, text)
    _check_min_tokens(args, name, n)
    lm = _load(args, tok)
    ppl = lm.perplexity(text)
    print(f"perplexity {ppl:.4f} over {n} tokens")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    """Grid search: each cell's continuations are scored by their perplexity; the best cell is the one
    whose mean perplexity is closest (in log space) to the validation text's: text as predictable as human
    text, neither degenerate (too low) nor incoherent (too high) — Holtzman et al., 2020. With --input
    FILE.jsonl instead of PROMPT / --validation: each cell is evaluated on the reference texts (see
    `fastlogits evaluate`) and the cells are ranked by --metric."""
    import numpy as np

    from ._progress import Progress

    kw = _gen_kwargs(args)
    for grid_key in ("top_k", "top_p", "temperature"):  # the grid's lists, not single values
        kw.pop(grid_key, None)
    kw["do_sample"] = True
    for k in ("num_beams", "num_return_sequences"):
        if kw.get(k, 1) != 1:
            raise UsageError(f"tune: argument --{k.replace('_', '-')}: the grid samples; use 1")
    if args.input is not None:
        return _tune_file(args, kw)
    if args.prompt is None:
        raise UsageError(
            "tune: give a PROMPT with --validation TEXT, or --input FILE.jsonl of reference texts"
        )
    if args.validation is None:
        raise _arg_error(
            args, "--validation", "required with PROMPT: the human text whose perplexity is the target"
        )
    for flag in ("metric", "field", "id_field", "prompt_words", "batch_size", "stride"):
        if getattr(args, flag) is not None:
            raise _arg_error(args, "--" + flag.replace("_", "-"), "only applies with --input FILE")
    if args.skip_invalid:
        raise _arg_error(args, "--skip-invalid", "only applies with --input FILE")
    repeats = 3 if args.repeats is None else args.repeats
    plot = _check_plot(args) if args.plot is not None else None
    _check_text(args, "PROMPT", [args.prompt])
    _check_text(args, "--validation", [args.validation])
    n_pos, tok = _model_facts(args)
    _check_prompts(args, tok, n_pos, [args.prompt], kw.get("max_new_tokens"))
    _check_min_tokens(args, "--validation", _n_tokens(tok, args.validation))
    lm = _load(args, tok)
    target = lm.perplexity(args.validation)
    cells = list(itertools.product(args.top_k, args.top_p, args.temperature))
    seed0 = 0 if args.seed is None else args.seed
    results = []
    with Progress(len(cells), unit="cells", quiet=args.quiet, desc="grid") as bar:
        for i, (k, p, t) in enumerate(cells):
            ppls = []
            # One batched call per cell: `repeats` rows, independent seeded streams.
            texts = lm.generate(
                [args.prompt] * repeats, seed=seed0 + i, top_k=k, top_p=p, temperature=t, **kw
            )
            for text in texts:
                full = args.prompt + text
                ppls.append(
                    lm.perplexity(full) if len(lm.tokenizer(full)["input_ids"]) >= 2 else float("nan")
                )
            ppls = np.array(ppls)
            results.append((k, p, t, float(np.nanmean(ppls)), float(np.nanstd(ppls))))
            bar.update(1)
    print(f"validation text perplexity: {target:.3f}")
    print(f"{'top_k':>5} {'top_p':>5} {'temp':>5}  {'perplexity (mean ± sd)':>24}  {'|log ratio|':>11}")
    scored = sorted(results, key=lambda r: abs(math.log(r[3] / target)))
    for k, p, t, mean, sd in results:
        dist = abs(math.log(mean / target))
        print(f"{k:>5} {p:>5} {t:>5}  {mean:>14.3f} ± {sd:<8.3f}  {dist:>11.4f}")
    k, p, t, mean, sd = scored[0]
    print(
        f"best: --top-k {k} --top-p {p} --temperature {t}  (perplexity {mean:.3f} ± {sd:.3f}, "
        f"{repeats} seeded repeats; validation {target:.3f})"
    )
    if plot is not None:
        cells_out = [
            {"top_k": k, "top_p": p, "temperature": t, "perplexity_gap": abs(math.log(mean / target))}
            for k, p, t, mean, _ in results
        ]
        _write_chart(args, plot, lambda: _plot_grid(cells_out, "perplexity-gap", plot))
    return 0


def _write_chart(args: argparse.Namespace, path: str, draw) -> None:
    try:
        draw()
    except (OSError, RuntimeError, ValueError) as e:
        reason = (e.strerror if isinstance(e, OSError) else None) or str(e).splitlines()[0]
        raise _arg_error(args, "--plot", f"cannot write {path!r}: {reason}") from None
    print(f"wrote {_shown(path)}")


def _plot_grid(results, metric: str, path: str) -> None:
    from .evaluate import plot_grid

    plot_grid(results, metric, path)


def _require_eval() -> None:
    """The scores need the eval extra: a missing one is reported (by main) before anything loads."""
    import rouge_score.rouge_scorer  # noqa: F401
    import sacrebleu  # noqa: F401


def _eval_inputs(args: argparse.Namespace, max_new_tokens: int | None):
    """The checks of an evaluation before the model loads: the reference texts (split into prompt and
    reference), --stride and the prompts' lengths. Returns (examples, skipped, tokenizer)."""
    from . import evaluate as ev

    field = args.field or "text"
    words = 50 if args.prompt_words is None else args.prompt_words
    try:
        examples, skipped = ev.read_references(
            args.input,
            field=field,
            id_field=args.id_field or "id",
            prompt_words=words,
            skip_invalid=args.skip_invalid,
        )
    except ev.DatasetError as e:
        raise _arg_error(args, "--input", str(e)) from None
    n_pos, tok = _model_facts(args)
    if args.stride is not None and n_pos is not None and args.stride > n_pos:
        raise _arg_error(args, "--stride", f"{args.stride} is more than the model's n_positions = {n_pos}")
    try:
        examples, too_long = ev.fit_references(
            examples, tok, n_pos, max_new_tokens, path=args.input, skip_invalid=args.skip_invalid
        )
    except ev.DatasetError as e:
        raise _arg_error(args, "--input", str(e)) from None
    return examples, skipped + too_long, tok


def _stage_progress(args: argparse.Namespace):
    from ._progress import Progress

    return lambda total, desc: Progress(total, unit="texts", desc=desc, quiet=args.quiet)


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Continue the opening (--prompt-words words) of each reference text of --input and score the
    continuation against the rest of the text: ROUGE-1/2/L F1 (rouge-score), corpus BLEU (sacrebleu), and
    the token-weighted perplexity of the reference texts and of the generated ones (see
    fastlogits.evaluate). Sampling defaults: top-k 25, top-p 0.95, temperature 0.7, 100 new tokens."""
    from . import evaluate as ev

    _require_eval()
    if args.greedy and args.do_sample:
        raise _arg_error(args, "--greedy", "not allowed with --do-sample")
    args.do_sample = not args.greedy
    kw = _gen_kwargs(args)
    if not args.greedy:
        for k, v in ev.DEFAULT_GENERATION.items():
            kw.setdefault(k, v)
    if kw.get("num_return_sequences", 1) != 1:
        raise _arg_error(
            args, "--num-return-sequences", "the evaluation scores one continuation per text: use 1"
        )
    if args.output is not None:
        _check_writable(args, "--output", args.output)
        if (
            os.path.exists(args.output)
            and os.path.exists(args.input)
            and os.path.samefile(args.output, args.input)
        ):
            raise _arg_error(args, "--output", f"{args.output!r} is the input file: give another name")
    plot = _check_plot(args) if args.plot is not None else None
    _check_engine_flags(args)
    examples, skipped, tok = _eval_inputs(args, kw.get("max_new_tokens"))
    lm = _load(args, tok)  # the perplexities are computed here, whatever the engine
    seed = 0 if args.seed is None else args.seed
    engine = _make_engine(args, seed, kw, lambda: lm)
    try:
        report = ev.evaluate_examples(
            lm,
            examples,
            seed=seed,
            batch_size=args.batch_size or 8,
            stride=args.stride,
            progress=_stage_progress(args),
            engine=engine,
            **kw,
        )
    finally:
        close = getattr(engine, "close", None)
        if close is not None:
            close()
    report.metrics["skipped_invalid"] = skipped
    report.settings.update(
        {
            "input": os.path.abspath(args.input),
            "field": args.field or "text",
            "id_field": args.id_field or "id",
            "prompt_words": 50 if args.prompt_words is None else args.prompt_words,
        }
    )
    print(report.table())
    if args.output is not None:
        try:
            report.write(args.output)
        except OSError as e:
            raise _arg_error(args, "--output", f"cannot write {args.output!r}: {e.strerror}") from None
        print(f"wrote {_shown(args.output)}")
    if plot is not None:
        _write_chart(args, plot, lambda: report.plot(plot))
    return 0


def _tune_file(args: argparse.Namespace, kw: dict[str, Any]) -> int:
    """tune --input: every cell of the grid evaluated on the reference texts, ranked by --metric."""
    from . import evaluate as ev
    from ._progress import Progress

    _require_eval()
    if args.prompt is not None:
        raise UsageError("tune: give PROMPT (with --validation) or --input FILE, not both")
    if args.validation is not None:
        raise _arg_error(args, "--validation", "not used with --input: the references are the input's texts")
    if args.repeats is not None:
        raise _arg_error(args, "--repeats", "not used with --input: each text is continued once per cell")
    metric = args.metric or "perplexity-gap"
    plot = _check_plot(args) if args.plot is not None else None
    examples, skipped, tok = _eval_inputs(args, kw.get("max_new_tokens"))
    lm = _load(args, tok)
    seed = 0 if args.seed is None else args.seed
    reference_nll = ev.corpus_nll(lm, [ex.text for ex in examples], args.stride)
    cells = list(itertools.product(args.top_k, args.top_p, args.temperature))
    results = []
    with Progress(len(cells), unit="cells", quiet=args.quiet, desc="grid") as bar:
        for k, p, t in cells:
            report = ev.evaluate_examples(
                lm,
                examples,
                seed=seed,
                batch_size=args.batch_size or 8,
                stride=args.stride,
                reference_nll=reference_nll,
                top_k=k,
                top_p=p,
                temperature=t,
                **kw,
            )
            results.append({"top_k": k, "top_p": p, "temperature": t, **report.metrics})
            bar.update(1)
    higher = ev.METRICS[metric]

    def rank_key(r):
        v = ev.metric_value(r, metric)
        return (not math.isfinite(v), -v if higher else v)

    ranked = sorted(results, key=rank_key)
    ref_ppl = results[0]["perplexity_reference"]
    print(
        f"{len(examples)} reference texts"
        + (f" ({skipped} skipped)" if skipped else "")
        + f", perplexity {ref_ppl:.3f}; ranked by {metric} ({'higher' if higher else 'lower'} is better)"
    )
    print(
        f"{'rank':>4} {'top_k':>5} {'top_p':>5} {'temp':>5}  {'rouge1':>7} {'rouge2':>7} {'rougeL':>7} "
        f"{'bleu':>6}  {'ppl gen':>9} {'ppl gap':>8}"
    )
    for i, r in enumerate(ranked, 1):
        print(
            f"{i:>4} {r['top_k']:>5} {r['top_p']:>5} {r['temperature']:>5}  {r['rouge1']:>7.4f} {r['rouge2']:>7.4f} "
            f"{r['rougeL']:>7.4f} {r['bleu']:>6.2f}  {r['perplexity_generated']:>9.3f} {r['perplexity_gap']:>8.4f}"
        )
    best = ranked[0]
    print(
        f"best: --top-k {best['top_k']} --top-p {best['top_p']} --temperature {best['temperature']}  "
        f"({metric} {ev.metric_value(best, metric):.4f})"
    )
    if plot is not None:
        _write_chart(args, plot, lambda: _plot_grid(results, metric, plot))
    return 0


def _check_out_dir(args: argparse.Namespace, out: str) -> None:
    """--out (made if missing) must be a writable directory, and the charts need matplotlib: both are
    checked before minutes of benchmarking."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise _arg_error(args, "--out", f"{out!r} exists and is not a directory")
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        raise _arg_error(args, "--out", f"cannot create the directory {out!r}: {e.strerror}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise _arg_error(args, "--out", f"cannot write into {out!r}: permission denied")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise _arg_error(
            args,
            "--out",
            f"the charts written to {out!r} need matplotlib, which is not installed: {_PLOT_EXTRA}",
        ) from None


def _benchmark_harness():
    """The benchmark harness of a source checkout (`benches/harness`, not part of the installed package):
    the checkout this package was installed from in development mode, or the current directory."""
    import importlib
    from pathlib import Path

    here = Path(__file__).resolve()
    for root in (here.parents[2], Path.cwd()):
        if (root / "benches" / "harness" / "__init__.py").is_file():
            sys.path.insert(0, str(root / "benches"))
            try:
                return importlib.import_module("harness.processors"), importlib.import_module(
                    "harness.generate"
                )
            finally:
                sys.path.remove(str(root / "benches"))
    raise UsageError(
        "bench: the benchmarks run from a source checkout of fastlogits (their harness is in its benches/ "
        "directory, not in the installed package): run `make bench` or `fastlogits bench` there"
    )


def cmd_bench(args: argparse.Namespace) -> int:
    """Processor benchmark, then end-to-end generation benchmark, both against transformers. Results are
    printed; files are written only with --out."""
    bench, bench_generate = _benchmark_harness()
    out = args.out
    argv = ["--quick"] if args.quick else []
    if out:
        _check_out_dir(args, out)
        argv += ["--out", out]
    print("## logits processors: fastlogits vs transformers (µs per step)\n")
    code = bench.main(argv)
    print("\n## generation: fastlogits.generate vs model.generate\n")
    return int(code or 0) or int(bench_generate.main(argv) or 0)


# fastlogits.evaluate.METRICS's names, here without importing it (and torch) to build the parser.
_METRICS = ("perplexity-gap", "rouge1", "rouge2", "rougeL", "bleu")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="fastlogits",
        description="GPT-2 text generation with Rust-accelerated logits processing (results of transformers).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser(
        "generate",
        help="continue prompts",
        description="Print each prompt and its continuation(s); streams token by token on a terminal.",
    )
    p.add_argument("prompt", nargs="*", metavar="PROMPT")
    _add_model_flags(p)
    _add_generation_flags(p)
    _add_file_flags(p, "prompt")
    _add_engine_flags(p)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser(
        "next-token",
        help="most probable next tokens",
        description="The most probable next tokens "
        "after PROMPT with their probabilities (whitespace shown as ␣, newlines as \\n).",
    )
    p.add_argument("prompt", metavar="PROMPT")
    p.add_argument("--top-k", type=positive_int, default=30, help="rows to show (default 30)")
    p.add_argument("--temperature", type=positive_float, default=1.0)
    p.add_argument("--plot", metavar="FILE.png", help="also write a bar chart")
    _add_model_flags(p)
    p.set_defaults(func=cmd_next_token)

    p = sub.add_parser(
        "perplexity",
        help="perplexity of a text",
        description="exp(mean next-token NLL) of TEXT "
        "(the value of model(ids, labels=ids).loss.exp(); sliding window beyond 1024 tokens).",
    )
    p.add_argument("text", nargs="?", metavar="TEXT")
    p.add_argument("--file", metavar="F", help="read the text from a file")
    _add_model_flags(p)
    p.set_defaults(func=cmd_perplexity)

    p = sub.add_parser(
        "evaluate",
        help="score generation against reference texts (ROUGE, BLEU, perplexity)",
        description=cmd_evaluate.__doc__,
    )
    p.add_argument(
        "--input", required=True, metavar="FILE.jsonl", help="reference texts, one JSON object per line"
    )
    p.add_argument(
        "--output", metavar="REPORT.json", help="the report: metrics, per-text rows, settings, versions"
    )
    p.add_argument("--plot", metavar="FILE.png", help="also write a chart of the scores")
    p.add_argument("--field", metavar="NAME", help="the reference text's field (default text)")
    p.add_argument(
        "--id-field", metavar="NAME", help="the id's field (default id; absent: the 0-based line number)"
    )
    p.add_argument(
        "--prompt-words",
        type=positive_int,
        metavar="N",
        help="words of each text given as the prompt (default 50)",
    )
    p.add_argument(
        "--stride",
        type=positive_int,
        metavar="N",
        help="sliding-window stride for perplexity (default n_positions/2)",
    )
    p.add_argument("--batch-size", type=positive_int, metavar="N", help="texts per batch (default 8)")
    p.add_argument("--skip-invalid", action="store_true", help="count and skip bad lines instead of stopping")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--greedy", action="store_true", help="greedy decoding instead of the default sampling")
    _add_model_flags(p)
    _add_generation_flags(p)
    _add_engine_flags(p)
    p.set_defaults(func=cmd_evaluate, max_new_tokens=100)

    p = sub.add_parser("tune", help="grid-search top_k / top_p / temperature", description=cmd_tune.__doc__)
    p.add_argument("prompt", nargs="?", metavar="PROMPT")
    p.add_argument(
        "--validation", metavar="TEXT", help="human text whose perplexity is the target (with PROMPT)"
    )
    g = p.add_argument_group("tuning on a dataset of reference texts (see fastlogits evaluate)")
    g.add_argument("--input", metavar="FILE.jsonl", help="reference texts: each cell is evaluated on them")
    g.add_argument(
        "--metric",
        choices=tuple(_METRICS),
        help="what ranks the cells (default perplexity-gap; lower is better, the ROUGE / BLEU scores higher)",
    )
    g.add_argument("--field", metavar="NAME", help="the reference text's field (default text)")
    g.add_argument("--id-field", metavar="NAME", help="the id's field (default id)")
    g.add_argument(
        "--prompt-words", type=positive_int, metavar="N", help="words given as the prompt (default 50)"
    )
    g.add_argument("--stride", type=positive_int, metavar="N", help="sliding-window stride for perplexity")
    g.add_argument("--batch-size", type=positive_int, metavar="N", help="texts per batch (default 8)")
    g.add_argument("--skip-invalid", action="store_true", help="count and skip bad lines instead of stopping")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--plot", metavar="FILE.png", help="also write a heat map of the grid")
    p.add_argument("--top-k", type=non_negative_int, nargs="+", default=[0, 25, 50], metavar="K")
    p.add_argument("--top-p", type=unit, nargs="+", default=[0.8, 0.9, 0.95], metavar="P")
    p.add_argument("--temperature", type=positive_float, nargs="+", default=[0.7, 0.8, 1.0], metavar="T")
    p.add_argument(
        "--repeats", type=positive_int, help="seeded generations per cell (default 3; with PROMPT)"
    )
    _add_model_flags(p)
    _add_generation_flags(p, grid=True)
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser(
        "bench",
        help="benchmarks against transformers",
        description="Processor benchmarks against transformers in the same run (table, JSON, PNG).",
    )
    p.add_argument("--quick", action="store_true", help="a subset, in about a minute")
    p.add_argument("--out", metavar="DIR", help="also write the results (tables, JSON, charts) into DIR")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from ._native import FastLogitsError

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never wait on the network
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return args.func(args)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # the reader went away (`fastlogits ... | head`): stop quietly, like cat does
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        except (OSError, ValueError):
            pass
        return EXIT_BROKEN_PIPE
    except ModuleNotFoundError as e:
        module = (e.name or "").split(".")[0]
        if module not in _EXTRAS:
            raise
        print(
            f"error: this command needs {module}, which is not installed: pip install 'fastlogits[{_EXTRAS[module]}]'",
            file=sys.stderr,
        )
        return EXIT_USAGE
    except (FastLogitsError, ValueError, OSError) as e:
        # InvalidArgumentError / ModelLoadError, transformers' own argument errors, unwritable files.
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"error: {msg}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except (MemoryError, RuntimeError) as e:
        # Not a usage mistake the checks above could name (e.g. torch cannot allocate --num-beams 100000
        # beams): one line, status 1.
        msg = str(e).splitlines()[0] if str(e) else ""
        print(f"error: {type(e).__name__}: {msg or 'out of memory'}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
