"""Where heavy batch work runs: in this process (the default), or on Ray (a local instance or a cluster).

Both engines run the same :class:`BatchTask` over the same chunks of items, and each item's result
depends only on the item (every task handles images one by one), so both give identical results in
the same order. Ray is the one engine for spreading work over cores and machines: its actors each
open the task once (the model is loaded once per worker, not once per chunk) and ``ActorPool``
hands them chunks in order. Nothing here is a home-made pool.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence
from typing import Any, Generic, Protocol, TypeVar

from inspectloop.errors import BatchError, InspectloopError, require

T = TypeVar("T")
R = TypeVar("R")

CHUNK_SIZE = 64  # items per task call: big enough that Ray's per-call overhead (~1 ms) is noise
CONNECT_TIMEOUT_S = 5.0  # an unreachable cluster fails at start, not after Ray's own minute of retries
GCS_PORT, CLIENT_PORT = 6379, 10001  # Ray's defaults for HOST:PORT and ray://HOST:PORT
RAY_HINT = ("start the cluster (ray start --head --port=6379 on the head node) or fix --ray-address "
            "(HOST:6379, or ray://HOST:10001 for Ray Client); leave --ray-address out to run in this process")


class BatchTask(Protocol[T, R]):
    """Work on a chunk of items. ``setup`` runs once per worker (opens the model); the task is pickled
    to Ray's workers before ``setup``, so it holds only what pickles (bytes, paths, store settings)."""

    def setup(self) -> None: ...

    def __call__(self, chunk: list[T]) -> list[R]: ...


class LocalEngine:
    """Runs every chunk in this process, one after another: the default, and the reference results."""

    name = "local"

    def __init__(self, chunk_size: int = CHUNK_SIZE) -> None:
        self.chunk_size = _positive(chunk_size, "chunk size")
        self.workers = 1

    def map(self, task: BatchTask[T, R], items: Sequence[T]) -> list[R]:
        """The task's results for ``items``, in their order."""
        if not items:
            return []
        task.setup()
        return [result for chunk in chunks(items, self.chunk_size) for result in task(chunk)]

    def describe(self) -> dict[str, Any]:
        return {"engine": self.name, "workers": self.workers, "chunk_size": self.chunk_size}

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> LocalEngine:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class RayEngine:
    """Runs chunks on ``workers`` Ray actors: on the cluster at ``address``, on a Ray already started in
    this process (tests), or on a local instance it starts (``workers`` CPUs) and stops on ``close``.

    On a cluster the workers read images from the workspace's blob store themselves, so the store must
    be reachable from every node (S3, or a folder mounted at the same path), and inspectloop installed.
    """

    name = "ray"

    def __init__(self, address: str | None = None, *, workers: int | None = None, chunk_size: int = CHUNK_SIZE,
                 object_store_mb: int | None = None) -> None:
        self.chunk_size = _positive(chunk_size, "chunk size")
        self.address = address
        self._ray = require("ray", "ray")
        if address is not None:
            check_reachable(address)
        self._started = not self._ray.is_initialized()
        if self._started:
            self._init(address, workers, object_store_mb)
        available = int(self._ray.cluster_resources().get("CPU", 1))
        self.workers = _positive(workers, "worker count") if workers is not None else max(1, available)

    def _init(self, address: str | None, workers: int | None, object_store_mb: int | None) -> None:
        options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                   "logging_level": logging.WARNING}
        if address is None:  # a local instance sized to the work, not to the machine
            options["num_cpus"] = workers
            if object_store_mb:
                options["object_store_memory"] = object_store_mb * 1024 * 1024
        try:
            self._ray.init(address=address, **options)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = address or "a local instance"
            raise BatchError(f"cannot start Ray on {where}: {_first_line(exc)}", RAY_HINT) from None

    def map(self, task: BatchTask[T, R], items: Sequence[T]) -> list[R]:
        """The task's results for ``items``, in their order (identical to :class:`LocalEngine`'s)."""
        if not items:
            return []
        ray = self._ray
        from ray.util import ActorPool

        parts = chunks(items, self.chunk_size)
        worker_class = ray.remote(num_cpus=1)(_Worker)
        actors = [worker_class.remote(task) for _ in range(min(self.workers, len(parts)))]
        try:
            results = ActorPool(actors).map(lambda actor, chunk: actor.run.remote(chunk), parts)
            return [result for chunk_results in results for result in chunk_results]
        except ray.exceptions.RayTaskError as exc:  # the worker's own error, as this process would raise it
            if isinstance(exc.cause, InspectloopError):
                raise exc.cause from None
            raise
        finally:
            for actor in actors:
                ray.kill(actor)

    def describe(self) -> dict[str, Any]:
        return {"engine": self.name, "workers": self.workers, "chunk_size": self.chunk_size,
                "address": self.address or "local"}

    def close(self) -> None:
        """Stop the local instance this engine started (a cluster, or a Ray started by others, stays up)."""
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()

    def __enter__(self) -> RayEngine:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class _Worker(Generic[T, R]):
    """One Ray actor: the task set up once, then run on chunk after chunk."""

    def __init__(self, task: BatchTask[T, R]) -> None:
        task.setup()
        self.task = task

    def run(self, chunk: list[T]) -> list[R]:
        return self.task(chunk)


Engine = LocalEngine | RayEngine


def open_engine(*, ray: bool = False, ray_address: str | None = None, workers: int | None = None,
                chunk_size: int = CHUNK_SIZE) -> Engine:
    """This process (default); Ray when ``ray`` (a local instance of ``workers`` CPUs) or ``ray_address``."""
    if ray_address is None and not ray:
        if workers not in (None, 1):
            raise BatchError(f"{workers} workers need Ray; this process is one worker",
                             "add --ray (a local Ray instance) or --ray-address HOST:PORT (a cluster)")
        return LocalEngine(chunk_size)
    return RayEngine(ray_address, workers=workers, chunk_size=chunk_size)


def check_reachable(address: str) -> None:
    """BatchError (the address and the fix) unless something listens at a Ray address; ``auto`` is Ray's to find."""
    if address == "auto":
        return
    host, port = _host_port(address)
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise BatchError(f"cannot reach the Ray cluster at {address}: {reason}", RAY_HINT) from None


def _host_port(address: str) -> tuple[str, int]:
    client = address.startswith("ray://")
    rest = address.removeprefix("ray://").rstrip("/")
    host, _, port = rest.rpartition(":") if ":" in rest else (rest, "", "")
    if not host or (port and not port.isdigit()):
        raise BatchError(f"{address!r} is not a Ray address", "use HOST:6379 or ray://HOST:10001")
    return host.strip("[]"), int(port) if port else (CLIENT_PORT if client else GCS_PORT)


def chunks(items: Sequence[T], size: int) -> list[list[T]]:
    """``items`` cut into lists of ``size`` (the last one shorter)."""
    return [list(items[i:i + size]) for i in range(0, len(items), size)]


def _positive(value: int, what: str) -> int:
    if type(value) is not int or value < 1:
        raise BatchError(f"the {what} must be a whole number of at least 1, got {value!r}", f"give a {what} >= 1")
    return value


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
