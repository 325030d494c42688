"""BayesianSampler driven through SamplerContext/Trial objects (a minimal ask/tell loop)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from kaizenml._exceptions import KaizenTypeError, ValidationError
from kaizenml.optimize import (
    Categorical,
    Float,
    Int,
    SamplerContext,
    SearchSpace,
    SpaceExhausted,
    Trial,
    TrialState,
    make_sampler,
)
from kaizenml.optimize._bayes import BayesianSampler

BRANIN_MIN = 0.397887357729738
HARTMANN6_MIN = -3.322368011415515
_H6_A = np.array(
    [
        [10, 3, 17, 3.5, 1.7, 8],
        [0.05, 10, 17, 0.1, 8, 14],
        [3, 3.5, 1.7, 10, 17, 8],
        [17, 8, 0.05, 10, 0.1, 14],
    ]
)
_H6_P = 1e-4 * np.array(
    [
        [1312, 1696, 5569, 124, 8283, 5886],
        [2329, 4135, 8307, 3736, 1004, 9991],
        [2348, 1451, 3522, 2883, 3047, 6650],
        [4047, 8828, 8732, 5743, 1091, 381],
    ]
)
_H6_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])


def branin(p: dict[str, Any]) -> float:
    x1, x2 = p["x1"], p["x2"]
    b, c = 5.1 / (4 * math.pi**2), 5 / math.pi
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x1) + 10


def hartmann6(p: dict[str, Any]) -> float:
    x = np.array([p[f"x{i}"] for i in range(6)])
    return -float(_H6_ALPHA @ np.exp(-(_H6_A * (x - _H6_P) ** 2).sum(axis=1)))


BRANIN_SPACE = SearchSpace({"x1": Float(-5.0, 10.0), "x2": Float(0.0, 15.0)})
HARTMANN6_SPACE = SearchSpace({f"x{i}": Float(0.0, 1.0) for i in range(6)})


def run_serial(
    sampler: Any,
    space: SearchSpace,
    f: Callable[[dict[str, Any]], float],
    n: int,
    direction: str = "minimize",
) -> list[Trial]:
    trials: list[Trial] = []
    for i in range(n):
        params = sampler.suggest(SamplerContext(space, direction, list(trials), i))
        trials.append(Trial(i, params, TrialState.COMPLETE, value=f(params)))
    return trials


def random_search(space: SearchSpace, f: Callable, n: int, seed: int) -> float:
    X = np.random.default_rng(seed).random((n, space.n_dims))
    return min(f(space.decode(x)) for x in X)


@pytest.mark.parametrize(
    ("space", "f", "f_min", "n", "margin"),
    [
        (BRANIN_SPACE, branin, BRANIN_MIN, 25, 1.5),
        (HARTMANN6_SPACE, hartmann6, HARTMANN6_MIN, 45, 1.0),
    ],
    ids=["branin", "hartmann6"],
)
def test_clear_margin_over_random_search(space, f, f_min, n, margin) -> None:
    seeds = [0, 1, 2]
    bo, rs = [], []
    for seed in seeds:
        trials = run_serial(BayesianSampler(seed=seed), space, f, n)
        bo.append(math.log10(min(t.value for t in trials) - f_min + 1e-12))
        rs.append(math.log10(random_search(space, f, n, seed) - f_min + 1e-12))
    # median log10 regret at least `margin` decades better than random search with the same budget
    assert np.median(bo) < np.median(rs) - margin, (bo, rs)
    assert max(bo) < min(rs), (bo, rs)


def test_maximize_direction() -> None:
    trials = run_serial(
        BayesianSampler(seed=4), BRANIN_SPACE, lambda p: -branin(p), 25, direction="maximize"
    )
    assert max(t.value for t in trials) > -BRANIN_MIN - 0.05


def test_parallel_suggestions_differ_and_are_useful() -> None:
    space = BRANIN_SPACE
    base = run_serial(BayesianSampler(seed=1), space, branin, 15)
    sampler = BayesianSampler(seed=1)
    trials = list(base)
    suggestions = []
    for _ in range(4):
        number = len(trials)
        params = sampler.suggest(SamplerContext(space, "minimize", list(trials), number))
        suggestions.append(space.encode(params))
        trials.append(Trial(number, params, TrialState.RUNNING))
    X = np.array(suggestions)
    dists = np.sqrt(((X[:, None, :] - X[None, :, :]) ** 2).sum(-1))
    assert dists[np.triu_indices(4, 1)].min() > 1e-3, dists
    assert np.median(dists[np.triu_indices(4, 1)]) > 0.03, dists
    # useful, not just spread out: the batch improves on the typical trial so far
    median = np.median([t.value for t in base])
    assert min(branin(space.decode(x)) for x in X) < median


@pytest.mark.parametrize("strategy", ["liar_best", "liar_mean", "liar_worst"])
def test_constant_liars_also_spread(strategy: str) -> None:
    space = BRANIN_SPACE
    trials = run_serial(BayesianSampler(seed=2), space, branin, 12)
    sampler = BayesianSampler(seed=2, parallel_strategy=strategy)
    pts = []
    for _ in range(3):
        number = len(trials)
        params = sampler.suggest(SamplerContext(space, "minimize", list(trials), number))
        pts.append(space.encode(params))
        trials.append(Trial(number, params, TrialState.RUNNING))
    X = np.array(pts)
    assert np.sqrt(((X[:, None] - X[None]) ** 2).sum(-1))[np.triu_indices(3, 1)].min() > 1e-3


def test_categorical_and_integer_handling() -> None:
    # the good choice sits between two bad ones in declaration order: an ordinal treatment of
    # the categorical would smear them together
    penalty = {"sgd": 3.0, "adam": 0.0, "rmsprop": 2.5, "adagrad": 4.0}
    space = SearchSpace(
        {
            "lr": Float(1e-4, 1e-1, log=True),
            "units": Int(16, 256, log=True),
            "opt": Categorical(list(penalty)),
            "layers": Int(1, 4),
        }
    )

    def loss(p: dict[str, Any]) -> float:
        return (
            (math.log10(p["lr"]) + 2.5) ** 2
            + (math.log2(p["units"]) - 6) ** 2 / 4
            + penalty[p["opt"]]
            + 0.5 * (p["layers"] - 2) ** 2
        )

    trials = run_serial(BayesianSampler(seed=0), space, loss, 40)
    for t in trials:
        assert isinstance(t.params["units"], int) and 16 <= t.params["units"] <= 256
        assert isinstance(t.params["layers"], int) and 1 <= t.params["layers"] <= 4
        assert t.params["opt"] in penalty
    best = min(trials, key=lambda t: t.value)
    assert best.params["opt"] == "adam"
    assert best.params["layers"] == 2
    assert best.value < 0.3
    late = [t.params["opt"] for t in trials[-10:]]
    assert late.count("adam") >= 6, late


def test_only_categorical_space_is_exhausted_without_repeats() -> None:
    space = SearchSpace({"a": Categorical(["x", "y", "z"]), "b": Int(0, 2)})
    values = {("x", 0): 3.0, ("y", 1): 0.0}
    sampler = BayesianSampler(seed=3, n_startup_trials=3)
    trials: list[Trial] = []
    seen = set()
    for i in range(9):
        p = sampler.suggest(SamplerContext(space, "minimize", list(trials), i))
        key = (p["a"], p["b"])
        assert key not in seen
        seen.add(key)
        state = TrialState.FAILED if i % 3 == 2 else TrialState.COMPLETE
        value = values.get(key, 1.0 + 0.1 * p["b"]) if state == TrialState.COMPLETE else None
        trials.append(Trial(i, p, state, value=value))
    assert len(seen) == 9
    with pytest.raises(SpaceExhausted):
        sampler.suggest(SamplerContext(space, "minimize", list(trials), 9))


def test_failed_points_are_not_proposed_again_and_not_modelled() -> None:
    space = SearchSpace({"x": Int(0, 20)})
    sampler = BayesianSampler(seed=5, n_startup_trials=3)
    trials: list[Trial] = []
    for i in range(12):
        p = sampler.suggest(SamplerContext(space, "minimize", list(trials), i))
        assert all(p != t.params for t in trials)
        if p["x"] in (9, 10, 11):  # the optimum region fails: the model must not see values
            trials.append(Trial(i, p, TrialState.FAILED, error="boom"))
        else:
            trials.append(Trial(i, p, TrialState.COMPLETE, value=(p["x"] - 10) ** 2))
    model_trials, y = sampler._model_data(SamplerContext(space, "minimize", trials, 12))
    assert all(t.state == TrialState.COMPLETE for t in model_trials)
    assert len(y) == sum(t.state == TrialState.COMPLETE for t in trials)


def test_pruned_trials_use_last_value_floored_at_median() -> None:
    space = SearchSpace({"x": Float(0.0, 1.0)})
    trials = [Trial(i, {"x": i / 10}, TrialState.COMPLETE, value=float(i)) for i in range(5)]
    trials.append(Trial(5, {"x": 0.55}, TrialState.PRUNED, intermediate_values={0: 9.0, 1: 7.0}))
    trials.append(Trial(6, {"x": 0.65}, TrialState.PRUNED, intermediate_values={0: 0.5}))
    trials.append(Trial(7, {"x": 0.75}, TrialState.PRUNED))  # nothing reported: left out
    ctx = SamplerContext(space, "minimize", trials, 8)
    model_trials, y = BayesianSampler()._model_data(ctx)
    assert [t.number for t in model_trials] == [0, 1, 2, 3, 4, 5, 6]
    np.testing.assert_array_equal(y, [0, 1, 2, 3, 4, 7.0, 2.0])
    # maximizing: values are negated, the floor is the median of the negated values
    ctx = SamplerContext(space, "maximize", trials, 8)
    _, y = BayesianSampler()._model_data(ctx)
    np.testing.assert_array_equal(y, [0, -1, -2, -3, -4, -2.0, -0.5])
    _, y = BayesianSampler(pruned_trials="exclude")._model_data(ctx)
    assert len(y) == 5


def test_seed_reproduces_and_cache_is_only_an_optimization() -> None:
    a = run_serial(BayesianSampler(seed=11), BRANIN_SPACE, branin, 14)
    b = run_serial(BayesianSampler(seed=11), BRANIN_SPACE, branin, 14)
    assert [t.params for t in a] == [t.params for t in b]
    # a fresh sampler (no cached fit, as in a resumed study) continues sensibly
    fresh = BayesianSampler(seed=11)
    p = fresh.suggest(SamplerContext(BRANIN_SPACE, "minimize", a, 14))
    assert BRANIN_SPACE.validate_params(p) == p
    assert branin(p) < np.median([t.value for t in a])
    # a cache from another space is ignored
    fresh._theta_cache = (HARTMANN6_SPACE, np.zeros(8), 14)
    p = fresh.suggest(SamplerContext(BRANIN_SPACE, "minimize", a, 14))
    assert BRANIN_SPACE.validate_params(p) == p


def test_hyperparameters_refit_as_data_grows() -> None:
    rng = np.random.default_rng(0)
    trials = [
        Trial(i, BRANIN_SPACE.decode(x), TrialState.COMPLETE, value=branin(BRANIN_SPACE.decode(x)))
        for i, x in enumerate(rng.random((100, 2)))
    ]
    sampler = BayesianSampler(seed=0)
    sampler.suggest(SamplerContext(BRANIN_SPACE, "minimize", trials, 100))
    assert sampler._theta_cache is not None and sampler._theta_cache[2] == 100
    theta = sampler._theta_cache[1].copy()
    for i in range(100, 106):
        p = sampler.suggest(SamplerContext(BRANIN_SPACE, "minimize", list(trials), i))
        trials.append(Trial(i, p, TrialState.COMPLETE, value=branin(p)))
        if i < 105:  # fewer than 5 % more observations: the fit is reused as it is
            np.testing.assert_array_equal(sampler._theta_cache[1], theta)
    assert sampler._theta_cache[2] == 105
    assert min(t.value for t in trials[100:]) < min(t.value for t in trials[:100])


def test_startup_points_are_sobol_and_distinct() -> None:
    sampler = BayesianSampler(seed=0)
    assert sampler.startup_size(HARTMANN6_SPACE) == 9
    assert sampler.startup_size(BRANIN_SPACE) == 5
    X = []
    trials: list[Trial] = []
    for i in range(8):
        p = sampler.suggest(SamplerContext(HARTMANN6_SPACE, "minimize", [], i))
        X.append(HARTMANN6_SPACE.encode(p))
        trials.append(Trial(i, p, TrialState.RUNNING))
    X = np.array(X)
    # the first 8 points of a scrambled Sobol sequence: one per half in every dimension
    for j in range(6):
        assert (X[:, j] < 0.5).sum() == 4


@pytest.mark.parametrize("acquisition", ["ucb", "pi"])
def test_other_acquisitions_optimize(acquisition: str) -> None:
    bo, rs = [], []
    for seed in (0, 1, 2):
        trials = run_serial(
            BayesianSampler(seed=seed, acquisition=acquisition), BRANIN_SPACE, branin, 25
        )
        bo.append(math.log10(min(t.value for t in trials) - BRANIN_MIN))
        rs.append(math.log10(random_search(BRANIN_SPACE, branin, 25, seed) - BRANIN_MIN))
    # a decade better than random search with the same budget
    assert np.median(bo) < np.median(rs) - 1.0, (bo, rs)


def _heavy_tailed(p: dict[str, Any]) -> float:
    # exp of a bowl: values span 1 .. 6e7, a few huge ones dominate a plain standardization
    return math.exp(3 * ((p["x1"] - 2) ** 2 + (p["x2"] - 5) ** 2) / 25)


@pytest.mark.parametrize("warping", ["auto", "power", "rank"])
def test_output_warping_handles_heavy_tails(warping: str) -> None:
    trials = run_serial(
        BayesianSampler(seed=1, output_warping=warping), BRANIN_SPACE, _heavy_tailed, 20
    )
    assert min(t.value for t in trials) < 1.1  # minimum 1.0; without warping > 1.1 below


def test_without_warping_heavy_tails_hurt() -> None:
    for seed in (0, 1):
        plain = run_serial(
            BayesianSampler(seed=seed, output_warping="none"), BRANIN_SPACE, _heavy_tailed, 20
        )
        assert min(t.value for t in plain) > 1.1


def test_registered_strategy_and_config() -> None:
    s = make_sampler("bayesian", seed=3, acquisition="ucb")
    assert isinstance(s, BayesianSampler)
    cfg = s.config()
    assert cfg["name"] == "bayesian" and cfg["acquisition"] == "ucb" and cfg["seed"] == 3


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"acquisition": "ei"}, ValidationError, "acquisition"),
        ({"n_startup_trials": 0}, ValidationError, "n_startup_trials"),
        ({"n_startup_trials": 2.5}, KaizenTypeError, "n_startup_trials"),
        ({"output_warping": "log"}, ValidationError, "output_warping"),
        ({"parallel_strategy": "x"}, ValidationError, "parallel_strategy"),
        ({"pruned_trials": "keep"}, ValidationError, "pruned_trials"),
        ({"ucb_beta": -1.0}, ValidationError, "ucb_beta"),
        ({"n_candidates": 3}, ValidationError, "n_candidates"),
    ],
)
def test_bad_options(kwargs: dict, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        BayesianSampler(**kwargs)


@pytest.mark.parametrize(
    ("f", "best_x"),
    [
        (lambda p: 1.0, None),  # constant: the model must not break, points stay distinct
        (lambda p: 1e300 * (p["x"] + 1.0), 0.0),  # near the float64 limit
        (lambda p: 1e-300 * (p["x"] - 0.25) ** 2, 0.25),  # tiny differences
    ],
    ids=["constant", "huge", "tiny"],
)
def test_extreme_value_scales(f: Callable, best_x: float | None) -> None:
    space = SearchSpace({"x": Float(0.0, 1.0)})
    with np.errstate(all="raise"):
        trials = run_serial(BayesianSampler(seed=0), space, f, 14)
    xs = [t.params["x"] for t in trials]
    assert len(set(xs)) == len(xs)
    if best_x is not None:
        assert abs(min(trials, key=lambda t: t.value).params["x"] - best_x) < 0.02
