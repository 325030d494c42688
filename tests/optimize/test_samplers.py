"""Random and grid strategies: coverage, determinism, resume."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats
from scipy.stats import qmc

from kaizenml import KaizenTypeError, ValidationError
from kaizenml.optimize import (
    Categorical,
    Float,
    GridSampler,
    HyperparameterOptimizer,
    InMemoryStorage,
    Int,
    RandomSampler,
    SamplerContext,
    SearchSpace,
    SpaceExhausted,
    Trial,
    TrialState,
    grid_values,
    make_sampler,
    optimize_hyperparameters,
)


def _ctx(space, trials=(), number=0):
    return SamplerContext(SearchSpace(space), "minimize", list(trials), number)


# --- grid ----------------------------------------------------------------------------------


def test_grid_values_known() -> None:
    vals = grid_values(
        {
            "lin": Float(-1.0, 1.0),
            "log": Float(1e-3, 1.0, log=True),
            "i": Int(0, 100),
            "s": Float(0.0, 1.0, step=0.25),
            "c": Categorical(["a", None, True]),
        },
        grid_points=5,
        max_int_points=5,
    )
    assert vals["lin"] == [-1.0, -0.5, 0.0, 0.5, 1.0]
    np.testing.assert_allclose(vals["log"], [1e-3, 10**-2.25, 10**-1.5, 10**-0.75, 1.0], rtol=1e-12)
    assert vals["i"] == [0, 25, 50, 75, 100]
    assert vals["s"] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert vals["c"] == ["a", None, True]
    # all integer values by default; log ints subset is log-spaced
    assert grid_values({"i": Int(1, 4)})["i"] == [1, 2, 3, 4]
    assert grid_values({"i": Int(1, 1000, log=True)}, max_int_points=4)["i"] == [1, 10, 100, 1000]


def test_grid_covers_exactly_the_expected_points_then_stops() -> None:
    space = {"a": Float(0.0, 1.0), "b": Int(1, 3), "c": Categorical(["x", "y"])}
    res = optimize_hyperparameters(
        space,
        lambda p: p["a"] + p["b"],
        strategy="grid",
        sampler_options={"grid_points": 3},
        max_trials=100,
        pruner=None,
    )
    expected = set(itertools.product([0.0, 0.5, 1.0], [1, 2, 3], ["x", "y"]))
    got = [(t.params["a"], t.params["b"], t.params["c"]) for t in res.trials]
    assert len(got) == 18 and set(got) == expected
    # lexicographic order, last parameter fastest
    assert got[:3] == [(0.0, 1, "x"), (0.0, 1, "y"), (0.0, 2, "x")]
    assert res.best_params == {"a": 0.0, "b": 1, "c": "x"}


def test_grid_resume_never_repeats_and_continues_numbering() -> None:
    storage = InMemoryStorage()
    space = {"a": Float(0.0, 1.0), "b": Categorical(["x", "y", "z"])}
    common = dict(
        strategy="grid",
        sampler_options={"grid_points": 4},
        storage=storage,
        study_name="g",
        pruner=None,
    )
    first = optimize_hyperparameters(space, lambda p: p["a"], max_trials=5, **common)
    assert [t.number for t in first.trials] == [0, 1, 2, 3, 4]
    second = optimize_hyperparameters(
        space, lambda p: p["a"], max_trials=100, load_if_exists=True, **common
    )
    numbers = [t.number for t in second.trials]
    assert numbers == list(range(12))
    points = [(t.params["a"], t.params["b"]) for t in second.trials]
    assert len(set(points)) == 12  # 4 x 3, none repeated
    assert second.trials[5].params == {"a": 1 / 3, "b": "z"}


def test_grid_skips_points_held_by_running_or_failed_trials() -> None:
    space = {"k": Int(0, 3)}
    held = [
        Trial(0, {"k": 0}, TrialState.RUNNING),
        Trial(1, {"k": 1}, TrialState.FAILED),
        Trial(2, {"k": 3}, TrialState.COMPLETE, 1.0),
    ]
    g = GridSampler()
    assert g.suggest(_ctx(space, held, 3)) == {"k": 2}
    with pytest.raises(SpaceExhausted):
        g.suggest(_ctx(space, [*held, Trial(3, {"k": 2}, TrialState.RUNNING)], 4))


def test_grid_shuffle_is_a_seeded_permutation() -> None:
    space = {"k": Int(0, 9)}

    def visit(seed):
        g = GridSampler(shuffle=True, seed=seed)
        trials = []
        for n in range(10):
            p = g.suggest(_ctx(space, trials, n))
            trials.append(Trial(n, p, TrialState.COMPLETE, 0.0))
        with pytest.raises(SpaceExhausted):
            g.suggest(_ctx(space, trials, 10))
        return [t.params["k"] for t in trials]

    a, b, c = visit(1), visit(1), visit(2)
    assert sorted(a) == list(range(10)) and a == b and a != c


def test_grid_options_validated() -> None:
    with pytest.raises(ValidationError, match="grid_points"):
        make_sampler("grid", grid_points=1)


# --- random --------------------------------------------------------------------------------


def test_random_is_seeded_by_trial_number() -> None:
    space = {"x": Float(0.0, 1.0), "n": Int(1, 50), "c": Categorical(["a", "b", "c"])}
    a = [RandomSampler(seed=5).suggest(_ctx(space, (), n)) for n in range(20)]
    # a fresh sampler asked out of order gives the same point per number
    s = RandomSampler(seed=5)
    b = {n: s.suggest(_ctx(space, (), n)) for n in reversed(range(20))}
    assert a == [b[n] for n in range(20)]
    c = [RandomSampler(seed=6).suggest(_ctx(space, (), n)) for n in range(20)]
    assert a != c


def test_random_marginals_are_uniform_in_the_encoding() -> None:
    space = {
        "x": Float(-2.0, 3.0),
        "lr": Float(1e-5, 1e-1, log=True),
        "k": Int(1, 4),
        "c": Categorical(["a", "b"]),
    }
    s = RandomSampler(seed=0)
    pts = [s.suggest(_ctx(space, (), n)) for n in range(2000)]
    x = np.array([p["x"] for p in pts])
    lr = np.log10([p["lr"] for p in pts])
    assert stats.kstest((x + 2.0) / 5.0, "uniform").pvalue > 0.01
    assert stats.kstest((lr + 5.0) / 4.0, "uniform").pvalue > 0.01
    counts = np.bincount([p["k"] for p in pts], minlength=5)[1:]
    assert stats.chisquare(counts).pvalue > 0.01
    assert abs(sum(p["c"] == "a" for p in pts) - 1000) < 120


def test_random_search_reaches_the_known_optimum_region() -> None:
    space = {"x": Float(-1.0, 1.0), "y": Float(-1.0, 1.0)}
    res = optimize_hyperparameters(
        space,
        lambda p: (p["x"] - 0.3) ** 2 + (p["y"] + 0.2) ** 2,
        strategy="random",
        max_trials=200,
        seed=0,
        pruner=None,
    )
    # 200 uniform points leave a 0.15-disc around the optimum empty with probability ~3%
    assert res.best_value < 0.15**2
    assert math.hypot(res.best_params["x"] - 0.3, res.best_params["y"] + 0.2) < 0.15


def test_qmc_stratifies_and_is_order_free() -> None:
    space = {"x": Float(0.0, 1.0), "y": Float(0.0, 1.0)}
    s = RandomSampler(seed=3, qmc=True)
    pts = np.array([[p["x"], p["y"]] for p in (s.suggest(_ctx(space, (), n)) for n in range(256))])
    # a (0, m, 2)-net in base 2: each of the 256 slabs of either axis holds exactly one point
    assert sorted(np.floor(pts[:, 0] * 256).astype(int)) == list(range(256))
    assert sorted(np.floor(pts[:, 1] * 256).astype(int)) == list(range(256))
    rnd = RandomSampler(seed=3)
    r = np.array([[p["x"], p["y"]] for p in (rnd.suggest(_ctx(space, (), n)) for n in range(256))])
    assert qmc.discrepancy(pts) < qmc.discrepancy(r) / 3
    # position n does not depend on what was asked before (resumed or parallel studies)
    other = RandomSampler(seed=3, qmc=True)
    p300 = other.suggest(_ctx(space, (), 300))
    s.suggest(_ctx(space, (), 299))
    assert s.suggest(_ctx(space, (), 300)) == p300


def test_sampler_interface_through_make_sampler() -> None:
    s = make_sampler("random", seed=1, qmc=True)
    assert isinstance(s, RandomSampler) and s.qmc and s.config()["qmc"] is True
    assert make_sampler(s) is s
    with pytest.raises(ValidationError, match="strategy"):
        make_sampler("annealing")


def test_strategy_instance_in_optimizer() -> None:
    opt = HyperparameterOptimizer(
        {"x": Float(0.0, 1.0)}, strategy=RandomSampler(seed=2), pruner=None
    )
    t = opt.ask()
    assert t.params == RandomSampler(seed=2).suggest(_ctx({"x": Float(0.0, 1.0)}, (), 0))


def test_unknown_strategy_options_and_unhashable_strategy_are_clear_errors() -> None:
    with pytest.raises(ValidationError) as info:
        make_sampler("random", seed=0, foo=1)
    assert (
        str(info.value)
        == "strategy='random' does not accept the option 'foo'; its options are ['qmc']"
    )
    with pytest.raises(ValidationError) as info:
        make_sampler("grid", grid_points=3, points=2, shufle=True)
    assert str(info.value) == (
        "strategy='grid' does not accept the options 'points', 'shufle'; its options are "
        "['grid_points', 'max_int_points', 'shuffle']"
    )
    # through the study constructor, and the same for every built-in strategy
    for name in ("random", "grid", "bayesian", "genetic"):
        with pytest.raises(
            ValidationError,
            match=rf"^strategy='{name}' does not accept the option 'foo'; its options are \['",
        ):
            HyperparameterOptimizer(
                {"x": Float(0.0, 1.0)}, strategy=name, sampler_options={"foo": 1}
            )
    with pytest.raises(ValidationError, match="must not contain 'seed'"):
        HyperparameterOptimizer(
            {"x": Float(0.0, 1.0)}, strategy="grid", sampler_options={"seed": 1}
        )
    with pytest.raises(KaizenTypeError) as info:
        HyperparameterOptimizer({"x": Float(0.0, 1.0)}, strategy=["random"])
    assert str(info.value) == (
        "strategy must be a name ['random', 'grid', 'bayesian', 'genetic'] or a Sampler "
        "instance, got list ['random']"
    )
    # a known option with a bad value keeps its own message
    with pytest.raises(ValidationError, match="grid_points must be >= 2"):
        HyperparameterOptimizer(
            {"x": Float(0.0, 1.0)}, strategy="grid", sampler_options={"grid_points": 1}
        )
