"""A site's side of a sync. Everything a site does (decisions, the prediction log, review) works without
the centre; ``sync`` runs when the exchange folder is there (a shared folder, or a USB stick carried over):

1. it applies the centre's newest down bundle for this site, if new: model versions (each file checked
   against the centre's signature before it is registered; production and shadow stages follow the
   centre's), locked criteria, class definitions, and how far the centre has received this site's records;
2. it writes one up bundle with what the centre has not confirmed yet: class definitions, labelled images
   (bytes and metadata), predictions, annotations, decided review items, drift summaries, daily metrics.

Until the centre confirms a bundle its records are sent again (the centre skips what it has); a bundle the
centre confirmed is removed from the exchange folder. Running ``sync`` twice writes nothing new.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from inspectloop.domain import ClassDefinition, Stage, StageChange
from inspectloop.errors import InspectloopError, SyncError
from inspectloop.fileio import atomic_write_bytes
from inspectloop.keys import site_key
from inspectloop.registry import production_model
from inspectloop.runtime.signing import check_signature
from inspectloop.sites.bundle import SUFFIX, Bundle, BundleWriter, UntrustedBundle, open_bundle
from inspectloop.sites.central import DOWN, UP, UP_KINDS
from inspectloop.sites.peers import CENTRAL, SiteConfig, peer_key, site_config, trusted_key
from inspectloop.sites.publish import publish
from inspectloop.workspace import Workspace

SETTLE = timedelta(minutes=1)  # predictions younger than this wait for the next sync (see _write_records)
RECEIVED_MODELS = "models/received"  # where model files from the centre are kept, in the workspace
_START = {"predictions": "0", "annotations": "0", "review_items": "", "review_items_ids": "", "drift": "0",
          "metrics": ""}


@dataclass
class SyncReport:
    """One ``sync``: the down bundle applied (and what it brought), the up bundle written (and what it holds)."""

    site: str
    received: str | None = None
    received_counts: dict[str, Any] = field(default_factory=dict)
    sent: Path | None = None
    sent_counts: dict[str, int] = field(default_factory=dict)
    message: str = ""


def sync(workspace: Workspace, *, exchange: Path | None = None, batch: int | None = None) -> SyncReport:
    """Apply the centre's newest down bundle, then write an up bundle of what the centre has not confirmed."""
    config = site_config(workspace)
    folder = Path(exchange or config.exchange)
    if not folder.is_dir():
        raise SyncError(f"the exchange folder {folder} is not there: nothing was synced (the site keeps working "
                        "offline)", "mount the shared folder or USB stick, or give its path with --exchange")
    report = SyncReport(config.name)
    apply_down(workspace, config, folder, report)
    send_up(workspace, config, folder, report, batch=batch)
    return report


# -- down --------------------------------------------------------------------------------------------------

def apply_down(workspace: Workspace, config: SiteConfig, exchange: Path, report: SyncReport) -> None:
    """Apply the newest down bundle for this site unless it was applied (or refused) before."""
    found = sorted((exchange / DOWN / config.name).glob(f"*{SUFFIX}"))
    if not found:
        return
    path = found[-1]
    try:
        bundle = open_bundle(path, trusted_key(workspace, "central"))
    except UntrustedBundle as exc:
        if not workspace.db.sync.log(bundle_sha256=exc.sha256, limit=1):
            workspace.db.sync.log_start(direction=DOWN, action="refused", peer=CENTRAL, key_id=exc.key_id,
                                        bundle=path.name, bundle_sha256=exc.sha256, sequence=None,
                                        status="refused", message=exc.message)
        raise
    try:
        if workspace.db.sync.log(bundle_sha256=bundle.sha256, action="applied", limit=1):
            return
        if bundle.manifest.get("site") != config.name or bundle.manifest.get("direction") != DOWN:
            raise SyncError(f"bundle {path.name} is for {bundle.manifest.get('site')!r}, not this site "
                            f"({config.name!r})", "check the site name and the exchange folder")
        log_id = workspace.db.sync.log_start(direction=DOWN, action="applied", peer=CENTRAL, key_id=bundle.key_id,
                                             bundle=path.name, bundle_sha256=bundle.sha256,
                                             sequence=bundle.manifest.get("sequence"))
        counts = _apply_down(workspace, bundle, config)
        workspace.db.sync.log_finish(log_id, "done", counts)
        report.received, report.received_counts = path.name, counts
    finally:
        bundle.close()


def _apply_down(workspace: Workspace, bundle: Bundle, config: SiteConfig) -> dict[str, Any]:
    counts: dict[str, Any] = {"criteria": 0, "classes": 0, "models": [], "refused_models": []}
    for member in bundle.members:
        if member["kind"] == "criteria":
            for record, _ in bundle.records(member):
                workspace.db.criteria.lock(record["name"], record["sha256"], record["yaml"], record["spec"],
                                           record["locked_by"])
                counts["criteria"] += 1
        elif member["kind"] == "classes":
            for record, _ in bundle.records(member):
                fields = {k: v for k, v in record.items() if k != "id"}
                workspace.db.labels.upsert_class(ClassDefinition(**{**fields, "is_good": bool(fields["is_good"])}))
                counts["classes"] += 1
        elif member["kind"] == "models":
            for record, _ in bundle.records(member):
                try:
                    counts["models"].append(_receive_model(workspace, bundle, record))
                except InspectloopError as exc:  # one refused model (unsigned, a name taken) does not stop the rest
                    counts["refused_models"].append(f"{record['name']}: {exc.message}")
    _take_acks(workspace, config, bundle.manifest.get("acks") or {})
    return counts


def _receive_model(workspace: Workspace, bundle: Bundle, record: dict[str, Any]) -> str:
    """Register a model version from the centre (its file must carry the centre's signature); follow its stage."""
    central = workspace.db.sync.peer(name=CENTRAL)
    assert central is not None  # the bundle was verified against it
    data = bundle.blob(record["file_sha256"])
    check_signature(data, (peer_key(central),), f"model version {record['name']} from the centre")
    version = workspace.db.registry.find(name=record["name"])
    if version is not None and version.file_sha256 != record["file_sha256"]:
        raise SyncError(f"model version name {record['name']!r} is taken here by another file",
                        "rename or retire the local version; the centre's names are kept as they are")
    if version is None:
        path = workspace.root / RECEIVED_MODELS / f"{record['name']}-{record['file_sha256'][:16]}.onnx"
        atomic_write_bytes(path, data)
        lineage = {**record["lineage"], "received_from": central.key_id, "signed_by": central.key_id}
        version_id = workspace.db.sync.add_received_model(
            run_id=f"received-{record['run_id']}", dataset_version=f"received-{record['lineage'].get('dataset_version')}",
            path=str(path), file_sha256=record["file_sha256"], weights_sha256=record["weights_sha256"],
            metadata=record["metadata"], name=record["name"], variant=record["variant"], lineage=lineage,
            code_version=str(record["lineage"].get("code_version") or "unknown"))
        version = workspace.db.registry.find(version_id=version_id)
        assert version is not None
    _follow_stage(workspace, version, Stage(record["stage"]), bundle.path.name)
    return f"{record['name']} ({record['stage']})"


def _follow_stage(workspace: Workspace, version: Any, stage: Stage, bundle: str) -> None:
    if version.stage == stage:
        return
    reason = f"stage at the centre (bundle {bundle})"
    changes = []
    current = production_model(workspace)
    if stage == Stage.production and current is not None and current.id != version.id:
        changes.append(StageChange(current.id, "replaced", Stage.production, Stage.retired, CENTRAL, reason))
    changes.append(StageChange(version.id, "promote", version.stage, stage, CENTRAL, reason))
    workspace.db.registry.change_stages(changes)


def _take_acks(workspace: Workspace, config: SiteConfig, acks: dict[str, Any]) -> None:
    """Move the cursors to what the centre confirmed, and remove the confirmed up bundles from the exchange."""
    acked = int(acks.get("acked_sequence") or 0)
    if acks.get("acked_key_id") not in (None, site_key(workspace.root).public.key_id):
        return
    if acked <= int(workspace.db.sync.cursors(CENTRAL).get("acked_sequence", "0")):
        return
    workspace.db.sync.set_cursors(CENTRAL, {**{k: str(v) for k, v in (acks.get("acked_covers") or {}).items()},
                                            "acked_sequence": str(acked)})
    for path in (config.exchange / UP / config.name).glob(f"*{SUFFIX}"):
        if int(path.name.split("-", 1)[0]) <= acked:
            path.unlink(missing_ok=True)


# -- up ----------------------------------------------------------------------------------------------------

def send_up(workspace: Workspace, config: SiteConfig, exchange: Path, report: SyncReport,
            batch: int | None = None) -> None:
    """Write an up bundle of what the centre has not confirmed; nothing when that is nothing new."""
    cursors = {**_START, **workspace.db.sync.cursors(CENTRAL)}
    folder = exchange / UP / config.name
    folder.mkdir(parents=True, exist_ok=True)
    annotations = workspace.db.sync.annotations_after(int(cursors["annotations"]))
    reviewed = _not_acked(workspace.db.sync.decided_review_items(cursors["review_items"]), cursors)
    drift = workspace.db.sync.monitor_runs_after(int(cursors["drift"]))
    predictions = _peek(workspace.db.sync.predictions_after(int(cursors["predictions"]), batch or 2000))
    if not (annotations or reviewed or drift or predictions.first):
        report.message = "nothing new to send"
        return
    covers: dict[str, str] = {}
    writer = BundleWriter(folder, {"direction": UP, "site": config.name}, **({"batch": batch} if batch else {}))
    try:
        counts = _write_records(workspace, writer, cursors, covers, annotations, reviewed, drift, predictions)
        writer.header["covers"] = covers
        path = publish(workspace, writer, direction=UP, peer=CENTRAL, content={"covers": covers},
                       logged={"records": counts, "covers": covers})
    except BaseException:
        writer.abandon()
        raise
    if path is None:
        report.message = "nothing new: the bundle waiting in the exchange already holds it"
        return
    for older in folder.glob(f"*{SUFFIX}"):  # superseded: the new bundle holds all they held (and more)
        if older != path:
            older.unlink(missing_ok=True)
    report.sent, report.sent_counts = path, counts


def _not_acked(reviewed: list[dict[str, Any]], cursors: dict[str, str]) -> list[dict[str, Any]]:
    """Decided items after the cursor: those of the cursor's own second that the centre has are left out."""
    sent = set(filter(None, cursors["review_items_ids"].split(",")))
    return [r for r in reviewed if not (r["decided_at"] == cursors["review_items"] and str(r["id"]) in sent)]


@dataclass
class _Peeked:
    first: list[dict[str, Any]]
    rest: Iterator[list[dict[str, Any]]]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        yield from self.first
        for chunk in self.rest:
            yield from chunk


def _peek(chunks: Iterator[list[dict[str, Any]]]) -> _Peeked:
    return _Peeked(next(chunks, []), chunks)


def _write_records(workspace: Workspace, writer: BundleWriter, cursors: dict[str, str], covers: dict[str, str],
                   annotations: list[dict[str, Any]], reviewed: list[dict[str, Any]], drift: list[dict[str, Any]],
                   predictions: _Peeked) -> dict[str, int]:
    """Write every kind in ``UP_KINDS`` order, filling ``covers`` with how far each goes; counts per kind."""
    digests = {a["sha256"] for a in annotations} | {r["image_sha256"] for r in reviewed}
    images = workspace.db.sync.image_rows(sorted(digests))
    counts = {"classes": writer.add_records("classes", [{"id": r["name"], **r}
                                                        for r in workspace.db.sync.class_rows()])}
    counts["images"] = writer.add_records("images", [{"id": r["sha256"], **r} for r in images])
    for row in images:
        writer.add_blob(row["sha256"], workspace.blobs.get(row["sha256"]))
    last = {"id": int(cursors["predictions"]), "day": cursors["metrics"]}

    # A prediction's id is taken when its transaction starts and it is seen when it commits: on PostgreSQL a
    # lower id can commit after a higher one. Sending only what is older than a minute (and stopping at the
    # first newer one) keeps the cursor from passing a prediction still being written.
    settled = (datetime.now(UTC) - SETTLE).isoformat(timespec="seconds")

    def tracked() -> Iterator[dict[str, Any]]:
        for row in predictions:
            if row["received_at"] >= settled:
                return
            last["id"], last["day"] = row["id"], max(last["day"], row["received_at"][:10])
            yield row

    counts["predictions"] = writer.add_records("predictions", tracked())
    counts["annotations"] = writer.add_records("annotations", annotations)
    counts["review_items"] = writer.add_records("review_items", reviewed)
    counts["drift"] = writer.add_records("drift", drift)
    metrics = workspace.db.sync.daily_metrics(cursors["metrics"]) if counts["predictions"] else []
    counts["metrics"] = writer.add_records("metrics", [{"id": f"{m['day']}/{m['camera']}", **m} for m in metrics])
    covers.update({"predictions": str(last["id"]), "metrics": last["day"],
                   "annotations": str(max([a["id"] for a in annotations], default=int(cursors["annotations"]))),
                   "review_items": max([r["decided_at"] for r in reviewed], default=cursors["review_items"]),
                   "drift": str(max([d["id"] for d in drift], default=int(cursors["drift"])))})
    at_cursor = [r for r in reviewed if r["decided_at"] == covers["review_items"]]
    carried = cursors["review_items_ids"] if covers["review_items"] == cursors["review_items"] else ""
    covers["review_items_ids"] = ",".join(filter(None, [carried, *(str(r["id"]) for r in at_cursor)]))
    assert tuple(counts) == UP_KINDS  # the centre applies them in this order
    return counts
