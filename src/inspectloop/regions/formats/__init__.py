"""Annotation file formats, one module each: ``read`` into drawn regions, ``write`` an export folder."""

from __future__ import annotations

from types import ModuleType

from inspectloop.errors import LabelError
from inspectloop.regions.formats import coco, cvat, labelstudio, masks, voc, yolo
from inspectloop.regions.formats.base import Drawn, ExportImage, Format, Parsed, Problem

FORMATS: dict[str, ModuleType] = {m.NAME: m for m in (coco, voc, yolo, cvat, labelstudio, masks)}


def get_format(name: str) -> ModuleType:
    """The format module named ``name``; LabelError naming the known ones otherwise."""
    if name not in FORMATS:
        raise LabelError(f"unknown annotation format {name!r}", f"use one of: {', '.join(FORMATS)}")
    return FORMATS[name]


__all__ = ["FORMATS", "Drawn", "ExportImage", "Format", "Parsed", "Problem", "get_format"]
