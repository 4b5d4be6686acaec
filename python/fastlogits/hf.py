"""``fastlogits.hf``: the name fastlogits' transformers side has always had; it is
:mod:`fastlogits.transformers` (adapters, conversion, ``generate`` / ``stream`` / ``decode``)."""

from . import transformers as _transformers
from .transformers import *  # noqa: F403

__all__ = list(_transformers.__all__)
