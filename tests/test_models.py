"""Model and tokenizer loading: the SmolLM2 conversion cache (installed only when it reloads
bit-identical) and tokenizers without their weights."""

import pytest
import torch

from lozo_core import models
from lozo_core.models import _cache_conversion, load_model


def test_a_conversion_is_cached_only_after_it_reloads_bit_identical(tmp_path):
    loaded = load_model("tiny-opt", seed=3)
    target = tmp_path / "tiny"
    _cache_conversion(loaded.model, loaded.tokenizer, target)
    again = load_model(str(target)).model
    for name, tensor in loaded.model.state_dict().items():
        assert torch.equal(tensor, again.state_dict()[name]), name
    assert [p.name for p in tmp_path.iterdir()] == ["tiny"]


def test_a_conversion_that_does_not_reload_identically_is_not_cached(tmp_path, monkeypatch):
    monkeypatch.setattr(models, "_same_tokenizer", lambda a, b: False)
    loaded = load_model("tiny-opt", seed=3)
    _cache_conversion(loaded.model, loaded.tokenizer, tmp_path / "tiny")
    assert list(tmp_path.iterdir()) == []


def test_the_cache_folder_names_the_gguf_digest_converter_and_dtype(tmp_path, monkeypatch):
    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path))
    folder = models.smollm2_conversion_dir(torch.bfloat16)
    assert folder.parent == tmp_path
    converters = [f"{pkg}{models.version(pkg)}" for pkg in ("transformers", "gguf", "tokenizers")]
    assert folder.name.endswith("-" + "-".join(converters) + "-bfloat16")
    assert folder.name != models.smollm2_conversion_dir(torch.float32).name


def test_a_tokenizer_loads_without_its_model_or_fails_naming_what_is_missing():
    probe = models.TOKENIZER_PROBE[0]
    assert (
        models.load_tokenizer("tiny-opt")(probe)["input_ids"]
        == (load_model("tiny-opt").tokenizer(probe)["input_ids"])
    )
    with pytest.raises(ValueError, match="unknown model 'gpt-9'; expected one of opt-125m"):
        models.load_tokenizer("gpt-9")
    with pytest.raises(FileNotFoundError, match="facebook/opt-125m is not in the local"):
        models.load_tokenizer("opt-125m")


def test_a_misspelt_tiny_opt_field_is_refused_by_name():
    from lozo_core.models import tiny_opt

    with pytest.raises(ValueError, match=r"unknown OPTConfig fields: \['hiden_size'\]"):
        tiny_opt(hiden_size=8)
    assert tiny_opt(hidden_size=16, word_embed_proj_dim=16).config.hidden_size == 16
