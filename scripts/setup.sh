#!/usr/bin/env bash
# Create .venv and install inspectloop with its training and test stack, pinned by requirements.lock.
# With --edge, also create .venv-edge: the core install only (numpy, Pillow, onnxruntime) plus pytest, as on
# a camera PC, where the runtime tests must run without torch.
# Re-running is cheap: a venv is reinstalled only when pyproject.toml or requirements.lock changed.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
want=$(cat pyproject.toml requirements.lock | sha256sum | cut -d' ' -f1)

# install_venv DIR MESSAGE PIP-ARGS...: create DIR if needed; install PIP-ARGS unless its stamp is current.
install_venv() {
  local venv=$1 message=$2
  shift 2
  local stamp=$venv/.inspectloop-installed
  if [ ! -x "$venv/bin/python" ]; then
    echo "creating $venv with $($python --version)"
    "$python" -m venv "$venv"
  fi
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "$message"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -c requirements.lock "$@"
    echo "$want" > "$stamp"
  fi
}

install_venv .venv "installing inspectloop[dev] (torch 2.14.1 + torchvision 0.29.1 pinned; first run takes a few minutes)" \
  -e '.[dev]'
if [ "${1:-}" = "--edge" ]; then
  install_venv .venv-edge "installing the edge-only inspectloop (core install + pytest, no torch)" -e . pytest
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
