"""strategy="genetic" end to end: optimize_hyperparameters, resumption from SQLite, workers."""

from __future__ import annotations

import numpy as np

from kaizenml.optimize import Categorical, Float, Int, optimize_hyperparameters

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
