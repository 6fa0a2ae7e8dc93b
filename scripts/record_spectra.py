"""Record per-layer gradient spectra of real pretrained models into data/results/spectra/.

For each model: the SST-2 loss on ``--batch-size`` k-shot training examples (a decoder scores
MeZO's label words; an encoder gets :class:`lozo_core.models.EncoderClassifier`'s new seeded
head), its gradient for every weight matrix, and :func:`lozo_core.spectra.summarize` at ranks
1, 2, 4, 8, 16; the same for the architecture at random init. One JSON per (model, init), each
with the command and machine.
Usage: ``python scripts/record_spectra.py [--model smollm2-135m|minilm-l6] [--batch-size 32]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time

from lozo_core import scoring as S
from lozo_core import tasks as T
from lozo_core.models import load_model, random_init_like
from lozo_core.provenance import REPO_ROOT, machine
from lozo_core.results import main as update_readme
from lozo_core.spectra import gradient_matrices, model_spectra

OUT = REPO_ROOT / "data" / "results" / "spectra"
HEAD_SEED = 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--data-seed", type=int, default=13)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    loaded = load_model(args.model)
    task = T.get_task("sst2")
    examples = T.k_shot(task.split("train"), args.batch_size // 2, args.data_seed)
    batch = S.encode(loaded.tokenizer, examples)
    random = dataclasses.replace(loaded, model=random_init_like(args.model))
    for init, source in (("pretrained", loaded), ("random", random)):
        model, candidates = S.scorer(source, task, HEAD_SEED)
        start = time.perf_counter()
        loss = S.per_example_loss(model, batch, candidates).mean()
        rows = model_spectra(gradient_matrices(model, loss))
        record = {
            "model": args.model, "init": init, "source": loaded.source if init == "pretrained" else "random init, same config",
            "task": "sst2", "template": task.template.text, "scoring": "label words" if loaded.causal else f"new linear head (seed {HEAD_SEED})",
            "batch_size": len(examples), "data_seed": args.data_seed,
            "loss": loss.item(), "seconds": time.perf_counter() - start, "layers": rows,
            "command": shlex.join(["python", "scripts/record_spectra.py", *sys.argv[1:]]), "machine": machine(),
        }  # fmt: skip
        path = OUT / f"{args.model}_{init}.json"
        path.write_text(json.dumps(record, indent=1) + "\n")
        print(
            f"wrote {path.relative_to(REPO_ROOT)}: {len(rows)} matrices in {record['seconds']:.0f} s",
            flush=True,
        )
    update_readme()
    return 0


if __name__ == "__main__":
    sys.exit(main())
