"""Where the review band's guarantee holds: conditions met on the line against the calibration's."""

from __future__ import annotations

from inspectloop.decisions.coverage import assess_coverage, held_out_worst
from inspectloop.domain.monitoring import Alert

CALIBRATED = {"camera": ["cam1", "cam2", "cam1"], "session": ["s1", "s2", None], "shift": [None, None, None]}
CROSSVAL = {"field": "session", "groups": {
    "s1": {"count": 100, "macro_recall": 0.95, "good": 80, "good_reject_rate": 0.05, "escapes": 1, "defective": 20},
    "s2": {"count": 100, "macro_recall": 0.85, "good": 70, "good_reject_rate": 0.21, "escapes": 0, "defective": 30},
    "s3": {"count": 50, "macro_recall": 0.90, "good": 50, "good_reject_rate": 0.02, "escapes": 0, "defective": 0}}}


def alert(camera: str) -> Alert:
    return Alert(id=1, kind="drift", camera=camera, signal="brightness", effect=0.4, p_value=1e-6,
                 message="drift", monitor_run_id=None, created_at="2026-12-01T09:00:00+00:00")


def test_conditions_the_calibration_held_keep_the_guarantee() -> None:
    coverage = assess_coverage(CALIBRATED, {"camera": {"cam1": 40, "cam2": 9}, "session": {"s2": 49}})
    assert coverage.holds and coverage.unseen == () and coverage.alerts == ()
    assert coverage.calibrated["camera"] == ("cam1", "cam2") and coverage.calibrated["session"] == ("s1", "s2")
    assert "the certified 1.0% escape rate applies" in coverage.statement(0.01)


def test_a_new_camera_or_session_breaks_it_and_names_the_parts_made_there() -> None:
    coverage = assess_coverage(CALIBRATED, {"camera": {"cam1": 40, "cam3": 1200}, "session": {"s9": 7, "s1": 3}})
    assert not coverage.holds
    assert [(u.field, u.value, u.predictions) for u in coverage.unseen] == [("camera", "cam3", 1200),
                                                                             ("session", "s9", 7)]
    text = coverage.statement(0.02)
    assert "does not hold for: camera cam3 (1,200 parts); session s9 (7 parts)" in text
    assert "nothing is certified and nothing was measured" in text and "inspectloop crossval" in text


def test_a_field_the_calibration_never_recorded_is_not_judged() -> None:
    coverage = assess_coverage(CALIBRATED, {"shift": {"night": 500}, "lighting": {"dome": 3}})
    assert coverage.holds  # no calibration image says its shift or lighting: a night shift cannot be called new


def test_an_alert_on_a_camera_breaks_it_even_where_the_conditions_are_known() -> None:
    coverage = assess_coverage(CALIBRATED, {"camera": {"cam1": 40}}, alerts=[alert("cam1")])
    assert not coverage.holds and coverage.unseen == ()
    assert "a drift alert on camera cam1 (brightness, 2026-12-01)" in coverage.statement(None)


def test_what_the_guarantee_is_worth_there_comes_from_the_held_out_groups() -> None:
    worst = held_out_worst([CROSSVAL])
    assert worst is not None and worst.field == "session" and worst.groups == 3
    assert (worst.worst_escape_group, worst.worst_escape_rate) == ("s1", 1 / 20)
    assert (worst.worst_reject_group, worst.worst_good_reject_rate) == ("s2", 0.21)
    text = assess_coverage(CALIBRATED, {"camera": {"cam9": 5}}, crossvals=[CROSSVAL]).statement(0.01)
    assert "measured on 3 held-out sessions the model never saw is up to 5.0% escapes (session s1) and up to " \
           "21.0% good parts rejected (session s2)" in text


def test_held_out_results_without_counts_give_nothing() -> None:
    assert held_out_worst([]) is None
    assert held_out_worst([{"field": "camera", "groups": {"a": {"count": 3, "good": 0, "defective": 0}}}]) is None
