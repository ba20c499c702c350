"""Measuring and judging, on synthetic predictions: how each measurement is made and judged."""

from __future__ import annotations

import math

import pytest

from inspectloop.accept.criteria import AcceptanceCriteria
from inspectloop.accept.judge import judge, measure, review_summary
from inspectloop.runtime import Prediction


def prediction(label: str, decision: str, confidence: float = 0.9, latency: float = 5.0,
               classes: tuple[str, ...] = ("good", "scratch", "dent")) -> Prediction:
    rest = (1.0 - confidence) / (len(classes) - 1)
    scores = {name: confidence if name == label else rest for name in classes}
    return Prediction(label, confidence, scores, decision, {"total": latency})


def criteria(**limits: object) -> AcceptanceCriteria:
    return AcceptanceCriteria.model_validate({"name": "t", **limits})


def test_with_a_good_class_an_escape_is_a_defect_passed_and_a_false_alert_a_good_part_rejected() -> None:
    truth = ["good"] * 8 + ["scratch"] * 4
    predictions = ([prediction("good", "pass")] * 7 + [prediction("scratch", "reject")]
                   + [prediction("scratch", "reject")] * 3 + [prediction("good", "pass")])
    c = criteria(classes={"scratch": {"min_recall": 0.75, "min_precision": 0.8}}, max_escape_rate=0.25,
                 max_false_alerts_per_hour=40, line={"parts_per_hour": 400, "defect_rate": 0.1})
    m = measure(predictions, truth, class_names=["good", "scratch", "dent"], good_class="good", criteria=c)
    recall, precision, escape, alerts = judge(c, m)
    assert (recall.measured, recall.passed) == (0.75, True)  # a limit met exactly passes
    assert (precision.measured, precision.passed) == (0.75, False)
    assert "3 of the 4 test images called scratch" in precision.detail
    assert (escape.measured, escape.passed) == (0.25, True) and "1 of 4 defective test parts passed as good" in escape.detail
    assert alerts.measured == pytest.approx(1 / 8 * 400 * 0.9) and not alerts.passed  # 45 per hour
    assert "1 of 8 good test parts rejected" in alerts.detail and "few" in alerts.detail


def test_without_a_good_class_an_escape_is_a_wrong_class_and_false_alerts_are_undefined() -> None:
    classes = ("scratch", "dent")
    truth = ["scratch"] * 3 + ["dent"] * 3
    predictions = [prediction("scratch", "reject", classes=classes)] * 2 + [prediction("dent", "reject", classes=classes),
                   prediction("dent", "review", classes=classes), *[prediction("dent", "reject", classes=classes)] * 2]
    c = criteria(classes={"dent": {"min_recall": 0.5}}, max_escape_rate=0.2, max_false_alerts_per_hour=5,
                 line={"parts_per_hour": 100, "defect_rate": 1.0})
    m = measure(predictions, truth, class_names=classes, good_class=None, criteria=c)
    _, escape, alerts = judge(c, m)
    assert m.rates.escapes == 1 and escape.measured == pytest.approx(1 / 6) and escape.passed
    assert "wrong class" in escape.detail
    assert alerts.measured is None and not alerts.passed and "no good class" in alerts.detail
    assert m.rates.reviews == 1 and m.rates.review_rate == pytest.approx(1 / 6)  # a review is no escape


def test_what_cannot_be_measured_fails_and_says_why() -> None:
    truth = ["good"] * 5
    c = criteria(classes={"scratch": {"min_recall": 0.5, "min_precision": 0.5}, "pit": {"min_recall": 0.5}},
                 max_escape_rate=0.1)
    m = measure([prediction("good", "pass")] * 5, truth, class_names=["good", "scratch", "dent"], good_class="good",
                criteria=c)
    results = judge(c, m)
    assert [r.passed for r in results] == [False] * 4 and all(r.measured is None for r in results)
    assert [r.measured_text for r in results] == ["undefined"] * 4
    recall, precision, pit, escape = (r.detail for r in results)
    assert "no images of scratch" in recall and "called no test image scratch" in precision
    assert "'pit' is not one of the model's classes" in pit and "no defective parts" in escape


def test_latency_is_the_nearest_rank_p95_of_the_runtime_total() -> None:
    truth = ["good"] * 40
    predictions = [prediction("good", "pass", latency=float(ms)) for ms in range(1, 41)]
    m = measure(predictions, truth, class_names=["good", "scratch", "dent"], good_class="good",
                criteria=criteria(classes={"good": {"min_recall": 0.5}}))
    assert m.p95_latency_ms == 38.0  # 38 of 40 images (95 %) within 38 ms
    [result] = judge(criteria(classes={"good": {"min_recall": 0.5}}, max_p95_latency_ms=37.5), m)[1:]
    assert not result.passed and result.measured_text == "38 ms" and "over 40 test images" in result.detail
    assert math.isclose(m.calibration_error, 0.1)  # every answer right at 90 % confidence


def test_a_review_bound_fails_a_model_that_automates_nothing() -> None:
    truth = ["good"] * 6 + ["scratch"] * 4
    c = criteria(classes={"scratch": {"min_recall": 0.5}}, max_escape_rate=0.02, max_review_rate=0.2,
                 max_false_alerts_per_hour=1, line={"parts_per_hour": 600, "defect_rate": 0.03})
    m = measure([prediction(label, "review") for label in truth], truth, class_names=["good", "scratch", "dent"],
                good_class="good", criteria=c)
    _, escape, review, alerts = judge(c, m)
    assert escape.passed and alerts.passed and escape.measured == 0.0 == alerts.measured  # nothing automated...
    assert (review.name, review.measured, review.passed) == ("review rate", 1.0, False)  # ...so the bound fails it
    assert review.limit_text == "≤ 20%" and review.field == "max_review_rate"
    assert "10 of 10 test parts sent to review (4 defective, 6 good)" in review.detail
    assert "Clopper-Pearson interval 69.2%-100%" in review.detail and "few" in review.detail
    assert "at the line's 0.03 defect rate about 100% of parts" in review.detail
    assert m.automates_nothing and "the model automates nothing" in review_summary(m)


def test_the_review_rate_is_measured_and_stated_without_a_bound() -> None:
    truth = ["good"] * 3 + ["scratch"]
    predictions = [prediction("good", "pass")] * 2 + [prediction("good", "review"), prediction("scratch", "reject")]
    c = criteria(classes={"scratch": {"min_recall": 0.5}})
    m = measure(predictions, truth, class_names=["good", "scratch", "dent"], good_class="good", criteria=c)
    assert [r.name for r in judge(c, m)] == ["scratch: recall"]  # not judged without max_review_rate
    assert review_summary(m).startswith("1 of 4 test parts (25%; 95% interval 0.631%-80.6%) went to review, 75% were "
                                        "decided automatically")
    assert not m.automates_nothing and "automates nothing" not in review_summary(m)
    assert m.to_dict()["review"] == {"rate": 0.25, "reviews": 1, "count": 4, "ci": list(m.review_ci),
                                     "method": "Clopper-Pearson", "automates_nothing": False}
