#!/usr/bin/env bash
# Segmentation demo on 2 CPU cores (~1-2 min): generate the tiny Cityscapes-format data, train the width-8
# SAU U-Net on it through tools/train.py, evaluate the checkpoint through tools/eval.py, print mIoU and aAcc.
#   bash segmentation/demo.sh            (PYTHON=..., WORK_DIR=... to override)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
CONFIG=segmentation/configs/unet-w8_sau_tiny-cityscapes.py
WORK=${WORK_DIR:-work_dirs/unet-w8_sau_tiny-cityscapes}
# one thread per process: on a small shared CPU, OpenMP threads waiting on each other cost ~3x
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$WORK"
$PY tools/data/make_tiny_cityscapes.py
start=$(date +%s)
$PY tools/train.py "$CONFIG" --work-dir "$WORK" --seed 0 > "$WORK/train.log" 2>&1 \
  || { tail -n 20 "$WORK/train.log"; exit 1; }
$PY tools/eval.py "$CONFIG" "$WORK/epoch_30.pth" --work-dir "$WORK/eval" --out "$WORK/metrics.json" \
  > "$WORK/eval.log" 2>&1 || { tail -n 20 "$WORK/eval.log"; exit 1; }
$PY - "$WORK/metrics.json" "$(( $(date +%s) - start ))" <<'PYEOF'
import json, sys
m = json.load(open(sys.argv[1]))
print(f'segmentation  U-Net w8 + SAU, tiny Cityscapes val: mIoU {m["mIoU"]:.2f}  aAcc {m["aAcc"]:.2f}  '
      f'mAcc {m["mAcc"]:.2f}  (train + eval {sys.argv[2]} s; logs and metrics in {sys.argv[1].rsplit("/", 1)[0]})')
PYEOF
