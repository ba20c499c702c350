"""The whole loop on a synthetic line, with real training at both ends: train, accept, promote, serve a
degraded shift through the service, see the drift, sample it for review, label it, and retrain on the
original plus the new data; the retrained model is judged by the same locked criteria and reaches
shadow only if it passes, while production stays as it was.
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image, ImageEnhance, ImageFilter

pytest.importorskip("torch")
pytest.importorskip("fastapi")

from inspectloop import registry, review  # noqa: E402
from inspectloop.accept.run import accept  # noqa: E402
from inspectloop.accept.criteria import lock_criteria  # noqa: E402
from inspectloop.datasets import SplitPlan, create_version, load_version  # noqa: E402
from inspectloop.ingest import ingest, scan_manifest  # noqa: E402
from inspectloop.monitor.run import monitor, record_drift_baseline  # noqa: E402
from inspectloop.quickstart import _define_synthetic_classes  # noqa: E402
from inspectloop.recalibration.cycle import continue_cycle, recalibrate  # noqa: E402
from inspectloop.serve.service import InspectionService, ServiceConfig  # noqa: E402
from inspectloop.synthetic import generate_line  # noqa: E402
from inspectloop.train.config import TrainConfig  # noqa: E402
from inspectloop.train.run import train  # noqa: E402
from inspectloop.workspace import init_workspace  # noqa: E402

CRITERIA = """\
name: line-demo
classes:
  scratch: {min_recall: 0.3}
max_escape_rate: 0.5
max_p95_latency_ms: 5000
"""


def worn(data: bytes) -> bytes:
    """A camera after months on the line: dimmer light, a softer focus."""
    import io

    image = Image.open(io.BytesIO(data)).convert("L")
    image = ImageEnhance.Brightness(image).enhance(0.55).filter(ImageFilter.GaussianBlur(1.6))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


@pytest.mark.slow
def test_the_loop_closes_with_real_training(tmp_path: Path) -> None:
    line = generate_line(tmp_path / "line", per_class=40, size=96, seed=3)
    rows = list(csv.DictReader(line.manifest.open()))
    ws = init_workspace(tmp_path / "ws", name="demo")
    items, refused = scan_manifest(line.manifest)
    ingest(ws, items, source="demo", kind="manifest", refused=refused)
    _define_synthetic_classes(ws)
    create_version(ws, SplitPlan(group_by="part_id", val_fraction=0.2, test_fraction=0.25))
    lock_criteria(ws, _write(tmp_path / "criteria.yaml", CRITERIA), by="qe")
    config = TrainConfig(mode="probe", input_size=96, epochs=40, augment="none", batch_size=16)
    first = train(ws, config, criteria="line-demo")
    report = accept(ws, first.run_id)
    assert report.passed, [r.name for r in report.failed]
    production = registry.promote(ws, report.model_version, "production", actor="qe")
    record_drift_baseline(ws, cameras=("cam-A",))

    # A worn camera's shift through the real service: every image kept for recalibration.
    service = InspectionService(ws, ServiceConfig(sample_rate=1.0, workers=1))
    service.start()
    truth = {}
    start = datetime.now(UTC) - timedelta(hours=2)
    try:
        for i, row in enumerate(rows[:120]):
            data = worn((line.root / row["path"]).read_bytes())
            logged = service.submit(data, {"camera": "cam-A", "shift": ("day", "night")[i % 2],
                                           "captured_at": (start + timedelta(minutes=i)).isoformat()},
                                    request_id=f"shift-{i}").result(timeout=60)
            truth[logged.image_sha256] = row["label"]
    finally:
        service.stop()

    drift = monitor(ws, min_predictions=50)
    assert any(signal.fired and signal.camera == "cam-A" for signal in drift.signals)

    cycle = recalibrate(ws, sample_size=60)
    assert cycle.status == "awaiting_labels"
    while (item := review.claim_next(ws, "rita")) is not None:  # the reviewer knows the truth
        review.record_verdict(ws, item.id, "rita", truth[item.image_sha256])
    done = continue_cycle(ws, cycle.id)

    assert (done.status, done.outcome) == ("done", "shadow"), done.message  # a drop, retrained, accepted
    assert done.result["comparison"]["retrain"]
    assert registry.production_model(ws).id == production.id  # never a silent promotion
    new_version = load_version(ws, done.result["dataset_version"]["name"])
    parent = load_version(ws, done.result["dataset_version"]["parent"])
    assert {i.sha256 for i in parent.items} <= {i.sha256 for i in new_version.items}  # nothing dropped
    added = {i.sha256: i.label for i in new_version.items}.items() - {(i.sha256, i.label) for i in parent.items}
    assert added and all(truth[sha] == label for sha, label in added)  # the reviewer's labels, kept
    retrained = registry.get_version(ws, done.result["acceptance"]["model_version"])
    assert retrained.stage == "shadow" and retrained.criteria_id == production.criteria_id
    ws.close()


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
