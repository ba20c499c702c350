from pathlib import Path

import pytest

from inspectloop.domain.labelling import QueuedSuspect
from inspectloop.errors import LabelError
from inspectloop.ingest import ingest, scan_folder
from inspectloop.labelquality.settle import settle, settle_queue
from inspectloop.labelquality.suspects import Suspect, queue_suspects
from inspectloop.labels import annotate, resolve_labels
from inspectloop.workspace import Workspace, init_workspace


@pytest.fixture
def ws(tmp_path: Path, class_tree: Path) -> Workspace:
    workspace = init_workspace(tmp_path / "ws")
    ingest(workspace, scan_folder(class_tree), source="tree")
    yield workspace
    workspace.close()


def good_images(ws: Workspace) -> list[str]:
    labels = resolve_labels(ws.db.labels.annotations()).labels
    return sorted(d for d, label in labels.items() if label == "good")


def test_a_disagreement_waits_with_every_vote_until_settled(ws: Workspace) -> None:
    digest = good_images(ws)[0]
    annotate(ws, digest, "scratch", annotator="ana")
    annotate(ws, digest, "good", annotator="bo")
    [case] = settle_queue(ws)
    assert case.sha256 == digest and case.reasons == ("disagreement",) and case.current is None  # tie
    assert case.votes == {"import": "good", "ana": "scratch", "bo": "good"}
    settle(ws, digest, "scratch", by="qe", seen=case.seen, note="visible under low-angle light")
    assert settle_queue(ws) == []
    assert resolve_labels(ws.db.labels.annotations(), ws.config.labelling).labels[digest] == "scratch"


def test_a_settle_on_votes_that_changed_since_shown_is_refused(ws: Workspace) -> None:
    digest = good_images(ws)[0]
    annotate(ws, digest, "scratch", annotator="ana")
    annotate(ws, digest, "good", annotator="bo")
    [shown] = settle_queue(ws)
    annotate(ws, digest, "scratch", annotator="cy")  # a new vote arrives after the page was shown
    with pytest.raises(LabelError, match="stale settle") as info:
        settle(ws, digest, "good", by="qe", seen=shown.seen)
    assert "nothing was recorded" in info.value.hint
    assert not any(a.source == "settled" for a in ws.db.labels.annotations())
    [now] = settle_queue(ws)
    settle(ws, digest, "good", by="qe", seen=now.seen)


def test_suspects_join_the_queue_once_and_leave_it_when_settled(ws: Workspace) -> None:
    first, second = good_images(ws)[:2]
    suspects = [Suspect(first, "train", "good", "scratch", 0.1, 0.1), Suspect(second, "train", "good", "scratch", 0.3, 0.3)]
    assert queue_suspects(ws, suspects) == 2
    assert queue_suspects(ws, suspects) == 0  # already waiting
    queue = settle_queue(ws)
    assert [c.sha256 for c in queue] == [first, second] and queue[0].suggestion == "scratch"
    settle(ws, first, "scratch", by="qe", seen=queue[0].seen)
    assert [c.sha256 for c in settle_queue(ws)] == [second]
    assert queue_suspects(ws, suspects[:1]) == 1  # settled items do not block a later check


@pytest.mark.parametrize("image, label, by, message", [
    ("{digest}", "dent", "qe", "unknown class 'dent'"),
    ("f" * 64, "good", "qe", "no image with sha256"),
    ("{digest}", "good", " ", "no quality engineer named"),
])
def test_bad_settle_input_is_refused(ws: Workspace, image: str, label: str, by: str, message: str) -> None:
    with pytest.raises(LabelError, match=message):
        settle(ws, image.replace("{digest}", good_images(ws)[0]), label, by=by, seen="")


def test_queued_suspect_is_stored_with_its_details(ws: Workspace) -> None:
    digest = good_images(ws)[0]
    ws.db.settle.enqueue_suspects([QueuedSuspect(0, digest, "good", "scratch", 0.2, "", {"split": "test"})])
    [stored] = ws.db.settle.open_suspects()
    assert (stored.sha256, stored.given, stored.suggestion, stored.details) == (digest, "good", "scratch", {"split": "test"})
