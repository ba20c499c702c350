#!/usr/bin/env bash
# Set up (if needed) and run the quickstart: a synthetic production line through the whole loop.
# Pass --images PATH to use your own folder-per-class tree or CSV manifest instead.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1
# The synthetic line is judged by examples/criteria.yaml, locked before training; your own images are not
# (their classes are yours: write criteria for them and pass --criteria FILE).
if [[ " $* " == *" --images "* ]]; then
  exec .venv/bin/inspectloop quickstart --fresh "$@"
fi
exec .venv/bin/inspectloop quickstart --fresh --criteria examples/criteria.yaml "$@"
