"""Decisions from good images alone: a certified false-reject rate, no escape claim; defects add the band."""

from __future__ import annotations

import numpy as np
import pytest

from inspectloop.anomaly.run import policy_of, ranking
from inspectloop.anomaly.threshold import NO_ESCAPE_CLAIM, anomaly_probs, fit_anomaly_band, fit_threshold
from inspectloop.errors import TrainingError
from inspectloop.runtime.decision import Decision


def test_the_threshold_rejects_at_most_the_target_share_of_good_parts() -> None:
    rng = np.random.default_rng(0)
    held = rng.normal(10, 1, 400)
    t = fit_threshold(held, false_reject_target=0.02, confidence=0.9, guarantee="pac")
    assert t.certified and t.allowed_false_rejects is not None and t.allowed_false_rejects < 8
    assert (held > t.threshold).sum() == t.allowed_false_rejects
    new_good = rng.normal(10, 1, 20000)
    assert (new_good > t.threshold).mean() <= 0.02  # holds with 90% confidence; this seed is no exception
    assert "At most 2% of good parts are rejected" in t.statement


def test_too_few_held_out_good_images_are_not_certified_and_say_how_many_are_needed() -> None:
    t = fit_threshold(np.arange(20.0), false_reject_target=0.02, confidence=0.9, guarantee="pac")
    assert not t.certified and t.threshold == 19.0
    assert "20 held-out good images cannot certify 2%" in t.statement and f"{t.needed_good} are needed" in t.statement


def test_no_held_out_good_image_is_refused() -> None:
    with pytest.raises(TrainingError, match="held-out good images"):
        fit_threshold(np.zeros(0), false_reject_target=0.02, confidence=0.9)


def test_good_only_decisions_pass_below_the_threshold_reject_above_and_claim_no_escape_rate() -> None:
    t = fit_threshold(np.linspace(0, 10, 200), false_reject_target=0.05, confidence=0.9, guarantee="marginal")
    review = t.review(alpha=0.01)
    assert not review["certifiable"] and NO_ESCAPE_CLAIM in review["guarantee"]
    decisions = policy_of(review).decide(anomaly_probs(np.array([t.threshold - 1, t.threshold + 1]), t))
    assert decisions.decisions.tolist() == [Decision.PASS, Decision.REJECT]
    probs = anomaly_probs(np.array([t.threshold]), t)
    assert probs[0].tolist() == pytest.approx([0.5, 0.5])


def test_labelled_defects_fit_the_escape_side_only_when_they_certify_alpha() -> None:
    rng = np.random.default_rng(1)
    good, defects = rng.normal(10, 1, 300), rng.normal(20, 2, 300)
    scores = np.concatenate([good, defects])
    is_defect = np.r_[np.zeros(300, bool), np.ones(300, bool)]
    t = fit_threshold(good, false_reject_target=0.02, confidence=0.9)
    band = fit_anomaly_band(scores, is_defect, t, alpha=0.05)
    assert band is not None and band.certifiable and band.calibration_defects == 300
    assert fit_anomaly_band(scores[:310], is_defect[:310], t, alpha=0.01) is None  # 10 defects certify nothing
    assert fit_anomaly_band(good, np.zeros(300, bool), t, alpha=0.05) is None


@pytest.mark.parametrize("good, bad, auroc, recall", [
    ([1, 2, 3], [4, 5], 1.0, 1.0),
    ([1, 2, 3], [0, 0.5], 0.0, 0.0),
    ([1, 2], [2, 2], 0.75, 0.0),
])
def test_ranking(good: list[float], bad: list[float], auroc: float, recall: float) -> None:
    scores = np.array(good + bad, dtype=float)
    result = ranking(scores, np.r_[np.zeros(len(good), bool), np.ones(len(bad), bool)])
    assert result["auroc"] == pytest.approx(auroc) and result["recall_at_1pct_fpr"] == pytest.approx(recall)
