"""Copy every row of one workspace database into another: a PostgreSQL database into a backup's SQLite
file (one consistent snapshot), and a backup's file back into an empty PostgreSQL database.

Both sides carry the same migrated schema, so rows are copied table by table in foreign-key order,
column by name. The source is read inside one ``REPEATABLE READ`` transaction on PostgreSQL: every
table as of the same moment, while services keep writing. The target is written in one transaction:
a failed copy leaves it as empty as it was. Serial ids are copied as they are, and PostgreSQL's
sequences are moved past them so new rows do not collide.
"""

from __future__ import annotations

from sqlalchemy import Connection, Engine, Integer, func, insert, select, text

from inspectloop.store import schema as s

BATCH = 2000  # rows per INSERT round trip


def copy_rows(source: Engine, target: Engine) -> dict[str, int]:
    """Copy every table's rows from ``source`` into the migrated ``target`` (its own rows replaced); rows per table."""
    copied: dict[str, int] = {}
    with source.connect() as reader:
        if reader.dialect.name == "postgresql":
            reader = reader.execution_options(isolation_level="REPEATABLE READ")
        with reader.begin(), target.begin() as writer:
            for table in reversed(s.metadata.sorted_tables):  # the target's migration rows go first
                writer.execute(table.delete())
            for table in s.metadata.sorted_tables:
                copied[table.name] = 0
                result = reader.execution_options(stream_results=True).execute(select(table))
                for rows in result.mappings().partitions(BATCH):
                    writer.execute(insert(table), [dict(row) for row in rows])
                    copied[table.name] += len(rows)
            if writer.dialect.name == "postgresql":
                _advance_sequences(writer)
    return copied


def rows_outside_migrations(engine: Engine) -> int:
    """Rows in every table but the schema's own record (0: a database that holds no workspace data)."""
    with engine.connect() as conn:
        present = set(conn.dialect.get_table_names(conn))
        return sum(int(conn.execute(select(func.count()).select_from(table)).scalar_one())
                   for table in s.metadata.sorted_tables if table.name in present and table.name != "schema_migrations")


def _advance_sequences(conn: Connection) -> None:
    """Each serial id's sequence set past the largest id copied (else the next insert reuses id 1)."""
    for table in s.metadata.sorted_tables:
        key = list(table.primary_key.columns)
        if len(key) != 1 or not isinstance(key[0].type, Integer):
            continue
        column = key[0].name
        conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table.name}', '{column}'), "
                          f"COALESCE((SELECT MAX({column}) FROM {table.name}), 0) + 1, false) "
                          f"WHERE pg_get_serial_sequence('{table.name}', '{column}') IS NOT NULL"))
