#!/usr/bin/env bash
# Set up (if needed) and run the quickstart: a synthetic production line through the whole loop.
# Pass --images PATH to use your own folder-per-class tree or CSV manifest instead.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1
exec .venv/bin/inspectloop quickstart --fresh "$@"
