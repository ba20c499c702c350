"""Two real workspaces, a centre and a site, syncing through an exchange folder: models down (signature
checked), a week's work up; idempotent, resumable after an interruption, auditable, untrusted sites refused."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from sqlalchemy import func, select

from inspectloop import registry
from inspectloop.domain import ClassDefinition
from inspectloop.labels import define_class
from inspectloop.errors import ModelFileError, SyncError
from inspectloop.keys import export_public_key
from inspectloop.sites import apply_up_bundle, init_site, receive, revoke_site, state_digests, sync, sync_status
from inspectloop.sites.central import UP
from inspectloop.store import now_iso
from inspectloop.store import schema as s
from inspectloop.workspace import Workspace, init_workspace, open_workspace
from tests.sites_helpers import (
    CLASSES, SITE, Pair, copy_sqlite_workspace, make_pair, receive_killed, work_offline,
)


@pytest.fixture(params=["sqlite", "postgresql"])
def databases(request: pytest.FixtureRequest) -> Iterator[tuple[str | None, str | None, str | None]]:
    """(centre database, site database, a spare one) URLs: None for SQLite files in the workspaces."""
    if request.param == "sqlite":
        yield None, None, None
        return
    from tests.postgres_helpers import drop_postgres_database, new_postgres_database

    server = request.getfixturevalue("postgres_server")
    urls = [new_postgres_database(server) for _ in range(3)]
    yield urls[0], urls[1], urls[2]
    for url in urls:
        drop_postgres_database(server, url)


def _count(workspace: Workspace, table: object, *where: object) -> int:
    with workspace.db.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())


def _synced_week(root: Path, databases: tuple[str | None, str | None, str | None], *, predictions: int = 600,
                 decisions: int = 30) -> Pair:
    """A pair that has synced once (the site has the centre's model), then a week of offline work at the site."""
    pair = make_pair(root, databases[0], databases[1])
    receive(pair.central, pair.exchange)  # writes the site's first down bundle
    sync(pair.site)
    work_offline(pair.site, root / "review-images", predictions=predictions, decisions=decisions)
    return pair


def test_a_site_takes_signed_models_down_and_sends_its_week_up(tmp_path: Path, databases: tuple) -> None:
    pair = _synced_week(tmp_path, databases)
    version = registry.production_model(pair.site)
    assert version is not None and version.name == "line3-v1"
    assert registry.verify_file(version, pair.site).state == "verified"  # the centre's key, trusted at init
    assert pair.site.db.criteria.get(name="line3") is not None
    assert pair.site.db.labels.class_names() == pair.central.db.labels.class_names()

    report = sync(pair.site)
    assert report.sent is not None and report.sent_counts["predictions"] == 600
    assert report.sent_counts["review_items"] == 30 and report.sent_counts["images"] == 30
    applied = receive(pair.central, pair.exchange)
    assert [a.status for a in applied] == ["done"]

    central = pair.central
    assert _count(central, s.predictions, s.predictions.c.request_id.like(f"{SITE}/%")) == 600
    production = registry.production_model(central)
    assert production is not None
    # the site ran the centre's file: its predictions name the centre's version
    assert _count(central, s.predictions, s.predictions.c.model_version_id == production.id) == 600
    decided = _count(central, s.review_items, s.review_items.c.status == "done")
    assert decided == 30 - 30 // 50 and _count(central, s.review_items, s.review_items.c.status == "skipped") == 30 // 50
    reviewer_labels = [a for a in central.db.labels.annotations() if a.annotator == "ana"]
    assert len(reviewer_labels) == decided
    assert all(central.blobs.exists(a.sha256) for a in reviewer_labels)  # the labelled images came with their bytes
    kinds = {row["kind"] for row in central.db.sync.summaries(SITE)}
    assert kinds == {"drift", "metrics"}
    metrics = central.db.sync.summaries(SITE, "metrics")
    assert sum(m["payload"]["predictions"] for m in metrics) == 600

    # the centre's confirmation comes down: the site's bundle leaves the exchange, nothing is sent again
    assert sync(pair.site).sent is None
    assert sync_status(pair.site).unconfirmed == []
    assert not list((pair.exchange / UP / SITE).iterdir())
    before, log = state_digests(central), len(central.db.sync.log())
    assert receive(central, pair.exchange) == [] and sync(pair.site).sent is None
    assert state_digests(central) == before and len(central.db.sync.log()) == log  # re-running changes nothing


def test_more_work_after_a_sync_sends_only_what_is_new(tmp_path: Path) -> None:
    pair = _synced_week(tmp_path, (None, None, None), predictions=100, decisions=5)
    sync(pair.site)
    receive(pair.central, pair.exchange)
    sync(pair.site)  # takes the confirmation
    work_offline(pair.site, tmp_path / "more-images", predictions=50, decisions=3, seed=1)
    report = sync(pair.site)
    assert report.sent_counts["predictions"] == 50 and report.sent_counts["review_items"] == 3
    work_offline(pair.site, tmp_path / "still-more-images", predictions=10, decisions=1, seed=2)
    newer = sync(pair.site)  # before the centre took the first: the newer bundle holds both and replaces it
    assert newer.sent_counts["predictions"] == 60 and newer.sent_counts["review_items"] == 4
    assert [p.name for p in (pair.exchange / UP / SITE).iterdir()] == [newer.sent.name]
    receive(pair.central, pair.exchange)
    assert _count(pair.central, s.predictions, s.predictions.c.request_id.like(f"{SITE}/%")) == 160
    assert _count(pair.central, s.review_items) == 9


def test_a_prediction_younger_than_a_minute_waits_for_the_next_sync(tmp_path: Path) -> None:
    pair = _synced_week(tmp_path, (None, None, None), predictions=30, decisions=2)
    with pair.site.db.engine.begin() as conn:  # as the service logs one now, while the sync runs
        row = dict(conn.execute(select(s.predictions).order_by(s.predictions.c.id.desc())).first()._mapping)
        conn.execute(s.predictions.insert().values({**row, "id": None, "request_id": "req-now",
                                                    "received_at": now_iso()}))
    report = sync(pair.site)
    assert report.sent_counts["predictions"] == 30
    receive(pair.central, pair.exchange)
    sync(pair.site)
    assert sync_status(pair.site).cursors["predictions"] == "30"  # not past the young one, whatever its id


def test_an_interrupted_apply_resumed_leaves_what_an_uninterrupted_one_leaves(tmp_path: Path,
                                                                             databases: tuple) -> None:
    pair = _synced_week(tmp_path, databases)
    bundle = sync(pair.site, batch=100).sent  # 600 predictions in 6 batches, then the rest
    assert bundle is not None
    twin = _clone_centre(pair.central, tmp_path / "twin", databases[2])

    assert apply_up_bundle(pair.central, bundle, SITE).status == "done"
    batches: list[str] = []

    def power_cut(member: dict) -> None:
        batches.append(member["name"])
        if len(batches) == 4:  # classes, images, two batches of predictions committed
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        apply_up_bundle(twin, bundle, SITE, after_batch=power_cut)
    cut = twin.db.sync.log(status="interrupted")
    assert len(cut) == 1 and cut[0].counts["records"]["predictions"]["new"] == 200
    assert _count(twin, s.predictions, s.predictions.c.request_id.like(f"{SITE}/%")) == 200
    with_ids = databases[0] is None  # PostgreSQL spends sequence numbers on the rolled-back batch
    assert state_digests(twin, with_ids=with_ids) != state_digests(pair.central, with_ids=with_ids)

    resumed = apply_up_bundle(twin, bundle, SITE)
    assert resumed.status == "done" and resumed.counts["predictions"] == {"new": 400, "known": 200, "updated": 0}
    assert state_digests(twin, with_ids=with_ids) == state_digests(pair.central, with_ids=with_ids)
    assert apply_up_bundle(twin, bundle, SITE).status == "already"
    twin.close()


def test_a_receive_killed_with_sigkill_and_run_again_leaves_what_one_uninterrupted_receive_leaves(
        tmp_path: Path) -> None:
    pair = _synced_week(tmp_path, (None, None, None), predictions=3000, decisions=10)
    assert sync(pair.site, batch=100).sent is not None
    twin_root = copy_sqlite_workspace(pair.central, tmp_path / "twin")
    receive(pair.central, pair.exchange)

    committed = receive_killed(twin_root, pair.exchange, 300)  # a real process, killed between two batches
    assert 300 <= committed < 3000
    twin = open_workspace(twin_root)
    assert [r.status for r in receive(twin, pair.exchange)] == ["done"]
    assert state_digests(twin) == state_digests(pair.central)
    assert [e.status for e in twin.db.sync.log(action="applied")] == ["done", "interrupted"]
    twin.close()


def _clone_centre(central: Workspace, destination: Path, spare_url: str | None) -> Workspace:
    """A second centre in the same state: its folder copied, and its PostgreSQL database copied into the spare."""
    central.db.engine.dispose()
    shutil.copytree(central.root, destination)
    if spare_url is not None:
        import psycopg
        from sqlalchemy import make_url

        source = make_url(central.config.database)
        admin = source.set(database="postgres", drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {make_url(spare_url).database}")
            conn.execute(f"CREATE DATABASE {make_url(spare_url).database} TEMPLATE {source.database}")
        config = destination / "inspectloop.yaml"
        config.write_text(yaml.safe_dump({**yaml.safe_load(config.read_text()), "database": spare_url},
                                         sort_keys=False))
    return open_workspace(destination)


def test_a_site_the_centre_does_not_trust_is_refused_and_logged(tmp_path: Path) -> None:
    pair = _synced_week(tmp_path, (None, None, None), predictions=20, decisions=2)
    rogue = init_workspace(tmp_path / "rogue", name="rogue")
    central_key = export_public_key(pair.central.root, tmp_path / "c.pub.pem")
    init_site(rogue, SITE, pair.exchange, central_key, by="someone")  # claims to be the trusted site
    for name in CLASSES:
        define_class(rogue, ClassDefinition(name=name, is_good=name == "good"))
    work_offline(rogue, tmp_path / "rogue-images", predictions=10, decisions=1)
    sent = sync(rogue).sent
    assert sent is not None
    before = state_digests(pair.central)

    results = receive(pair.central, pair.exchange)
    assert [r.status for r in results] == ["refused"]
    assert "does not trust" in (results[0].message or "")
    assert state_digests(pair.central) == before
    refused = pair.central.db.sync.log(action="refused")
    assert len(refused) == 1 and refused[0].peer == SITE and refused[0].key_id != pair.central.db.sync.peer(
        name=SITE).key_id
    receive(pair.central, pair.exchange)
    assert len(pair.central.db.sync.log(action="refused")) == 1  # the same file is refused again, logged once

    sent.unlink()
    revoke_site(pair.central, SITE)  # the real site, revoked, is refused too
    assert sync(pair.site).sent is not None
    assert [r.status for r in receive(pair.central, pair.exchange)] == ["refused"]
    assert state_digests(pair.central) == before


def test_a_model_not_signed_by_the_centre_is_refused_at_the_site(tmp_path: Path) -> None:
    from tests.registry_helpers import add_run_with_model

    pair = make_pair(tmp_path)
    add_run_with_model(pair.central, "run-2")  # unsigned, as exported before signing existed
    unsigned = registry.register(pair.central, "run-2", name="line3-v2")
    registry.promote(pair.central, unsigned, "shadow", actor="qe")
    receive(pair.central, pair.exchange)
    report = sync(pair.site)
    assert report.received_counts["models"] == ["line3-v1 (production)"]
    assert report.received_counts["refused_models"] == [
        "line3-v2: model version line3-v2 from the centre: model file is not signed, and only models signed by a "
        f"trusted key may run here (trusted: {pair.site.db.sync.peer(name='central').key_id})"]
    assert [v.name for v in pair.site.db.registry.list()] == ["line3-v1"]


def test_a_bundle_changed_in_transit_is_refused_with_one_line(tmp_path: Path) -> None:
    pair = _synced_week(tmp_path, (None, None, None), predictions=20, decisions=2)
    bundle = sync(pair.site).sent
    assert bundle is not None
    data = bytearray(bundle.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bundle.write_bytes(bytes(data))
    results = receive(pair.central, pair.exchange)
    assert [r.status for r in results] == ["refused"] and "does not match the digest in its name" in str(results[0].message)
    assert pair.central.db.sync.log(action="applied") == []
    assert [e.bundle for e in pair.central.db.sync.log(action="refused")] == [bundle.name]


def test_two_processes_applying_one_bundle_at_once_add_each_record_once(tmp_path: Path, databases: tuple) -> None:
    pair = _synced_week(tmp_path, databases, predictions=300, decisions=20)
    bundle = sync(pair.site, batch=50).sent
    assert bundle is not None
    other = open_workspace(pair.central.root)  # a second engine: the service beside a site receive
    with ThreadPoolExecutor(2) as pool:
        statuses = [f.result().status for f in [pool.submit(apply_up_bundle, ws, bundle, SITE)
                                                for ws in (pair.central, other)]]
    assert sorted(statuses) in (["already", "done"], ["done", "done"])
    assert _count(pair.central, s.annotations, s.annotations.c.annotator == "ana") == 20 - 20 // 50
    assert _count(pair.central, s.review_items) == 20
    assert _count(pair.central, s.predictions) == 300
    other.close()


def test_sync_without_the_exchange_folder_says_so_and_the_site_keeps_working(tmp_path: Path) -> None:
    pair = make_pair(tmp_path)
    shutil.rmtree(pair.exchange)
    with pytest.raises(SyncError, match="not there: nothing was synced"):
        sync(pair.site)
    with pytest.raises(SyncError, match="not set up as a site"):
        sync(pair.central)


def test_a_site_key_refuses_a_model_signed_by_another_centre(tmp_path: Path) -> None:
    pair = make_pair(tmp_path)
    receive(pair.central, pair.exchange)
    sync(pair.site)
    version = registry.production_model(pair.site)
    assert version is not None
    (pair.site.root / "keys" / "trusted").joinpath(next((pair.site.root / "keys" / "trusted").iterdir()).name).unlink()
    with pytest.raises(ModelFileError, match="not trusted here"):
        registry.verify_file(version, pair.site)
