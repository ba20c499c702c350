from pathlib import Path

import pytest

from inspectloop.store.blobs import BlobStore, atomic_write_bytes, sha256_bytes


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
