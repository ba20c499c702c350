"""Each task's model says what it offers when asked for what it does not (torch-free)."""

from __future__ import annotations

import pytest

from inspectloop.errors import ModelTaskError
from inspectloop.runtime import EdgeModel
from tests.runtime.helpers import TINY, TINY_FEATURES, synthetic_image


@pytest.mark.parametrize("path, offers", [(TINY, "class probabilities, not a heatmap"),
                                          (TINY_FEATURES, "class probabilities and features, not a heatmap")])
def test_a_heatmap_requested_from_a_classifier_says_what_the_model_offers(path, offers: str) -> None:  # noqa: ANN001
    model = EdgeModel(path)
    with pytest.raises(ModelTaskError, match=offers):
        model.heatmap(synthetic_image("good", 0))
    with pytest.raises(ModelTaskError, match="not anomaly scores"):
        model.anomaly_outputs(model.preprocess(synthetic_image("good", 0)))
    assert model.predict(synthetic_image("good", 0)).anomaly_score is None
