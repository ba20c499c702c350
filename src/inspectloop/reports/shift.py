"""The model card's sections on shifted conditions: leave-one-group-out results of the run's recipe, and, for a
version adapted without labels, what was adapted and what still has to confirm it. Pure rendering."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from inspectloop.reports.html import DASH, context_table, count_text, escape, number_text, percent_text, table


def crossval_section(results: Sequence[Mapping[str, Any]]) -> str:
    """Held-out groups: one table per stored leave-one-group-out result, the worst group called out."""
    if not results:
        return ('<h3>Held-out sessions</h3><p class="muted">No leave-one-group-out evaluation of this recipe is stored: '
                "the test figures above say nothing about a session, camera or line the model never saw. Run "
                "<code>inspectloop crossval --by session --run RUN</code>.</p>")
    return "\n".join(_one_crossval(result) for result in results)


def _one_crossval(result: Mapping[str, Any]) -> str:
    field, summary = str(result.get("field")), result.get("summary") or {}
    heading = f"<h3>Leave-one-{escape(field)}-out ({escape(result.get('mode'))} recipe)</h3>"
    groups: Mapping[str, Mapping[str, Any]] = result.get("groups") or {}
    if not summary.get("groups_evaluated"):
        return heading + '<p class="callout quiet">No group could be held out (see the skipped groups).</p>' + \
            _skipped(result)
    worst = str(summary["worst_group"])
    callout = (f"Worst {field}: {worst}, macro recall {percent_text(summary['worst_macro_recall'])} "
               f"(mean over {summary['groups_evaluated']} held-out {field}s {percent_text(summary['mean_macro_recall'])})")
    if "worst_good_reject_rate" in summary:
        callout += (f"; good parts rejected up to {percent_text(summary['worst_good_reject_rate'])} "
                    f"({summary['worst_good_reject_group']}), mean {percent_text(summary['mean_good_reject_rate'])}")
    rows = [[escape(group), count_text(f["count"]), percent_text(f["macro_recall"]),
             percent_text(f.get("good_reject_rate")) if f.get("good") else DASH,
             f"{f['escapes']} of {f['defective']}" if f.get("defective") else DASH,
             escape(", ".join(f"{k} {percent_text(v)}" for k, v in f["per_class_recall"].items() if v is not None)),
             escape(", ".join(k for k, v in f["per_class_recall"].items() if v is None)) or DASH]
            for group, f in groups.items()]
    note = (f'<p class="muted">Each {escape(field)} was scored by a model of this run\'s recipe trained without it '
            "(top-class decisions, no review band); "
            f"{count_text(result.get('unassigned_images', 0))} image(s) without a {escape(field)} were always "
            "trained on.</p>")
    return "\n".join([heading, f'<p class="callout {"quiet" if groups[worst]["macro_recall"] < 0.9 else "pass"}">'
                      f"{escape(callout)}.</p>",
                      table([escape(field), "images", "macro recall", "good rejected", "escapes", "recall per class",
                             "classes absent"], rows), note, _skipped(result)])


def _skipped(result: Mapping[str, Any]) -> str:
    skipped: Mapping[str, str] = result.get("skipped") or {}
    if not skipped:
        return ""
    items = "".join(f"<li>{escape(group)}: {escape(why)}</li>" for group, why in skipped.items())
    return f"<p>Not held out:</p><ul>{items}</ul>"


def _condition_text(c: Mapping[str, Any]) -> str:
    """The camera condition a rendered adaptation read, in words."""
    jpeg = f", re-encoded at JPEG quality {c['jpeg_quality']}" if c.get("jpeg_quality") else ", no new JPEG setting"
    return (f"light gain {c['gain']} and offset {c['offset']} grey levels, blur {c['blur_sigma']} px, added noise "
            f"{c['noise_sigma']} grey levels{jpeg} (statistics misfit {c['misfit']})")


def _what_changed(adaptation: Mapping[str, Any]) -> str:
    """One sentence: which statistics moved, how, and what stayed the source's."""
    if "condition" in adaptation:
        moved = (f"{adaptation['method']}: {_condition_text(adaptation['condition'])}. Only the head's weights and "
                 "bias changed; the trunk, the temperature, the review band, the thresholds and the novelty guard "
                 "are the source's")
    elif "features" in adaptation:
        moved = (f"{adaptation['method']} (share of the move applied: {number_text(adaptation['weight'])}); only the "
                 "head's weights and bias changed. The trunk, the temperature, the review band, the thresholds and "
                 "the novelty guard are the source's (the guard still sees the camera's raw features)")
    else:
        moved = (f"BatchNorm statistics of {adaptation['batchnorm']['layers']} layers re-estimated, "
                 f"{adaptation.get('method', 'absolute')} (share of the move applied: "
                 f"{number_text(adaptation['weight'])}); every learned weight, the temperature, the review band, the "
                 "thresholds and the novelty guard are the source's")
    return moved


def adaptation_section(adaptation: Mapping[str, Any] | None) -> list[str]:
    """A version adapted without labels: its source, the camera and images, and what must still confirm it."""
    if not adaptation:
        return []
    shift = adaptation.get("on_camera_images") or {}
    facts: dict[str, object] = {
        "adapted from": f"{adaptation['source_version']} (run {adaptation['source_run']})",
        "camera": adaptation["camera"],
        "unlabelled images": f"{count_text(adaptation['images'])} ({adaptation['image_source']})"
                             + (f"; {adaptation['suspect_skipped']} marked suspect left out"
                                if adaptation.get("suspect_skipped") else ""),
        "what changed": _what_changed(adaptation)}
    if "defect_share_before" in shift:
        facts["on the camera's images"] = (f"decided as a defect {percent_text(shift['defect_share_before'])} before, "
                                           f"{percent_text(shift['defect_share_after'])} after; "
                                           f"{percent_text(shift['changed'])} of decisions changed")
    claim = ("Adapted without labels: no label of this camera was read, so nothing above is measured on it. "
             "The review band's guarantee was certified for the source model on its calibration images, not for "
             "this camera. It goes to production only through acceptance on the frozen test set, shadow on the "
             "line, and a person's promotion; a labelled sample of the camera confirms it.")
    return ["<h2>Adapted without labels</h2>", f'<p class="callout quiet">{escape(claim)}</p>', context_table(facts)]
