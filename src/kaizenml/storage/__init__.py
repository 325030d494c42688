"""The storage layer shared by studies, feature metadata and model versions.

One database URL (``sqlite:///...`` embedded by default, ``postgresql+psycopg://...`` when
several machines share it) through SQLAlchemy Core, and one artifact directory written with
atomic, checksummed files. Domain modules define their own tables on :data:`metadata` and call
:func:`ensure_schema`; policy (what "active" means, how a version is bumped) stays in them.
"""

from __future__ import annotations

from ._engine import (
    JSONText,
    UTCDateTime,
    default_artifact_dir,
    default_storage_url,
    dispose_engine,
    ensure_schema,
    get_engine,
    kaizenml_home,
    metadata,
    read_connection,
    resolve_engine,
    retry_on_conflict,
    transaction_lock,
)
from ._files import (
    atomic_write_bytes,
    atomic_write_text,
    fsync_dir,
    npz_buffers,
    npz_bytes,
    read_npz,
    sha256_file,
    write_npz,
)
from ._migrations import Migration, SchemaComponent, register_component, schema_versions

__all__ = [
    "JSONText",
    "Migration",
    "SchemaComponent",
    "UTCDateTime",
    "atomic_write_bytes",
    "atomic_write_text",
    "default_artifact_dir",
    "default_storage_url",
    "dispose_engine",
    "ensure_schema",
    "fsync_dir",
    "get_engine",
    "kaizenml_home",
    "metadata",
    "npz_buffers",
    "npz_bytes",
    "read_npz",
    "read_connection",
    "register_component",
    "resolve_engine",
    "retry_on_conflict",
    "schema_versions",
    "sha256_file",
    "transaction_lock",
    "write_npz",
]
