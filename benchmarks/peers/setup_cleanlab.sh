#!/usr/bin/env bash
# Build the peer environment for `python -m benchmarks.label_quality`: cleanlab in its own venv (.venv-cleanlab,
# gitignored). cleanlab is AGPL-3.0: it is a benchmark-only peer, run as a separate process on probabilities the
# benchmark saved to an .npz, and it never enters the product or the product's venv.
#
#     bash benchmarks/peers/setup_cleanlab.sh [VENV_DIR]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${1:-$ROOT/.venv-cleanlab}"
PYTHON="${PYTHON:-python3.11}"
CLEANLAB_VERSION="${CLEANLAB_VERSION:-2.7.1}"

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q "cleanlab==$CLEANLAB_VERSION"
"$VENV/bin/python" -c "import cleanlab; print(f'cleanlab {cleanlab.__version__}')"
