"""Atomic file writes (readers see the old file or the new one, never half of one) and JSON-ready values."""

from __future__ import annotations

import math
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

import numpy as np


def temporary_beside(path: Path) -> tuple[int, Path]:
    """Create an exclusive temporary file in ``path``'s folder (same filesystem, so rename is atomic).

    Created with the usual permissions (0o666 less the umask), not mkstemp's 0o600, so reports and
    blobs stay readable by the service account that serves them.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".tmp-{path.name}.{secrets.token_hex(6)}")
    return os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), temporary


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically and durably (fsync before the rename)."""
    descriptor, temporary = temporary_beside(Path(path))
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def json_safe(value: object) -> object:
    """``value`` with only JSON types: NaN and infinities become None, numpy scalars plain numbers,
    anything else its text."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_safe(v) for v in value]
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, np.generic):
        return json_safe(value.item())
    return str(value)
