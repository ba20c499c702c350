"""The edge runtime works on a machine without the training, database or web stacks installed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.runtime.helpers import TINY, synthetic_image

SRC = Path(__file__).resolve().parents[2] / "src"
BLOCKED = ("torch", "torchvision", "sqlalchemy", "fastapi", "typer")

# Runs in a fresh interpreter: block the heavy packages first, then use the runtime as the edge does.
SCRIPT = """
import importlib.abc, json, sys

BLOCKED = set(sys.argv[3].split(","))

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"{name} is not installed on this edge device", name=name)
        return None

sys.meta_path.insert(0, Blocker())

from inspectloop.runtime import EdgeModel
from inspectloop.runtime.__main__ import main

prediction = EdgeModel(sys.argv[1]).predict(sys.argv[2])
exit_code = main([sys.argv[1], sys.argv[2]])
loaded = sorted(name for name in sys.modules if name.partition(".")[0] in BLOCKED)
print(json.dumps({"label": prediction.label, "exit_code": exit_code, "loaded": loaded}))
"""


def test_runtime_needs_no_torch_sqlalchemy_fastapi_or_typer(tmp_path: Path) -> None:
    model = TINY
    image = tmp_path / "part.jpg"
    synthetic_image("scratch", 1).save(image)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(model), str(image), ",".join(BLOCKED)],
                            capture_output=True, text=True, env=env, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    cli_line, report_line = result.stdout.strip().splitlines()
    report = json.loads(report_line)
    assert report == {"label": "scratch", "exit_code": 0, "loaded": []}
    assert json.loads(cli_line)["label"] == "scratch"
