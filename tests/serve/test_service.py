"""The inspection service: each request's image is decoded once, whoever reads it (model, shadow, statistics)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
from PIL import Image  # noqa: E402
from sqlalchemy import select  # noqa: E402

from benchmarks.hostile_corpus import animated_gif, png_of_zeros  # noqa: E402
from inspectloop.errors import RequestError  # noqa: E402
from inspectloop.ingest import ingest, scan_folder  # noqa: E402
from inspectloop.registry import promote  # noqa: E402
from inspectloop.runtime import EdgeModel  # noqa: E402
from inspectloop.serve.service import (  # noqa: E402
    DEFAULT_MAX_PIXELS,
    MIN_AUTO_PIXELS,
    InspectionService,
    PixelBudget,
    ServiceConfig,
    default_max_pixels,
)
from inspectloop.workspace import init_workspace  # noqa: E402
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


@pytest.mark.parametrize(("case", "data", "config", "words"), [
    ("decompression bomb (was a 500)", png_of_zeros(30000, 30000), {}, "900.0 MP, over the 40.0 MP limit"),
    ("9000x9000, over the default limit", png_of_zeros(9000, 9000), {}, "9000x9000 px, 81.0 MP, over the 40.0 MP limit"),
    ("over a configured limit", png_of_zeros(3000, 3000), {"max_pixels": 1_000_000}, "over the 1.0 MP limit"),
])
def test_frames_over_the_pixel_limit_are_refused_from_the_header(tmp_path: Path, case: str, data: bytes,
                                                                  config: dict[str, Any], words: str) -> None:
    """A 99 KB PNG of 9000x9000 px was decoded in full: 8 at once took the server past 1.2 GB."""
    line = line_workspace(tmp_path / "ws")
    service = InspectionService(line.workspace, ServiceConfig(**config))
    service.start()
    try:
        with pytest.raises(RequestError) as refused:
            service.submit(data, {"camera": "cam1"})
    finally:
        service.stop()
    assert refused.value.kind == "too_large" and words in refused.value.message, case
    assert "max_pixels" in (refused.value.hint or "")
    assert service.decode_budget.used == 0 and _rows(line, s.predictions) == 0
    line.workspace.close()


def test_the_default_pixel_limit_follows_the_workspace_frames(tmp_path: Path) -> None:
    workspace = init_workspace(tmp_path / "ws")
    assert default_max_pixels(workspace) == DEFAULT_MAX_PIXELS  # no frames seen yet
    folder = tmp_path / "frames" / "good"
    folder.mkdir(parents=True)
    (folder / "small.png").write_bytes(image_bytes("good", 1))  # 80x80
    (folder / "wide.png").write_bytes(png_of_zeros(3000, 1000))  # 3 MP
    ingest(workspace, scan_folder(folder.parent), source="frames")
    assert default_max_pixels(workspace) == 6_000_000  # twice the largest frame
    workspace.close()
    assert MIN_AUTO_PIXELS <= 6_000_000 <= DEFAULT_MAX_PIXELS


def test_decoder_warnings_come_back_in_the_answer_and_the_budget_is_returned(tmp_path: Path) -> None:
    line = line_workspace(tmp_path / "ws")
    service = InspectionService(line.workspace, ServiceConfig(sample_rate=0.0))
    service.start()
    try:
        logged = service.submit(animated_gif(), {"camera": "cam1"}).result(timeout=30)
    finally:
        service.stop()
    assert logged.to_response()["warnings"] == ["GIF with 5 frames: only the first is used"]
    assert service.decode_budget.used == 0
    line.workspace.close()


def test_the_pixel_budget_makes_large_frames_wait_for_room() -> None:
    budget = PixelBudget(100)
    held = budget.acquire(70)
    waiter = threading.Thread(target=budget.acquire, args=(60,))
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive() and budget.used == 70  # 70 + 60 > 100: the second frame waits
    budget.release(held)
    waiter.join(2)
    assert not waiter.is_alive() and budget.used == 60
    assert PixelBudget(100).acquire(10**9) == 100  # never more than the whole budget: it would wait forever
