"""Models: the real OPT loader, a tiny random OPT for tests, and offline pretrained fallbacks.

Real pretrained weights cannot always be downloaded (no network here). ``load_opt`` keeps the
real Hugging Face path and fails with instructions instead of substituting anything.
``tiny_opt`` builds a random-init ``OPTForCausalLM`` from ``transformers.OPTConfig`` for tests.
"""

from __future__ import annotations

import torch
from transformers import OPTConfig, OPTForCausalLM

TINY_OPT_CONFIG = dict(
    vocab_size=256, hidden_size=32, num_hidden_layers=2, ffn_dim=64, num_attention_heads=4,
    max_position_embeddings=128, word_embed_proj_dim=32, dropout=0.0, attention_dropout=0.0,
)  # fmt: skip


def tiny_opt(
    seed: int = 0, dtype: torch.dtype = torch.float32, **config_overrides
) -> OPTForCausalLM:
    """A random-init OPT small enough for unit tests (weights from ``torch.Generator(seed)``)."""
    config = OPTConfig(**{**TINY_OPT_CONFIG, **config_overrides})
    unknown = set(config_overrides) - set(config.to_dict())
    if unknown:
        raise ValueError(f"unknown OPTConfig fields: {sorted(unknown)}")
    model = OPTForCausalLM(config)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=g) * config.init_std)
    return model.to(dtype).eval()
