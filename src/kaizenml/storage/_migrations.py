"""Schema versions and in-place upgrades of an existing store.

Called by :func:`kaizenml.storage.ensure_schema` each time a process first opens a database.

A store records, per *component* (a group of tables owned by one domain module, such as the
studies or the model registry), the schema versions applied to it in the table
``kaizenml_schema_version``. Opening a store runs, inside one transaction that holds the store's
schema lock (``BEGIN IMMEDIATE`` on SQLite, a transaction-level advisory lock on PostgreSQL):

1. the pending explicit migrations of every component, in version order, on the tables as they
   are (a store whose component tables exist but which has no version row predates versioning and
   counts as version 1);
2. ``CREATE TABLE`` for every table declared on the metadata that does not exist yet;
3. the additive step: a column declared on the metadata but missing from an existing table is
   added with ``ALTER TABLE ... ADD COLUMN`` when that is safe (the column is nullable or has a
   server default), and a declared index that is missing is created. A missing column that can
   be neither is a :class:`~kaizenml.StorageError` asking for an explicit migration;
4. the version rows of every component are brought up to date.

Because everything happens under one lock in one transaction (DDL is transactional on both
SQLite and PostgreSQL), processes opening the same store at once serialize: the first upgrades,
the others find nothing left to do. A store written by a newer kaizenml (a version above the
newest this one knows) is refused rather than modified.
"""

from __future__ import annotations

import datetime as _dt
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from .._exceptions import StorageError, ValidationError

__all__ = [
    "Migration",
    "SchemaComponent",
    "register_component",
    "registered_components",
    "schema_versions",
    "upgrade_schema",
    "version_table",
]

VERSION_TABLE_NAME = "kaizenml_schema_version"


def version_table(metadata: sa.MetaData) -> sa.Table:
    """The ``kaizenml_schema_version`` table declared on ``metadata`` (declared once)."""
    existing = metadata.tables.get(VERSION_TABLE_NAME)
    if existing is not None:
        return existing
    return sa.Table(
        VERSION_TABLE_NAME,
        metadata,
        sa.Column("component", sa.String(64), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
    )


@dataclass(frozen=True)
class Migration:
    """One ordered schema change of a component, from ``version - 1`` to ``version``.

    ``upgrade`` receives the open connection of the upgrade transaction; it must use it (not
    the engine) so the change commits or rolls back with the version row.
    """

    version: int
    description: str
    upgrade: Callable[[Connection], None]


@dataclass
class SchemaComponent:
    """A group of tables owned by one domain module and the migrations of their schema."""

    name: str
    tables: tuple[str, ...]
    migrations: list[Migration] = field(default_factory=list)

    @property
    def latest(self) -> int:
        return max((m.version for m in self.migrations), default=1)


_COMPONENTS: dict[str, SchemaComponent] = {}


def register_component(
    name: str, *, tables: Iterable[str], migrations: Iterable[Migration] = ()
) -> SchemaComponent:
    """Declare a component's tables and its migrations (version 1 is the first schema).

    Migrations must be numbered 2, 3, ... without gaps. Registering a name again replaces the
    earlier declaration, so a module reloaded in a notebook does not fail.

    Examples
    --------
    >>> from kaizenml.storage import Migration, register_component
    >>> def add_owner_index(conn):
    ...     conn.exec_driver_sql("CREATE INDEX IF NOT EXISTS ix_demo_owner ON demo_items (owner)")
    >>> component = register_component(
    ...     "demo", tables=["demo_items"],
    ...     migrations=[Migration(2, "index demo_items.owner", add_owner_index)])
    >>> component.latest
    2
    """
    if not isinstance(name, str) or not name or len(name) > 64:
        raise ValidationError(
            f"name must be a non-empty string of at most 64 characters, got {name!r}"
        )
    ordered = sorted(migrations, key=lambda m: m.version)
    expected = list(range(2, len(ordered) + 2))
    if [m.version for m in ordered] != expected:
        raise ValidationError(
            f"migrations of component {name!r} must be numbered {expected} without gaps or "
            f"repeats, got {[m.version for m in ordered]}"
        )
    component = SchemaComponent(name=name, tables=tuple(tables), migrations=ordered)
    _COMPONENTS[name] = component
    return component


def registered_components() -> list[SchemaComponent]:
    """The components declared with :func:`register_component`, by name."""
    return [_COMPONENTS[k] for k in sorted(_COMPONENTS)]


def _lock_schema(conn: Connection) -> None:
    # SQLite: the engine's BEGIN IMMEDIATE already holds the write lock. PostgreSQL: DDL alone
    # does not serialize two upgraders (both see a table missing, both create it), so take an
    # advisory lock that is released with the transaction.
    if conn.dialect.name == "postgresql":
        key = zlib.crc32(b"kaizenml.schema") & 0x7FFFFFFF
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


def schema_versions(conn: Connection | Engine) -> dict[str, int]:
    """The applied schema version of each component recorded in a store (empty when none)."""
    if isinstance(conn, Engine):
        with conn.connect() as c:
            return schema_versions(c)
    if not sa.inspect(conn).has_table(VERSION_TABLE_NAME):
        return {}
    table = version_table(sa.MetaData())
    rows = conn.execute(
        sa.select(table.c.component, sa.func.max(table.c.version)).group_by(table.c.component)
    )
    return {component: int(version) for component, version in rows}


def _add_missing_columns(conn: Connection, metadata: sa.MetaData, existed: set[str]) -> None:
    inspector = sa.inspect(conn)
    preparer = conn.dialect.identifier_preparer
    for table in metadata.sorted_tables:
        if table.name not in existed:
            continue
        have = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in have:
                continue
            if not column.nullable and column.server_default is None:
                raise StorageError(
                    f"table {table.name!r} in this store lacks the column {column.name!r}, which "
                    "is NOT NULL without a server default, so it cannot be added in place; the "
                    "component owning the table needs an explicit Migration"
                )
            ddl = sa.schema.CreateColumn(column).compile(dialect=conn.dialect)
            conn.exec_driver_sql(f"ALTER TABLE {preparer.format_table(table)} ADD COLUMN {ddl}")
        have_indexes = {ix["name"] for ix in inspector.get_indexes(table.name)}
        for index in table.indexes:
            if index.name not in have_indexes:
                index.create(conn, checkfirst=True)


def upgrade_schema(
    engine: Engine,
    *,
    metadata: sa.MetaData,
    components: Iterable[SchemaComponent] | None = None,
) -> dict[str, int]:
    """Bring the store behind ``engine`` to the schema of ``metadata``; return the versions.

    See the module docstring for the steps. Safe to call from many processes at once and
    idempotent. ``components`` defaults to every registered component.
    """
    comps = registered_components() if components is None else list(components)
    versions_t = version_table(metadata)
    with engine.begin() as conn:
        _lock_schema(conn)
        existed = set(sa.inspect(conn).get_table_names())
        recorded = schema_versions(conn)

        start: dict[str, int | None] = {}
        for comp in comps:
            current = recorded.get(comp.name)
            if current is None and any(t in existed for t in comp.tables):
                current = 1  # tables from before the store recorded versions
            if current is not None and current > comp.latest:
                raise StorageError(
                    f"this store's {comp.name!r} schema is version {current}, newer than the "
                    f"newest this kaizenml knows ({comp.latest}); upgrade kaizenml to open it"
                )
            start[comp.name] = current
            for migration in comp.migrations:
                if current is not None and current < migration.version:
                    migration.upgrade(conn)

        metadata.create_all(conn, checkfirst=True)
        _add_missing_columns(conn, metadata, existed)

        now = _dt.datetime.now(_dt.timezone.utc)
        final: dict[str, int] = {}
        for comp in comps:
            current = start[comp.name]
            done = (
                set()
                if recorded.get(comp.name) is None
                else set(
                    conn.execute(
                        sa.select(versions_t.c.version).where(versions_t.c.component == comp.name)
                    ).scalars()
                )
            )
            rows = []
            if current is None:
                # A fresh component: its tables were just created at the newest schema.
                rows.append((comp.latest, "created at this version"))
            else:
                if 1 not in done and current == 1 and recorded.get(comp.name) is None:
                    rows.append((1, "initial schema (store predates versioning)"))
                for migration in comp.migrations:
                    if migration.version > current:
                        rows.append((migration.version, migration.description))
            for version, description in rows:
                if version not in done:
                    conn.execute(
                        versions_t.insert().values(
                            component=comp.name,
                            version=version,
                            description=description,
                            applied_at=now,
                        )
                    )
            final[comp.name] = comp.latest
        return final
