"""SQLite: reads run beside another process's open write transaction.

Every write transaction takes SQLite's single write lock up front (``BEGIN IMMEDIATE``); reads
begin deferred and read their write-ahead-log snapshot instead of queueing behind a writer
(they used to wait for the 30 s busy timeout and then fail with "database is locked").
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from kaizenml.optimize._storage import SQLStorage
from kaizenml.storage import get_engine, read_connection
from kaizenml.versioning import ModelVersionManager


@pytest.fixture
def store(tmp_path: Path) -> Path:
    url = f"sqlite:///{tmp_path / 'k.db'}"
    manager = ModelVersionManager(url, tmp_path / "artifacts")
    manager.create_version("m", {"w": np.arange(3.0)}, change_type="retrain", metrics={"loss": 1})
    manager.create_version("m", {"w": np.arange(4.0)}, change_type="retrain", metrics={"loss": 2})
    manager.set_active_version("m", "1.0.0")
    checkpoints = manager.checkpointer("m", metric="loss", direction="minimize")
    checkpoints.save(1, {"w": np.zeros(2)}, {"loss": 0.5})
    studies = SQLStorage(url)
    studies.create_study(
        "s", direction="minimize", metric=None, space={}, sampler={}, load_if_exists=False
    )
    return tmp_path


@pytest.fixture
def writer_holding_the_lock(store: Path) -> Iterator[sqlite3.Connection]:
    """Another connection (as another process would) in an uncommitted write transaction."""
    other = sqlite3.connect(store / "k.db", isolation_level=None, timeout=0)
    other.execute("BEGIN IMMEDIATE")
    other.execute("CREATE TABLE held_by_writer (x INTEGER)")
    try:
        yield other
    finally:
        other.execute("ROLLBACK")
        other.close()


def _quick(call, *args, **kwargs):
    start = time.perf_counter()
    result = call(*args, **kwargs)
    elapsed = time.perf_counter() - start
    assert elapsed < 5.0, f"{call.__name__} waited {elapsed:.1f} s for the writer"
    return result


def test_reads_do_not_wait_for_a_writer(store: Path, writer_holding_the_lock) -> None:
    # a new manager (as in another process): its first reads happen under the writer's lock
    manager = ModelVersionManager(f"sqlite:///{store / 'k.db'}", store / "artifacts")
    assert _quick(manager.get_version, "m", "1.1.0").metrics == {"loss": 2.0}
    assert [v.version for v in _quick(manager.get_version_history, "m")] == ["1.1.0", "1.0.0"]
    assert _quick(manager.get_active_version, "m").version == "1.0.0"
    assert _quick(manager.list_models) == ["m"]
    assert _quick(manager.checkpointer("m", keep_best=0).latest).step == 1
    studies = SQLStorage(f"sqlite:///{store / 'k.db'}")
    record = _quick(studies.get_study, "s")
    assert _quick(studies.get_trials, record.study_id) == []


def test_read_connection_reads_a_snapshot(tmp_path: Path) -> None:
    engine = get_engine(f"sqlite:///{tmp_path / 'snap.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")
    with read_connection(engine) as reader:
        assert reader.exec_driver_sql("SELECT count(*) FROM t").scalar() == 1
        with engine.begin() as writer:  # not blocked by the open read transaction
            writer.exec_driver_sql("INSERT INTO t VALUES (2)")
        # still the snapshot the read transaction started with
        assert reader.exec_driver_sql("SELECT count(*) FROM t").scalar() == 1
    with read_connection(engine) as reader:
        assert reader.exec_driver_sql("SELECT count(*) FROM t").scalar() == 2
