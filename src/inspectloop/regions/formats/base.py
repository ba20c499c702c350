"""What every annotation format reads into and writes from.

A reader turns files into :class:`Drawn` regions (as the file gives them: an image named by file,
coordinates in pixels or as fractions of the image) and :class:`Problem` lines; it never touches a
workspace. Matching images, checking classes and clipping is ``inspectloop.regions.run``'s job. A
writer gets :class:`ExportImage` entries (a file name, the size, the regions) and writes files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from inspectloop.domain import Region
from inspectloop.domain.regions import DECIMALS
from inspectloop.errors import LabelError

Point = tuple[float, float]


@dataclass(frozen=True)
class Problem:
    """Something wrong in an annotation file, and what was done about it."""

    file: str
    message: str
    line: int | None = None  # 1-based line of the file, where the format has lines
    action: str = "skipped"  # skipped (the annotation) | clipped | dropped | file skipped

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.message} ({self.action})"

    def to_dict(self) -> dict[str, object]:
        return {"file": self.file, "line": self.line, "message": self.message, "action": self.action}


@dataclass(frozen=True)
class Drawn:
    """One region as a file states it. ``relative``: coordinates are fractions of the image's width/height."""

    image: str  # the image as the file names it: a path, a file name, or a stem
    class_name: str
    file: str
    box: tuple[float, float, float, float] | None = None  # x0, y0, x1, y1
    polygon: tuple[Point, ...] | None = None
    relative: bool = False
    line: int | None = None
    where: str = ""  # e.g. "object 3" when the format has no useful line numbers
    annotator: str | None = None  # when the format records who drew it
    image_size: tuple[int, int] | None = None  # (width, height) as the file declares it

    @property
    def place(self) -> str:
        return f"{self.where}: " if self.where else ""


@dataclass
class Parsed:
    """A reader's result: the regions, the problems, and the class names the files declare."""

    regions: list[Drawn] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    files: int = 0


@dataclass(frozen=True)
class ExportImage:
    """One image to write: its file name in the export, its size and its regions."""

    file_name: str
    width: int
    height: int
    regions: tuple[Region, ...]


class Format(Protocol):
    """A format module: ``read`` files, ``write`` an export folder."""

    NAME: str
    CARRIES_ANNOTATOR: bool  # whether one file can hold several annotators' regions apart
    HOLDS_POLYGONS: bool

    def read(self, path: Path, *, class_names: Sequence[str] = ()) -> Parsed: ...

    def write(self, folder: Path, images: Sequence[ExportImage], classes: Sequence[str]) -> list[Path]: ...


def number(value: float) -> str:
    """A coordinate as text: as short as it can be without losing a stored digit."""
    text = f"{value:.{DECIMALS}f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def fraction(value: float) -> str:
    """A normalised coordinate as text, precise enough that ``fraction * size`` gives the stored value back."""
    text = f"{value:.10f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def files_under(path: Path, suffix: str) -> list[Path]:
    """``path`` itself when it is a file, else every ``suffix`` file below it, sorted; refuses a missing path."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise LabelError(f"{path} does not exist", "give an annotation file or the folder that holds them")
    return sorted(p for p in path.rglob(f"*{suffix}") if p.is_file())


def display(path: Path, root: Path) -> str:
    """``path`` relative to the import's root, for messages."""
    try:
        return path.relative_to(root if root.is_dir() else root.parent).as_posix()
    except ValueError:
        return str(path)
