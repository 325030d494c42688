"""strategy="genetic" end to end: optimize_hyperparameters, resumption from SQLite, workers."""

from __future__ import annotations

import time

import numpy as np

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
