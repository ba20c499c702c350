"""``inspectloop doctor``: is every row's blob there and intact, is the database sound, is anything left over?

Checks, in an order that is safe beside a live service (blobs are written before the rows that name
them, so reading the rows first can never report a blob of a concurrent write as missing):
that the database server and an object store's bucket answer (and SQLite's ``integrity_check``),
rows vs blobs (missing, unreferenced), every blob's SHA-256 against its name (as stored: an object
store's objects, not their local cache), ``.tmp-*`` files that killed writers left, and passwords
written out in the config rather than referenced from the environment (a warning).
``fix`` removes only what cannot hurt: abandoned temporary files. It never deletes a blob or a row;
what it cannot fix it says.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any

from inspectloop.envref import REFERENCE
from inspectloop.errors import WorkspaceError
from inspectloop.store.blobs import GRACE_SECONDS
from inspectloop.store.database import password_written_out
from inspectloop.store.objects import ObjectBlobStore
from inspectloop.workspace import Workspace

SECRET_OPTIONS = ("secret", "password", "token", "aws_secret_access_key")  # fsspec/s3fs options that hold one
RESTORE = "restore the workspace from a backup (inspectloop restore BACKUP DEST), or re-ingest the image"


@dataclass(frozen=True)
class Finding:
    """One thing doctor found. A problem makes doctor fail until fixed; a warning does not."""

    check: str  # database | blob_store | missing_blob | corrupt_blob | unreferenced_blob | temporary_file
    severity: str  # problem | warning
    subject: str  # a digest, a path, or "database"
    detail: str
    fix: str | None = None  # what the user can do (None when doctor fixed it)
    fixed: bool = False


@dataclass
class DoctorReport:
    checked: dict[str, int] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    database: str = ""  # the server that answered, and its URL with the password hidden
    blobs: str = ""  # the blob store's folder or object store URL

    @property
    def problems(self) -> list[Finding]:
        """Problems still there (after ``fix``)."""
        return [f for f in self.findings if f.severity == "problem" and not f.fixed]

    @property
    def healthy(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"healthy": self.healthy, "database": self.database, "blobs": self.blobs, "checked": self.checked,
                "problems": len(self.problems),
                "fixed": sum(f.fixed for f in self.findings),
                "warnings": sum(f.severity == "warning" for f in self.findings),
                "findings": [asdict(f) for f in self.findings]}


def doctor(workspace: Workspace, *, fix: bool = False, verify_hashes: bool = True,
           grace_seconds: float = GRACE_SECONDS) -> DoctorReport:
    """Check the workspace's rows, blobs and database; with ``fix``, remove abandoned temporary files."""
    report = DoctorReport()
    if not (_database_answers(workspace, report) and _blob_store_answers(workspace, report)):
        return report  # nothing else can be checked without them
    referenced = workspace.db.integrity.referenced_blobs()  # rows first: see the module docstring
    stored = set(workspace.blobs.digests())
    report.checked |= {"referenced_blobs": len(referenced), "stored_blobs": len(stored)}
    for digest in sorted(set(referenced) - stored):
        report.findings.append(Finding("missing_blob", "problem", digest,
                                       f"named by {referenced[digest]} but not in the blob store", RESTORE))
    for digest in sorted(stored - set(referenced)):
        report.findings.append(Finding(
            "unreferenced_blob", "warning", digest, "no row names it (a write that crashed before its row, or "
            "a camera check capture); kept, since deleting it cannot be undone", None))
    if verify_hashes:
        _check_hashes(workspace, stored, report)
    _check_temporaries(workspace, report, fix=fix, grace_seconds=grace_seconds)
    _check_written_secrets(workspace, report)
    return report


def _check_written_secrets(workspace: Workspace, report: DoctorReport) -> None:
    """A password written out in inspectloop.yaml is copied into every backup: warn, and say how to reference it."""
    config = workspace.config
    written = ["database"] if password_written_out(config.database) else []
    written += [f"blob_options.{key}" for key, value in config.blob_options.items()
                if key in SECRET_OPTIONS and isinstance(value, str) and REFERENCE.fullmatch(value) is None]
    for setting in written:
        report.findings.append(Finding(
            "secret_in_config", "warning", setting, f"a password or secret is written out in {setting} of "
            "inspectloop.yaml, and so in every backup of the workspace",
            "write ${NAME} in its place and set NAME in the environment of every command and service, e.g. "
            "database: postgresql+psycopg://USER:${INSPECTLOOP_DB_PASSWORD}@HOST:5432/DB"))


def _database_answers(workspace: Workspace, report: DoctorReport) -> bool:
    """The server answers (its name and version noted); on SQLite, also its own integrity check."""
    try:
        report.database = f"{workspace.db.ping()} at {workspace.db.url}"
    except WorkspaceError as exc:
        report.findings.append(Finding("database", "problem", "database", exc.message, exc.hint))
        return False
    lines = workspace.db.integrity.integrity_check()  # None on PostgreSQL: the server checks its own pages
    if lines is not None and lines != ["ok"]:
        shown = "; ".join(lines[:5]) + (f"; and {len(lines) - 5} more" if len(lines) > 5 else "")
        report.findings.append(Finding("database", "problem", "database", f"SQLite integrity_check: {shown}",
                                       "restore the workspace from a backup (inspectloop restore BACKUP DEST)"))
    report.checked["database"] = 1
    return True


def _blob_store_answers(workspace: Workspace, report: DoctorReport) -> bool:
    """An object store's bucket answers (a local folder always does); noted in the report."""
    if not isinstance(workspace.blobs, ObjectBlobStore):
        report.blobs = str(workspace.blobs.root)
        return True
    report.blobs = workspace.blobs.url
    try:
        workspace.blobs.check()
    except WorkspaceError as exc:
        report.findings.append(Finding("blob_store", "problem", workspace.blobs.url, exc.message, exc.hint))
        return False
    return True


def _check_hashes(workspace: Workspace, stored: set[str], report: DoctorReport) -> None:
    """Blobs are content-addressed: a blob whose bytes no longer hash to its name has been damaged."""
    for digest in sorted(stored):
        hasher = hashlib.sha256()
        with workspace.blobs.open(digest) as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                hasher.update(block)
        if hasher.hexdigest() != digest:
            report.findings.append(Finding("corrupt_blob", "problem", digest,
                                           f"its bytes hash to {hasher.hexdigest()[:12]}..., not to its name",
                                           RESTORE))
    report.checked["hashed_blobs"] = len(stored)


def _check_temporaries(workspace: Workspace, report: DoctorReport, *, fix: bool, grace_seconds: float) -> None:
    found = workspace.blobs.temporary_files(everywhere=True, grace_seconds=grace_seconds)
    report.checked["temporary_files"] = len(found)
    for temporary in found:
        if not temporary.abandoned:
            report.findings.append(Finding("temporary_file", "warning", str(temporary.path),
                                           f"{temporary.age_seconds:.0f} s old, a live writer may still use it"))
            continue
        fixed = False
        if fix:
            temporary.path.unlink(missing_ok=True)
            fixed = True
        report.findings.append(Finding("temporary_file", "problem", str(temporary.path),
                                       "left by a writer that was killed" + ("; removed" if fixed else ""),
                                       None if fixed else "inspectloop doctor --fix removes it", fixed))
