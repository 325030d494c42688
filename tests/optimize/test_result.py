"""OptimizationResult: counts, convergence, recommendations, exports."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from kaizenml import StateError
from kaizenml.optimize import (
    Categorical,
    Float,
    HyperparameterOptimizer,
    Int,
    optimize_hyperparameters,
)


def _told(values, direction="minimize", fail=(), prune=()):
    opt = HyperparameterOptimizer(
        {"x": Float(0.0, 1.0)}, strategy="random", seed=0, pruner=None, direction=direction
    )
    for i, v in enumerate(values):
        t = opt.ask()
        if i in fail:
            opt.fail_trial(t.number, "bad")
        elif i in prune:
            opt.report_intermediate_result(t.number, 0, v)
            opt.prune_trial(t.number)
        else:
            opt.complete_trial(t.number, v)
    return opt.result()


def test_counts_best_and_convergence() -> None:
    res = _told([5.0, 3.0, 4.0, 1.0, 2.0, 7.0], fail=(2,), prune=(4,))
    assert (res.n_trials, res.n_complete, res.n_failed, res.n_pruned) == (6, 4, 1, 1)
    assert res.best_trial.number == 3 and res.best_value == 1.0
    conv = res.convergence
    assert conv["number"] == [0, 1, 3, 5]
    assert conv["value"] == [5.0, 3.0, 1.0, 7.0]
    assert conv["best_so_far"] == [5.0, 3.0, 1.0, 1.0]
    np.testing.assert_allclose(conv["running_mean"], [5.0, 4.0, 3.0, 4.0])
    up = _told([1.0, 3.0, 2.0, 4.0], direction="maximize")
    assert up.convergence["best_so_far"] == [1.0, 3.0, 3.0, 4.0]
    assert up.best_value == 4.0


def test_no_completed_trial_is_a_clear_error() -> None:
    res = _told([1.0, 2.0], fail=(0, 1))
    with pytest.raises(StateError, match="no completed trial"):
        _ = res.best_trial
    d = res.to_dict()
    assert d["best_trial"] is None and d["n_failed"] == 2


def test_exports() -> None:
    res = _told([2.0, 1.0, float("nan")])
    d = json.loads(res.to_json())
    assert d["best_value"] == 1.0 and d["n_failed"] == 1
    assert [t["state"] for t in d["trials"]] == ["complete", "complete", "failed"]
    assert d["convergence"]["best_so_far"] == [2.0, 1.0]
    df = res.trials_dataframe()
    assert list(df["number"]) == [0, 1, 2]
    assert {"params_x", "value", "state", "duration", "error"} <= set(df.columns)
    assert df["params_x"].tolist() == [t.params["x"] for t in res.trials]


def test_recommendations_from_the_data() -> None:
    # the optimum lies past the upper bound of x; y does not matter at all
    res = optimize_hyperparameters(
        {"x": Float(0.0, 1.0), "y": Float(0.0, 1.0), "k": Int(1, 20)},
        lambda p: -3.0 * p["x"] + 0.2 * p["k"],
        strategy="random",
        max_trials=60,
        seed=1,
        pruner=None,
    )
    recs = res.recommendations()
    kinds = {(r["kind"], r["parameter"]) for r in recs}
    assert ("widen_range", "x") in kinds  # best x near 1.0
    assert ("fix_parameter", "y") in kinds
    assert ("fix_parameter", "x") not in kinds
    msg = next(r["message"] for r in recs if r["kind"] == "widen_range" and r["parameter"] == "x")
    assert "high" in msg and "1.0" in msg
    assert res.importance["y"] < 0.01 < res.importance["x"]


def test_widen_range_at_the_low_edge_of_a_log_range() -> None:
    opt = HyperparameterOptimizer(
        {"lr": Float(1e-5, 1e-1, log=True), "k": Int(1, 20)}, strategy="random", pruner=None
    )
    for lr, k, v in [(1.2e-5, 10, 0.0), (1e-3, 1, 1.0), (5e-2, 20, 2.0)]:
        opt.enqueue_trial({"lr": lr, "k": k})
        opt.complete_trial(opt.ask().number, v)
    recs = [r for r in opt.result().recommendations() if r["kind"] == "widen_range"]
    assert [r["parameter"] for r in recs] == ["lr"]  # k=10 sits mid-range
    assert "low edge" in recs[0]["message"] and "lower the low bound 1e-05" in recs[0]["message"]


def _finished_in_order(outcomes, n_asked):
    """A study whose asked trials complete in the given order: ``[(number, value), ...]``."""
    opt = HyperparameterOptimizer({"x": Float(0.0, 1.0)}, strategy="random", seed=0, pruner=None)
    for _ in range(n_asked):
        opt.ask()
    for number, value in outcomes:
        time.sleep(0.002)  # distinct completion times whatever the clock's resolution
        opt.complete_trial(number, value)
    return opt.result()


def test_out_of_order_completion_convergence_and_no_improvement() -> None:
    # trial 1 ran long and finished last, with the best value
    late_best = _finished_in_order([(0, 3.0)] + [(i, 5.0) for i in range(2, 10)] + [(1, 1.0)], 10)
    conv = late_best.convergence
    # the curve is in trial-number order, monotone, whatever the order of completion
    assert conv["number"] == list(range(10))
    assert conv["best_so_far"] == [3.0] + [1.0] * 9
    kinds = {r["kind"] for r in late_best.recommendations(last_n=3)}
    assert "no_improvement" not in kinds  # the last trial to finish improved
    # trial 9 finished first with the best value, the nine others after it did not improve
    early_best = _finished_in_order([(9, 1.0)] + [(i, 5.0) for i in range(9)], 10)
    assert early_best.convergence["best_so_far"] == [5.0] * 9 + [1.0]
    recs = [r for r in early_best.recommendations(last_n=3) if r["kind"] == "no_improvement"]
    assert len(recs) == 1 and "did not improve on trial 9" in recs[0]["message"]


def test_recommendations_for_stagnation_and_failures() -> None:
    values = [1.0] + [5.0] * 19
    res = _told(values)
    kinds = {r["kind"] for r in res.recommendations()}
    assert "no_improvement" in kinds
    assert "no_improvement" not in {
        r["kind"] for r in _told(sorted(values, reverse=True)).recommendations()
    }
    bad = _told([1.0] * 10, fail=(1, 2, 3))
    assert "many_failures" in {r["kind"] for r in bad.recommendations()}
    pr = _told([1.0] * 10, prune=(1, 2, 3, 4, 5, 6, 7))
    assert "many_pruned" in {r["kind"] for r in pr.recommendations()}


def test_categorical_best_is_never_told_to_widen() -> None:
    res = optimize_hyperparameters(
        {"c": Categorical(["a", "b", "c"])},
        lambda p: "abc".index(p["c"]),
        strategy="grid",
        max_trials=3,
        pruner=None,
    )
    assert not [r for r in res.recommendations() if r["kind"] == "widen_range"]


def _widen_recs(space, rows):
    """Recommendations ``widen_range`` of a study told ``rows`` of (params, value)."""
    opt = HyperparameterOptimizer(space, strategy="random", pruner=None)
    for params, value in rows:
        opt.enqueue_trial(params)
        opt.complete_trial(opt.ask().number, value)
    return {
        r["parameter"]: r["message"]
        for r in opt.result().recommendations()
        if r["kind"] == "widen_range"
    }


def test_widen_range_on_the_end_level_of_a_few_level_int_or_stepped_float() -> None:
    space = {"depth": Int(2, 8), "s": Float(0.0, 1.0, step=0.25)}
    recs = _widen_recs(space, [({"depth": 2, "s": 1.0}, 0.0), ({"depth": 5, "s": 0.5}, 1.0)])
    assert set(recs) == {"depth", "s"}
    assert recs["depth"] == (
        "the best depth=2 is at the low edge of its range [2, 8]; lower the low bound 2 and "
        "search again"
    )
    assert recs["s"] == (
        "the best s=1.0 is at the high edge of its range [0.0, 1.0]; raise the high bound 1.0 "
        "and search again"
    )
    # one level inside either bound: nothing to widen
    interior = _widen_recs(space, [({"depth": 3, "s": 0.75}, 0.0), ({"depth": 8, "s": 0.0}, 1.0)])
    assert interior == {}
    # the other ends of the ranges
    recs = _widen_recs(space, [({"depth": 8, "s": 0.0}, 0.0), ({"depth": 5, "s": 0.5}, 1.0)])
    assert "high edge" in recs["depth"] and "low edge" in recs["s"]
    # log ints are discrete too
    assert "depth" in _widen_recs({"depth": Int(1, 6, log=True)}, [({"depth": 6}, 0.0)])
