"""fastlogits with torch and transformers (``pip install 'fastlogits[torch]'``); ``fastlogits.hf`` is this package.

* The processors as ``transformers.LogitsProcessor`` subclasses with transformers' contract (a new tensor, the
  input unchanged): :mod:`.adapters`, e.g. ``fastlogits.hf.TopPLogitsWarper``, and
  :class:`FusedLogitsProcessor` for a chain in one call.
* :func:`to_native` / :class:`NativeChain`: transformers' processor lists run natively (:mod:`.convert`).
* :func:`generate` / :func:`stream`: ``model.generate`` with the decoding loop in fastlogits; ``decode``: the
  same loop as ``model.generate(..., custom_generate=decode)`` (:mod:`.generation`, loop in :mod:`._loop`; a module named `generate` would be shadowed by the function).

The rest of fastlogits needs NumPy only and never imports torch.
"""

from .adapters import *  # noqa: F403
from .adapters import __all__ as _adapters_all
from .convert import FusedLogitsProcessor, NativeChain, to_native
from .generation import decode, generate, stream

__all__ = ["FusedLogitsProcessor", "NativeChain", "decode", "generate", "stream", "to_native", *_adapters_all]
