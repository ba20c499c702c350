"""Shadow mode: the candidate runs on production inputs, disagreements go to review, the report judges readiness."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("torch")
from fastapi.testclient import TestClient  # noqa: E402
from sqlalchemy import select  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from inspectloop.cli.app import app as cli  # noqa: E402
from inspectloop.registry import promote  # noqa: E402
from inspectloop.serve.service import ServiceConfig  # noqa: E402
from inspectloop.shadow import shadow_report  # noqa: E402
from inspectloop.store import schema as s  # noqa: E402
from inspectloop.web.app import create_app  # noqa: E402
from tests.service_helpers import add_version, image_bytes, line_workspace, review_model_bytes, wait_for  # noqa: E402


def test_shadow_disagreements_are_logged_queued_and_reported(tmp_path: Path) -> None:
    line = line_workspace(tmp_path / "ws")
    candidate = promote(line.workspace, add_version(line.workspace, "run-b", review_model_bytes()), "shadow",
                        actor="ana")
    app = create_app(line.workspace.root, config=ServiceConfig(sample_rate=0.0))
    with TestClient(app) as client:
        assert client.get("/v1/health").json()["shadow"]["name"] == candidate.name
        answers = [client.post("/v1/inspect", files={"image": ("p.png", image_bytes(label, i), "image/png")},
                               data={"camera": "cam1"}, headers=line.auth()).json()
                   for i, label in enumerate(["good", "scratch", "dark", "good"])]
        wait_for(lambda: _count(line, s.shadow_predictions) == 4)
        assert all(a["decision"] != "review" for a in answers)  # production is never held back by the shadow
        verdict = client.post("/v1/qc", json={"prediction_id": answers[1]["prediction_id"], "label": "dark"},
                              headers=line.auth()).json()
    assert verdict["shadow_disagreements"] == [candidate.id] and len(verdict["review_items"]) == 1
    with line.workspace.db.engine.connect() as conn:
        shadows = conn.execute(select(s.shadow_predictions)).all()
        items = conn.execute(select(s.review_items).order_by(s.review_items.c.id)).all()
        stored = conn.execute(select(s.predictions.c.image_stored)).scalars().all()
    assert all(not row.agrees and row.decision == "review" for row in shadows)
    assert [i.reason for i in items] == ["shadow"] * 4 + ["qc"] and all(stored)
    assert items[0].details["production_label"] == answers[0]["label"]
    assert items[0].details["shadow_decision"] == "review"

    report = shadow_report(line.workspace)
    assert (report.version, report.compared, report.agreement, report.qc_compared) == (candidate.name, 4, 0.0, 1)
    assert {"production": "decision pass", "shadow": "decision review", "count": 2} in report.confusions
    assert len(report.edge_cases) == 4 and not report.ready and "only 4 inputs" in report.reasons[0]
    assert "Wilson" in report.rule
    lenient = shadow_report(line.workspace, candidate.name, min_compared=1, min_qc=1)
    assert lenient.production_qc_agreement == 0.0 and lenient.shadow_qc_agreement == 0.0 and lenient.ready

    result = CliRunner().invoke(cli, ["shadow", "report", "-w", str(line.workspace.root)])
    assert result.exit_code == 0 and "NOT READY" in result.stdout
    saved = json.loads((line.workspace.reports_dir / f"shadow-{candidate.name}.json").read_text())
    assert saved["compared"] == 4
    line.workspace.close()


def _count(line: object, table: object) -> int:
    with line.workspace.db.engine.connect() as conn:  # type: ignore[attr-defined]
        return len(conn.execute(select(table)).all())  # type: ignore[arg-type]
