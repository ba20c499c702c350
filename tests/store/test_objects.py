"""Blobs in an S3-compatible object store (a real moto server): content-addressed, atomic, cached for files."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from inspectloop.cli.app import app
from inspectloop.errors import MissingExtraError, WorkspaceError
from inspectloop.ingest import ingest, scan_folder
from inspectloop.maintenance.doctor import doctor
from inspectloop.store import sha256_bytes
from inspectloop.store.objects import ObjectBlobStore
from inspectloop.workspace import init_workspace, open_workspace

runner = CliRunner()


@pytest.fixture
def store(s3_server: dict[str, str], s3_bucket: str, tmp_path: Path) -> ObjectBlobStore:
    return ObjectBlobStore(f"s3://{s3_bucket}/site-a", tmp_path / "cache", s3_server)


def test_put_is_content_addressed_idempotent_and_read_back(store: ObjectBlobStore) -> None:
    digest, new = store.put(b"frame one")
    assert digest == sha256_bytes(b"frame one") and new and store.put(b"frame one") == (digest, False)
    assert store.fs.cat_file(f"{store.prefix}/{digest[:2]}/{digest[2:4]}/{digest}") == b"frame one"
    assert store.put_many([b"frame two", b"frame one"]) == [sha256_bytes(b"frame two"), digest]
    assert sorted(store.digests()) == sorted([digest, sha256_bytes(b"frame two")])
    assert store.exists(digest) and not store.exists("0" * 64)
    assert store.get(sha256_bytes(b"frame two")) == b"frame two"
    assert store.path_for(digest).read_bytes() == b"frame one"  # a local file, for code that needs one
    assert not store.path_for("0" * 64).exists()
    store.fs.pipe_file(f"{store.prefix}/stray.txt", b"not a blob")
    assert len(list(store.digests())) == 2  # keys that are not a digest in its place are skipped


def test_a_workspace_on_s3_ingests_there_and_doctor_finds_damage(tmp_path: Path, class_tree: Path,
                                                                s3_server: dict[str, str], s3_bucket: str) -> None:
    url = f"s3://{s3_bucket}/line-3"
    with init_workspace(tmp_path / "ws", blobs=url, blob_options=s3_server) as ws:
        assert isinstance(ws.blobs, ObjectBlobStore) and not (tmp_path / "ws" / "blobs").exists()
        ingest(ws, scan_folder(class_tree), source="tree")
        stored = sorted(ws.blobs.digests())
        assert len(stored) == 12 and sorted(ws.db.images.get_many()) == stored
    with open_workspace(tmp_path / "ws") as ws:
        assert doctor(ws).healthy and doctor(ws).checked["hashed_blobs"] == 12
        ws.blobs.fs.pipe_file(ws.blobs.key(stored[0]), b"bit rot")  # damaged in the bucket, before any cache
        ws.blobs.fs.rm_file(ws.blobs.key(stored[1]))
        found = {f.check: f.subject for f in doctor(ws).problems}
        assert found == {"corrupt_blob": stored[0], "missing_blob": stored[1]}
        shown = runner.invoke(app, ["doctor", "-w", str(ws.root)])
        assert shown.exit_code == 1 and f"blobs: {url}" in shown.stdout
        ws.blobs.fs.rm(s3_bucket, recursive=True)  # the bucket is gone
        report = doctor(ws)
        assert [(f.check, f.subject) for f in report.problems] == [("blob_store", url)]
        assert f"cannot reach the blob store {url}" in report.problems[0].detail and report.problems[0].fix


def test_an_unreachable_bucket_is_one_line_with_the_url_and_the_fix(tmp_path: Path, s3_server: dict[str, str]) -> None:
    with pytest.raises(WorkspaceError) as caught:
        init_workspace(tmp_path / "ws", blobs="s3://no-such-bucket/x", blob_options=s3_server)
    assert "cannot reach the blob store s3://no-such-bucket/x" in caught.value.message
    assert "endpoint_url" in (caught.value.hint or "") and not (tmp_path / "ws").exists()
    with pytest.raises(WorkspaceError, match="not a supported object store"):
        ObjectBlobStore("ftp://host/blobs", tmp_path / "cache")


def test_a_missing_s3_driver_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "s3fs", None)  # as if not installed: importing it raises ImportError
    with pytest.raises(MissingExtraError, match="inspectloop\\[s3\\]"):
        ObjectBlobStore("s3://bucket/blobs", tmp_path / "cache")
