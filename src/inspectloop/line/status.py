"""A station's live counters as ``inspectloop run`` writes them (``<workspace>/line/<station>/status.json``,
every few seconds and at the end of a run), read back for the dashboard. Plain files: reading them needs no
camera SDK, protocol stack or model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

STATION_DIR = "line"  # <workspace>/line/<station>/: the decision journal, outbox positions, status, last run
STATUS_FILE = "status.json"


def station_statuses(root: Path) -> dict[str, dict[str, Any]]:
    """Each station's latest status under workspace ``root``, by station name (a file being replaced or
    unreadable is left out: the next read has it)."""
    statuses: dict[str, dict[str, Any]] = {}
    for path in sorted((root / STATION_DIR).glob(f"*/{STATUS_FILE}")):
        try:
            statuses[path.parent.name] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
    return statuses
