# Sourced by the peers' setup scripts: make_torch_venv VENV makes (or reuses) a venv with pip upgraded and the
# torch/torchvision pair the product uses (the releases on this machine's disk), and sets CONSTRAINTS to a file
# that pins them, so the peer's own install never swaps in another torch build from the registry.
PYTHON="${PYTHON:-python3.11}"

make_torch_venv() {
  local venv="$1"
  CONSTRAINTS="$(mktemp)"
  trap 'rm -f "$CONSTRAINTS"' EXIT
  printf 'torch==2.14.1\ntorchvision==0.29.1\n' > "$CONSTRAINTS"
  [ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q -c "$CONSTRAINTS" torch==2.14.1 torchvision==0.29.1
}
