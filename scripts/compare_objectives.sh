#!/usr/bin/env bash
# Masked-LM against ELECTRA for the shipped model's architecture (6 layers, 256 wide, its vocabulary), on
# budgets small enough for 2 CPU cores (about an hour): pre-train each, fine-tune each for the same steps,
# fine-tune the same architecture from random weights as the floor, and the masked-LM one again with an
# average of its weights (--ema_decay 0.999). ELECTRA's steps cost more (its generator), so it gets fewer:
# ELECTRA_STEPS. The table gives each run's seconds, so compute is visible. A run whose output exists is
# kept, so an interrupted comparison goes on where it stopped. Validation is carved from the train split;
# the test split is not read.
#
# Usage: scripts/compare_objectives.sh [OUT_DIR] [DATA_DIR]
#   environment: MLM_STEPS (2000), ELECTRA_STEPS (1700), FINETUNE_STEPS (1500), PYTHON
set -euo pipefail
OUT=${1:-runs/objectives} DATA=${2:-../shared/data/nsmc}
MLM_STEPS=${MLM_STEPS:-2000} ELECTRA_STEPS=${ELECTRA_STEPS:-1700} FT_STEPS=${FINETUNE_STEPS:-1500}
PY=${PYTHON:-python}
mkdir -p "$OUT"

pretrain() {  # OBJECTIVE STEPS
  [ -f "$OUT/pretrain-$1/export/metrics.json" ] && return
  $PY -m train.pretrain configs/pretrain-small.yaml --objective "$1" --max_steps "$2" --epochs 1 \
    --texts "$DATA/reviews_unlabeled.txt.gz" --tokenizer models/nsmc-small --batch_size 128 \
    --val_size 2000 --val_check_interval 250 --output_dir "$OUT/pretrain-$1" --accelerator cpu
}
finetune() {  # NAME PRETRAINED [extra flags]
  [ -f "$OUT/finetune-$1/metrics.json" ] && return
  $PY -m train configs/nsmc-small.yaml --pretrained_model_name "$2" --corpus_dir "$DATA" \
    --downstream_model_dir "$OUT/finetune-$1" --max_steps "$FT_STEPS" --max_time 00:02:00:00 \
    --val_check_interval 500 --accelerator cpu "${@:3}"
}
pretrain mlm "$MLM_STEPS"
pretrain electra "$ELECTRA_STEPS"
finetune mlm "$OUT/pretrain-mlm/export"
finetune electra "$OUT/pretrain-electra/export"
finetune scratch "$OUT/pretrain-mlm/export" --from_scratch true
finetune mlm-ema "$OUT/pretrain-mlm/export" --ema_decay 0.999

$PY - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
print("\n| pre-training | steps of 128 | seconds | fine-tuning | steps of 64 | seconds | validation accuracy |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for run, pretrained, how in (("mlm", "mlm", "plain"), ("electra", "electra", "plain"),
                             ("scratch", "none (random weights)", "plain"), ("mlm-ema", "mlm", "--ema_decay 0.999")):
    pre = out / f"pretrain-{pretrained}" / "export" / "metrics.json"
    pre = json.loads(pre.read_text()) if pre.is_file() else {}
    ft = json.loads((out / f"finetune-{run}" / "metrics.json").read_text())
    print(f"| {pretrained} | {pre.get('global_step', 0):,} | {pre.get('fit_seconds', 0):,.0f} | {how} "
          f"| {ft['global_step']:,} | {ft['fit_seconds']:,.0f} | {ft['val_acc']:.2%} |")
PY
