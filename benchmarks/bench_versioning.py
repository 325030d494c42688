"""Speed of model versioning: create_version against a bare write+fsync, and queries on a model
with 10,000 versions.

Run: ``PYTHONPATH=src python -m pytest benchmarks/bench_versioning.py --benchmark-only -s``
(pytest-benchmark). ``-k history`` runs the whole-history figures (first read, repeated, after a
write, after a deletion, full iteration). The ratio tests interleave the two measured operations
round by round, so load from other processes on the machine hits both alike; they print the
medians and ratios.
"""

from __future__ import annotations

import io
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from kaizenml.storage import atomic_write_bytes
from kaizenml.versioning import ModelVersionManager
from kaizenml.versioning._schema import model_versions

N_VERSIONS = 10_000
ARTIFACT = {"weights": np.random.default_rng(0).normal(size=131_072)}  # 1 MiB of float64


def _npz_bytes() -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **ARTIFACT)
    return buffer.getvalue()


def _write_fsync(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _make_big(root: Path) -> ModelVersionManager:
    mgr = ModelVersionManager(f"sqlite:///{root / 'k.db'}", root / "artifacts")
    now = time.time()
    rows = []
    for i in range(N_VERSIONS):
        major, minor = 1 + i // 1000, i % 1000
        version = f"{major}.{minor}.0"
        rows.append({
            "model_name": "big", "version": version, "major": major, "minor": minor,
            "patch": 0, "change_type": "retrain", "parent_version": None,
            "description": "nightly retrain", "created_by": "scheduler",
            "created_at": now + i,
            "metrics": json.dumps({"sharpe": 1.0 + i * 1e-4, "max_drawdown": 0.2}),
            "tags": json.dumps({"universe": "sp500"}),
            "artifact_path": f"big/{version}", "checksum": "0" * 64, "serializer": None,
        })
    with mgr.engine.begin() as conn:
        conn.execute(sa.insert(model_versions), rows)
    mgr.set_active_version("big", "5.500.0", verify=False)  # metadata-only rows
    return mgr


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> ModelVersionManager:
    """A model with 10,000 version rows (inserted in bulk: the queries read metadata only)."""
    return _make_big(tmp_path_factory.mktemp("big"))


@pytest.fixture(scope="module")
def big_rw(tmp_path_factory: pytest.TempPathFactory) -> ModelVersionManager:
    """Another such model, for the benchmarks that create and delete versions."""
    return _make_big(tmp_path_factory.mktemp("big_rw"))


@pytest.fixture
def fresh(tmp_path: Path) -> ModelVersionManager:
    return ModelVersionManager(f"sqlite:///{tmp_path / 'k.db'}", tmp_path / "artifacts")


# --- pytest-benchmark timings ------------------------------------------------------------------
def test_create_version_1mb(benchmark, fresh: ModelVersionManager) -> None:
    benchmark.pedantic(
        lambda: fresh.create_version("m", ARTIFACT, change_type="retrain"),
        rounds=30, iterations=1, warmup_rounds=2,
    )


def test_baseline_write_fsync_1mb(benchmark, tmp_path: Path) -> None:
    data = _npz_bytes()
    counter = iter(range(10**6))
    benchmark.pedantic(
        lambda: _write_fsync(tmp_path / f"raw{next(counter)}", data),
        rounds=30, iterations=1, warmup_rounds=2,
    )


def test_active_version_10k(benchmark, big: ModelVersionManager) -> None:
    result = benchmark(big.get_active_version, "big")
    assert result.version == "5.500.0"


def test_history_page_10k(benchmark, big: ModelVersionManager) -> None:
    result = benchmark(big.get_version_history, "big", limit=100)
    assert result[0].version == "10.999.0" and len(result) == 100


def test_history_full_10k(benchmark, big: ModelVersionManager) -> None:
    """Repeated call: nothing changed since the previous read."""
    big.get_version_history("big")
    result = benchmark.pedantic(big.get_version_history, args=("big",), rounds=30, iterations=1)
    assert len(result) >= N_VERSIONS and result[-1].version == "1.0.0"


def test_history_full_10k_after_write(benchmark, big_rw: ModelVersionManager) -> None:
    """Cold call: each round first creates a version (untimed), so the history read has changed
    since the previous read and the new version must be in it."""
    big_rw.get_version_history("big")
    created: list[str] = []

    def write() -> tuple[tuple[str], dict[str, object]]:
        made = big_rw.create_version("big", {"w": np.zeros(2)}, change_type="retrain")
        created.append(made.version)
        return ("big",), {}

    def read(name: str) -> object:
        history = big_rw.get_version_history(name)
        assert history[0].version == created[-1]
        return history

    result = benchmark.pedantic(read, setup=write, rounds=20, iterations=1)
    assert [v.version for v in result[:len(created)]] == created[::-1]


def test_history_full_10k_after_delete(benchmark, big_rw: ModelVersionManager) -> None:
    """Cold call after a deletion (the cached rows are filtered and merged, not re-read)."""
    big_rw.get_version_history("big")
    oldest = iter([f"1.{minor}.0" for minor in range(1, 1000)])
    deleted: list[str] = []

    def delete() -> tuple[tuple[str], dict[str, object]]:
        deleted.append(next(oldest))
        big_rw.delete_version("big", deleted[-1])
        return ("big",), {}

    result = benchmark.pedantic(big_rw.get_version_history, setup=delete, rounds=20, iterations=1)
    assert not {v.version for v in result} & set(deleted)


def test_history_full_10k_first_read(benchmark, big: ModelVersionManager) -> None:
    """First read in a process (a new manager each round: nothing read before)."""

    def setup() -> tuple[tuple[ModelVersionManager], dict[str, object]]:
        return (ModelVersionManager(big.engine, big.artifact_root),), {}

    result = benchmark.pedantic(
        lambda mgr: mgr.get_version_history("big"), setup=setup, rounds=10, iterations=1
    )
    assert len(result) >= N_VERSIONS


def test_history_full_10k_first_read_list(benchmark, big: ModelVersionManager) -> None:
    """First read in a process, then every record built (``list(history)``): the chunk queries
    plus building 10,000 ModelVersion objects."""

    def setup() -> tuple[tuple[ModelVersionManager], dict[str, object]]:
        return (ModelVersionManager(big.engine, big.artifact_root),), {}

    result = benchmark.pedantic(
        lambda mgr: list(mgr.get_version_history("big")), setup=setup, rounds=10, iterations=1
    )
    assert len(result) >= N_VERSIONS and result[-1].version == "1.0.0"


def test_history_full_10k_first_read_newest(benchmark, big: ModelVersionManager) -> None:
    """First read in a process, then the newest record (one chunk query)."""

    def setup() -> tuple[tuple[ModelVersionManager], dict[str, object]]:
        return (ModelVersionManager(big.engine, big.artifact_root),), {}

    result = benchmark.pedantic(
        lambda mgr: mgr.get_version_history("big")[0], setup=setup, rounds=20, iterations=1
    )
    assert result.version == "10.999.0"


def test_latest_version_10k(benchmark, big: ModelVersionManager) -> None:
    assert benchmark(big.get_latest_version, "big").version == "10.999.0"


def test_get_version_10k(benchmark, big: ModelVersionManager) -> None:
    assert benchmark(big.get_version, "big", "3.141.0").version == "3.141.0"


def _eager_history(mgr: ModelVersionManager, name: str) -> list[object]:
    """What get_version_history did before it returned a lazy, incrementally refreshed
    history: one query, then every record built at once."""
    query = mgr._select_versions().where(model_versions.c.model_name == name).order_by(
        model_versions.c.id.desc()
    )
    with mgr.engine.connect() as conn:
        return [mgr._to_version(r) for r in conn.execute(query).all()]


# --- interleaved ratios ---------------------------------------------------------------------
def _interleaved(ops: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in ops}
    for _ in range(rounds):
        for name, op in ops.items():
            start = time.perf_counter()
            op()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def test_ratio_create_vs_write_fsync(fresh: ModelVersionManager, tmp_path: Path) -> None:
    data = _npz_bytes()
    counter = iter(range(10**6))
    ops = {
        "create_version": lambda: fresh.create_version("m", ARTIFACT, change_type="retrain"),
        "write+fsync": lambda: _write_fsync(tmp_path / f"raw{next(counter)}", data),
        "atomic_write_bytes": lambda: atomic_write_bytes(tmp_path / f"atomic{next(counter)}", data),
    }
    _interleaved(ops, 3)  # warm-up
    med = _interleaved(ops, 40)
    base = med["write+fsync"]
    print()
    for name, value in med.items():
        print(f"{name:>20}: {value * 1e3:8.2f} ms  ({value / base:.2f}x write+fsync)")


def test_query_times_10k(big: ModelVersionManager, big_rw: ModelVersionManager) -> None:
    ops = {
        "get_active_version": lambda: big.get_active_version("big"),
        "history limit=100": lambda: big.get_version_history("big", limit=100),
        "get_latest_version": lambda: big.get_latest_version("big"),
        "get_version": lambda: big.get_version("big", "3.141.0"),
        "history (all 10k)": lambda: big.get_version_history("big"),
        "history (all 10k), first read": lambda: ModelVersionManager(
            big.engine, big.artifact_root).get_version_history("big"),
        "first read + history[0]": lambda: ModelVersionManager(
            big.engine, big.artifact_root).get_version_history("big")[0],
        "first read + list(history)": lambda: list(ModelVersionManager(
            big.engine, big.artifact_root).get_version_history("big")),
        "eager list (previous method)": lambda: _eager_history(big, "big"),
    }
    _interleaved(ops, 2)
    med = _interleaved(ops, 30)
    print()
    for name, value in med.items():
        print(f"{name:>32}: {value * 1e3:8.2f} ms")
    # Cold: each round writes a version (untimed), then times the first history read after it.
    cold = []
    big_rw.get_version_history("big")
    for _ in range(30):
        made = big_rw.create_version("big", {"w": np.zeros(2)}, change_type="retrain").version
        start = time.perf_counter()
        history = big_rw.get_version_history("big")
        cold.append(time.perf_counter() - start)
        assert history[0].version == made
    print(f"{'history (all) after a write':>32}: {statistics.median(cold) * 1e3:8.2f} ms "
          f"(min {min(cold) * 1e3:.2f}, max {max(cold) * 1e3:.2f})")
    # The same after a deletion (of the oldest versions, which the cached history holds).
    cold = []
    size = len(big_rw.get_version_history("big"))
    for minor in range(500, 530):
        big_rw.delete_version("big", f"2.{minor}.0")
        start = time.perf_counter()
        history = big_rw.get_version_history("big")
        cold.append(time.perf_counter() - start)
        size -= 1
        assert len(history) == size
    print(f"{'history (all) after a delete':>32}: {statistics.median(cold) * 1e3:8.2f} ms "
          f"(min {min(cold) * 1e3:.2f}, max {max(cold) * 1e3:.2f})")
