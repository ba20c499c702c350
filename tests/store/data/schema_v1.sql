-- The schema that inspectloop 0.1.0 (migration step 1) created, as SQLite stores it.
-- Frozen: the v1 step must keep creating exactly this, and v1 workspaces must upgrade from it.

CREATE TABLE annotations (
	id INTEGER NOT NULL,
	sha256 VARCHAR(64) NOT NULL,
	class_name VARCHAR NOT NULL,
	annotator VARCHAR NOT NULL,
	source VARCHAR NOT NULL,
	created_at VARCHAR NOT NULL,
	note TEXT,
	PRIMARY KEY (id),
	FOREIGN KEY(sha256) REFERENCES images (sha256),
	FOREIGN KEY(class_name) REFERENCES classes (name)
);

CREATE TABLE class_references (
	class_name VARCHAR NOT NULL,
	sha256 VARCHAR(64) NOT NULL,
	note TEXT,
	PRIMARY KEY (class_name, sha256),
	FOREIGN KEY(class_name) REFERENCES classes (name),
	FOREIGN KEY(sha256) REFERENCES images (sha256)
);

CREATE TABLE classes (
	name VARCHAR NOT NULL,
	task VARCHAR NOT NULL,
	criterion TEXT NOT NULL,
	severity VARCHAR NOT NULL,
	is_good INTEGER NOT NULL,
	created_at VARCHAR NOT NULL,
	updated_at VARCHAR NOT NULL,
	PRIMARY KEY (name)
);

CREATE TABLE dataset_items (
	version VARCHAR NOT NULL,
	sha256 VARCHAR(64) NOT NULL,
	label VARCHAR NOT NULL,
	split VARCHAR NOT NULL,
	group_key VARCHAR NOT NULL,
	PRIMARY KEY (version, sha256),
	FOREIGN KEY(version) REFERENCES dataset_versions (name),
	FOREIGN KEY(sha256) REFERENCES images (sha256),
	FOREIGN KEY(label) REFERENCES classes (name)
);

CREATE TABLE dataset_versions (
	name VARCHAR NOT NULL,
	parent VARCHAR,
	created_at VARCHAR NOT NULL,
	params JSON NOT NULL,
	summary JSON NOT NULL,
	PRIMARY KEY (name),
	FOREIGN KEY(parent) REFERENCES dataset_versions (name)
);

CREATE TABLE image_sources (
	id INTEGER NOT NULL,
	sha256 VARCHAR(64) NOT NULL,
	original_path TEXT NOT NULL,
	ingest_id INTEGER NOT NULL,
	PRIMARY KEY (id),
	FOREIGN KEY(sha256) REFERENCES images (sha256),
	FOREIGN KEY(ingest_id) REFERENCES ingests (id)
);

CREATE TABLE images (
	sha256 VARCHAR(64) NOT NULL,
	format VARCHAR NOT NULL,
	original_mode VARCHAR NOT NULL,
	working_mode VARCHAR NOT NULL,
	width INTEGER NOT NULL,
	height INTEGER NOT NULL,
	size_bytes INTEGER NOT NULL,
	camera VARCHAR,
	line VARCHAR,
	shift VARCHAR,
	lighting VARCHAR,
	part_id VARCHAR,
	session VARCHAR,
	captured_at VARCHAR,
	source VARCHAR NOT NULL,
	extra JSON NOT NULL,
	brightness FLOAT,
	contrast FLOAT,
	sharpness FLOAT,
	noise FLOAT,
	clipped_fraction FLOAT,
	ingest_id INTEGER NOT NULL,
	ingested_at VARCHAR NOT NULL,
	PRIMARY KEY (sha256),
	FOREIGN KEY(ingest_id) REFERENCES ingests (id)
);

CREATE TABLE ingests (
	id INTEGER NOT NULL,
	source TEXT NOT NULL,
	kind VARCHAR NOT NULL,
	started_at VARCHAR NOT NULL,
	finished_at VARCHAR,
	summary JSON,
	PRIMARY KEY (id)
);

CREATE INDEX ix_annotations_sha256 ON annotations (sha256);

CREATE INDEX ix_image_sources_sha256 ON image_sources (sha256);

CREATE TABLE models (
	id INTEGER NOT NULL,
	run_id VARCHAR NOT NULL,
	variant VARCHAR NOT NULL,
	path TEXT NOT NULL,
	file_sha256 VARCHAR(64) NOT NULL,
	weights_sha256 VARCHAR(64) NOT NULL,
	created_at VARCHAR NOT NULL,
	metadata JSON NOT NULL,
	PRIMARY KEY (id),
	FOREIGN KEY(run_id) REFERENCES runs (id)
);

CREATE TABLE runs (
	id VARCHAR NOT NULL,
	kind VARCHAR NOT NULL,
	status VARCHAR NOT NULL,
	dataset_version VARCHAR NOT NULL,
	config JSON NOT NULL,
	code_version VARCHAR NOT NULL,
	metrics JSON,
	artifacts TEXT NOT NULL,
	started_at VARCHAR NOT NULL,
	finished_at VARCHAR,
	error TEXT,
	PRIMARY KEY (id),
	FOREIGN KEY(dataset_version) REFERENCES dataset_versions (name)
);

