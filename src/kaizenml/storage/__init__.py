"""The storage layer shared by studies, feature metadata and model versions.

One database URL (``sqlite:///...`` embedded by default, ``postgresql+psycopg://...`` when
several machines share it) through SQLAlchemy Core, and one artifact directory written with
atomic, checksummed files. Domain modules define their own tables on :data:`metadata` and call
:func:`ensure_schema`; policy (what "active" means, how a version is bumped) stays in them.
"""

from __future__ import annotations

from ._engine import (
    default_artifact_dir,
    default_storage_url,
    ensure_schema,
    get_engine,
    kaizenml_home,
    metadata,
    resolve_engine,
    retry_on_conflict,
)
from ._files import atomic_write_bytes, atomic_write_text, fsync_dir, sha256_file

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "default_artifact_dir",
    "default_storage_url",
    "ensure_schema",
    "fsync_dir",
    "get_engine",
    "kaizenml_home",
    "metadata",
    "resolve_engine",
    "retry_on_conflict",
    "sha256_file",
]
