"""Training configuration: the decision settings a run's locked criteria fix, and where each came from."""

from __future__ import annotations

import pytest

from inspectloop.accept.criteria import AcceptanceCriteria
from inspectloop.train.config import TrainConfig, decision_settings

DEFECTS = ("scratch", "pit")


def line3(**fields: object) -> AcceptanceCriteria:
    classes = {"good": {"min_recall": 0.98}, "scratch": {"min_recall": 0.95}, "pit": {"min_precision": 0.8}}
    return AcceptanceCriteria.model_validate({"name": "line3", "classes": classes, **fields})


def values(config: TrainConfig) -> tuple[object, ...]:
    return config.alpha, config.guarantee, config.confidence, config.recall_targets


def test_without_criteria_the_config_decides() -> None:
    config = TrainConfig(alpha=0.05, guarantee="marginal", recall_targets={"pit": 0.9})
    settings = decision_settings(config, None, DEFECTS)
    assert values(settings.apply(config)) == (0.05, "marginal", 0.9, {"pit": 0.9})
    assert settings.alpha.source == "run config" and settings.confidence.source == "default"
    assert settings.looser == {}


def test_the_criteria_fix_what_the_config_leaves_at_its_defaults() -> None:
    criteria = line3(max_escape_rate=0.02, guarantee="marginal", confidence=0.95)
    settings = decision_settings(TrainConfig(epochs=3), criteria, DEFECTS)
    assert values(settings.apply(TrainConfig())) == (0.02, "marginal", 0.95, {"scratch": 0.95})  # good: no target
    assert settings.alpha.source == "criteria 'line3' max_escape_rate"
    assert settings.recall_targets["scratch"].source == "criteria 'line3' classes.scratch.min_recall"
    assert "other defect classes their severity's default" in settings.describe()


def test_without_an_escape_bound_the_criteria_leave_the_band_to_the_config() -> None:
    settings = decision_settings(TrainConfig(guarantee="marginal"), line3(), DEFECTS)
    assert (settings.alpha.value, settings.guarantee.value) == (0.01, "marginal")
    assert settings.recall_targets["scratch"].value == 0.95  # recall targets still come from the criteria


@pytest.mark.parametrize("explicit, looser", [
    ({"alpha": 0.01}, []),  # a margin below the criteria's 2 %
    ({"alpha": 0.02}, []),
    ({"alpha": 0.05}, ["alpha"]),
    ({"guarantee": "marginal"}, ["guarantee"]),
    ({"confidence": 0.99}, []),
    ({"confidence": 0.8}, ["confidence"]),
    ({"recall_targets": {"scratch": 0.99, "pit": 0.5}}, []),  # pit: the criteria give it no recall
    ({"recall_targets": {"scratch": 0.9}}, ["recall_targets.scratch"]),
])
def test_a_run_may_be_stricter_than_its_criteria_never_looser(explicit: dict[str, object], looser: list[str]) -> None:
    config = TrainConfig(**explicit)  # type: ignore[arg-type]
    settings = decision_settings(config, line3(max_escape_rate=0.02), DEFECTS)
    assert list(settings.looser) == looser
    for name, setting in settings.looser.items():
        assert "looser than criteria 'line3'" in setting.source, name
    kept = settings.apply(config)
    for key, value in explicit.items():
        assert getattr(kept, key) == value  # the run's own value is what it records


def test_a_non_square_input_is_an_anomaly_setting() -> None:
    assert TrainConfig(task="anomaly", input_height=576).input_height == 576
    with pytest.raises(ValueError, match="input_height .* applies to anomaly models"):
        TrainConfig(input_height=576)


def test_the_anomaly_defaults_are_the_models() -> None:
    """A run with no anomaly settings fits what PatchCoreConfig() fits (one default, two places to read it)."""
    from inspectloop.anomaly import PatchCoreConfig
    from inspectloop.anomaly.run import patchcore_config

    config = TrainConfig(task="anomaly", input_size=256)
    assert patchcore_config(config) == PatchCoreConfig(input_size=256, seed=config.seed, threads=config.threads)


def test_head_blend_needs_a_refitted_fine_tune() -> None:
    assert TrainConfig(head_blend=0.5).head_blend == 0.5  # fine-tuning with the refit is the default
    for other in ({"head_refit": False}, {"mode": "probe"}):
        with pytest.raises(ValueError, match="head_blend blends the fine-tuned head into the refitted one"):
            TrainConfig(head_blend=0.5, **other)
    with pytest.raises(ValueError):
        TrainConfig(head_blend=1.5)


def test_the_larger_backbone_serves_classifiers_and_detectors_not_anomaly_models() -> None:
    for task in ("classification", "detect"):
        assert TrainConfig(task=task, backbone="efficientnet-lite2").backbone == "efficientnet-lite2"
    with pytest.raises(ValueError, match="use backbone=efficientnet-lite0 with task anomaly"):
        TrainConfig(task="anomaly", backbone="efficientnet-lite2")


def test_a_seed_outside_numpys_range_is_refused_before_training() -> None:
    for seed in (-1, 2**32):
        with pytest.raises(ValueError, match="seed"):
            TrainConfig(seed=seed)
    assert TrainConfig(seed=2**32 - 5, ensemble=5).seed == 2**32 - 5  # its last member draws from 2^32 - 1


def test_patch_blocks_name_the_backbones_blocks_in_order() -> None:
    from inspectloop.anomaly.run import patchcore_config

    config = TrainConfig(task="anomaly", patch_blocks=(14, 15))
    assert patchcore_config(config).stages == (14, 15)
    for bad in ((10, 4), (4, 4), (16,), (-1, 4)):
        with pytest.raises(ValueError, match="patch_blocks must be increasing block numbers from 0 to 15"):
            TrainConfig(task="anomaly", patch_blocks=bad)
