"""The layering DESIGN.md asks for, checked on the source: only the store touches the database, and
domain types come from the domain (services never import them from one another)."""

from __future__ import annotations

import ast
from pathlib import Path

import inspectloop
import inspectloop.domain as domain

SRC = Path(inspectloop.__file__).parent


def test_only_the_store_imports_sqlalchemy() -> None:
    offenders = []
    for path in SRC.rglob("*.py"):
        if "store" in path.relative_to(SRC).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.relative_to(SRC)}: {n}" for n in names if n.split(".")[0] == "sqlalchemy"]
    assert offenders == []


def test_domain_types_are_imported_from_the_domain_not_from_services() -> None:
    offenders = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("inspectloop.") and \
                    not (node.module or "").startswith("inspectloop.domain"):
                offenders += [f"{path.relative_to(SRC)}: {a.name} from {node.module}" for a in node.names
                              if a.name in domain.__all__]
    assert offenders == []
