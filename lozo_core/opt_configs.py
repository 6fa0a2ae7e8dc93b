"""Published OPT architectures (Zhang et al. 2022, Table 1), written here so nothing is fetched."""

from transformers import OPTConfig

# name: (layers, hidden, heads, ffn); all share vocab 50272 and 2048 positions.
OPT_ARCHITECTURES = {
    "opt-125m": (12, 768, 12, 3072),
    "opt-350m": (24, 1024, 16, 4096),
    "opt-1.3b": (24, 2048, 32, 8192),
    "opt-2.7b": (32, 2560, 32, 10240),
    "opt-6.7b": (32, 4096, 32, 16384),
    "opt-13b": (40, 5120, 40, 20480),
    "opt-30b": (48, 7168, 56, 28672),
    "opt-66b": (64, 9216, 72, 36864),
}


def opt_config(name: str) -> OPTConfig:
    """OPTConfig of a published size (opt-350m's 512-wide embedding projection included)."""
    if name not in OPT_ARCHITECTURES:
        raise ValueError(
            f"unknown OPT size {name!r}; expected one of {', '.join(OPT_ARCHITECTURES)}"
        )
    layers, hidden, heads, ffn = OPT_ARCHITECTURES[name]
    return OPTConfig(
        vocab_size=50272, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        ffn_dim=ffn, max_position_embeddings=2048, word_embed_proj_dim=512 if name == "opt-350m" else hidden,
        do_layer_norm_before=name != "opt-350m", dropout=0.0, attention_dropout=0.0,
    )  # fmt: skip
