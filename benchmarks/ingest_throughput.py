"""Ingest throughput on the NEU folder (1,800 JPEGs): decode, hash, statistics, blob store, rows.

    python -m benchmarks.ingest_throughput [--repeats 3]

Each repeat ingests into a fresh workspace; the median rate is quoted.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from benchmarks.common import CITATIONS, neu_items, write_result
from inspectloop.ingest import ingest
from inspectloop.workspace import init_workspace


def run(repeats: int) -> dict[str, object]:
    items = neu_items()
    rates, reports = [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            ws = init_workspace(Path(tmp) / "ws")
            report = ingest(ws, items, source="neu_det")
            ws.close()
        rates.append(report.seen / report.seconds)
        reports.append({"added": report.added, "duplicates": len(report.duplicates), "skipped": len(report.skipped),
                        "seconds": round(report.seconds, 2)})
    return {"dataset": "neu_det", "citation": CITATIONS["neu_det"], "files": len(items),
            "images_per_second_median": round(statistics.median(rates), 1),
            "images_per_second_all": [round(r, 1) for r in rates], "repeats": reports,
            "note": "includes decode, SHA-256, quality statistics, atomic blob write and SQLite rows"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    result = run(parser.parse_args().repeats)
    print(f"ingest: {result['images_per_second_median']} images/s (median of {len(result['repeats'])})")
    write_result("ingest_throughput", result)


if __name__ == "__main__":
    main()
