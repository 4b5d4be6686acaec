"""A lean GPT-2 decoding step with an owned KV cache, for ``fastlogits.generate``.

transformers' ``GPT2LMHeadModel`` forward, op for op (the same ``addmm`` / ``layer_norm`` / SDPA calls on
the same values, so float32 results are bit-identical: tested against ``model.generate``), without what a
decoding loop does not need:

* the KV cache is preallocated for ``max_length`` positions and written in place; attention reads views of
  the filled prefix (``DynamicCache`` concatenates the whole cache at every step: O(L) copies per token);
* no per-call module machinery (hooks, output dataclasses, mask construction, cache bookkeeping);
* beam reordering in place (``index_select`` of the filled prefix into the same buffers);
* a padded batch's attention mask kept as one preallocated boolean buffer: the masks SDPA is given are views
  of it, the ones transformers' ``create_causal_mask`` builds for SDPA (``(B, 1, T, T)`` causal and padding
  for the prompt, ``(B, 1, 1, L)`` after it; none at all without padding, as transformers).

It is used only where it computes exactly what transformers computes (:func:`unsupported` says why not
otherwise, and the loop keeps the model's own forward): the exact ``GPT2LMHeadModel`` class in eval mode with
SDPA attention (transformers' default), no cross-attention, and an empty cache from ``generate``.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn.functional as F
from transformers import DynamicCache, GPT2LMHeadModel

__all__ = ["LeanGPT2", "unsupported"]

# `FASTLOGITS_GPT2_STEP=transformers` keeps the model's own forward (for comparisons).
_ENV = "FASTLOGITS_GPT2_STEP"


def unsupported(model: Any, model_kwargs: dict[str, Any], want_internals: bool) -> str | None:
    """Why the lean step cannot stand in for ``model``'s forward in this call (None: it can)."""
    if os.environ.get(_ENV, "").strip().lower() == "transformers":
        return f"{_ENV}=transformers"
    if type(model) is not GPT2LMHeadModel:
        return f"{type(model).__name__} is not GPT2LMHeadModel"
    cfg = model.config
    if model.training:
        return "the model is in training mode (dropout)"
    if getattr(cfg, "_attn_implementation", None) != "sdpa":
        return (
            f"attention implementation {getattr(cfg, '_attn_implementation', None)!r} (the lean step is SDPA)"
        )
    if getattr(cfg, "add_cross_attention", False):
        return "cross-attention"
    if want_internals:
        return "attentions / hidden states were asked for"
    cache = model_kwargs.get("past_key_values")
    if cache is not None and (type(cache) is not DynamicCache or cache.get_seq_length() != 0):
        return "a cache was handed in"
    if not model_kwargs.get("use_cache", True):
        return "use_cache=False"
    extra = set(model_kwargs) - {
        "attention_mask",
        "position_ids",
        "logits_to_keep",
        "past_key_values",
        "use_cache",
    }
    if extra:
        return f"model inputs {sorted(extra)}"
    if model_kwargs.get("logits_to_keep") not in (None, 1):
        return "logits_to_keep is not 1"
    return None


class LeanGPT2:
    """GPT-2's forward over an owned cache of ``capacity`` positions for ``batch`` rows; ``attention_mask``:
    the prompt's (``(batch, prompt length)``, or None)."""

    def __init__(
        self, model: GPT2LMHeadModel, batch: int, capacity: int, attention_mask: torch.Tensor | None = None
    ):
        self.model = model
        t = model.transformer
        cfg = model.config
        self.wte, self.wpe, self.ln_f, self.lm_head = t.wte.weight, t.wpe.weight, t.ln_f, model.lm_head.weight
        self.blocks = list(t.h)
        self.C = cfg.n_embd
        self.H = cfg.n_head
        self.D = self.C // self.H
        self.eps = cfg.layer_norm_epsilon
        p = self.wte
        shape = (batch, self.H, capacity, self.D)
        self.keys = [torch.empty(shape, dtype=p.dtype, device=p.device) for _ in self.blocks]
        self.values = [torch.empty(shape, dtype=p.dtype, device=p.device) for _ in self.blocks]
        self.filled = 0
        # Which positions each row attends to, where the prompt has padding (transformers then passes SDPA a
        # boolean mask at every step; without padding, none).
        self.prompt_mask = None
        self.attend = None
        if attention_mask is not None and not bool(attention_mask.all()):
            self.prompt_mask = attention_mask.to(device=p.device, dtype=torch.bool)
            self.attend = torch.zeros((batch, capacity), dtype=torch.bool, device=p.device)

    def _mask(self, T: int) -> torch.Tensor | None:
        """The mask SDPA gets for ``T`` new positions (None without padding)."""
        if self.attend is None:
            return None
        p = self.filled
        if p == 0:
            self.attend[:, :T] = self.prompt_mask
            causal = torch.ones((T, T), dtype=torch.bool, device=self.attend.device).tril()
            return causal[None, None] & self.attend[:, None, None, :T]
        self.attend[:, p : p + T] = True
        return self.attend[:, None, None, : p + T]

    @torch.no_grad()
    def forward(self, ids: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        """The last position's logits ``(B, V)`` for ``ids`` ``(B, T)`` at ``position_ids`` (the prompt, then one
        token per row), as ``GPT2LMHeadModel(..., logits_to_keep=1)`` computes them; the cache is extended."""
        B, T = ids.shape
        C, D, p = self.C, self.D, self.filled
        h = F.embedding(ids, self.wte) + F.embedding(position_ids, self.wpe)
        mask = self._mask(T)
        for i, blk in enumerate(self.blocks):
            residual = h
            x = F.layer_norm(h, (C,), blk.ln_1.weight, blk.ln_1.bias, self.eps)
            attn = blk.attn
            qkv = torch.addmm(attn.c_attn.bias, x.view(-1, C), attn.c_attn.weight).view(B, T, 3 * C)
            q, k, v = qkv.split(C, dim=2)
            q = q.view(B, T, -1, D).transpose(1, 2)
            self.keys[i][:, :, p : p + T] = k.view(B, T, -1, D).transpose(1, 2)
            self.values[i][:, :, p : p + T] = v.view(B, T, -1, D).transpose(1, 2)
            # transformers' sdpa_attention_forward: without a mask, causal over the prompt and none after.
            o = F.scaled_dot_product_attention(
                q,
                self.keys[i][:, :, : p + T],
                self.values[i][:, :, : p + T],
                attn_mask=mask,
                dropout_p=0.0,
                scale=attn.scaling,
                is_causal=mask is None and T > 1,
            )
            o = o.transpose(1, 2).contiguous().reshape(B, T, C).contiguous()
            o = torch.addmm(attn.c_proj.bias, o.view(-1, C), attn.c_proj.weight).view(B, T, C)
            h = o + residual
            residual = h
            x = F.layer_norm(h, (C,), blk.ln_2.weight, blk.ln_2.bias, self.eps)
            mlp = blk.mlp
            x = torch.addmm(mlp.c_fc.bias, x.view(-1, C), mlp.c_fc.weight)
            x = mlp.act(x.view(B, T, -1))
            x = torch.addmm(mlp.c_proj.bias, x.view(B * T, -1), mlp.c_proj.weight).view(B, T, C)
            h = residual + x
        h = F.layer_norm(h, (C,), self.ln_f.weight, self.ln_f.bias, self.eps)
        self.filled = p + T
        return F.linear(h[:, -1:, :], self.lm_head)[:, -1]

    def reorder(self, beam_idx: torch.Tensor) -> None:
        """Row ``i`` continues row ``beam_idx[i]`` (the filled prefix, in place)."""
        n = self.filled
        for buf in (*self.keys, *self.values):
            buf[:, :, :n] = buf[:, :, :n].index_select(0, beam_idx)

    def fill(self, cache: DynamicCache) -> DynamicCache:
        """``cache`` (empty) holding what transformers' cache would hold now (returned by ``generate``)."""
        for i, (k, v) in enumerate(zip(self.keys, self.values, strict=True)):
            cache.update(k[:, :, : self.filled].contiguous(), v[:, :, : self.filled].contiguous(), i)
        return cache
