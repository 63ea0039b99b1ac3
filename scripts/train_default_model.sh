#!/usr/bin/env bash
# Rebuild the shipped default model from nothing but packages, with issue 19's recipe
# (configs/train/field.yaml): render the corpus (FluidSynth SoundFonts, STK physical models,
# Hydrogen kits; timbre augmentation; solo and accompanied emotion pieces), train with two
# processes (checkpoint every epoch; rerunning the script resumes), evaluate on the held-out
# SoundFont (TimGM6mb) through the engine, score the model it replaces on the same clips, run
# the leave-one-sample-set-out folds, copy the checkpoint into the package and write the card.
#
# Usage: bash scripts/train_default_model.sh [WORK_DIR]
#   EPOCHS=40 (training epochs), SIZE=default (corpus size), LOO=1 (0: skip the folds),
#   LOO_EPOCHS=8, LOO_SIZE=small. (SIZE=tiny EPOCHS=1 LOO_SIZE=tiny LOO_EPOCHS=1 tries the
#   whole chain in minutes; it overwrites the shipped model and card like a real run.)
# Every step keeps what it finished: rerun the same command after an interruption.
#
# Time on 2 idle cores (estimated; see the commit that sized it for how): corpus ~10 min,
# features ~7 min (once, cached), 40 epochs of ~55 s = ~37 min, final report ~2 min, the old
# model's evaluation ~1 min: ~57 min for the main model (budget 90). The folds (6 × small corpus,
# 8 epochs) add ~35 min; run them after the main model (LOO=1, the default) or in a second
# session (LOO=0 now, then `bash scripts/leave_one_out.sh WORK_DIR/loo` and this script again).
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-work}"
epochs="${EPOCHS:-40}"
size="${SIZE:-default}"
mkdir -p "$work"
stamp() { echo "[$(date +%H:%M:%S)] $*"; }

# The model this one replaces, kept for the comparison (only the first time).
if [ ! -f "$work/previous.safetensors" ]; then
    cp streamtag/assets/default.safetensors "$work/previous.safetensors"
fi

if [ ! -f "$work/corpus/manifest.jsonl" ]; then
    stamp "corpus"
    streamtag corpus build --out "$work/corpus" --size "$size" --seed 0 --overwrite --no-progress
fi

stamp "training ($epochs epochs)"
resume=()
if [ -f "$work/run/last.train.pt" ]; then resume=(--resume); fi
torchrun --standalone --nproc_per_node 2 -m streamtag.train.cli train \
    --config configs/train/field.yaml --corpus "$work/corpus" --out "$work/run" \
    --epochs "$epochs" --cache-dir "$work/cache" "${resume[@]}"

if [ ! -f "$work/eval-previous/report.json" ]; then
    stamp "evaluating the model it replaces on the same clips"
    streamtag evaluate --checkpoint "$work/previous.safetensors" --corpus "$work/corpus" \
        --out "$work/eval-previous" --cache-dir "$work/cache" --progress off
fi

loo_args=()
if [ "${LOO:-1}" != "0" ]; then
    stamp "leave-one-sample-set-out folds"
    bash scripts/leave_one_out.sh "$work/loo" --epochs "${LOO_EPOCHS:-8}" \
        --size "${LOO_SIZE:-small}" --config configs/train/field.yaml
fi
if [ -f "$work/loo/loo.md" ]; then loo_args=(--loo "$work/loo/loo.md"); fi

cp "$work/run/best.safetensors" streamtag/assets/default.safetensors
python3 scripts/write_model_card.py "$work/run" --previous "$work/eval-previous" \
    "${loo_args[@]}" > streamtag/assets/MODEL_CARD.md
stamp "default model: streamtag/assets/default.safetensors; card: streamtag/assets/MODEL_CARD.md"
