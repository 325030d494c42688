"""The study and model-registry behaviours users rely on, proven on SQLite and PostgreSQL alike.

Each test runs once per backend through the ``storage_url`` fixture (a fresh SQLite file, or a
fresh schema on the test PostgreSQL server).
"""

from __future__ import annotations

import itertools
import math
import threading

import numpy as np
import pytest

from kaizenml import IntegrityError, NotFoundError, StateError, TrialPruned, ValidationError
from kaizenml.optimize import (
    Categorical,
    Float,
    HyperparameterOptimizer,
    Int,
    SQLStorage,
    optimize_hyperparameters,
)
from kaizenml.versioning import ModelVersionManager, Version

SPACE = {"x": Float(-3.0, 3.0), "lr": Float(1e-4, 1e-1, log=True), "k": Int(1, 8)}


def _objective(p):  # type: ignore[no-untyped-def]
    return (p["x"] - 1.0) ** 2 + math.log10(p["lr"]) ** 2 / 10 + p["k"] * 0.01


# ----------------------------------------------------------------------------- studies


def test_resumed_study_equals_an_uninterrupted_one(storage_url: str) -> None:
    common = dict(strategy="random", seed=7, pruner=None, storage=storage_url)
    optimize_hyperparameters(SPACE, _objective, max_trials=10, study_name="split", **common)
    resumed = optimize_hyperparameters(
        SPACE, _objective, max_trials=25, study_name="split", load_if_exists=True, **common
    )
    whole = optimize_hyperparameters(SPACE, _objective, max_trials=25, study_name="whole", **common)
    assert resumed.n_trials == whole.n_trials == 25
    a = sorted(resumed.trials, key=lambda t: t.number)
    b = sorted(whole.trials, key=lambda t: t.number)
    assert [t.number for t in a] == list(range(25))
    # The same seed draws the same parameters for the same trial numbers, split or not.
    assert [t.params for t in a] == [t.params for t in b]
    assert [t.value for t in a] == [t.value for t in b]
    assert resumed.best_value == whole.best_value == min(t.value for t in b)


def test_resumed_grid_does_not_repeat_points(storage_url: str) -> None:
    space = {"k": Int(0, 4), "kind": Categorical(["ema", "sma"])}
    common = dict(strategy="grid", pruner=None, storage=storage_url, study_name="grid")
    first = optimize_hyperparameters(space, lambda p: p["k"], max_trials=4, **common)
    assert first.n_trials == 4
    rest = optimize_hyperparameters(
        space, lambda p: p["k"], max_trials=100, load_if_exists=True, **common
    )
    points = [(t.params["k"], t.params["kind"]) for t in rest.trials]
    assert rest.n_trials == 10
    assert sorted(points) == sorted(itertools.product(range(5), ["ema", "sma"]))


def test_duplicate_study_needs_load_if_exists(storage_url: str) -> None:
    HyperparameterOptimizer(SPACE, strategy="random", storage=storage_url, study_name="dup")
    with pytest.raises(ValidationError, match="load_if_exists"):
        HyperparameterOptimizer(SPACE, strategy="random", storage=storage_url, study_name="dup")


def test_ask_tell_life_cycle_and_errors(storage_url: str) -> None:
    opt = HyperparameterOptimizer(
        SPACE,
        strategy="random",
        seed=1,
        pruner=None,
        storage=storage_url,
        study_name="asktell",
        metric="sharpe",
        direction="maximize",
    )
    t0 = opt.ask()
    t1 = opt.ask()
    assert (t0.number, t1.number) == (0, 1)
    opt.start_trial(t0.number)
    opt.report_intermediate_result(t0.number, 0, 0.5)
    opt.report_intermediate_result(t0.number, 1, 0.75)
    with pytest.raises(StateError, match="step 1"):
        opt.report_intermediate_result(t0.number, 1, 0.8)
    opt.set_user_attr(t0.number, "note", {"universe": "sp500", "n": 3})
    opt.complete_trial(t0.number, {"sharpe": 1.25, "drawdown": 0.125})
    with pytest.raises(StateError):
        opt.complete_trial(t0.number, {"sharpe": 2.0})
    with pytest.raises(NotFoundError):
        opt.complete_trial(99, 1.0)
    opt.fail_trial(t1.number, "diverged")
    opt.close()

    # A fresh storage object (as another process would have) reads everything back.
    storage = SQLStorage(storage_url)
    trials = storage.get_trials(storage.get_study("asktell").study_id)
    done, failed = trials
    assert done.state.value == "complete" and done.value == 1.25
    assert done.metrics == {"sharpe": 1.25, "drawdown": 0.125}
    assert done.intermediate_values == {0: 0.5, 1: 0.75}
    assert done.user_attrs == {"note": {"universe": "sp500", "n": 3}}
    assert done.params == t0.params
    assert done.datetime_start <= done.datetime_complete
    assert failed.state.value == "failed" and "diverged" in failed.error


def test_failures_pruning_and_nan_are_stored(storage_url: str) -> None:
    def objective(p, trial):  # type: ignore[no-untyped-def]
        if p["k"] == 1:
            raise RuntimeError("boom at k=1")
        if p["k"] == 2:
            return float("nan")
        for step in range(3):
            trial.report(step, p["k"] + (2 - step) * 0.1)
        if p["k"] >= 6:
            raise TrialPruned()
        return float(p["k"])

    space = {"k": Int(1, 8)}
    res = optimize_hyperparameters(
        space,
        objective,
        strategy="grid",
        max_trials=8,
        pruner=None,
        storage=storage_url,
        study_name="mixed",
    )
    by_k = {t.params["k"]: t for t in res.trials}
    assert by_k[1].state.value == "failed" and "boom at k=1" in by_k[1].error
    assert "Traceback" in by_k[1].error
    assert by_k[2].state.value == "failed"
    assert {k for k, t in by_k.items() if t.state.value == "pruned"} == {6, 7, 8}
    assert by_k[7].intermediate_values == {0: 7.2, 1: 7.1, 2: 7.0}
    assert res.best_value == 3.0 and res.best_params == {"k": 3}
    assert (res.n_complete, res.n_pruned, res.n_failed) == (3, 3, 2)


def test_two_optimizers_in_one_process_share_numbering(storage_url: str) -> None:
    a = HyperparameterOptimizer(
        SPACE, strategy="random", seed=1, pruner=None, storage=storage_url, study_name="pair"
    )
    b = HyperparameterOptimizer(
        SPACE,
        strategy="random",
        seed=2,
        pruner=None,
        storage=storage_url,
        study_name="pair",
        load_if_exists=True,
    )
    numbers = []
    for i in range(6):
        opt = a if i % 2 else b
        t = opt.ask()
        numbers.append(t.number)
        opt.complete_trial(t.number, _objective(t.params))
    assert numbers == list(range(6))
    assert [t.number for t in a.trials] == [t.number for t in b.trials] == list(range(6))
    a.close()
    b.close()


# ----------------------------------------------------------------------------- registry


@pytest.fixture
def manager(storage_url: str, tmp_path) -> ModelVersionManager:
    return ModelVersionManager(storage_url, tmp_path / "artifacts")


def test_version_numbers_history_and_artifacts(manager: ModelVersionManager) -> None:
    rng = np.random.default_rng(3)
    weights = rng.standard_normal((64, 8))
    changes = ["retrain", "architecture", "hyperparameter", "bugfix", "data", "retrain"]
    expected = ["1.0.0", "2.0.0", "2.1.0", "2.1.1", "2.1.2", "2.2.0"]
    for i, change in enumerate(changes):
        v = manager.create_version(
            "momentum",
            {"w": weights * i, "lags": [1, 5, i], "name": "mom"},
            change_type=change,
            metrics={"sharpe": 1.0 + i / 10, "drawdown": 0.2 - i / 100},
            tags={"universe": "sp500" if i % 2 else "nasdaq"},
            created_by="ci",
        )
        assert v.version == expected[i]
    history = manager.get_version_history("momentum")
    assert [v.version for v in history] == expected[::-1]
    assert [str(v) for v in sorted(Version.parse(x) for x in expected)] == expected
    art = manager.load_artifact("momentum", "2.1.0")
    assert np.array_equal(art["w"], weights * 2) and art["w"].dtype == np.float64
    assert art["lags"] == [1, 5, 2] and art["name"] == "mom"
    assert manager.list_models() == ["momentum"]
    found = manager.search("momentum", tags={"universe": "sp500"}, metric="sharpe", metric_min=1.25)
    assert sorted(v.version for v in found) == ["2.1.1", "2.2.0"]


def test_corrupted_artifact_is_refused(manager: ModelVersionManager) -> None:
    manager.create_version("m", {"w": np.arange(10.0)}, change_type="retrain")
    folder = manager.artifact_root / "m" / "1.0.0"
    victim = next(p for p in folder.iterdir() if p.suffix == ".npz")
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=victim.name):
        manager.load_artifact("m", "1.0.0")


def test_active_version_audit_and_rollback(manager: ModelVersionManager) -> None:
    for i, change in enumerate(["retrain", "retrain", "retrain"]):
        manager.create_version(
            "m", {"w": np.ones(2) * i}, change_type=change, metrics={"sharpe": [1.0, 1.2, 0.6][i]}
        )
    manager.set_active_version("m", "1.1.0", changed_by="ana", reason="better sharpe")
    manager.set_active_version("m", "1.2.0", changed_by="bob", reason="new data")
    assert manager.get_active_version("m").version == "1.2.0"
    with pytest.raises(StateError):
        manager.delete_version("m", "1.2.0")
    result = manager.execute_rollback("m", "1.1.0", reason="sharpe fell", executed_by="ana")
    assert result.success, result.message
    assert manager.get_active_version("m").version == "1.1.0"
    log = manager.get_deployment_history("m")
    assert [(d.from_version, d.to_version, d.action) for d in log] == [
        ("1.2.0", "1.1.0", "rollback"),
        ("1.1.0", "1.2.0", "activate"),
        (None, "1.1.0", "activate"),
    ]
    assert log[1].changed_by == "bob" and log[1].reason == "new data"


def test_concurrent_writers_in_threads_get_ordered_versions(manager: ModelVersionManager) -> None:
    got: list[list[str]] = [[] for _ in range(4)]
    errors: list[BaseException] = []

    def write(i: int) -> None:
        try:
            for j in range(8):
                change = ("retrain", "bugfix")[(i + j) % 2]
                got[i].append(
                    manager.create_version(
                        "m", {"w": np.full(3, i * 100 + j)}, change_type=change
                    ).version
                )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    flat = [v for g in got for v in g]
    assert len(set(flat)) == 32
    created = [Version.parse(v.version) for v in reversed(manager.get_version_history("m"))]
    assert created == sorted(created)
    for i, g in enumerate(got):
        for j, version in enumerate(g):
            assert manager.load_artifact("m", version)["w"][0] == i * 100 + j


# ----------------------------------------------------------------------------- features


def test_feature_metadata_statistics_and_lineage_persist(storage_url: str) -> None:
    from kaizenml.features import FeatureDefinition, FeatureStore

    rng = np.random.default_rng(5)
    low = 100 + np.cumsum(rng.normal(size=400))
    data = {"high": low + rng.random(400) * 2, "low": low}

    def spread(high, low, *, window_size=None, scale=1.0):  # type: ignore[no-untyped-def]
        return (high - low) * scale

    def define(version: str, scale: float) -> FeatureDefinition:
        return FeatureDefinition(
            "spread",
            version,
            dependencies=["high", "low"],
            compute_function="spread",
            computation_config={"params": {"scale": scale}},
        )

    writer = FeatureStore(storage_url, n_threads=1)
    writer.register_function("spread", spread)
    for version, scale in (("1.0.0", 1.0), ("1.10.0", 3.0), ("1.9.0", 2.0)):
        writer.register_feature(define(version, scale))
    values = writer.compute_feature("spread@1.9.0", data)
    np.testing.assert_array_equal(values, (data["high"] - data["low"]) * 2.0)
    writer.deprecate("spread@1.0.0")

    # Another store object on the same database (as another process would open it).
    reader = FeatureStore(storage_url, n_threads=1)
    refs = [d.ref for d in reader.list_features() if d.name == "spread"]
    assert refs == ["spread@1.0.0", "spread@1.9.0", "spread@1.10.0"]  # semantic order
    assert reader.get_definition("spread").version == "1.10.0"
    assert reader.get_definition("spread@1.0.0").deprecated is True
    assert reader.get_definition("spread@1.9.0").deprecated is False

    stats = reader.get_statistics("spread@1.9.0")
    assert (stats.version, stats.count, stats.missing) == ("1.9.0", 400, 0)
    assert stats.min == values.min() and stats.max == values.max()
    assert stats.mean == pytest.approx(values.mean(), rel=1e-12)
    assert stats.std == pytest.approx(values.std(ddof=1), rel=1e-12)
    assert stats.percentiles[50] == pytest.approx(np.percentile(values, 50), rel=1e-12)
    lineage = reader.get_lineage("spread@1.9.0")
    assert lineage.version == "1.9.0" and lineage.compute_function == "spread"
    assert set(lineage.source_columns) == {"high", "low"} and lineage.n_rows == 400
