#!/usr/bin/env bash
# The GPU training run of the default detector, as run on one H100 (device machine, 16 cores).
# Usage: OUT=/some/dir MINUTES=7 bash scripts/gpu_train_default.sh
# Writes $OUT/default.pt (refreshed every minute, so a time-out still leaves weights),
# $OUT/train_log.csv, $OUT/train.log and, after training, $OUT/gpu_bench.json (issue 5e).
set -uo pipefail
OUT=${OUT:?set OUT to an output folder}
MINUTES=${MINUTES:-7}
WORKERS=${WORKERS:-14}
DEVICE=${DEVICE:-cuda}   # DEVICE=cpu BATCH=2 MINUTES=0.5 WORKERS=2 for a dry run of this exact script
BATCH=${BATCH:-32}
export PYTHONUNBUFFERED=1 PYTHONPATH=.
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>&1 | tee "$OUT/train.log"
python3 -c "import torch, torchvision, PIL, numpy; print('torch', torch.__version__, 'tv', torchvision.__version__, 'PIL', PIL.__version__, 'np', numpy.__version__, torch.cuda.is_available())" 2>&1 | tee -a "$OUT/train.log"
python3 scripts/train_default.py --device "$DEVICE" --size 640 --batch "$BATCH" --reuse 3 --lr 2e-3 \
    --workers "$WORKERS" --minutes "$MINUTES" --save-every 60 --seed 0 --out "$OUT" 2>&1 | tee -a "$OUT/train.log"
rc=${PIPESTATUS[0]}
echo "train exit code $rc" | tee -a "$OUT/train.log"
if [ -f "$OUT/default.pt" ]; then
    timeout 90 python3 scripts/bench_gpu_default.py --weights "$OUT/default.pt" --out "$OUT/gpu_bench.json" \
        --device "$DEVICE" --iters 5 2>&1 | tee -a "$OUT/train.log"
fi
exit $rc
