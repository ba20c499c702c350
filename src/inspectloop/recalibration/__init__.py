"""The recalibration cycle: stratified sampling of production and the per-class comparison with the
accepted baseline (pure: numpy and the standard library), and the cycle itself (``cycle.py``: the
workspace, the review queue, retraining, acceptance, shadow).
"""

from inspectloop.errors import RecalibrationError

from inspectloop.recalibration.comparison import (
    ClassComparison,
    Comparison,
    compare_to_baseline,
    default_retrain_on,
    labels_needed,
    retrain_reason,
)
from inspectloop.recalibration.sampling import (
    allocate,
    stratified_sample,
)

__all__ = ["ClassComparison", "Comparison", "RecalibrationError", "allocate", "compare_to_baseline",
           "default_retrain_on", "labels_needed", "retrain_reason", "stratified_sample"]
