"""The centre's side of a sync: apply the bundles trusted sites sent up, and publish what goes down to them.

A site's bundle is applied batch by batch, each batch in one transaction together with the ``sync_records``
rows that remember it. So an interrupted apply (a killed process, a full disk) leaves whole batches, and
applying the bundle again skips what is there: the result is the same as one uninterrupted apply, and
applying it a third time changes nothing. Every bundle applied or refused is in ``sync_log``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inspectloop.errors import SyncError
from inspectloop.registry import verify_file
from inspectloop.sites.bundle import SUFFIX, Bundle, BundleWriter, UntrustedBundle, file_sha256, open_bundle
from inspectloop.sites.peers import trusted_key
from inspectloop.sites.publish import publish
from inspectloop.store import Transaction
from inspectloop.workspace import Workspace

AfterBatch = Callable[[Mapping[str, Any]], None]  # called after each batch commits (progress; tests interrupt here)
UP, DOWN = "up", "down"
STAGES_SENT = ("production", "shadow")  # the versions a site runs or shadows


@dataclass
class Applied:
    """What applying one bundle did: ``status`` done, already (applied before) or refused; counts per kind."""

    bundle: str
    site: str
    status: str
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    message: str | None = None


def receive(workspace: Workspace, exchange: Path, *, after_batch: AfterBatch | None = None) -> list[Applied]:
    """Apply every site's new bundles in ``exchange/up/SITE/`` (oldest first), then write each trusted site's
    down bundle (models, criteria, classes, what was received) in ``exchange/down/SITE/``."""
    up = _exchange(exchange) / UP
    results: list[Applied] = []
    for folder in sorted(p for p in up.iterdir() if p.is_dir()) if up.exists() else []:
        for path in sorted(folder.glob(f"*{SUFFIX}")):
            try:
                results.append(apply_up_bundle(workspace, path, folder.name, after_batch=after_batch))
            except FileNotFoundError:  # superseded by the site's newer bundle meanwhile: that one holds it all
                continue
    for peer in workspace.db.sync.peers(role="site"):
        if peer.trusted:
            publish_down(workspace, exchange, peer.name)
    return results


def apply_up_bundle(workspace: Workspace, path: Path, folder_site: str | None = None, *,
                    after_batch: AfterBatch | None = None) -> Applied:
    """Apply one site's bundle; refuse (and log) one signed by a key not trusted for that site."""
    try:
        bundle = open_bundle(path, trusted_key(workspace, "site"))
    except UntrustedBundle as exc:
        return _refuse(workspace, path.name, exc.sha256, str(exc.manifest.get("site") or folder_site or "?"),
                       exc.key_id, exc.message, exc.manifest.get("sequence"))
    except SyncError as exc:  # damaged in transit: refused and logged; the other sites' bundles still go in
        return _refuse(workspace, path.name, file_sha256(path), folder_site or "?", None, str(exc), None)
    try:
        peer = workspace.db.sync.peer(key_id=bundle.key_id)
        site = str(bundle.manifest.get("site"))
        if peer is None or peer.name != site or (folder_site is not None and folder_site != site):
            return _refuse(workspace, path.name, bundle.sha256, site, bundle.key_id,
                           f"bundle {path.name} says it is from {site!r} (folder {folder_site!r}) but is signed by "
                           f"the key of {peer.name if peer else None!r}", bundle.manifest.get("sequence"))
        if bundle.manifest.get("direction") != UP:
            raise SyncError(f"bundle {path.name} goes {bundle.manifest.get('direction')}, not up to a centre",
                            "give the centre the bundles sites write (exchange/up/SITE)")
        if workspace.db.sync.log(bundle_sha256=bundle.sha256, action="applied", status="done", limit=1):
            return Applied(path.name, site, "already")
        return _apply(workspace, bundle, site, after_batch)
    finally:
        bundle.close()


def _apply(workspace: Workspace, bundle: Bundle, site: str, after_batch: AfterBatch | None) -> Applied:
    log_id = workspace.db.sync.log_start(direction=UP, action="applied", peer=site, key_id=bundle.key_id,
                                         bundle=bundle.path.name, bundle_sha256=bundle.sha256,
                                         sequence=bundle.manifest.get("sequence"))
    for earlier in workspace.db.sync.log(bundle_sha256=bundle.sha256, action="applied", status="started"):
        if earlier.id != log_id:  # its process was killed: it could not say so itself
            workspace.db.sync.log_finish(earlier.id, "interrupted", earlier.counts,
                                         f"ended before it finished; resumed by sync log entry {log_id}")
    counts: dict[str, dict[str, int]] = {}
    context = _Context(workspace, bundle, site, log_id)
    try:
        for member in bundle.members:
            if member["kind"] == "blob":
                continue
            records = bundle.records(member)
            with workspace.db.transaction() as tx:
                tx.sync.lock_peer(site)  # first: what this batch reads as known is then final
                done = APPLY[member["kind"]](tx, context, records)
            total = counts.setdefault(member["kind"], {"new": 0, "known": 0, "updated": 0})
            for key, value in done.items():
                total[key] += value
            if after_batch is not None:
                after_batch(member)
    except BaseException as exc:
        workspace.db.sync.log_finish(log_id, "interrupted", _summary(counts, bundle),
                                     f"{type(exc).__name__}: {exc}; receive again to finish")
        raise
    workspace.db.sync.log_finish(log_id, "done", _summary(counts, bundle))
    return Applied(bundle.path.name, site, "done", counts)


def _summary(counts: Mapping[str, Any], bundle: Bundle) -> dict[str, Any]:
    return {"records": dict(counts), "covers": bundle.manifest.get("covers", {})}


def _refuse(workspace: Workspace, name: str, sha256: str, site: str, key_id: str | None, message: str,
            sequence: Any) -> Applied:
    """Log a refused bundle once (refusing the same file again adds nothing) and say why."""
    if not workspace.db.sync.log(bundle_sha256=sha256, action="refused", limit=1):
        workspace.db.sync.log_start(direction=UP, action="refused", peer=site, key_id=key_id, bundle=name,
                                    bundle_sha256=sha256, sequence=sequence if isinstance(sequence, int) else None,
                                    status="refused", message=message)
    return Applied(name, site, "refused", message=message)


@dataclass
class _Context:
    workspace: Workspace
    bundle: Bundle
    site: str
    log_id: int
    _versions: dict[str, int] | None = None

    def version_id(self, file_sha256: str | None) -> int | None:
        """The centre's version of the model file a site ran (None: not one of the centre's)."""
        if self._versions is None:
            self._versions = self.workspace.db.sync.versions_by_file()
        return self._versions.get(file_sha256) if file_sha256 else None


Records = list[tuple[dict[str, Any], str]]


def _split(tx: Transaction, context: _Context, kind: str, records: Records
           ) -> tuple[Records, list[tuple[dict[str, Any], str, str | None]], int]:
    """(new records, changed ones with their local id, how many are known unchanged)."""
    known = tx.sync.known(context.site, kind, [str(r["id"]) for r, _ in records])
    new = [(r, d) for r, d in records if str(r["id"]) not in known]
    changed = [(r, d, known[str(r["id"])][0]) for r, d in records
               if str(r["id"]) in known and known[str(r["id"])][1] != d]
    return new, changed, len(records) - len(new) - len(changed)


def _apply_classes(tx: Transaction, context: _Context, records: Records) -> dict[str, int]:
    new, _, _ = _split(tx, context, "classes", records)
    tx.sync.insert_classes([{k: v for k, v in r.items() if k != "id"} for r, _ in new])
    tx.sync.remember(context.site, "classes", [(str(r["id"]), str(r["id"]), d) for r, d in new], context.log_id)
    return {"new": len(new), "known": len(records) - len(new)}


def _apply_images(tx: Transaction, context: _Context, records: Records) -> dict[str, int]:
    new, _, _ = _split(tx, context, "images", records)
    for record, _ in new:  # blobs first: a recorded image always has its bytes
        context.workspace.blobs.put(context.bundle.blob(record["sha256"]))
    ingest = tx.sync.ingest_for(f"sync:{context.site}:{context.bundle.sha256}")
    tx.sync.insert_images([{k: v for k, v in r.items() if k != "id"} for r, _ in new], ingest)
    tx.sync.remember(context.site, "images", [(str(r["id"]), str(r["id"]), d) for r, d in new], context.log_id)
    return {"new": len(new), "known": len(records) - len(new)}


def _apply_predictions(tx: Transaction, context: _Context, records: Records) -> dict[str, int]:
    new, changed, known = _split(tx, context, "predictions", records)
    rows = [{**{k: v for k, v in r.items() if k not in ("id", "model_file_sha256")},
             "request_id": f"{context.site}/{r['request_id']}",  # request ids are a site's own: unique per site
             "model_version_id": context.version_id(r.get("model_file_sha256"))} for r, _ in new]
    ids = tx.sync.insert_predictions(rows)
    tx.sync.remember(context.site, "predictions",
                     [(str(r["id"]), str(ids[row["request_id"]]), d) for (r, d), row in zip(new, rows, strict=True)],
                     context.log_id)
    for record, record_digest, local in changed:  # statistics measured, or suspect marked, after it was sent
        tx.sync.update_prediction_flags(int(local or 0), record)
        tx.sync.update_digest(context.site, "predictions", str(record["id"]), record_digest, context.log_id)
    return {"new": len(new), "known": known, "updated": len(changed)}


def _apply_annotations(tx: Transaction, context: _Context, records: Records) -> dict[str, int]:
    new, _, _ = _split(tx, context, "annotations", records)
    remembered = [(str(r["id"]), str(tx.sync.insert_annotation({k: v for k, v in r.items() if k != "id"})), d)
                  for r, d in new]
    tx.sync.remember(context.site, "annotations", remembered, context.log_id)
    return {"new": len(new), "known": len(records) - len(new)}


def _apply_review_items(tx: Transaction, context: _Context, records: Records) -> dict[str, int]:
    new, _, _ = _split(tx, context, "review_items", records)
    predictions = tx.sync.known(context.site, "predictions", [str(r["prediction_id"]) for r, _ in new
                                                             if r["prediction_id"] is not None])
    annotations = tx.sync.known(context.site, "annotations", [str(r["annotation_id"]) for r, _ in new
                                                             if r["annotation_id"] is not None])
    remembered = []
    for record, record_digest in new:
        row = {k: v for k, v in record.items() if k not in ("id", "prediction_id", "annotation_id", "model_file_sha256")}
        row["prediction_id"] = _local(predictions, record["prediction_id"])
        row["annotation_id"] = _local(annotations, record["annotation_id"])
        row["model_version_id"] = context.version_id(record.get("model_file_sha256"))
        remembered.append((str(record["id"]), str(tx.sync.insert_review_item(row)), record_digest))
    tx.sync.remember(context.site, "review_items", remembered, context.log_id)
    return {"new": len(new), "known": len(records) - len(new)}


def _local(known: Mapping[str, tuple[str | None, str]], remote: Any) -> int | None:
    found = known.get(str(remote)) if remote is not None else None
    return int(found[0]) if found and found[0] is not None else None


def _summaries(kind: str) -> Callable[[Transaction, _Context, Records], dict[str, int]]:
    """Drift summaries and daily metrics: stored per site and key; a grown day replaces the one sent before."""

    def apply(tx: Transaction, context: _Context, records: Records) -> dict[str, int]:
        new, changed, known = _split(tx, context, kind, records)
        for record, record_digest in [*new, *[(r, d) for r, d, _ in changed]]:
            tx.sync.put_summary(context.site, kind, str(record["id"]), record, record_digest)
        for record, record_digest, _ in changed:
            tx.sync.update_digest(context.site, kind, str(record["id"]), record_digest, context.log_id)
        tx.sync.remember(context.site, kind, [(str(r["id"]), None, d) for r, d in new], context.log_id)
        return {"new": len(new), "known": known, "updated": len(changed)}

    return apply


APPLY: dict[str, Callable[[Transaction, _Context, Records], dict[str, int]]] = {
    "classes": _apply_classes, "images": _apply_images, "predictions": _apply_predictions,
    "annotations": _apply_annotations, "review_items": _apply_review_items,
    "drift": _summaries("drift"), "metrics": _summaries("metrics"),
}
UP_KINDS = tuple(APPLY)  # the order a site writes (and the centre applies) its records in


def newest_down(exchange: Path, site: str) -> Path | None:
    """The newest down bundle written for ``site``, if any."""
    found = sorted((Path(exchange) / DOWN / site).glob(f"*{SUFFIX}"))
    return found[-1] if found else None


# What the sites sent, as the centre holds it (``state_digests``), less the times rows were written here.
STATE_TABLES = {"classes": ("created_at", "updated_at"), "images": ("ingested_at",), "ingests": ("started_at",),
                "predictions": (), "annotations": (), "review_items": (), "site_summaries": ("updated_at",),
                "sync_records": ("sync_log_id",)}


def state_digests(workspace: Workspace, *, with_ids: bool = True) -> dict[str, str]:
    """A digest per table of what sites sent (see ``STATE_TABLES``), to compare two centres: an interrupted and
    resumed sync must leave the same as an uninterrupted one. Without ``with_ids`` row ids are left out
    (PostgreSQL spends sequence numbers on rolled-back batches)."""
    return workspace.db.sync.table_digests(STATE_TABLES, with_ids=with_ids)


# -- down: what a site receives ---------------------------------------------------------------------------

def publish_down(workspace: Workspace, exchange: Path, site: str) -> Path | None:
    """Write ``site``'s down bundle (production and shadow models with their files, locked criteria, class
    definitions, and what the centre has received of the site's); None when nothing changed since the last."""
    folder = _exchange(exchange) / DOWN / site
    folder.mkdir(parents=True, exist_ok=True)
    versions = [v for v in workspace.db.registry.list() if v.stage.value in STAGES_SENT]
    for version in versions:  # a file changed since registration stops it here (ModelFileError names the file)
        verify_file(version, workspace)
    acks = _acks(workspace, site)
    writer = BundleWriter(folder, {"direction": DOWN, "site": site, "covers": {}, "acks": acks})
    try:
        writer.add_records("criteria", [{"id": c.sha256, "name": c.name, "sha256": c.sha256, "yaml": c.yaml,
                                         "spec": c.spec, "locked_at": c.locked_at, "locked_by": c.locked_by}
                                        for c in workspace.db.criteria.list()])
        writer.add_records("classes", [{"id": row["name"], **row} for row in workspace.db.sync.class_rows()])
        writer.add_records("models", [_model_record(workspace, v) for v in versions])
        for version in versions:
            writer.add_blob(version.file_sha256, version.path.read_bytes())
        path = publish(workspace, writer, direction=DOWN, peer=site, content={"acks": acks},
                       logged={"models": [v.name for v in versions], **acks})
    except BaseException:
        writer.abandon()
        raise
    if path is None:
        return None
    for older in folder.glob(f"*{SUFFIX}"):  # superseded: a site applies the newest only
        if older != path:
            older.unlink(missing_ok=True)
    return path


def _acks(workspace: Workspace, site: str) -> dict[str, Any]:
    """How far the site's records have arrived: the covers of its newest fully applied bundle, and the key that
    signed it (a workspace with another key under the site's name takes no confirmation meant for the site)."""
    done = [e for e in workspace.db.sync.log(peer=site, action="applied", status="done") if e.sequence is not None]
    if not done:
        return {"acked_sequence": 0, "acked_covers": {}}
    newest = max(done, key=lambda e: e.sequence or 0)
    return {"acked_sequence": newest.sequence, "acked_covers": newest.counts.get("covers", {}),
            "acked_key_id": newest.key_id}


def _model_record(workspace: Workspace, version: Any) -> dict[str, Any]:
    model = next(m for m in workspace.db.runs.models(version.run_id) if m.id == version.model_id)
    return {"id": version.name, "name": version.name, "stage": version.stage.value, "variant": version.variant,
            "file_sha256": version.file_sha256, "weights_sha256": model.weights_sha256, "run_id": version.run_id,
            "metadata": model.metadata, "lineage": version.lineage}


def _exchange(exchange: Path) -> Path:
    exchange = Path(exchange)
    if not exchange.is_dir():
        raise SyncError(f"the exchange folder {exchange} is not there",
                        "mount the shared folder or USB stick, or give its path with --exchange")
    return exchange
