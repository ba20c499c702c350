"""A site offline for a simulated week syncs with its centre in one resumable pass.

    python -m benchmarks.sync [--predictions 50000] [--decisions 500] [--days 7] [--kill-after 10000]

Two real SQLite workspaces (``tests.sites_helpers``): the centre registers the tiny test CNN, signed, in
production; the site takes it down, then logs ``--predictions`` predictions over ``--days`` days and its
reviewer decides ``--decisions`` review items (images ingested, each verdict an annotation), with one drift
check. Then one ``site sync`` writes the up bundle (timed, its bytes counted) and the centre applies it:

- centre A in one uninterrupted ``site receive`` (timed);
- centre B, a copy of A from before, runs ``inspectloop site receive`` as a process that is killed with
  SIGKILL once ``--kill-after`` predictions are committed, then resumes (timed);

and the two centres' ``state_digests`` (every synced table, less the times rows were written) must match.
A third ``receive`` on A must change nothing. The load average is recorded next to each timing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import timed, write_result
from inspectloop.sites import receive, state_digests, sync
from inspectloop.workspace import open_workspace

ROOT = Path(__file__).resolve().parents[1]


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictions", type=int, default=50_000)
    parser.add_argument("--decisions", type=int, default=500)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--kill-after", type=int, default=10_000, help="predictions committed before SIGKILL")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from tests.sites_helpers import copy_sqlite_workspace, make_pair, receive_killed, work_offline

    with tempfile.TemporaryDirectory(prefix="inspectloop-sync-") as folder:
        root = Path(folder)
        pair = make_pair(root)
        receive(pair.central, pair.exchange)
        sync(pair.site)  # the model comes down
        _, offline_s = timed(lambda: work_offline(pair.site, root / "review-images", predictions=args.predictions,
                                                  decisions=args.decisions, days=args.days))
        load = {"before_sync": loadavg()}
        report, sync_s = timed(lambda: sync(pair.site))
        load["after_sync"] = loadavg()
        assert report.sent is not None
        bundle_bytes = report.sent.stat().st_size

        twin = copy_sqlite_workspace(pair.central, root / "central-b")
        applied, receive_s = timed(lambda: receive(pair.central, pair.exchange))
        load["after_receive"] = loadavg()
        assert [a.status for a in applied] == ["done"], applied
        uninterrupted = state_digests(pair.central)

        killed_at = receive_killed(twin, pair.exchange, args.kill_after)
        reopened = open_workspace(twin)
        resumed, resume_s = timed(lambda: receive(reopened, pair.exchange))
        load["after_resume"] = loadavg()
        interrupted_log = [e for e in reopened.db.sync.log(action="applied") if e.status != "done"]
        resumed_state = state_digests(reopened)
        again, again_s = timed(lambda: receive(pair.central, pair.exchange))
        unchanged = state_digests(pair.central) == uninterrupted and [a.status for a in again] == ["already"]
        down, down_s = timed(lambda: sync(pair.site))  # takes the centre's confirmation; the bundle leaves the exchange
        result: dict[str, Any] = {
            "site": {"predictions": args.predictions, "review_decisions": args.decisions, "days": args.days,
                     "offline_work_s": round(offline_s, 1)},
            "up_bundle": {"bytes": bundle_bytes, "records": report.sent_counts, "write_s": round(sync_s, 2)},
            "centre_uninterrupted": {"apply_s": round(receive_s, 2),
                                     "predictions_per_s": round(args.predictions / receive_s),
                                     "counts": applied[0].counts},
            "centre_interrupted": {"killed_with": "SIGKILL", "predictions_committed_when_killed": killed_at,
                                   "log_after_resume": [(e.status, e.message) for e in interrupted_log],
                                   "resume_s": round(resume_s, 2), "resumed_counts": resumed[0].counts,
                                   "same_state_as_uninterrupted": resumed_state == uninterrupted},
            "rerun": {"s": round(again_s, 2), "changes_nothing": unchanged},
            "confirmation_down": {"s": round(down_s, 2), "unconfirmed_left": sorted(
                p.name for p in (pair.exchange / "up").rglob("*.bundle.zip"))},
            "state_digests": uninterrupted,
            "loadavg": load,
        }
        reopened.close()
        pair.central.close()
        pair.site.close()
    write_result("sync", result)
    print({k: result[k] for k in ("up_bundle", "centre_uninterrupted", "rerun", "loadavg")})
    print(result["centre_interrupted"])
    if not (result["centre_interrupted"]["same_state_as_uninterrupted"] and unchanged):
        raise SystemExit("FAILED: the resumed centre differs from the uninterrupted one, or a re-run changed it")


if __name__ == "__main__":
    main()
