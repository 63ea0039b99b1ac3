#!/usr/bin/env bash
# Rebuild the shipped default model from nothing but packages: render the corpus, train with
# two processes, evaluate on the held-out SoundFont (TimGM6mb) through the engine, and copy the
# checkpoint into the package. About 40 min on 2 quiet cores (corpus 2.5, features 2, 40 epochs
# of ~50 s, report 2; about twice that on a slower, shared machine).
# Usage: bash scripts/train_default_model.sh [WORK_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-work}"
streamtag corpus build --out "$work/corpus" --size default --seed 0
torchrun --standalone --nproc_per_node 2 -m streamtag.train.cli train \
    --config configs/train/default.yaml --corpus "$work/corpus" --out "$work/run" \
    --epochs 40 --cache-dir "$work/cache"
cp "$work/run/best.safetensors" streamtag/assets/default.safetensors
python3 scripts/write_model_card.py "$work/run" > streamtag/assets/MODEL_CARD.md
echo "default model: streamtag/assets/default.safetensors; card: streamtag/assets/MODEL_CARD.md"
