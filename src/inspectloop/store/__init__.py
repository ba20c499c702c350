"""Persistence: the workspace database and the content-addressed blob store."""

from inspectloop.store.blobs import BlobStore, atomic_write_bytes, atomic_write_text, sha256_bytes
from inspectloop.store.database import Database, now_iso

__all__ = ["BlobStore", "Database", "atomic_write_bytes", "atomic_write_text", "now_iso", "sha256_bytes"]
