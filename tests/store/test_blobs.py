import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from inspectloop.store.blobs import GRACE_SECONDS, BlobStore, atomic_write_bytes, sha256_bytes


def test_put_is_content_addressed_and_idempotent(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    digest, new = store.put(b"frame")
    assert digest == sha256_bytes(b"frame") and new
    assert store.put(b"frame") == (digest, False)
    assert store.get(digest) == b"frame"
    assert store.path_for(digest).parent.parent.name == digest[:2]


def test_atomic_write_leaves_old_file_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "a.bin"
    atomic_write_bytes(target, b"old")

    def crash(*_args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", crash)
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]  # no temporary file left behind


def test_blobs_are_readable_by_others_not_only_the_owner(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    digest = store.put_many([b"frame-1", b"frame-2", b"frame-1"])[0]
    assert store.path_for(digest).stat().st_mode & 0o044  # group/other read, unlike mkstemp's 0o600
    assert not list(tmp_path.rglob(".tmp-*"))


def a_finished_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_temporary_files_of_a_killed_writer_go_and_a_live_writers_stay(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    store.put(b"frame")
    host = socket.gethostname().replace("-", "_")
    staging = tmp_path / ".staging"
    killed = staging / f".tmp-{host}-{a_finished_pid()}-0a0b0c"
    live = staging / f".tmp-{host}-{os.getpid()}-0a0b0d"
    other_host = staging / ".tmp-edge_box_2-1-0a0b0e"
    legacy_old = store.path_for(sha256_bytes(b"frame")).with_name(".tmp-x.123abc")  # an older version's name
    legacy_new = legacy_old.with_name(".tmp-y.456def")
    for path in (killed, live, other_host, legacy_old, legacy_new):
        path.write_bytes(b"half a blob")
    an_hour_ago = time.time() - GRACE_SECONDS - 60
    os.utime(legacy_old, (an_hour_ago, an_hour_ago))
    assert store.remove_abandoned() == [killed]  # at open: the staging folder only, cheap
    assert store.remove_abandoned(everywhere=True) == [legacy_old]  # doctor --fix: the whole store
    assert {p.name for p in tmp_path.rglob(".tmp-*")} == {live.name, other_host.name, legacy_new.name}
    assert list(store.digests()) == [sha256_bytes(b"frame")]


def test_opening_a_workspace_cleans_what_a_killed_ingest_left(tmp_path: Path) -> None:
    from inspectloop.workspace import init_workspace, open_workspace

    init_workspace(tmp_path / "ws").close()
    staging = tmp_path / "ws" / "blobs" / ".staging"
    staging.mkdir()
    orphan = staging / f".tmp-{socket.gethostname().replace('-', '_')}-{a_finished_pid()}-abcdef"
    orphan.write_bytes(b"partial")
    open_workspace(tmp_path / "ws").close()
    assert not orphan.exists()
