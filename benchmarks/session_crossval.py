"""Leave-one-session-out on magnetic tile: the worst capture session beside the mean.

    python -m benchmarks.session_crossval [--mode probe] [--epochs E (fine-tuning)]
    python -m benchmarks.session_crossval --workspace benchmarks/cache/magnetic_tile --run RUN --name NAME

``inspectloop crossval --by session`` on the magnetic-tile workspace of ``benchmarks.calibration``
(reused from ``benchmarks/cache/calibration-magnetic_tile``, built and trained there first when
missing), with the recipe of its split run and ``--mode probe`` by default (a linear head on the frozen
EfficientNet-Lite0 trunk, 192 px: seconds per session once the images are decoded; the fine-tuned
recipe costs a fine-tune per session, about 7 x 10 minutes on 2 cores). Each of exp0..exp6 is held out
in turn: trained on every labelled image of the other sessions (all splits but validation, which picks
the best epoch), scored on every image of the held-out session. Top-class decisions.
Goal (issue 17): worst session >= 90% macro recall at <= 5% good tiles rejected.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks.calibration import MT, run_once, workspace_for
from benchmarks.common import CITATIONS, write_result
from inspectloop.evaluate.crossval import crossval
from inspectloop.workspace import open_workspace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", choices=("probe", "finetune"), default="probe")
    parser.add_argument("--epochs", type=int, default=None, help="fine-tuning epochs (default: the run's; a probe fits to convergence)")
    parser.add_argument("--workspace", type=Path, default=None,
                        help="another magnetic-tile workspace (e.g. benchmarks.magnetic_tile --standardise-study's)")
    parser.add_argument("--run", default=None, help="with --workspace: the run whose recipe is held out")
    parser.add_argument("--name", default="session_crossval", help="result file name")
    args = parser.parse_args()
    if args.workspace is not None:
        ws, run_id = open_workspace(args.workspace), args.run
    else:
        ws = workspace_for("magnetic_tile", reuse=True)
        run_id, _ = run_once(ws, MT, "magnetic_tile/split")

    def show(stage: str, info: dict) -> None:
        if stage == "group":
            print(f"  holding out {info['group']} ({info['done'] + 1}/{info['total']})", flush=True)

    result = crossval(ws, "session", run=run_id, mode=args.mode, epochs=args.epochs, progress=show)
    ws.close()
    for group, f in result.groups.items():
        print(f"  {group}: {f['count']} images, macro recall {f['macro_recall']:.4f}, good rejected "
              f"{f['good_rejects']}/{f['good']}, escapes {f['escapes']}/{f['defective']}", flush=True)
    s = result.summary
    print(f"mean macro recall {s['mean_macro_recall']:.4f}, worst {s['worst_group']} {s['worst_macro_recall']:.4f}; "
          f"good rejected: mean {s['mean_good_reject_rate']:.1%}, worst {s['worst_good_reject_group']} "
          f"{s['worst_good_reject_rate']:.1%}; skipped {result.skipped}")
    write_result(args.name, {
        "dataset": "magnetic_tile", "citation": CITATIONS["magnetic_tile"], "recipe_run": run_id,
        "goal": {"worst_session_macro_recall": ">= 0.90", "worst_session_good_reject_rate": "<= 0.05"},
        "command": f"inspectloop crossval --by session --run {run_id} --mode {args.mode}", **result.to_dict()})


if __name__ == "__main__":
    main()
