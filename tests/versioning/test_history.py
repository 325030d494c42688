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

from kaizenml import KaizenTypeError, NotFoundError, ValidationError
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
