"""Shadow mode: the candidate runs on production inputs, consequential disagreements go to review, the report
judges readiness."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("torch")
from fastapi.testclient import TestClient  # noqa: E402
from sqlalchemy import select  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from inspectloop import review  # noqa: E402
from inspectloop.cli.app import app as cli  # noqa: E402
from inspectloop.registry import promote  # noqa: E402
from inspectloop.serve.service import ServiceConfig  # noqa: E402
from inspectloop.shadow import same_fate, shadow_report  # noqa: E402
from inspectloop.store import schema as s  # noqa: E402
from inspectloop.web.app import create_app  # noqa: E402
from tests.anomaly_helpers import anomaly_model_bytes  # noqa: E402
from tests.service_helpers import add_version, image_bytes, line_workspace, review_model_bytes, wait_for  # noqa: E402


@pytest.mark.parametrize(("production", "shadow", "same"), [
    (("good", "pass"), ("good", "pass"), True),
    (("scratch", "reject"), ("scratch", "review"), True),  # stopped either way, as the same class
    (("scratch", "review"), ("scratch", "reject"), True),
    (("good", "review"), ("good", "review"), True),
    (("good", "pass"), ("good", "review"), False),  # one ships the part, the other holds it
    (("good", "review"), ("good", "pass"), False),
    (("good", "pass"), ("scratch", "reject"), False),
    (("scratch", "reject"), ("dark", "reject"), False),  # stopped as another class
    (("scratch", "reject"), ("dark", "review"), False),
    # an anomaly model names no defect class: its "anomaly" is every class but the good one
    (("scratch", "reject"), ("anomaly", "reject"), True),
    (("anomaly", "review"), ("dark", "reject"), True),
    (("good", "review"), ("anomaly", "reject"), False),
    (("good", "pass"), ("anomaly", "reject"), False),
    (("anomaly", "reject"), ("good", "pass"), False),
])
def test_a_disagreement_is_one_that_changes_the_parts_fate(production: tuple[str, str], shadow: tuple[str, str],
                                                           same: bool) -> None:
    assert same_fate(*production, *shadow, good={"good"}) is same


def test_a_cautious_shadow_with_the_same_labels_agrees_and_queues_only_what_changes_a_parts_fate(
        tmp_path: Path) -> None:
    """The issue's symptom: a candidate that agrees on every label but sends every part to review counted as
    disagreeing everywhere (agreement 0 in every class, every input queued, "confusions" such as
    scratch -> scratch). Reject vs review of the same class stops the part either way: only pass vs not-pass
    changes its fate, so only those are queued; and a recalibration item is claimed before shadow items."""
    line = line_workspace(tmp_path / "ws")
    candidate = promote(line.workspace, add_version(line.workspace, "run-b", review_model_bytes()), "shadow",
                        actor="ana")
    app = create_app(line.workspace.root, config=ServiceConfig(sample_rate=0.0))
    with TestClient(app) as client:
        assert client.get("/v1/health", headers=line.auth()).json()["shadow"]["name"] == candidate.name
        answers = [client.post("/v1/inspect", files={"image": ("p.png", image_bytes(label, i), "image/png")},
                               data={"camera": "cam1"}, headers=line.auth()).json()
                   for i, label in enumerate(["good", "scratch", "dark", "good", "scratch", "dark"])]
        wait_for(lambda: _count(line, s.shadow_predictions) == 6)
        assert all(a["decision"] != "review" for a in answers)  # production is never held back by the shadow
        passed = [a for a in answers if a["decision"] == "pass"]
        stopped = [a for a in answers if a["decision"] == "reject"]
        assert passed and stopped  # both kinds of production decision are exercised
        verdict = client.post("/v1/qc", json={"prediction_id": passed[0]["prediction_id"], "label": "dark"},
                              headers=line.auth()).json()
    assert verdict["shadow_disagreements"] == [candidate.id] and len(verdict["review_items"]) == 1
    with line.workspace.db.engine.connect() as conn:
        shadows = {row.prediction_id: row for row in conn.execute(select(s.shadow_predictions))}
        items = conn.execute(select(s.review_items).order_by(s.review_items.c.id)).all()
    assert all(row.decision == "review" for row in shadows.values())
    assert all(shadows[a["prediction_id"]].label == a["label"] for a in answers)  # same labels throughout
    assert [shadows[a["prediction_id"]].agrees for a in answers] == [a["decision"] != "pass" for a in answers]
    queued = [i for i in items if i.reason == "shadow"]
    assert sorted(i.prediction_id for i in queued) == sorted(a["prediction_id"] for a in passed)
    assert queued[0].details["production_decision"] == "pass" and queued[0].details["shadow_decision"] == "review"

    report = shadow_report(line.workspace)
    assert (report.version, report.compared, report.qc_compared) == (candidate.name, 6, 1)
    assert report.label_agreement == 1.0
    assert report.decision_agreement == pytest.approx(round(len(stopped) / 6, 4))
    assert all(c.label_agreement == 1.0 for c in report.per_class if c.compared)
    assert not any(pair["production"] == pair["shadow"] for pair in report.confusions)  # never scratch -> scratch
    assert report.decision_changes == [{"production": "pass", "shadow": "review", "count": len(passed)}]
    assert report.same_class_reject_vs_review == len(stopped)
    assert len(report.edge_cases) == len(passed) and not report.ready and "only 6 inputs" in report.reasons[0]
    assert "Wilson" in report.rule
    lenient = shadow_report(line.workspace, candidate.name, min_compared=1, min_qc=1)
    assert lenient.production_qc_agreement == 0.0 and lenient.shadow_qc_agreement == 0.0 and lenient.ready

    with line.workspace.db.transaction() as tx:  # a recalibration sample queued after the shadow items
        recalibration = review.enqueue(tx, image_sha256=queued[0].image_sha256, reason="recalibration",
                                       prediction_id=queued[0].prediction_id)
    claimed = review.claim_next(line.workspace, "rita")
    assert claimed is not None and claimed.id == recalibration

    result = CliRunner().invoke(cli, ["shadow", "report", "-w", str(line.workspace.root)])
    assert result.exit_code == 0 and "NOT READY" in result.stdout and "scratch -> shadow scratch" not in result.stdout
    saved = json.loads((line.workspace.reports_dir / f"shadow-{candidate.name}.json").read_text())
    assert saved["compared"] == 6 and saved["label_agreement"] == 1.0
    line.workspace.close()


def test_a_shadow_that_names_another_class_is_queued_and_listed_as_a_confusion(tmp_path: Path) -> None:
    """A candidate that passes what production rejected (a label change that changes the part's fate)."""
    line = line_workspace(tmp_path / "ws")
    candidate = promote(line.workspace, add_version(line.workspace, "run-b", review_model_bytes()), "shadow",
                        actor="ana")
    with line.workspace.db.engine.begin() as conn:  # a logged production reject, shadowed as a pass
        prediction = conn.execute(s.predictions.insert().values(
            request_id="r1", received_at="2026-01-01T00:00:00+00:00", source="http", camera="cam1", extra={},
            image_sha256="a" * 64, image_stored=False, model_name=line.production.name, label="scratch",
            decision="reject", confidence=0.9, scores={"scratch": 0.9}, latency_ms={})).inserted_primary_key[0]
        conn.execute(s.shadow_predictions.insert().values(
            prediction_id=prediction, model_version_id=candidate.id, label="good", decision="pass", confidence=0.8,
            scores={"good": 0.8}, latency_ms={}, agrees=False, created_at="2026-01-01T00:00:01+00:00"))
    report = shadow_report(line.workspace)
    assert (report.label_agreement, report.decision_agreement) == (0.0, 0.0)
    assert report.confusions == [{"production": "scratch", "shadow": "good", "count": 1}]
    assert report.decision_changes == [{"production": "reject", "shadow": "pass", "count": 1}]
    assert [c.name for c in report.per_class] == ["scratch"]
    line.workspace.close()


def test_an_anomaly_candidate_beside_a_classifier_disagrees_only_where_a_parts_fate_differs(tmp_path: Path) -> None:
    """An anomaly model stops a scratched part as "anomaly" where production says "scratch": the same fate,
    and the same verdict as QC's "scratch". It forgives an underexposed part that production rejects as
    "dark": that disagreement is logged, queued and listed."""
    line = line_workspace(tmp_path / "ws")
    candidate = promote(line.workspace, add_version(line.workspace, "run-anomaly", anomaly_model_bytes()), "shadow",
                        actor="ana")
    with TestClient(create_app(line.workspace.root, config=ServiceConfig(sample_rate=0.0))) as client:
        answers = {label: [client.post("/v1/inspect", files={"image": ("p.png", image_bytes(label, i), "image/png")},
                                       data={"camera": "cam1"}, headers=line.auth()).json() for i in range(2)]
                   for label in ("good", "scratch", "dark")}
        wait_for(lambda: _count(line, s.shadow_predictions) == 6)
        assert [a["decision"] for a in answers["scratch"] + answers["dark"]] == ["reject"] * 4  # production stops them
        verdict = client.post("/v1/qc", json={"prediction_id": answers["scratch"][0]["prediction_id"],
                                              "label": "scratch"}, headers=line.auth()).json()
    assert verdict["shadow_disagreements"] == [] and verdict["review_items"] == []
    with line.workspace.db.engine.connect() as conn:
        shadows = {row.prediction_id: row for row in conn.execute(select(s.shadow_predictions))}
        queued = conn.execute(select(s.review_items).where(s.review_items.c.reason == "shadow")).all()
    fates = {label: [(shadows[a["prediction_id"]].label, shadows[a["prediction_id"]].agrees) for a in found]
             for label, found in answers.items()}
    assert fates == {"good": [("good", True)] * 2, "scratch": [("anomaly", True)] * 2, "dark": [("good", False)] * 2}
    assert sorted(i.prediction_id for i in queued) == sorted(a["prediction_id"] for a in answers["dark"])
    report = shadow_report(line.workspace, candidate.name, min_compared=1, min_qc=1)
    assert (report.label_agreement, report.decision_agreement) == (round(4 / 6, 4), round(4 / 6, 4))
    assert report.confusions == [{"production": "dark", "shadow": "good", "count": 2}]  # never scratch -> anomaly
    assert (report.shadow_qc_agreement, report.production_qc_agreement, report.new_escapes) == (1.0, 1.0, 0)
    assert {c.name: c.label_agreement for c in report.per_class} == {"dark": 0.0, "good": 1.0, "scratch": 1.0}
    line.workspace.close()


def _count(line: object, table: object) -> int:
    with line.workspace.db.engine.connect() as conn:  # type: ignore[attr-defined]
        return len(conn.execute(select(table)).all())  # type: ignore[arg-type]
