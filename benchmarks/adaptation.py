"""Adapt before labels, measured: magnetic tile's held-out sessions before and after BatchNorm re-estimation.

    python -m benchmarks.adaptation [--reference 300]
    python -m benchmarks.adaptation --render      # -> adaptation_render.json

Two methods: ``absolute`` replaces each BatchNorm layer's statistics with the new images' own (AdaBN);
``relative`` moves them by the difference between the new images' statistics and those of training
images (300 from the training split, its natural class mix), estimated the same way.

The model is the split run of ``benchmarks.calibration`` (fine-tuned on sessions exp0-exp4, 192 px,
12 epochs, seed 0), reused from ``benchmarks/cache/calibration-magnetic_tile`` (trained there first when
missing: about 10 minutes). Its BatchNorm statistics are re-estimated on the *unlabelled* images of the
test sessions exp5 and exp6, and top-class decisions are scored before and after:

- ``disjoint_halves`` (the honest figure): the test images of a group are dealt into two halves by
  image hash (label-blind); the model adapted on one half is scored on the other, and both ways pooled,
  so no image is scored by a model that saw it.
- ``transductive``: adapted on every test image of the group and scored on the same images (labels
  unused, but the images are the ones scored: what a camera adapted on today's parts would see).

Groups: ``pooled`` (exp5 and exp6 together: "the new sessions") and ``per_session`` (each session its
own camera, as ``inspectloop adapt --camera`` would do). Figures: good tiles rejected (false rejects),
defect recall per class, defective tiles passed (escapes), macro recall. Decisions are the top class,
as in the magnetic-tile benchmark's figures.

``--render``: the product's default method instead (``inspectloop adapt --method render``): the held-out
half's condition read against 200 training images in their own pixels, every training image rendered under
it, and the head refitted as the probe fits it on the originals plus the renders. ``refit_only`` is its
control: the same head refit on the training images alone, so what rendering adds is told apart from what
the regularised head alone does. Written to ``adaptation_render.json``.
"""

from __future__ import annotations

import argparse
import copy
import time
from typing import Any

import numpy as np

from benchmarks.calibration import MT, run_once, workspace_for
from benchmarks.common import CITATIONS, write_result
from inspectloop.adapt.batchnorm import Statistics, adapt_batchnorm, batchnorm_statistics
from inspectloop.adapt.run import load_classifier, native_image, reference_images, render_and_refit
from inspectloop.datasets import load_version
from inspectloop.evaluate.groups import group_figures
from inspectloop.models.backbones import backbone_spec
from inspectloop.runtime.preprocess import Preprocess
from inspectloop.train.data import ImageSet, load_image_set
from inspectloop.train.loop import predict_logits
from inspectloop.train.record import colour_mode, good_index


# (method, weight, grouping, protocol): absolute = the images' own statistics replace the stored ones (AdaBN);
# relative = each layer moves by the difference between the images' statistics and the training images'.
VARIANTS = [("absolute", 1.0, "pooled", "disjoint_halves"),
            ("relative", 1.0, "pooled", "disjoint_halves"), ("relative", 1.0, "per_session", "disjoint_halves"),
            ("relative", 0.5, "pooled", "disjoint_halves"), ("relative", 1.0, "pooled", "transductive")]


def subset(images: ImageSet, index: np.ndarray) -> ImageSet:
    return images.take(index)


def halves(digests: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Label-blind halves: by the parity of the image hash's first byte."""
    odd = np.array([int(d[:2], 16) % 2 for d in digests], dtype=bool)
    return np.flatnonzero(~odd), np.flatnonzero(odd)


def adapted_predictions(model: Any, images: ImageSet, adapt_on: np.ndarray, score: np.ndarray, preprocess: Preprocess,
                        weight: float, reference: Statistics | None) -> np.ndarray:
    """Top-class predictions on ``score`` by a copy of ``model`` adapted on ``adapt_on``."""
    copied = copy.deepcopy(model)
    adapt_batchnorm(copied, [images.images[i] for i in adapt_on], preprocess, weight=weight,
                    reference_statistics=reference)
    return predict_logits(copied, subset(images, score), preprocess).argmax(1)


def variant(model: Any, test: ImageSet, groups: dict[str, np.ndarray], protocol: str, preprocess: Preprocess,
            weight: float, reference: Statistics | None) -> np.ndarray:
    """Predictions on every test image after adapting within each group, by ``protocol``."""
    predicted = np.full(len(test), -1)
    for index in groups.values():
        if protocol == "transductive":
            predicted[index] = adapted_predictions(model, test, index, index, preprocess, weight, reference)
            continue
        first, second = halves([test.digests[i] for i in index])
        for adapt_on, score in ((first, second), (second, first)):
            predicted[index[score]] = adapted_predictions(model, test, index[adapt_on], index[score], preprocess,
                                                          weight, reference)
    return predicted


class RenderAdapter:
    """Copies of the model with the head refitted on the training images plus their renders under the condition
    of the images it adapts on (``inspectloop adapt --method render``), or on the training images alone."""

    def __init__(self, ws: Any, run: Any, model: Any, preprocess: Preprocess) -> None:
        from inspectloop.runtime import EdgeModel

        self.ws, self.run, self.model, self.preprocess = ws, run, model, preprocess
        self.metadata = EdgeModel(ws.db.runs.models(run.id)[0].path, backend="onnxruntime").metadata
        self.references = reference_images(ws, run, 200, preprocess, self.metadata, native=True)
        self.conditions: list[dict[str, Any]] = []

    def predictions(self, test: ImageSet, adapt_on: np.ndarray | None, score: np.ndarray) -> np.ndarray:
        """Top-class predictions on ``score``; ``adapt_on`` None: the head refitted without renders."""
        from inspectloop.adapt.condition import CameraCondition
        from inspectloop.train.config import TrainConfig
        from inspectloop.train.data import load_image_set
        from inspectloop.train.loop import probe

        copied = copy.deepcopy(self.model)
        if adapt_on is None:
            version = load_version(self.ws, self.run.dataset_version)
            names, md = list(self.metadata.class_names), self.metadata
            load = lambda split: load_image_set(version.split(split), names, self.ws.blobs.get, self.preprocess,  # noqa: E731
                                                draft=md.jpeg_draft, mode=md.colour_mode)
            probe(copied, load("train"), load("val"), self.preprocess, TrainConfig.model_validate(self.run.config))
            self.conditions.append({"refit_only": CameraCondition().to_dict()})
        else:
            seen = [native_image(self.ws.blobs.get(test.digests[i]), test.digests[i][:12], self.preprocess,
                                 self.metadata) for i in adapt_on]
            change = render_and_refit(self.ws, self.run, copied, seen, self.references, self.preprocess,
                                      self.metadata, lambda _stage, _info: None)
            self.conditions.append(change["condition"])
        return predict_logits(copied, subset(test, score), self.preprocess).argmax(1)


def render_variant(adapter: RenderAdapter, test: ImageSet, groups: dict[str, np.ndarray]) -> np.ndarray:
    """Predictions on every test image, each scored by a model adapted on the other half of its group."""
    predicted = np.full(len(test), -1)
    for index in groups.values():
        first, second = halves([test.digests[i] for i in index])
        for adapt_on, score in ((first, second), (second, first)):
            predicted[index[score]] = adapter.predictions(test, index[adapt_on], index[score])
    return predicted


def summary(figures: Any, good: str) -> dict[str, Any]:
    data = figures.to_dict()
    defects = {k: v for k, v in data["per_class_recall"].items() if k != good}
    return {**data, "min_defect_recall": min(v for v in defects.values() if v is not None)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reference", type=int, default=300, help="training images the relative method compares "
                        "with (taken evenly from the training split, its natural class mix)")
    parser.add_argument("--render", action="store_true", help="measure the rendered-condition method instead "
                        "(adaptation_render.json)")
    args = parser.parse_args()
    ws = workspace_for("magnetic_tile", reuse=True)
    run_id, _ = run_once(ws, MT, "magnetic_tile/split")
    run = ws.db.runs.get(run_id)
    version = load_version(ws, run.dataset_version)
    names = list(version.class_names)
    good = good_index(ws, names)
    good = names.index("Free") if good is None else good
    spec = backbone_spec(MT.backbone)
    preprocess = Preprocess(MT.input_size, spec.mean, spec.std)
    items = version.split("test")
    test = load_image_set(items, names, ws.blobs.get, preprocess, mode=colour_mode(ws, version, MT))
    records = ws.db.images.get_many([item.sha256 for item in items])
    sessions = np.array([records[item.sha256].meta.session for item in items])
    groups = {"pooled": {"exp5+exp6": np.arange(len(items))},
              "per_session": {s: np.flatnonzero(sessions == s) for s in sorted(set(sessions))}}
    model = load_classifier(run, len(names))
    started = time.perf_counter()
    before = predict_logits(model, test, preprocess).argmax(1)
    result: dict[str, Any] = {"before": summary(group_figures(test.labels, before, names, good), names[good])}
    print(f"before: {fmt(result['before'])}", flush=True)
    if args.render:
        measure_render(ws, run, model, test, groups, preprocess, names, good, result, started)
        return
    train_items = version.split("train")
    chosen = train_items[:: max(1, len(train_items) // args.reference)][:args.reference]
    reference_images = load_image_set(chosen, names, ws.blobs.get, preprocess, mode=colour_mode(ws, version, MT)).images
    reference = batchnorm_statistics(model, reference_images, preprocess)
    for method, weight, grouping, protocol in VARIANTS:
        predicted = variant(model, test, groups[grouping], protocol, preprocess, weight,
                            reference if method == "relative" else None)
        key = f"{method}/{grouping}/{protocol}/weight={weight:g}"
        result[key] = summary(group_figures(test.labels, predicted, names, good), names[good])
        print(f"{key}: {fmt(result[key])}", flush=True)
    ws.close()
    write_result("adaptation", {
        "dataset": "magnetic_tile", "citation": CITATIONS["magnetic_tile"], "run_id": run_id,
        "model": "benchmarks.calibration split run: EfficientNet-Lite0 fine-tuned on exp0-exp4 (calib split held out), "
                 "192 px, 12 epochs, seed 0",
        "test": "sessions exp5+exp6 (318 good, 132 defective); top-class decisions",
        "methods": {"absolute": "BatchNorm running statistics replaced by those of the unlabelled test-session images "
                                "(AdaBN)",
                    "relative": f"each BatchNorm layer's statistics moved by the difference between the unlabelled "
                                f"test-session images' and {len(reference_images)} training images' (natural class mix)"},
        "weight": "share of the move applied (1 = all of it); every learned weight unchanged",
        "protocols": {"disjoint_halves": "adapt on one label-blind half (image-hash parity), score the other, both "
                                         "ways pooled", "transductive": "adapt on the images scored (labels unused)"},
        "groupings": {"pooled": "exp5 and exp6 adapted together", "per_session": "each session adapted on its own"},
        "seconds": round(time.perf_counter() - started, 1), "results": result})


def measure_render(ws: Any, run: Any, model: Any, test: ImageSet, groups: dict[str, dict[str, np.ndarray]],
                   preprocess: Preprocess, names: list[str], good: int, result: dict[str, Any], started: float) -> None:
    adapter = RenderAdapter(ws, run, model, preprocess)
    refit = adapter.predictions(test, None, np.arange(len(test)))
    result["refit_only"] = summary(group_figures(test.labels, refit, names, good), names[good])
    print(f"refit_only: {fmt(result['refit_only'])}", flush=True)
    for grouping in ("pooled", "per_session"):
        predicted = render_variant(adapter, test, groups[grouping])
        key = f"render/{grouping}/disjoint_halves"
        result[key] = summary(group_figures(test.labels, predicted, names, good), names[good])
        print(f"{key}: {fmt(result[key])}", flush=True)
    ws.close()
    write_result("adaptation_render", {
        "dataset": "magnetic_tile", "citation": CITATIONS["magnetic_tile"], "run_id": run.id,
        "model": "benchmarks.calibration split run: EfficientNet-Lite0 fine-tuned on exp0-exp4 (calib split held out), "
                 "192 px, 12 epochs, seed 0",
        "test": "sessions exp5+exp6 (318 good, 132 defective); top-class decisions",
        "methods": {"render": "the adapting half's condition (gain, offset, blur, noise, JPEG) read against 200 training "
                              "images in their own pixels; every training image rendered under it; the head refitted "
                              "as the probe fits it on the originals plus the renders",
                    "refit_only": "the same head refit on the training images alone (the control)"},
        "protocols": {"disjoint_halves": "adapt on one label-blind half (image-hash parity), score the other, both "
                                         "ways pooled"},
        "groupings": {"pooled": "exp5 and exp6 adapted together", "per_session": "each session adapted on its own"},
        "conditions": adapter.conditions, "seconds": round(time.perf_counter() - started, 1), "results": result})


def fmt(s: dict[str, Any]) -> str:
    return (f"good rejected {s['good_rejects']}/{s['good']} ({s['good_reject_rate']:.1%}), escapes "
            f"{s['escapes']}/{s['defective']}, macro recall {s['macro_recall']:.4f}, min defect recall "
            f"{s['min_defect_recall']:.3f}")


if __name__ == "__main__":
    main()
