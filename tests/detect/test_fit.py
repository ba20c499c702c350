"""The detector's loop: a time budget that stops between epochs and keeps the best, bf16 and channels-last
arithmetic, and a resumed run whose training time counts every part."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from inspectloop.detect.data import Frame, make_frame
from inspectloop.detect import fit as fit_module
from inspectloop.detect.fit import FitSettings, fit_detector
from inspectloop.detect.model import build_detector
from inspectloop.runtime.preprocess import Preprocess

SIZE = 64


def _frames(count: int) -> list[Frame]:
    rng = np.random.default_rng(0)
    frames = []
    for i in range(count):
        image = Image.new("L", (SIZE, SIZE), 110)
        x, y = int(rng.integers(4, 40)), int(rng.integers(4, 40))
        ImageDraw.Draw(image).rectangle((x, y, x + 15, y + 15), fill=240)
        frames.append(make_frame(image.convert("RGB"), np.array([[x, y, x + 16, y + 16]]), np.array([0]), f"f{i}", SIZE))
    return frames


def _settings(**changes: object) -> FitSettings:
    base = {"input_size": SIZE, "epochs": 4, "batch_size": 4, "lr": 1e-3, "weight_decay": 1e-4, "freeze_blocks": 0,
            "augment": "none", "flips": False, "seed": 0, "tile_overlap": 16, "nms_iou": 0.5}
    return FitSettings(**{**base, **changes})  # type: ignore[arg-type]


def _fit(tmp_path: Path, **changes: object):  # noqa: ANN202 (DetectorTraining)
    torch.manual_seed(0)
    model = build_detector(1, input_size=SIZE, pretrained=False)
    frames = _frames(8)
    return fit_detector(model, frames, frames[:4], Preprocess(SIZE, (0.5,) * 3, (0.25,) * 3), _settings(**changes),
                        ["scratch"], tmp_path / "checkpoint.pt")


def test_a_time_budget_stops_between_epochs_and_resuming_counts_every_part(tmp_path: Path) -> None:
    stopped = _fit(tmp_path, max_minutes=1e-9)  # spent at once: one step (a run always takes one), one epoch
    assert stopped.stopped_at_budget and len(stopped.history) == 1 and stopped.best_epoch == 0
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=False)["step"] == 1
    first = stopped.seconds
    assert first > 0
    resumed = _fit(tmp_path)  # no budget: the rest of the epochs, from the checkpoint
    assert resumed.resumed_from == 0 and not resumed.stopped_at_budget
    assert [r["epoch"] for r in resumed.history] == [0, 1, 2, 3]
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=False)["step"] == 1 + 3 * 2  # 8 frames, batches of 4
    assert resumed.seconds > first and resumed.history[0]["seconds"] == pytest.approx(first, abs=0.1)


def test_bf16_channels_last_training_gives_a_usable_float_model(tmp_path: Path) -> None:
    result = _fit(tmp_path, epochs=2, precision="bf16", channels_last=True)
    assert all(torch.isfinite(p).all() for p in result.model.state_dict().values() if p.is_floating_point())
    assert all(p.is_contiguous() for p in result.model.parameters())  # back in the layout the export traces
    boxes, scores = result.model.eval()(torch.zeros(1, 3, SIZE, SIZE))
    assert boxes.dtype == scores.dtype == torch.float32


def test_with_a_weight_average_the_kept_model_is_the_average_and_resuming_restores_it(tmp_path: Path) -> None:
    torch.manual_seed(0)
    frames = _frames(8)
    whole = fit_detector(build_detector(1, input_size=SIZE, pretrained=False), frames, [],  # no val: the last epoch
                         Preprocess(SIZE, (0.5,) * 3, (0.25,) * 3), _settings(ema=True, epochs=3), ["scratch"],
                         tmp_path / "checkpoint.pt")
    checkpoint = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    averaged = {k.removeprefix("module."): v for k, v in checkpoint["average"].items() if k.startswith("module.")}
    kept = whole.model.state_dict()
    assert whole.best_epoch == 2 and all(torch.equal(kept[k], averaged[k]) for k in kept)  # the average is kept
    assert any(not torch.equal(averaged[k], checkpoint["model"][k]) for k in averaged  # not the last step's weights
               if averaged[k].is_floating_point())
    _fit(tmp_path / "cut", ema=True, epochs=3, max_minutes=1e-9)  # one step, then a resume does the rest
    resumed = _fit(tmp_path / "cut", ema=True, epochs=3)
    assert resumed.resumed_from == 0 and len(resumed.history) == 3
    restored = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=False)["average"]["n_averaged"]
    assert int(restored) == 1 + 2 * 2  # the cut run's step, then two epochs of two: the average went on


def test_mosaic_views_train_and_stop_for_the_end_of_the_schedule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[int] = []
    real = fit_module.mosaic

    def counted(views, rng):  # noqa: ANN001, ANN202 (as detect.augment.mosaic)
        made.append(len(views))
        return real(views, rng)

    monkeypatch.setattr(fit_module, "mosaic", counted)
    result = _fit(tmp_path, mosaic=1.0, augment="production", epochs=8)
    assert made and set(made) == {4} and all(np.isfinite(r["loss"]) for r in result.history)
    steps = 8 * 2  # 8 epochs of 8 frames in batches of 4: every view a mosaic until 85% of the steps, then none
    assert len(made) == 4 * sum(step / steps < fit_module.MOSAIC_CLOSE for step in range(steps))
