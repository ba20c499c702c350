"""The one decision rule: pass, reject as a class, or review, case by case, vectorised, and in the runtime."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inspectloop.runtime import Decision, DecisionPolicy, Decisions, EdgeModel, threshold_array
from tests.runtime.helpers import CLASSES, restamped, tiny_metadata

PASS, REJECT, REVIEW = Decision.PASS, Decision.REJECT, Decision.REVIEW
GOOD, SCRATCH, DARK = range(3)


def policy(good: int | None = GOOD, thresholds: dict[str, float] | None = None, auto_above: float | None = None,
           reject_below: float | None = None) -> DecisionPolicy:
    return DecisionPolicy(num_classes=3, good_index=good, thresholds=threshold_array(CLASSES, thresholds),
                          auto_above=auto_above, reject_below=reject_below)


BAND = {"auto_above": 0.8, "reject_below": 0.3}

# (case, policy, probabilities of good / scratch / dark, expected label, expected decision)
CASES = [
    # no review band, a good class: the top class decides, unless an operating point flags a defect
    ("top class good", policy(), (0.6, 0.3, 0.1), GOOD, PASS),
    ("top class a defect", policy(), (0.3, 0.6, 0.1), SCRATCH, REJECT),
    ("flagged defect under a good top class", policy(thresholds={"scratch": 0.05}), (0.9, 0.06, 0.04), SCRATCH, REJECT),
    ("a threshold is reached at equality", policy(thresholds={"scratch": 0.05}), (0.9, 0.05, 0.05), SCRATCH, REJECT),
    ("below its threshold nothing is flagged", policy(thresholds={"scratch": 0.07}), (0.9, 0.06, 0.04), GOOD, PASS),
    ("the most likely flagged class", policy(thresholds={"scratch": 0.05, "dark": 0.03}), (0.85, 0.06, 0.09),
     DARK, REJECT),
    ("only flagged classes compete", policy(thresholds={"dark": 0.03}), (0.85, 0.11, 0.04), DARK, REJECT),
    ("a threshold on the good class flags nothing", policy(thresholds={"good": 0.1}), (0.9, 0.05, 0.05), GOOD, PASS),
    # no review band, no good class: every part is rejected as its top class; operating points do not apply
    ("no good class", policy(good=None), (0.2, 0.5, 0.3), SCRATCH, REJECT),
    ("no good class ignores thresholds", policy(good=None, thresholds={"dark": 0.1}), (0.2, 0.5, 0.3), SCRATCH,
     REJECT),
    # a review band with a good class
    ("P(good) above the band", policy(**BAND), (0.9, 0.05, 0.05), GOOD, PASS),
    ("P(good) at auto_above is not above it", policy(**BAND), (0.8, 0.1, 0.1), GOOD, REVIEW),
    ("in the band: review, top class suggested", policy(**BAND), (0.45, 0.15, 0.4), GOOD, REVIEW),
    ("in the band with a defect on top", policy(**BAND), (0.35, 0.45, 0.2), SCRATCH, REVIEW),
    ("P(good) at reject_below is not below it", policy(**BAND), (0.3, 0.5, 0.2), SCRATCH, REVIEW),
    ("below the band: reject as the top defect", policy(**BAND), (0.2, 0.3, 0.5), DARK, REJECT),
    ("reject as the top defect even when good is on top", policy(**BAND), (0.29, 0.01, 0.7), DARK, REJECT),
    ("overlapping bands: rejection wins", policy(auto_above=0.3, reject_below=0.6), (0.5, 0.3, 0.2), SCRATCH,
     REJECT),
    ("no reject side", policy(auto_above=0.8), (0.01, 0.5, 0.49), SCRATCH, REVIEW),
    ("a band at 1.0 automates nothing", policy(auto_above=1.0, reject_below=0.0), (1.0, 0.0, 0.0), GOOD, REVIEW),
    ("a flagged defect is never passed", policy(thresholds={"scratch": 0.05}, **BAND), (0.9, 0.06, 0.04), GOOD,
     REVIEW),
    ("the band's rejects ignore the flags", policy(thresholds={"scratch": 0.05}, **BAND), (0.2, 0.06, 0.74), DARK,
     REJECT),
    # a review band without a good class: assign the top class when it is sure enough
    ("sure of the top class", policy(good=None, auto_above=0.8), (0.1, 0.85, 0.05), SCRATCH, REJECT),
    ("unsure of the top class", policy(good=None, auto_above=0.8), (0.3, 0.6, 0.1), SCRATCH, REVIEW),
    ("another class flagged", policy(good=None, thresholds={"dark": 0.05}, auto_above=0.8), (0.1, 0.84, 0.06),
     SCRATCH, REVIEW),
    ("the top class's own flag does not block it", policy(good=None, thresholds={"scratch": 0.5}, auto_above=0.8),
     (0.1, 0.85, 0.05), SCRATCH, REJECT),
]


@pytest.mark.parametrize(("rule", "probabilities", "label", "decision"), [case[1:] for case in CASES],
                         ids=[case[0] for case in CASES])
def test_decision_rule(rule: DecisionPolicy, probabilities: tuple[float, ...], label: int,
                       decision: Decision) -> None:
    assert rule.decide_one(np.array(probabilities)) == (label, decision)


@pytest.mark.parametrize("rule", sorted({id(c[1]): c[1] for c in CASES}.values(), key=id))
def test_a_batch_is_decided_as_each_row_alone(rule: DecisionPolicy) -> None:
    probs = np.random.default_rng(1).dirichlet([0.5, 0.5, 0.5], 400)
    decided = rule.decide(probs)
    assert len(decided) == 400 and set(decided.decisions.tolist()) <= {"pass", "reject", "review"}
    assert [decided[i] for i in range(400)] == [rule.decide_one(row) for row in probs]


def test_decisions_counts_and_json_form() -> None:
    decided = policy(**BAND).decide(np.array([[0.9, 0.05, 0.05], [0.5, 0.3, 0.2], [0.1, 0.8, 0.1]]))
    assert decided.counts() == {PASS: 1, REJECT: 1, REVIEW: 1} == {"pass": 1, "reject": 1, "review": 1}
    assert decided.to_dict() == {"decisions": ["pass", "review", "reject"], "labels": [0, 0, 1],
                                 "counts": {"pass": 1, "reject": 1, "review": 1}}
    assert decided[1] == (GOOD, REVIEW) and isinstance(decided[1][1], Decision)
    assert (decided.decisions == Decision.REJECT).tolist() == [False, False, True]


@pytest.mark.parametrize(("labels", "decisions", "message"), [
    ([0, 1], ["pass"], "flat and of one length"),
    ([0.0], ["pass"], "integer class indices"),
    ([0], ["maybe"], r"unknown decisions \['maybe'\]; decisions are pass, reject, review"),
])
def test_decisions_refuse_malformed_arrays(labels: list[object], decisions: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Decisions(np.array(labels), np.array(decisions))


def test_decisions_accept_the_enum_and_its_strings() -> None:
    decided = Decisions(np.array([0, 2]), np.array([Decision.PASS, "reject"]))
    assert decided.decisions.tolist() == ["pass", "reject"] and decided.labels.dtype == np.int64


@pytest.mark.parametrize(("settings", "message"), [
    ({"num_classes": 1}, "num_classes must be an integer of at least 2"),
    ({"good_index": 3}, "good_index must be None or a class index from 0 to 2"),
    ({"good_index": True}, "good_index"),
    ({"thresholds": np.array([0.5, 0.5])}, "thresholds must be 3 probabilities"),
    ({"thresholds": np.array([0.5, math.nan, 0.5])}, "thresholds must be 3 probabilities"),
    ({"auto_above": 1.5}, "auto_above must be None or a probability"),
    ({"auto_above": 0.9, "reject_below": -0.1}, "reject_below must be None or a probability"),
    ({"reject_below": 0.2}, "reject_below needs a review band"),
    ({"good_index": None, "auto_above": 0.9, "reject_below": 0.2}, "and a good class"),
])
def test_policy_refuses_bad_settings(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DecisionPolicy(**{"num_classes": 3, "good_index": 0, **settings})  # type: ignore[arg-type]


def test_policy_refuses_probabilities_of_another_shape() -> None:
    with pytest.raises(ValueError, match=r"expected probabilities of shape \(N, 3\), got \(2, 2\)"):
        policy().decide(np.full((2, 2), 0.5))


def test_policy_keeps_its_own_read_only_thresholds() -> None:
    thresholds = np.array([np.inf, 0.2, np.inf])
    rule = DecisionPolicy(num_classes=3, good_index=0, thresholds=thresholds)
    thresholds[1] = 0.9
    assert rule.thresholds is not None and rule.thresholds[1] == 0.2 and not rule.thresholds.flags.writeable


def review(auto_above: float, reject_below: float | None) -> dict[str, object]:
    return {"auto_above": auto_above, "reject_below": reject_below, "alpha": 0.01, "confidence": 0.9,
            "certifiable": True, "guarantee": "test band"}


@pytest.mark.parametrize(("metadata", "expected"), [
    (tiny_metadata(), (0, None, None, None)),
    (tiny_metadata(thresholds={"dark": 0.2}, review=review(0.9, 0.1)), (0, [math.inf, math.inf, 0.2], 0.9, 0.1)),
    (tiny_metadata(good_class="scratch", review=review(0.9, None)), (1, None, 0.9, None)),
    (tiny_metadata(good_class=None, review=review(0.7, 0.1)), (None, None, 0.7, None)),  # no good: no reject side
])
def test_policy_from_model_metadata(metadata: object, expected: tuple[object, ...]) -> None:
    rule = DecisionPolicy.from_metadata(metadata)  # type: ignore[arg-type]
    thresholds = None if rule.thresholds is None else rule.thresholds.tolist()
    assert (rule.good_index, thresholds, rule.auto_above, rule.reject_below) == expected


# --- in the runtime ------------------------------------------------------------------------------------

def grey_levels() -> list[Image.Image]:
    """Surfaces from dark to normal, some with a faint or a bright bar: scores across the whole range."""
    rng = np.random.default_rng(4)
    images = []
    for level in range(60, 141, 8):
        for bar in (None, 190, 250):
            pixels = rng.normal(level, 10, (80, 80))
            if bar is not None:
                pixels[30:34, :] = bar
            images.append(Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "L"))
    return images


@pytest.mark.parametrize(("good", "thresholds", "band"), [
    ("good", {}, None),
    ("good", {"scratch": 0.1}, None),
    ("good", {}, review(0.85, 0.3)),
    ("good", {"scratch": 0.1, "dark": 0.2}, review(0.85, 0.3)),
    (None, {}, None),
    (None, {"dark": 0.2}, review(0.7, None)),
])
def test_the_runtime_decides_each_image_by_its_files_policy(tmp_path: Path, good: str | None,
                                                           thresholds: dict[str, float],
                                                           band: dict[str, object] | None) -> None:
    model = EdgeModel(restamped(tmp_path, good_class=good, thresholds=thresholds, review=band))
    predictions = [model.predict(image) for image in grey_levels()]
    probs = np.array([[p.scores[name] for name in CLASSES] for p in predictions])
    expected = DecisionPolicy.from_metadata(model.metadata).decide(probs)
    assert [(CLASSES.index(p.label), p.decision) for p in predictions] == [expected[i] for i in range(len(expected))]
    assert len({expected[i] for i in range(len(expected))}) >= 3  # the images reach several outcomes


def test_a_band_that_automates_nothing_sends_everything_to_review(tmp_path: Path) -> None:
    model = EdgeModel(restamped(tmp_path, review=review(1.0, None)))
    assert {model.predict(image).decision for image in grey_levels()} == {Decision.REVIEW}


# --- the novelty guard (issue 11): a pass far from every training image goes to review ---------------------

GUARDED = {"no band": policy(), "band": policy(**BAND), "flags": policy(thresholds={"dark": 0.2}),
           "no good class": policy(good=None, auto_above=0.7)}


@pytest.mark.parametrize("name", sorted(GUARDED))
def test_the_guard_turns_only_passes_into_reviews_and_keeps_the_labels(name: str) -> None:
    import dataclasses

    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(3) * 0.4, size=400)
    p[:100] = rng.dirichlet((30.0, 1.0, 1.0), size=100)  # plenty of confident good parts
    novelty = rng.uniform(0, 1, size=400)
    plain = GUARDED[name]
    guarded = dataclasses.replace(plain, novelty_threshold=0.5)
    before, after = plain.decide(p), guarded.decide(p, novelty)
    novel = novelty > 0.5
    np.testing.assert_array_equal(after.labels, before.labels)
    turned = before.decisions != after.decisions
    assert set(before.decisions[turned]) <= {PASS.value} and set(after.decisions[turned]) <= {REVIEW.value}
    np.testing.assert_array_equal(turned, novel & (before.decisions == PASS.value))
    np.testing.assert_array_equal(guarded.decide(p).decisions, before.decisions)  # no scores given: no guard
    assert guarded.decide_one(p[0], float(novelty[0])) == after[0]


def test_a_missing_novelty_score_is_not_trusted_and_shapes_are_checked() -> None:
    guarded = DecisionPolicy(num_classes=3, good_index=0, novelty_threshold=0.5)
    decided = guarded.decide(np.array([[0.9, 0.05, 0.05]] * 3), np.array([0.1, math.nan, 0.9]))
    assert decided.decisions.tolist() == [PASS.value, REVIEW.value, REVIEW.value]
    with pytest.raises(ValueError, match="one novelty score per image"):
        guarded.decide(np.array([[0.9, 0.05, 0.05]]), np.array([0.1, 0.2]))


@pytest.mark.parametrize("threshold", [-0.1, math.inf, math.nan, True, "0.5"])
def test_policy_refuses_a_bad_novelty_threshold(threshold: object) -> None:
    with pytest.raises(ValueError, match="novelty_threshold"):
        DecisionPolicy(num_classes=3, good_index=0, novelty_threshold=threshold)  # type: ignore[arg-type]


def test_the_guard_travels_in_the_metadata_and_a_file_without_it_has_none() -> None:
    guard = {"threshold": 0.4, "rate": 0.01, "k": 1, "bank_size": 10, "held_out_images": 200}
    assert DecisionPolicy.from_metadata(tiny_metadata(novelty=guard)).novelty_threshold == 0.4
    assert DecisionPolicy.from_metadata(tiny_metadata()).novelty_threshold is None
