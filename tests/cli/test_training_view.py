"""Training progress: Rich bars on a terminal; one plain line per epoch in a log (nohup, > train.log)."""

from __future__ import annotations

import io
from typing import Any

import pytest
from rich.console import Console

from inspectloop.cli.training_view import TrainingView, clock, epoch_line

RUN: list[tuple[str, dict[str, Any]]] = [
    *[("load", {"split": "train", "done": n, "total": 40}) for n in range(1, 41)],
    *[("load", {"split": "val", "done": n, "total": 10}) for n in range(1, 11)],
    ("estimate", {"message": "about 3 minutes for 3 epochs (measured on 3 batches)"}),
    *[("epoch", {"epoch": e, "epochs": 3, "loss": 1.0 / (e + 1), "val_macro_recall": 0.5 + e / 10,
                 "seconds": 60.0 * (e + 1)}) for e in range(3)],
    ("note", {"message": "stopped at the time budget (3 minutes) after epoch 3 of 3"}),
    ("evaluate", {}), ("export", {}),
]


def shown(terminal: bool) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=terminal, width=100)
    with TrainingView(console) as view:
        for stage, info in RUN:
            view.update(stage, info)
    return buffer.getvalue()


def test_a_log_gets_one_plain_line_per_epoch_and_no_redraws() -> None:
    lines = shown(terminal=False).splitlines()
    assert lines == [
        "loaded train: 40 images",
        "loaded val: 10 images",
        "training: about 3 minutes for 3 epochs (measured on 3 batches)",
        "train epoch 1/3  loss 1.000  val macro recall 0.500  elapsed 0:01:00  about 0:02:00 left",
        "train epoch 2/3  loss 0.500  val macro recall 0.600  elapsed 0:02:00  about 0:01:00 left",
        "train epoch 3/3  loss 0.333  val macro recall 0.700  elapsed 0:03:00  about 0:00:00 left",
        "stopped at the time budget (3 minutes) after epoch 3 of 3",
        "evaluate...",
        "export...",
    ]


def test_a_terminal_gets_bars() -> None:
    text = shown(terminal=True)
    assert "\x1b[" in text and "train" in text and "3/3" in text  # Rich's control codes: a live display
    assert "training: about 3 minutes" in text


@pytest.mark.parametrize(("info", "expected"), [
    ({"epoch": 0, "epochs": 15, "loss": 0.5123, "val_macro_recall": 0.8734, "seconds": 86.0},
     "train epoch 1/15  loss 0.512  val macro recall 0.873  elapsed 0:01:26  about 0:20:04 left"),
    ({"epoch": 1, "epochs": 4, "loss": 0.5, "val_macro_recall": 0.9, "fold": 0, "folds": 5, "seconds": 10.0},
     "train fold 1/5 epoch 2/4  loss 0.500  val macro recall 0.900  elapsed 0:00:10  about 0:00:10 left"),
    ({"epoch": 24, "epochs": 150, "loss": 0.25, "val_macro_recall": 1.0},  # probe epochs carry no seconds
     "train epoch 25/150  loss 0.250  val macro recall 1.000"),
    ({"epoch": 2, "epochs": 40, "loss": 3.21, "cls": 2.9, "box": 0.31, "val_map50": 61.27, "seconds": 255.0},  # detector
     "train epoch 3/40  loss 3.210  val mAP50 61.3  elapsed 0:04:15  about 0:52:25 left"),
    ({"epoch": 0, "epochs": 2, "loss": 1.0, "val_map50": None, "seconds": 5.0},  # no validation frames
     "train epoch 1/2  loss 1.000  val mAP50 -  elapsed 0:00:05  about 0:00:05 left"),
])
def test_epoch_line(info: dict[str, Any], expected: str) -> None:
    assert epoch_line(info) == expected


def test_clock() -> None:
    assert [clock(s) for s in (0, 59.6, 3600 * 2 + 61)] == ["0:00:00", "0:01:00", "2:01:01"]
