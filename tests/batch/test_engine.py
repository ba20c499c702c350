"""The batch engines: this process and Ray give the same results in the same order; bad settings fail at start."""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field

import pytest

from inspectloop.batch.engine import LocalEngine, RayEngine, chunks, open_engine
from inspectloop.errors import BatchError, ImageError
from tests.ray_helpers import local_ray  # noqa: F401 (fixture)


@dataclass
class SquareWithPid:
    """Squares numbers; records which process set it up, to show the work left this process."""

    opened_in: int | None = field(default=None, init=False)

    def setup(self) -> None:
        self.opened_in = os.getpid()

    def __call__(self, chunk: list[int]) -> list[tuple[int, int | None]]:
        return [(n * n, self.opened_in) for n in chunk]


@dataclass
class FailsOn:
    bad: int

    def setup(self) -> None:
        pass

    def __call__(self, chunk: list[int]) -> list[int]:
        if self.bad in chunk:
            raise ImageError(f"image {self.bad} cannot be decoded", "re-capture it")
        return chunk


def test_chunks_keep_order_and_cover_everything() -> None:
    assert chunks(list(range(7)), 3) == [[0, 1, 2], [3, 4, 5], [6]]


def test_local_and_ray_give_the_same_results_in_order_and_ray_works_in_other_processes(local_ray: object) -> None:
    items = list(range(103))
    local = LocalEngine(chunk_size=10).map(SquareWithPid(), items)
    with RayEngine(workers=2, chunk_size=10) as engine:
        spread = engine.map(SquareWithPid(), items)
    assert [value for value, _ in spread] == [value for value, _ in local] == [n * n for n in items]
    workers = {pid for _, pid in spread}
    assert os.getpid() not in workers and len(workers) == 2  # two actors, each set up once
    assert local_ray.is_initialized()  # an engine leaves a Ray it did not start running


def test_a_workers_own_error_reaches_the_caller_as_itself(local_ray: object) -> None:
    with RayEngine(workers=2, chunk_size=4) as engine, pytest.raises(ImageError, match="image 9 cannot be decoded"):
        engine.map(FailsOn(9), list(range(20)))


def test_an_unreachable_ray_address_fails_at_once_with_the_address_and_the_fix() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(BatchError) as caught:
        open_engine(ray_address=f"127.0.0.1:{port}")
    assert f"cannot reach the Ray cluster at 127.0.0.1:{port}" in str(caught.value)
    assert "ray start --head" in str(caught.value) and "leave --ray-address out" in str(caught.value)
    assert time.monotonic() - started < 10  # not Ray's own minute of retries


@pytest.mark.parametrize("address", ["ray://", "host:port", ":6379"])
def test_a_malformed_ray_address_is_named(address: str) -> None:
    with pytest.raises(BatchError, match="is not a Ray address"):
        open_engine(ray_address=address)


def test_several_workers_without_ray_are_refused_with_the_fix() -> None:
    with pytest.raises(BatchError, match="need Ray.*--ray"):
        open_engine(workers=2)
    assert isinstance(open_engine(), LocalEngine)
