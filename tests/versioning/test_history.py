"""The lazy version history: same records and order as building every record eagerly, kept up to
date across managers and processes by the revision counter, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from kaizenml import KaizenTypeError, NotFoundError, StateError, ValidationError
from kaizenml.storage import dispose_engine, get_engine
from kaizenml.versioning import ModelVersion, ModelVersionManager, Version, VersionHistory
from kaizenml.versioning._schema import history_revisions, model_versions

W = {"w": np.arange(3.0)}
CHANGES = ["retrain", "bugfix", "hyperparameter", "data", "architecture", "retrain", "bugfix"]


def eager_history(engine: sa.Engine, root: Path, name: str) -> list[ModelVersion]:
    """The records as the eager code path built them, from a plain query of the tables."""
    mv = model_versions
    with engine.connect() as conn:
        active = conn.execute(
            sa.text("SELECT version FROM kz_model_active_versions WHERE model_name = :n"),
            {"n": name},
        ).scalar_one_or_none()
        rows = conn.execute(
            sa.select(mv).where(mv.c.model_name == name).order_by(mv.c.id.desc())
        ).all()
    return [
        ModelVersion(
            model_name=r.model_name, version=r.version, change_type=r.change_type,
            parent_version=r.parent_version, description=r.description,
            created_by=r.created_by,
            created_at=datetime.fromtimestamp(r.created_at, tz=timezone.utc),
            metrics=json.loads(r.metrics), tags=json.loads(r.tags),
            artifact_path=str(root / r.artifact_path), checksum=r.checksum,
            is_active=r.version == active, serializer=r.serializer,
        )
        for r in rows
    ]


@pytest.fixture
def store(storage_url: str, tmp_path: Path) -> tuple[str, Path]:
    return storage_url, tmp_path / "artifacts"


@pytest.fixture
def other_engine(storage_url: str, tmp_path: Path) -> Iterator[sa.Engine]:
    """A second engine on the same store (its own connections), standing in for another
    process."""
    if storage_url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path}/./kaizenml.db"
        yield get_engine(url)
        dispose_engine(url)
    else:
        engine = sa.create_engine(storage_url)
        yield engine
        engine.dispose()


def _fill(mgr: ModelVersionManager, name: str, n: int, rng: np.random.Generator) -> list[str]:
    made = []
    for i in range(n):
        parent = made[int(rng.integers(len(made)))] if made and i % 9 == 0 else None
        v = mgr.create_version(
            name, W, change_type=CHANGES[i % len(CHANGES)], parent_version=parent,
            description=f"run {i} \u00e9\x1f\n" if i % 5 == 0 else "",
            created_by="ci" if i % 2 else "",
            metrics={"sharpe": float(rng.normal()), "max_drawdown": float(rng.random())}
            if i % 3 else {},
            tags={"universe": "sp500" if i % 2 else "nasdaq", "i": str(i)} if i % 4 else {},
        )
        made.append(v.version)
    return made


def _add_prereleases(engine: sa.Engine, name: str) -> None:
    # Rows with pre-release and build metadata as an external tool could write them (the
    # manager bumps only release numbers), without a revision like rows of older stores.
    rows = []
    for k, text in enumerate(["9.0.0-rc.1", "9.0.0-alpha.2+build.7", "9.0.0+exp.sha.5114f85"]):
        number = Version.parse(text)
        rows.append({
            "model_name": name, "version": text, "major": number.major, "minor": number.minor,
            "patch": number.patch, "change_type": "architecture", "parent_version": None,
            "description": "pre-release", "created_by": "tool", "created_at": 1.7e9 + k + 0.125,
            "metrics": json.dumps({"sharpe": 0.1 * k}), "tags": json.dumps({"pre": "yes"}),
            "artifact_path": f"{name}/{text}", "checksum": "ab" * 32, "serializer": None,
        })
    with engine.begin() as conn:
        conn.execute(sa.insert(model_versions), rows)


def check_equal(history: VersionHistory, expected: list[ModelVersion]) -> None:
    assert isinstance(history, VersionHistory) and len(history) == len(expected)
    # item by item, in both directions and by index, then as whole sequences
    for i, want in enumerate(expected):
        assert history[i] == want, i
        assert history[i - len(expected)] == want
    assert list(history) == expected and history == expected and expected == history
    assert list(reversed(history)) == expected[::-1]
    assert history[::-1] == expected[::-1] and history[3:40:7] == expected[3:40:7]
    assert history[5:9] == expected[5:9] and isinstance(history[5:9], VersionHistory)


def test_lazy_history_equals_eager_records(store: tuple[str, Path]) -> None:
    url, root = store
    mgr = ModelVersionManager(url, root)
    rng = np.random.default_rng(7)
    made = _fill(mgr, "m", 150, rng)
    _fill(mgr, "other", 5, rng)
    mgr.set_active_version("m", made[40])
    for v in made[10:130:9]:  # deleted versions leave gaps in the history
        mgr.delete_version("m", v)
    _add_prereleases(mgr.engine, "m")

    expected = eager_history(mgr.engine, mgr.artifact_root, "m")
    fresh = ModelVersionManager(url, root)  # nothing read yet: the full read
    history = fresh.get_version_history("m")
    check_equal(history, expected)
    # newest first: the pre-release rows were inserted last; ids strictly decreasing
    assert [v.version for v in history[:3]] == [
        "9.0.0+exp.sha.5114f85", "9.0.0-alpha.2+build.7", "9.0.0-rc.1"
    ]
    assert history[3].version == made[-1] and history[-1].version == "1.0.0"
    assert len(history) == 150 - 14 + 3
    assert sum(v.is_active for v in history) == 1 and history.active_version == made[40]
    assert all(v.model_name == "m" for v in history)
    # records agree with the single-version query (an independent code path)
    for v in history[::10]:
        assert fresh.get_version("m", v.version) == v
    # list-like behaviour: membership, index, count, a helpful repr, pickling, hashing refused
    target = history[17]
    assert target in history and history.index(target) == 17 and history.count(target) == 1
    assert fresh.get_version("other", "1.0.0") not in history
    assert "not a version" not in history  # type: ignore[comparison-overlap]
    text = repr(history)
    assert "VersionHistory(model_name='m', 139 versions" in text
    assert "newest='9.0.0+exp.sha.5114f85', oldest='1.0.0'" in text and made[40] in text
    assert pickle.loads(pickle.dumps(history)) == expected
    with pytest.raises(TypeError):
        hash(history)
    with pytest.raises(IndexError):
        history[len(expected)]
    with pytest.raises(TypeError):
        history["1.0.0"]  # type: ignore[call-overload]
    assert history != expected[:-1] and history != expected[::-1]
    # limit: the newest ones, same records
    for n in (1, 7, 500):
        page = fresh.get_version_history("m", limit=n)
        check_equal(page, expected[:n])

    # the same manager after more writes reads only the change, and agrees with eager again
    mgr.delete_version("m", made[3])
    more = _fill(mgr, "m", 4, rng)
    fresh.set_active_version("m", more[1])
    expected = eager_history(mgr.engine, mgr.artifact_root, "m")
    for reader in (fresh, mgr, ModelVersionManager(url, root)):
        check_equal(reader.get_version_history("m"), expected)
    assert fresh.get_version_history("m")[2].is_active
    # an earlier history is a snapshot: later writes did not change it
    assert len(history) == 139 and history[3].version == made[-1]


def test_other_manager_writes_are_visible_at_once(
    store: tuple[str, Path], other_engine: sa.Engine
) -> None:
    url, root = store
    mine = ModelVersionManager(url, root)
    theirs = ModelVersionManager(other_engine, root)
    assert theirs.engine is not mine.engine
    made = _fill(mine, "m", 6, np.random.default_rng(1))
    assert [v.version for v in mine.get_version_history("m")] == made[::-1]

    created = theirs.create_version("m", W, change_type="architecture", tags={"by": "them"})
    history = mine.get_version_history("m")
    assert history[0] == created and len(history) == 7
    # the records built before are reused behind the new one, and still equal the eager ones
    check_equal(history, eager_history(mine.engine, root, "m"))
    assert history[1] is mine.get_version_history("m")[1]
    theirs.delete_version("m", made[2])
    theirs.set_active_version("m", made[4])
    history = mine.get_version_history("m")
    assert [v.version for v in history] == [created.version] + [
        v for v in made[::-1] if v != made[2]
    ]
    assert [v.version for v in history if v.is_active] == [made[4]]
    check_equal(history, eager_history(mine.engine, root, "m"))
    # the other side's history of the same store agrees
    assert theirs.get_version_history("m") == history

    # all versions gone: NotFoundError, also from a manager that had them cached
    with other_engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM kz_model_active_versions")
    for v in [v.version for v in history]:
        theirs.delete_version("m", v)
    with pytest.raises(NotFoundError, match="'m' has no versions"):
        mine.get_version_history("m")
    again = theirs.create_version("m", W, change_type="retrain")
    assert [v.version for v in mine.get_version_history("m")] == [again.version]


def test_writes_from_another_process_are_visible(
    db_url: str, art_root: Path, child, manager: ModelVersionManager  # type: ignore[no-untyped-def]
) -> None:
    made = _fill(manager, "m", 3, np.random.default_rng(2))
    assert len(manager.get_version_history("m")) == 3
    proc = child(
        """
        import sys
        import numpy as np
        from kaizenml.versioning import ModelVersionManager
        mgr = ModelVersionManager(sys.argv[1], sys.argv[2])
        v = mgr.create_version("m", {"w": np.zeros(2)}, change_type="bugfix",
                               metrics={"sharpe": 3.5})
        mgr.delete_version("m", sys.argv[3])
        print(v.version)
        """,
        db_url, str(art_root), made[0],
    )
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    history = manager.get_version_history("m")
    assert [v.version for v in history] == [out.strip(), made[2], made[1]]
    assert history[0].metrics == {"sharpe": 3.5}
    check_equal(history, eager_history(manager.engine, art_root, "m"))


def test_counter_going_back_rereads_everything(manager: ModelVersionManager) -> None:
    made = _fill(manager, "m", 3, np.random.default_rng(3))
    assert len(manager.get_version_history("m")) == 3
    # A store swapped for another under the same URL: rows changed, counter lower than seen.
    with manager.engine.begin() as conn:
        conn.execute(sa.delete(history_revisions))
        conn.execute(sa.update(model_versions).where(model_versions.c.version == made[1])
                     .values(description="rewritten"))
    history = manager.get_version_history("m")
    assert history[1].description == "rewritten"
    check_equal(history, eager_history(manager.engine, manager.artifact_root, "m"))


def test_bad_input_and_missing_model(manager: ModelVersionManager) -> None:
    with pytest.raises(NotFoundError, match="'nope' has no versions"):
        manager.get_version_history("nope")
    with pytest.raises(NotFoundError, match="'nope' has no versions"):
        manager.get_version_history("nope", limit=3)
    with pytest.raises(ValidationError, match="model_name"):
        manager.get_version_history("../etc")
    with pytest.raises(KaizenTypeError, match="model_name"):
        manager.get_version_history(3)  # type: ignore[arg-type]
    manager.create_version("m", W, change_type="retrain")
    with pytest.raises(ValidationError, match="limit"):
        manager.get_version_history("m", limit=0)
    with pytest.raises(KaizenTypeError, match="limit"):
        manager.get_version_history("m", limit="5")  # type: ignore[arg-type]


def test_refreshes_during_concurrent_writes_stay_consistent(
    store: tuple[str, Path], other_engine: sa.Engine
) -> None:
    import threading

    url, root = store
    reader = ModelVersionManager(url, root)
    writer = ModelVersionManager(other_engine, root)
    seed = _fill(writer, "m", 4, np.random.default_rng(4))
    reader.get_version_history("m")
    errors: list[BaseException] = []

    def create(n: int) -> None:
        try:
            for _ in range(n):
                writer.create_version("m", W, change_type="bugfix")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def delete() -> None:
        try:
            for v in seed[:3]:
                writer.delete_version("m", v)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(8,)) for _ in range(2)]
    threads.append(threading.Thread(target=delete))
    for t in threads:
        t.start()
    seen = 0
    while any(t.is_alive() for t in threads) or seen < 3:
        history = reader.get_version_history("m")
        versions = [v.version for v in history]
        assert len(set(versions)) == len(versions)
        ids = list(history._ids)
        assert ids == sorted(ids, reverse=True)
        seen += 1
    for t in threads:
        t.join()
    assert not errors, errors
    final = reader.get_version_history("m")
    assert len(final) == 4 - 3 + 16
    check_equal(final, eager_history(reader.engine, root, "m"))


# --- lazy, chunked loading ------------------------------------------------------------------
@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> int:
    """Chunks of 7 items (blocks up to 28 when iterating), so a few hundred versions span
    dozens of chunk queries."""
    from kaizenml.versioning import _history

    monkeypatch.setattr(_history, "CHUNK_SIZE", 7)
    monkeypatch.setattr(_history, "MAX_BLOCK", 28)
    return 7


def _bulk_rows(engine: sa.Engine, name: str, n: int, start: int) -> None:
    # Rows written in bulk as an older kaizenml (no revision) or an external tool would.
    rows = []
    for i in range(start, start + n):
        major, minor = 1 + i // 100, i % 100
        text = f"{major}.{minor}.0"
        rows.append({
            "model_name": name, "version": text, "major": major, "minor": minor, "patch": 0,
            "change_type": "retrain", "parent_version": None, "description": f"bulk {i}",
            "created_by": "tool", "created_at": 1.6e9 + i / 8,
            "metrics": json.dumps({"sharpe": i / 100}) if i % 3 else "{}",
            "tags": json.dumps({"i": str(i)}) if i % 2 else "{}",
            "artifact_path": f"{name}/{text}", "checksum": "cd" * 32, "serializer": None,
        })
    with engine.begin() as conn:
        conn.execute(sa.insert(model_versions), rows)


def _row_id(engine: sa.Engine, name: str, version: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(
            sa.select(model_versions.c.id).where(model_versions.c.model_name == name,
                                                 model_versions.c.version == version)
        ).scalar_one())


def test_chunked_history_equals_eager_records(
    store: tuple[str, Path], small_chunks: int
) -> None:
    url, root = store
    mgr = ModelVersionManager(url, root)
    _bulk_rows(mgr.engine, "m", 260, 0)
    rng = np.random.default_rng(11)
    made = _fill(mgr, "m", 20, rng)
    _bulk_rows(mgr.engine, "other", 30, 0)  # another model's ids interleave in the id ranges
    _add_prereleases(mgr.engine, "m")
    _fill(mgr, "m", 5, rng)
    mgr.set_active_version("m", "2.50.0", verify=False)  # rows inserted without artifacts
    for v in ["1.0.0", "1.7.0", "1.8.0", "2.13.0", "3.59.0", made[4], made[5]]:
        mgr.delete_version("m", v)
    expected = eager_history(mgr.engine, root, "m")
    assert len(expected) == 260 + 20 + 3 + 5 - 7

    counted: list[str] = []
    sa.event.listen(mgr.engine, "before_cursor_execute",
                    lambda *args: counted.append(args[2]) if "SELECT" in args[2] else None)
    history = ModelVersionManager(url, root).get_version_history("m")
    n_first = len(counted)
    assert n_first == 1 and len(history) == len(expected)
    assert history[100] == expected[100]
    assert len(counted) == n_first + 1  # one chunk query (no deletions in that chunk)
    # every access path against the eager records, several chunks at a time
    check_equal(history, expected)
    assert history._rows.count(None) == 0
    # a second, fresh history iterated first, then read from the end, then sliced
    again = ModelVersionManager(url, root).get_version_history("m")
    assert [again[i] for i in range(len(expected) - 1, -1, -1)] == expected[::-1]
    third = ModelVersionManager(url, root).get_version_history("m")
    assert third[50:120:3] == expected[50:120:3] and list(third) == expected
    # membership and pickling load what they need
    fourth = ModelVersionManager(url, root).get_version_history("m")
    assert expected[200] in fourth and fourth.index(expected[200]) == 200
    assert pickle.loads(pickle.dumps(ModelVersionManager(url, root).get_version_history("m"))) \
        == expected
    assert "oldest='1.1.0'" in repr(ModelVersionManager(url, root).get_version_history("m"))


def test_history_is_a_snapshot_of_its_read(
    store: tuple[str, Path], other_engine: sa.Engine, small_chunks: int
) -> None:
    url, root = store
    mgr = ModelVersionManager(url, root)
    _bulk_rows(mgr.engine, "m", 60, 0)
    made = _fill(mgr, "m", 8, np.random.default_rng(5))
    mgr.set_active_version("m", "1.30.0", verify=False)  # rows inserted without artifacts
    expected = eager_history(mgr.engine, root, "m")
    newest, oldest = expected[0].version, expected[-1].version
    newest_id = _row_id(mgr.engine, "m", newest)

    history = ModelVersionManager(url, root).get_version_history("m")
    cached = mgr.get_version_history("m")  # the same snapshot through the refresh path
    assert history[2] == expected[2] and history[30] == expected[30]  # two chunks loaded
    loaded = [i for i, row in enumerate(history._rows) if row is not None]
    assert 2 in loaded and 30 in loaded and len(loaded) < len(expected) // 2

    theirs = ModelVersionManager(other_engine, root)
    doomed = [newest, oldest, expected[3].version, expected[29].version,  # loaded chunks
              expected[45].version, expected[46].version, made[1]]         # unloaded chunks
    for v in doomed:
        theirs.delete_version("m", v)
    created = [theirs.create_version("m", W, change_type="bugfix", description=f"new {i}")
               for i in range(3)]
    if url.startswith("sqlite"):
        # SQLite gave the deleted newest row's id to a new version: the history must still
        # show the deleted one at that id.
        assert _row_id(mgr.engine, "m", created[0].version) == newest_id
    assert not {c.version for c in created} & set(doomed)  # retired numbers stay retired
    theirs.set_active_version("m", created[1].version)

    for snapshot in (history, cached):
        assert len(snapshot) == len(expected) and snapshot.active_version == "1.30.0"
        for i, want in enumerate(expected):
            assert snapshot[i] == want, i
        assert list(snapshot) == expected and snapshot[0].version == newest
    assert history[-1].version == oldest and history[-1].description == "bulk 0"

    after = eager_history(mgr.engine, root, "m")
    assert [v.version for v in after[:3]] == [c.version for c in created[::-1]]
    assert not {v.version for v in after} & set(doomed)
    for reader in (mgr, ModelVersionManager(url, root)):
        fresh = reader.get_version_history("m")
        check_equal(fresh, after)
        assert [v.version for v in fresh if v.is_active] == [created[1].version]
    # the snapshots did not move
    assert list(history) == expected and list(cached) == expected


def test_history_outlives_its_manager(store: tuple[str, Path], small_chunks: int) -> None:
    import gc
    import weakref

    url, root = store
    mgr = ModelVersionManager(url, root)
    _bulk_rows(mgr.engine, "m", 40, 0)
    _fill(mgr, "m", 3, np.random.default_rng(6))
    expected = eager_history(mgr.engine, root, "m")
    history = ModelVersionManager(url, root).get_version_history("m")
    reader = ModelVersionManager(url, root)
    orphan = reader.get_version_history("m")
    gone = weakref.ref(reader)
    del reader
    gc.collect()
    assert gone() is None
    # the pooled connections are closed too: the history opens new ones through its engine
    dispose_engine(mgr.engine)
    mgr.delete_version("m", expected[20].version)
    assert list(history) == expected and list(orphan) == expected


def test_deletion_without_a_record_is_reported(
    store: tuple[str, Path], small_chunks: int
) -> None:
    url, root = store
    mgr = ModelVersionManager(url, root)
    _bulk_rows(mgr.engine, "m", 30, 0)
    history = ModelVersionManager(url, root).get_version_history("m")
    # A deletion as a kaizenml from before deleted-row records wrote it: no row id, no record.
    with mgr.engine.begin() as conn:
        conn.execute(sa.delete(model_versions).where(model_versions.c.version == "1.5.0"))
        conn.execute(sa.text(
            "INSERT INTO kz_model_deleted_versions (model_name, version, major, minor, patch,"
            " deleted_at, revision) VALUES ('m', '1.5.0', 1, 5, 0, 0, 1)"))
        conn.execute(sa.insert(history_revisions).values(model_name="m", revision=1))
    assert history[0].version == "1.29.0"  # other chunks load
    with pytest.raises(StateError, match=r"'m' read at revision 0 .* read the history again"):
        history[24]
    # the cached reader cannot match the deletion to a row id: it reads everything again
    fresh = mgr.get_version_history("m")
    assert [v.version for v in fresh] == [f"1.{i}.0" for i in range(29, -1, -1) if i != 5]
    assert mgr.create_version("m", W, change_type="bugfix", parent_version="1.4.0").version \
        == "1.4.1"
