"""Split the SmolLM2 GGUF into parts under 60 MiB (``.weights/``) so it can travel to a machine
with an upload limit; ``scripts/gpu_runs.sh`` joins them back. Usage: ``python scripts/split_weights.py``."""

import hashlib
import sys

from lozo_core.models import SMOLLM2_GGUF, smollm2_dir
from lozo_core.provenance import REPO_ROOT

PART = 60 * 2**20


def main() -> int:
    source = smollm2_dir() / SMOLLM2_GGUF
    out = REPO_ROOT / ".weights"
    out.mkdir(exist_ok=True)
    data = source.read_bytes()
    for i in range(0, len(data), PART):
        (out / f"{SMOLLM2_GGUF}.part{i // PART:02d}").write_bytes(data[i : i + PART])
    (out / f"{SMOLLM2_GGUF}.sha256").write_text(hashlib.sha256(data).hexdigest() + "\n")
    print(f"wrote {len(range(0, len(data), PART))} parts of {source} to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
