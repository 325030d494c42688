"""Schema versions: a store written by an older schema is upgraded in place, on both backends.

The fixture ``fixtures/store_v1.sql`` (and its SQLite build ``store_v1.sqlite``) is a store of
the "legacy_registry" component at version 1, from before stores recorded their versions. The
current schema is version 3: migration 2 splits the version text into numeric columns (a data
migration), migration 3 adds a unique index; the current metadata also adds a nullable column
and a new table, which the additive step creates.
"""

from __future__ import annotations

import datetime as _dt
import json
import shutil
import sqlite3
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from kaizenml import StorageError, ValidationError
from kaizenml.storage import (
    JSONText,
    Migration,
    get_engine,
    register_component,
    schema_versions,
)
from kaizenml.storage._migrations import SchemaComponent, upgrade_schema, version_table

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def current_metadata() -> sa.MetaData:
    md = sa.MetaData()
    version_table(md)
    sa.Table(
        "lr_models",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("created", sa.Text, nullable=False),
    )
    sa.Table(
        "lr_versions",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("model_id", sa.Integer, sa.ForeignKey("lr_models.id"), nullable=False),
        sa.Column("version", sa.String(50), nullable=False),
        sa.Column("metrics", JSONText, nullable=False),
        sa.Column("major", sa.Integer),
        sa.Column("minor", sa.Integer),
        sa.Column("patch", sa.Integer),
        sa.Column("description", sa.Text),  # new in the current schema, added in place
        sa.Column("stage", sa.String(20), nullable=False, server_default="none"),
        sa.Index("ix_lr_versions_number", "model_id", "major", "minor", "patch", unique=True),
    )
    sa.Table(
        "lr_audit",  # a table that did not exist in version 1
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("message", sa.Text, nullable=False),
    )
    return md


def make_component(calls: list[int] | None = None) -> SchemaComponent:
    def split_version(conn: sa.Connection) -> None:
        if calls is not None:
            calls.append(2)
        for col in ("major", "minor", "patch"):
            conn.exec_driver_sql(f"ALTER TABLE lr_versions ADD COLUMN {col} INTEGER")
        rows = conn.execute(sa.text("SELECT id, version FROM lr_versions")).all()
        for row_id, text in rows:
            major, minor, patch = (int(p) for p in text.split("."))
            conn.execute(
                sa.text("UPDATE lr_versions SET major=:a, minor=:b, patch=:c WHERE id=:i"),
                {"a": major, "b": minor, "c": patch, "i": row_id},
            )

    def unique_number(conn: sa.Connection) -> None:
        if calls is not None:
            calls.append(3)
        conn.exec_driver_sql(
            "CREATE UNIQUE INDEX ix_lr_versions_number"
            " ON lr_versions (model_id, major, minor, patch)"
        )

    return SchemaComponent(
        name="legacy_registry",
        tables=("lr_models", "lr_versions"),
        migrations=[
            Migration(2, "split version text into major/minor/patch", split_version),
            Migration(3, "unique version number per model", unique_number),
        ],
    )


def _load_fixture_store(name: str, storage_url: str, tmp_path: Path) -> str:
    """Load fixture ``name`` into the test's private store: the committed ``.sqlite`` file on
    SQLite, its ``.sql`` source (one statement per line) on PostgreSQL."""
    if storage_url.startswith("sqlite"):
        shutil.copy(FIXTURES / f"{name}.sqlite", tmp_path / "kaizenml.db")
        return storage_url
    engine = get_engine(storage_url)
    with engine.begin() as conn:
        for line in (FIXTURES / f"{name}.sql").read_text().splitlines():
            if line.strip() and not line.startswith("--"):
                conn.exec_driver_sql(line.replace("{serial_pk}", "SERIAL PRIMARY KEY"))
    return storage_url


@pytest.fixture
def legacy_store(storage_url: str, tmp_path: Path) -> str:
    """The version-1 fixture loaded into the test's private store."""
    return _load_fixture_store("store_v1", storage_url, tmp_path)


def test_sqlite_fixture_matches_its_sql_source() -> None:
    conn = sqlite3.connect(FIXTURES / "store_v1.sqlite")
    tables = sorted(r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'"))
    assert tables == ["lr_models", "lr_versions"]
    cols = [r[1] for r in conn.execute("PRAGMA table_info(lr_versions)")]
    assert cols == ["id", "model_id", "version", "metrics"]
    n_inserts = (FIXTURES / "store_v1.sql").read_text().count("INSERT INTO lr_versions")
    assert conn.execute("SELECT COUNT(*) FROM lr_versions").fetchone()[0] == n_inserts == 5
    conn.close()


def test_old_store_is_upgraded_in_place(legacy_store: str) -> None:
    engine = get_engine(legacy_store)
    assert schema_versions(engine) == {}
    calls: list[int] = []
    versions = upgrade_schema(
        engine, metadata=current_metadata(), components=[make_component(calls)]
    )
    assert versions == {"legacy_registry": 3}
    assert calls == [2, 3]

    inspector = sa.inspect(engine)
    assert {"lr_models", "lr_versions", "lr_audit", "kaizenml_schema_version"} <= set(
        inspector.get_table_names()
    )
    cols = {c["name"] for c in inspector.get_columns("lr_versions")}
    assert {"major", "minor", "patch", "description", "stage"} <= cols

    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT m.name, v.version, v.major, v.minor, v.patch, v.metrics, v.stage,"
                " v.description FROM lr_versions v JOIN lr_models m ON m.id = v.model_id"
                " ORDER BY v.id"
            )
        ).all()
        history = conn.execute(
            sa.text(
                "SELECT component, version, description FROM kaizenml_schema_version"
                " ORDER BY version"
            )
        ).all()
    # Every old row is kept, its numbers split correctly, the new columns defaulted.
    assert [(r[0], r[1]) for r in rows] == [
        ("momentum", "1.0.0"),
        ("momentum", "1.1.0"),
        ("momentum", "2.0.0"),
        ("mean_revert", "1.0.0"),
        ("mean_revert", "1.0.1"),
    ]
    for r in rows:
        assert (r.major, r.minor, r.patch) == tuple(int(p) for p in r.version.split("."))
        assert r.stage == "none" and r.description is None
    assert json.loads(rows[2].metrics) == {"sharpe": 1.75, "drawdown": 0.1}
    assert [(c, v) for c, v, _ in history] == [
        ("legacy_registry", 1),
        ("legacy_registry", 2),
        ("legacy_registry", 3),
    ]
    assert "predates" in history[0][2]

    # Migration 3's unique index is in force.
    with pytest.raises(sa.exc.IntegrityError):
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO lr_versions (id, model_id, version, metrics, major, minor, patch)"
                    " VALUES (99, 1, '1.1.0', '{}', 1, 1, 0)"
                )
            )


def test_upgrade_is_idempotent(legacy_store: str) -> None:
    engine = get_engine(legacy_store)
    calls: list[int] = []
    md = current_metadata()
    upgrade_schema(engine, metadata=md, components=[make_component(calls)])
    upgrade_schema(engine, metadata=md, components=[make_component(calls)])
    assert calls == [2, 3]
    with engine.connect() as conn:
        n = conn.execute(sa.text("SELECT COUNT(*) FROM kaizenml_schema_version")).scalar_one()
    assert n == 3


def test_concurrent_opens_upgrade_once(legacy_store: str) -> None:
    engine = get_engine(legacy_store)
    calls: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def open_store() -> None:
        try:
            barrier.wait()
            upgrade_schema(engine, metadata=current_metadata(), components=[make_component(calls)])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    assert calls == [2, 3]  # the migrations ran exactly once in total
    assert schema_versions(engine) == {"legacy_registry": 3}


def test_fresh_store_is_stamped_at_the_newest_version(storage_url: str) -> None:
    engine = get_engine(storage_url)
    calls: list[int] = []
    upgrade_schema(engine, metadata=current_metadata(), components=[make_component(calls)])
    assert calls == []  # tables were created at the current schema: nothing to migrate
    assert schema_versions(engine) == {"legacy_registry": 3}
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT version FROM kaizenml_schema_version")).all()
    assert [r[0] for r in rows] == [3]


def test_partially_upgraded_store_runs_only_pending_steps(legacy_store: str) -> None:
    engine = get_engine(legacy_store)
    comp = make_component()
    # Version 2 only: an older kaizenml that knew migrations up to 2.
    v2 = SchemaComponent(comp.name, comp.tables, comp.migrations[:1])
    md_v2 = sa.MetaData()
    version_table(md_v2)
    upgrade_schema(engine, metadata=md_v2, components=[v2])
    assert schema_versions(engine) == {"legacy_registry": 2}
    calls: list[int] = []
    upgrade_schema(engine, metadata=current_metadata(), components=[make_component(calls)])
    assert calls == [3]
    assert schema_versions(engine) == {"legacy_registry": 3}


def test_store_from_a_newer_kaizenml_is_refused(legacy_store: str) -> None:
    engine = get_engine(legacy_store)
    upgrade_schema(engine, metadata=current_metadata(), components=[make_component()])
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO kaizenml_schema_version (component, version, description, applied_at)"
                " VALUES ('legacy_registry', 7, 'from the future', CURRENT_TIMESTAMP)"
            )
        )
    with pytest.raises(StorageError, match="version 7, newer than the newest this kaizenml knows"):
        upgrade_schema(engine, metadata=current_metadata(), components=[make_component()])


def test_missing_not_null_column_needs_an_explicit_migration(legacy_store: str) -> None:
    md = current_metadata()
    sa.Table(
        "lr_models",
        md,
        sa.Column("owner", sa.String(50), nullable=False),
        extend_existing=True,
    )
    engine = get_engine(legacy_store)
    with pytest.raises(StorageError, match="lacks the column 'owner'.*explicit Migration"):
        upgrade_schema(engine, metadata=md, components=[make_component()])
    # The failed upgrade rolled back as a whole: still a version-1 store.
    assert schema_versions(engine) == {}
    assert "major" not in {c["name"] for c in sa.inspect(engine).get_columns("lr_versions")}


def test_register_component_validates_numbering() -> None:
    def noop(conn: sa.Connection) -> None:
        return None

    with pytest.raises(ValidationError, match="numbered \\[2, 3\\]"):
        register_component(
            "bad_numbers",
            tables=["x"],
            migrations=[Migration(2, "a", noop), Migration(4, "b", noop)],
        )
    with pytest.raises(ValidationError, match="name must be"):
        register_component("", tables=["x"])


@pytest.fixture
def study_store_before_heartbeats(storage_url: str, tmp_path: Path) -> str:
    """A store whose study tables predate heartbeats, loaded into the test's private store."""
    return _load_fixture_store("optimize_before_heartbeats", storage_url, tmp_path)


def test_study_store_from_before_heartbeats_is_upgraded_and_resumed(
    study_store_before_heartbeats: str,
) -> None:
    from kaizenml.optimize import Categorical, Float, Int, optimize_hyperparameters

    url = study_store_before_heartbeats
    engine = get_engine(url)
    with engine.connect() as conn:
        old = conn.execute(
            sa.text("SELECT number, params_json, value FROM optimize_trials ORDER BY number")
        ).all()
    assert len(old) == 6
    assert "heartbeat" not in {c["name"] for c in sa.inspect(engine).get_columns("optimize_trials")}

    space = {"x": Float(-3, 3), "k": Int(1, 5), "kind": Categorical(["ema", "sma"])}

    def objective(p):  # type: ignore[no-untyped-def]
        return (p["x"] - 1) ** 2 + p["k"] + (p["kind"] == "sma")

    result = optimize_hyperparameters(
        space,
        objective,
        strategy="random",
        seed=3,
        max_trials=10,
        pruner=None,
        storage=url,
        study_name="legacy-study",
        load_if_exists=True,
        retry_failed=1,
        heartbeat_interval=0.5,
    )
    # Upgraded in place: the heartbeat columns and the index exist, the old rows are intact.
    inspector = sa.inspect(engine)
    cols = {c["name"] for c in inspector.get_columns("optimize_trials")}
    assert {"heartbeat", "owner"} <= cols
    assert "ix_optimize_trials_study_state" in {
        ix["name"] for ix in inspector.get_indexes("optimize_trials")
    }
    assert "kaizenml_schema_version" in inspector.get_table_names()
    trials = sorted(result.trials, key=lambda t: t.number)
    assert [t.number for t in trials] == list(range(10))
    for (number, params_json, value), t in zip(old, trials[:6], strict=True):
        assert t.number == number and t.params == json.loads(params_json)
        assert t.value == value and t.state.value == "complete"
    # The study went on from where it stopped, the new trials in the same space.
    for t in trials[6:]:
        assert t.state.value == "complete" and t.value == objective(t.params)
        assert -3 <= t.params["x"] <= 3 and t.params["kind"] in ("ema", "sma")
    assert result.best_value == min(t.value for t in trials)


@pytest.fixture
def versioning_store_before_revisions(storage_url: str, tmp_path: Path) -> str:
    """A store whose model-versioning tables predate history revisions."""
    return _load_fixture_store("versioning_before_history_revisions", storage_url, tmp_path)


def test_versioning_fixture_matches_its_sql_source() -> None:
    name = "versioning_before_history_revisions"
    conn = sqlite3.connect(FIXTURES / f"{name}.sqlite")
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "kz_model_versions" in tables and "kz_model_history_revisions" not in tables
    for table in ("kz_model_versions", "kz_model_deleted_versions"):
        assert "revision" not in [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
    n_inserts = (FIXTURES / f"{name}.sql").read_text().count("INSERT INTO kz_model_versions ")
    assert conn.execute("SELECT COUNT(*) FROM kz_model_versions").fetchone()[0] == n_inserts == 4
    conn.close()


def test_versioning_store_from_before_history_revisions_is_upgraded(
    versioning_store_before_revisions: str, tmp_path: Path
) -> None:
    import numpy as np

    from kaizenml.versioning import ModelVersionManager

    url = versioning_store_before_revisions
    engine = get_engine(url)
    assert "kz_model_history_revisions" not in sa.inspect(engine).get_table_names()
    with engine.connect() as conn:
        old = conn.execute(
            sa.text("SELECT version, description, metrics, tags, created_at FROM kz_model_versions"
                    " WHERE model_name = 'momentum' ORDER BY id DESC")
        ).all()
    assert [r[0] for r in old] == ["1.2.0", "1.1.0", "1.0.0"]

    mgr = ModelVersionManager(url, tmp_path / "artifacts")
    inspector = sa.inspect(engine)
    assert "kz_model_history_revisions" in inspector.get_table_names()
    for table in ("kz_model_versions", "kz_model_deleted_versions"):
        assert "revision" in {c["name"] for c in inspector.get_columns(table)}
        assert f"ix_{table}_revision" in {ix["name"] for ix in inspector.get_indexes(table)}
    history = mgr.get_version_history("momentum")
    utc = _dt.timezone.utc
    assert [(v.version, v.description, v.metrics, v.tags, v.created_at) for v in history] == [
        (r[0], r[1], json.loads(r[2]), json.loads(r[3]), _dt.datetime.fromtimestamp(r[4], utc))
        for r in old
    ]
    assert [v.is_active for v in history] == [True, False, False]
    assert history[1].parent_version == "1.0.0" and history[2].created_by == "ci"

    # Writes after the upgrade number the model's history; a manager that read the old rows
    # (revision NULL, no counter yet) sees them at once. The deleted 1.1.1 stays retired.
    other = ModelVersionManager(url, tmp_path / "artifacts")
    made = other.create_version("momentum", {"w": np.ones(2)}, change_type="bugfix",
                                parent_version="1.1.0")
    assert made.version == "1.1.2"
    other.delete_version("momentum", "1.0.0")
    assert [v.version for v in mgr.get_version_history("momentum")] == ["1.1.2", "1.2.0", "1.1.0"]
    assert [v.version for v in mgr.get_version_history("meanrev")] == ["1.0.0"]
    with engine.connect() as conn:
        revisions = dict(conn.execute(sa.text(
            "SELECT model_name, revision FROM kz_model_history_revisions")).all())
    assert revisions == {"momentum": 2}


@pytest.fixture
def versioning_store_before_deleted_records(storage_url: str, tmp_path: Path) -> str:
    """A store with history revisions whose deletions did not keep the deleted rows."""
    return _load_fixture_store("versioning_before_deleted_records", storage_url, tmp_path)


def test_deleted_records_fixture_matches_its_sql_source() -> None:
    name = "versioning_before_deleted_records"
    conn = sqlite3.connect(FIXTURES / f"{name}.sqlite")
    columns = [r[1] for r in conn.execute("PRAGMA table_info(kz_model_deleted_versions)")]
    assert "revision" in columns and "row_id" not in columns and "record" not in columns
    assert "revision" in [r[1] for r in conn.execute("PRAGMA table_info(kz_model_versions)")]
    n_inserts = (FIXTURES / f"{name}.sql").read_text().count("INSERT INTO kz_model_versions ")
    assert conn.execute("SELECT COUNT(*) FROM kz_model_versions").fetchone()[0] == n_inserts == 4
    assert conn.execute("SELECT model_name, revision FROM kz_model_history_revisions "
                        "ORDER BY model_name").fetchall() == [("meanrev", 1), ("momentum", 5)]
    conn.close()


def test_versioning_store_from_before_deleted_records_is_upgraded(
    versioning_store_before_deleted_records: str, tmp_path: Path
) -> None:
    import numpy as np

    from kaizenml.versioning import ModelVersionManager

    url = versioning_store_before_deleted_records
    engine = get_engine(url)
    have = {c["name"] for c in sa.inspect(engine).get_columns("kz_model_deleted_versions")}
    assert "row_id" not in have and "record" not in have

    mgr = ModelVersionManager(url, tmp_path / "artifacts")
    inspector = sa.inspect(engine)
    have = {c["name"] for c in inspector.get_columns("kz_model_deleted_versions")}
    assert {"row_id", "record"} <= have
    assert "ix_kz_model_deleted_versions_row" in {
        ix["name"] for ix in inspector.get_indexes("kz_model_deleted_versions")
    }
    with engine.connect() as conn:
        old = conn.execute(sa.text(
            "SELECT version, description, metrics, tags, created_at FROM kz_model_versions"
            " WHERE model_name = 'momentum' ORDER BY id DESC")).all()
        # the deletion from before the columns: kept as it was, its number still retired
        assert conn.execute(sa.text(
            "SELECT version, revision, row_id, record FROM kz_model_deleted_versions")).all() \
            == [("1.1.1", 4, None, None)]
    utc = _dt.timezone.utc
    snapshot = [
        (r[0], r[1], json.loads(r[2]), json.loads(r[3]), _dt.datetime.fromtimestamp(r[4], utc))
        for r in old
    ]
    cached = mgr.get_version_history("momentum")  # read through the refresh path later
    unread = ModelVersionManager(url, tmp_path / "artifacts").get_version_history("momentum")
    assert len(unread) == 3 and unread.active_version == "1.2.0"

    # Deletions after the upgrade keep the deleted row; histories read before them still show
    # it, fresh reads do not, and the numbering still skips every retired number.
    other = ModelVersionManager(url, tmp_path / "artifacts")
    other.delete_version("momentum", "1.0.0")
    other.delete_version("momentum", "1.1.0")
    made = other.create_version("momentum", {"w": np.ones(2)}, change_type="bugfix",
                                parent_version="1.2.0")
    assert made.version == "1.2.1"
    assert other.create_version("meanrev", {"w": np.ones(2)}, change_type="data").version \
        == "1.0.1"
    for history in (unread, cached):
        assert [(v.version, v.description, v.metrics, v.tags, v.created_at)
                for v in history] == snapshot
        assert [v.is_active for v in history] == [True, False, False]
        assert history[-1].created_by == "ci" and history[1].parent_version == "1.0.0"
    assert [v.version for v in mgr.get_version_history("momentum")] == ["1.2.1", "1.2.0"]
    assert [v.version for v in ModelVersionManager(url, tmp_path / "artifacts")
            .get_version_history("momentum")] == ["1.2.1", "1.2.0"]
    with engine.connect() as conn:
        kept = dict(conn.execute(sa.text(
            "SELECT version, row_id FROM kz_model_deleted_versions WHERE record IS NOT NULL"
        )).all())
        revision = conn.execute(sa.text(
            "SELECT revision FROM kz_model_history_revisions WHERE model_name = 'momentum'"
        )).scalar_one()
    assert kept == {"1.0.0": 1, "1.1.0": 2} and revision == 8
    # with every version of a model deleted, numbering continues from the retired numbers
    other.delete_version("meanrev", "1.0.0")
    other.delete_version("meanrev", "1.0.1")
    assert other.create_version("meanrev", {"w": np.ones(2)}, change_type="data").version \
        == "1.0.2"
