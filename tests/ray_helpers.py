"""A real local Ray instance for the tests: 2 CPUs, a small object store, no dashboard; started once per session."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

OBJECT_STORE_MB = 80  # the tests ship digests and small results, never images


@pytest.fixture(scope="session")
def local_ray() -> Iterator[Any]:
    """The ``ray`` module, initialised; skipped with Ray's own reason when it cannot start on this machine."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'inspectloop[ray]')")
    if ray.is_initialized():  # started by another test module's copy of this fixture: share it
        yield ray
        return
    try:
        ray.init(num_cpus=2, object_store_memory=OBJECT_STORE_MB * 1024 * 1024, include_dashboard=False,
                 log_to_driver=False)
    except Exception as exc:  # noqa: BLE001 (whatever stops Ray starting here is the reason to skip)
        pytest.skip(f"a local Ray instance cannot start on this machine: {exc}")
    yield ray
    ray.shutdown()
