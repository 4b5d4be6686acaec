"""GPT-2 with its tokenizer, for text in and text out: generation, next-token probabilities, perplexity.

Loading never touches the network: a name is looked up in the local Hugging Face cache only, a path is read
from disk, and ``random_weights=True`` builds the real 124M architecture with random weights (the compute
per token of GPT-2 small; the text is meaningless). The tokenizer comes from a local path, the checkpoint,
or the copy of GPT-2's tokenizer bundled with fastlogits.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ._native import InvalidArgumentError
from .processors import TemperatureLogitsWarper
from .sampling import top_logprobs
from .transformers.generation import generate as _generate
from .transformers.generation import stream as _stream

__all__ = [
    "GPT2",
    "Continuation",
    "ModelSpec",
    "TokenProb",
    "ModelLoadError",
    "DTYPES",
    "load_config",
    "load_tokenizer",
    "native_bf16",
    "readable_token",
    "resolve_dtype",
]

TOKENIZER_ENV = "FASTLOGITS_TOKENIZER"


class ModelLoadError(InvalidArgumentError):
    """The model or tokenizer could not be loaded (the message says how to provide one)."""


DTYPES = ("auto", "float32", "bfloat16")
_DTYPE_NAMES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


def native_bf16(device: str | torch.device = "cpu") -> bool:
    """Whether ``device`` computes bfloat16 natively: a CUDA GPU that supports it, or a CPU with AVX-512 BF16
    or AMX (elsewhere bfloat16 is emulated in float32 and slower than float32)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if dev.type != "cpu":
        return False
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_dtype(dtype: str | torch.dtype | None, device: str | torch.device = "cpu") -> torch.dtype:
    """The weights' dtype for ``dtype``: ``"float32"`` (the default: results equal transformers' float32
    model), ``"bfloat16"`` (equal to transformers running the same bfloat16 model), ``"auto"`` (bfloat16
    where :func:`native_bf16` holds, else float32), or a ``torch.dtype`` of those two."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        if dtype in (torch.float32, torch.bfloat16):
            return dtype
    elif isinstance(dtype, str):
        name = dtype.strip().lower()
        if name == "auto":
            return torch.bfloat16 if native_bf16(device) else torch.float32
        if name in _DTYPE_NAMES:
            return _DTYPE_NAMES[name]
    raise InvalidArgumentError(
        f"`dtype` has to be one of {', '.join(DTYPES)} (or torch.float32 / torch.bfloat16), got {dtype!r}"
    )


@dataclass(frozen=True)
class Continuation:
    """One generated continuation: its text, its token ids (through the EOS token when it stopped on one)
    and why it ended (``"eos"`` or ``"length"``)."""

    text: str
    token_ids: list[int]
    finish_reason: str

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)


@dataclass(frozen=True)
class TokenProb:
    token_id: int
    text: str
    prob: float
    logprob: float


def readable_token(text: str) -> str:
    """A token's text with whitespace made visible: ' the' -> '␣the', '\\n' -> '\\\\n'."""
    out = text.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")
    return out.replace(" ", "␣") if out else "''"


#: GPT-2's tokenizer (vocab.json + merges.txt), shipped with fastlogits for offline use.
BUNDLED_TOKENIZER = os.path.join(os.path.dirname(__file__), "data", "gpt2_tokenizer")


def _has_tokenizer_files(path: str | None) -> bool:
    return (
        bool(path)
        and os.path.isdir(path)
        and any(os.path.exists(os.path.join(path, f)) for f in ("tokenizer.json", "vocab.json"))
    )


def _load_tokenizer(path: str | None, model_dir: str | None):
    """--tokenizer, else $FASTLOGITS_TOKENIZER, else the checkpoint's own files, else the bundled GPT-2
    tokenizer (all GPT-2 sizes share it)."""
    from transformers import AutoTokenizer

    path = path or os.environ.get(TOKENIZER_ENV)
    if not path:
        path = model_dir if _has_tokenizer_files(model_dir) else BUNDLED_TOKENIZER
    try:
        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except Exception as e:  # transformers raises OSError / ValueError / HF errors
        raise ModelLoadError(
            f"could not load a tokenizer from {path!r} ({type(e).__name__}): give a local tokenizer directory "
            f"(--tokenizer PATH or {TOKENIZER_ENV}=PATH)"
        ) from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok


_NO_MODEL = "no model: pass --model NAME|PATH or --random-weights"


def _cannot_load(name_or_path: str, e: Exception) -> str:
    return (
        f"could not load GPT-2 weights from {name_or_path!r} ({type(e).__name__}): nothing is downloaded; "
        "give a local checkpoint directory (--model PATH), put the model in the Hugging Face cache, "
        "or use --random-weights (GPT-2 124M shape, random weights) with --tokenizer PATH"
    )


def load_config(name_or_path: str | None = "gpt2", *, random_weights: bool = False):
    """The model's ``GPT2Config`` without its weights (``n_positions``, ...): for ``random_weights`` GPT-2
    small's, else the checkpoint's ``config.json`` (local directory or local Hugging Face cache only)."""
    from transformers import GPT2Config

    if random_weights:
        return GPT2Config()
    if not name_or_path:
        raise ModelLoadError(_NO_MODEL)
    try:
        return GPT2Config.from_pretrained(name_or_path, local_files_only=True)
    except Exception as e:
        raise ModelLoadError(_cannot_load(name_or_path, e)) from None


def load_tokenizer(path: str | None, name_or_path: str | None = None, *, random_weights: bool = False):
    """The tokenizer :meth:`GPT2.load` uses for these arguments: ``path`` or ``$FASTLOGITS_TOKENIZER``,
    else the checkpoint directory's, else the bundled GPT-2 tokenizer."""
    local_dir = None
    if not random_weights and name_or_path and os.path.isdir(name_or_path):
        local_dir = name_or_path
    return _load_tokenizer(path, local_dir)


class GPT2:
    """A GPT-2 causal LM and its tokenizer (see :meth:`load`)."""

    def __init__(self, model, tokenizer, *, random_weights: bool = False):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.random_weights = random_weights

    @classmethod
    def load(
        cls,
        name_or_path: str | None = "gpt2",
        *,
        tokenizer: str | Any | None = None,
        random_weights: bool = False,
        device: str = "cpu",
        seed: int = 0,
        dtype: str | torch.dtype | None = "float32",
    ) -> GPT2:
        """``name_or_path``: a local checkpoint directory, or a name (``gpt2``, ``distilgpt2``,
        ``gpt2-medium``...) found in the local Hugging Face cache. ``random_weights``: GPT-2 small's shape
        with random weights (seeded). The tokenizer: ``tokenizer`` (a path, or a tokenizer already loaded
        with :func:`load_tokenizer`) or ``$FASTLOGITS_TOKENIZER``, else the checkpoint's, else the bundled
        GPT-2 tokenizer. ``dtype``: see :func:`resolve_dtype` (default float32)."""
        from transformers import GPT2Config, GPT2LMHeadModel

        dt = resolve_dtype(dtype, device)

        def the_tokenizer():
            if tokenizer is None or isinstance(tokenizer, str):
                return load_tokenizer(tokenizer, name_or_path, random_weights=random_weights)
            return tokenizer

        if random_weights:
            tok = the_tokenizer()
            torch.manual_seed(seed)
            model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok))).to(device=device, dtype=dt)
            return cls(model, tok, random_weights=True)
        if not name_or_path:
            raise ModelLoadError(_NO_MODEL)
        try:
            model = GPT2LMHeadModel.from_pretrained(name_or_path, local_files_only=True).to(
                device=device, dtype=dt
            )
        except Exception as e:
            raise ModelLoadError(_cannot_load(name_or_path, e)) from None
        return cls(model, the_tokenizer())

    @property
    def n_positions(self) -> int:
        return int(self.model.config.n_positions)

    def encode(self, prompts: str | Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-padded ``(input_ids, attention_mask)`` for one prompt or a list."""
        texts = [prompts] if isinstance(prompts, str) else list(prompts)
        if not texts:
            raise InvalidArgumentError("no prompt given")
        enc = self.tokenizer(texts, return_tensors="pt", padding=True)
        if enc["input_ids"].shape[1] == 0:
            raise InvalidArgumentError("the prompt is empty: give some text")
        return enc["input_ids"].to(self.model.device), enc["attention_mask"].to(self.model.device)

    def _gen_kwargs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        kwargs.setdefault("pad_token_id", self.tokenizer.pad_token_id)
        if kwargs.get("stop_strings") is not None or kwargs.get("dry_multiplier"):
            kwargs.setdefault("tokenizer", self.tokenizer)  # (DRY: its sequence breakers' strings)
        return kwargs

    def generate(self, prompts: str | Sequence[str], *, seed: Any = None, **kwargs: Any) -> list[str]:
        """The continuation(s) of each prompt, as text (``num_return_sequences`` per prompt, in order).
        Keyword arguments are ``generate``'s (``max_new_tokens``, ``do_sample``, ``top_p``, ...); ``seed``:
        an int, or one key per prompt (see :func:`fastlogits.generate`)."""
        return [c.text for c in self.continuations(prompts, seed=seed, **kwargs)]

    def continuations(
        self, prompts: str | Sequence[str], *, seed: Any = None, **kwargs: Any
    ) -> list[Continuation]:
        """:meth:`generate` with each continuation's token ids and finish reason."""
        ids, mask = self.encode(prompts)
        out = _generate(self.model, ids, attention_mask=mask, seed=seed, **self._gen_kwargs(kwargs))
        eos = self.tokenizer.eos_token_id
        result = []
        for row in out[:, ids.shape[1] :].tolist():
            end = row.index(eos) + 1 if eos is not None and eos in row else len(row)
            tokens = row[:end]
            text = self.tokenizer.decode(tokens, skip_special_tokens=True)
            stopped = eos is not None and tokens[-1:] == [eos]
            result.append(Continuation(text, tokens, "eos" if stopped else "length"))
        return result

    def stream(self, prompt: str, *, seed: int | None = None, **kwargs: Any) -> Iterator[str]:
        """Text pieces of one prompt's continuation as tokens are decided (whole characters only)."""
        ids, mask = self.encode(prompt)
        if ids.shape[0] != 1:
            raise InvalidArgumentError("stream() takes one prompt")
        eos = self.tokenizer.eos_token_id
        tokens: list[int] = []
        shown = 0
        for step in _stream(self.model, ids, attention_mask=mask, seed=seed, **self._gen_kwargs(kwargs)):
            t = int(step[0])
            if t == eos:
                break
            tokens.append(t)
            text = self.tokenizer.decode(tokens, skip_special_tokens=True)
            if not text.endswith("\ufffd"):  # an incomplete UTF-8 sequence waits for its next token
                yield text[shown:]
                shown = len(text)

    def next_token_probs(self, prompt: str, top_k: int = 30, temperature: float = 1.0) -> list[TokenProb]:
        """The ``top_k`` most probable next tokens after ``prompt``, with probabilities at ``temperature``."""
        ids, mask = self.encode(prompt)
        if ids.shape[1] > self.n_positions:
            raise InvalidArgumentError(
                f"the prompt has {ids.shape[1]} tokens, more than n_positions = {self.n_positions}"
            )
        with torch.no_grad():
            logits = self.model(input_ids=ids, attention_mask=mask).logits[:, -1].float().cpu().numpy()
        if temperature != 1.0:
            logits = TemperatureLogitsWarper(float(temperature))(np.zeros((1, 0), np.int64), logits)
        k = min(int(top_k), logits.shape[1])
        lps, tids = top_logprobs(logits, k)
        return [
            TokenProb(int(t), self.tokenizer.decode([int(t)]), float(np.exp(lp)), float(lp))
            for lp, t in zip(lps[0], tids[0])
            if t >= 0
        ]

    def nll(self, text: str, stride: int | None = None) -> tuple[float, int]:
        """(sum of the next-token negative log-likelihoods, number of tokens scored) of ``text``: every token
        but the first is scored once. A text that fits the context is one forward pass (the sum is
        ``model(ids, labels=ids).loss * (n - 1)``); a longer one is scored with the sliding window of
        transformers' perplexity guide: windows of ``n_positions`` tokens, ``stride`` tokens apart (default
        half the context), each scoring only the tokens the previous windows did not. A text of fewer than 2
        tokens scores nothing: ``(0.0, 0)``. Sums over texts give a corpus perplexity (see
        :func:`fastlogits.evaluate.corpus_perplexity`)."""
        ids = self.tokenizer(text, return_tensors="pt")["input_ids"].to(self.model.device)
        n = ids.shape[1]
        if n < 2:
            return 0.0, 0
        window = self.n_positions
        stride = stride or window // 2
        if isinstance(stride, bool) or not isinstance(stride, int) or not 0 < stride <= window:
            raise InvalidArgumentError(
                f"`stride` has to be an int in [1, n_positions = {window}], got {stride!r}"
            )
        nll_sum, count, prev_end = 0.0, 0, 0
        for begin in range(0, n, stride):
            end = min(begin + window, n)
            target_len = end - prev_end
            chunk = ids[:, begin:end]
            labels = chunk.clone()
            labels[:, :-target_len] = -100
            with torch.no_grad():
                loss = self.model(chunk, labels=labels).loss
            scored = int((labels[:, 1:] != -100).sum())  # the tokens this window predicts
            nll_sum += float(loss) * scored
            count += scored
            prev_end = end
            if end == n:
                break
        return nll_sum, count

    def perplexity(self, text: str, stride: int | None = None) -> float:
        """exp(mean next-token NLL) of ``text`` (see :meth:`nll`): ``model(ids, labels=ids).loss.exp()`` for a
        text that fits the context; longer texts are scored with a sliding window (``stride`` tokens per
        window, default half the context), each token predicted once."""
        nll_sum, count = self.nll(text, stride)
        if count == 0:
            raise InvalidArgumentError("perplexity needs a text of at least 2 tokens")
        return float(np.exp(nll_sum / count))


@dataclass(frozen=True)
class ModelSpec:
    """The arguments of :meth:`GPT2.load`, as a value: picklable and small (no weights), so that a worker
    (a Ray actor) can load the same model itself; on a cluster, its paths must be readable on every node."""

    name_or_path: str | None = "gpt2"
    random_weights: bool = False
    tokenizer: str | None = None
    device: str = "cpu"
    dtype: str = "float32"
    seed: int = 0  # the initialisation of random_weights

    def __post_init__(self):
        if not self.random_weights and not self.name_or_path:
            raise ModelLoadError("no model: give a name or path, or random_weights=True")
        if self.tokenizer is None:
            # The driver's choice, not whatever the workers' environments say.
            object.__setattr__(self, "tokenizer", os.environ.get(TOKENIZER_ENV) or None)

    def load(self) -> GPT2:
        return GPT2.load(
            None if self.random_weights else self.name_or_path,
            tokenizer=self.tokenizer,
            random_weights=self.random_weights,
            device=self.device,
            dtype=self.dtype,
            seed=self.seed,
        )

    def identity(self) -> tuple[str, str]:
        """(model, dtype) as :func:`fastlogits.batch.model_identity` gives them once loaded (for
        :func:`fastlogits.batch.job_settings`), without loading the weights."""
        model = "random-weights" if self.random_weights else str(self.name_or_path)
        return model, str(resolve_dtype(self.dtype, self.device)).replace("torch.", "")
