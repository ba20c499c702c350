#!/usr/bin/env bash
# Create .venv and install inspectloop with its training and test stack, pinned by requirements.lock.
# Re-running is cheap: it reinstalls only when pyproject.toml or requirements.lock changed.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
stamp=.venv/.inspectloop-installed
want=$(cat pyproject.toml requirements.lock | sha256sum | cut -d' ' -f1)

if [ ! -x .venv/bin/python ]; then
  echo "creating .venv with $($python --version)"
  "$python" -m venv .venv
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "installing inspectloop[dev] (torch 2.14.1 + torchvision 0.29.1 pinned; first run takes a few minutes)"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[dev]'
  echo "$want" > "$stamp"
fi
