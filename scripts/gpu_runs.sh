#!/usr/bin/env bash
# The GPU rows of notebooks 06 and 07: benchmark rows (OPT-1.3B/6.7B/13B architectures, bf16)
# and full-protocol fine-tuning of SmolLM2-135M (MeZO's 1000 train / 1000 eval examples).
#
# On any CUDA machine with the dependencies (make setup TORCH_SPEC=<a CUDA torch>):
#     bash scripts/gpu_runs.sh [bench|finetune|all]
# On a machine without PyPI (the workplace's lent GPU): run `python scripts/split_weights.py`
# first and carry `.weights`; the script joins the parts and points LOZO_SMOLLM2_DIR at them.
# Results land in data/results/bench/ and data/results/finetune_gpu/ (one JSON per run, with
# its command and machine); nothing else needs to come back.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
WHAT=${1:-all}
STEPS=${STEPS:-5000}
GGUF=SmolLM2-135M-Instruct.Q4_1.gguf

if [ -f ".weights/$GGUF.part00" ] && [ ! -f ".weights/$GGUF" ]; then
    cat .weights/$GGUF.part* > ".weights/$GGUF"
    echo "$(cat .weights/$GGUF.sha256)  .weights/$GGUF" | sha256sum -c -
fi
[ -f ".weights/$GGUF" ] && export LOZO_SMOLLM2_DIR="$PWD/.weights"

if [ "$WHAT" = bench ] || [ "$WHAT" = all ]; then
    mkdir -p data/results/bench
    for model in opt-1.3b opt-6.7b opt-13b; do
        for seq in 64 256; do
            $PY -m lozo_core.bench --model "$model" --random-init --device cuda --dtype bfloat16 \
                --batch-size 16 --seq-len "$seq" --steps 10 --warmup 3 \
                --json "data/results/bench/gpu_${model}_bf16_b16x${seq}.json"
        done
    done
fi

if [ "$WHAT" = finetune ] || [ "$WHAT" = all ]; then
    mkdir -p data/results/finetune_gpu
    for task in sst2 rte; do
        for opt in mezo lozo lozo-m fo-adam; do
            case "$opt" in
                mezo) lr=1e-5 ;; lozo|lozo-m) lr=2e-5 ;; fo-adam) lr=1e-5 ;;
            esac
            out="runs/finetune_gpu/${task}_${opt}_s0"
            $PY -m lozo_core.train --model smollm2-135m --task "$task" --optimizer "$opt" --lr "$lr" \
                --k-shot 0 --eval-examples 1000 --batch-size 16 --steps "$STEPS" --eval-every 500 \
                --device cuda --seed 0 --out "$out"
            cp "$out/summary.json" "data/results/finetune_gpu/${task}_${opt}_s0.json"
        done
    done
fi
