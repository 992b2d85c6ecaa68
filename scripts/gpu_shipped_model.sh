#!/usr/bin/env bash
# The shipped model's whole GPU run, sized for one ~9-minute call on one H100/H200 (the device tool).
# Pre-trains two BERT sizes side by side (the small models leave the GPU mostly idle, so two processes
# share it well), fine-tunes each at two learning rates side by side, and picks the run with the best
# *validation* accuracy (validation is carved from the train split; the test split is not looked at here:
# `python -m train.evaluate` scores the chosen model on it once, afterwards).
#
# Usage: scripts/gpu_shipped_model.sh DATA_DIR TOKENIZER_DIR OUT_DIR [PRETRAIN_TIME] [FINETUNE_TIME]
#   PRETRAIN_ARGS / FINETUNE_ARGS (environment): extra flags, e.g. for a CPU rehearsal with a tiny model.
#   VARIANTS: the two pre-trainings, NAME=flags|NAME=flags (default: the shipped run's 6 and 8 layers);
#     e.g. VARIANTS="mlm=--objective mlm|electra=--objective electra".
#   LRS: the fine-tuning learning rates (default "1e-4 2e-4").
#   KCBERT: a kcbert-base folder (config and vocab): then kcbert-base's GPU training throughput, the
#     tutorial's way against ours, is measured at the end (bench/speed.py --sections train --device cuda).
set -uo pipefail
DATA=$1 TOK=$2 OUT=$3 PT=${4:-00:00:05:00} FT=${5:-00:00:02:20}
IFS="|" read -r -a VARIANT_LIST <<< "${VARIANTS:-6l=--num_hidden_layers 6|8l=--num_hidden_layers 8}"
read -r -a LR_LIST <<< "${LRS:-1e-4 2e-4}"
read -r -a PRE_X <<< "${PRETRAIN_ARGS:-}"
read -r -a FT_X <<< "${FINETUNE_ARGS:-}"
LOGS=$(mktemp -d)
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=true OMP_NUM_THREADS=2
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null 
$PY -c "import torch, transformers, lightning; print('torch', torch.__version__, 'transformers', transformers.__version__, 'lightning', lightning.__version__)"
t0=$(date +%s)

pretrain() {  # NAME FLAGS...
  $PY -m train.pretrain configs/pretrain-small.yaml --texts "$DATA/reviews_unlabeled.txt.gz" --tokenizer "$TOK" \
    --output_dir "runs/pretrain-$1" "${@:2}" --max_time "$PT" --cpu_workers 3 "${PRE_X[@]}" > "$LOGS/pretrain-$1.log" 2>&1
  rc=$?; echo "pretrain-$1 exit $rc after $(( $(date +%s) - t0 )) s"; [ $rc = 0 ] || tail -5 "$LOGS/pretrain-$1.log"
}
NAMES=()
for v in "${VARIANT_LIST[@]}"; do
  read -r -a flags <<< "${v#*=}"
  NAMES+=("${v%%=*}")
  pretrain "${v%%=*}" "${flags[@]}" &
done
wait

finetune() {  # PRETRAINED LR
  $PY -m train configs/nsmc-small.yaml --pretrained_model_name "runs/pretrain-$1/export" --corpus_dir "$DATA" \
    --downstream_model_dir "runs/ft-$1-$2" --learning_rate "$2" --max_time "$FT" --run_test false --cpu_workers 2 "${FT_X[@]}" \
    > "$LOGS/ft-$1-$2.log" 2>&1
  rc=$?; echo "ft-$1-$2 exit $rc after $(( $(date +%s) - t0 )) s"; [ $rc = 0 ] || tail -5 "$LOGS/ft-$1-$2.log"
}
for p in "${NAMES[@]}"; do
  [ -f "runs/pretrain-$p/export/config.json" ] || continue
  for lr in "${LR_LIST[@]}"; do finetune "$p" "$lr" & done
done
wait

# Pick by validation accuracy; ship that export (float16), in pieces under the tool's 16 MB per file.
$PY - "$OUT" "$LOGS/best.txt" <<'PY'
import json, sys, glob, os
out = sys.argv[1]
runs = {}
for m in glob.glob("runs/*/metrics.json") + glob.glob("runs/*/export/metrics.json"):
    runs[m] = json.load(open(m))
json.dump(runs, open(f"{out}/runs.json", "w"), indent=1)
ft = {m: r for m, r in runs.items() if m.startswith("runs/ft-") and "/export/" not in m}
for m, r in sorted(ft.items(), key=lambda kv: -kv[1].get("val_acc", 0)):
    print(f"{m:40s} val_acc {r.get('val_acc', float('nan')):.4f} steps {r.get('global_step')} fit {r.get('fit_seconds')} s")
for m, r in runs.items():
    if "pretrain" in m and "/export/" in m:
        print(f"{m:40s} pretrain val_loss {r['val_loss']:.3f} steps {r['global_step']} {r['steps_per_second']} steps/s")
best = max(ft, key=lambda m: ft[m].get("val_acc", 0)) if ft else None
print("best:", best)
open(sys.argv[2], "w").write(os.path.dirname(best) if best else "")
PY
best=$(cat "$LOGS/best.txt")
for f in runs/*/logs/version_*/metrics.csv; do cp "$f" "$LOGS/$(echo "$f" | cut -d/ -f2)-metrics.csv"; done
tar -C "$LOGS" -czf "$OUT/logs.tgz" .
if [ -n "$best" ]; then
  tar -C "$best" -cf - export | split -b 15M - "$OUT/export.tar.part-"
fi
if [ -n "${KCBERT:-}" ]; then
  NSMC_DATA="$DATA" NSMC_KCBERT="$KCBERT" $PY bench/speed.py --model none --sections train --device cuda --no-write
fi
echo "total $(( $(date +%s) - t0 )) s"
ls -la "$OUT"
