"""Which examples a run sees: k per class, a seeded sample, MeZO's train/validation draw."""

from __future__ import annotations

import random

from lozo_core.tasks.task import Example


def k_shot(examples: list[Example], k: int, seed: int) -> list[Example]:
    """``k`` examples per class, drawn without replacement by ``seed`` (MeZO/LOZO protocol)."""
    rng = random.Random(seed)
    by_label: dict[int, list[Example]] = {}
    for ex in examples:
        by_label.setdefault(ex.label, []).append(ex)
    chosen = []
    for label in sorted(by_label):
        if len(by_label[label]) < k:
            raise ValueError(
                f"k={k} per class but label {label} has only {len(by_label[label])} examples"
            )
        chosen += rng.sample(by_label[label], k)
    rng.shuffle(chosen)
    return chosen


def sample(examples: list[Example], n: int, seed: int) -> list[Example]:
    """``n`` examples drawn without replacement by ``seed``."""
    if n > len(examples):
        raise ValueError(f"asked for {n} examples, only {len(examples)} available")
    return random.Random(seed).sample(examples, n)


def train_validation(
    examples: list[Example], seed: int, n_train: int = 1000, n_validation: int = 500
) -> tuple[list[Example], list[Example]]:
    """MeZO's protocol: disjoint ``n_train`` training and ``n_validation`` validation examples,
    both drawn from the training split (the test set is then up to 1000 dev examples).

    A split with fewer than ``n_train + n_validation`` examples (COPA's 400, CB's 250) is drawn
    whole and its last ``n_validation`` go to validation, as MeZO's ``sample_subset`` and dev
    split do."""
    drawn = sample(examples, min(n_train + n_validation, len(examples)), seed)
    if len(drawn) <= n_validation:
        raise ValueError(
            f"{len(drawn)} examples leave none for training after {n_validation} for validation"
        )
    return drawn[:-n_validation], drawn[-n_validation:]
