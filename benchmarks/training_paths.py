"""Do the fast training paths change the decisions beyond seed noise? (issue 16)

    bash scripts/quickstart.sh          # makes inspectloop-quickstart/ (data, split, locked criteria)
    python -m benchmarks.training_paths [--workspace inspectloop-quickstart] [--seeds 0 1 2]
    python -m benchmarks.training_paths --paths float32 float32+head-refit --name training_paths_refit

The quickstart's recipe (160 px, 12 epochs, batch 16, its frozen blocks, judged by its locked criteria),
trained on the quickstart workspace's dataset once per seed and path: float32 NCHW and bf16 autocast with
channels-last (the fast path: the default since 2026-12-02 where the CPU has bf16), each with or without
the probe's head refitted at the end (the default since 2026-12-01). Per run: test macro recall and the
review band's decisions on the frozen test set (review rate, escapes, false rejects). A path can become the
default only if its spread over seeds overlaps the default's.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from benchmarks.common import write_result
from inspectloop.quickstart import DEMO_FREEZE_BLOCKS
from inspectloop.train.config import TrainConfig
from inspectloop.train.run import train
from inspectloop.workspace import open_workspace

# Each path names every setting it differs by, so a later change of default keeps old commands' meaning.
FLOAT32 = {"precision": "float32", "channels_last": False}
FAST = {"precision": "bf16", "channels_last": True}
PATHS: dict[str, dict[str, Any]] = {"float32": {**FLOAT32, "head_refit": False},
                                    "bf16+channels-last": {**FAST, "head_refit": False},
                                    "float32+head-refit": {**FLOAT32, "head_refit": True},
                                    "bf16+channels-last+head-refit": {**FAST, "head_refit": True}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workspace", type=Path, default=Path("inspectloop-quickstart"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--criteria", default="quickstart-line")
    parser.add_argument("--paths", nargs="+", choices=list(PATHS), default=["float32", "bf16+channels-last"])
    parser.add_argument("--name", default="training_paths", help="result file name")
    args = parser.parse_args()
    ws = open_workspace(args.workspace)
    rows = []
    for seed in args.seeds:
        for path, settings in ((p, PATHS[p]) for p in args.paths):
            config = TrainConfig(epochs=12, input_size=160, batch_size=16, freeze_blocks=DEMO_FREEZE_BLOCKS,
                                 seed=seed, **settings)
            started = time.perf_counter()
            result = train(ws, config, criteria=args.criteria)
            test = (result.metrics.get("decisions") or {}).get("test") or {}
            rows.append({"seed": seed, "path": path, "run": result.run_id,
                         "macro_recall": result.metrics["test"]["macro_recall"],
                         "review_rate": test.get("review_rate"), "escapes": test.get("escapes"),
                         "false_rejects": test.get("false_rejects"), "seconds": round(time.perf_counter() - started, 1)})
            print(rows[-1], flush=True)
    ws.close()
    write_result(args.name, {"workspace": str(args.workspace), "criteria": args.criteria, "rows": rows})


if __name__ == "__main__":
    main()
