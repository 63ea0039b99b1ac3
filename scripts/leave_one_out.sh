#!/usr/bin/env bash
# Leave-one-sample-set-out evaluation (issue 19, item 2): one model per fold, each trained
# without one SoundFont and one Hydrogen kit group and scored on them through the engine.
# Writes WORK/loo.md (the model card's tables) and WORK/loo.json. Rerunning continues an
# interrupted run (finished corpora, runs and folds are kept; training resumes).
# Usage: bash scripts/leave_one_out.sh [WORK_DIR] [extra options of python -m streamtag.train.loo]
#   e.g. bash scripts/leave_one_out.sh work/loo --epochs 8 --size small
set -euo pipefail
cd "$(dirname "$0")/.."
# The project venv (bash scripts/setup --train) when there is one: streamtag, torchrun, python3.
if [ -x .venv/bin/python3 ]; then PATH="$PWD/.venv/bin:$PATH"; fi
work="${1:-work/loo}"
shift || true
python3 -m streamtag.train.loo --list
python3 -m streamtag.train.loo --work "$work" --cache-dir "$work/cache" "$@"
