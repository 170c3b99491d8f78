#!/usr/bin/env bash
# One GPU lease, one script: check the CUDA paths (degradations, bf16 autocast, optionally torch.compile),
# measure teacher training throughput, then train rar-teacher for the time left.
# Usage: [BATCH=192] [LR=5e-4] [COMPILE=1] bench/gpu_teacher.sh TRAIN_DIR VAL_DIR INIT_CKPT OUT SECONDS
# BATCH: batch 32 left an H200 mostly idle (144 img/s), 96 gave 350 and 192 gave 575-601 img/s (BENCHMARKS.md).
# COMPILE=1 adds a torch.compile smoke: it did not finish 60 steps in 150 s on an H200, so it is opt-in.
# Runs from the repository root without installing; needs torch with CUDA, safetensors, scikit-image,
# tqdm, pillow. The run stops itself SECONDS after the script starts, with a checkpoint.
set -u
TRAIN=$1 VAL=$2 INIT=$3 OUT=$4 SECONDS_TOTAL=$5
START=$(date +%s)
# Scratch runs go to a fresh folder: a warm machine keeps /tmp between calls, and the trainer refuses
# to overwrite an earlier run.
TMP=$(mktemp -d)
source bench/checkout_pythonpath.sh "$TMP"  # runs from the checkout, without installing
export PYTHONUNBUFFERED=1
RAR="python3 -m rar_edge"
BATCH=${BATCH:-192} LR=${LR:-5e-4}
left() { echo $(( SECONDS_TOTAL - ($(date +%s) - START) )); }
rate() {  # the last logged training throughput (img/s) of a run folder
  python3 -c "import json,sys; print([r for r in map(json.loads, open(sys.argv[1])) if 'img_per_s' in r][-1]['img_per_s'])" \
    "$1/log.jsonl" 2>/dev/null || echo 0; }

nvidia-smi -L; python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
python3 -m pytest -q -p no:cacheprovider tests/test_degrade.py -k cuda 2>&1 | tail -2

common="--preset rar-teacher --init $INIT --data $TRAIN --val-data $VAL --batch $BATCH --crop 128 --lr $LR --warmup 100"
echo "== eager bf16 smoke (50 steps, batch $BATCH)"
timeout 120 $RAR train $common --out $TMP/smoke_eager --steps 50 --val-every 50 --ckpt-every 50 2>&1 | tail -2
echo "eager img/s: $(rate $TMP/smoke_eager)"
if [ "${COMPILE:-0}" = 1 ]; then
  echo "== compiled bf16 smoke (50 steps, compile time included)"
  timeout 150 $RAR train $common --compile --out $TMP/smoke_compile --steps 50 --val-every 50 --ckpt-every 50 2>&1 | tail -2
  echo "compiled img/s (incl. compile): $(rate $TMP/smoke_compile)"
fi

R=$(rate $TMP/smoke_eager) AMP=""
if [ "$R" = 0 ]; then  # bf16 failed: fall back to fp32 rather than lose the lease
  AMP="--no-amp"; echo "== bf16 smoke failed: fp32 smoke"
  timeout 100 $RAR train $common $AMP --out $TMP/smoke_fp32 --steps 40 --val-every 40 --ckpt-every 40 2>&1 | tail -2
  R=$(rate $TMP/smoke_fp32)
fi
T=$(( $(left) - 45 ))  # keep time to write checkpoints and copy them out
[ "$T" -lt 30 ] && T=30
STEPS=$(python3 -c "print(max(100, int($T * $R / $BATCH * 0.9)))")
echo "== main run: $STEPS steps in about $T s"
timeout -s INT $T $RAR train $common $AMP --out $TMP/teacher --steps $STEPS --val-every 500 --ckpt-every 500 2>&1 \
  | tr '\r' '\n' | grep -v "it/s\]$\|step\]$" | grep -E "step [0-9]+:|done|Error|error" | tail -40
python3 - "$TMP/teacher/log.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
tr = [r for r in rows if "img_per_s" in r]
print("main run: last step", tr[-1]["step"], "img/s", round(tr[-1]["img_per_s"], 1))
for r in rows:
    if "val" in r:
        print("val", r["step"], {k: round(v, 3) for k, v in r["val"].items() if not isinstance(v, dict)})
PY
mkdir -p "$OUT/last" "$OUT/best"
cp $TMP/teacher/last/model.safetensors $TMP/teacher/last/config.json "$OUT/last/" 2>/dev/null
cp $TMP/teacher/best/model.safetensors $TMP/teacher/best/config.json "$OUT/best/" 2>/dev/null
cp $TMP/teacher/log.jsonl "$OUT/" 2>/dev/null
echo "finished after $(( $(date +%s) - START )) s"
