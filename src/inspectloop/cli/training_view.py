"""Rich progress for training runs: image loading, epochs (with val macro recall), evaluation, export."""

from __future__ import annotations

from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from inspectloop.cli.common import err


class TrainingView:
    def __init__(self) -> None:
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[note]}"), TimeElapsedColumn(), console=err)
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self) -> TrainingView:
        self.bar.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.bar.stop()

    def update(self, stage: str, info: dict[str, Any]) -> None:
        if stage == "load":
            self._set(f"load {info['split']}", info["done"], info["total"])
        elif stage == "epoch":
            note = f"loss {info['loss']:.3f}  val macro recall {info['val_macro_recall']:.3f}"
            key = f"train fold {info['fold'] + 1}/{info['folds']}" if "fold" in info else "train"
            self._set(key, info["epoch"] + 1, info["epochs"], note)
        elif stage == "fit":  # anomaly models: images through the backbone into the memory bank
            self._set("fit memory bank", info["done"], info["total"])
        elif stage == "warning":
            self.bar.console.print(f"warning: {info['message']}", highlight=False)
        else:
            self._set(stage, 0, None)
            for key in list(self.tasks):
                if key != stage:
                    self.bar.update(self.tasks[key], completed=self.bar.tasks[self.tasks[key]].total)

    def _set(self, key: str, done: int, total: int | None, note: str = "") -> None:
        if key not in self.tasks:
            self.tasks[key] = self.bar.add_task(key, total=total, note=note)
        self.bar.update(self.tasks[key], completed=done, total=total, note=note)
