#!/usr/bin/env bash
# Detection demo on 2 CPU cores (a few minutes): generate the tiny VOC data, train the reduced-width (1/8)
# SSD300-VGG16-BN with SAU on it through tools/train.py, evaluate it through tools/eval.py, print the mAP.
#   bash detection/demo.sh            (PYTHON=..., WORK_DIR=... to override)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
CONFIG=detection/configs/ssd300-w0.125_sau_tinyvoc.py
WORK=${WORK_DIR:-work_dirs/ssd300-w0.125_sau_tinyvoc}
# one thread per process: on a small shared CPU, OpenMP threads waiting on each other cost a lot
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$WORK"
$PY tools/data/make_tiny_voc.py
start=$(date +%s)
$PY tools/train.py "$CONFIG" --work-dir "$WORK" --seed 0 > "$WORK/train.log" 2>&1 \
  || { tail -n 20 "$WORK/train.log"; exit 1; }
$PY tools/eval.py "$CONFIG" "$WORK/iter_100.pth" --work-dir "$WORK/eval" --out "$WORK/metrics.json" \
  > "$WORK/eval.log" 2>&1 || { tail -n 20 "$WORK/eval.log"; exit 1; }
$PY - "$WORK/metrics.json" "$(( $(date +%s) - start ))" <<'PYEOF'
import json, sys
m = json.load(open(sys.argv[1]))
print(f'detection     SSD300-VGG16-BN w/8 + SAU, tiny VOC test: mAP (11-point) {m["pascal_voc/mAP"]:.3f}  '
      f'mAP (area) {m["pascal_voc_area/mAP"]:.3f}  COCO AP {m["coco/bbox_mAP"]:.3f}  (train + eval {sys.argv[2]} s; logs and metrics in '
      f'{sys.argv[1].rsplit("/", 1)[0]})')
PYEOF
