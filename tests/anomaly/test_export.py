"""An anomaly model exports to one ONNX file (backbone, bank, search) that the edge runtime serves."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from inspectloop.anomaly.fit import PatchCoreModel, metadata_for
from inspectloop.anomaly.threshold import fit_threshold
from inspectloop.errors import ExportError, ModelTaskError
from inspectloop.export import export_anomaly
from inspectloop.runtime import EdgeModel
from inspectloop.runtime.decision import Decision
from tests.anomaly.conftest import SIZE, surface


@pytest.fixture(scope="module")
def exported(fitted: PatchCoreModel, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, PatchCoreModel]:
    threshold = fit_threshold(fitted.image_scores([surface(600 + i) for i in range(30)]), false_reject_target=0.1,
                              confidence=0.9, guarantee="marginal")
    fitted.with_normalisation(threshold.threshold, threshold.scale)
    meta = metadata_for(fitted, model_name="line 3", model_version="v1", review=threshold.review(0.01),
                        colour_mode="L")
    path = tmp_path_factory.mktemp("anomaly") / "model.onnx"
    report = export_anomaly(fitted.module, meta, path, [surface(700), surface(701), surface(702, defect=True)])
    assert report.images_checked == 3 and report.max_abs_diff < 1e-3 and report.top1_agreement == 1.0
    return path, fitted


def test_the_edge_gives_the_torch_score_heatmap_and_decision(exported: tuple[Path, PatchCoreModel]) -> None:
    path, model = exported
    edge = EdgeModel(path)
    assert edge.task == "anomaly" and edge.metadata.class_names == ("good", "anomaly")
    images = [surface(800), surface(801, defect=True)]
    scores, heatmaps = model.score(images)
    for image, score, heatmap, expected in zip(images, scores, heatmaps, (Decision.PASS, Decision.REJECT)):
        prediction = edge.predict(image)
        assert prediction.anomaly_score == pytest.approx(float(score), rel=1e-4)
        assert prediction.regions is not None and prediction.regions.image_size == (SIZE, SIZE)
        assert np.allclose(prediction.regions.heatmap, heatmap, atol=1e-3 * float(scores.max()))
        assert prediction.decision == expected and set(prediction.scores) == {"good", "anomaly"}
        assert prediction.to_dict()["anomaly_score"] == prediction.anomaly_score
    assert np.allclose(edge.heatmap(images[1]), heatmaps[1], atol=1e-3 * float(scores.max()))


def test_the_file_gives_the_embedding_drift_reads(exported: tuple[Path, PatchCoreModel]) -> None:
    """The image's patch features averaged over its patches, from the same forward pass as its score."""
    import torch

    path, model = exported
    edge = EdgeModel(path)
    image = surface(802)
    prediction, features = edge.predict_with_features(image)
    with torch.no_grad():
        expected = model.module(torch.from_numpy(model.preprocess(image)))[3][0].numpy()
    assert edge.has_features and features is not None and features.shape == expected.shape == (152,)
    assert np.allclose(features, expected, atol=1e-4 * float(np.abs(expected).max()))
    assert prediction.anomaly_score == edge.predict(image).anomaly_score


def test_a_file_from_before_the_features_output_still_serves(exported: tuple[Path, PatchCoreModel],
                                                              tmp_path: Path) -> None:
    """Anomaly files exported before embedding drift have three outputs: they predict as before, without features."""
    import onnx

    from tests.runtime.helpers import stamp

    path, _ = exported
    proto = onnx.load(path)
    kept = [o for o in proto.graph.output if o.name != "features"]
    del proto.graph.output[:]
    proto.graph.output.extend(kept)
    older = tmp_path / "older.onnx"
    older.write_bytes(stamp(proto.SerializeToString(), EdgeModel(path).metadata))
    edge = EdgeModel(older)
    prediction, features = edge.predict_with_features(surface(803))
    assert not edge.has_features and features is None
    assert prediction.anomaly_score == pytest.approx(EdgeModel(path).predict(surface(803)).anomaly_score, rel=1e-6)


def test_an_anomaly_model_asked_for_class_probabilities_says_what_it_offers(
        exported: tuple[Path, PatchCoreModel]) -> None:
    edge = EdgeModel(exported[0])
    with pytest.raises(ModelTaskError, match="anomaly score and a heatmap, not class probabilities"):
        edge.predict_array(np.zeros((1, 3, SIZE, SIZE), np.float32))


def test_export_refuses_classifier_metadata(exported: tuple[Path, PatchCoreModel], tmp_path: Path) -> None:
    path, model = exported
    meta = dataclasses.replace(EdgeModel(path).metadata, task="classification")
    with pytest.raises(ExportError, match="anomaly models"):
        export_anomaly(model.module, meta, tmp_path / "x.onnx", [surface(1)])
    assert not (tmp_path / "x.onnx").exists()


def test_a_tall_input_keeps_its_shape_from_fit_to_the_edge(tmp_path: Path) -> None:
    """Long parts are not squashed to a square: the shape travels in the saved model, the file and the edge."""
    from PIL import Image

    from inspectloop.anomaly import PatchCoreConfig, fit_patchcore

    def tall(seed: int, defect: bool = False) -> Image.Image:  # a 50 x 150 part: two square surfaces stacked
        image = Image.new("L", (SIZE, 3 * SIZE))
        for row in range(3):
            image.paste(surface(3 * seed + row, defect=defect and row == 1), (0, row * SIZE))
        return image.resize((50, 150))

    config = PatchCoreConfig(input_size=64, input_height=192, stride=8, coreset_ratio=0.1, chunk_images=5,
                             threads=1)
    model = fit_patchcore([tall(i) for i in range(10)], config)
    model.save(tmp_path / "bank.npz")
    model = PatchCoreModel.load(tmp_path / "bank.npz")
    images = [tall(50), tall(51, defect=True)]
    scores, heatmaps = model.score(images)
    assert heatmaps.shape == (2, 192, 64) and scores[1] > scores[0]
    meta = metadata_for(model, model_name="tall", model_version="v1", colour_mode="L")
    export_anomaly(model.module, meta, tmp_path / "tall.onnx", images)
    edge = EdgeModel(tmp_path / "tall.onnx")
    assert edge.metadata.input_height == 192 and edge.preprocess.shape == (192, 64)
    prediction = edge.predict(images[1])
    assert prediction.anomaly_score == pytest.approx(float(scores[1]), rel=1e-4)
    assert prediction.regions is not None and prediction.regions.heatmap.shape == (192, 64)
    assert np.allclose(prediction.regions.heatmap, heatmaps[1], atol=1e-3 * float(scores.max()))


@pytest.mark.parametrize("stride", [16, 32])
def test_deep_blocks_score_on_the_patch_grid_from_fit_to_the_edge(stride: int, tmp_path: Path) -> None:
    """Blocks 14 and 15 (stride 32) are upsampled to the stride-8 grid, pooled to the patch grid, saved, exported."""
    import torch

    from inspectloop.anomaly import PatchCoreConfig, fit_patchcore

    config = PatchCoreConfig(input_size=64, input_height=128, stages=(14, 15), stride=stride, coreset_ratio=0.2,
                             chunk_images=5, threads=1)
    model = fit_patchcore([surface(i, size=128).resize((64, 128)) for i in range(10)], config)
    assert model.bank.shape[1] == 192 + 320
    model.save(tmp_path / "bank.npz")
    model = PatchCoreModel.load(tmp_path / "bank.npz")
    assert model.config.stages == (14, 15)
    images = [surface(60, size=128).resize((64, 128)), surface(61, size=128, defect=True).resize((64, 128))]
    with torch.no_grad():
        grid = model.module.patch_scores(torch.from_numpy(np.stack([model.preprocess(i)[0] for i in images])))
    assert grid.shape == (2, 128 // stride, 64 // stride)
    scores, heatmaps = model.score(images)
    report = export_anomaly(model.module, metadata_for(model, model_name="deep", model_version="v1", colour_mode="L"),
                            tmp_path / "deep.onnx", images)
    assert report.max_abs_diff < 1e-3 * float(scores.max()) and report.top1_agreement == 1.0
    prediction = EdgeModel(tmp_path / "deep.onnx").predict(images[1])
    assert prediction.anomaly_score == pytest.approx(float(scores[1]), rel=1e-4)
    assert prediction.regions is not None and prediction.regions.heatmap.shape == (128, 64)
