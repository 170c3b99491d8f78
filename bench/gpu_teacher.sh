#!/usr/bin/env bash
# One GPU lease, one script: check the CUDA paths (degradations, bf16 autocast, torch.compile),
# measure teacher training throughput, then train rar-teacher for the time left.
# Usage: bench/gpu_teacher.sh TRAIN_DIR VAL_DIR INIT_CKPT OUT SECONDS
# Runs from the repository root without installing (PYTHONPATH); needs torch with CUDA, safetensors,
# scikit-image, tqdm, pillow. The run stops itself SECONDS after the script starts, with a checkpoint.
set -u
TRAIN=$1 VAL=$2 INIT=$3 OUT=$4 SECONDS_TOTAL=$5
START=$(date +%s)
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
RAR="python3 -m rar_edge"
BATCH=32
left() { echo $(( SECONDS_TOTAL - ($(date +%s) - START) )); }
rate() {  # the last logged training throughput (img/s) of a run folder
  python3 -c "import json,sys; print([r for r in map(json.loads, open(sys.argv[1])) if 'img_per_s' in r][-1]['img_per_s'])" \
    "$1/log.jsonl" 2>/dev/null || echo 0; }

nvidia-smi -L; python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
python3 -m pytest -q -p no:cacheprovider tests/test_degrade.py -k cuda 2>&1 | tail -2

common="--preset rar-teacher --init $INIT --data $TRAIN --val-data $VAL --batch $BATCH --crop 128 --lr 5e-4 --warmup 200"
echo "== eager bf16 smoke (60 steps)"
timeout 120 $RAR train $common --out /tmp/smoke_eager --steps 60 --val-every 60 --ckpt-every 60 2>&1 | tail -2
echo "eager img/s: $(rate /tmp/smoke_eager)"
echo "== compiled bf16 smoke (60 steps, compile time included)"
timeout 150 $RAR train $common --compile --out /tmp/smoke_compile --steps 60 --val-every 60 --ckpt-every 60 2>&1 | tail -2
echo "compiled img/s (incl. compile): $(rate /tmp/smoke_compile)"

R=$(rate /tmp/smoke_eager) AMP=""
if [ "$R" = 0 ]; then  # bf16 failed: fall back to fp32 rather than lose the lease
  AMP="--no-amp"; echo "== bf16 smoke failed: fp32 smoke"
  timeout 100 $RAR train $common $AMP --out /tmp/smoke_fp32 --steps 40 --val-every 40 --ckpt-every 40 2>&1 | tail -2
  R=$(rate /tmp/smoke_fp32)
fi
T=$(( $(left) - 45 ))  # keep time to write checkpoints and copy them out
STEPS=$(python3 -c "print(max(100, int($T * $R / $BATCH * 0.9)))")
echo "== main run: $STEPS steps in about $T s"
timeout -s INT $T $RAR train $common $AMP --out /tmp/teacher --steps $STEPS --val-every 500 --ckpt-every 500 2>&1 \
  | tr '\r' '\n' | grep -v "it/s\]$\|step\]$" | grep -E "step [0-9]+:|done|Error|error" | tail -40
python3 - <<'PY'
import json
rows = [json.loads(l) for l in open("/tmp/teacher/log.jsonl")]
tr = [r for r in rows if "img_per_s" in r]
print("main run: last step", tr[-1]["step"], "img/s", round(tr[-1]["img_per_s"], 1))
for r in rows:
    if "val" in r:
        print("val", r["step"], {k: round(v, 3) for k, v in r["val"].items() if not isinstance(v, dict)})
PY
mkdir -p "$OUT/last" "$OUT/best"
cp /tmp/teacher/last/model.safetensors /tmp/teacher/last/config.json "$OUT/last/" 2>/dev/null
cp /tmp/teacher/best/model.safetensors /tmp/teacher/best/config.json "$OUT/best/" 2>/dev/null
cp /tmp/teacher/log.jsonl "$OUT/" 2>/dev/null
echo "finished after $(( $(date +%s) - START )) s"
