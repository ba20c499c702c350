"""Progress of training runs: image loading, the duration estimate, epochs (with val macro recall, or a
detector's val mAP50), evaluation, export.

On a terminal: Rich bars. Otherwise (a log file, ``nohup``, a pipe): plain lines, one per epoch, never a redraw,
so that a log holds the run's progress and stays small.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from inspectloop.cli.common import err


class TrainingView:
    """``update(stage, info)`` receives a run's progress; bars on a terminal, plain lines otherwise."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or err
        self.live = self.console.is_terminal
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[note]}"), TimeElapsedColumn(), console=self.console)
        self.tasks: dict[str, TaskID] = {}
        self.said: set[str] = set()  # plain mode: stages already announced

    def __enter__(self) -> TrainingView:
        if self.live:
            self.bar.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.live:
            self.bar.stop()

    def update(self, stage: str, info: dict[str, Any]) -> None:
        """Show one progress event of a run (see :data:`inspectloop.train.run.Progress`)."""
        if stage in ("warning", "note", "estimate"):
            prefix = {"warning": "warning: ", "estimate": "training: "}.get(stage, "")
            self.console.print(f"{prefix}{info['message']}", highlight=False, soft_wrap=True)
        elif self.live:
            self._update_bars(stage, info)
        else:
            self._print_line(stage, info)

    def _update_bars(self, stage: str, info: dict[str, Any]) -> None:
        if stage == "load":
            self._set(f"load {info['split']}", info["done"], info["total"])
        elif stage == "epoch":
            note = f"loss {info['loss']:.3f}  {validation_text(info)}"
            self._set(_training_key(info), info["epoch"] + 1, info["epochs"], note)
        elif stage == "fit":  # anomaly models: images through the backbone into the memory bank
            self._set("fit memory bank", info["done"], info["total"])
        else:
            self._set(stage, 0, None)
            for key in list(self.tasks):
                if key != stage:
                    self.bar.update(self.tasks[key], completed=self.bar.tasks[self.tasks[key]].total)

    def _set(self, key: str, done: int, total: int | None, note: str = "") -> None:
        if key not in self.tasks:
            self.tasks[key] = self.bar.add_task(key, total=total, note=note)
        self.bar.update(self.tasks[key], completed=done, total=total, note=note)

    def _print_line(self, stage: str, info: dict[str, Any]) -> None:
        if stage == "epoch":
            self.console.print(epoch_line(info), highlight=False, soft_wrap=True)
        elif stage in ("load", "fit"):
            if info["done"] == info["total"]:  # one line when the step is done, not one per image
                what = f"loaded {info['split']}" if stage == "load" else "fitted the memory bank on"
                self.console.print(f"{what}: {info['total']} images", highlight=False)
        elif stage not in self.said:
            self.said.add(stage)
            self.console.print(f"{stage}...", highlight=False)


def epoch_line(info: dict[str, Any]) -> str:
    """One epoch as one plain line: "train epoch 3/15  loss 0.512  val macro recall 0.873  elapsed 0:03:12  about
    0:12:48 left" (the time left from the mean epoch so far)."""
    done, total = info["epoch"] + 1, info["epochs"]
    line = f"{_training_key(info)} epoch {done}/{total}  loss {info['loss']:.3f}  {validation_text(info)}"
    seconds = info.get("seconds")  # training seconds so far (every part of a resumed run); probe epochs have none
    if seconds is not None:
        line += f"  elapsed {clock(seconds)}  about {clock(seconds / done * (total - done))} left"
    return line


def validation_text(info: dict[str, Any]) -> str:
    """The epoch's validation figure: a classifier's macro recall, or a detector's mAP50 (none without
    validation frames)."""
    if "val_map50" in info:
        return "val mAP50 -" if info["val_map50"] is None else f"val mAP50 {info['val_map50']:.1f}"
    return f"val macro recall {info['val_macro_recall']:.3f}"


def clock(seconds: float) -> str:
    """Seconds as h:mm:ss."""
    whole = int(round(seconds))
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def _training_key(info: dict[str, Any]) -> str:
    return f"train fold {info['fold'] + 1}/{info['folds']}" if "fold" in info else "train"
