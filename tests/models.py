"""Tiny random GPT-2 models for driver tests (no downloads: random weights, real architecture)."""

from __future__ import annotations

import functools

import torch
from transformers import GPT2Config, GPT2LMHeadModel


@functools.cache
def tiny_gpt2(
    vocab: int = 48, seed: int = 0, n_layer: int = 2, n_embd: int = 32, eos: int = 3
) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    cfg = GPT2Config(
        vocab_size=vocab,
        n_positions=128,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=2,
        eos_token_id=eos,
        bos_token_id=eos,
    )
    model = GPT2LMHeadModel(cfg).eval()
    # Random GPT-2s are near-uniform; sharpen the output so that EOS and repeats actually happen.
    with torch.no_grad():
        model.lm_head.weight.mul_(8.0)
    return model


def left_padded(rng, batch: int, vocab: int, max_len: int, pad: int):
    """(input_ids, attention_mask) with prompts of different lengths, left-padded with `pad`."""
    lengths = rng.integers(1, max_len + 1, size=batch)
    lengths[rng.integers(batch)] = max_len
    ids = torch.full((batch, max_len), pad, dtype=torch.long)
    mask = torch.zeros((batch, max_len), dtype=torch.long)
    for b, n in enumerate(lengths):
        ids[b, max_len - n :] = torch.from_numpy(rng.integers(0, vocab, size=n))
        mask[b, max_len - n :] = 1
    return ids, mask
