"""The edge runtime: run an exported inspectloop model with numpy, Pillow and onnxruntime only.

Nothing here imports torch, SQLAlchemy, FastAPI or Typer, so a camera PC needs only the core install.
Every model yields a :class:`Prediction` (image-level scores per class, optional regions), and one
:class:`DecisionPolicy` turns scores into a :class:`Decision`: pass, reject or review.
"""

from __future__ import annotations

from inspectloop.runtime.decision import Decision, DecisionPolicy, Decisions, threshold_array
from inspectloop.runtime.images import load_image
from inspectloop.runtime.metadata import ModelMetadata
from inspectloop.runtime.model import EdgeModel, iter_predictions
from inspectloop.runtime.prediction import Prediction
from inspectloop.runtime.preprocess import Preprocess
from inspectloop.runtime.regions import Regions

__all__ = ["Decision", "DecisionPolicy", "Decisions", "EdgeModel", "ModelMetadata", "Prediction", "Preprocess",
           "Regions", "iter_predictions", "load_image", "threshold_array"]
