#!/usr/bin/env bash
# Build the peer environment for `python -m benchmarks.detection --peer`: Ultralytics YOLO in its own venv
# (.venv-ultralytics, gitignored). Ultralytics is AGPL-3.0: it is a benchmark-only peer, run as a separate
# process on a YOLO dataset folder the benchmark wrote, and it never enters the product or the product's venv.
# torch/torchvision are pinned to the pair the product uses (the releases on this machine's disk), so pip never
# swaps in another torch build from the registry; onnx/onnxslim/onnxruntime are what its ONNX export and the
# latency timing need, installed here so the export never tries to pip-install them at run time.
#
#     bash benchmarks/peers/setup_ultralytics.sh [VENV_DIR]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${1:-$ROOT/.venv-ultralytics}"
ULTRALYTICS_VERSION="${ULTRALYTICS_VERSION:-8.4.190}"

# shellcheck source=benchmarks/peers/torch_venv.sh
source "$ROOT/benchmarks/peers/torch_venv.sh"
make_torch_venv "$VENV"
"$VENV/bin/pip" install -q -c "$CONSTRAINTS" "ultralytics==$ULTRALYTICS_VERSION" \
    onnx==1.23.2 onnxslim==0.1.98 onnxruntime==1.32.0
# The check imports it as the run does: offline, its settings file kept inside the venv, not in ~/.config.
YOLO_OFFLINE=1 YOLO_CONFIG_DIR="$VENV/ultralytics-config" "$VENV/bin/python" - <<'PY'
import onnxruntime, torch, ultralytics
print(f"ultralytics {ultralytics.__version__}, torch {torch.__version__}, onnxruntime {onnxruntime.__version__}")
PY
