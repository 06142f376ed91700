#!/usr/bin/env bash
# The GPU measurements of docs/performance.md, on a machine with one CUDA GPU whose python3
# has PyTorch (wheels from tools/gpu/prepare.sh in .whl/). Writes logs and JSON to
# ${OUT:-gpu-out}. Parts, as arguments (default: all), each within a 10-minute call on an H100:
#   bench  the 124M-class benchmark in bf16, compiled (~2 min with its compiling)
#   sweep  gpu-small's 20 sweep shapes, one at a time and packed, 300 steps each, eager
#          (~3 min): packing is for launch-bound models, and eager runs time the GPU's work,
#          not 20 compilations (which packing would also parallelise)
#   study  the gpu-small study end to end, with its fit (~5 min)
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
parts=${*:-bench sweep study}
# every wheel but the api, ray and slurm plugins (their servers and clusters are not there)
wheels=$(ls .whl/*.whl | grep -v -E 'flops_fit_(api|ray|slurm)-')
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site $wheels || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 FLOPS_FIT_CACHE=/tmp/flops-fit-cache
nvidia-smi -L | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__)" | tee -a "$OUT/gpu.txt"
for part in $parts; do
  case $part in
    bench)  # GPT-2 small's shape: d 768, 12 layers, 12 heads, T 1024, V 50304
      timeout 300 python3 -m flops_fit_torch.bench --d-model 768 --layers 12 --heads 12 \
        --seq-len 1024 --vocab 50304 --batch 16 --steps 60 --precision bf16 --device cuda \
        --json 2>&1 | tee "$OUT/bench-124m.json" ;;
    sweep)
      timeout 400 python3 -m flops_fit_torch.bench.sweep --preset gpu-small --steps 300 \
        --set trainer.compile=false --json 2>&1 | tee "$OUT/sweep.json" ;;
    study)
      start=$(date +%s)
      timeout 540 python3 -m flops_fit_core run --preset gpu-small --out /tmp/gpu-small 2>&1 \
        | tee "$OUT/gpu-small.log"
      echo "gpu-small wall: $(( $(date +%s) - start )) s" | tee -a "$OUT/gpu-small.log"
      cp /tmp/gpu-small/fit.json "$OUT/gpu-small-fit.json" 2>/dev/null
      cp /tmp/gpu-small/report.html "$OUT/gpu-small-report.html" 2>/dev/null ;;
    *) echo "unknown part: $part (bench, sweep or study)" >&2; exit 2 ;;
  esac
done
