"""Shared CLI plumbing: error translation, the workspace option, progress bars and tables."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from inspectloop.errors import InspectloopError, missing_extra
from inspectloop.workspace import Workspace, open_workspace

F = TypeVar("F", bound=Callable[..., Any])
err = Console(stderr=True)
out = Console()


def friendly(func: F) -> F:
    """Turn typed errors into one clear message on stderr and exit code 1; never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            try:
                return func(*args, **kwargs)
            except ImportError as exc:  # a lazy import of an optional package: name the extra
                raise (missing_extra(exc) or exc) from None
        except InspectloopError as exc:
            # soft_wrap: a long path stays on one line, so it can be copied (and grepped) whole
            err.print(f"[bold red]error:[/] {escape(exc.message)}", highlight=False, soft_wrap=True)
            if exc.hint:  # escaped: "pip install 'inspectloop[train]'" is not Rich markup
                err.print(f"  [bold]fix:[/] {escape(exc.hint)}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err.print("interrupted; finished steps are kept, nothing half-written is")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _default_workspace() -> Path:
    return Path(os.environ.get("INSPECTLOOP_WORKSPACE", "."))


WorkspaceOpt = Annotated[Path, typer.Option(
    "--workspace", "-w", default_factory=_default_workspace, show_default=False,
    help="Workspace folder (default: $INSPECTLOOP_WORKSPACE or the current folder).")]


# Heavy batch commands: one process by default, Ray on request (inspectloop.batch).
RayOpt = Annotated[bool, typer.Option("--ray", help="Run on a local Ray instance using this machine's cores.")]
RayAddressOpt = Annotated[str | None, typer.Option(
    "--ray-address", help="Run on a Ray cluster: HOST:6379, or ray://HOST:10001 (Ray Client). Implies --ray.")]
WorkersOpt = Annotated[int | None, typer.Option(help="Ray workers (default: every CPU of the instance or cluster).")]
TIME_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]
SinceOpt = Annotated[datetime, typer.Option(formats=TIME_FORMATS, help="Start of the period (UTC), e.g. 2026-01-01.")]
UntilOpt = Annotated[datetime | None, typer.Option(formats=TIME_FORMATS, help="End of the period (UTC; default: now).")]


def utc_iso(moment: datetime) -> str:
    """A time given without a zone is UTC, as the prediction log records."""
    return (moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)).isoformat()


@contextmanager
def batch_engine(ray: bool, ray_address: str | None, workers: int | None) -> Iterator[Any]:
    """The engine the options ask for, closed (a local Ray instance stopped) when the block ends."""
    from inspectloop.batch import open_engine

    engine = open_engine(ray=ray, ray_address=ray_address, workers=workers)
    try:
        yield engine
    finally:
        engine.close()


@contextmanager
def workspace(path: Path) -> Iterator[Workspace]:
    ws = open_workspace(path)
    try:
        yield ws
    finally:
        ws.close()


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    """A table that wraps cells between words but never cuts one: a run id, a version or a path that Rich
    shortened to "run-2026…" could not be copied into the next command."""
    cells = [["" if value is None else str(value) for value in row] for row in rows]
    view = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, collapse_padding=True)
    for index, column in enumerate(columns):
        view.add_column(column, min_width=max([len(word) for row in cells for word in row[index].split()], default=0))
    for row in cells:
        view.add_row(*row)
    needed = Measurement.get(out, out.options.update(max_width=sys.maxsize), view).minimum
    if needed <= out.width:
        out.print(view)
        return
    # Rich shrinks a table wider than the console below its columns' minimum widths, cutting words; print it
    # at the width it needs and let the terminal wrap the lines instead.
    Console(file=out.file, width=needed, color_system=out.color_system, force_terminal=out.is_terminal,
            no_color=out.no_color).print(view)


@contextmanager
def progress_bar(description: str) -> Iterator[Callable[[int, int], None]]:
    """A Rich progress bar; yields ``update(done, total)``."""
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=False) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None or value != value else f"{value:.{digits}f}"
