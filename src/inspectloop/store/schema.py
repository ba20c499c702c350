"""Database tables (SQLAlchemy Core). Only the store package touches them.

Changing a table means adding a migration in ``migrations.py``; never edit a released step.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON, Column, Float, ForeignKey, Integer, MetaData, PrimaryKeyConstraint, String, Table, Text,
)

metadata = MetaData()

schema_migrations = Table(
    "schema_migrations", metadata,
    Column("version", Integer, primary_key=True),
    Column("name", String, nullable=False),
    Column("applied_at", String, nullable=False),
)

ingests = Table(
    "ingests", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", Text, nullable=False),
    Column("kind", String, nullable=False),  # folder | manifest
    Column("started_at", String, nullable=False),
    Column("finished_at", String),
    Column("summary", JSON),
)

images = Table(
    "images", metadata,
    Column("sha256", String(64), primary_key=True),
    Column("format", String, nullable=False),
    Column("original_mode", String, nullable=False),
    Column("working_mode", String, nullable=False),  # L or RGB
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("size_bytes", Integer, nullable=False),
    Column("camera", String), Column("line", String), Column("shift", String), Column("lighting", String),
    Column("part_id", String), Column("session", String), Column("captured_at", String),
    Column("source", String, nullable=False),  # collection | production | review
    Column("extra", JSON, nullable=False, default=dict),
    Column("brightness", Float), Column("contrast", Float), Column("sharpness", Float),
    Column("noise", Float), Column("clipped_fraction", Float),
    Column("ingest_id", Integer, ForeignKey("ingests.id"), nullable=False),
    Column("ingested_at", String, nullable=False),
)

# Every path an image arrived from: duplicates are kept as provenance, the bytes once.
image_sources = Table(
    "image_sources", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("sha256", String(64), ForeignKey("images.sha256"), nullable=False, index=True),
    Column("original_path", Text, nullable=False),
    Column("ingest_id", Integer, ForeignKey("ingests.id"), nullable=False),
)

classes = Table(
    "classes", metadata,
    Column("name", String, primary_key=True),
    Column("task", String, nullable=False),
    Column("criterion", Text, nullable=False),
    Column("severity", String, nullable=False),
    Column("is_good", Integer, nullable=False, default=0),
    Column("created_at", String, nullable=False),
    Column("updated_at", String, nullable=False),
)

class_references = Table(
    "class_references", metadata,
    Column("class_name", String, ForeignKey("classes.name"), nullable=False),
    Column("sha256", String(64), ForeignKey("images.sha256"), nullable=False),
    Column("note", Text),
    PrimaryKeyConstraint("class_name", "sha256"),
)

annotations = Table(
    "annotations", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("sha256", String(64), ForeignKey("images.sha256"), nullable=False, index=True),
    Column("class_name", String, ForeignKey("classes.name"), nullable=False),
    Column("annotator", String, nullable=False),
    Column("source", String, nullable=False),  # import | reviewer | recalibration
    Column("created_at", String, nullable=False),
    Column("note", Text),
)

dataset_versions = Table(
    "dataset_versions", metadata,
    Column("name", String, primary_key=True),
    Column("parent", String, ForeignKey("dataset_versions.name")),
    Column("created_at", String, nullable=False),
    Column("params", JSON, nullable=False),
    Column("summary", JSON, nullable=False),
)

dataset_items = Table(
    "dataset_items", metadata,
    Column("version", String, ForeignKey("dataset_versions.name"), nullable=False),
    Column("sha256", String(64), ForeignKey("images.sha256"), nullable=False),
    Column("label", String, ForeignKey("classes.name"), nullable=False),
    Column("split", String, nullable=False),  # train | val | test
    Column("group_key", String, nullable=False),
    PrimaryKeyConstraint("version", "sha256"),
)

runs = Table(
    "runs", metadata,
    Column("id", String, primary_key=True),
    Column("kind", String, nullable=False),  # train
    Column("status", String, nullable=False),  # running | finished | failed
    Column("dataset_version", String, ForeignKey("dataset_versions.name"), nullable=False),
    Column("config", JSON, nullable=False),
    Column("code_version", String, nullable=False),
    Column("metrics", JSON),
    Column("artifacts", Text, nullable=False),
    Column("started_at", String, nullable=False),
    Column("finished_at", String),
    Column("error", Text),
)

models = Table(
    "models", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String, ForeignKey("runs.id"), nullable=False),
    Column("variant", String, nullable=False),  # fp32 | int8
    Column("path", Text, nullable=False),
    Column("file_sha256", String(64), nullable=False),
    Column("weights_sha256", String(64), nullable=False),
    Column("created_at", String, nullable=False),
    Column("metadata", JSON, nullable=False),
)
