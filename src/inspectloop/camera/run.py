"""Camera health in the workspace: record a camera's baseline, check it, and flag its predictions.

The measurements are :mod:`inspectloop.camera.health`'s; this module reads the target captures from
files, keeps them in the blob store as evidence, stores baselines and checks, and acts on a failure:
the camera's predictions since its last good check are marked suspect, an alert is recorded, and the
inspection service marks the camera's new predictions suspect until a later check passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from inspectloop.camera import health
from inspectloop.domain import CameraBaselineRecord, CameraCheckRecord
from inspectloop.errors import CameraCheckError
from inspectloop.store import now_iso
from inspectloop.workspace import Workspace

ERROR = "error"  # a check that could not run; recorded, but it changes no camera's status


@dataclass(frozen=True)
class CameraCheck:
    """A stored camera check: the graded report, and how many predictions it marked suspect."""

    id: int
    camera: str
    report: health.CameraReport
    marked_suspect: int

    @property
    def status(self) -> str:
        return str(self.report.status)


def record_camera_baseline(workspace: Workspace, camera: str, *, flat: Path | None,
                           edge: Path | None) -> health.CameraBaseline:
    """Measure ``camera``'s flat-field and slanted-edge captures and store them as its baseline."""
    flat_image, flat_sha = _capture(workspace, flat, "flat-field")
    edge_image, edge_sha = _capture(workspace, edge, "slanted-edge")
    baseline = health.measure_baseline(camera, flat_image, edge_image, recorded_at=now_iso())
    workspace.db.cameras.add_baseline({"camera": camera, "baseline": baseline.to_dict(), "flat_sha256": flat_sha,
                                       "edge_sha256": edge_sha})
    return baseline


def check(workspace: Workspace, camera: str, *, flat: Path | None, edge: Path | None,
          limits: health.CameraLimits | None = None) -> CameraCheck:
    """Check ``camera`` against its baseline and store the result.

    A failing check marks the camera's predictions since its last good check suspect and records an
    alert. A check that cannot run (no baseline, a missing or unusable capture) is recorded with status
    "error" and raised as CameraCheckError.
    """
    row = workspace.db.cameras.baseline(camera)
    try:
        if row is None:
            raise CameraCheckError(f"camera {camera!r} has no health baseline to check against",
                                   f"record one with: inspectloop camera baseline {camera} --flat FILE --edge FILE")
        baseline = health.CameraBaseline.from_dict(row.baseline)
        flat_image, _ = _capture(workspace, flat, "flat-field")
        edge_image, _ = _capture(workspace, edge, "slanted-edge")
        report = health.check_camera(baseline, flat_image, edge_image, limits)
    except CameraCheckError as exc:
        _record_error(workspace, camera, row, exc)
        raise
    return _store_check(workspace, camera, row.id, report)


def suspect_cameras(workspace: Workspace) -> dict[str, str]:
    """Cameras whose latest health check failed, with the time of that check."""
    return workspace.db.cameras.failing()


def checks(workspace: Workspace, camera: str | None = None, limit: int = 50) -> list[CameraCheckRecord]:
    """Stored checks, newest first."""
    return workspace.db.cameras.checks(camera, limit)


def _store_check(workspace: Workspace, camera: str, baseline_id: int, report: health.CameraReport) -> CameraCheck:
    failed = report.status == health.Status.fail
    with workspace.db.transaction() as tx:
        marked = 0
        if failed:
            good = tx.cameras.last_good_check(camera)
            baseline = tx.cameras.baseline(camera)
            since = good.checked_at if good else baseline.recorded_at if baseline else None
            marked = tx.predictions.mark_suspect(camera, since)
            for result in (r for r in report.checks if r.status == health.Status.fail):
                tx.drift.add_alert({"kind": "camera", "camera": camera, "signal": result.check,
                                    "effect": result.change, "message": _alert_text(result, marked)})
        check_id = tx.cameras.add_check({"camera": camera, "baseline_id": baseline_id, "status": str(report.status),
                                         "report": report.to_dict(), "marked_suspect": marked})
    return CameraCheck(check_id, camera, report, marked)


def _alert_text(result: health.CheckResult, marked: int) -> str:
    return (f"{result.message}; the camera's predictions are marked suspect until a check passes "
            f"({marked} already logged since its last good check)")


def _record_error(workspace: Workspace, camera: str, baseline: CameraBaselineRecord | None,
                  exc: CameraCheckError) -> None:
    workspace.db.cameras.add_check({"camera": camera, "baseline_id": baseline.id if baseline else None,
                                    "status": ERROR, "report": {"error": exc.message, "hint": exc.hint}})


def _capture(workspace: Workspace, path: Path | None, target: str) -> tuple[Image.Image | None, str | None]:
    """The decoded capture (None when no file was given) and its blob digest."""
    if path is None:
        return None, None
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise CameraCheckError(f"cannot read the {target} capture {path} ({exc.strerror or exc})",
                               f"check the path to the {target} image the camera saved") from exc
    try:
        with Image.open(path) as opened:
            image = opened.copy()
    except (UnidentifiedImageError, OSError) as exc:
        raise CameraCheckError(f"the {target} capture {path} is not a readable image ({exc})",
                               "save the capture as PNG, TIFF or BMP straight from the camera") from exc
    digest, _ = workspace.blobs.put(data)
    return image, digest
