#!/usr/bin/env bash
# GPU check for a lent accelerator, prepared to finish in under five minutes (each run has its own time limit):
#   1. LITE (H=16) against full back-propagation: peak GPU memory and seconds per task, EfficientNet-B0 at 224 px,
#      N = 100, 500, 1000 context clips, fp32 and bf16 (each configuration in a fresh process; an out-of-memory run
#      is reported as an error, not a crash);
#   2. evaluation throughput: frames per second of a personal recognizer on 224 px frames.
# Writes JSON to ${OUT:-gpu_check_out}/ and prints it. Usage: bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu_check_out}"
mkdir -p "$out"
py="${PYTHON:-python3}"
if ! "$py" -c "import orbit_lite" 2>/dev/null; then
  "$py" -m pip install -q --no-deps -e . && "$py" -m pip install -q decord2 opencv-python-headless typer rich pyyaml pandas matplotlib
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.csv"
for precision in fp32 bf16; do
  flag=""; [ "$precision" = bf16 ] && flag="--bf16"
  timeout 200 "$py" benchmarks/lite_memory.py --device cuda --backbone efficientnet_b0 --frame-size 224 \
    --context 100,500,1000 --h 16 --queries 64 --query-chunk 64 --chunk 256 $flag --json \
    | tee "$out/lite_memory_$precision.json"
done
timeout 60 "$py" - <<'PY' | tee "$out/eval_fps.json"
import json, time, torch
from orbit_lite.config import ModelConfig
from orbit_lite.learners import create_learner
torch.backends.cudnn.benchmark = True
learner = create_learner(ModelConfig(learner="protonets", backbone="efficientnet_b0", weights="none"), 224).cuda().eval()
context = torch.randint(0, 256, (100, 1, 3, 224, 224), dtype=torch.uint8)
personal = learner.personalize(context, torch.arange(100) % 10, 10)
frames = torch.randint(0, 256, (2048, 3, 224, 224), dtype=torch.uint8)
result = {"gpu": torch.cuda.get_device_name()}
for bf16 in (False, True):
    personal.bf16 = bf16
    personal.predict(frames[:256])
    torch.cuda.synchronize()
    start = time.perf_counter()
    personal.predict(frames, chunk_size=256)
    torch.cuda.synchronize()
    result["bf16" if bf16 else "fp32"] = {"frames": len(frames), "frames_per_s": round(len(frames) / (time.perf_counter() - start))}
print(json.dumps(result))
PY
