#!/usr/bin/env bash
# GPU check for a lent accelerator, prepared to finish in under five minutes (each step has its own time limit):
#   1. benchmarks/gpu_throughput.py: the 224 recipe end to end on synthetic 224 px JPEG folders (training tasks/s at
#      steady state and first-task latency in fp32 and bf16, evaluation frames/s, personalize and recognize latency),
#      with each GPU habit switched off once (--ab all) so that each is kept only where it measures faster;
#   2. LITE (H=16) against full back-propagation: peak GPU memory and seconds per task, EfficientNet-B0 at 224 px,
#      N = 100 and 1000 context clips, fp32 (each configuration in a fresh process; out of memory is reported).
# Writes JSON to ${OUT:-gpu_check_out}/ and prints it. Usage: bash benchmarks/gpu_check.sh
# On a machine with its own torch and no network, the checkout runs as it is (PYTHONPATH); frame folders need no decord.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu_check_out}"
mkdir -p "$out"
py="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.csv"
timeout 330 "$py" benchmarks/gpu_throughput.py --ab all --json --save "$out/gpu_throughput.json"
timeout 150 "$py" benchmarks/lite_memory.py --device cuda --backbone efficientnet_b0 --frame-size 224 \
  --context 100,1000 --h 16 --queries 64 --query-chunk 64 --chunk 256 --json | tee "$out/lite_memory_fp32.json"
