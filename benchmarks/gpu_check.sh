#!/usr/bin/env bash
# GPU check for a lent accelerator, prepared to finish within 8 minutes (each step has its own time limit, and each
# result is written to ${OUT:-gpu_check_out}/ as soon as it is measured):
#   1. writes the small synthetic preset at 224 px (JPEG frame folders) into a temporary folder;
#   2. benchmarks/gpu_profile.py: where a training task's time goes (first step, then a step after a warm-up step), the
#      GPU's idle share, host syncs and aten calls per task; Chrome traces (gzipped) next to the JSON;
#   3. benchmarks/gpu_throughput.py: the 224 recipe end to end: training tasks/s at a proven steady state (the last
#      32 tasks' rate within 10% of the 32 before) and the first task's latency, fp32 then bf16; evaluation frames/s
#      cold and warm (and warm with 16 decode threads); personalize and recognize latency; then each GPU habit
#      switched from its default once (--ab all), 15 s each, in the order of HABITS, as long as the deadline allows.
# Usage: bash benchmarks/gpu_check.sh   (from a checkout: the GPU machine's own torch, no network, no decord needed)
# Quick CPU check of the script itself: QUICK=1 bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu_check_out}"
mkdir -p "$out"
py="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
data="$(mktemp -d)/data"
trap 'rm -rf "$(dirname "$data")"' EXIT
if [ -n "${QUICK:-}" ]; then  # tiny_cnn at 64 px on the CPU: checks the script, measures nothing
  quick=(--quick --device cpu --workers 0) profile=(--device cpu --workers 0 --frame-size 64 --set model.backbone=tiny_cnn
         --set train.tasks_per_batch=2 --first 1 --warm 1 --steady 2 --counted 2) throughput=(--seconds 20 --max-tasks 8
         --window 4 --eval-tasks 2 --ab buckets --ab-seconds 5)
else
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.csv"
  quick=() profile=(--first 16 --warm 16 --steady 16 --counted 16) throughput=(--seconds 75 --ab all --ab-seconds 15)
fi
timeout 90 "$py" benchmarks/gpu_throughput.py "${quick[@]}" --write-data "$data"
timeout 80 "$py" benchmarks/gpu_profile.py --data "$data" "${profile[@]}" --trace "$out" --json \
  --save "$out/gpu_profile.json" > /dev/null
gzip -f "$out"/trace_*.json 2> /dev/null
timeout 300 "$py" benchmarks/gpu_throughput.py --data "$data" "${quick[@]}" "${throughput[@]}" --deadline 260 --json \
  --save "$out/gpu_throughput.json"
