"""Anomaly models: learn from good parts only, score how far an image is from them, and say where.

Pure model code is :mod:`inspectloop.anomaly.model` (the PatchCore ``nn.Module``), fitting is
:mod:`inspectloop.anomaly.fit` (memory bank, bounded memory), the decision threshold from good images
is :mod:`inspectloop.anomaly.threshold`, and the workspace-bound training run is
:mod:`inspectloop.anomaly.run`. Importing this package imports no torch.
"""

from __future__ import annotations

from inspectloop.anomaly.fit import MIN_GOOD_IMAGES, PatchCoreConfig, PatchCoreModel, fit_patchcore

__all__ = ["MIN_GOOD_IMAGES", "PatchCoreConfig", "PatchCoreModel", "fit_patchcore"]
