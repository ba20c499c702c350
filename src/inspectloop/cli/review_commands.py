"""``inspectloop review ...``: the review queue from the command line (the web pages do the reviewing)."""

from __future__ import annotations

from typing import Annotated

import typer

from inspectloop.cli.common import WorkspaceOpt, friendly, out, print_json, table, workspace

review_app = typer.Typer(help="The review queue: images waiting for a human decision.", no_args_is_help=True)


@review_app.command("backlog")
@friendly
def review_backlog(ws: WorkspaceOpt,
                   as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
                   ) -> None:
    """Count open review items by reason, with those being reviewed now, skipped and decided."""
    from inspectloop.review import backlog

    with workspace(ws) as w:
        queue = backlog(w)
    if as_json:
        print_json({"open": queue.open, "open_by_reason": queue.open_by_reason, "claimed": queue.claimed,
                    "skipped": queue.skipped, "done": queue.done})
        return
    rows: list[list[object]] = [[reason, count] for reason, count in queue.open_by_reason.items()]
    rows += [["open in all", queue.open], ["being reviewed now", queue.claimed],
             ["skipped (for a quality engineer)", queue.skipped], ["decided", queue.done]]
    table("review backlog", ["", "items"], rows)
    if queue.open:
        out.print("review them in a browser: inspectloop serve, then open /review", highlight=False)
