"""The model card: one self-contained page per version, from the registry, the run's report and acceptance.

Runs are recorded through the store with the tiny CNN's model file (``tests.registry_helpers``) and an
evaluation report written from synthetic predictions with known counts (and a small stored image per
test image, for the thumbnails), so the card's numbers are known.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import update

from inspectloop.accept.criteria import lock_criteria
from inspectloop.domain import CaptureMeta, DatasetItem, ImageRecord, QualityStats
from inspectloop.errors import InspectloopError
from inspectloop.decisions.calibration import softmax
from inspectloop.evaluate.metrics import classification_metrics
from inspectloop.evaluate.outcomes import hardest, image_outcomes
from inspectloop.evaluate.slices import slice_metrics
from inspectloop.reports.evaluation import write_evaluation_report
from inspectloop.reports.model_card import gather_model_card, render_model_card, write_model_card
from inspectloop.registry import promote, record_acceptance, register
from inspectloop.store import schema
from inspectloop.train.calibrate import calibrate, fit_decisions
from inspectloop.workspace import Workspace
from tests.acceptance_helpers import TrainedNeu, copy_run
from tests.cli.test_app import invoke
from tests.registry_helpers import add_run_with_model, seeded_workspace, write_criteria
from tests.reports.page_parts import body, headings
from tests.test_export import CLASSES

GOOD, SCRATCH, DARK = (CLASSES.index(n) for n in ("good", "scratch", "dark"))


def known_predictions() -> tuple[np.ndarray, np.ndarray]:
    """318 good parts (41 called scratch), 80 scratches and 52 dark parts, all found."""
    y = np.array([GOOD] * 318 + [SCRATCH] * 80 + [DARK] * 52)
    predicted = y.copy()
    predicted[:41] = SCRATCH
    return y, predicted


def logits_for(labels: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 1.0, (labels.size, len(CLASSES)))
    logits[np.arange(labels.size), labels] += 4.0
    return logits


def store_test_images(ws: Workspace, count: int) -> list[str]:
    """``count`` distinct small PNGs in the blob store (written directly: no fsync per test image)."""
    digests = []
    for i in range(count):
        pixels = np.random.default_rng(i).integers(0, 256, (24, 40), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
        data = buffer.getvalue()
        digest = hashlib.sha256(data).hexdigest()
        path = ws.blobs.path_for(digest)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        digests.append(digest)
    return digests


def add_evaluated_run(ws: Workspace, run_id: str, *, band: bool, criteria_id: int | None = None,
                      alpha: float = 0.05) -> None:
    """A finished run with its report folder (known confusion matrix, slices by camera, per-image outcomes
    with stored images) and run metrics."""
    add_run_with_model(ws, run_id, criteria_id=criteria_id)
    y, predicted = known_predictions()
    metrics = classification_metrics(y, predicted, CLASSES)
    meta = [{"camera": f"cam{i % 2 + 1}", "shift": "night" if i % 3 else "day"} for i in range(y.size)]
    slices = slice_metrics(y, predicted, CLASSES, meta, fields=["camera"])
    outcomes = image_outcomes(store_test_images(ws, y.size), y, predicted, CLASSES,
                              scores=softmax(logits_for(predicted, 3), 1.0), metadata=meta)
    test_logits = logits_for(y, 1)
    calib_y = np.array([GOOD] * 150 + [SCRATCH] * 60 + [DARK] * 60)
    calib_logits = logits_for(calib_y, 2) if band else None
    confidence = calibrate(calib_logits, calib_y if band else None, test_logits, y)
    decisions = None
    if band:
        decisions = fit_decisions(softmax(calib_logits, confidence.temperature), calib_y,
                                  softmax(test_logits, confidence.temperature), y, good_index=GOOD, alpha=alpha,
                                  confidence=0.9, targets={"scratch": 0.99, "dark": 0.95}, class_names=CLASSES).summary
    run_dir = ws.runs_dir / run_id
    write_evaluation_report(run_dir / "report", title=run_id, metrics=metrics, slices=slices,
                            context={"run": run_id}, figures=[confidence.figure], outcomes=outcomes,
                            images=ws.blobs.get)
    ws.db.runs.finish(run_id, "finished", metrics={
        "test": {"macro_recall": metrics.macro_recall, "count": metrics.count}, "calibration": confidence.to_dict(),
        "decisions": decisions, "history": [], "best_epoch": 7})


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    workspace = seeded_workspace(tmp_path / "ws")
    yield workspace
    workspace.close()


def test_a_two_way_model_card_shows_every_section_with_its_numbers(ws: Workspace, tmp_path: Path) -> None:
    add_evaluated_run(ws, "run-a", band=False)
    version = register(ws, "run-a")
    path = write_model_card(ws, version.name, parts_per_hour=3600, defect_rate=0.01)
    assert path == ws.runs_dir / "run-a" / f"model-card-{version.name}.html"
    page = path.read_text()
    for heading in ("What this means", "Lineage", "Test results", "Per class", "Confusion matrix", "camera",
                    "Calibration", "Operating points and decisions", "At line rate", "Acceptance"):
        assert f">{heading}<" in page, heading
    text = re.sub(r"\s+", " ", page)
    assert "of 132 defective test parts, none passed as good;" in text
    assert "41 of 318 good parts were rejected (12.9%)" in text
    assert version.file_sha256 in page and version.name in page and "candidate" in page
    assert "v1" in page and "0.1.0+gtest" in page and "probe" in page  # dataset, code version, training config
    assert "unsigned: exported before models were signed" in text  # the tiny CNN's file carries no signature
    assert "No calibration split: two-way decisions" in page
    assert "top class, no review" in page and "the pass class counted as pass" in page
    assert "3,600 parts per hour" in page and "given for this card" in page
    assert f"{41 / 318 * 3600 * 0.99:.0f} (95% range" in page  # false alerts per hour at the given line
    assert "Worst slice" in page and "cam1" in page and "cam2" in page
    assert page.count('src="data:image/png;base64,') == 2  # confusion matrix and reliability diagram
    assert page.count('<img class="thumb" src="data:image/jpeg;base64,') == 24  # the hardest test images
    assert "No acceptance report for" in page and "inspectloop accept run-a" in page
    assert "<script" not in page and "http://" not in page and "https://" not in page
    assert re.search(r"""(src|href)=["'](?!data:)""", page) is None  # nothing fetched from anywhere


def test_a_card_with_a_review_band_criteria_line_acceptance_and_stage_history(ws: Workspace, tmp_path: Path) -> None:
    criteria = lock_criteria(ws, write_criteria(tmp_path), by="ana")
    add_evaluated_run(ws, "run-b", band=True, criteria_id=criteria.id)
    version = register(ws, "run-b", name="line3-b")
    record_acceptance(ws, version, criteria.id, False, {"failed": ["p95 latency"], "criteria": {"name": "line3"}})
    report_id = record_acceptance(ws, version, criteria.id, True, {"failed": [], "criteria": {"name": "line3"}})
    promote(ws, version, "production", actor="ben", reason="passed acceptance")
    page = write_model_card(ws, version.id).read_text()
    band = ws.db.runs.get("run-b").metrics["decisions"]["band"]
    assert band["guarantee"] in page and "the review band" in page and "two-way" not in page
    assert "alpha 0.05 (criteria &#x27;line3&#x27; max_escape_rate)" in page  # where the band's settings came from
    assert "scratch 0.9 (criteria &#x27;line3&#x27; classes.scratch.min_recall)" in page
    assert criteria.sha256 in page and "by ana" in page
    assert "600 parts per hour" in page and "the line of criteria #1 &#x27;line3&#x27;" in page
    assert "PASSED" in page and f"#{report_id}" in page and "p95 latency" not in page  # the latest report only
    assert "production" in page and "ben" in page and "passed acceptance" in page
    assert f"acceptance report #{report_id}" in page  # the evidence of the promotion


def test_a_card_shows_each_operating_point_with_its_intervals(ws: Workspace) -> None:
    add_evaluated_run(ws, "run-op", band=True)
    version = register(ws, "run-op")
    points = ws.db.runs.get("run-op").metrics["decisions"]["operating_points"]
    with ws.db.engine.begin() as conn:  # as if the file carried the thresholds training fitted
        conn.execute(update(schema.model_versions).where(schema.model_versions.c.id == version.id).values(
            lineage={**version.lineage, "thresholds": {n: p["calibration"]["threshold"] for n, p in points.items()}}))
    page = re.sub(r"\s+", " ", write_model_card(ws, version).read_text())
    assert ">Per-class operating points<" in page and "99.0%" in page and "95.0%" in page
    scratch = points["scratch"]["calibration"]
    assert f"{100 * scratch['recall']:.1f}% {100 * scratch['recall_ci'][0]:.1f}% &ndash;" in page
    assert f"of {points['scratch']['test']['positives']}" in page
    assert "showing 99% needs at least" in page  # 60 calibration scratches cannot show 99%


def test_a_card_without_a_report_folder_says_what_is_missing(ws: Workspace) -> None:
    add_run_with_model(ws, "run-c")
    version = register(ws, "run-c")
    page = write_model_card(ws, version).read_text()
    assert "kept no evaluation report" in page and "recorded no calibration" in page
    assert "No line given" in page and "No acceptance report" in page


def test_the_card_shows_the_hardest_test_images_most_confidently_wrong_first(ws: Workspace) -> None:
    add_evaluated_run(ws, "run-img", band=False)
    card = gather_model_card(ws, register(ws, "run-img"))
    assert len(card.outcomes) == 450 and sum(not o.correct for o in card.outcomes) == 41
    shown = hardest(card.outcomes)
    assert len(shown) == 24 and all(o.true == "good" and o.predicted == "scratch" for o in shown)
    assert [o.score for o in shown] == sorted((o.score for o in shown), reverse=True)
    assert set(card.images) == {o.sha256 for o in shown}  # only the shown images are read from the blob store
    page = re.sub(r"\s+", " ", render_model_card(card))
    assert ">Misclassified and borderline images<" in page and "41 of 450 images misclassified" in page
    positions = [page.index(f'title="{o.sha256}"') for o in shown]
    assert positions == sorted(positions)  # in the page as ranked
    first = shown[0]
    assert f"<b>predicted</b> scratch <span class=\"muted\">{100 * first.score:.1f}%</span>" in page
    assert (f'<span class="field">camera {first.meta["camera"]}</span> &middot; '
            f'<span class="field">shift {first.meta["shift"]}</span>') in page


def test_an_image_gone_from_the_blob_store_is_said_to_be_missing(ws: Workspace) -> None:
    add_evaluated_run(ws, "run-gone", band=False)
    version = register(ws, "run-gone")
    first = hardest(gather_model_card(ws, version).outcomes)[0]
    ws.blobs.path_for(first.sha256).unlink()
    page = write_model_card(ws, version).read_text()
    assert page.count('<img class="thumb"') == 23 and page.count("image not available") == 1


def test_a_report_without_per_image_outcomes_says_so(ws: Workspace) -> None:
    add_evaluated_run(ws, "run-old", band=False)
    report = ws.runs_dir / "run-old" / "report" / "metrics.json"
    document = json.loads(report.read_text())
    del document["outcomes"]  # as written before per-image outcomes were kept
    report.write_text(json.dumps(document))
    page = write_model_card(ws, register(ws, "run-old")).read_text()
    assert "kept no per-image outcomes" in page and 'class="thumb"' not in page


def test_rates_at_line_rate_are_written_for_people(ws: Workspace) -> None:
    # Bug seen on the quickstart: a band that sends most parts to review printed "reviews per hour 3.6e+03".
    add_evaluated_run(ws, "run-busy", band=True, alpha=0.001)
    version = register(ws, "run-busy")
    page = write_model_card(ws, version, parts_per_hour=36000, defect_rate=0.01).read_text()
    stored = ws.db.runs.get("run-busy").metrics["decisions"]["test"]
    assert stored["review_rate"] > 0.5
    reviews = re.search(r"<th>reviews per hour</th><td>([^<]*)</td>", page).group(1)
    automated = re.search(r"<th>decided automatically per hour</th><td>([^<]*)</td>", page).group(1)
    for shown in (reviews, automated):
        assert re.fullmatch(r"\d{1,3}(,\d{3})*", shown), shown  # whole parts, thousands separated
    assert 18000 < int(reviews.replace(",", "")) <= 36000 and "," in reviews
    assert abs(int(reviews.replace(",", "")) + int(automated.replace(",", "")) - 36000) <= 1
    assert "36,000 parts per hour" in page and "e+0" not in page and "e-0" not in page


def test_the_line_needs_both_figures(ws: Workspace) -> None:
    add_evaluated_run(ws, "run-d", band=False)
    version = register(ws, "run-d")
    with pytest.raises(InspectloopError, match="needs both"):
        write_model_card(ws, version.name, parts_per_hour=3600)


def test_models_card_cli_prints_the_path(ws: Workspace, tmp_path: Path) -> None:
    add_evaluated_run(ws, "run-e", band=False)
    version = register(ws, "run-e")
    code, out, err = invoke("models", "card", version.name, "-w", ws.root, "--parts-per-hour", "1200",
                            "--defect-rate", "0.02")
    assert code == 0, out + err
    path = Path("".join(out.split()))
    assert path.is_file() and "1,200 parts per hour" in path.read_text()
    code, out, err = invoke("models", "card", "nope", "-w", ws.root)
    assert code == 1 and "no model version 'nope'" in err and "Traceback" not in out + err


@pytest.mark.slow
def test_the_card_of_a_real_accepted_run(neu_probe_run: TrainedNeu) -> None:
    from inspectloop.accept.run import accept

    ws = neu_probe_run.workspace
    run_id = copy_run(neu_probe_run, criteria_id=neu_probe_run.pass_id)  # its own run: the shared one stays as it is
    shutil.copytree(ws.runs_dir / neu_probe_run.run_id / "report", ws.runs_dir / run_id / "report")
    report = accept(ws, run_id)
    page = write_model_card(ws, report.model_version).read_text()
    assert report.model_version.file_sha256 in page and ("PASSED" if report.passed else "FAILED") in page
    assert "Reliability diagram" in page and page.count("data:image/png;base64,") == 2
    assert "600 parts per hour" in page and "neu-pass" in page
    temperature = ws.db.runs.get(run_id).metrics["calibration"]["temperature"]
    assert f"{temperature:.3f}" in page and not math.isnan(temperature)


# --- issue 11: the novelty guard's rate and anomaly heatmaps ----------------------------------------------

def test_the_card_states_the_novelty_guards_rate_or_that_there_is_none(ws: Workspace) -> None:
    import dataclasses

    add_evaluated_run(ws, "run-guard", band=False)
    card = gather_model_card(ws, register(ws, "run-guard"))
    page = re.sub(r"\s+", " ", render_model_card(card))
    assert ">Novelty guard<" in page and "has no novelty guard" in page
    guard = {"threshold": 0.4321, "rate": 0.01, "k": 1, "bank_size": 500, "held_out_images": 300,
             "certified": True, "source": "validation and calibration splits", "training_images": 500,
             "test": {"rate": 0.01, "threshold": 0.4321, "over_threshold": 0.05, "sent_to_review": 0.012,
                      "per_class_sent_to_review": {"good": 0.01, "scratch": 0.02}, "images": 450}}
    run = dataclasses.replace(card.run, metrics={**card.run.metrics, "novelty": guard})
    page = re.sub(r"\s+", " ", render_model_card(dataclasses.replace(card, run=run)))
    assert "novel: 1.2% of test images sent to review" in page and "5.0% over the threshold" in page
    assert "300 held-out images of known classes" in page and "at most 1.0%" in page
    assert "good 1.0%, scratch 2.0%" in page


def test_hardest_images_of_an_anomaly_model_show_its_heatmap(ws: Workspace) -> None:
    import dataclasses

    add_evaluated_run(ws, "run-heat", band=False)
    card = gather_model_card(ws, register(ws, "run-heat"))
    assert card.heatmaps == {}  # a classifier's card has none
    plain = render_model_card(card)
    hot = np.zeros((16, 16), dtype=np.float32)
    hot[2:5, 10:13] = 1.0
    heated = render_model_card(dataclasses.replace(card, heatmaps={digest: hot for digest in card.images}))
    assert heated.count('<img class="thumb" src="data:image/jpeg;base64,') == 24
    assert "yellow marks where the model saw the part differ" in heated and "yellow marks" not in plain
    assert heated != plain  # the thumbnails carry the heatmap


# --- issue 16: the card leads with the verdict --------------------------------------------------------------

def failed_acceptance(count: int = 450, reviews: int = 382) -> dict[str, object]:
    """An acceptance report document that failed 2 of 3 criteria, with most parts sent to review."""
    def result(name: str, limit: str, measured: str, passed: bool) -> dict[str, object]:
        return {"name": name, "passed": passed, "limit_text": limit, "measured_text": measured, "detail": "..."}
    return {"passed": False, "failed": ["review rate", "scratch recall"], "criteria": {"name": "line3"},
            "test_images": count, "measured_at": "2026-11-30T21:00:00+00:00",
            "results": [result("escape rate", "≤ 2%", "0.7%", True), result("review rate", "≤ 20%", "84.89%", False),
                        result("scratch recall", "≥ 95%", "90%", False)],
            "measurements": {"rates": {"automation_rate": (count - reviews) / count, "review_rate": reviews / count,
                                       "count": count, "reviews": reviews}}}


def verdict_section(page: str) -> tuple[list[tuple[str, str]], str]:
    """The page's headings, and the text of the section right after its title (without its heading)."""
    title, first = body(page).top_level()[:2]
    assert title.tag == "h1" and first.tag == "section"
    heading, *rest = first.top_level()
    return headings(page), " ".join(e.text() for e in rest)


def test_the_card_opens_with_the_verdict_the_failed_criteria_and_the_review_rate(ws: Workspace, tmp_path: Path) -> None:
    criteria = lock_criteria(ws, write_criteria(tmp_path), by="ana")
    add_evaluated_run(ws, "run-fail", band=True, criteria_id=criteria.id)
    version = register(ws, "run-fail")
    report_id = record_acceptance(ws, version, criteria.id, False, failed_acceptance())
    page = write_model_card(ws, version).read_text()
    found, verdict = verdict_section(page)
    assert found[:2] == [("h1", f"Model card: {version.name}"), ("h2", "Verdict")]
    assert verdict.startswith("FAILED 2 of 3 criteria not met on 450 frozen test images:")
    assert "review rate: must be ≤ 20%, measured 84.89%" in verdict
    assert "scratch recall: must be ≥ 95%, measured 90%" in verdict and "escape rate" not in verdict
    assert "Decided automatically 15.1% 68 of 450 parts" in verdict and "Sent to review 84.9% 382 of 450 parts" in verdict
    assert f"acceptance report #{report_id}" in verdict and "stays out of production" in verdict
    assert page.index("FAILED") < page.index("What this means") < page.index("Acceptance<")


@pytest.mark.parametrize(("case", "own_criteria", "recorded", "expected"), [
    ("never judged", True, None, "NOT JUDGED no acceptance report against its criteria #1 yet: judge it with "
                                 "inspectloop accept run-v"),
    ("no criteria", False, None, "NOT JUDGED its run named no acceptance criteria"),
    ("passed", True, True, "PASSED All criteria met."),
    ("failed, stored before results were kept", True, False, "FAILED Criteria not met: p95 latency."),
])
def test_the_verdict_says_what_is_known(ws: Workspace, tmp_path: Path, case: str, own_criteria: bool,
                                        recorded: bool | None, expected: str) -> None:
    criteria = lock_criteria(ws, write_criteria(tmp_path), by="ana")
    add_evaluated_run(ws, "run-v", band=False, criteria_id=criteria.id if own_criteria else None)
    version = register(ws, "run-v")
    if recorded is not None:
        record_acceptance(ws, version, criteria.id, recorded, {"failed": [] if recorded else ["p95 latency"]})
    found, verdict = verdict_section(write_model_card(ws, version).read_text())
    assert found[1] == ("h2", "Verdict") and verdict.startswith(expected), (case, verdict)
    # without an acceptance measurement, the run's own test decisions give the rates, and say so
    assert "Decided automatically 100.0% 450 of 450 parts" in verdict and "no review band" in verdict


def test_a_stored_report_sliced_by_a_field_that_repeats_the_label_is_shown_without_it(ws: Workspace) -> None:
    # The plant's card read "worst slice: defect_probability = 0.3333333333333333, macro precision 100%".
    add_evaluated_run(ws, "run-echo", band=False)
    path = ws.runs_dir / "run-echo" / "report" / "metrics.json"
    document = json.loads(path.read_text())
    y, predicted = known_predictions()
    meta = [{"camera": f"cam{i % 2 + 1}", "defect_probability": "0" if t == GOOD else "0.3333333333333333"}
            for i, t in enumerate(y)]
    old = slice_metrics(y, predicted, CLASSES, meta, fields=["camera", "defect_probability"])  # as before the fix
    assert old.worst is not None and old.worst.field == "defect_probability"
    document["slices"] = old.to_dict()
    for outcome, sample in zip(document["outcomes"], meta):
        outcome["meta"] = sample
    path.write_text(json.dumps(document))
    page = write_model_card(ws, register(ws, "run-echo")).read_text()
    tables = [h for tag, h in headings(page) if tag == "h3"]
    assert "camera" in tables and "defect_probability" not in tables
    assert "Worst slice: camera = cam" in page and "0.3333333333333333" not in page
    assert "Not sliced: <b>defect_probability</b>" in page


def _calibrated_on(ws: Workspace, run_id: str, cameras: list[str]) -> None:
    """Point the run at a dataset version whose calib split holds one image per camera (session s1)."""
    quality = QualityStats(brightness=1, contrast=1, sharpness=1, noise=1, clipped_fraction=0)
    records = [ImageRecord(sha256=f"{i:064x}", format="PNG", original_mode="L", working_mode="L", width=8,
                           height=8, size_bytes=10, meta=CaptureMeta(camera=camera, session="s1"), quality=quality)
               for i, camera in enumerate(cameras)]
    with ws.db.transaction() as tx:
        tx.images.add(records, tx.images.begin_ingest("test", "folder"))
    ws.db.datasets.add("v2", "v1", {}, {"count": len(records)},
                       [DatasetItem(r.sha256, "good", "calib", r.sha256) for r in records])
    with ws.db.engine.begin() as conn:
        conn.execute(update(schema.runs).where(schema.runs.c.id == run_id).values(dataset_version="v2"))


def _log(ws: Workspace, version_id: int, camera: str, count: int) -> None:
    for i in range(count):
        ws.db.predictions.add(dict(
            request_id=f"{camera}-{i}", received_at="2026-12-01T10:00:00+00:00", source="test",
            image_sha256="f" * 64, image_stored=False, model_version_id=version_id, model_name="m", label="good",
            decision="pass", confidence=0.99, scores={"good": 0.99}, latency_ms={"total": 5.0}, stats=None, suspect=False,
            content_sha256=None), CaptureMeta(camera=camera, session="s1"))


def test_the_card_says_where_the_guarantee_holds_and_what_it_is_worth_elsewhere(ws: Workspace) -> None:
    add_evaluated_run(ws, "run-cov", band=True)
    _calibrated_on(ws, "run-cov", ["cam1", "cam2"])
    version = register(ws, "run-cov")
    _log(ws, version.id, "cam1", 3)
    page = re.sub(r"\s+", " ", render_model_card(gather_model_card(ws, version.id)))
    assert "Where the guarantee holds" in page and "applies, as far as the prediction log can tell" in page
    assert "cam1, cam2" in page  # the calibration's cameras
    _log(ws, version.id, "cam7", 4)
    (ws.runs_dir / "run-cov" / "crossval-session.json").write_text(json.dumps({"field": "session", "groups": {
        "s1": {"count": 40, "macro_recall": 0.9, "good": 30, "good_reject_rate": 0.1, "escapes": 2, "defective": 10}}}))
    page = re.sub(r"\s+", " ", render_model_card(gather_model_card(ws, version.id)))
    assert "It does not hold for: camera cam7 (4 parts)." in page
    assert "up to 20.0% escapes (session s1) and up to 10.0% good parts rejected (session s1)" in page


def test_a_two_way_card_has_no_guarantee_to_place(ws: Workspace) -> None:
    add_evaluated_run(ws, "run-two", band=False)
    version = register(ws, "run-two")
    assert gather_model_card(ws, version.id).coverage is None
    assert "Where the guarantee holds" not in render_model_card(gather_model_card(ws, version.id))
