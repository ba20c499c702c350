"""Persistence: the workspace database and the content-addressed blob store. The only code that touches them.

One style for every table: a repository per concept (``store/images.py``, ``labels.py``, ``datasets.py``,
``runs.py``, ``criteria.py``, ``registry.py``, ``people.py``, ``predictions.py``, ``review.py``,
``drift.py``, ``cameras.py``, ``recalibration.py``, and ``integrity.py`` for maintenance), reached as an attribute of the database, whose
methods return the domain's typed rows (``inspectloop.domain``), never dicts or SQL rows::

    run = workspace.db.runs.get(run_id)                 # its own transaction
    with workspace.db.transaction() as tx:              # several writes that commit together
        prediction = tx.predictions.add(values, meta)
        tx.review.enqueue(image_sha256=..., reason="uncertain", prediction_id=prediction.id)

Services never see SQL; a schema change comes with a migration (``migrations.py``).
"""

# The database could not be reached or refused a write (services catch this, never SQLAlchemy itself).
from sqlalchemy.exc import SQLAlchemyError as StoreError

from inspectloop.store.base import now_iso
from inspectloop.store.blobs import BlobStore, atomic_write_bytes, atomic_write_text, sha256_bytes
from inspectloop.store.database import Database, DurableWriter, Transaction

__all__ = ["BlobStore", "Database", "DurableWriter", "StoreError", "Transaction", "atomic_write_bytes",
           "atomic_write_text", "now_iso", "sha256_bytes"]
