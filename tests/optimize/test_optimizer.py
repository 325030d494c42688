"""The ask/tell optimizer: life cycle, errors, metrics, stopping rules, reproducibility."""

from __future__ import annotations

import math
import time

import pytest

from kaizenml import KaizenTypeError, NotFoundError, StateError, ValidationError
from kaizenml.optimize import (
    Categorical,
    Float,
    HyperparameterOptimizer,
    Int,
    SpaceExhausted,
    TrialState,
    optimize_hyperparameters,
)

SPACE = {"x": Float(-1.0, 1.0), "k": Int(1, 4)}


def _opt(**kw):
    kw.setdefault("strategy", "random")
    kw.setdefault("pruner", None)
    kw.setdefault("seed", 0)
    return HyperparameterOptimizer(SPACE, **kw)


def test_ask_tell_life_cycle(storage) -> None:
    opt = _opt(storage=storage)
    t = opt.get_next_trial()
    assert t.state == TrialState.WAITING and t.number == 0
    assert set(t.params) == {"x", "k"}
    running = opt.start_trial(t.number)
    assert running.state == TrialState.RUNNING and running.datetime_start is not None
    assert opt.report_intermediate_result(t.number, 0, 2.0) is False
    done = opt.complete_trial(t.number, 1.25)
    assert done.state == TrialState.COMPLETE and done.value == 1.25
    assert done.metrics == {"value": 1.25}
    assert opt.best_trial.number == 0
    assert opt.trials[0].intermediate_values == {0: 2.0}


def test_clear_errors_for_misuse(storage) -> None:
    opt = _opt(storage=storage)
    t = opt.ask()
    opt.complete_trial(t.number, 1.0)
    with pytest.raises(StateError, match="already complete"):
        opt.complete_trial(t.number, 2.0)
    with pytest.raises(StateError, match="already complete"):
        opt.fail_trial(t.number, "late")
    with pytest.raises(NotFoundError, match="trial 99"):
        opt.complete_trial(99, 1.0)
    t2 = opt.ask()
    opt.report_intermediate_result(t2, 3, 0.5)  # a Trial is accepted as the id too
    with pytest.raises(StateError, match="step 3"):
        opt.report_intermediate_result(t2.number, 3, 0.4)
    with pytest.raises(ValidationError, match="step"):
        opt.report_intermediate_result(t2.number, -1, 0.4)
    with pytest.raises(KaizenTypeError, match="trial_id"):
        opt.complete_trial("1", 1.0)
    with pytest.raises(KaizenTypeError, match="number or a dict"):
        opt.complete_trial(t2.number, "good")


def test_constructor_validation() -> None:
    with pytest.raises(ValidationError, match="direction"):
        _opt(direction="up")
    with pytest.raises(ValidationError, match="max_trials"):
        _opt(max_trials=0)
    with pytest.raises(ValidationError, match="pruner"):
        _opt(pruner="sometimes")
    with pytest.raises(KaizenTypeError, match="storage"):
        _opt(storage=3.5)
    with pytest.raises(ValidationError, match="grace_period"):
        _opt(heartbeat_interval=2.0, grace_period=1.0)


def test_metrics_dict_and_metric_choice() -> None:
    opt = _opt(metric="sharpe", direction="maximize")
    t = opt.ask()
    done = opt.complete_trial(t.number, {"sharpe": 1.5, "drawdown": 0.2})
    assert done.value == 1.5 and done.metrics == {"sharpe": 1.5, "drawdown": 0.2}
    t = opt.ask()
    with pytest.raises(ValidationError, match="'sharpe' is not among"):
        opt.complete_trial(t.number, {"pnl": 3.0})
    plain = _opt()
    t = plain.ask()
    with pytest.raises(ValidationError, match="pass metric="):
        plain.complete_trial(t.number, {"a": 1.0, "b": 2.0})
    assert plain.complete_trial(t.number, {"a": 1.0}).value == 1.0


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_result_fails_the_trial(bad) -> None:
    opt = _opt()
    t = opt.ask()
    out = opt.complete_trial(t.number, bad)
    assert out.state == TrialState.FAILED and "non-finite" in out.error
    assert opt.best_trial is None


def test_best_trial_follows_the_direction() -> None:
    for direction, best in (("minimize", 0), ("maximize", 2)):
        opt = _opt(direction=direction)
        for v in (-3.0, 1.0, 7.0):
            opt.complete_trial(opt.ask().number, v)
        assert opt.best_trial.number == best


def test_should_stop_on_budget_and_exhaustion() -> None:
    opt = _opt(max_trials=3)
    assert not opt.should_stop()
    for _ in range(3):
        opt.complete_trial(opt.ask().number, 1.0)
    assert opt.should_stop()
    grid = HyperparameterOptimizer({"c": Categorical(["a", "b"])}, strategy="grid", pruner=None)
    for _ in range(2):
        grid.complete_trial(grid.ask().number, 0.0)
    with pytest.raises(SpaceExhausted):
        grid.ask()
    assert grid.should_stop()
    stopper = _opt()
    stopper.stop()
    assert stopper.should_stop()


def test_timeout() -> None:
    opt = _opt(timeout=0.0)
    assert opt.should_stop()


@pytest.mark.parametrize("direction", ["minimize", "maximize"])
def test_early_stopping_counts_trials_without_improvement(direction) -> None:
    sign = 1.0 if direction == "minimize" else -1.0
    # improvements by more than min_delta=0.1 at trials 0, 1, 2, 5; 3, 4 and 6-8 do not count
    values = [5.0, 4.0, 3.0, 2.95, 3.5, 2.5, 2.45, 2.41, 2.42, 1.0]
    opt = _opt(direction=direction, early_stopping=True, patience=3, min_delta=0.1)
    stopped_after = None
    for i, v in enumerate(values):
        opt.complete_trial(opt.ask().number, sign * v)
        if opt.should_stop():
            stopped_after = i
            break
    # after trial 5 (2.5) come 2.45, 2.41, 2.42: three trials without a 0.1 improvement
    assert stopped_after == 8


def test_early_stopping_small_gains_add_up() -> None:
    # each trial gains 0.06 < min_delta=0.1, but every second one is 0.12 below the last
    # counted improvement, so patience=2 is never reached
    opt = _opt(early_stopping=True, patience=2, min_delta=0.1)
    for i in range(12):
        opt.complete_trial(opt.ask().number, 10.0 - 0.06 * i)
        assert not opt.should_stop()
    opt.complete_trial(opt.ask().number, 10.0)
    opt.complete_trial(opt.ask().number, 10.0)
    assert opt.should_stop()


def _finish_in_order(opt, outcomes):
    """Complete asked trials in the given order: ``[(number, value), ...]``."""
    for number, value in outcomes:
        time.sleep(0.002)  # distinct completion times whatever the clock's resolution
        opt.complete_trial(number, value)


def test_early_stopping_counts_in_completion_order(storage) -> None:
    # six workers: trial 1 runs long and finishes last with the best value so far
    opt = _opt(storage=storage, early_stopping=True, patience=3)
    for _ in range(6):
        opt.ask()
    _finish_in_order(opt, [(0, 5.0), (2, 6.0), (3, 6.0), (1, 1.0)])
    assert not opt.should_stop()  # the last trial to finish improved
    _finish_in_order(opt, [(4, 6.0), (5, 6.0)])
    # two trials since the improvement, not three (trials 2 and 3 finished before trial 1)
    assert not opt.should_stop()
    assert not opt.early_stopping_triggered()
    _finish_in_order(opt, [(opt.ask().number, 6.0)])
    assert opt.should_stop() and opt.early_stopping_triggered()

    # the best trial has the highest number but finished first: the three after it count
    opt = _opt(storage=storage, early_stopping=True, patience=3)
    for _ in range(6):
        opt.ask()
    _finish_in_order(opt, [(5, 1.0), (0, 6.0), (1, 6.0)])
    assert not opt.should_stop()
    _finish_in_order(opt, [(2, 6.0)])
    assert opt.should_stop()
    # the same decision from a list of trials
    assert opt.early_stopping_triggered(opt.trials)
    assert not opt.early_stopping_triggered([t for t in opt.trials if t.number != 2])


def test_early_stopping_in_optimize_hyperparameters() -> None:
    res = optimize_hyperparameters(
        {"x": Float(0.0, 1.0)},
        lambda p: 1.0,
        strategy="random",
        max_trials=50,
        early_stopping=True,
        patience=4,
        seed=0,
        pruner=None,
    )
    assert res.n_trials == 5  # the first sets the best, four more do not improve it


def test_seed_reproduces_a_serial_run() -> None:
    space = {"x": Float(-2.0, 2.0), "lr": Float(1e-4, 1e-1, log=True), "c": Categorical([1, 2, 3])}

    def run(seed):
        res = optimize_hyperparameters(
            space,
            lambda p: p["x"] ** 2 + p["lr"] * p["c"],
            strategy="random",
            max_trials=15,
            seed=seed,
            pruner=None,
        )
        return [(t.params, t.value) for t in res.trials]

    assert run(11) == run(11)
    assert run(11) != run(12)


def test_user_attrs_and_prune_trial(storage) -> None:
    opt = _opt(storage=storage)
    t = opt.ask()
    opt.set_user_attr(t.number, "fold", 3)
    opt.report_intermediate_result(t.number, 0, 9.0)
    pruned = opt.prune_trial(t.number)
    assert pruned.state == TrialState.PRUNED and pruned.value == 9.0
    assert opt.get_trial(t.number).user_attrs == {"fold": 3}
    with pytest.raises(StateError, match="already pruned"):
        opt.complete_trial(t.number, 1.0)


def test_telling_a_non_scalar_raises_and_leaves_the_trial_running(storage) -> None:
    import numpy as np

    opt = _opt(storage=storage, metric="loss")
    t = opt.start_trial(opt.ask().number)
    with pytest.raises(KaizenTypeError) as info:
        opt.complete_trial(t.number, np.array([1.0, 2.0]))
    assert str(info.value) == (
        f"trial {t.number}: the objective must return a real number or a dict of metrics, "
        "got array of shape (2,)"
    )
    with pytest.raises(KaizenTypeError, match=r"metric 'loss' must be a real number, got list"):
        opt.complete_trial(t.number, {"loss": [1.0]})
    assert opt.get_trial(t.number).state == TrialState.RUNNING
    # numpy scalars and 0-d arrays are real numbers
    done = opt.complete_trial(t.number, {"loss": np.array(0.5), "acc": np.float32(0.25)})
    assert done.state == TrialState.COMPLETE and done.value == 0.5
    assert done.metrics == {"loss": 0.5, "acc": 0.25}


def test_set_user_attr_refuses_values_json_cannot_hold(storage) -> None:
    import datetime

    import numpy as np

    opt = _opt(storage=storage)
    t = opt.ask()
    when = datetime.datetime(2024, 1, 2, 3, 4, 5)
    for value, shown in [
        ({1, 2}, "set {1, 2}"),
        (np.array([1.0, 2.0]), "array of shape (2,)"),
        (when, "datetime datetime.datetime(2024, 1, 2, 3, 4, 5)"),
    ]:
        with pytest.raises(KaizenTypeError) as info:
            opt.set_user_attr(t.number, "s", value)
        assert str(info.value).startswith(
            "user attribute 's': value must be JSON-able (str, int, float, bool, None, or lists "
            f"and dicts of them), got {shown} ("
        )
    opt.set_user_attr(t.number, "s", sorted({2, 1}))
    opt.set_user_attr(t.number, "when", when.isoformat())
    assert opt.get_trial(t.number).user_attrs == {"s": [1, 2], "when": "2024-01-02T03:04:05"}
