"""fastlogits: Rust-accelerated logits processors, sampling and beam search for GPT-2 generation.

Same results as Hugging Face transformers 5.23, far less time per step.

>>> import fastlogits as fl
>>> pipe = fl.LogitsPipeline.from_generation_config(do_sample=True, temperature=0.8, top_p=0.95)
>>> scores = pipe(input_ids, scores)          # one native call, in place
>>> next_tokens = fl.sample(scores, seed=0, step=t)
"""

from ._native import __version__, check_environment, get_num_threads, set_num_threads
from .beam import BeamSearch
from .errors import *  # noqa: F403
from .errors import __all__ as _errors_all
from .pipeline import LogitsPipeline
from .processors import *  # noqa: F403
from .processors import DRY_SEQUENCE_BREAKERS, dry_sequence_breaker_ids
from .processors import __all__ as _processors_all
from .sampling import MirostatV2Sampler, Sampler, greedy, log_softmax, sample, top_logprobs

# An invalid FASTLOGITS_NUM_THREADS is reported here, once, rather than ignored.
check_environment()

__all__ = [
    "BeamSearch",
    "DRY_SEQUENCE_BREAKERS",
    "dry_sequence_breaker_ids",
    *_errors_all,
    "LogitsPipeline",
    "MirostatV2Sampler",
    "Sampler",
    "__version__",
    "get_num_threads",
    "greedy",
    "log_softmax",
    "sample",
    "set_num_threads",
    "top_logprobs",
    *_processors_all,
]

# The model side needs torch and transformers: imported on first use (and not by `from fastlogits import *`),
# so that the processors and samplers work with NumPy alone.
_LAZY = {
    "generate": ("transformers.generation", "generate"),
    "stream": ("transformers.generation", "stream"),
    "hf": ("hf", None),
    "transformers": ("transformers", None),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        mod = importlib.import_module(f".{module}", __name__)
        value = mod if attr is None else getattr(mod, attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fastlogits' has no attribute {name!r}")
