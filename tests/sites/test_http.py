"""Sync over HTTP with a real ``inspectloop serve`` process as the centre."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from inspectloop import registry
from inspectloop.errors import SyncError
from inspectloop.keys import export_public_key
from inspectloop.people import add_user
from inspectloop.sites import init_site, sync_status
from inspectloop.sites.http import sync_http
from inspectloop.store import schema as s
from inspectloop.workspace import init_workspace, open_workspace
from tests.service_helpers import free_port, start_service
from tests.sites_helpers import SITE, make_pair, work_offline


def test_a_site_syncs_with_the_centres_service_and_an_untrusted_one_is_refused(tmp_path: Path) -> None:
    pair = make_pair(tmp_path)
    token = add_user(pair.central, "plant2-sync", "reviewer")
    central_root = pair.central.root
    pair.central.close()
    port = free_port()
    service = start_service(central_root, port, tmp_path / "serve.log")
    url = f"http://127.0.0.1:{port}"
    try:
        first = sync_http(pair.site, url, token)
        assert first.received_counts["models"] == ["line3-v1 (production)"]
        assert registry.production_model(pair.site) is not None

        work_offline(pair.site, tmp_path / "images", predictions=120, decisions=6)
        report = sync_http(pair.site, url, token)
        assert report.sent is not None and report.sent_counts["predictions"] == 120
        assert sync_status(pair.site).cursors["predictions"] == "120"  # confirmed in the same exchange
        assert not list((pair.site.root / "sync-exchange" / "up" / SITE).iterdir())
        assert sync_http(pair.site, url, token).sent is None

        rogue = init_workspace(tmp_path / "rogue", name="rogue")
        init_site(rogue, SITE, tmp_path, export_public_key(central_root, tmp_path / "c.pub.pem"), by="x")
        work_offline(rogue, tmp_path / "rogue-images", predictions=3, decisions=0)
        with pytest.raises(SyncError, match="refused: 403 .*which this workspace does not trust"):
            sync_http(rogue, url, token)
        with pytest.raises(SyncError, match="refused: 401"):
            sync_http(pair.site, url, "not-a-token")
    finally:
        service.terminate()
        service.wait(timeout=30)
    with pytest.raises(SyncError, match="cannot reach the centre .* the site keeps working offline"):
        sync_http(pair.site, url, token, timeout=2)

    central = open_workspace(central_root)
    with central.db.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(s.predictions)).scalar_one() == 120
    assert [e.peer for e in central.db.sync.log(action="refused")] == [SITE]
    central.close()
