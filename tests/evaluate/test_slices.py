"""Metrics sliced by metadata: field selection, missing values, the worst slice."""

from __future__ import annotations

import json

import pytest

from inspectloop.errors import DatasetError
from inspectloop.evaluate.slices import (
    MISSING,
    LabelEcho,
    label_determined_fields,
    select_slice_fields,
    slice_metrics,
)

NAMES = ("good", "scratch")


def _sample_set() -> tuple[list[int], list[int], list[dict[str, str | None]]]:
    """30 images. cam-1: 12, all right. cam-2: 12, half of its 6 scratches missed.
    No camera recorded: 6 images (None, absent key, blank), every scratch missed: the lowest recall,
    but too small to rank at min_count=10. ``part_id`` is unique per image; ``line`` is constant."""
    y_true: list[int] = []
    y_pred: list[int] = []
    metadata: list[dict[str, str | None]] = []

    def add(camera: str | None, true: int, pred: int, *, drop_key: bool = False) -> None:
        sample: dict[str, str | None] = {"part_id": f"P{len(y_true):04d}", "line": "L1"}
        if not drop_key:
            sample["camera"] = camera
        y_true.append(true)
        y_pred.append(pred)
        metadata.append(sample)

    for i in range(12):
        add("cam-1", i % 2, i % 2)
    for i in range(12):
        add("cam-2", i % 2, 0 if i in (1, 3, 5) else i % 2)
    for camera, drop in ((None, False), ("", False), (None, True)):
        add(camera, 0, 0, drop_key=drop)
        add(camera, 1, 0, drop_key=drop)
    return y_true, y_pred, metadata


def test_auto_fields_skip_id_like_and_constant_fields() -> None:
    _, _, metadata = _sample_set()
    assert select_slice_fields(metadata) == ("camera",)


def test_missing_values_are_grouped() -> None:
    y_true, y_pred, metadata = _sample_set()
    report = slice_metrics(y_true, y_pred, NAMES, metadata)
    assert report.fields == ("camera",)
    assert [(s.value, s.metrics.count) for s in report.slices] == [("cam-1", 12), ("cam-2", 12), (MISSING, 6)]
    missing = report.for_field("camera")[-1]
    assert missing.metrics.per_class[1].recall == 0.0


def test_worst_slice_is_lowest_macro_recall_among_large_enough_slices() -> None:
    y_true, y_pred, metadata = _sample_set()
    report = slice_metrics(y_true, y_pred, NAMES, metadata, min_count=10)
    assert report.worst is not None
    # cam-2: good 6/6, scratch 3/6 -> macro recall 0.75; (missing) has 0.5 but only 6 images.
    assert (report.worst.field, report.worst.value) == ("camera", "cam-2")
    assert report.worst.metrics.macro_recall == 0.75
    # With a lower bar the small (missing) slice is ranked and is worse.
    small_bar = slice_metrics(y_true, y_pred, NAMES, metadata, min_count=5)
    assert small_bar.worst is not None and small_bar.worst.value == MISSING


def test_no_worst_slice_when_all_are_small() -> None:
    y_true, y_pred, metadata = _sample_set()
    report = slice_metrics(y_true, y_pred, NAMES, metadata, min_count=13)
    assert report.worst is None
    assert report.to_dict()["worst"] is None


def test_named_fields_are_used_as_given() -> None:
    y_true, y_pred, metadata = _sample_set()
    report = slice_metrics(y_true, y_pred, NAMES, metadata, fields=["line", "camera"])
    assert report.fields == ("line", "camera")
    assert [s.value for s in report.for_field("line")] == ["L1"]
    assert report.for_field("line")[0].metrics.count == 30


@pytest.mark.parametrize(
    ("rule", "values", "expected"),
    [
        ("two values, repeated", ["a", "b"] * 5, True),
        ("one value", ["a"] * 10, False),
        ("unique per image", [str(i) for i in range(10)], False),
        ("mostly unique", [str(i) for i in range(8)] + ["0", "1"], False),
        ("too many values", [str(i % 60) for i in range(600)], False),
        ("set on a few samples only", ["a", "b", "a", "b"] + [None] * 20, True),
    ],
)
def test_field_selection_rule(rule: str, values: list[str | None], expected: bool) -> None:
    metadata = [{"field": v} for v in values]
    assert (select_slice_fields(metadata) == ("field",)) is expected, rule


def test_to_dict_is_json_safe() -> None:
    y_true, y_pred, metadata = _sample_set()
    as_dict = slice_metrics(y_true, y_pred, NAMES, metadata).to_dict()
    text = json.dumps(as_dict, allow_nan=False)
    assert json.loads(text)["worst"] == {"field": "camera", "value": "cam-2", "count": 12, "macro_recall": 0.75}


def test_bad_input() -> None:
    y_true, y_pred, metadata = _sample_set()
    with pytest.raises(DatasetError, match="metadata has 29 entries"):
        slice_metrics(y_true, y_pred, NAMES, metadata[:-1])
    with pytest.raises(DatasetError, match="'camra' is not set") as caught:
        slice_metrics(y_true, y_pred, NAMES, metadata, fields=["camra"])
    assert "camera" in str(caught.value.hint)
    with pytest.raises(DatasetError, match="min_count"):
        slice_metrics(y_true, y_pred, NAMES, metadata, min_count=0)
    with pytest.raises(DatasetError, match="label 2"):
        slice_metrics(y_true[:-1] + [2], y_pred, NAMES, metadata)


THIRD = "0.3333333333333333"


@pytest.mark.parametrize(
    ("case", "labels", "values", "repeats"),
    [
        ("numeric, one value per class", ["scratch"] * 3 + ["good"] * 3, [THIRD] * 3 + ["0"] * 3, True),
        ("numeric, one value written two ways", ["scratch"] * 3 + ["good"] * 3, ["0.5", "0.50", ".5"] + ["0"] * 3, True),
        ("numeric, varies within a class", ["scratch"] * 3 + ["good"] * 3, ["0.2", "0.7", "0.9"] + ["0"] * 3, False),
        ("text, one value per class", ["good", "good", "dent", "dent"], ["ok", "ok", "bad", "bad"], True),
        ("text, two classes share a value", ["good"] * 2 + ["dent"] * 2 + ["pit"] * 2, ["ok"] * 2 + ["bad"] * 4, True),
        ("text, varies within a class", ["good", "good", "dent", "dent"], ["cam1", "cam2", "cam1", "cam2"], False),
        ("text, set on one class only", ["good", "good", "dent", "dent"], [None, None, "deep", "deep"], True),
        ("the same value everywhere", ["good", "good", "dent", "dent"], ["L1"] * 4, False),
        ("one class, varying", ["scratch"] * 4, ["a", "b", "a", "b"], False),
        ("one class, constant", ["scratch"] * 4, ["a"] * 4, False),
        ("one image per class: by chance", ["good", "dent", "pit"], ["a", "b", "c"], False),
        ("unlabelled images do not count", ["good", "good", None, "dent", "dent"], ["x", "x", "y", "z", "z"], True),
    ],
)
def test_a_field_that_repeats_the_label_is_found(case: str, labels: list[str | None], values: list[str | None],
                                                 repeats: bool) -> None:
    metadata = [{"field": v} for v in values]
    echoes = label_determined_fields(labels, metadata)
    assert [e.field for e in echoes] == (["field"] if repeats else []), case


def test_a_field_that_repeats_the_label_is_not_sliced_and_is_named() -> None:
    y_true, y_pred, metadata = _sample_set()
    echoing = [{**sample, "defect_probability": THIRD if t else "0"} for sample, t in zip(metadata, y_true)]
    report = slice_metrics(y_true, y_pred, NAMES, echoing)
    assert report.fields == ("camera",)
    assert [(e.field, dict(e.values)) for e in report.left_out] == [("defect_probability", {"good": "0",
                                                                                           "scratch": THIRD})]
    assert report.worst is not None and report.worst.field == "camera"
    assert json.loads(json.dumps(report.to_dict()))["label_determined"] == [
        {"field": "defect_probability", "values": {"good": "0", "scratch": THIRD}}]
    named = slice_metrics(y_true, y_pred, NAMES, echoing, fields=["defect_probability"])
    assert named.fields == ("defect_probability",) and named.left_out == ()  # asked for by name: sliced


def test_a_stored_report_without_a_field_ranks_its_worst_slice_again() -> None:
    y_true, y_pred, metadata = _sample_set()
    # Before fields repeating the label were left out, one ("kind") could be the worst slice.
    echoing = [{**sample, "kind": "defect" if t else "ok"} for sample, t in zip(metadata, y_true)]
    old = slice_metrics(y_true, y_pred, NAMES, echoing, fields=["camera", "kind"])
    assert old.worst is not None and old.worst.field == "kind"
    echoes = label_determined_fields([NAMES[t] for t in y_true], echoing)
    cleaned = old.without(echoes)
    assert cleaned.fields == ("camera",) and [e.field for e in cleaned.left_out] == ["kind"]
    assert cleaned.worst is not None and (cleaned.worst.field, cleaned.worst.value) == ("camera", "cam-2")
    assert cleaned.without(echoes) is cleaned


def test_describing_a_field_that_repeats_the_label() -> None:
    echo = LabelEcho("grade", {"good": "0", "minor": "1", "major": "2", "critical": "3"})
    assert echo.describe() == ("'grade' repeats the label (every 'critical' is 3, every 'good' is 0, "
                               "every 'major' is 2, and 1 more classes)")
