"""optimize_hyperparameters: failures, interrupts, parallel workers, executors, progress."""

from __future__ import annotations

import concurrent.futures as cf
import logging
import math
import os

import pytest

from kaizenml import KaizenTypeError, TrialPruned, ValidationError
from kaizenml.optimize import (
    Categorical,
    Float,
    Int,
    SQLStorage,
    TrialState,
    optimize_hyperparameters,
)


def test_exceptions_and_nan_fail_only_their_trial() -> None:
    def objective(p):
        if p["k"] == 2:
            raise ZeroDivisionError("k=2 is broken")
        if p["k"] == 3:
            return math.nan
        return float(p["k"])

    res = optimize_hyperparameters(
        {"k": Int(0, 5)}, objective, strategy="grid", max_trials=10, pruner=None
    )
    states = {t.params["k"]: t.state for t in res.trials}
    assert states == {
        0: "complete",
        1: "complete",
        2: "failed",
        3: "failed",
        4: "complete",
        5: "complete",
    }
    err = res.trials[2].error
    assert "Traceback" in err and "ZeroDivisionError: k=2 is broken" in err
    assert "non-finite" in res.trials[3].error
    assert (res.n_complete, res.n_failed, res.best_value) == (4, 2, 0.0)


def test_keyboard_interrupt_stops_cleanly_keeping_finished_trials() -> None:
    def objective(p):
        if p["k"] == 3:
            raise KeyboardInterrupt
        return float(p["k"])

    res = optimize_hyperparameters(
        {"k": Int(0, 9)}, objective, strategy="grid", max_trials=10, pruner=None
    )
    assert res.interrupted
    assert [t.state for t in res.trials] == ["complete"] * 3 + ["failed"]
    assert "KeyboardInterrupt" in res.trials[3].error


def test_bad_arguments() -> None:
    with pytest.raises(KaizenTypeError, match="objective"):
        optimize_hyperparameters({"x": Float(0, 1)}, 3, strategy="random", max_trials=2)
    with pytest.raises(ValidationError, match="n_jobs"):
        optimize_hyperparameters(
            {"x": Float(0, 1)}, lambda p: 0.0, strategy="random", max_trials=2, n_jobs=0
        )
    with pytest.raises(KaizenTypeError, match="executor"):
        optimize_hyperparameters(
            {"x": Float(0, 1)}, lambda p: 0.0, strategy="random", max_trials=2, executor="pool"
        )
    with pytest.raises(ValidationError, match="space"):
        optimize_hyperparameters({}, lambda p: 0.0, strategy="random", max_trials=2)


def test_objective_returning_metrics_dict() -> None:
    res = optimize_hyperparameters(
        {"x": Float(0.0, 1.0)},
        lambda p: {"sharpe": 2.0 * p["x"], "turnover": 1.0 - p["x"]},
        strategy="random",
        max_trials=12,
        seed=0,
        direction="maximize",
        metric="sharpe",
        pruner=None,
    )
    best = res.best_trial
    assert best.value == best.metrics["sharpe"] == max(t.metrics["sharpe"] for t in res.trials)


def test_callbacks_logging_and_progress_bar(caplog, capsys) -> None:
    seen = []

    def cb(opt, trial):
        seen.append(trial.number)
        if trial.number == 4:
            opt.stop()

    with caplog.at_level(logging.INFO, logger="kaizenml.optimize"):
        res = optimize_hyperparameters(
            {"x": Float(0.0, 1.0)},
            lambda p: p["x"],
            strategy="random",
            max_trials=20,
            seed=0,
            callbacks=[cb],
            show_progress_bar=True,
            pruner=None,
        )
    assert seen == [0, 1, 2, 3, 4] and res.n_trials == 5
    assert "trial 0 complete" in caplog.text
    err = capsys.readouterr().err
    assert "best=" in err and "5/20" in err


def test_parallel_loky_runs_lambdas_and_closures() -> None:
    offset = 0.25  # captured by the closure below

    def objective(p):
        return (p["x"] - offset) ** 2 + p["k"]

    res = optimize_hyperparameters(
        {"x": Float(-1.0, 1.0), "k": Int(0, 3)},
        objective,
        strategy="random",
        max_trials=12,
        n_jobs=2,
        seed=0,
        pruner=None,
    )
    assert res.n_complete == 12 and [t.number for t in res.trials] == list(range(12))
    for t in res.trials:
        assert t.value == pytest.approx((t.params["x"] - 0.25) ** 2 + t.params["k"])
    assert len({(t.params["x"], t.params["k"]) for t in res.trials}) == 12
    lam = optimize_hyperparameters(
        {"c": Categorical(["a", "bb", "ccc"])},
        lambda p: len(p["c"]),
        strategy="grid",
        max_trials=3,
        n_jobs=2,
        pruner=None,
    )
    assert sorted(t.value for t in lam.trials) == [1.0, 2.0, 3.0]


def test_dead_worker_fails_only_its_trial() -> None:
    def objective(p):
        if p["k"] == 2:
            os._exit(3)  # the worker process dies without a word
        return float(p["k"])

    res = optimize_hyperparameters(
        {"k": Int(0, 5)}, objective, strategy="grid", max_trials=6, n_jobs=2, pruner=None
    )
    states = {t.params["k"]: t.state for t in res.trials}
    assert states == {
        0: "complete",
        1: "complete",
        2: "failed",
        3: "complete",
        4: "complete",
        5: "complete",
    }
    assert "died" in res.trials[2].error


def _curve_objective(params, trial):
    for step in range(4):
        trial.report(step, params["q"] + 1.0 / (step + 1))
        if trial.should_prune():
            raise TrialPruned()
    trial.set_user_attr("pid", os.getpid())
    return params["q"]


def test_thread_executor_in_memory_prunes_against_the_snapshot() -> None:
    # one worker, so one trial in flight: every task's snapshot holds all earlier trials and the
    # decisions equal the serial ones (trials 4 and 6 pruned, see test_pruners)
    qs = [3.0, 1.0, 4.0, 1.5, 5.0, 2.0, 6.0, 0.5]
    with cf.ThreadPoolExecutor(max_workers=1) as ex:
        res = optimize_hyperparameters(
            {"q": Categorical(qs)},
            _curve_objective,
            strategy="grid",
            max_trials=8,
            executor=ex,
            pruner="median",
            pruner_options={"n_startup_trials": 3},
        )
    assert [t.number for t in res.trials if t.state == TrialState.PRUNED] == [4, 6]
    assert all(t.user_attrs["pid"] == os.getpid() for t in res.trials if t.state == "complete")
    assert res.trials[qs.index(6.0)].intermediate_values == {0: 7.0}


def test_process_executor_with_sql_storage_writes_reports_from_workers(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'par.db'}"
    with cf.ProcessPoolExecutor(max_workers=2) as ex:
        res = optimize_hyperparameters(
            {"q": Categorical([3.0, 1.0, 4.0, 9.0])},
            _curve_objective,
            strategy="grid",
            max_trials=4,
            executor=ex,
            storage=url,
            study_name="par",
            pruner=None,
        )
    assert res.n_complete == 4
    stored = SQLStorage(url)
    trials = stored.get_trials(stored.get_study("par").study_id)
    for t in trials:
        assert t.intermediate_values == {s: t.params["q"] + 1.0 / (s + 1) for s in range(4)}
        assert t.user_attrs["pid"] != os.getpid()


def test_timeout_stops_starting_trials() -> None:
    import time

    def slow(p):
        time.sleep(0.05)
        return p["x"]

    t0 = time.monotonic()
    res = optimize_hyperparameters(
        {"x": Float(0.0, 1.0)},
        slow,
        strategy="random",
        max_trials=1000,
        timeout=0.3,
        seed=0,
        pruner=None,
    )
    # every trial takes >= 0.05 s and none starts after 0.3 s
    assert 1 <= res.n_trials <= 7
    assert time.monotonic() - t0 < 5.0


def test_sobol_random_search_through_sampler_options() -> None:
    res = optimize_hyperparameters(
        {"x": Float(0.0, 1.0)},
        lambda p: p["x"],
        strategy="random",
        max_trials=64,
        sampler_options={"qmc": True},
        seed=5,
        pruner=None,
    )
    xs = sorted(t.params["x"] for t in res.trials)
    # the first 64 points of a scrambled Sobol sequence: one per 1/64 slab
    assert [int(x * 64) for x in xs] == list(range(64))


def _die_on_two(p):
    if p["k"] == 2:
        os._exit(3)
    return float(p["k"])


def test_dead_worker_in_a_user_executor_never_hangs_nor_leaves_running_trials() -> None:
    # a standard ProcessPoolExecutor may not recover once a worker died: the trials it held
    # fail (the study stops if it refuses new work), the others completed, nothing stays
    # "running"
    with cf.ProcessPoolExecutor(max_workers=2) as ex:
        res = optimize_hyperparameters(
            {"k": Int(0, 9)},
            _die_on_two,
            strategy="grid",
            max_trials=10,
            executor=ex,
            pruner=None,
        )
    by_k = {t.params["k"]: t for t in res.trials}
    assert by_k[2].state == TrialState.FAILED and "died" in by_k[2].error
    assert all(t.state.is_finished for t in res.trials)
    for t in res.trials:
        if t.state == TrialState.COMPLETE:
            assert t.value == float(t.params["k"]) and t.params["k"] != 2
        else:
            assert "died" in t.error or "refused" in t.error
    # trial 2 is sent only once trial 0 or 1 has finished
    assert TrialState.COMPLETE in (by_k[0].state, by_k[1].state)


def test_dask_client_executor(tmp_path) -> None:
    import distributed
    url = f"sqlite:///{tmp_path / 'dask.db'}"
    with distributed.Client(
        processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None
    ) as client:
        res = optimize_hyperparameters(
            {"q": Categorical([3.0, 1.0, 4.0, 9.0, 0.5])},
            _curve_objective,
            strategy="grid",
            max_trials=5,
            executor=client.get_executor(),
            storage=url,
            study_name="dask",
            pruner=None,
        )
    assert res.n_complete == 5 and res.best_value == 0.5
    assert all(len(t.intermediate_values) == 4 for t in res.trials)


def test_keyboard_interrupt_in_a_parallel_run() -> None:
    import time

    def objective(p):
        time.sleep(0.3 if p["k"] else 0.0)
        return float(p["k"])

    def interrupt(opt, trial):
        raise KeyboardInterrupt  # as if Ctrl-C arrived while waiting for workers

    with cf.ThreadPoolExecutor(max_workers=2) as ex:
        res = optimize_hyperparameters(
            {"k": Int(0, 9)},
            objective,
            strategy="grid",
            max_trials=10,
            executor=ex,
            callbacks=[interrupt],
            pruner=None,
        )
    assert res.interrupted
    assert res.trials[0].state == TrialState.COMPLETE  # finished first, kept
    assert res.n_trials == 2  # trial 1 was in flight: marked failed, nothing else started
    assert res.trials[1].state == TrialState.FAILED
    assert "KeyboardInterrupt" in res.trials[1].error


def test_workers_prune_against_the_sql_study(tmp_path) -> None:
    # worker processes read their peers' curves from the database: with one worker the
    # decisions equal the serial ones (trials 4 and 6 pruned, see test_pruners)
    qs = [3.0, 1.0, 4.0, 1.5, 5.0, 2.0, 6.0, 0.5]
    with cf.ProcessPoolExecutor(max_workers=1) as ex:
        res = optimize_hyperparameters(
            {"q": Categorical(qs)},
            _curve_objective,
            strategy="grid",
            max_trials=8,
            executor=ex,
            storage=f"sqlite:///{tmp_path / 'prune.db'}",
            study_name="prune",
            pruner="median",
            pruner_options={"n_startup_trials": 3},
        )
    assert [t.number for t in res.trials if t.state == TrialState.PRUNED] == [4, 6]
    assert res.trials[6].intermediate_values == {0: 7.0}


def test_an_error_in_a_callback_propagates_without_leaving_running_trials() -> None:
    import time

    from kaizenml.optimize import HyperparameterOptimizer, InMemoryStorage

    def objective(p):
        time.sleep(0.3 if p["k"] else 0.0)
        return float(p["k"])

    def broken_callback(opt, trial):
        raise ValueError("callback bug")

    storage = InMemoryStorage()
    with cf.ThreadPoolExecutor(max_workers=2) as ex:
        with pytest.raises(ValueError, match="callback bug"):
            optimize_hyperparameters(
                {"k": Int(0, 9)},
                objective,
                strategy="grid",
                max_trials=10,
                executor=ex,
                callbacks=[broken_callback],
                pruner=None,
                storage=storage,
                study_name="cb",
            )
    trials = HyperparameterOptimizer(
        {"k": Int(0, 9)},
        strategy="grid",
        storage=storage,
        study_name="cb",
        load_if_exists=True,
    ).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAILED]
    assert "callback bug" in trials[1].error


def test_system_exit_in_a_serial_objective_fails_its_trial_and_propagates() -> None:
    from kaizenml.optimize import InMemoryStorage

    def objective(p):
        if p["k"] == 1:
            raise SystemExit(2)
        return 0.0

    storage = InMemoryStorage()
    with pytest.raises(SystemExit):
        optimize_hyperparameters(
            {"k": Int(0, 3)},
            objective,
            strategy="grid",
            max_trials=4,
            pruner=None,
            storage=storage,
            study_name="exit",
        )
    trials = storage.get_trials(storage.get_study("exit").study_id)
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAILED]
    assert "SystemExit" in trials[1].error


@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "thread-executor"])
def test_a_non_scalar_result_fails_only_its_trial(parallel, caplog) -> None:
    import numpy as np

    def objective(p):
        if p["k"] == 1:
            return {"loss": np.array([1.0, 2.0])}
        if p["k"] == 3:
            return {"loss": "1.5"}  # text is not a result, even when it looks like a number
        return {"loss": float(p["k"])}

    kw = {"executor": cf.ThreadPoolExecutor(max_workers=1)} if parallel else {}
    with caplog.at_level(logging.WARNING, logger="kaizenml.optimize"):
        res = optimize_hyperparameters(
            {"k": Int(0, 4)},
            objective,
            strategy="grid",
            max_trials=5,
            metric="loss",
            pruner=None,
            **kw,
        )
    if parallel:
        kw["executor"].shutdown()
    by_k = {t.params["k"]: t for t in res.trials}
    assert [by_k[k].state for k in range(5)] == [
        "complete",
        "failed",
        "complete",
        "failed",
        "complete",
    ]
    n1, n3 = by_k[1].number, by_k[3].number
    assert by_k[1].error == (
        f"trial {n1}: metric 'loss' must be a real number, got array of shape (2,)"
    )
    assert by_k[3].error == f"trial {n3}: metric 'loss' must be a real number, got str '1.5'"
    assert f"trial {n1} failed: trial {n1}: metric 'loss'" in caplog.text
    assert (res.n_complete, res.n_failed, res.best_value) == (3, 2, 0.0)


def test_a_string_or_vector_objective_value_fails_its_trial() -> None:
    import numpy as np

    res = optimize_hyperparameters(
        {"x": Float(0.0, 1.0)},
        lambda p: np.array([p["x"]]) if p["x"] < 0.5 else "abc",
        strategy="random",
        max_trials=6,
        seed=0,
        pruner=None,
    )
    assert res.n_trials == 6 and res.n_failed == 6
    for t in res.trials:
        expected = "array of shape (1,)" if t.params["x"] < 0.5 else "str 'abc'"
        assert t.error == (
            f"trial {t.number}: the objective must return a real number or a dict of metrics, "
            f"got {expected}"
        )


def test_a_single_callable_is_accepted_as_callbacks() -> None:
    seen = []

    def cb(opt, trial):
        seen.append((trial.number, trial.value))

    res = optimize_hyperparameters(
        {"k": Int(0, 3)}, lambda p: float(p["k"]), strategy="grid", max_trials=4, callbacks=cb
    )
    assert seen == [(t.number, t.value) for t in res.trials] and len(seen) == 4
    with pytest.raises(KaizenTypeError) as info:
        optimize_hyperparameters({"k": Int(0, 3)}, lambda p: 0.0, max_trials=2, callbacks=3)
    assert str(info.value) == "callbacks must be a callable or a list of callables, got 3"
    with pytest.raises(KaizenTypeError, match="got 'print' in the list"):
        optimize_hyperparameters(
            {"k": Int(0, 3)}, lambda p: 0.0, max_trials=2, callbacks=[cb, "print"]
        )


def test_a_non_json_user_attribute_fails_in_the_objective_that_sets_it() -> None:
    import numpy as np

    def objective(p, trial):
        trial.set_user_attr("ok", [1, 2])
        if p["k"] == 1:
            trial.set_user_attr("bad", np.arange(3))
        return float(p["k"])

    res = optimize_hyperparameters(
        {"k": Int(0, 2)}, objective, strategy="grid", max_trials=3, pruner=None
    )
    assert [t.state for t in res.trials] == ["complete", "failed", "complete"]
    assert "KaizenTypeError: user attribute 'bad': value must be JSON-able" in res.trials[1].error
    assert "got array of shape (3,)" in res.trials[1].error
    assert res.trials[0].user_attrs == {"ok": [1, 2]}


def test_a_run_survives_a_trial_finished_by_another_worker(tmp_path, caplog) -> None:
    """Worker A stalls past the grace period; its trial is re-queued and B runs it. A's late
    result lands first; B keeps the stored result, logs a warning and goes on with its run."""
    import time

    from kaizenml.optimize import HyperparameterOptimizer

    url = f"sqlite:///{tmp_path / 's.db'}"
    space = {"x": {"type": "float", "low": 0.0, "high": 1.0}}
    kw = dict(strategy="random", storage=url, study_name="s", load_if_exists=True,
              heartbeat_interval=0.2, grace_period=0.5, retry_failed=1, seed=0)
    a = HyperparameterOptimizer(space, **kw)
    stalled = a.start_trial(a.ask())
    a.close()  # no more heartbeats from A
    time.sleep(0.8)

    calls: list[float] = []

    def objective(params: dict) -> float:
        if not calls:  # while B runs the re-queued trial, A's late result arrives
            a.complete_trial(stalled.number, 0.125)
        calls.append(params["x"])
        return params["x"]

    with caplog.at_level(logging.WARNING, logger="kaizenml"):
        result = optimize_hyperparameters(space, objective, max_trials=3, **kw)
    assert calls[0] == stalled.params["x"]  # B ran the same trial again
    assert "was finished by another worker" in caplog.text
    done = [t for t in result.trials if t.number == stalled.number][0]
    assert done.value == 0.125  # the result that arrived first stays
    assert len(calls) == 3 and len(result.completed_trials) == 3
