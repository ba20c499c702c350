"""Shared fixtures: small synthetic images in every mode a camera might write, and broken files."""

from __future__ import annotations

import io
import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Tests run models on onnxruntime, the reference every parity check compares against: with the openvino extra
# installed, ``auto`` would compile and parity-check OpenVINO at every model load (0.3-0.9 s each). Set for the
# whole session, so processes the tests start (services, Ray workers) run the same backend as the tests.
os.environ.setdefault("INSPECTLOOP_EDGE_BACKEND", "onnxruntime")

SHARED_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
NEU = SHARED_DATASETS / "neu_det" / "images"


def link_neu_subset(root: Path, classes: tuple[str, ...], per_class: int) -> Path:
    """The first ``per_class`` NEU images of each class, linked into a folder-per-class tree at ``root``."""
    for name in classes:
        (root / name).mkdir(parents=True)
        for path in sorted((NEU / name).glob("*.jpg"))[:per_class]:
            (root / name / path.name).symlink_to(path)
    return root


@pytest.fixture(autouse=True)
def backend_choice(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The backend tests, and tests marked ``openvino``, choose for themselves (see EDGE_BACKEND above)."""
    if request.node.get_closest_marker("openvino") is not None or request.node.path.name == "test_backends.py":
        monkeypatch.delenv("INSPECTLOOP_EDGE_BACKEND", raising=False)


@pytest.fixture(scope="session")
def neu_probe_run(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 (tests.acceptance_helpers.TrainedNeu)
    """A workspace of 2 NEU classes x 20 images with criteria locked, then one quick probe run trained (once)."""
    if not NEU.is_dir():
        pytest.skip(f"real datasets not found at {NEU}")
    from tests.acceptance_helpers import train_neu_probe

    trained = train_neu_probe(tmp_path_factory.mktemp("neu-accept"))
    yield trained
    trained.workspace.close()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A real PostgreSQL server for the session (pgserver's embedded binaries, so no system install is needed);
    yields the URL of its maintenance database. Skips only when it cannot start here."""
    try:
        import pgserver  # type: ignore[import-untyped]  # noqa: F401
        import psycopg  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"PostgreSQL tests need pgserver and psycopg (pip install -e '.[dev]'): {exc}")
    from tests.postgres_helpers import embedded_postgres

    # The kill -9 tests kill the service, never this server: it can run without fsync.
    with ExitStack() as stack:
        try:
            url = stack.enter_context(embedded_postgres(fsync=False))
        except Exception as exc:  # noqa: BLE001 (whatever stops the server from starting is the skip reason)
            pytest.skip(f"could not start an embedded PostgreSQL server: {type(exc).__name__}: {exc}")
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty workspace database: a SQLite file, then (a second run of the test) a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    from tests.postgres_helpers import drop_postgres_database, new_postgres_database

    server = request.getfixturevalue("postgres_server")
    url = new_postgres_database(server)
    yield url
    drop_postgres_database(server, url)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[dict[str, str]]:
    """A real S3-compatible server (moto's server mode, on a local port) for the session; yields the fsspec
    options that reach it. Skips only when moto or s3fs is not installed."""
    try:
        import s3fs  # type: ignore[import-untyped]  # noqa: F401
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        pytest.skip(f"S3 tests need moto[server] and s3fs (pip install -e '.[dev]'): {exc}")
    with socket.socket() as sock:  # a free port on loopback
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield {"endpoint_url": f"http://127.0.0.1:{port}", "key": "testing", "secret": "testing"}
    server.stop()


@pytest.fixture
def s3_bucket(s3_server: dict[str, str]) -> str:
    """A new, empty bucket on the session's S3 server; its name."""
    import s3fs

    name = f"ws-{uuid.uuid4().hex[:12]}"
    s3fs.S3FileSystem(**s3_server).mkdir(name)
    return name


def surface(seed: int, size: int = 64, defect: bool = False) -> np.ndarray:
    """A noisy grey surface; a defect is a dark bar across it."""
    rng = np.random.default_rng(seed)
    pixels = rng.normal(128, 12, (size, size))
    if defect:
        row = rng.integers(8, size - 8)
        pixels[row:row + 3, 4:-4] -= 70
    return np.clip(pixels, 0, 255).astype(np.uint8)


def save(image: Image.Image, path: Path, **kwargs: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kwargs)
    return path


@pytest.fixture
def class_tree(tmp_path: Path) -> Path:
    """good/ and scratch/ folders, 6 images each, in several formats and modes."""
    root = tmp_path / "tree"
    for label, defect in (("good", False), ("scratch", True)):
        for i in range(6):
            pixels = surface(i + (100 if defect else 0), defect=defect)
            if i % 3 == 0:
                save(Image.fromarray(pixels, "L"), root / label / f"{label}_{i}.png")
            elif i % 3 == 1:
                save(Image.fromarray(np.stack([pixels] * 3, -1), "RGB"), root / label / f"{label}_{i}.jpg", quality=95)
            else:
                save(Image.fromarray(pixels.astype(np.uint16) * 257), root / label / f"{label}_{i}.tif")
    return root


def jpeg_bytes(seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(surface(seed), "L").save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


@pytest.fixture
def broken_files(tmp_path: Path) -> dict[str, Path]:
    """One file per kind of bad input ingest must report and skip."""
    root = tmp_path / "broken" / "good"
    root.mkdir(parents=True)
    data = jpeg_bytes(7)
    files = {
        "truncated": root / "truncated.jpg",
        "corrupt": root / "corrupt.png",
        "not_image": root / "notes.txt",
        "empty": root / "empty.png",
        "tiny": root / "tiny.png",
        "float": root / "float.tif",
    }
    files["truncated"].write_bytes(data[: len(data) // 2])
    files["corrupt"].write_bytes(_garbled_png())
    files["not_image"].write_text("operator notes, not an image")
    files["empty"].write_bytes(b"")
    save(Image.fromarray(surface(1, size=8), "L"), files["tiny"])
    save(Image.fromarray(np.random.default_rng(0).random((32, 32)).astype(np.float32), "F"), files["float"])
    return files


def _garbled_png() -> bytes:
    """A PNG whose compressed pixel data is overwritten: header fine, zlib stream broken."""
    buffer = io.BytesIO()
    Image.fromarray(surface(5), "L").save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    start = data.index(b"IDAT") + 8
    data[start:start + 200] = bytes((i * 37) % 256 for i in range(200))
    return bytes(data)
