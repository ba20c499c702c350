"""The CLI's shared table: wraps between words, never cuts one, whatever the console's width."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from inspectloop.cli import common

ROW = ["run-20261202-115650-abcd", "v12-a-long-dataset-version", "/plant/line3/models/model-int8.onnx"]


def printed(monkeypatch: pytest.MonkeyPatch, width: int, rows: list[list[str]]) -> str:
    stream = io.StringIO()
    monkeypatch.setattr(common, "out", Console(file=stream, width=width))
    common.table("runs", ["run", "dataset", "model"], rows)
    return stream.getvalue()


def test_a_table_wider_than_the_console_keeps_every_word_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    text = printed(monkeypatch, 40, [ROW])
    assert all(word in text for word in ROW) and "…" not in text


def test_a_table_that_fits_stays_within_the_console(monkeypatch: pytest.MonkeyPatch) -> None:
    text = printed(monkeypatch, 60, [["run-1 and some words that wrap between them", "v1", "m.onnx"]])
    assert max(len(line) for line in text.splitlines()) <= 60 and "…" not in text and "wrap" in text
