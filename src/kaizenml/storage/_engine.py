"""Engines, the shared schema metadata, portable column types and transaction retries."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
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
from ._migrations import upgrade_schema, version_table

T = TypeVar("T")

#: Every kaizenml table is declared on this one MetaData, so one ``create_all`` makes the schema.
metadata = sa.MetaData()
# The table recording which schema version of each component a store holds.
version_table(metadata)

_ENGINES: dict[tuple[str, int], Engine] = {}
_ENGINES_LOCK = threading.Lock()
_SCHEMA_READY: set[tuple[str, int, tuple[str, ...]]] = set()


class UTCDateTime(sa.types.TypeDecorator[_dt.datetime]):
    """A timestamp stored in UTC and always read back timezone-aware, on every backend.

    PostgreSQL keeps the offset (``timestamp with time zone``); SQLite has no such type and
    would hand back naive values, so values are normalized to UTC on the way in and tagged UTC
    on the way out. Naive datetimes are refused: their meaning depends on the machine.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: _dt.datetime | None, dialect: Any) -> _dt.datetime | None:
        if value is None:
            return None
        if not isinstance(value, _dt.datetime):
            raise KaizenTypeError(f"expected a datetime, got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise StorageError(
                f"naive datetime {value.isoformat()} cannot be stored; attach a time zone "
                "(e.g. datetime.now(timezone.utc))"
            )
        utc = value.astimezone(_dt.timezone.utc)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: Any, dialect: Any) -> _dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=_dt.timezone.utc)
        return value.astimezone(_dt.timezone.utc)


class JSONText(sa.types.TypeDecorator[Any]):
    """A JSON document stored as text (same bytes on SQLite and PostgreSQL).

    Text rather than a native JSON type so a value round-trips exactly as written, key order
    and float repr included, and so non-finite floats (``NaN``, ``Infinity``) survive.
    """

    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        if value is None:
            return None
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)

    def process_result_value(self, value: str | None, dialect: Any) -> Any:
        if value is None:
            return None
        return json.loads(value)


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


# Execution option set by read_connection: the connection only reads.
_READ_ONLY = "kaizenml_read_only"


def _sqlite_on_begin(conn: Any) -> None:
    # BEGIN IMMEDIATE takes the write lock up front, so two writers never both read and then
    # collide on upgrade (the classic SQLite deadlock that busy_timeout cannot resolve). A
    # read-only connection begins DEFERRED instead: under WAL it reads its snapshot beside a
    # writer rather than queueing for the write lock.
    if conn.get_execution_options().get(_READ_ONLY):
        conn.exec_driver_sql("BEGIN")
    else:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def read_connection(engine: Engine) -> sa.Connection:
    """A connection for statements that only read.

    On SQLite its transactions begin ``DEFERRED``: with the write-ahead log they read a
    consistent snapshot while another process writes, instead of waiting for the write lock
    that every other transaction takes up front (``BEGIN IMMEDIATE``). On PostgreSQL it is an
    ordinary connection. Never write through it: a write would have to upgrade the lock and
    could fail on a concurrent writer's commit.

    Examples
    --------
    >>> import sqlalchemy as sa
    >>> from kaizenml.storage import get_engine, read_connection
    >>> with read_connection(get_engine("sqlite://")) as conn:
    ...     conn.execute(sa.text("SELECT 1")).scalar()
    1
    """
    return engine.connect().execution_options(**{_READ_ONLY: True})


_BACKENDS = ("sqlite", "postgresql")


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
        shown = sa_url.render_as_string(hide_password=True)
        backend = sa_url.get_backend_name()
        if backend not in _BACKENDS:
            raise StorageError(
                f"storage={shown!r} uses the {backend!r} backend; kaizenml stores its data in "
                "SQLite ('sqlite:///path/to/file.db') or PostgreSQL "
                "('postgresql+psycopg://user:password@host/dbname')"
            )
        try:
            if backend == "sqlite":
                database = sa_url.database
                if database and database != ":memory:":
                    Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
                engine = sa.create_engine(url, connect_args={"timeout": 30})
                event.listen(engine, "connect", _sqlite_on_connect)
                event.listen(engine, "begin", _sqlite_on_begin)
            else:
                # pre_ping: a pooled connection may have been closed by a restarted server.
                engine = sa.create_engine(url, pool_pre_ping=True, pool_size=4, max_overflow=8)
        except ImportError as exc:
            raise StorageError(
                f"storage={shown!r} needs a database driver that is not installed ({exc}); for "
                "PostgreSQL install kaizenml[postgres]"
            ) from exc
        except OSError as exc:
            raise StorageError(
                f"storage={shown!r}: cannot create the database's folder ({exc})"
            ) from exc
        _ENGINES[key] = engine
        return engine


def dispose_engine(storage: str | Engine) -> None:
    """Close the pooled connections of a URL's (or an engine's) process-wide engine.

    The next :func:`get_engine` for that URL makes a new engine. Useful before deleting a
    database, and to release server connections a long-running process no longer needs.
    """
    with _ENGINES_LOCK:
        for key, engine in list(_ENGINES.items()):
            if engine is storage or key[0] == storage:
                del _ENGINES[key]
                _forget_schema(engine)
                engine.dispose()
        if isinstance(storage, Engine):
            _forget_schema(storage)
            storage.dispose()


def _forget_schema(engine: Engine) -> None:
    for key in [k for k in _SCHEMA_READY if k[1] == id(engine)]:
        _SCHEMA_READY.discard(key)


def resolve_engine(storage: str | Engine | None) -> Engine:
    """Turn a ``storage=`` argument (URL, Engine, or None for the default) into an Engine."""
    if storage is None:
        return get_engine(default_storage_url())
    if isinstance(storage, Engine):
        return storage
    return get_engine(storage)


def ensure_schema(engine: Engine) -> None:
    """Bring the store to the current schema: create missing tables, upgrade older ones.

    Runs the registered migrations (see :func:`register_component`), creates every table
    declared on :data:`metadata` that does not exist yet and adds safe missing columns, all in
    one locked transaction, so concurrent first opens are safe. Done once per engine and set
    of declared tables; a store written by a newer kaizenml raises :class:`StorageError`.

    Examples
    --------
    >>> from kaizenml.storage import ensure_schema, get_engine
    >>> engine = get_engine("sqlite://")
    >>> ensure_schema(engine)
    """
    url = engine.url.render_as_string(hide_password=False)
    key = (url, id(engine), tuple(sorted(metadata.tables)))
    if key in _SCHEMA_READY:
        return
    try:
        retry_on_conflict(lambda: upgrade_schema(engine, metadata=metadata))
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        # the first connection of a store: a server that does not answer, a refused login, a
        # database file that cannot be opened
        shown = engine.url.render_as_string(hide_password=True)
        raise StorageError(f"cannot open storage={shown!r}: {exc.orig or exc}") from exc
    _SCHEMA_READY.add(key)


def transaction_lock(conn: sa.Connection, key: str) -> None:
    """Serialize the transactions that take the same ``key`` lock, until each one ends.

    Call it first in a transaction that reads a value and writes something derived from it
    (the next version number of a model, the next trial number of a study), so concurrent
    writers take turns instead of both deriving from the same read. On PostgreSQL this is a
    transaction-level advisory lock on a 64-bit hash of ``key`` (released at commit or
    rollback; other keys are not blocked). On SQLite it is a no-op: the engine's
    ``BEGIN IMMEDIATE`` already holds the database's single write lock.

    Examples
    --------
    >>> from kaizenml.storage import get_engine, transaction_lock
    >>> engine = get_engine("sqlite://")
    >>> with engine.begin() as conn:
    ...     transaction_lock(conn, "model:momentum")
    """
    if not isinstance(key, str) or not key:
        raise KaizenTypeError(f"key must be a non-empty str, got {key!r}")
    if conn.dialect.name == "postgresql":
        digest = hashlib.sha256(key.encode("utf-8")).digest()
        conn.execute(
            sa.text("SELECT pg_advisory_xact_lock(:k)"),
            {"k": int.from_bytes(digest[:8], "big", signed=True)},
        )


def _is_unique_violation(exc: IntegrityError) -> bool:
    # Only a duplicate key is a race another writer won (re-reading resolves it); a foreign-key,
    # NOT NULL or CHECK violation would fail the same way on every attempt.
    orig = exc.orig
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)  # psycopg 3 / 2
    if code is not None:
        return bool(code == "23505")  # unique_violation
    name = getattr(orig, "sqlite_errorname", None)  # Python >= 3.11
    if name is not None:
        return name in ("SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY")
    text = str(orig).lower()
    return "unique constraint" in text or "duplicate key" in text


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, IntegrityError):
        return _is_unique_violation(exc)
    if isinstance(exc, OperationalError):
        # A connection lost inside a transaction is not retried: if it was lost during COMMIT
        # the transaction may have been committed, and running it again would do its work
        # twice. (A pooled connection that died while idle is replaced before use: pre-ping.)
        text = str(exc).lower()
        return any(
            s in text
            for s in (
                "locked",
                "busy",
                "deadlock",
                "could not serialize",
                "already exists",
            )
        )
    if isinstance(exc, DBAPIError):
        return "already exists" in str(exc).lower()
    return False


def retry_on_conflict(fn: Callable[[], T], *, attempts: int = 50, base_delay: float = 0.005) -> T:
    """Run ``fn`` (one whole transaction), retrying on lock contention and unique conflicts.

    Other integrity errors (foreign key, NOT NULL, CHECK) are not transient and raise at once.

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
