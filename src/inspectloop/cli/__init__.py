"""The ``inspectloop`` command line: parse, call one library function, present. Nothing else lives here."""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from inspectloop.cli.app import app
    except ImportError as exc:  # an edge install has no CLI extras
        print(f"error: the inspectloop CLI needs '{exc.name}' (fix: pip install 'inspectloop[app]'); "
              "on an edge device use: python -m inspectloop.runtime MODEL IMAGE...", file=sys.stderr)
        raise SystemExit(2) from None
    app()
