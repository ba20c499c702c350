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

# The browser tests drive Debian's Chromium through Playwright (never a downloaded browser).
if ! command -v chromium >/dev/null 2>&1 && [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian's chromium for the browser tests"
    if ! { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1 \
           || { apt-get update -qq >/dev/null 2>&1 \
                && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1; }; }; then
      echo "could not install chromium with apt-get; the browser tests will be skipped"
    fi
  else
    echo "chromium is not installed and this is not root with apt-get; the browser tests will be skipped" \
         "(install it with: sudo apt-get install chromium)"
  fi
fi
