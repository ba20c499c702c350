"""Label Studio JSON export: a list of tasks, each an image with its annotators' results.

``rectanglelabels`` and ``polygonlabels`` results become regions (coordinates are percentages of
the image); each annotation's ``completed_by`` (an e-mail, a user object or a user id) names the
annotator. Cancelled annotations, rotated rectangles and brush masks are reported and skipped.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlparse

from inspectloop.regions.formats.base import Drawn, ExportImage, Parsed, Problem, display, files_under

NAME = "labelstudio"
CARRIES_ANNOTATOR = True
HOLDS_POLYGONS = True


def read(path: Path, *, class_names: Sequence[str] = ()) -> Parsed:
    """Every ``*.json`` Label Studio export at ``path`` (a file or a folder)."""
    parsed = Parsed()
    for file in files_under(path, ".json"):
        parsed.files += 1
        name = display(file, path)
        try:
            tasks = json.loads(file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            parsed.problems.append(Problem(name, f"not valid JSON: {exc.msg} (column {exc.colno})", exc.lineno,
                                           "file skipped"))
            continue
        except (OSError, UnicodeDecodeError) as exc:
            parsed.problems.append(Problem(name, f"cannot be read: {exc}", None, "file skipped"))
            continue
        tasks = [tasks] if isinstance(tasks, dict) else tasks
        if not isinstance(tasks, list):
            parsed.problems.append(Problem(name, "not a Label Studio export: expected a list of tasks", None,
                                           "file skipped"))
            continue
        for index, task in enumerate(tasks):
            try:
                _read_task(task, name, parsed)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                parsed.problems.append(Problem(name, f"task {index}: malformed ({exc})"))
    return parsed


def image_name(url: str) -> str:
    """The file an image URL or path names (``/data/upload/3/1a2b-scratch.png`` -> ``1a2b-scratch.png``)."""
    path = unquote(urlparse(url).path or url)
    if "?d=" in url:  # local files: /data/local-files/?d=folder/name.png
        path = unquote(url.split("?d=", 1)[1])
    return PurePosixPath(path).name


def annotator_of(completed_by: Any) -> str | None:
    if isinstance(completed_by, dict):
        value = completed_by.get("email") or completed_by.get("username") or completed_by.get("id")
        return None if value is None else str(value)
    return None if completed_by is None else str(completed_by)


def _read_task(task: dict[str, Any], file: str, parsed: Parsed) -> None:
    data = task["data"]
    url = data.get("image") or next((v for v in data.values() if isinstance(v, str)), "")
    for annotation in task.get("annotations") or task.get("completions") or []:
        if annotation.get("was_cancelled"):
            continue
        annotator = annotator_of(annotation.get("completed_by"))
        for number, result in enumerate(annotation.get("result") or [], start=1):
            where = f"task {task.get('id', '?')} result {result.get('id', number)}"
            try:
                drawn = _result(result, image_name(url), file, where, annotator)
            except (KeyError, TypeError, ValueError) as exc:
                parsed.problems.append(Problem(file, f"{where}: malformed ({exc})"))
                continue
            if isinstance(drawn, str):
                parsed.problems.append(Problem(file, f"{where}: {drawn}"))
            elif drawn is not None:
                parsed.regions.append(drawn)
                if drawn.class_name not in parsed.classes:
                    parsed.classes.append(drawn.class_name)


def _result(result: dict[str, Any], image: str, file: str, where: str, annotator: str | None) -> Drawn | str | None:
    """A region, a reason it is skipped, or None for results that are not regions (choices, text)."""
    kind = result.get("type")
    value = result["value"]
    if kind not in ("rectanglelabels", "polygonlabels"):
        return f"a {kind} result is not a box or polygon" if kind in ("brushlabels", "keypointlabels",
                                                                        "ellipselabels") else None
    labels = value.get(kind) or []
    if len(labels) != 1:
        return f"{len(labels)} labels on one shape; a region has exactly one class"
    size = None
    if result.get("original_width") and result.get("original_height"):
        size = (int(result["original_width"]), int(result["original_height"]))
    common = dict(image=image, class_name=str(labels[0]), file=file, where=where, annotator=annotator,
                  image_size=size, relative=True)
    if kind == "rectanglelabels":
        if float(value.get("rotation", 0) or 0) != 0:
            return f"rectangle rotated by {value['rotation']} degrees; only upright boxes are regions"
        x, y, w, h = (float(value[k]) / 100 for k in ("x", "y", "width", "height"))
        return Drawn(box=(x, y, x + w, y + h), **common)
    return Drawn(polygon=tuple((float(px) / 100, float(py) / 100) for px, py in value["points"]), **common)


def write(folder: Path, images: Sequence[ExportImage], classes: Sequence[str]) -> list[Path]:
    """One ``tasks.json``: a task per image, an annotation per annotator, results in percent."""
    tasks = []
    for task_id, image in enumerate(images, start=1):
        by_annotator: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for region in image.regions:
            by_annotator[region.annotator].append(_region_result(region, image, len(by_annotator[region.annotator])))
        annotations = [{"id": task_id * 1000 + n, "completed_by": {"email": who}, "was_cancelled": False,
                        "result": results} for n, (who, results) in enumerate(sorted(by_annotator.items()))]
        tasks.append({"id": task_id, "data": {"image": f"images/{image.file_name}"}, "annotations": annotations})
    path = folder / "tasks.json"
    path.write_text(json.dumps(tasks, indent=1), encoding="utf-8")
    return [path]


def _region_result(region: Any, image: ExportImage, number: int) -> dict[str, Any]:
    w, h = image.width, image.height
    if region.polygon:
        kind = "polygonlabels"
        value: dict[str, Any] = {"points": [[x / w * 100, y / h * 100] for x, y in region.polygon.points]}
    else:
        b = region.box
        kind = "rectanglelabels"
        value = {"x": b.x0 / w * 100, "y": b.y0 / h * 100, "width": b.width / w * 100,
                 "height": b.height / h * 100, "rotation": 0}
    value[kind] = [region.class_name]
    return {"id": f"r{number}", "type": kind, "from_name": "label", "to_name": "image", "original_width": w,
            "original_height": h, "image_rotation": 0, "value": value}
