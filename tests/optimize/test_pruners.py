"""Pruners on constructed learning curves: exactly the expected trials are stopped."""

from __future__ import annotations

import numpy as np
import pytest

from kaizenml import KaizenTypeError, TrialPruned, ValidationError
from kaizenml.optimize import (
    Categorical,
    HyperparameterOptimizer,
    MedianPruner,
    NopPruner,
    PercentilePruner,
    SuccessiveHalvingPruner,
    Trial,
    TrialState,
    make_pruner,
    optimize_hyperparameters,
)


def _done(values_per_trial, sign=1.0):
    # completed trials whose curve is constant: value at every step 0..4
    return [
        Trial(
            i,
            {},
            TrialState.COMPLETE,
            sign * v,
            intermediate_values={s: sign * v for s in range(5)},
        )
        for i, v in enumerate(values_per_trial)
    ]


def _running(number, curve, sign=1.0):
    return Trial(
        number, {}, TrialState.RUNNING, intermediate_values={s: sign * v for s, v in curve.items()}
    )


@pytest.mark.parametrize("direction,sign", [("minimize", 1.0), ("maximize", -1.0)])
def test_median_pruner_decisions(direction, sign) -> None:
    peers = _done([1.0, 2.0, 3.0, 4.0, 5.0], sign)  # median 3 at every step
    p = MedianPruner(n_startup_trials=5)
    assert p.prune(peers, _running(9, {0: 3.5, 1: 3.5, 2: 3.5}, sign), direction)
    assert not p.prune(peers, _running(9, {0: 2.5, 1: 2.5, 2: 2.5}, sign), direction)
    assert not p.prune(peers, _running(9, {2: 3.0}, sign), direction)  # equal is not worse
    # the best value so far counts, not the last one
    assert not p.prune(peers, _running(9, {0: 0.5, 1: 3.5}, sign), direction)
    # no peer at this step: nothing to compare with
    assert not p.prune(peers, _running(9, {7: 100.0}, sign), direction)
    # warm-up, interval and start-up rules
    assert not MedianPruner(n_startup_trials=5, n_warmup_steps=3).prune(
        peers, _running(9, {2: 9.0}, sign), direction
    )
    assert MedianPruner(n_startup_trials=5, n_warmup_steps=3).prune(
        peers, _running(9, {3: 9.0}, sign), direction
    )
    # checks at the first report at or after 1, 3, 5, ... (Optuna's interval rule)
    every2 = MedianPruner(n_startup_trials=5, n_warmup_steps=1, interval_steps=2)
    assert every2.prune(peers, _running(9, {2: 9.0}, sign), direction)  # first report past 1
    assert not every2.prune(peers, _running(9, {1: 9.0, 2: 9.0}, sign), direction)  # 1 was it
    assert every2.prune(peers, _running(9, {1: 9.0, 2: 9.0, 3: 9.0}, sign), direction)
    assert every2.prune(peers, _running(9, {1: 9.0, 4: 9.0}, sign), direction)  # passed 3
    # a NaN among the values is skipped (best of the rest); only an all-NaN history is pruned
    assert not p.prune(peers, _running(9, {0: float("nan"), 1: 0.0}, sign), direction)
    assert p.prune(peers, _running(9, {0: float("nan"), 1: float("nan")}, sign), direction)
    assert not p.prune([], _running(9, {0: float("nan")}, sign), direction)  # nothing done yet
    assert not MedianPruner(n_startup_trials=6).prune(peers, _running(9, {0: 9.0}, sign), direction)
    # pruned and running peers are not part of the median
    others = [
        Trial(20 + i, {}, TrialState.PRUNED, intermediate_values={0: sign * 0.0}) for i in range(10)
    ]
    assert not p.prune(peers + others, _running(9, {0: 2.9}, sign), direction)


def test_percentile_pruner_matches_numpy() -> None:
    vals = [0.3, 1.7, 2.2, 4.0, 5.5, 6.1, 9.0]
    peers = _done(vals)
    for q in (10.0, 25.0, 50.0, 90.0):
        cut = np.percentile(vals, q)
        p = PercentilePruner(q, n_startup_trials=0)
        assert p.prune(peers, _running(99, {1: cut + 1e-9}), "minimize")
        assert not p.prune(peers, _running(99, {1: cut - 1e-9}), "minimize")


def test_median_pruner_in_a_study_prunes_exactly_the_expected_trials() -> None:
    # trial quality q in asking order; the curve at step t is q + 1 / (t + 1)
    qs = [3.0, 1.0, 4.0, 1.5, 5.0, 2.0, 6.0, 0.5]

    def objective(params, trial):
        for step in range(4):
            trial.report(step, params["q"] + 1.0 / (step + 1))
            if trial.should_prune():
                raise TrialPruned()
        return params["q"] + 0.25

    res = optimize_hyperparameters(
        {"q": Categorical(qs)},
        objective,
        strategy="grid",
        max_trials=len(qs),
        pruner="median",
        pruner_options={"n_startup_trials": 3},
    )
    # trial 4 (q=5): step 0 value 6 vs completed [4, 2, 5, 2.5] (median 3.25) -> pruned at 0
    # trial 6 (q=6): 7 vs [4, 2, 5, 2.5, 3] (median 3) -> pruned at step 0
    # trial 5 (q=2): 3 < 3.25 at step 0, 2.5 < 2.75 at step 1, ... -> completes
    assert [t.params["q"] for t in res.trials] == qs
    pruned = [t.number for t in res.trials if t.state == TrialState.PRUNED]
    assert pruned == [4, 6]
    assert res.trials[4].intermediate_values == {0: 6.0} and res.trials[4].value == 6.0
    assert res.n_complete == 6


def test_report_intermediate_result_prunes_in_ask_tell() -> None:
    opt = HyperparameterOptimizer(
        {"q": Categorical([1.0, 2.0, 9.0])},
        strategy="grid",
        pruner=MedianPruner(n_startup_trials=2),
    )
    for expected in (False, False):
        t = opt.ask()
        assert opt.report_intermediate_result(t.number, 0, t.params["q"]) is expected
        opt.complete_trial(t.number, t.params["q"])
    t = opt.ask()
    assert opt.report_intermediate_result(t.number, 0, 9.0) is True
    assert opt.get_trial(t.number).state == TrialState.PRUNED


def test_asha_rungs() -> None:
    assert SuccessiveHalvingPruner(min_resource=1, reduction_factor=2).rung_steps(10) == [
        1,
        2,
        4,
        8,
    ]
    assert SuccessiveHalvingPruner(
        min_resource=2, reduction_factor=3, min_early_stopping_rate=1
    ).rung_steps(100) == [6, 18, 54]


@pytest.mark.parametrize("direction,sign", [("minimize", 1.0), ("maximize", -1.0)])
def test_asha_promotes_the_top_fraction_per_rung(direction, sign) -> None:
    pruner = SuccessiveHalvingPruner(min_resource=1, reduction_factor=2)
    opt = HyperparameterOptimizer(
        {"q": Categorical(["a", "b", "c", "d", "e"])},
        strategy="grid",
        pruner=pruner,
        direction=direction,
    )
    # curves (minimization view) by step 1..8; rungs at steps 1, 2, 4, 8
    curves = {
        "a": [5.0, 4.0, 3.0, 2.0, 1.9, 1.8, 1.7, 1.6],  # first everywhere: always promoted
        "b": [6.0, 5.0, 4.0, 3.0, 2.9, 2.8, 2.7, 2.6],  # rung 1: [5, 6] keeps 1 -> pruned at 1
        "c": [4.0, 4.5, 3.5, 3.0, 2.0, 2.0, 2.0, 2.0],  # rung 1 best; rung 2: [4, 4.5] -> pruned
        "d": [4.5, 3.5, 2.5, 1.0, 1.0, 1.0, 1.0, 1.0],  # rung1 [5,6,4,4.5] keep 2: 4.5 > 4.5? no
        "e": [7.0] * 8,  # rung 1: keep 2 of 5 -> pruned
    }
    stopped = {}
    for _ in curves:
        t = opt.ask()
        name = t.params["q"]
        for step, v in enumerate(curves[name], start=1):
            if opt.report_intermediate_result(t.number, step, sign * v):
                stopped[name] = step
                break
        else:
            opt.complete_trial(t.number, sign * curves[name][-1])
    # d: rung 2 values [a 4, d 3.5] -> kept; rung 4 [a 2, d 1.0] -> kept; rung 8 kept
    assert stopped == {"b": 1, "c": 2, "e": 1}
    states = {t.params["q"]: t.state for t in opt.trials}
    assert states["a"] == states["d"] == TrialState.COMPLETE


def test_asha_rung_value_is_the_first_report_at_or_after_the_rung() -> None:
    pruner = SuccessiveHalvingPruner(min_resource=3, reduction_factor=2)
    leader = Trial(0, {}, TrialState.COMPLETE, 1.0, intermediate_values={0: 9.0, 4: 2.0, 10: 1.0})
    # rung at step 3: the leader's value there is the one of step 4 (2.0)
    worse = Trial(1, {}, TrialState.RUNNING, intermediate_values={5: 2.5})
    better = Trial(1, {}, TrialState.RUNNING, intermediate_values={5: 1.5})
    assert pruner.prune([leader], worse, "minimize")
    assert not pruner.prune([leader], better, "minimize")


def test_nop_pruner_and_trial_pruned_without_pruner() -> None:
    def objective(params, trial):
        trial.report(0, 1e9)
        assert not trial.should_prune()
        if params["q"] == "stop":
            raise TrialPruned()
        return 1.0

    res = optimize_hyperparameters(
        {"q": Categorical(["go", "stop"])}, objective, strategy="grid", max_trials=2, pruner=None
    )
    assert [t.state for t in res.trials] == [TrialState.COMPLETE, TrialState.PRUNED]
    assert isinstance(make_pruner(None), NopPruner)
    with pytest.raises(ValidationError, match="percentile"):
        make_pruner("percentile", percentile=150.0)
    with pytest.raises(ValidationError, match=r"not accept the options \['reduction_factor'\]"):
        make_pruner("median", reduction_factor=3)
    # a bad value of a known option keeps its own error, naming the option
    with pytest.raises(KaizenTypeError, match="n_warmup_steps must be an integer"):
        make_pruner("median", n_warmup_steps="5")


@pytest.mark.filterwarnings("ignore:All-NaN slice encountered:RuntimeWarning")  # inside Optuna
def test_percentile_pruner_agrees_with_optuna() -> None:
    """Random histories with NaN reports on both sides, decisions compared with Optuna's
    PercentilePruner (the reference these rules follow)."""
    import optuna
    from optuna.trial import TrialState as OptunaState
    from optuna.trial import create_trial

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    rng = np.random.default_rng(7)
    checked = 0
    for _ in range(700):
        direction = str(rng.choice(["minimize", "maximize"]))
        warmup, interval = int(rng.integers(0, 4)), int(rng.integers(1, 4))
        startup, n_min = int(rng.integers(0, 4)), int(rng.integers(1, 3))
        q = float(rng.choice([25.0, 50.0, 75.0]))

        def history(nan_rate: float) -> dict[int, float]:
            steps = sorted(rng.choice(8, size=int(rng.integers(1, 6)), replace=False))
            return {int(s): float("nan") if rng.random() < nan_rate else float(rng.random())
                    for s in steps}

        done = [history(0.15) for _ in range(int(rng.integers(0, 7)))]
        current = history(0.15)
        ours = PercentilePruner(q, n_startup_trials=startup, n_warmup_steps=warmup,
                                interval_steps=interval, n_min_trials=n_min)
        trials = [Trial(i, {}, TrialState.COMPLETE, 0.5, intermediate_values=iv)
                  for i, iv in enumerate(done)]
        me = Trial(len(done), {}, TrialState.RUNNING, intermediate_values=current)
        study = optuna.create_study(direction=direction)
        for iv in done:
            study.add_trial(create_trial(value=0.5, intermediate_values=iv, params={},
                                         distributions={}))
        theirs = optuna.pruners.PercentilePruner(
            q, n_startup_trials=startup, n_warmup_steps=warmup, interval_steps=interval,
            n_min_trials=n_min,
        ).prune(study, create_trial(state=OptunaState.RUNNING, intermediate_values=current,
                                    params={}, distributions={}))
        assert ours.prune(trials + [me], me, direction) == bool(theirs), (
            direction, q, startup, warmup, interval, n_min, done, current)
        checked += bool(theirs)
    assert checked > 50  # the comparison covers many prunes, not only "keep"
