"""Typed domain objects shared by the services, one module per concept. No I/O here.

Services import these types from ``inspectloop.domain``, never from another service; the store
returns them as its rows.
"""

from inspectloop.domain.acceptance import AcceptanceRecord, CriteriaRecord
from inspectloop.domain.base import FrozenModel
from inspectloop.domain.datasets import DatasetItem, DatasetVersion, DatasetVersionInfo, Split
from inspectloop.domain.images import (
    MAX_FIELD_CHARS, METADATA_FIELDS, CaptureMeta, ImageRecord, ImageSource, QualityStats,
)
from inspectloop.domain.labels import CLASS_NAME, GOOD_NAMES, Annotation, ClassDefinition, Severity, Task, looks_good
from inspectloop.domain.models import ModelFile, ModelVersion, Stage, StageChange, StageEvent, TrainingRun
from inspectloop.domain.monitoring import (
    Alert, CameraBaselineRecord, CameraCheckRecord, CycleRecord, DriftBaselineRecord, DriftCheck, MonitorRun,
)
from inspectloop.domain.people import Role, User, UserRecord
from inspectloop.domain.predictions import LoggedPrediction, ShadowComparison, ShadowResult
from inspectloop.domain.regions import REGION_SOURCES, Box, Polygon, Region
from inspectloop.domain.review import REASONS, Discrepancy, ReviewItem

__all__ = [
    "CLASS_NAME", "GOOD_NAMES", "MAX_FIELD_CHARS", "METADATA_FIELDS", "REASONS", "AcceptanceRecord", "Alert", "Annotation", "Box",
    "CameraBaselineRecord", "CameraCheckRecord", "CaptureMeta", "ClassDefinition", "CriteriaRecord", "CycleRecord",
    "DatasetItem", "DatasetVersion", "DatasetVersionInfo", "Discrepancy", "DriftBaselineRecord", "DriftCheck",
    "FrozenModel", "ImageRecord", "ImageSource", "LoggedPrediction", "ModelFile", "ModelVersion", "MonitorRun",
    "Polygon", "QualityStats", "REGION_SOURCES", "Region", "ReviewItem", "Role", "Severity", "ShadowComparison", "ShadowResult", "Split", "Stage",
    "StageChange", "StageEvent", "Task", "TrainingRun", "User", "UserRecord", "looks_good",
]
