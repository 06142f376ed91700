#!/usr/bin/env bash
# The GPU measurements of docs/performance.md, in one go, on a machine with one CUDA GPU whose
# python3 has PyTorch (wheels from tools/gpu/prepare.sh in .whl/). Writes every log and JSON
# to ${OUT:-gpu-out}. About 8 minutes on an H100: the 124M-class benchmark (~1 min with its
# compiling), the packed-vs-one-at-a-time sweep of gpu-small's shapes (~2 min) and the
# gpu-small study end to end (~5 min).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
# every wheel but the api, ray and slurm plugins (their servers and clusters are not there)
wheels=$(ls .whl/*.whl | grep -v -E 'flops_fit_(api|ray|slurm)-')
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site $wheels || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 FLOPS_FIT_CACHE=/tmp/flops-fit-cache
nvidia-smi -L | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__)" | tee -a "$OUT/gpu.txt"
# 1. 124M-class shape in bf16 (GPT-2 small: d 768, 12 layers, 12 heads, T 1024, V 50304)
timeout 240 python3 -m flops_fit_torch.bench --d-model 768 --layers 12 --heads 12 \
  --seq-len 1024 --vocab 50304 --batch 16 --steps 60 --precision bf16 --device cuda --json \
  2>&1 | tee "$OUT/bench-124m.json"
# 2. gpu-small's sweep shapes: one at a time vs packed
timeout 300 python3 -m flops_fit_torch.bench.sweep --preset gpu-small --steps 300 --json \
  2>&1 | tee "$OUT/sweep.json"
# 3. the gpu-small study end to end, with its fit
start=$(date +%s)
timeout 600 python3 -m flops_fit_core run --preset gpu-small --out /tmp/gpu-small 2>&1 \
  | tee "$OUT/gpu-small.log"
echo "gpu-small wall: $(( $(date +%s) - start )) s" | tee -a "$OUT/gpu-small.log"
cp /tmp/gpu-small/fit.json "$OUT/gpu-small-fit.json" 2>/dev/null
cp /tmp/gpu-small/report.html "$OUT/gpu-small-report.html" 2>/dev/null
