#!/usr/bin/env bash
# The GPU training run of the default detector, as run on one H100 or H200 (device machine, 16 cores).
# Usage: OUT=/some/dir MINUTES=7 [PATCH=benchmarks/default_model/generator_stacks_fridges_grilles.patch] bash scripts/gpu_train_default.sh
# Writes $OUT/default.pt and $STATE_DIR/state.pt (refreshed every minute and on a crash or SIGTERM
# after the first step, so a time-out still leaves weights and a state to resume), $OUT/train_log.csv,
# $OUT/train.log and, with BENCH=1, $OUT/gpu_bench.json
# (issue 5e; the speed does not depend on the weights, so it is off by default: it cost up to 90 s).
# MINUTES=7 fits a 600 s device call with the start-ups around it.
# An $OUT that already holds a run is refused: RESUME=1 continues it (same options and MINUTES),
# OVERWRITE=1 starts a new run over it.
# state.pt (about 60 MB: weights, average and the optimizer's moments) is too big for the device
# tool to bring back (16 MiB a file, 64 MiB in all: beside it nothing might come back), so it goes
# to STATE_DIR (default: $OUT-state, beside $OUT, not in it); a later call starts a bare machine:
# RESUME=1 is for machines that keep their disk. What comes back is default.pt and the logs.
# Exit status: the training's, except 3 where this script's own time limit stopped it (timeout's
# 124 would read as the device call's time-out; the weights of the last save are there).
set -uo pipefail
OUT=${OUT:?set OUT to an output folder}
STATE_DIR=${STATE_DIR:-${OUT%/}-state}
MINUTES=${MINUTES:-7}
WORKERS=${WORKERS:-14}
DEVICE=${DEVICE:-cuda}   # DEVICE=cpu BATCH=2 MINUTES=0.5 WORKERS=2 for a dry run of this exact script
BATCH=${BATCH:-32}
BENCH=${BENCH:-0}
RESUME=${RESUME:-0}
OVERWRITE=${OVERWRITE:-0}
MODE=()
[ "$RESUME" = 1 ] && MODE+=(--resume)
[ "$OVERWRITE" = 1 ] && MODE+=(--overwrite)
if [ "$RESUME" != 1 ] && [ "$OVERWRITE" != 1 ] && { [ -e "$OUT/default.pt" ] || [ -e "$STATE_DIR/state.pt" ]; }; then
    echo "gpu_train_default.sh: $OUT already holds a run (default.pt, or state.pt in $STATE_DIR): RESUME=1 continues it, OVERWRITE=1 starts a new one over it" >&2
    exit 2
fi
export PYTHONUNBUFFERED=1 PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH}  # (carried wheels stay on the path)
mkdir -p "$OUT"
# PATCH=benchmarks/default_model/generator_stacks_fridges_grilles.patch trains on a generator
# experiment (applied to this copy of the tree first; git apply works outside a repository too)
if [ -n "${PATCH:-}" ] && ! command -v git >/dev/null; then
    echo "gpu_train_default.sh: PATCH needs git, which this machine lacks: apply $PATCH to the tree before the call" >&2
    exit 2
fi
if [ -n "${PATCH:-}" ] && ! git apply --check "$PATCH"; then
    if git apply --reverse --check "$PATCH" 2>/dev/null; then
        echo "gpu_train_default.sh: $PATCH is already applied" | tee -a "$OUT/train.log"
    else
        echo "gpu_train_default.sh: $PATCH does not apply to this tree" >&2
        exit 2
    fi
elif [ -n "${PATCH:-}" ]; then
    git apply "$PATCH" && echo "applied $PATCH" | tee -a "$OUT/train.log"
fi
echo "=== session $(date -u +%Y-%m-%dT%H:%M:%SZ) RESUME=$RESUME OVERWRITE=$OVERWRITE" | tee -a "$OUT/train.log"  # every session appends
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>&1 | tee -a "$OUT/train.log"
python3 -c "import torch, torchvision, PIL, numpy; print('torch', torch.__version__, 'tv', torchvision.__version__, 'PIL', PIL.__version__, 'np', numpy.__version__, torch.cuda.is_available())" 2>&1 | tee -a "$OUT/train.log"
df -h /dev/shm 2>&1 | tee -a "$OUT/train.log"   # the data workers' batches travel through it
# a hung data worker must not hold the machine past the budget: SIGTERM saves the weights
limit=$(python3 -c "print(int(float('$MINUTES') * 60 + 60))")
timeout -k 15 "$limit" python3 scripts/train_default.py --device "$DEVICE" --size 640 --batch "$BATCH" --reuse 3 \
    --lr 2e-3 --workers "$WORKERS" --minutes "$MINUTES" --save-every 60 --seed 0 --out "$OUT" --state-dir "$STATE_DIR" ${MODE[@]+"${MODE[@]}"} 2>&1 | tee -a "$OUT/train.log"
rc=${PIPESTATUS[0]}
echo "train exit code $rc" | tee -a "$OUT/train.log"
if [ "$rc" = 124 ]; then  # this script's limit stopped a hung run: not the device call's time-out
    echo "stopped by this script's time limit ($limit s); the weights of its last save are in $OUT" | tee -a "$OUT/train.log"
    rc=3
fi
if [ "$BENCH" = 1 ] && [ -f "$OUT/default.pt" ]; then
    timeout 90 python3 scripts/bench_gpu_default.py --weights "$OUT/default.pt" --out "$OUT/gpu_bench.json" \
        --device "$DEVICE" --iters 5 2>&1 | tee -a "$OUT/train.log"
    echo "bench exit code ${PIPESTATUS[0]}" | tee -a "$OUT/train.log"
fi
exit $rc
