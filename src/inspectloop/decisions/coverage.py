"""Where the review band's guarantee holds, and what it is worth where it does not.

The escape-rate guarantee (:mod:`inspectloop.decisions.conformal`) assumes production parts are exchangeable
with the images the band was calibrated on. A camera, line, session, shift or lighting those images never
held breaks that assumption, and so does a drift or camera-health alert: the certified rate then says
nothing. This module compares the calibration's conditions with those met on the line and, when the run
has a leave-one-group-out evaluation, quotes what was measured on groups the model never saw: the only
honest figure for a condition outside the calibration. Pure: the caller reads the workspace.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from inspectloop.domain.monitoring import Alert

CONDITION_FIELDS = ("camera", "line", "session", "shift", "lighting")


@dataclass(frozen=True)
class Unseen:
    """A condition met on the line that no calibration image had, with the predictions made under it."""

    field: str
    value: str
    predictions: int


@dataclass(frozen=True)
class HeldOut:
    """The worst of a leave-one-group-out evaluation: what a never-seen group got (top-class decisions)."""

    field: str
    groups: int
    worst_escape_group: str | None
    worst_escape_rate: float | None  # escapes / defective parts of that group
    worst_reject_group: str | None
    worst_good_reject_rate: float | None


@dataclass(frozen=True)
class Coverage:
    """The band's calibration conditions against the line's, the alerts since the version was registered,
    and the held-out evidence; ``holds`` is False when any condition or alert breaks the assumption."""

    calibrated: Mapping[str, tuple[str, ...]]
    unseen: tuple[Unseen, ...]
    alerts: tuple[Alert, ...]
    held_out: HeldOut | None

    @property
    def holds(self) -> bool:
        return not self.unseen and not self.alerts

    def statement(self, alpha: float | None) -> str:
        """Plain words for the card: whether the certified rate applies, and what to rely on where not."""
        target = "the certified escape rate" if alpha is None else f"the certified {alpha:.1%} escape rate"
        if self.holds:
            return (f"No camera, line, session, shift or lighting has been met on the line that the calibration "
                    f"images lacked, and no drift or camera alert has fired since this version was registered: "
                    f"{target} applies, as far as the prediction log can tell.")
        reasons = [f"{u.field} {u.value} ({u.predictions:,} parts)" for u in self.unseen[:6]]
        reasons += [f"a {a.kind} alert on camera {a.camera} ({a.signal}, {a.created_at[:10]})" for a in self.alerts[:4]]
        more = len(self.unseen) - 6 + max(0, len(self.alerts) - 4)
        broken = "; ".join(reasons) + (f"; and {more} more" if more > 0 else "")
        return (f"{target[0].upper()}{target[1:]} assumes parts like the calibration images. It does not hold for: "
                f"{broken}. There, {self._worth()}")

    def _worth(self) -> str:
        h = self.held_out
        if h is None or h.worst_escape_rate is None and h.worst_good_reject_rate is None:
            return ("nothing is certified and nothing was measured: run `inspectloop crossval --by session` to "
                    "measure a never-seen group, and recalibrate (label a sample of the new condition) to certify it.")
        measured = []
        if h.worst_escape_rate is not None:
            measured.append(f"up to {h.worst_escape_rate:.1%} escapes ({h.field} {h.worst_escape_group})")
        if h.worst_good_reject_rate is not None:
            measured.append(f"up to {h.worst_good_reject_rate:.1%} good parts rejected "
                            f"({h.field} {h.worst_reject_group})")
        return (f"nothing is certified; what was measured on {h.groups} held-out {h.field}s the model never saw is "
                f"{' and '.join(measured)}, top-class decisions. Recalibrate on the new condition to certify it again.")


def assess_coverage(calibrated: Mapping[str, Sequence[str | None]], on_line: Mapping[str, Mapping[str, int]],
                    alerts: Sequence[Alert] = (), crossvals: Sequence[Mapping[str, Any]] = ()) -> Coverage:
    """Compare conditions: ``calibrated`` the values each field took on the calibration images, ``on_line``
    the predictions per value on the line. A field the calibration never recorded (all None) is not judged:
    an unrecorded condition cannot be told apart from a new one."""
    kept = {f: tuple(sorted({v for v in calibrated.get(f, ()) if v})) for f in CONDITION_FIELDS}
    unseen = tuple(Unseen(field, value, count)
                   for field in CONDITION_FIELDS if kept[field]
                   for value, count in sorted((on_line.get(field) or {}).items(), key=lambda kv: -kv[1])
                   if value and value not in kept[field])
    return Coverage(calibrated=kept, unseen=unseen, alerts=tuple(alerts), held_out=held_out_worst(crossvals))


def held_out_worst(crossvals: Sequence[Mapping[str, Any]]) -> HeldOut | None:
    """The worst escape and false-reject rates over the stored leave-one-group-out results (None when none)."""
    worst: HeldOut | None = None
    for result in crossvals:
        groups: Mapping[str, Mapping[str, Any]] = result.get("groups") or {}
        escapes = {g: f["escapes"] / f["defective"] for g, f in groups.items() if f.get("defective")}
        rejects = {g: f["good_reject_rate"] for g, f in groups.items() if f.get("good_reject_rate") is not None}
        if not escapes and not rejects:
            continue
        e_group = max(escapes, key=escapes.__getitem__) if escapes else None
        r_group = max(rejects, key=rejects.__getitem__) if rejects else None
        candidate = HeldOut(str(result.get("field")), len(groups), e_group, escapes.get(e_group) if e_group else None,
                            r_group, rejects.get(r_group) if r_group else None)
        if worst is None or _severity(candidate) > _severity(worst):
            worst = candidate
    return worst


def _severity(h: HeldOut) -> tuple[float, float]:
    return (h.worst_escape_rate or 0.0, h.worst_good_reject_rate or 0.0)
