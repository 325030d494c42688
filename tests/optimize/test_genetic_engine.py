"""GeneticSearch: convergence to known optima, stopping rules, inputs, reproducibility, memory."""

from __future__ import annotations

import json
import math
import tracemalloc

import numpy as np
import pytest

from kaizenml._exceptions import KaizenTypeError, ValidationError
from kaizenml.optimize import Categorical, Float, Int, SearchSpace
from kaizenml.optimize._ga_engine import GeneticSearch


def rastrigin(X):
    return 10.0 * X.shape[1] + (X * X - 10.0 * np.cos(2.0 * np.pi * X)).sum(axis=1)


def sphere(X):
    return (X * X).sum(axis=1)


def _box(d, b):
    return {f"x{i}": Float(-b, b) for i in range(d)}


def test_sphere_reaches_its_optimum():
    ga = GeneticSearch(_box(5, 5.0), population_size=200, seed=0, n_threads=1)
    res = ga.run(sphere, generations=150, inputs="array")
    assert res.best_value < 1e-6
    assert all(abs(v) < 1e-3 for v in res.best_params.values())
    # best-so-far never gets worse, and the recorded best is the returned one
    assert np.all(np.diff(res.history["best"]) <= 0)
    assert res.history["best"][-1] == res.best_value
    assert res.n_evaluations == 200 * 151
    assert res.stop_reason == "generations"
    summary = json.loads(json.dumps(res.to_dict()))
    assert summary["best_value"] == res.best_value and summary["best_params"] == res.best_params
    assert len(summary["history"]["diversity"]) == 151


def test_rastrigin_reaches_the_global_optimum():
    ga = GeneticSearch(_box(5, 5.12), population_size=500, seed=1, n_threads=1)
    res = ga.run(rastrigin, generations=100, inputs="array")
    # the nearest local optima are worth ~1 each; 1e-3 means the global basin was found
    assert res.best_value < 1e-3
    x = np.array(list(res.best_params.values()))
    assert np.all(np.abs(x) < 0.01)
    assert math.isclose(rastrigin(x[None, :])[0], res.best_value, rel_tol=1e-9, abs_tol=1e-12)


def test_diversity_shrinks_as_the_population_converges():
    res = GeneticSearch(_box(3, 1.0), population_size=100, seed=2, n_threads=1).run(
        sphere, generations=40, inputs="array"
    )
    div = res.history["diversity"]
    # uniform on [0, 1]: standard deviation 1 / sqrt(12)
    assert abs(div[0] - 1 / math.sqrt(12)) < 0.05
    assert div[-1] < 0.1 * div[0]
    assert math.isclose(res.history["mean"][-1], float(np.mean(res.fitness)), rel_tol=1e-12)
    assert res.history["mean"][-1] >= res.history["best"][-1]


def test_maximize_and_mixed_parameter_types():
    space = {
        "x": Float(-2.0, 2.0),
        "n": Int(0, 10),
        "lr": Float(1e-4, 1.0, log=True),
        "k": Int(1, 1000, log=True),
        "kind": Categorical(["a", "b", "c"]),
    }

    def score(p):
        assert p["n"].dtype == np.int64 and p["kind"].dtype == object
        return (
            -((p["x"] - 1.0) ** 2)
            - (p["n"] - 3) ** 2
            - np.abs(np.log10(p["lr"]) + 2.0)
            - np.abs(np.log(p["k"]) - np.log(50.0))
            - (p["kind"] != "b")
        )

    res = GeneticSearch(space, population_size=200, seed=3, n_threads=1).run(
        score, generations=60, direction="maximize"
    )
    best = res.best_params
    assert best["n"] == 3 and best["kind"] == "b" and best["k"] == 50
    assert abs(best["x"] - 1.0) < 1e-2 and abs(math.log10(best["lr"]) + 2.0) < 1e-2
    assert isinstance(best["n"], int) and isinstance(best["k"], int)
    assert res.best_value > -0.05
    assert np.all(np.diff(res.history["best"]) >= 0)
    # every individual of the final population is a valid encoding
    pop = res.population
    assert np.all((pop >= 0) & (pop <= 1))
    for j, name in ((1, "n"), (4, "kind")):
        k = {"n": 11, "kind": 3}[name]
        lv = pop[:, j] * k - 0.5
        np.testing.assert_allclose(lv, np.rint(lv), atol=1e-9)


def test_target_and_stagnation_stop_early():
    space = _box(2, 1.0)
    res = GeneticSearch(space, population_size=100, seed=4, n_threads=1).run(
        sphere, generations=500, target=1e-3, inputs="array"
    )
    assert res.stop_reason == "target" and res.best_value <= 1e-3
    assert res.n_generations < 500 and len(res.history["best"]) == res.n_generations + 1

    flat = GeneticSearch(space, population_size=20, seed=4, n_threads=1).run(
        lambda X: np.zeros(len(X)), generations=500, stagnation=7, inputs="unit"
    )
    assert flat.stop_reason == "stagnation" and flat.n_generations == 7


def test_inputs_modes_and_nan_fitness():
    space = {"a": Float(10.0, 20.0), "c": Categorical(["x", "y"])}
    seen = {}

    def fit_array(A):
        seen["array"] = A.copy()
        return A[:, 0] + A[:, 1]

    ga = GeneticSearch(space, population_size=10, seed=5, n_threads=1)
    ga.run(fit_array, generations=0, inputs="array")
    A = seen["array"]
    assert A.shape == (10, 2) and np.all((A[:, 0] >= 10) & (A[:, 0] <= 20))
    assert set(np.unique(A[:, 1])) <= {0.0, 1.0}

    def fit_unit(U):
        assert not U.flags.writeable
        seen["unit"] = U.copy()
        return np.where(U[:, 0] > 0.5, np.nan, U[:, 0])

    res = GeneticSearch(space, population_size=10, seed=5, n_threads=1).run(
        fit_unit, generations=5, inputs="unit"
    )
    U = seen["unit"]
    assert np.all((U >= 0) & (U <= 1)) and set(np.unique(U[:, 1])) <= {0.25, 0.75}
    assert math.isfinite(res.best_value) and res.best_params["a"] <= 15.0


def test_same_seed_same_run_any_thread_count():
    space = _box(6, 3.0)
    runs = [
        GeneticSearch(space, population_size=3000, seed=9, n_threads=t).run(
            rastrigin, generations=5, inputs="array"
        )
        for t in (1, 2, 1)
    ]
    for r in runs[1:]:
        assert np.array_equal(r.population, runs[0].population)
        assert np.array_equal(r.history["best"], runs[0].history["best"])
    other = GeneticSearch(space, population_size=3000, seed=10, n_threads=1).run(
        rastrigin, generations=5, inputs="array"
    )
    assert not np.array_equal(other.population, runs[0].population)


def test_generational_replacement_keeps_elites():
    res = GeneticSearch(
        _box(3, 2.0),
        population_size=60,
        replacement="generational",
        elitism=2,
        seed=6,
        n_threads=1,
        crossover="blx",
        mutation="gaussian",
    ).run(sphere, generations=60, inputs="array")
    assert res.best_value < 1e-2
    # with elitism the population always holds the best found so far
    assert np.min(res.fitness) == res.best_value


def test_memory_stays_near_two_populations():
    n, g = 50_000, 32
    ga = GeneticSearch(_box(g, 1.0), population_size=n, seed=7, n_threads=1)
    pop_bytes = n * g * 8
    tracemalloc.start()
    try:
        ga.run(lambda U: U[:, 0].copy(), generations=2, inputs="unit")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # the parents and offspring matrices, and only small temporaries besides
    assert peak < 2.5 * pop_bytes


def test_engine_validation_errors():
    space = _box(2, 1.0)
    with pytest.raises(ValidationError, match="population_size"):
        GeneticSearch(space, population_size=1)
    with pytest.raises(ValidationError, match="elitism"):
        GeneticSearch(space, population_size=4, elitism=4)
    with pytest.raises(ValidationError, match="mutation"):
        GeneticSearch(space, mutation="flip")
    ga = GeneticSearch(space, population_size=4, seed=0, n_threads=1)
    with pytest.raises(KaizenTypeError, match="fitness"):
        ga.run("sphere")
    with pytest.raises(ValidationError, match="direction"):
        ga.run(sphere, direction="down")
    with pytest.raises(ValidationError, match="one value per individual"):
        ga.run(lambda X: np.zeros(3), inputs="array")
    with pytest.raises(ValidationError, match="initial_population"):
        ga.run(sphere, initial_population=np.zeros((3, 2)), inputs="array")


def test_progress_bar_shows_the_best_value(capsys):
    GeneticSearch(_box(2, 1.0), population_size=10, seed=0, n_threads=1).run(
        sphere, generations=3, inputs="array", show_progress_bar=True
    )
    err = capsys.readouterr().err
    assert "genetic search" in err and "best=" in err and "3/3" in err


def test_initial_population_and_odd_sizes():
    space = {"x": Float(-1.0, 1.0), "n": Int(0, 4)}
    start = np.tile([0.5, 0.5], (11, 1))  # x = 0, n = 2: the optimum below
    ga = GeneticSearch(space, population_size=11, seed=1, n_threads=1)

    def f(p):
        return p["x"] ** 2 + (p["n"] - 2) ** 2

    res = ga.run(f, generations=10, initial_population=start, target=0.0)
    assert res.stop_reason == "target" and res.n_generations == 0
    assert res.best_params == {"x": 0.0, "n": 2}
    # an odd population runs whole generations and keeps its size
    res = ga.run(f, generations=5)
    assert res.population.shape == (11, 2) and res.n_evaluations == 11 * 6


def test_fitness_inputs_match_the_space_decoding():
    space = {
        "a": Float(-3.0, 7.0),
        "b": Float(1e-3, 10.0, log=True),
        "s": Float(0.0, 1.0, step=0.25),
        "n": Int(-5, 5),
        "w": Int(1, 300, log=True),
        "c": Categorical(["p", 2, None]),
    }
    got = {}

    def capture(key):
        def f(arg):
            got[key] = arg
            return np.zeros(len(next(iter(arg.values()))) if isinstance(arg, dict) else len(arg))

        return f

    n = 30_000  # several decoding blocks
    for inputs in ("dict", "array"):
        res = GeneticSearch(space, population_size=n, seed=2, n_threads=1).run(
            capture(inputs), generations=0, inputs=inputs
        )
    ref = SearchSpace(space).decode_many(res.population)
    for j, name in enumerate(space):
        assert got["dict"][name].dtype == ref[name].dtype
        assert np.array_equal(got["dict"][name], ref[name])
        if name == "c":
            idx = np.array([["p", 2, None].index(v) for v in ref[name]], dtype=float)
            assert np.array_equal(got["array"][:, j], idx)
        else:
            assert np.array_equal(got["array"][:, j], ref[name].astype(float))


def test_a_fitness_of_strings_is_a_clear_type_error():
    from kaizenml.optimize._ga_engine import tournament_selection

    ga = GeneticSearch(_box(2, 1.0), population_size=4, seed=0, n_threads=1)

    def labels(X):
        return np.array(["good", "bad", "good", "bad"])

    with pytest.raises(KaizenTypeError) as info:
        ga.run(labels, inputs="array")
    assert str(info.value) == (
        "the fitness function 'labels' returned strings ['good', 'bad', 'good', ...]; fitness "
        "values must be real numbers (NaN counts as the worst)"
    )
    # numeric text is refused too rather than parsed
    with pytest.raises(KaizenTypeError, match=r"'<lambda>' returned strings \['1.5', '1.5'"):
        ga.run(lambda X: ["1.5"] * len(X), inputs="array")
    with pytest.raises(KaizenTypeError, match=r"returned objects \[\{\}, \{\}, \{\}, \.\.\.\]"):
        ga.run(lambda X: [{}] * len(X), inputs="array")
    # Python numbers and None (the worst) in a list are real values
    res = ga.run(lambda X: [None, 1.0, 2, 3.0], inputs="array", generations=0)
    assert res.best_value == 1.0 and math.isinf(res.fitness[0])
    with pytest.raises(KaizenTypeError, match=r"^fitness holds strings \['a'\]"):
        tournament_selection(["a"], 2, seed=0)
