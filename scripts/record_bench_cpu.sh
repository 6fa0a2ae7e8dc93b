#!/usr/bin/env bash
# Record the CPU benchmark rows of notebook 07 into data/results/bench/ (run on a quiet machine).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
$PY -m lozo_core.bench --model opt-125m --random-init --device cpu --batch-size 4 --seq-len 64 --steps 3 \
    --json data/results/bench/cpu_opt-125m_fp32_b4x64.json
$PY -m lozo_core.bench --model opt-125m --random-init --device cpu --batch-size 4 --seq-len 64 --steps 3 \
    --interval 1 --methods forward-doubled lozo-sidepath --json data/results/bench/cpu_opt-125m_fp32_b4x64_interval1.json
$PY -m lozo_core.results
