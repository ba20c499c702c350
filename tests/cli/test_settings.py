"""``--set KEY=VALUE`` and the explicit config options: read from the config classes, refused in one line."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from inspectloop.cli.app import TRAIN_SETTINGS
from inspectloop.cli.service_commands import SERVE_SETTINGS
from inspectloop.cli.settings import config_fields
from inspectloop.errors import ServiceError, TrainingError
from inspectloop.serve.service import ServiceConfig
from inspectloop.train.config import TrainConfig
from tests.cli.test_app import invoke


@pytest.mark.parametrize("settings, given, expected", [
    ([], {}, {}),
    (["alpha=0.02", "guarantee=marginal", "confidence=0.95"], {},
     {"alpha": 0.02, "guarantee": "marginal", "confidence": 0.95}),
    (["recall_targets=scratch:0.99, pit:0.97"], {}, {"recall_targets": {"scratch": 0.99, "pit": 0.97}}),
    (['recall_targets={"scratch": 0.99}'], {}, {"recall_targets": {"scratch": 0.99}}),
    (["flips=false", "batch-size=8", "lr=3e-4"], {}, {"flips": False, "batch_size": 8, "lr": 3e-4}),
    ([], {"mode": "probe", "epochs": 3, "input_size": None}, {"mode": "probe", "epochs": 3}),
])
def test_train_settings_become_a_train_config(settings: list[str], given: dict[str, Any],
                                              expected: dict[str, Any]) -> None:
    config = TRAIN_SETTINGS.build(settings, **given)
    assert config == TrainConfig(**expected)
    assert config.model_fields_set == set(expected)  # what was given is explicit: the criteria may not override it


@pytest.mark.parametrize("settings, given, expected", [
    (["cameras=cam1,cam2", "threads=2", "poll_seconds=0.5"], {},
     {"cameras": ("cam1", "cam2"), "threads": 2, "poll_seconds": 0.5}),
    (["model_file=none", "max_upload_mb=5"], {"model": Path("m.onnx")}, None),
    (["shadow=line3-v2"], {"model": Path("m.onnx"), "camera": ("a",), "sample_rate": 0.2},
     {"shadow": "line3-v2", "model_file": Path("m.onnx"), "cameras": ("a",), "sample_rate": 0.2}),
])
def test_serve_settings_become_a_service_config(settings: list[str], given: dict[str, Any],
                                                expected: dict[str, Any] | None) -> None:
    if expected is None:
        with pytest.raises(ServiceError, match="model_file is given twice"):
            SERVE_SETTINGS.build(settings, **given)
        return
    assert SERVE_SETTINGS.build(settings, **given) == ServiceConfig(**expected)


@pytest.mark.parametrize("options, settings, message", [
    (TRAIN_SETTINGS, ["epoch=3"], "--set epoch=3: 'epoch' is not a setting (did you mean epochs?); the settings are: "
                                  "backbone, input_size, mode, epochs,"),
    (TRAIN_SETTINGS, ["epochs"], "bad --set 'epochs': write KEY=VALUE"),
    (TRAIN_SETTINGS, ["epochs=abc"], "bad --set epochs=abc: epochs expects an integer, got 'abc'"),
    (TRAIN_SETTINGS, ["flips=maybe"], "flips expects true or false, got 'maybe'"),
    (TRAIN_SETTINGS, ["guarantee=strong"], "guarantee expects one of 'pac', 'marginal', got 'strong'"),
    (TRAIN_SETTINGS, ["recall_targets=scratch"],
     "recall_targets expects KEY:VALUE pairs separated by commas, each value a number, got 'scratch'"),
    (TRAIN_SETTINGS, ["alpha=0.9"], "bad --set alpha=0.9: alpha must be <= 0.5 (a number), got 0.9"),
    (TRAIN_SETTINGS, ["patch_blocks=10,4"], "bad --set patch_blocks=10,4: patch_blocks must be increasing block "
                                            "numbers from 0 to 15 (EfficientNet-Lite0's blocks), e.g. 4,10 or "
                                            "14,15, got 10,4"),
    (TRAIN_SETTINGS, ["patch_blocks=deep"], "patch_blocks expects integers separated by commas, got 'deep'"),
    (TRAIN_SETTINGS, ["head_blend=0.5", "head_refit=false"],
     "these settings do not go together (--set head_blend=0.5, --set head_refit=false): head_blend blends the "
     "fine-tuned head into the refitted one"),
    (TRAIN_SETTINGS, ["epochs=3", "epochs=4"], "epochs is given twice (--set epochs=3 and --set epochs=4)"),
    (SERVE_SETTINGS, ["thread=2"], "'thread' is not a setting (did you mean threads?); the settings are: model_file,"),
    (SERVE_SETTINGS, ["threads=0"], "threads and workers must be at least 1, got 0"),
    (SERVE_SETTINGS, ["sample_rate=lots"], "sample_rate expects a number, got 'lots'"),
])
def test_a_bad_setting_names_the_field_the_type_and_the_value(options: Any, settings: list[str], message: str) -> None:
    with pytest.raises((TrainingError, ServiceError)) as info:
        options.build(settings)
    assert message in info.value.message
    assert info.value.hint


def test_the_settings_are_the_config_classes_own_fields() -> None:
    assert list(config_fields(TrainConfig)) == list(TrainConfig.model_fields)
    assert config_fields(TrainConfig)["alpha"].default == TrainConfig().alpha
    assert config_fields(ServiceConfig)["sample_rate"].default == ServiceConfig().sample_rate
    assert all(field.help for field in config_fields(ServiceConfig).values())
    assert all(field.help for field in config_fields(TrainConfig).values())


def test_train_help_lists_every_setting_with_its_default() -> None:
    code, out, _ = invoke("train", "--help")
    text = re.sub(r"[\s│]+", " ", out)
    assert code == 0
    for name, field in config_fields(TrainConfig).items():
        assert f"{name}={field.default_text}" in text, name
    assert "alpha=0.01" in text and "guarantee=pac" in text and "recall_targets=none" in text
    assert "passes over the training split [default: 15]" in text  # --epochs: help and default from TrainConfig


def test_serve_help_lists_every_setting_with_its_default() -> None:
    code, out, _ = invoke("serve", "--help")
    text = re.sub(r"[\s│]+", " ", out)
    assert code == 0 and "max_upload_mb=20" in text and "poll_seconds=2" in text
    assert "share of images kept for recalibration [default: 0.05]" in text


@pytest.mark.parametrize("args, message", [
    (("--set", "epoch=3"), "'epoch' is not a setting (did you mean epochs?); the settings are: backbone,"),
    (("--set", "alpha=much"), "bad --set alpha=much: alpha expects a number, got 'much'"),
    (("--epochs", "3", "--set", "epochs=4"), "epochs is given twice (--epochs and --set epochs=4)"),
    (("--mode", "fast"), "bad --mode: mode expects one of 'finetune', 'probe', got 'fast'"),
    (("--epochs", "0"), "bad --epochs: epochs must be >= 1 (an integer), got 0"),
])
def test_train_refuses_a_bad_setting_in_one_line(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    invoke("init", tmp_path / "ws")
    code, out, err = invoke("train", "-w", tmp_path / "ws", *args)
    assert code == 1 and "Traceback" not in out + err
    assert message in re.sub(r"\s+", " ", err)
    assert err.count("error:") == 1 and err.count("fix:") == 1  # one message and its fix
