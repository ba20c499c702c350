"""The edge runtime: run an exported inspectloop model with numpy, Pillow and onnxruntime only.

Nothing here imports torch, SQLAlchemy, FastAPI or Typer, so a camera PC needs only the core install.
"""

from __future__ import annotations

from inspectloop.runtime.images import load_image
from inspectloop.runtime.metadata import ModelMetadata
from inspectloop.runtime.model import EdgeModel, Prediction, iter_predictions
from inspectloop.runtime.preprocess import Preprocess

__all__ = ["EdgeModel", "ModelMetadata", "Prediction", "Preprocess", "iter_predictions", "load_image"]
