"""Deterministic random streams: one ``torch.Generator`` per (run seed, step, ...) key.

Library code never touches the global RNG. Every random draw of a step comes from a generator
built here from the run seed and the step's keys, so a draw can be replayed exactly (MeZO's
seed trick), perturbation and update see the same numbers, and a resumed run is identical.

torch's CPU generator (mt19937) keeps only the low 32 bits of a seed, so on the CPU the keys map
into :math:`2^{32}` streams, and keys that differ only in their last entry (the parameters of one
step) get consecutive seeds. Two steps of a run share a stream only if their blocks of seeds
overlap: about :math:`k^2 P / 2^{32}` pairs of steps for ``k`` steps of ``P`` parameters (0.06
for 1000 steps of SmolLM2's 272 tensors). ``tests/test_optim.py`` checks that the updates drawn
this way have the estimators' mean and second moment.
"""

from __future__ import annotations

import torch

_MODULUS = 2**63 - 25
_MULTIPLIER = 6364136223846793005


def stream_seed(seed: int, *keys: int) -> int:
    """Mix ``seed`` and integer ``keys`` into one 63-bit seed (order matters)."""
    h = seed % _MODULUS
    for k in keys:
        h = (h * _MULTIPLIER + k + 0x9E3779B97F4A7C15) % _MODULUS
    return h


def stream(seed: int, *keys: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A fresh generator on ``device`` seeded from ``(seed, *keys)``."""
    return torch.Generator(device=device).manual_seed(stream_seed(seed, *keys))
