"""Line-rate view: the arithmetic by hand, the no-good-class case, bad settings."""

from __future__ import annotations

import json
import math

import pytest

from inspectloop.decisions import DecisionRates, clopper_pearson, line_rate_view
from inspectloop.errors import InspectloopError


def rates(*, good: int = 900, false_rejects: int = 9, good_reviews: int = 90) -> DecisionRates:
    """100 defective test parts (1 escape, 20 reviewed) and ``good`` good ones."""
    return DecisionRates(
        alpha=0.01, has_good_class=good > 0, count=100 + good, defective=100, good=good, escapes=1,
        escape_ci=clopper_pearson(1, 100), false_rejects=false_rejects,
        false_reject_ci=clopper_pearson(false_rejects, good), defective_reviews=20, good_reviews=good_reviews,
        wrong_class_rejects=0, escape_verdict="within alpha", note="",
    )


def test_line_rate_by_hand() -> None:
    # 1000 parts/h at 2 % defective: 20 defective and 980 good parts per hour, 16 hours a day.
    view = line_rate_view(rates(), parts_per_hour=1000, defect_rate=0.02, hours_per_day=16)
    assert (view.defective_per_hour, view.good_per_hour) == (pytest.approx(20), pytest.approx(980))
    assert view.false_alerts_per_hour == pytest.approx(980 * 9 / 900)   # 9.8 good parts rejected per hour
    assert view.escapes_per_day == pytest.approx(20 * 16 * 1 / 100)     # 3.2 escapes per day
    assert view.reviews_per_hour == pytest.approx(20 * 0.2 + 980 * 0.1)  # 102 reviews per hour
    assert view.automated_per_hour == pytest.approx(1000 - 102)
    low, high = clopper_pearson(1, 100)
    assert view.escapes_per_day_ci == (pytest.approx(320 * low), pytest.approx(320 * high))
    assert view.false_alerts_per_hour_ci[0] < view.false_alerts_per_hour < view.false_alerts_per_hour_ci[1]
    assert json.loads(json.dumps(view.to_dict(), allow_nan=False))["hours_per_day"] == 16


def test_default_day_is_24_hours_and_no_defects_means_no_escapes() -> None:
    view = line_rate_view(rates(), parts_per_hour=600, defect_rate=0.0)
    assert view.escapes_per_day == 0.0 and view.escapes_per_day_ci == (0.0, 0.0)
    assert view.reviews_per_hour == pytest.approx(600 * 0.1)
    assert line_rate_view(rates(), 600, 0.01).escapes_per_day == pytest.approx(600 * 0.01 * 24 * 0.01)


def test_without_a_good_class_only_defective_parts_count() -> None:
    view = line_rate_view(rates(good=0, false_rejects=0, good_reviews=0), parts_per_hour=1000, defect_rate=0.05)
    assert math.isnan(view.false_alerts_per_hour) and view.good_per_hour == 0.0
    assert view.reviews_per_hour == pytest.approx(50 * 0.2)
    assert view.automated_per_hour == pytest.approx(40)
    assert "only sorts defective parts" in view.note
    assert json.loads(json.dumps(view.to_dict(), allow_nan=False))["false_alerts_per_hour"] is None


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"parts_per_hour": 0}, "parts_per_hour"), ({"parts_per_hour": -5}, "parts_per_hour"),
    ({"parts_per_hour": math.inf}, "parts_per_hour"), ({"defect_rate": 1.5}, "defect_rate"),
    ({"defect_rate": -0.1}, "defect_rate"), ({"defect_rate": math.nan}, "defect_rate"),
    ({"hours_per_day": 0}, "hours_per_day"), ({"hours_per_day": 25}, "hours_per_day"),
])
def test_bad_settings(kwargs: dict, name: str) -> None:
    arguments = {"parts_per_hour": 1000, "defect_rate": 0.01, **kwargs}
    with pytest.raises(InspectloopError, match=name) as info:
        line_rate_view(rates(), **arguments)
    assert info.value.hint
