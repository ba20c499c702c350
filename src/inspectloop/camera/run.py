"""Camera health in the workspace: record a camera's baseline, check it, and flag its predictions.

The measurements are :mod:`inspectloop.camera.health`'s; this module takes the target captures from
files or straight from the configured camera (:func:`capture_targets`, with the camera's locked settings
from the line config), keeps them in the blob store as evidence, stores baselines and checks, and acts on a failure:
the camera's predictions since its last good check are marked suspect, an alert is recorded, and the
inspection service marks the camera's new predictions suspect until a later check passes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image, UnidentifiedImageError

from inspectloop.camera import health
from inspectloop.domain import CameraBaselineRecord, CameraCheckRecord
from inspectloop.errors import CameraCheckError
from inspectloop.store import now_iso
from inspectloop.store.cameras import ERROR  # a check that could not run; recorded, changes no camera's status
from inspectloop.workspace import Workspace

if TYPE_CHECKING:
    from inspectloop.line.acquire.frame import Frame
    from inspectloop.line.config import CameraConfig

FLAT, EDGE = "flat-field", "slanted-edge"


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


def capture_targets(config: CameraConfig, *, ready: Callable[[str], None] | None = None) -> tuple[Frame, Frame]:
    """The flat-field and slanted-edge frames taken by the camera itself, with its locked settings (exposure,
    gain, pixel format, region of interest) as the line config gives them: what production frames see.

    ``ready(target)`` is called before each capture (to ask the operator to put that target in view). A
    free-running camera is opened anew for each target, so that its frame was taken after ``ready``;
    a triggered one takes its frame at the trigger that follows. AcquisitionError if the camera cannot.
    """
    from inspectloop.line.acquire.basler import BaslerCamera
    from inspectloop.line.config import Trigger

    frames: list[Frame] = []
    camera = None if config.trigger is Trigger.FREE_RUN else BaslerCamera(config, colour_mode="L")
    try:
        if camera is not None:
            camera.open()  # refused here (unknown serial, a setting out of range) before anyone fetches a target
        for target in (FLAT, EDGE):
            if ready is not None:
                ready(target)
            if camera is None:
                with BaslerCamera(config, colour_mode="L") as fresh:
                    frames.append(fresh.grab())
            else:
                frames.append(camera.grab())
    finally:
        if camera is not None:
            camera.close()
    return frames[0], frames[1]


def record_camera_baseline(workspace: Workspace, camera: str, *, flat: Path | Frame | None,
                           edge: Path | Frame | None) -> health.CameraBaseline:
    """Measure ``camera``'s flat-field and slanted-edge captures (files, or frames from
    :func:`capture_targets`) and store them as its baseline."""
    flat_image, flat_sha = _capture(workspace, flat, FLAT)
    edge_image, edge_sha = _capture(workspace, edge, EDGE)
    baseline = health.measure_baseline(camera, flat_image, edge_image, recorded_at=now_iso())
    workspace.db.cameras.add_baseline({"camera": camera, "baseline": {**baseline.to_dict(), **_taken(flat, edge)},
                                       "flat_sha256": flat_sha, "edge_sha256": edge_sha})
    return baseline


def check(workspace: Workspace, camera: str, *, flat: Path | Frame | None, edge: Path | Frame | None,
          limits: health.CameraLimits | None = None) -> CameraCheck:
    """Check ``camera`` against its baseline (captures from files, or frames from :func:`capture_targets`)
    and store the result.

    A failing check marks the camera's predictions since its last good check suspect and records an
    alert. A check that cannot run (no baseline, a missing or unusable capture) is recorded with status
    "error" and raised as CameraCheckError.
    """
    row = workspace.db.cameras.baseline(camera)
    try:
        if row is None:
            raise CameraCheckError(f"camera {camera!r} has no health baseline to check against",
                                   f"record one with: inspectloop camera baseline {camera} --flat FILE --edge FILE "
                                   "(or --from-camera)")
        baseline = health.CameraBaseline.from_dict(row.baseline)
        flat_image, _ = _capture(workspace, flat, FLAT)
        edge_image, _ = _capture(workspace, edge, EDGE)
        report = health.check_camera(baseline, flat_image, edge_image, limits)
    except CameraCheckError as exc:
        _record_error(workspace, camera, row, exc)
        raise
    return _store_check(workspace, camera, row.id, report, _taken(flat, edge))


def suspect_cameras(workspace: Workspace) -> dict[str, str]:
    """Cameras whose latest health check failed, with the time of that check."""
    return workspace.db.cameras.failing()


def latest_checks(workspace: Workspace) -> list[CameraCheckRecord]:
    """Each camera's latest check that ran (pass, warn or fail), by camera name: the dashboard's camera health."""
    return workspace.db.cameras.latest()


def checks(workspace: Workspace, camera: str | None = None, limit: int = 50) -> list[CameraCheckRecord]:
    """Stored checks, newest first."""
    return workspace.db.cameras.checks(camera, limit)


def _store_check(workspace: Workspace, camera: str, baseline_id: int, report: health.CameraReport,
                 taken: dict[str, Any]) -> CameraCheck:
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
                                         "report": {**report.to_dict(), **taken}, "marked_suspect": marked})
    return CameraCheck(check_id, camera, report, marked)


def _alert_text(result: health.CheckResult, marked: int) -> str:
    return (f"{result.message}; the camera's predictions are marked suspect until a check passes "
            f"({marked} already logged since its last good check)")


def _record_error(workspace: Workspace, camera: str, baseline: CameraBaselineRecord | None,
                  exc: CameraCheckError) -> None:
    workspace.db.cameras.add_check({"camera": camera, "baseline_id": baseline.id if baseline else None,
                                    "status": ERROR, "report": {"error": exc.message, "hint": exc.hint}})


def _taken(flat: Path | Frame | None, edge: Path | Frame | None) -> dict[str, Any]:
    """How the captures were taken, stored with the baseline or check: each camera frame's capture record
    (serial, frame counter, locked settings); nothing for files."""
    records = {target: capture.record() for target, capture in ((FLAT, flat), (EDGE, edge))
               if capture is not None and not isinstance(capture, str | Path)}
    return {"captured_from_camera": records} if records else {}


def _capture(workspace: Workspace, path: Path | Frame | None, target: str) -> tuple[Image.Image | None, str | None]:
    """The decoded capture (None when none was given) and its blob digest."""
    if path is None:
        return None, None
    if not isinstance(path, str | Path):  # a frame from the camera: stored losslessly as the evidence
        digest, _ = workspace.blobs.put(path.encoded())
        return path.image(), digest
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
