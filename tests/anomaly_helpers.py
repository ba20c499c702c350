"""An anomaly model file for loop tests (shadow, drift, recalibration): fitted on the line's good parts.

The line's images are ``tests.runtime.helpers.synthetic_image``: noisy grey surfaces; a scratch is a bright
bar (an anomaly), a dark part is underexposed (which the model's per-image standardisation forgives).
"""

from __future__ import annotations

import functools
import tempfile
from dataclasses import replace
from pathlib import Path

from PIL import Image, ImageFilter

from tests.runtime.helpers import synthetic_image
from tests.service_helpers import Line


@functools.cache
def anomaly_model_bytes() -> bytes:
    """A tiny anomaly model (64 px, stride 8) of the line's good parts, exported as training exports it."""
    from inspectloop.anomaly import PatchCoreConfig, fit_patchcore
    from inspectloop.anomaly.fit import metadata_for
    from inspectloop.anomaly.threshold import fit_threshold
    from inspectloop.export import export_anomaly

    config = PatchCoreConfig(input_size=64, stride=8, coreset_ratio=0.1, chunk_images=6, threads=1)
    model = fit_patchcore([synthetic_image("good", 90_000 + i) for i in range(12)], config)
    held = model.image_scores([synthetic_image("good", 91_000 + i) for i in range(30)])
    threshold = fit_threshold(held, false_reject_target=0.05, confidence=0.9, guarantee="marginal")
    model.with_normalisation(threshold.threshold, threshold.scale)
    metadata = metadata_for(model, model_name="line3 anomaly", model_version="a1", review=threshold.review(0.01),
                            colour_mode="L")
    with tempfile.TemporaryDirectory() as folder:
        parity = [synthetic_image("good", 92_000), synthetic_image("scratch", 92_001)]
        return export_anomaly(model.module, metadata, Path(folder) / "anomaly.onnx", parity).path.read_bytes()


def anomaly_line(root: Path) -> Line:
    """The monitored line (``tests.monitoring_helpers``) with the anomaly model in production instead of the
    tiny CNN: its frozen test split has cameras, and ``log_predictions`` logs the anomaly model's answers."""
    from inspectloop.registry import promote
    from tests.monitoring_helpers import frozen_test_split
    from tests.service_helpers import add_version, line_workspace

    line = line_workspace(root)
    version = add_version(line.workspace, "run-anomaly", anomaly_model_bytes())
    line = replace(line, production=promote(line.workspace, version, "production", actor="ana", reason="test",
                                            override=True))
    frozen_test_split(line)
    return line


def softer(image: Image.Image) -> Image.Image:
    """A lens out of focus (Gaussian blur, radius 0.5 px): the good parts' anomaly scores rise."""
    return image.filter(ImageFilter.GaussianBlur(0.5))
