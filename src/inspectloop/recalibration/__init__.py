"""Recalibration cycle building blocks: stratified sampling of production and the per-class comparison
with the accepted baseline. Pure (numpy and the standard library); no database, no model.
"""

from inspectloop.recalibration.comparison import (
    ClassComparison,
    Comparison,
    compare_to_baseline,
    labels_needed,
)
from inspectloop.recalibration.sampling import (
    RecalibrationError,
    allocate,
    stratified_sample,
)

__all__ = ["ClassComparison", "Comparison", "RecalibrationError", "allocate", "compare_to_baseline",
           "labels_needed", "stratified_sample"]
