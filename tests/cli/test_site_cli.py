"""``inspectloop site ...``: a centre and a site set up and synced from the command line; errors in one line."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from inspectloop.cli.app import app
from inspectloop.workspace import init_workspace
from tests.sites_helpers import SITE, make_central, work_offline

runner = CliRunner()


def invoke(*args: object) -> tuple[int, str, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def test_a_site_set_up_synced_and_audited_from_the_command_line(tmp_path: Path) -> None:
    central = make_central(tmp_path / "central")
    site = init_workspace(tmp_path / "site", name=SITE)
    exchange = tmp_path / "usb"
    exchange.mkdir()
    assert invoke("keys", "export", tmp_path / "central.pub.pem", "-w", central.root)[0] == 0
    assert invoke("keys", "export", tmp_path / "site.pub.pem", "-w", site.root)[0] == 0

    code, out, _ = invoke("site", "init", "-w", site.root, "--name", SITE, "--exchange", exchange,
                          "--central-key", tmp_path / "central.pub.pem", "--by", "tech")
    assert code == 0 and f"inspectloop site trust {SITE}" in out
    code, out, err = invoke("site", "receive", exchange, "-w", central.root)
    assert code == 0 and out == "" and err == ""
    code, _, err = invoke("site", "sync", "-w", site.root)  # the site is not trusted yet: its down bundle is not written
    assert code == 0
    assert invoke("site", "trust", SITE, tmp_path / "site.pub.pem", "-w", central.root, "--by", "qe")[0] == 0
    invoke("site", "receive", exchange, "-w", central.root)
    code, out, _ = invoke("site", "sync", "-w", site.root)
    assert code == 0 and "models line3-v1 (production)" in out

    work_offline(site, tmp_path / "images", predictions=40, decisions=4)
    code, out, _ = invoke("site", "sync", "-w", site.root, "--json")
    assert code == 0 and json.loads(out)["sent_counts"]["predictions"] == 40
    code, out, _ = invoke("site", "receive", exchange, "-w", central.root)
    assert code == 0 and "40 new predictions" in out and "4 new review_items" in out
    code, out, _ = invoke("site", "receive", exchange, "-w", central.root)
    assert code == 0 and "applied before, nothing to do" in out

    code, out, _ = invoke("site", "status", "-w", central.root, "--json")
    status = json.loads(out)
    assert status["site"] is None and status["received"][SITE]["predictions"] == 40
    assert [e["action"] for e in status["log"]][:2] == ["wrote", "applied"]
    code, out, _ = invoke("site", "status", "-w", site.root)
    assert code == 0 and f"site {SITE}" in out and "unconfirmed bundles" in out

    code, _, err = invoke("site", "sync", "-w", central.root)
    assert code == 1 and "is not set up as a site" in " ".join(err.split()) and "Traceback" not in err
    code, _, err = invoke("site", "trust", "other", tmp_path / "site.pub.pem", "-w", central.root)
    assert code == 1 and "already trusted with key" in " ".join(err.split()) and "fix:" in err
