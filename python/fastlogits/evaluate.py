"""Evaluation over a dataset of reference texts: continue each text's opening, score the continuation.

>>> from fastlogits.evaluate import evaluate_file
>>> report = evaluate_file("refs.jsonl", model="gpt2", prompt_words=50, seed=0)
>>> report.metrics["rougeL"], report.metrics["bleu"], report.metrics["perplexity_reference"]
>>> report.write("report.json"); print(report.table())

**Input**: JSON Lines, the reference text under ``field`` (default ``"text"``), an optional id under
``id_field`` (default ``"id"``; else the 0-based line number), read as :func:`fastlogits.batch.read_examples`
reads a generation job's input.

**Prompt and reference**: the prompt is the text's first ``prompt_words`` words (split on whitespace, joined
with single spaces: :func:`prompt_of`); the **reference** a continuation is scored against is the rest of the
text, the words after the prompt (joined with single spaces: :func:`split_reference`) -- the part the model is
asked to continue. Scoring the whole text instead would credit the model with the prompt's words, which it
was given. A text of ``prompt_words`` words or fewer leaves nothing to compare with: an error naming its line
(``skip_invalid``: counted and skipped).

**Generation**: the continuations are those of ``fastlogits generate --input`` (:class:`fastlogits.batch.LocalEngine`,
per-example seeds ``stream_key(seed, id)``): the same seed and settings give the same text, whatever the batch
size. The default settings are the seed notebooks': :data:`DEFAULT_GENERATION` (sampling, top-k 25, top-p 0.95,
temperature 0.7, 100 new tokens).

**Scores** (the libraries themselves, nothing re-implemented):

- ROUGE-1 / ROUGE-2 / ROUGE-L F1 of each continuation against its reference, by ``rouge_score``
  (``RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)``), and their means over the dataset
  (0 to 1);
- corpus BLEU by ``sacrebleu.corpus_bleu(predictions, [references])`` (0 to 100, its default 13a tokenizer);
- the perplexity of the reference texts (the whole texts as given), token-weighted over the corpus:
  ``exp(sum of next-token NLLs / number of tokens scored)`` (:func:`corpus_perplexity`; texts longer than the
  model's context use the sliding window of :meth:`fastlogits.gpt2.GPT2.nll`), and the same measure of the
  generated texts (prompt + continuation), and ``perplexity_gap = |log(generated / reference)|``: 0 when the
  model's text is as predictable as the human text (lower is better; ``fastlogits tune``'s criterion).

The scores need the ``eval`` extra: ``pip install 'fastlogits[eval]'`` (rouge-score, sacrebleu, tqdm).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import batch
from .batch import DatasetError, Example

__all__ = [
    "DEFAULT_GENERATION",
    "METRICS",
    "EvalExample",
    "Report",
    "corpus_nll",
    "corpus_perplexity",
    "evaluate_examples",
    "evaluate_file",
    "metric_value",
    "prompt_of",
    "read_references",
    "score",
    "split_reference",
]

#: The seed notebooks' generation settings, the defaults of :func:`evaluate_file` and ``fastlogits evaluate``.
DEFAULT_GENERATION: dict[str, Any] = {
    "do_sample": True,
    "top_k": 25,
    "top_p": 0.95,
    "temperature": 0.7,
    "max_new_tokens": 100,
}

#: What ``fastlogits tune --input`` can rank by, and whether higher is better.
METRICS: dict[str, bool] = {
    "perplexity-gap": False,
    "rouge1": True,
    "rouge2": True,
    "rougeL": True,
    "bleu": True,
}

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


# -- prompts and references ------------------------------------------------------------------------------


def prompt_of(text: str, words: int) -> str:
    """The first ``words`` words of ``text`` (split on whitespace), joined with single spaces."""
    return " ".join(text.split()[:words])


def split_reference(text: str, words: int) -> tuple[str, str]:
    """(prompt, reference): the first ``words`` words of ``text`` and the words after them, each joined with
    single spaces (the reference is ``""`` when the text has no more than ``words`` words)."""
    parts = text.split()
    return " ".join(parts[:words]), " ".join(parts[words:])


@dataclass(frozen=True)
class EvalExample:
    """One reference text: its id, 1-based line, the whole text, the prompt and the reference (the rest)."""

    id: Any
    line: int
    text: str
    prompt: str
    reference: str

    def prompt_example(self) -> Example:
        """The generation job's example: the prompt under this id."""
        return Example(self.id, self.prompt, self.line)


def read_references(
    path: str,
    *,
    field: str = "text",
    id_field: str = "id",
    prompt_words: int = 50,
    skip_invalid: bool = False,
) -> tuple[list[EvalExample], int]:
    """The reference texts of the JSON Lines file ``path`` split into prompt and reference, and the number of
    invalid lines skipped. A bad line (see :func:`fastlogits.batch.read_examples`) or a text of no more than
    ``prompt_words`` words is a :class:`fastlogits.batch.DatasetError` naming the line (``skip_invalid``:
    counted and skipped)."""
    if isinstance(prompt_words, bool) or not isinstance(prompt_words, int) or prompt_words < 1:
        raise DatasetError(f"`prompt_words` has to be a positive int, but is {prompt_words!r}")
    examples, skipped = batch.read_examples(path, field=field, id_field=id_field, skip_invalid=skip_invalid)
    out: list[EvalExample] = []
    for ex in examples:
        prompt, reference = split_reference(ex.text, prompt_words)
        if not reference:
            if not skip_invalid:
                n = len(ex.text.split())
                raise DatasetError(
                    f"{path}: line {ex.line}: {field!r} has {n} word{'s' if n != 1 else ''}: nothing is left after "
                    f"the {prompt_words} prompt words to compare the continuation with (give a smaller "
                    "--prompt-words, or skip such lines with --skip-invalid)"
                )
            skipped += 1
            continue
        out.append(EvalExample(ex.id, ex.line, ex.text, prompt, reference))
    if not out:
        raise DatasetError(
            f"{path}: no text is longer than the {prompt_words} prompt words ({skipped} lines skipped)"
        )
    return out, skipped


# -- scores ------------------------------------------------------------------------------------------------


def score(predictions: Sequence[str], references: Sequence[str]) -> dict[str, Any]:
    """ROUGE-1/2/L F1 (``rouge_score``, stemmed) of each prediction against its reference and their means,
    and corpus BLEU (``sacrebleu.corpus_bleu(predictions, [references])``, 0-100). Returns ``{"rouge1",
    "rouge2", "rougeL", "bleu", "per_sample": [{"rouge1", "rouge2", "rougeL"}, ...]}``."""
    import sacrebleu
    from rouge_score import rouge_scorer

    predictions, references = list(predictions), list(references)
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    if not predictions:
        raise ValueError("nothing to score: no predictions")
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    per_sample = []
    for pred, ref in zip(predictions, references):
        s = scorer.score(ref, pred)  # score(target, prediction)
        per_sample.append({k: float(s[k].fmeasure) for k in ROUGE_TYPES})
    out: dict[str, Any] = {k: sum(r[k] for r in per_sample) / len(per_sample) for k in ROUGE_TYPES}
    out["bleu"] = float(sacrebleu.corpus_bleu(predictions, [references]).score)
    out["per_sample"] = per_sample
    return out


def corpus_nll(
    lm: Any, texts: Sequence[str], stride: int | None = None, progress: Any = None
) -> list[tuple[float, int]]:
    """Each text's (NLL sum, tokens scored) by ``lm.nll`` (see :meth:`fastlogits.gpt2.GPT2.nll`)."""
    out = []
    for text in texts:
        out.append(lm.nll(text, stride))
        if progress is not None:
            progress.update(1)
    return out


def _perplexity(nlls: Sequence[tuple[float, int]]) -> float:
    total = sum(c for _, c in nlls)
    if total == 0:
        return float("nan")
    return math.exp(sum(s for s, _ in nlls) / total)


def corpus_perplexity(lm: Any, texts: Sequence[str], stride: int | None = None) -> float:
    """Token-weighted perplexity of ``texts``: ``exp(sum of next-token NLLs / number of tokens scored)`` over
    all of them (each text scored on its own, by :meth:`fastlogits.gpt2.GPT2.nll`; for one text that fits
    the context, ``exp(model(ids, labels=ids).loss)``). NaN when no text has 2 tokens."""
    return _perplexity(corpus_nll(lm, texts, stride))


def _gap(generated: float, reference: float) -> float:
    if not (generated > 0 and reference > 0) or math.isinf(generated) or math.isinf(reference):
        return float("nan")
    return abs(math.log(generated / reference))


def metric_value(metrics: dict[str, Any], metric: str) -> float:
    """The value of ``metric`` (a key of :data:`METRICS`) in a report's metrics."""
    return float(metrics["perplexity_gap" if metric == "perplexity-gap" else metric])


# -- the report ----------------------------------------------------------------------------------------------


@dataclass
class Report:
    """An evaluation: ``metrics`` (aggregates), ``samples`` (one row per text), ``settings``, ``versions``."""

    metrics: dict[str, Any]
    samples: list[dict[str, Any]]
    settings: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "metrics": self.metrics,
            "samples": self.samples,
            "settings": self.settings,
            "versions": self.versions,
        }

    def write(self, path: str) -> None:
        """The report as JSON (NaN written as null)."""
        with open(path, "w", encoding="utf-8") as f:
            json.dump(_no_nan(self.to_dict()), f, indent=1, ensure_ascii=False)
            f.write("\n")

    def table(self) -> str:
        """The aggregate metrics as a table (text)."""
        m = self.metrics
        rows = [
            ("ROUGE-1 F1 (mean)", f"{m['rouge1']:.4f}"),
            ("ROUGE-2 F1 (mean)", f"{m['rouge2']:.4f}"),
            ("ROUGE-L F1 (mean)", f"{m['rougeL']:.4f}"),
            ("BLEU (corpus)", f"{m['bleu']:.2f}"),
            ("perplexity of the references", f"{m['perplexity_reference']:.3f}"),
            ("perplexity of the generated texts", f"{m['perplexity_generated']:.3f}"),
            ("perplexity gap |log ratio|", f"{m['perplexity_gap']:.4f}"),
            (
                "texts",
                f"{m['samples']}"
                + (f" ({m['skipped_invalid']} skipped)" if m.get("skipped_invalid") else ""),
            ),
        ]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v:>10}" for k, v in rows)

    def plot(self, path: str) -> None:
        """A PNG (or any matplotlib format): the per-text ROUGE F1 distributions (box plots with the points)
        beside the aggregate scores (bars)."""
        _plot_report(self, path)


def _no_nan(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _no_nan(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_no_nan(v) for v in obj]
    return obj


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for dist in ("fastlogits", "torch", "transformers", "rouge-score", "sacrebleu"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def _bleu_signature() -> str:
    """sacrebleu.corpus_bleu's settings, in the words of its signature (|nrefs:1 here)."""
    import sacrebleu

    return f"nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:{sacrebleu.__version__}"


def evaluate_examples(
    lm: Any,
    examples: Sequence[EvalExample],
    *,
    seed: int = 0,
    batch_size: int = 8,
    stride: int | None = None,
    reference_nll: Sequence[tuple[float, int]] | None = None,
    progress: Callable[[int, str], Any] | None = None,
    engine: Any = None,
    **gen_kwargs: Any,
) -> Report:
    """Generates each example's continuation (``batch_size`` per batch, per-example seeds from ``seed``,
    ``gen_kwargs`` as given: no defaults added) and scores it (see the module doc). ``reference_nll``: the
    references' :func:`corpus_nll`, when already computed (``fastlogits tune`` scores them once).
    ``progress(total, description)``: makes a bar (``update(n, tokens)``, ``close()``) per stage.
    ``engine``: where the continuations are generated (e.g. a :class:`fastlogits.ray.RayEngine` made with
    the same seed and arguments; default: a :class:`fastlogits.batch.LocalEngine` over ``lm``); ``lm``
    computes the perplexities."""
    if int(gen_kwargs.get("num_return_sequences") or 1) != 1:
        raise DatasetError("evaluation scores one continuation per text: num_return_sequences has to be 1")
    if engine is None:
        engine = batch.LocalEngine(lm, batch_size=batch_size, seed=seed, **gen_kwargs)
    rows: list[dict[str, Any]] = []
    bar = progress(len(examples), "generate") if progress else None
    try:
        for chunk in engine.run([ex.prompt_example() for ex in examples]):
            rows.extend(chunk)
            if bar is not None:
                bar.update(len(chunk), sum(r["num_tokens"] for r in chunk))
    finally:
        if bar is not None:
            bar.close()
    scores = score([r["generated"] for r in rows], [ex.reference for ex in examples])
    bar = (
        progress(len(examples) * (1 if reference_nll is not None else 2), "perplexity") if progress else None
    )
    try:
        if reference_nll is None:
            reference_nll = corpus_nll(lm, [ex.text for ex in examples], stride, bar)
        generated_nll = corpus_nll(lm, [r["prompt"] + r["generated"] for r in rows], stride, bar)
    finally:
        if bar is not None:
            bar.close()
    samples = []
    for ex, row, s, ref, gen in zip(examples, rows, scores["per_sample"], reference_nll, generated_nll):
        samples.append(
            {
                "id": ex.id,
                "prompt": row["prompt"],
                "generated": row["generated"],
                "reference": ex.reference,
                **s,
                "num_tokens": row["num_tokens"],
                "finish_reason": row["finish_reason"],
                "perplexity_reference": _perplexity([ref]),
                "perplexity_generated": _perplexity([gen]),
            }
        )
    ppl_ref, ppl_gen = _perplexity(reference_nll), _perplexity(generated_nll)
    metrics = {
        **{k: scores[k] for k in ROUGE_TYPES},
        "bleu": scores["bleu"],
        "perplexity_reference": ppl_ref,
        "perplexity_generated": ppl_gen,
        "perplexity_gap": _gap(ppl_gen, ppl_ref),
        "samples": len(samples),
    }
    model, dtype = batch.model_identity(lm)
    settings = {
        "model": model,
        "dtype": dtype,
        "seed": seed,
        "batch_size": batch_size,
        "stride": stride or lm.n_positions // 2,
        "n_positions": lm.n_positions,
        "generation": dict(sorted(gen_kwargs.items())),
        "reference": "the words of each text after the prompt words (joined with single spaces)",
        "rouge": {"types": list(ROUGE_TYPES), "use_stemmer": True, "measure": "F1"},
        "bleu": _bleu_signature(),
        "perplexity": "token-weighted over the corpus: exp(sum of NLL / tokens scored); sliding window",
    }
    return Report(metrics, samples, settings, _versions())


def evaluate_file(
    input_path: str,
    *,
    lm: Any = None,
    model: str | None = "gpt2",
    random_weights: bool = False,
    tokenizer: str | None = None,
    device: str = "cpu",
    dtype: str = "float32",
    field: str = "text",
    id_field: str = "id",
    prompt_words: int = 50,
    batch_size: int = 8,
    seed: int = 0,
    stride: int | None = None,
    skip_invalid: bool = False,
    progress: Callable[[int, str], Any] | None = None,
    engine: Any = None,
    **gen_kwargs: Any,
) -> Report:
    """Evaluates ``lm`` (a loaded :class:`fastlogits.gpt2.GPT2`; else ``model`` / ``random_weights`` /
    ``tokenizer`` / ``device`` / ``dtype`` are loaded once the input is read) on the reference texts of
    ``input_path`` (see the module doc). Generation arguments: :data:`DEFAULT_GENERATION` updated with
    ``gen_kwargs`` (``do_sample=False`` for greedy decoding drops the sampling defaults). Prompts that leave
    no room for ``max_new_tokens`` within the context are an error naming the line (``skip_invalid``:
    skipped). Returns a :class:`Report`; ``settings`` records the input, fields and prompt length too."""
    from ._validate import check_seed

    seed = check_seed(seed)
    gen = {**DEFAULT_GENERATION, **gen_kwargs}
    if not gen.get("do_sample"):
        gen.pop("do_sample", None)
        for k in ("top_k", "top_p", "temperature"):
            if k not in gen_kwargs:
                gen.pop(k, None)
    examples, skipped = read_references(
        input_path, field=field, id_field=id_field, prompt_words=prompt_words, skip_invalid=skip_invalid
    )
    if lm is None:
        from .gpt2 import ModelSpec

        lm = ModelSpec(model, random_weights, tokenizer, device, dtype).load()
    examples, too_long = fit_references(
        examples,
        lm.tokenizer,
        lm.n_positions,
        gen.get("max_new_tokens"),
        path=input_path,
        skip_invalid=skip_invalid,
    )
    report = evaluate_examples(
        lm, examples, seed=seed, batch_size=batch_size, stride=stride, progress=progress, engine=engine, **gen
    )
    report.metrics["skipped_invalid"] = skipped + too_long
    report.settings.update(
        {
            "input": os.path.abspath(input_path),
            "field": field,
            "id_field": id_field,
            "prompt_words": prompt_words,
        }
    )
    return report


def fit_references(
    examples: Sequence[EvalExample],
    tokenizer: Any,
    n_positions: int | None,
    max_new_tokens: int | None,
    *,
    path: str,
    skip_invalid: bool = False,
) -> tuple[list[EvalExample], int]:
    """:func:`fastlogits.batch.fit_examples` for the prompts: those with no room for ``max_new_tokens`` are
    an error naming the line (``skip_invalid``: dropped)."""
    kept, dropped = batch.fit_examples(
        [ex.prompt_example() for ex in examples],
        tokenizer,
        n_positions,
        max_new_tokens,
        path=path,
        skip_invalid=skip_invalid,
    )
    lines = {ex.line for ex in kept}
    return [ex for ex in examples if ex.line in lines], dropped


# -- charts ------------------------------------------------------------------------------------------------


def _plot_report(report: Report, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = report.metrics
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5), gridspec_kw={"width_ratios": [3, 2]})
    data = [[s[k] for s in report.samples] for k in ROUGE_TYPES]
    labels = ["ROUGE-1", "ROUGE-2", "ROUGE-L"]
    ax1.boxplot(data, showmeans=True, widths=0.5)
    ax1.set_xticks(range(1, len(labels) + 1), labels)
    for i, values in enumerate(data, 1):  # every text, jittered
        xs = [i + 0.18 * ((j * 0.618) % 1 - 0.5) for j in range(len(values))]
        ax1.scatter(xs, values, s=12, alpha=0.45, color="#4c72b0", zorder=3)
    ax1.set_ylim(0, 1)
    ax1.set_ylabel("F1 per text")
    ax1.set_title(f"per-text ROUGE F1 ({m['samples']} texts; triangle: mean)")
    names = ["ROUGE-1", "ROUGE-2", "ROUGE-L", "BLEU / 100"]
    values = [m["rouge1"], m["rouge2"], m["rougeL"], m["bleu"] / 100]
    bars = ax2.bar(names, values, color=["#4c72b0", "#55a868", "#c44e52", "#8172b2"])
    for b, v in zip(bars, values):
        ax2.annotate(f"{v:.3f}", (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom", fontsize=9)
    ax2.set_ylim(0, min(1.05, max(0.1, max(values) * 1.25)))
    ax2.set_title("corpus scores")
    gen = report.settings.get("generation", {})
    sampling = ", ".join(f"{k}={gen[k]}" for k in ("top_k", "top_p", "temperature") if k in gen) or "greedy"
    fig.suptitle(
        f"{report.settings.get('model', '')}: {sampling}; perplexity of references "
        f"{m['perplexity_reference']:.2f}, of generated texts {m['perplexity_generated']:.2f}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_grid(results: Sequence[dict[str, Any]], metric: str, path: str, title: str = "") -> None:
    """A heat map per temperature: top-k (rows) by top-p (columns), colour and label the ``metric`` value
    of each cell (``results``: dicts with ``top_k``, ``top_p``, ``temperature`` and the metric's key)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    key = "perplexity_gap" if metric == "perplexity-gap" else metric
    ks = sorted({r["top_k"] for r in results})
    ps = sorted({r["top_p"] for r in results})
    ts = sorted({r["temperature"] for r in results})
    values = np.full((len(ts), len(ks), len(ps)), np.nan)
    for r in results:
        values[ts.index(r["temperature"]), ks.index(r["top_k"]), ps.index(r["top_p"])] = r[key]
    finite = values[np.isfinite(values)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    cmap = "viridis" if METRICS[metric] else "viridis_r"  # bright = better either way
    fig, axes = plt.subplots(
        1, len(ts), figsize=(2.5 + 1.3 * len(ps) * len(ts), 1.6 + 0.6 * len(ks)), squeeze=False
    )
    image = None
    for ax, t, grid in zip(axes[0], ts, values):
        image = ax.imshow(grid, cmap=cmap, vmin=lo, vmax=hi if hi > lo else lo + 1e-9, aspect="auto")
        ax.set_xticks(range(len(ps)), [str(p) for p in ps])
        ax.set_yticks(range(len(ks)), [str(k) for k in ks])
        ax.set_xlabel("top_p")
        ax.set_ylabel("top_k")
        ax.set_title(f"temperature {t}")
        for i in range(len(ks)):
            for j in range(len(ps)):
                v = grid[i, j]
                ax.text(
                    j,
                    i,
                    "—" if not np.isfinite(v) else f"{v:.3g}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if np.isfinite(v) and (v - lo) < 0.5 * (hi - lo) else "black",
                )
    if image is not None:
        fig.colorbar(image, ax=axes[0].tolist(), shrink=0.9)
    better = "higher" if METRICS[metric] else "lower"
    fig.suptitle(title or f"{metric} per cell ({better} is better)", fontsize=10, y=1.04)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
