#!/usr/bin/env bash
# Record the CPU rows of notebook 07 into data/results/bench/, then regenerate the README section.
# Each command takes the heavy-job lock on its own, so a background campaign runs its chunks in
# between; every command resumes what an interrupted run recorded. Batch 4 x 64 tokens (1 x L for
# the context sweep). One torch thread per child: on a shared 2-core machine a second OpenMP
# thread waits at every barrier whenever another job holds a core, and step times with 2 threads
# varied 3-7x between methods run minutes apart; with one thread a busy neighbour slows every row
# alike. Pass the names of the steps to run (default: all, in this order):
#   profile 125m-fp32 125m-bf16 125m-interval1 context drift campaign 350m 1.3b 1.3b-bf16 2.7b readme
# `1.3b-bf16` runs the zeroth-order methods only: a first-order bf16 step is up to 27x its fp32
# time on an AVX2-only CPU (the 125M rows), an hour or more at 1.3B.
# `campaign` times the full-protocol campaign's methods on its model, batches and loss (SmolLM2,
# the first SST-2 training batches of seed 0, label-word loss) with the campaign's 2 threads, the
# seconds notebook 06 puts on its curves; one file per CPU (model and bf16 flag in its name).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=data/results/bench
LOCK=${LOZO_HEAVY_LOCK:-/tmp/lozo-heavy.lock}
locked() { flock "$LOCK" "$@"; }
cpu_slug() { $PY -c 'from lozo_core.provenance import cpu_slug; print(cpu_slug())'; }
bench() { locked $PY -m lozo_core.bench --random-init --device cpu --threads 1 --resume "$@"; }
SCALING="forward forward-doubled mezo lozo lozo-sequential fo-sgd fo-adam"
CONTEXT="forward mezo lozo lozo-sequential fo-sgd fo-adam"

step() {
    case $1 in
    profile) locked $PY scripts/profile_zo_step.py --repeats 3 ;;
    125m-fp32) bench --model opt-125m --batch-size 4 --seq-len 64 --steps 3 \
        --json $OUT/cpu_opt-125m_fp32_b4x64.json ;;
    125m-bf16) bench --model opt-125m --batch-size 4 --seq-len 64 --steps 2 --dtype bfloat16 \
        --json $OUT/cpu_opt-125m_bf16_b4x64.json ;;
    125m-interval1) bench --model opt-125m --batch-size 4 --seq-len 64 --steps 3 --interval 1 \
        --methods forward-doubled lozo --json $OUT/cpu_opt-125m_fp32_b4x64_interval1.json ;;
    context) for seq in 64 256 1024 2048; do
        bench --model opt-125m --batch-size 1 --seq-len $seq --steps 1 --methods $CONTEXT \
            --json $OUT/cpu_opt-125m_fp32_b1x$seq.json
    done ;;
    drift) locked $PY scripts/record_drift.py --threads 1 ;;
    campaign) locked $PY -m lozo_core.bench --random-init --device cpu --threads 2 --resume \
        --model smollm2-135m --task sst2 --batch-size 16 --steps 5 \
        --methods forward forward-doubled mezo mezo-kept lozo lozo-m lozo-adam fo-adam \
        --json "$OUT/cpu_smollm2-135m_sst2-campaign_$(cpu_slug)_fp32.json" ;;
    350m) bench --model opt-350m --batch-size 4 --seq-len 64 --steps 2 --methods $SCALING \
        --json $OUT/cpu_opt-350m_fp32_b4x64.json ;;
    1.3b) bench --model opt-1.3b --batch-size 4 --seq-len 64 --steps 1 --methods $SCALING \
        --json $OUT/cpu_opt-1.3b_fp32_b4x64.json ;;
    1.3b-bf16) bench --model opt-1.3b --batch-size 4 --seq-len 64 --steps 1 --warmup 0 --dtype bfloat16 \
        --methods forward forward-doubled mezo lozo lozo-sequential \
        --json $OUT/cpu_opt-1.3b_bf16_b4x64.json ;;
    2.7b) bench --model opt-2.7b --batch-size 4 --seq-len 64 --steps 1 --warmup 0 --methods $SCALING \
        --json $OUT/cpu_opt-2.7b_fp32_b4x64.json ;;
    readme) $PY -m lozo_core.results ;;
    *) echo "unknown step $1" >&2; exit 2 ;;
    esac
}

steps=("$@")
[ $# -gt 0 ] || steps=(profile 125m-fp32 125m-bf16 125m-interval1 context drift campaign 350m 1.3b 1.3b-bf16 2.7b readme)
for s in "${steps[@]}"; do step "$s"; done
