"""Optional dependencies: one helper imports them, and a missing one is one line naming the extra."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from inspectloop.errors import MissingExtraError, missing_extra, require
from inspectloop.store.database import make_engine

SRC = Path(__file__).resolve().parents[1] / "src" / "inspectloop"


def test_require_returns_the_module_or_names_the_extra() -> None:
    assert require("json", "app").dumps([]) == "[]"
    with pytest.raises(MissingExtraError) as caught:
        require("no_such_module_xyz", "train", package="no-such-package")
    assert caught.value.hint == "pip install 'inspectloop[train]'" and "no-such-package" in caught.value.message


@pytest.mark.parametrize("name, expected", [
    ("psycopg", "pip install 'inspectloop[postgres]'"), ("torch.nn", "pip install 'inspectloop[train]'"),
    ("uvicorn", "pip install 'inspectloop[serve]'"), ("multipart", "pip install 'inspectloop[serve]'"),
    ("some_unrelated_module", None),
])
def test_missing_extra_maps_known_packages_only(name: str, expected: str | None) -> None:
    error = missing_extra(ModuleNotFoundError(f"No module named {name!r}", name=name))
    assert (error.hint if error else None) == expected


def test_every_optional_import_goes_through_the_one_helper() -> None:
    allowed = {SRC / "errors.py", SRC / "cli" / "__init__.py",  # the helper; the CLI's own entry point
               SRC / "runtime" / "signing.py"}  # cryptography is a core dependency, not an extra: its own message
    offenders = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
                 if p not in allowed and re.search(r"except \(?(ImportError|ModuleNotFoundError)", p.read_text())
                 and "missing_extra(" not in p.read_text()]  # catching is fine when it names the extra
    assert offenders == []


def test_a_postgresql_url_without_its_driver_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if not installed: importing it raises ImportError
    with pytest.raises(MissingExtraError, match="psycopg"):
        make_engine("postgresql://inspector@localhost/plant")
    from inspectloop.cli.app import app
    from inspectloop.workspace import init_workspace

    init_workspace(tmp_path / "ws").close()
    config = tmp_path / "ws" / "inspectloop.yaml"
    config.write_text(re.sub(r"database: .*", "database: postgresql://inspector@localhost/plant", config.read_text()))
    result = CliRunner().invoke(app, ["labels", "-w", str(tmp_path / "ws")])
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    assert "fix: pip install 'inspectloop[postgres]'" in result.stderr
