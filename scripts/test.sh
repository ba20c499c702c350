#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite. CI runs exactly this (.ci/run).
# First the edge runtime's tests run in .venv-edge (no torch, no app stack): they must pass there, not skip.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --edge
export HF_HUB_OFFLINE=1

edge_status=0
# OpenVINO is an optional extra a camera PC may lack: its tests run in .venv (dev extra), deselected here.
edge_output=$(.venv-edge/bin/python -m pytest -q -m "not openvino" tests/runtime 2>&1) || edge_status=$?
edge_summary=$(tail -n 1 <<<"$edge_output")
if [ "$edge_status" != 0 ] || [[ $edge_summary == *skipped* || $edge_summary != *passed* ]]; then
  echo "$edge_output"
  echo "edge-only venv (.venv-edge): the runtime tests must all run and pass without torch; got: $edge_summary"
  exit 1
fi
echo "edge-only venv (.venv-edge, no torch): runtime tests ${edge_summary}"

# Two workers (pytest-xdist) by default: most tests wait on one thread, a subprocess or a local server, so a
# second worker halves the wall time on two cores. A test file stays on one worker (its module fixtures are
# built once). TEST_WORKERS=0 runs in one process.
exec .venv/bin/python -m pytest -q -n "${TEST_WORKERS:-2}" --dist loadfile "$@"
