"""strategy="genetic" end to end: optimize_hyperparameters, resumption from SQLite, workers."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest

from kaizenml import ValidationError
from kaizenml.optimize import (
    Categorical,
    Float,
    HyperparameterOptimizer,
    Int,
    optimize_hyperparameters,
)

SPACE = {
    "x": Float(-4.0, 4.0),
    "y": Float(-4.0, 4.0),
    "n": Int(0, 8),
    "act": Categorical(["relu", "tanh", "gelu"]),
}


def objective(p):
    return (p["x"] - 1.0) ** 2 + (p["y"] + 2.0) ** 2 + 0.5 * abs(p["n"] - 5) + (p["act"] != "tanh")


def _run(**kwargs):
    options = dict(strategy="genetic", seed=3, pruner=None, sampler_options={"population_size": 12})
    options.update(kwargs)
    return optimize_hyperparameters(SPACE, objective, **options)


def test_genetic_strategy_end_to_end_beats_random():
    res = _run(max_trials=150)
    assert res.n_complete == 150
    assert res.best_params["act"] == "tanh" and res.best_params["n"] == 5
    assert res.best_value < 0.1
    rand = [
        optimize_hyperparameters(
            SPACE, objective, strategy="random", max_trials=150, seed=s, pruner=None
        ).best_value
        for s in range(3)
    ]
    assert res.best_value < 0.25 * float(np.median(rand))
    # a fixed seed reproduces the study
    again = _run(max_trials=150)
    assert [t.params for t in again.trials] == [t.params for t in res.trials]


def test_resumed_study_continues_as_if_never_stopped(tmp_path):
    url = f"sqlite:///{tmp_path / 'ga.db'}"
    whole = _run(max_trials=60)
    _run(max_trials=25, storage=url, study_name="ga")
    resumed = _run(max_trials=60, storage=url, study_name="ga", load_if_exists=True)
    assert resumed.n_trials == 60
    assert [t.params for t in resumed.trials] == [t.params for t in whole.trials]


def test_parallel_workers_get_distinct_suggestions():
    # defined here so that worker processes receive it by value (the test module itself is not
    # importable from where the workers start)
    def sphere(p):
        return (
            (p["x"] - 1.0) ** 2 + (p["y"] + 2.0) ** 2 + 0.5 * abs(p["n"] - 5) + (p["act"] != "tanh")
        )

    res = optimize_hyperparameters(
        SPACE,
        sphere,
        strategy="genetic",
        seed=3,
        pruner=None,
        max_trials=40,
        n_jobs=2,
        sampler_options={"population_size": 12},
    )
    assert res.n_complete == 40
    keys = {tuple(sorted(t.params.items())) for t in res.trials}
    assert len(keys) == len(res.trials)
    assert res.best_value < 3.0


def test_resume_with_other_space_names_the_differing_parameters(tmp_path):
    url = f"sqlite:///{tmp_path / 'ga.db'}"
    _run(max_trials=5, storage=url, study_name="ga")
    changed = {**SPACE, "x": Float(-5.0, 4.0), "z": Float(0.0, 1.0)}
    del changed["n"]
    with pytest.raises(ValidationError) as info:
        optimize_hyperparameters(
            changed,
            objective,
            strategy="genetic",
            max_trials=10,
            storage=url,
            study_name="ga",
            load_if_exists=True,
        )
    msg = str(info.value)
    # the changed bound, the added and the removed parameter are each named
    assert "'x'" in msg and "-5.0" in msg
    assert "'z'" in msg and "added" in msg
    assert "'n'" in msg and "removed" in msg
    assert "'y'" not in msg  # unchanged parameters are not listed


def test_resume_with_other_sampler_options_warns_and_stays_deterministic(tmp_path, caplog):
    url = f"sqlite:///{tmp_path / 'ga.db'}"
    for name in ("a", "b"):
        _run(max_trials=20, storage=url, study_name=name)
    resumed = []
    for name in ("a", "b"):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="kaizenml.optimize"):
            resumed.append(
                _run(
                    max_trials=40,
                    storage=url,
                    study_name=name,
                    load_if_exists=True,
                    sampler_options={"population_size": 6},
                )
            )
        text = " ".join(r.getMessage() for r in caplog.records)
        assert "population_size" in text and "12" in text and "6" in text, text
        assert "option 'seed'" not in text  # unchanged options are not listed
    # the new options are used, the same way in two identical resumed runs
    assert [t.params for t in resumed[0].trials] == [t.params for t in resumed[1].trials]
    whole = _run(max_trials=40)
    assert [t.params for t in resumed[0].trials][:20] == [t.params for t in whole.trials][:20]
    assert [t.params for t in resumed[0].trials][20:] != [t.params for t in whole.trials][20:]
    # a resume with the stored options says nothing
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="kaizenml.optimize"):
        _run(max_trials=45, storage=url, study_name="a", load_if_exists=True)
    assert not [r for r in caplog.records if "sampler" in r.getMessage()]


def test_resume_with_another_seed_warns(tmp_path, caplog):
    url = f"sqlite:///{tmp_path / 'ga.db'}"
    _run(max_trials=5, storage=url, study_name="ga")
    with caplog.at_level(logging.WARNING, logger="kaizenml.optimize"):
        _run(max_trials=10, storage=url, study_name="ga", load_if_exists=True, seed=None)
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "seed" in text and "3" in text and "None" in text, text


def test_resume_after_a_lost_worker_retries_the_same_point(tmp_path):
    # a process died with trial 20 unfinished: with retry_failed the resumed study runs that
    # trial again with the same parameters, so it ends as the uninterrupted study does
    url = f"sqlite:///{tmp_path / 'ga.db'}"
    opt = HyperparameterOptimizer(
        SPACE,
        strategy="genetic",
        seed=3,
        pruner=None,
        storage=url,
        study_name="ga",
        sampler_options={"population_size": 12},
        heartbeat_interval=0.05,
        grace_period=0.2,
    )
    for _ in range(20):
        t = opt.ask()
        opt.complete_trial(t, objective(t.params))
    lost = opt.ask()
    opt.close()
    del opt
    # resumed after the grace period: a trial still fresh then could be alive elsewhere, and
    # the study would go on around it (a child of trial 21 would not see trial 20's value)
    time.sleep(0.3)
    resumed = _run(
        max_trials=40,
        storage=url,
        study_name="ga",
        load_if_exists=True,
        retry_failed=1,
        heartbeat_interval=0.05,
        grace_period=0.2,
    )
    whole = _run(max_trials=40)
    assert resumed.n_complete == 40
    assert resumed.trials[20].params == lost.params
    assert [t.params for t in resumed.trials] == [t.params for t in whole.trials]


def test_interrupted_trial_is_failed_and_resumes_deterministically(tmp_path):
    url = f"sqlite:///{tmp_path / 'ga.db'}"

    def interrupted_at_20(p):
        if interrupted_at_20.calls == 20:
            raise KeyboardInterrupt
        interrupted_at_20.calls += 1
        return objective(p)

    runs = []
    for name in ("a", "b"):
        interrupted_at_20.calls = 0
        first = optimize_hyperparameters(
            SPACE,
            interrupted_at_20,
            strategy="genetic",
            seed=3,
            pruner=None,
            max_trials=40,
            storage=url,
            study_name=name,
            sampler_options={"population_size": 12},
        )
        assert first.interrupted and first.n_complete == 20 and first.n_failed == 1
        assert "KeyboardInterrupt" in first.trials[20].error
        runs.append(_run(max_trials=40, storage=url, study_name=name, load_if_exists=True))
    whole = _run(max_trials=40)
    a, b = ([t.params for t in r.trials] for r in runs)
    assert a == b  # two identical resumed runs agree
    assert a[:21] == [t.params for t in whole.trials][:21]
    # trial 20 failed: it is never a parent, and its point is not proposed again
    assert runs[0].trials[20].state.value == "failed"
    assert runs[0].trials[20].params not in a[21:]
    assert runs[0].n_complete == 39
