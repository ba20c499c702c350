"""The database's one style: repositories per concept, typed rows, transactions the caller controls."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest

from inspectloop.domain import (
    Annotation, CaptureMeta, ClassDefinition, DatasetItem, ImageRecord, QualityStats, TrainingRun,
)
from inspectloop.errors import WorkspaceError
from inspectloop.store import Database, now_iso
from inspectloop.store.database import parse_database_url


@pytest.fixture
def db(database_url: str, tmp_path: Path) -> Iterator[Database]:
    """A migrated database: SQLite, then PostgreSQL (``database_url``)."""
    database = Database(database_url, root=tmp_path)
    database.migrate()
    yield database
    database.close()


def _image(digest: str) -> ImageRecord:
    quality = QualityStats(brightness=1, contrast=1, sharpness=1, noise=1, clipped_fraction=0)
    return ImageRecord(sha256=digest, format="PNG", original_mode="L", working_mode="L", width=8, height=8,
                       size_bytes=10, meta=CaptureMeta(camera="cam-a"), quality=quality)


def test_a_failed_transaction_leaves_nothing_of_any_repository(db: Database) -> None:
    with pytest.raises(RuntimeError), db.transaction() as tx:
        tx.labels.upsert_class(ClassDefinition(name="scratch"))
        ingest_id = tx.images.begin_ingest("test", "folder")
        tx.images.add([_image("a" * 64)], ingest_id)
        tx.labels.add_annotations([Annotation(sha256="a" * 64, class_name="scratch", annotator="ana")])
        raise RuntimeError("power cut before the commit")
    assert db.labels.classes() == {} and db.images.count() == 0 and db.labels.annotations() == []


def test_reads_inside_a_transaction_see_its_own_writes(db: Database) -> None:
    with db.transaction() as tx:
        tx.images.add_once(_image("b" * 64), tx.images.begin_ingest("test", "folder"))
        tx.images.add_once(_image("b" * 64), 1)  # once: the second is a no-op, not an integrity error
        assert tx.images.exists("b" * 64) and tx.images.cameras() == {"cam-a"}
    assert db.images.get("b" * 64) == _image("b" * 64)


def test_completing_metadata_fills_only_what_is_missing_and_leaves_versioned_images(db: Database) -> None:
    ingest_id = db.images.begin_ingest("test", "folder")
    db.images.add([_image("e" * 64), _image("f" * 64)], ingest_id)
    db.images.add([_image("e" * 64)], ingest_id)  # recorded already (another writer won): skipped, kept as it was
    db.labels.upsert_class(ClassDefinition(name="scratch"))
    db.datasets.add("v1", None, {}, {"count": 1}, [DatasetItem("f" * 64, "scratch", "train", "part:1")])
    fuller = CaptureMeta(camera="cam-b", session="first-week", extra={"collected": "sample"})
    assert db.images.complete_meta([("e" * 64, fuller), ("f" * 64, fuller), ("0" * 64, fuller)]) == 1
    completed = db.images.get("e" * 64)
    assert completed is not None and completed.meta == CaptureMeta(  # the camera recorded first stays
        camera="cam-a", session="first-week", extra={"collected": "sample"})
    assert db.images.get("f" * 64) == _image("f" * 64)  # in a dataset version: its slices stay what they were
    assert db.images.complete_meta([("e" * 64, fuller)]) == 0  # nothing left to fill


def test_rows_are_typed_and_frozen_and_paths_are_stored_relative(db: Database, tmp_path: Path) -> None:
    db.datasets.add("v1", None, {}, {"count": 0}, [])
    db.runs.add("run-1", "v1", {"mode": "probe"}, "0.1.0", str(tmp_path / "runs" / "run-1"))
    run = db.runs.get("run-1")
    assert isinstance(run, TrainingRun) and run.status == "running" and run.criteria_id is None
    assert Path(run.artifacts) == tmp_path / "runs" / "run-1"
    with db.engine.connect() as conn:  # relative on disk, so a workspace can be moved
        assert conn.exec_driver_sql("SELECT artifacts FROM runs").scalar() == "runs/run-1"
    with pytest.raises(FrozenInstanceError):
        run.status = "finished"  # type: ignore[misc]


def test_dataset_items_come_back_as_they_went_in(db: Database) -> None:
    db.labels.upsert_class(ClassDefinition(name="scratch"))
    ingest_id = db.images.begin_ingest("test", "folder")
    db.images.add([_image("c" * 64), _image("d" * 64)], ingest_id)
    items = [DatasetItem("d" * 64, "scratch", "test", "part:1"), DatasetItem("c" * 64, "scratch", "train", "part:2")]
    db.datasets.add("v1", None, {"seed": 0}, {"count": 2}, items)
    assert db.datasets.items("v1") == sorted(items, key=lambda i: i.sha256)
    info = db.datasets.get("v1")
    assert info is not None and info.params == {"seed": 0} and info.created_at <= now_iso()
    assert [v.name for v in db.datasets.list()] == ["v1"]


@pytest.mark.parametrize(("url", "words"), [
    ("postgresql+psycopg://inspector:s3cret@127.0.0.1:1/plant",
     "cannot open the workspace database postgresql+psycopg://inspector:***@127.0.0.1:1/plant"),
    (f"sqlite:///{Path('/nonexistent-folder/inspectloop.db')}", "cannot open the workspace database sqlite:///"),
])
def test_an_unreachable_database_is_one_line_with_its_url_password_hidden_and_the_fix(url: str, words: str) -> None:
    with Database(url) as database, pytest.raises(WorkspaceError) as caught:
        database.migrate()
    assert words in caught.value.message and "s3cret" not in str(caught.value)
    assert "inspectloop.yaml" in (caught.value.hint or "")


@pytest.mark.parametrize(("url", "words"), [
    ("localhost:5432/plant", "is not a database URL"),
    ("mysqlx://inspector:s3cret@db/plant", "names an unknown database or driver"),
])
def test_a_wrong_database_url_is_one_line_naming_the_forms_that_work(url: str, words: str) -> None:
    with pytest.raises(WorkspaceError, match=words) as caught:
        Database(url)
    assert "postgresql+psycopg://" in (caught.value.hint or "") and "s3cret" not in str(caught.value)


@pytest.mark.parametrize("url", ["postgresql://u@db/plant", "postgres://u@db/plant", "postgresql+psycopg://u@db/plant"])
def test_a_postgresql_url_without_a_driver_gets_the_one_the_extra_installs(url: str) -> None:
    assert parse_database_url(url).drivername == "postgresql+psycopg"


def test_ping_names_the_server(db: Database) -> None:
    assert db.ping().split()[0] in {"SQLite", "PostgreSQL"} and db.url.startswith(db.engine.dialect.name)


def test_an_image_waits_once_per_reason_until_its_item_is_closed(db: Database) -> None:
    db.images.add_once(_image("e" * 64), db.images.begin_ingest("test", "folder"))
    db.images.add_once(_image("e" * 64), 1)  # kept twice (two services): one row, no integrity error
    first = db.review.enqueue(image_sha256="e" * 64, reason="uncertain", priority=0.5)
    assert first is not None and db.review.enqueue(image_sha256="e" * 64, reason="uncertain") is None
    assert db.review.enqueue(image_sha256="e" * 64, reason="shadow") is not None
    db.review.set_skipped(first, reviewer="rita", at=now_iso(), details={})
    assert db.review.enqueue(image_sha256="e" * 64, reason="uncertain") not in (None, first)
    db.labels.upsert_class(ClassDefinition(name="scratch"))
    db.labels.add_reference("scratch", "e" * 64)
    db.labels.add_reference("scratch", "e" * 64)
    assert db.labels.references("scratch") == ["e" * 64] and db.images.count() == 1
