"""The inspection service: each request's image is decoded once, whoever reads it (model, shadow, statistics)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
from PIL import Image  # noqa: E402
from sqlalchemy import select  # noqa: E402

from inspectloop.registry import promote  # noqa: E402
from inspectloop.runtime import EdgeModel  # noqa: E402
from inspectloop.serve.service import InspectionService, ServiceConfig  # noqa: E402
from inspectloop.store import schema as s  # noqa: E402
from tests.service_helpers import add_version, image_bytes, line_workspace, review_model_bytes, wait_for  # noqa: E402


@pytest.mark.parametrize(("case", "sample_rate", "shadowed"), [
    ("statistics after the answer", 0.0, False),
    ("image kept for recalibration", 1.0, False),
    ("shadow disagrees and keeps the image", 0.0, True),
    ("kept and shadowed", 1.0, True),
])
def test_a_request_decodes_its_image_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str,
                                          sample_rate: float, shadowed: bool) -> None:
    """It was decoded up to three times (header check, prediction, statistics), four with a shadow."""
    line = line_workspace(tmp_path / "ws")
    if shadowed:  # the candidate sends every part to review: it disagrees with production's pass
        promote(line.workspace, add_version(line.workspace, "run-b", review_model_bytes()), "shadow", actor="ana")
    data = image_bytes("good", 1)
    expected = EdgeModel(line.production.path).predict(data)
    service = InspectionService(line.workspace, ServiceConfig(sample_rate=sample_rate))
    opened: list[Any] = []
    real_open = Image.open

    def counting_open(*args: Any, **kwargs: Any) -> Image.Image:
        opened.append(args[0])
        return real_open(*args, **kwargs)

    service.start()
    try:
        monkeypatch.setattr(Image, "open", counting_open)
        logged = service.submit(data, {"camera": "cam1"}).result(timeout=30)
        if shadowed:
            wait_for(lambda: _rows(line, s.shadow_predictions) == 1)
    finally:
        service.stop()  # the statistics thread finishes its queue first
        monkeypatch.undo()
    assert len(opened) == 1, case
    assert (logged.label, logged.decision, logged.scores) == (expected.label, expected.decision, expected.scores)
    assert logged.latency_ms["decode"] > 0 and logged.latency_ms["total"] >= logged.latency_ms["decode"]
    with line.workspace.db.engine.connect() as conn:
        row = conn.execute(select(s.predictions)).one()
        images = conn.execute(select(s.images.c.sha256, s.images.c.width, s.images.c.brightness)).all()
    assert row.stats["brightness"] > 0
    kept = sample_rate == 1.0 or shadowed
    assert row.image_stored is kept and len(images) == int(kept)
    if kept:
        assert images[0].width == 80 and images[0].brightness == pytest.approx(row.stats["brightness"])
    line.workspace.close()


def _rows(line: Any, table: Any) -> int:
    with line.workspace.db.engine.connect() as conn:
        return len(conn.execute(select(table)).all())
