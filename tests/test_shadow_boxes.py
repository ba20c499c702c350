"""Shadow compares detectors by matched boxes: IoU pairing, box disagreements per class, the report's box section."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import insert, select

from inspectloop.domain import CaptureMeta
from inspectloop.runtime import Prediction, Regions
from inspectloop.runtime.images import decode_image
from inspectloop.serve.prediction_log import PredictionLog, PredictionRecord, ShadowRecord
from inspectloop.shadow import BOX_IOU, box_disagreements, compare_boxes, shadow_report
from inspectloop.store import schema as s
from inspectloop.store import sha256_bytes

pytest.importorskip("torch", reason="the registry's test model is exported with torch ('train' extra)")
from tests.service_helpers import add_version, image_bytes, line_workspace, review_model_bytes  # noqa: E402


def box(name: str, x0: float, y0: float, x1: float, y1: float) -> dict[str, Any]:
    return {"class": name, "box": [x0, y0, x1, y1]}


@pytest.mark.parametrize(("production", "shadow", "expected", "disagreeing"), [
    ([box("scratch", 0, 0, 10, 10)], [box("scratch", 1, 0, 11, 10)],
     {"pairs": [["scratch", "scratch", 0.8182]], "only_production": [], "only_shadow": []}, 0),
    ([box("scratch", 0, 0, 10, 10)], [box("pit", 0, 0, 10, 10)],  # one place, two classes
     {"pairs": [["scratch", "pit", 1.0]], "only_production": [], "only_shadow": []}, 1),
    ([box("scratch", 0, 0, 10, 10)], [box("scratch", 6, 0, 16, 10)],  # IoU 0.25: two different finds
     {"pairs": [], "only_production": ["scratch"], "only_shadow": ["scratch"]}, 2),
    ([], [box("pit", 5, 5, 9, 9)], {"pairs": [], "only_production": [], "only_shadow": ["pit"]}, 1),
    ([], [], {"pairs": [], "only_production": [], "only_shadow": []}, 0),
    # the pairing that maximises total IoU, not the greedy one
    ([box("scratch", 0, 0, 10, 10), box("scratch", 4, 0, 14, 10)],
     [box("scratch", 3, 0, 13, 10), box("scratch", -1, 0, 9, 10)],
     {"pairs": [["scratch", "scratch", 0.8182], ["scratch", "scratch", 0.8182]], "only_production": [],
      "only_shadow": []}, 0),
])
def test_boxes_pair_by_iou_whatever_their_class(production: list[dict[str, Any]], shadow: list[dict[str, Any]],
                                                expected: dict[str, Any], disagreeing: int) -> None:
    compared = compare_boxes(production, shadow)
    assert compared == expected
    assert box_disagreements(compared) == disagreeing


def detector(size: tuple[int, int], boxes: list[tuple[int, list[float], float]], decision: str | None = None
             ) -> Prediction:
    """A detector's prediction (classes good, scratch, pit) with ``boxes`` of (class id, corners, score)."""
    worst = max((score for _, _, score in boxes), default=0.0)
    best = {k: max((p for c, _, p in boxes if c == k), default=0.0) for k in (1, 2)}
    scores = {"good": 1 - worst, "scratch": best[1], "pit": best[2]}
    label = max(scores, key=scores.get)  # type: ignore[arg-type]
    regions = Regions(image_size=size, class_ids=np.array([c for c, _, _ in boxes], dtype=np.int64),
                      scores=np.array([p for _, _, p in boxes]), boxes=np.array([b for _, b, _ in boxes]).reshape(-1, 4))
    return Prediction(label, scores[label], scores, decision or ("pass" if label == "good" else "reject"), {},
                      regions=regions)


def test_the_log_keeps_the_matched_boxes_and_the_report_counts_them_per_class(tmp_path: Path) -> None:
    """Through the real prediction log: production's boxes (in memory only) and the shadow's are matched as the
    shadow result is written; the report then counts per class and lists the frames that disagree most."""
    line = line_workspace(tmp_path / "ws")
    candidate = add_version(line.workspace, "run-b", review_model_bytes())
    log = PredictionLog(line.workspace, ingest_id=line.workspace.db.images.begin_ingest("test", "service"))
    log.start()
    frames = [
        # (production's boxes, the shadow's boxes)
        ([(1, [2, 2, 20, 12], 0.9)], [(1, [3, 2, 21, 12], 0.8)]),  # the same scratch
        ([(1, [2, 2, 20, 12], 0.9), (2, [40, 40, 50, 50], 0.7)], [(1, [2, 2, 20, 12], 0.9)]),  # shadow misses a pit
        ([(2, [30, 30, 40, 40], 0.6)], [(1, [30, 30, 40, 40], 0.7), (2, [5, 50, 15, 60], 0.5)]),  # pit called a
        # scratch, and a pit only the shadow saw
    ]
    try:
        for index, (mine, theirs) in enumerate(frames):
            data = image_bytes("good", index)
            decoded = decode_image(data)
            size = (decoded.image.width, decoded.image.height)
            production = detector(size, mine, "review" if index == 0 else None)  # the first: uncertain
            logged = log.submit(PredictionRecord(
                request_id=f"r{index}", source="http", meta=CaptureMeta(camera="cam1"), data=data, decoded=decoded,
                sha256=sha256_bytes(data), model_version_id=line.production.id, model_name="v1",
                prediction=production, keep_image=False)).result(timeout=30)
            log.submit_shadow(ShadowRecord(logged, CaptureMeta(camera="cam1"), data, decoded, candidate.id,
                                           candidate.name, detector(size, theirs), production)).result(timeout=30)
    finally:
        log.stop()
    with line.workspace.db.engine.connect() as conn:
        stored = [row.boxes for row in conn.execute(select(s.shadow_predictions).order_by(s.shadow_predictions.c.id))]
    assert [box_disagreements(b) for b in stored] == [0, 1, 2]
    assert stored[2] == {"pairs": [["pit", "scratch", 1.0]], "only_production": [], "only_shadow": ["pit"]}
    # The uncertain frame and the frame whose fate the shadow changes wait for review with boxes to correct:
    # production's on the first, the shadow's (its label is the suggestion) on the other.
    items = {item.reason: item for item in (line.workspace.db.review.get(i) for i in range(1, 10)) if item}
    assert [b["box"] for b in items["uncertain"].details["boxes"]] == [[2.0, 2.0, 20.0, 12.0]]
    assert [(b["class"], b["box"]) for b in items["shadow"].details["boxes"]] == [
        ("scratch", [30.0, 30.0, 40.0, 40.0]), ("pit", [5.0, 50.0, 15.0, 60.0])]

    section = shadow_report(line.workspace, candidate.name, min_compared=1, min_qc=0).box_comparison
    assert section is not None
    assert (section["frames"], section["frames_agreeing"], section["iou_threshold"]) == (3, 1, BOX_IOU)
    assert section["per_class"]["scratch"] == {"matched": 2, "only_production": 0, "only_shadow": 1,
                                               "mean_iou": pytest.approx(0.9474, abs=1e-4), "f1": 0.8}
    assert section["per_class"]["pit"] == {"matched": 0, "only_production": 2, "only_shadow": 1, "mean_iou": None,
                                           "f1": 0.0}
    assert section["confusions"] == [{"production": "pit", "shadow": "scratch", "count": 1}]
    assert [f["disagreeing_boxes"] for f in section["disagreeing_frames"]] == [2, 1]
    from typer.testing import CliRunner

    from inspectloop.cli.app import app as cli

    printed = CliRunner().invoke(cli, ["shadow", "report", "-w", str(line.workspace.root), "--version",
                                       candidate.name, "--min-compared", "1", "--min-qc", "0"])
    assert printed.exit_code == 0, printed.output
    assert "1 of 3 frames with the same boxes" in printed.output
    assert "box of production pit -> shadow scratch: 1" in printed.output
    line.workspace.close()


def test_a_classifier_shadow_has_no_box_section_and_a_report_without_qc_states_its_verdict(tmp_path: Path) -> None:
    """The verdict was a TypeError: with min_qc=0 the ready summary formatted the missing QC agreement (None)."""
    line = line_workspace(tmp_path / "ws")
    candidate = add_version(line.workspace, "run-b", review_model_bytes())
    with line.workspace.db.engine.begin() as conn:
        prediction_id = conn.execute(insert(s.predictions).values(
            request_id="r0", received_at=datetime.now(UTC).isoformat(), source="http", extra={},
            image_sha256="0" * 64, image_stored=False, model_name="v1", label="good", decision="pass",
            confidence=0.9, scores={"good": 0.9}, latency_ms={})).inserted_primary_key[0]
        conn.execute(insert(s.shadow_predictions).values(
            prediction_id=prediction_id, model_version_id=candidate.id, label="good", decision="pass", confidence=0.8,
            scores={"good": 0.8}, latency_ms={}, agrees=True, created_at=datetime.now(UTC).isoformat()))
    report = shadow_report(line.workspace, candidate.name, min_compared=1, min_qc=0)
    assert report.ready and report.reasons == ["1 inputs, none with QC; no new escapes"]
    assert report.box_comparison is None
    line.workspace.close()
