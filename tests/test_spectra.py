"""Spectral summaries on matrices whose answers are known."""

import pytest
import torch

from lozo_core.spectra import effective_rank, marchenko_pastur_stable_rank, stable_rank, summarize


def low_rank_plus_noise(m, n, k, noise, seed=0):
    g = torch.Generator().manual_seed(seed)
    U, _ = torch.linalg.qr(torch.randn(m, k, generator=g, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(n, k, generator=g, dtype=torch.float64))
    return U @ V.T * 10 + noise * torch.randn(m, n, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("k", [1, 3, 8])
def test_equal_singular_values_give_rank_k(k):
    G = low_rank_plus_noise(60, 40, k, noise=0.0)
    assert stable_rank(G).item() == pytest.approx(k, rel=1e-9)
    assert effective_rank(G).item() == pytest.approx(k, rel=1e-6)
    summary = summarize(G, ranks=(k,))
    assert summary["energy_top"][str(k)] == pytest.approx(1.0)


def test_small_noise_barely_moves_the_ranks():
    G = low_rank_plus_noise(80, 50, 4, noise=0.05)
    assert 4 <= stable_rank(G).item() < 4.5
    assert 4 <= effective_rank(G).item() < 6


def test_gaussian_matrix_matches_marchenko_pastur_stable_rank():
    g = torch.Generator().manual_seed(1)
    G = torch.randn(400, 200, generator=g, dtype=torch.float64)
    assert stable_rank(G).item() == pytest.approx(marchenko_pastur_stable_rank(400, 200), rel=0.1)


def test_random_subspace_energy_is_r_over_n_in_expectation():
    g = torch.Generator().manual_seed(2)
    G = low_rank_plus_noise(30, 64, 2, noise=0.1)
    summary = summarize(G, ranks=(1, 4, 16), generator=g)
    for r in (1, 4, 16):
        assert summary["energy_random"][str(r)] == pytest.approx(r / 64, rel=0.5, abs=0.02)
        assert summary["energy_top"][str(r)] > summary["energy_random"][str(r)]


def test_summarize_rejects_non_matrices():
    with pytest.raises(ValueError, match=r"expects a matrix, got shape \(3,\)"):
        summarize(torch.ones(3))


def test_layer_kinds_cover_decoder_encoder_and_classifier_names():
    from lozo_core.spectra import layer_kind

    names = {
        "model.layers.3.self_attn.q_proj.weight": "q",
        "model.decoder.layers.0.fc2.weight": "mlp_down",
        "encoder.encoder.layer.2.attention.self.value.weight": "v",
        "encoder.encoder.layer.2.attention.output.dense.weight": "o",
        "encoder.encoder.layer.2.output.dense.weight": "mlp_down",
        "head.weight": "head",
        "lm_head.weight": "head",
    }
    assert {name: layer_kind(name) for name in names} == names
