"""The browser's points, one image's story, and selections sent to the settle and review queues."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from inspectloop import review
from inspectloop.datamap.build import PIXELS, compute_map
from inspectloop.datamap.columns import encode_column
from inspectloop.datamap.points import image_detail, live_columns, map_points_json, send_to_review, send_to_settle
from inspectloop.errors import BrowseError
from inspectloop.labelquality.settle import settle_queue
from inspectloop.labels import annotate
from tests.datamap_helpers import VERSION, fake_run, mapped
from tests.review_helpers import Seeded


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[Seeded]:
    result = mapped(tmp_path, items=12)
    yield result
    result.workspace.close()


def map_points(workspace: object, version: str, run: str | None = None) -> dict:
    """The fixed and the live columns of a map in one table, as the page puts them together."""
    points = json.loads(map_points_json(workspace, version))  # type: ignore[arg-type]
    points["fields"].update(live_columns(workspace, version, run=run)["fields"])  # type: ignore[arg-type]
    return points


def decode(points: dict, field: str) -> list[str | None]:
    column = points["fields"][field]
    return [None if c < 0 else column["values"][c] for c in column["codes"]]


def test_encode_column_codes_each_value_and_marks_missing() -> None:
    assert encode_column(["b", None, "a", "b"]) == {"values": ["a", "b"], "codes": [1, -1, 0, 1]}


def test_points_carry_labels_splits_metadata_and_the_label_now(seeded: Seeded) -> None:
    workspace, digest = seeded.workspace, seeded.images[1]  # labelled good
    annotate(workspace, digest, "dent", annotator="qe", source="settled")  # a settled label outranks the import
    points = map_points(workspace, VERSION)
    assert points["count"] == 20 and len(points["x"]) == len(points["y"]) == 20
    row = points["sha256"].index(digest)
    assert decode(points, "label")[row] == "good" and decode(points, "current")[row] == "dent"
    assert set(decode(points, "split")) == {"train", "val", "test"}
    assert set(decode(points, "camera")) == {"cam-A", "cam-B", None} and "part_id" in points["fields"]  # refs: none
    assert "prediction" not in points["fields"]  # no run asked: no empty column


def test_the_fixed_columns_are_kept_beside_the_map_and_rewritten_when_it_is_newer(seeded: Seeded) -> None:
    from inspectloop.datamap.build import fixed_path, load_map

    kept = fixed_path(seeded.workspace, load_map(seeded.workspace, VERSION))
    assert json.loads(kept.read_bytes())["count"] == 20
    kept.write_text("{}")  # a file older than its map (left by an interrupted compute) is not served
    os.utime(kept, (0, 0))
    assert json.loads(map_points_json(seeded.workspace, VERSION))["count"] == 20
    assert json.loads(kept.read_bytes())["count"] == 20


def test_a_run_adds_predictions_and_correctness_on_its_test_images(seeded: Seeded) -> None:
    predicted = fake_run(seeded)
    points = map_points(seeded.workspace, VERSION, run="run-map")
    labels, corrects = decode(points, "label"), decode(points, "correct")
    for row, digest in enumerate(points["sha256"]):
        if digest in predicted:
            assert corrects[row] == ("correct" if labels[row] == "good" else "wrong")
        else:
            assert corrects[row] is None


def test_an_image_tells_its_whole_story(seeded: Seeded) -> None:
    fake_run(seeded)
    workspace, digest = seeded.workspace, seeded.images[0]
    annotate(workspace, digest, "dent", annotator="ana")
    story = image_detail(workspace, digest, VERSION, run="run-map")
    assert [a["annotator"] for a in story["annotations"]] == ["import", "ana"]
    assert story["current"] == "dent"  # the labelling policy: a reviewer outranks the import
    assert story["versions"][0]["version"] == VERSION and story["meta"]["camera"] == "cam-A"
    assert story["review"][0]["reason"] in review.REASONS and story["production"]
    assert (story["prediction"] is None) == (story["versions"][0]["split"] != "test")


def test_a_selection_goes_to_the_settle_queue_once(seeded: Seeded) -> None:
    chosen = seeded.images[:3]
    assert send_to_settle(seeded.workspace, VERSION, chosen, by="ana").to_dict() == \
        {"queue": "settle", "added": 3, "already_waiting": 0}
    assert send_to_settle(seeded.workspace, VERSION, chosen, by="ana").added == 0
    assert {c.sha256 for c in settle_queue(seeded.workspace)} == set(chosen)


def test_a_browser_selection_says_who_sent_it_and_what_the_map_showed(seeded: Seeded) -> None:
    chosen = seeded.images[3:5]
    send_to_settle(seeded.workspace, VERSION, chosen, by="ana", colour_by="correct", colour_values=["wrong", "right"])
    cases = {c.sha256: c for c in settle_queue(seeded.workspace)}
    first, second = cases[chosen[0]], cases[chosen[1]]
    assert first.reasons == ("browser",) and first.suggestion is None and first.score is None
    assert first.why == ["sent from the browser by ana (map coloured by correct: wrong)"]
    assert second.to_dict()["why"] == ["sent from the browser by ana (map coloured by correct: right)"]
    send_to_settle(seeded.workspace, VERSION, seeded.images[5:6], by="bo")  # no colour given (an API caller)
    assert cases_of(seeded)[seeded.images[5]].why == ["sent from the browser by bo"]
    with pytest.raises(BrowseError, match="1 colour values for 2 selected images"):
        send_to_settle(seeded.workspace, VERSION, seeded.images[6:8], by="ana", colour_by="label", colour_values=["x"])
    assert seeded.images[6] not in cases_of(seeded)


def cases_of(seeded: Seeded) -> dict[str, object]:
    return {c.sha256: c for c in settle_queue(seeded.workspace)}


def test_a_selection_goes_to_the_review_queue_for_a_second_look(seeded: Seeded) -> None:
    chosen = seeded.images[:2]
    sent = send_to_review(seeded.workspace, VERSION, chosen + chosen, by="ana")  # duplicates count once
    assert (sent.added, sent.waiting) == (2, 0)
    items = [i for d in chosen for i in seeded.workspace.db.review.of_image(d) if i.reason == "selected"]
    assert len(items) == 2 and items[0].details["sent_by"] == "ana" and items[0].suggestion == "scratch"


@pytest.mark.parametrize(("call", "kind", "message"), [
    (lambda w, d: map_points(w, "v7"), "not_found", "no dataset version 'v7'"),
    (lambda w, d: live_columns(w, VERSION, run="nope"), "not_found", "no training run 'nope'"),
    (lambda w, d: map_points_json(w, "v1"), "no_map", "no map of dataset version v1"),
    (lambda w, d: live_columns(w, "v1"), "no_map", "no map of dataset version v1"),
    (lambda w, d: image_detail(w, "0" * 64, VERSION), "not_found", "no image"),
    (lambda w, d: image_detail(w, "../../etc", VERSION), "not_found", "no image"),
    (lambda w, d: send_to_settle(w, VERSION, [], by="ana"), "bad_field", "the selection is empty"),
    (lambda w, d: send_to_settle(w, VERSION, [d, "f" * 64], by="ana"), "bad_field", "1 selected image(s) are not in dataset version v2"),
    (lambda w, d: send_to_review(w, VERSION, ["x"] * 2 + [str(i) for i in range(10_001)], by="ana"), "bad_field",
     "over the 10000"),
])
def test_bad_requests_say_what_is_wrong_and_queue_nothing(seeded: Seeded, call: object, kind: str,
                                                          message: str) -> None:
    with pytest.raises(BrowseError) as info:
        call(seeded.workspace, seeded.images[0])  # type: ignore[operator]
    assert info.value.kind == kind and message in str(info.value)
    assert settle_queue(seeded.workspace) == []


def test_a_run_without_outcomes_and_a_version_without_images_are_refused(seeded: Seeded) -> None:
    workspace = seeded.workspace  # the seed's run-1 has no report; its v1 no images
    with pytest.raises(BrowseError, match="run run-1 has no per-image predictions"):
        map_points(workspace, VERSION, run="run-1")
    with pytest.raises(BrowseError, match="dataset version v1 has no images") as info:
        compute_map(workspace, "v1", features=PIXELS)
    assert info.value.kind == "empty"
