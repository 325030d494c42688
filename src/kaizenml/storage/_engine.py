"""Engines, the shared schema metadata and transaction retries."""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from .._exceptions import KaizenTypeError, StorageError

T = TypeVar("T")

#: Every kaizenml table is declared on this one MetaData, so one ``create_all`` makes the schema.
metadata = sa.MetaData()

_ENGINES: dict[tuple[str, int], Engine] = {}
_ENGINES_LOCK = threading.Lock()
_SCHEMA_READY: set[tuple[str, int, frozenset[str]]] = set()


def kaizenml_home() -> Path:
    """The folder for embedded state: ``$KAIZENML_HOME`` or ``~/.kaizenml``."""
    home = os.environ.get("KAIZENML_HOME")
    path = Path(home).expanduser() if home else Path.home() / ".kaizenml"
    return path


def default_storage_url() -> str:
    """The embedded SQLite database inside :func:`kaizenml_home`."""
    home = kaizenml_home()
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home / 'kaizenml.db'}"


def default_artifact_dir() -> Path:
    """The artifact folder inside :func:`kaizenml_home`."""
    path = kaizenml_home() / "artifacts"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run beside one writer; the busy timeout makes writers queue instead of
    # failing at once when several processes share the file.
    dbapi_connection.isolation_level = None  # let SQLAlchemy's BEGIN below control transactions
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_on_begin(conn: Any) -> None:
    # BEGIN IMMEDIATE takes the write lock up front, so two writers never both read and then
    # collide on upgrade (the classic SQLite deadlock that busy_timeout cannot resolve).
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def get_engine(url: str) -> Engine:
    """Return the process-wide engine for ``url`` (one per URL and process)."""
    if not isinstance(url, str):
        raise KaizenTypeError(f"storage must be a database URL string, got {type(url).__name__}")
    key = (url, os.getpid())
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is not None:
            return engine
        try:
            sa_url = sa.engine.make_url(url)
        except sa.exc.ArgumentError as exc:
            raise StorageError(
                f"storage={url!r} is not a database URL; use e.g. 'sqlite:///path/to/file.db' "
                "or 'postgresql+psycopg://user:password@host/dbname'"
            ) from exc
        if sa_url.get_backend_name() == "sqlite":
            database = sa_url.database
            if database and database != ":memory:":
                Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            engine = sa.create_engine(url, connect_args={"timeout": 30})
            event.listen(engine, "connect", _sqlite_on_connect)
            event.listen(engine, "begin", _sqlite_on_begin)
        else:
            engine = sa.create_engine(url, pool_pre_ping=True)
        _ENGINES[key] = engine
        return engine


def resolve_engine(storage: str | Engine | None) -> Engine:
    """Turn a ``storage=`` argument (URL, Engine, or None for the embedded default) into an Engine."""
    if storage is None:
        return get_engine(default_storage_url())
    if isinstance(storage, Engine):
        return storage
    return get_engine(storage)


def ensure_schema(engine: Engine) -> None:
    """Create every table declared on :data:`metadata` that does not exist yet."""
    # the table set is part of the key: a domain module imported later adds its tables to
    # `metadata`, and they must be created on an engine that was already set up without them
    key = (str(engine.url), id(engine), frozenset(metadata.tables))
    if key in _SCHEMA_READY:
        return
    retry_on_conflict(lambda: metadata.create_all(engine, checkfirst=True))
    _SCHEMA_READY.add(key)


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, IntegrityError):
        return True
    if isinstance(exc, OperationalError):
        text = str(exc).lower()
        return any(
            s in text
            for s in ("locked", "busy", "deadlock", "could not serialize", "already exists")
        )
    if isinstance(exc, DBAPIError):
        return "already exists" in str(exc).lower()
    return False


def retry_on_conflict(
    fn: Callable[[], T], *, attempts: int = 50, base_delay: float = 0.005
) -> T:
    """Run ``fn`` (one whole transaction), retrying on lock contention and unique conflicts.

    ``fn`` must be idempotent as a transaction: it re-reads what it needs on every attempt.
    """
    for attempt in range(attempts):
        try:
            return fn()
        except (OperationalError, IntegrityError, DBAPIError) as exc:
            if attempt == attempts - 1 or not _is_transient(exc):
                raise
            time.sleep(base_delay * (1.5 ** min(attempt, 12)) * (0.5 + random.random()))
    raise AssertionError("unreachable")
