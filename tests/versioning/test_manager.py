"""Version numbering, queries, deletion, search, active version and the audit log."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from kaizenml import KaizenTypeError, NotFoundError, StateError, ValidationError
from kaizenml.versioning import (
    ModelVersion,
    ModelVersionManager,
    Version,
    get_model_version_manager,
    next_version_number,
)

W = {"w": np.ones(2)}


def test_first_version_and_bumps(manager: ModelVersionManager) -> None:
    first = manager.create_version(
        "m", W, change_type="bugfix", description="init", created_by="ana",
        metrics={"sharpe": 1.0}, tags={"universe": "sp500"},
    )
    assert isinstance(first, ModelVersion)
    assert (first.version, first.parent_version, first.change_type) == ("1.0.0", None, "initial")
    assert first.description == "init" and first.created_by == "ana"
    assert first.metrics == {"sharpe": 1.0} and first.tags == {"universe": "sp500"}
    assert first.is_active is False and len(first.checksum) == 64
    assert abs((datetime.now(timezone.utc) - first.created_at).total_seconds()) < 60
    expected = [
        ("architecture", "2.0.0"),
        ("hyperparameter", "2.1.0"),
        ("retrain", "2.2.0"),
        ("bugfix", "2.2.1"),
        ("data", "2.2.2"),
        ("retrain", "2.3.0"),
        ("architecture", "3.0.0"),
    ]
    previous = "1.0.0"
    for change, version in expected:
        v = manager.create_version("m", W, change_type=change)
        assert (v.version, v.parent_version, v.change_type) == (version, previous, change)
        previous = version


def test_branch_from_older_parent_takes_next_free_number(manager: ModelVersionManager) -> None:
    for change in ("architecture", "retrain", "retrain", "architecture"):
        manager.create_version("m", W, change_type=change)
    # stored: 1.0.0, 1.1.0, 1.2.0, 2.0.0
    branch = manager.create_version("m", W, change_type="retrain", parent_version="1.0.0")
    assert (branch.version, branch.parent_version) == ("1.3.0", "1.0.0")
    assert manager.create_version(
        "m", W, change_type="architecture", parent_version="1.0.0"
    ).version == "3.0.0"
    assert manager.create_version(
        "m", W, change_type="bugfix", parent_version="1.0.0"
    ).version == "1.0.1"
    # 1.0.1 exists now: the next patch from 1.0.0 is 1.0.2
    assert manager.create_version(
        "m", W, change_type="data", parent_version="1.0.0"
    ).version == "1.0.2"
    # a minor bump from 1.1.0: 1.2.0 and 1.3.0 are taken, so 1.4.0
    assert manager.create_version(
        "m", W, change_type="hyperparameter", parent_version="1.1.0"
    ).version == "1.4.0"
    # without a parent the base is the highest version (3.0.0), not the newest row
    assert manager.create_version("m", W, change_type="retrain").version == "3.1.0"
    with pytest.raises(NotFoundError, match="parent_version"):
        manager.create_version("m", W, change_type="retrain", parent_version="9.9.9")


def _bump_oracle(existing: list[tuple[int, int, int]], base: tuple[int, int, int] | None,
                 part: str) -> tuple[int, int, int]:
    """Brute force: the smallest number of the bumped part whose line is unused."""
    if base is None:
        return (1, 0, 0)
    ma, mi, pa = base
    for n in range(1, 10_000):
        if part == "major":
            cand = (ma + n, 0, 0)
            if all(e[0] != cand[0] for e in existing):
                return cand
        elif part == "minor":
            cand = (ma, mi + n, 0)
            if all(e[:2] != cand[:2] for e in existing):
                return cand
        else:
            cand = (ma, mi, pa + n)
            if cand not in existing:
                return cand
    raise AssertionError


def test_next_version_number_matches_brute_force() -> None:
    rng = np.random.default_rng(5)
    for _ in range(300):
        existing = sorted({tuple(int(x) for x in rng.integers(0, 4, size=3)) for _ in range(8)})
        base = existing[int(rng.integers(len(existing)))]
        part = str(rng.choice(["major", "minor", "patch"]))

        def used(kind: str, b: Version, existing=existing) -> set[int]:
            if kind == "major":
                return {e[0] for e in existing if e[0] > b.major}
            if kind == "minor":
                return {e[1] for e in existing if e[0] == b.major and e[1] > b.minor}
            return {e[2] for e in existing if e[:2] == (b.major, b.minor) and e[2] > b.patch}

        got = next_version_number(used, Version(*base), part)
        assert (got.major, got.minor, got.patch) == _bump_oracle(existing, base, part)
    assert str(next_version_number(lambda k, b: set(), None, "patch")) == "1.0.0"


_CONCURRENT = """
import os, sys, time, numpy as np
from kaizenml.versioning import ModelVersionManager
url, root, change, go = sys.argv[1:5]
mgr = ModelVersionManager(url, root)
while not os.path.exists(go):  # start together once every process has imported
    time.sleep(0.01)
made = [mgr.create_version("shared", {"w": np.arange(100.0)}, change_type=change,
                           created_by=change).version for _ in range(25)]
print(" ".join(made), flush=True)
"""


def test_four_processes_create_distinct_ordered_versions(
    db_url: str, art_root: Path, tmp_path: Path, child
) -> None:
    ModelVersionManager(db_url, art_root)  # create the schema once, up front
    go = tmp_path / "go"
    changes = ["retrain", "bugfix", "data", "hyperparameter"]
    procs = [child(_CONCURRENT, db_url, str(art_root), c, str(go)) for c in changes]
    go.touch()
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
        outputs.append(out.split())
    made = [v for out in outputs for v in out]
    assert len(made) == 100 and len(set(made)) == 100
    # each process saw its own versions in increasing order
    for out in outputs:
        keys = [Version.parse(v).precedence_key for v in out]
        assert keys == sorted(keys) and len(set(keys)) == 25
    mgr = ModelVersionManager(db_url, art_root)
    history = mgr.get_version_history("shared")[::-1]  # oldest first
    assert sorted(v.version for v in history) == sorted(made)
    # creation order and version order agree; each version is bumped from the one before it
    assert history[0].version == "1.0.0"
    for prev, cur in zip(history, history[1:], strict=False):
        assert Version.parse(cur.version) > Version.parse(prev.version)
        assert cur.parent_version == prev.version
        part = {"retrain": "minor", "hyperparameter": "minor", "bugfix": "patch",
                "data": "patch"}[cur.change_type]
        assert cur.version == str(Version.parse(prev.version).bump(part))
    np.testing.assert_array_equal(mgr.load_artifact("shared", made[-1])["w"], np.arange(100.0))


def _populate(manager: ModelVersionManager) -> None:
    manager.create_version("m", W, change_type="architecture",
                           metrics={"sharpe": 0.8, "max_drawdown": 0.30},
                           tags={"universe": "sp500", "stage": "dev"})
    manager.create_version("m", W, change_type="retrain",
                           metrics={"sharpe": 1.2, "max_drawdown": 0.25},
                           tags={"universe": "sp500", "stage": "prod"})
    manager.create_version("m", W, change_type="bugfix",
                           metrics={"sharpe": 1.5, "max_drawdown": 0.40},
                           tags={"universe": "nasdaq"})
    manager.create_version("other", W, change_type="architecture",
                           metrics={"sharpe": 2.0}, tags={"universe": "sp500"})


def test_queries(manager: ModelVersionManager) -> None:
    _populate(manager)
    assert manager.list_models() == ["m", "other"]
    history = manager.get_version_history("m")
    assert [v.version for v in history] == ["1.1.1", "1.1.0", "1.0.0"]
    assert [v.version for v in manager.get_version_history("m", limit=2)] == ["1.1.1", "1.1.0"]
    got = manager.get_version("m", "1.1.0")
    assert got.metrics == {"sharpe": 1.2, "max_drawdown": 0.25} and got.parent_version == "1.0.0"
    assert manager.get_latest_version("m").version == "1.1.1"
    with pytest.raises(NotFoundError, match="1.9.0"):
        manager.get_version("m", "1.9.0")
    with pytest.raises(NotFoundError, match="nope"):
        manager.get_version_history("nope")
    with pytest.raises(ValidationError, match="Semantic Versioning"):
        manager.get_version("m", "v1")


def test_search(manager: ModelVersionManager) -> None:
    _populate(manager)

    def names(found: list[ModelVersion]) -> list[tuple[str, str]]:
        return [(v.model_name, v.version) for v in found]

    assert names(manager.search(tags={"universe": "sp500"})) == [
        ("other", "1.0.0"), ("m", "1.1.0"), ("m", "1.0.0")]
    assert names(manager.search("m", tags={"universe": "sp500", "stage": "prod"})) == [
        ("m", "1.1.0")]
    assert names(manager.search("m", tags={"stage": None})) == [("m", "1.1.0"), ("m", "1.0.0")]
    assert names(manager.search(metric="sharpe", metric_min=1.2)) == [
        ("other", "1.0.0"), ("m", "1.1.1"), ("m", "1.1.0")]
    assert names(manager.search("m", metric="max_drawdown", metric_max=0.3)) == [
        ("m", "1.1.0"), ("m", "1.0.0")]
    assert names(manager.search("m", metric="sharpe", metric_min=1.0, metric_max=1.4)) == [
        ("m", "1.1.0")]
    assert names(manager.search("m", change_type="bugfix")) == [("m", "1.1.1")]
    assert names(manager.search("m", change_type="initial")) == [("m", "1.0.0")]
    with pytest.raises(ValidationError, match=r"change_type='bugfx' is not supported; choose one"):
        manager.search("m", change_type="bugfx")
    assert names(manager.search(metric="sortino")) == []
    assert len(manager.search(limit=2)) == 2
    with pytest.raises(ValidationError, match="metric="):
        manager.search(metric_min=1.0)


def test_artifact_root_that_is_a_file_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "artifacts"
    blocker.write_text("a file, not a folder")
    with pytest.raises(ValidationError, match=r"artifacts='.*artifacts' must be a folder"):
        ModelVersionManager(f"sqlite:///{tmp_path / 'k.db'}", blocker)


def test_delete_version(manager: ModelVersionManager, art_root: Path) -> None:
    _populate(manager)
    manager.set_active_version("m", "1.1.0")
    with pytest.raises(StateError, match="active"):
        manager.delete_version("m", "1.1.0")
    manager.delete_version("m", "1.0.0")
    assert not (art_root / "m" / "1.0.0").exists()
    assert [v.version for v in manager.get_version_history("m")] == ["1.1.1", "1.1.0"]
    assert manager.search("m", tags={"stage": "dev"}) == []
    assert manager.search("m", metric="sharpe", metric_max=1.0) == []
    with pytest.raises(NotFoundError):
        manager.delete_version("m", "1.0.0")
    with pytest.raises(NotFoundError):
        manager.load_artifact("m", "1.0.0")
    # deleted numbers are never handed out again
    manager.delete_version("m", "1.1.1")
    assert manager.create_version("m", W, change_type="bugfix").version == "1.1.2"
    assert manager.create_version("m", W, change_type="bugfix",
                                  parent_version="1.1.0").version == "1.1.3"
    manager.delete_version("other", "1.0.0")
    assert manager.list_models() == ["m"]
    again = manager.create_version("other", W, change_type="retrain")
    assert (again.version, again.parent_version) == ("1.1.0", "1.0.0")


@pytest.mark.parametrize("bad", ["../evil", "a/b", "a\\b", "", ".hidden", "x" * 129, "a..b",
                                 "sp ace"])
def test_model_names_validated(manager: ModelVersionManager, art_root: Path, bad: str) -> None:
    with pytest.raises(ValidationError, match="model_name"):
        manager.create_version(bad, W, change_type="architecture")
    assert not any(art_root.rglob("*"))


def test_bad_arguments(manager: ModelVersionManager) -> None:
    with pytest.raises(KaizenTypeError, match="model_name"):
        manager.create_version(3, W, change_type="architecture")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="change_type='refactor'"):
        manager.create_version("m", W, change_type="refactor")
    with pytest.raises(ValidationError, match=r"metrics\['sharpe'\]"):
        manager.create_version("m", W, change_type="retrain", metrics={"sharpe": float("nan")})
    with pytest.raises(KaizenTypeError, match="metrics"):
        manager.create_version("m", W, change_type="retrain", metrics={"sharpe": "high"})
    with pytest.raises(KaizenTypeError, match="tags"):
        manager.create_version("m", W, change_type="retrain", tags={"a": [1]})
    with pytest.raises(ValidationError, match="parent_version"):
        manager.create_version("m", W, change_type="retrain", parent_version="1.0")
    with pytest.raises(KaizenTypeError, match="artifacts"):
        ModelVersionManager("sqlite://", artifacts=3)  # type: ignore[arg-type]
    assert manager.list_models() == []


def test_active_version_and_audit_log(manager: ModelVersionManager) -> None:
    _populate(manager)
    assert manager.get_active_version("m") is None
    with pytest.raises(NotFoundError):
        manager.get_active_version("nope")
    with pytest.raises(NotFoundError):
        manager.set_active_version("m", "4.0.0")
    active = manager.set_active_version("m", "1.0.0", changed_by="ana", reason="first deploy")
    assert active.is_active and active.version == "1.0.0"
    manager.set_active_version("m", "1.1.0", changed_by="bo", reason="better sharpe")
    manager.set_active_version("m", "1.1.0", changed_by="bo", reason="no-op")  # not logged
    assert manager.get_active_version("m").version == "1.1.0"
    flags = {v.version: v.is_active for v in manager.get_version_history("m")}
    assert flags == {"1.1.1": False, "1.1.0": True, "1.0.0": False}
    assert manager.get_active_version("other") is None
    log = manager.get_deployment_history("m")
    assert [(r.from_version, r.to_version, r.changed_by, r.reason, r.action) for r in log] == [
        ("1.0.0", "1.1.0", "bo", "better sharpe", "activate"),
        (None, "1.0.0", "ana", "first deploy", "activate"),
    ]
    assert log[0].changed_at >= log[1].changed_at
    assert len(manager.get_deployment_history("m", limit=1)) == 1


def test_default_manager_uses_kaizenml_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAIZENML_HOME", str(tmp_path / "home"))
    mgr = get_model_version_manager()
    assert mgr is get_model_version_manager()
    v = mgr.create_version("m", W, change_type="architecture")
    assert Path(v.artifact_path) == tmp_path / "home" / "artifacts" / "m" / "1.0.0"
    assert (tmp_path / "home" / "kaizenml.db").exists()
    monkeypatch.setenv("KAIZENML_HOME", str(tmp_path / "home2"))
    assert get_model_version_manager() is not mgr


def test_rows_store_json_and_relative_paths(manager: ModelVersionManager) -> None:
    import sqlalchemy as sa

    manager.create_version("m", W, change_type="architecture", metrics={"auc": 0.7})
    with manager.engine.connect() as conn:
        row = conn.execute(sa.text(
            "SELECT artifact_path, metrics, major, minor, patch FROM kz_model_versions"
        )).one()
    assert row.artifact_path == "m/1.0.0"
    assert json.loads(row.metrics) == {"auc": 0.7}
    assert (row.major, row.minor, row.patch) == (1, 0, 0)


def test_hot_queries_use_indexes(manager: ModelVersionManager) -> None:
    """History, latest, active and numbering queries must not scan the versions table."""
    from sqlalchemy import event

    _populate(manager)
    manager.set_active_version("m", "1.1.0")
    captured: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith("SELECT"):
            captured.append((statement, parameters))

    event.listen(manager.engine, "before_cursor_execute", capture)
    try:
        manager.get_version_history("m", limit=10)
        snapshot = manager.get_version_history("m")  # the first read: ids only
        snapshot[0]  # a chunk of rows
        manager.get_latest_version("m")
        manager.get_active_version("m")
        manager.get_version("m", "1.0.0")
        manager.create_version("m", W, change_type="retrain")
        manager.get_version_history("m")  # reads only what changed
        unread = ModelVersionManager(manager.engine, manager.artifact_root) \
            .get_version_history("m")
        manager.delete_version("m", "1.0.0")
        assert unread[-1].version == "1.0.0"  # the chunk query, then the deleted record
        assert snapshot[-1].version == "1.0.0"
    finally:
        event.remove(manager.engine, "before_cursor_execute", capture)
    assert len(captured) >= 6
    plans = []
    with manager.engine.connect() as conn:
        for statement, parameters in captured:
            plan = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
            details = " | ".join(str(row[-1]) for row in plan)
            plans.append(details)
            assert "TEMP B-TREE" not in details, (statement, details)  # no sort of all rows
            for line in details.split(" | "):
                if any(t in line for t in ("kz_model_versions", "kz_model_active",
                                           "kz_model_deleted", "kz_model_history")):
                    # SEARCH ... USING INDEX / PRIMARY KEY: a lookup, never a full SCAN
                    assert line.startswith("SEARCH") and "USING" in line, (statement, details)
    # the refresh after a write reads only rows above the last revision seen
    assert any("ix_kz_model_versions_revision (model_name=? AND revision>?)" in p for p in plans)
    # the chunk loader reads id ranges, and the rows deleted since by their row id
    assert any("ix_kz_model_versions_history (model_name=? AND id>? AND id<?)" in p for p in plans)
    assert any("ix_kz_model_deleted_versions_row (model_name=? AND row_id>? AND row_id<?)" in p
               for p in plans)


def test_a_name_differing_only_in_case_is_refused(manager: ModelVersionManager) -> None:
    manager.create_version("momentum", {"w": np.ones(2)}, change_type="architecture")
    with pytest.raises(ValidationError, match=r"'Momentum' differs from the existing model "
                                              r"'momentum' only in letter case"):
        manager.create_version("Momentum", {"w": np.zeros(2)}, change_type="architecture")
    assert manager.list_models() == ["momentum"]
    manager.create_version("momentum", {"w": np.zeros(2)}, change_type="retrain")  # same name: fine


def test_activating_a_corrupted_artifact_is_refused(
    manager: ModelVersionManager, art_root: Path
) -> None:
    from kaizenml import IntegrityError

    manager.create_version("act", {"w": np.ones(3)}, change_type="architecture")
    manager.create_version("act", {"w": np.zeros(3)}, change_type="retrain")
    manager.set_active_version("act", "1.0.0")
    npz = art_root / "act" / "1.1.0" / "arrays.npz"
    data = bytearray(npz.read_bytes())
    data[-40] ^= 0x01
    npz.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=r"arrays\.npz is corrupted"):
        manager.set_active_version("act", "1.1.0")
    assert manager.get_active_version("act").version == "1.0.0"
    assert len(manager.get_deployment_history("act")) == 1
    manager.set_active_version("act", "1.1.0", verify=False)  # the caller's explicit choice
    assert manager.get_active_version("act").version == "1.1.0"
