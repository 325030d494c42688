"""Bayesian strategy: regret suite and suggestion overhead against Optuna and scikit-optimize.

Run as a script (writes a JSON file and prints markdown tables):

    PYTHONPATH=src python benchmarks/bench_bayes.py regret --seeds 10 --budget 100
    PYTHONPATH=src python benchmarks/bench_bayes.py regret --quick      # 3 seeds, 50 evals
    PYTHONPATH=src python benchmarks/bench_bayes.py overhead

or the timing part under pytest-benchmark:

    PYTHONPATH=src python -m pytest benchmarks/bench_bayes.py --benchmark-only

Regret is ``log10(best value found - known minimum)`` (floored at 1e-12), read off each run after
50 and after ``--budget`` evaluations (the samplers do not know the budget, so the first 50
evaluations of a 100-evaluation run are a 50-evaluation run). Every method sees the same problems
and seeds; kaizenml's sampler is driven through ``SamplerContext`` exactly as a study drives it.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from kaizenml.optimize import (
    Categorical,
    Float,
    Int,
    SamplerContext,
    SearchSpace,
    Trial,
    TrialState,
)
from kaizenml.optimize._bayes import BayesianSampler

# ---------------------------------------------------------------------------------------------
# problems with known minima


@dataclass
class Problem:
    name: str
    space: SearchSpace
    f: Callable[[dict[str, Any]], float]
    f_min: float


def _vec(p: dict[str, Any], d: int) -> np.ndarray:
    return np.array([p[f"x{i}"] for i in range(d)], dtype=np.float64)


def branin(p: dict[str, Any]) -> float:
    x1, x2 = p["x0"], p["x1"]
    b, c = 5.1 / (4 * math.pi**2), 5 / math.pi
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x1) + 10


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


def hartmann6(p: dict[str, Any]) -> float:
    x = _vec(p, 6)
    return -float(_H6_ALPHA @ np.exp(-(_H6_A * (x - _H6_P) ** 2).sum(axis=1)))


def levy6(p: dict[str, Any]) -> float:
    w = 1 + (_vec(p, 6) - 1) / 4
    head = math.sin(math.pi * w[0]) ** 2
    mid = np.sum((w[:-1] - 1) ** 2 * (1 + 10 * np.sin(math.pi * w[:-1] + 1) ** 2))
    tail = (w[-1] - 1) ** 2 * (1 + math.sin(2 * math.pi * w[-1]) ** 2)
    return float(head + mid + tail)


def rosenbrock4_log(p: dict[str, Any]) -> float:
    x = _vec(p, 4)
    return math.log1p(float(np.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)))


def ackley10(p: dict[str, Any]) -> float:
    x = _vec(p, 10)
    a = -20 * math.exp(-0.2 * math.sqrt(float(np.mean(x**2))))
    b = -math.exp(float(np.mean(np.cos(2 * math.pi * x))))
    return a + b + 20 + math.e


_OPTIMIZERS = {
    "sgd": (0.12, -1.5),
    "adam": (0.0, -3.0),
    "adamw": (0.03, -2.7),
    "rmsprop": (0.08, -3.4),
}


def mixed_nn(p: dict[str, Any]) -> float:
    """A smooth stand-in for a validation loss; minimum 0.1 at lr=1e-3, hidden=256, layers=3,
    dropout=0.2, optimizer=adam. Learning rate and dropout interact (a coupled valley)."""
    penalty, best_log_lr = _OPTIMIZERS[p["optimizer"]]
    a = math.log10(p["lr"]) - best_log_lr
    b = (p["dropout"] - 0.2) / 0.25
    h = (math.log2(p["hidden"]) - 8) / 2
    layers = (p["layers"] - 3) / 2
    return (
        0.1
        + penalty
        + 0.2 * a**2
        + 0.15 * (a + b) ** 2
        + 0.1 * h**2
        + 0.08 * layers**2
        + 0.05 * (h - layers) ** 2
    )


def problems() -> dict[str, Problem]:
    return {
        "branin": Problem(
            "Branin (2-D)",
            SearchSpace({"x0": Float(-5.0, 10.0), "x1": Float(0.0, 15.0)}),
            branin,
            0.397887357729738,
        ),
        "hartmann6": Problem(
            "Hartmann-6",
            SearchSpace({f"x{i}": Float(0.0, 1.0) for i in range(6)}),
            hartmann6,
            -3.322368011415515,
        ),
        "levy6": Problem(
            "Levy-6", SearchSpace({f"x{i}": Float(-10.0, 10.0) for i in range(6)}), levy6, 0.0
        ),
        "rosenbrock4_log": Problem(
            "Rosenbrock-4 (log1p)",
            SearchSpace({f"x{i}": Float(-2.0, 2.0) for i in range(4)}),
            rosenbrock4_log,
            0.0,
        ),
        "ackley10": Problem(
            "Ackley-10", SearchSpace({f"x{i}": Float(-5.0, 5.0) for i in range(10)}), ackley10, 0.0
        ),
        "mixed_nn": Problem(
            "Mixed NN-like (5 params)",
            SearchSpace(
                {
                    "lr": Float(1e-5, 1e-1, log=True),
                    "hidden": Int(16, 1024, log=True),
                    "layers": Int(1, 6),
                    "dropout": Float(0.0, 0.7),
                    "optimizer": Categorical(list(_OPTIMIZERS)),
                }
            ),
            mixed_nn,
            0.1,
        ),
    }


# ---------------------------------------------------------------------------------------------
# runners: each returns the objective values in evaluation order


def run_kaizenml(prob: Problem, n: int, seed: int, **options: Any) -> list[float]:
    sampler = BayesianSampler(seed=seed, **options)
    trials: list[Trial] = []
    for i in range(n):
        params = sampler.suggest(SamplerContext(prob.space, "minimize", list(trials), i))
        trials.append(Trial(i, params, TrialState.COMPLETE, value=prob.f(params)))
    return [float(t.value) for t in trials]  # type: ignore[arg-type]


def _optuna_distributions(space: SearchSpace) -> dict[str, Any]:
    import optuna

    out = {}
    for name, p in space.items():
        if isinstance(p, Float):
            out[name] = optuna.distributions.FloatDistribution(
                p.low, p.high, log=p.log, step=p.step
            )
        elif isinstance(p, Int):
            out[name] = optuna.distributions.IntDistribution(p.low, p.high, log=p.log, step=p.step)
        else:
            out[name] = optuna.distributions.CategoricalDistribution(p.choices)
    return out


def _optuna_sampler(kind: str, seed: int) -> Any:
    import optuna

    if kind == "optuna_tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if kind == "optuna_gp":
        return optuna.samplers.GPSampler(seed=seed)
    if kind == "optuna_cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)


def run_optuna(prob: Problem, n: int, seed: int, kind: str) -> list[float]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(sampler=_optuna_sampler(kind, seed))
    dists = _optuna_distributions(prob.space)
    values = []
    for _ in range(n):
        trial = study.ask(dists)
        v = prob.f(trial.params)
        study.tell(trial, v)
        values.append(v)
    return values


def run_skopt(prob: Problem, n: int, seed: int) -> list[float]:
    import skopt
    from skopt.space import Categorical as SkCat
    from skopt.space import Integer, Real

    dims, names = [], list(prob.space.names)
    for name, p in prob.space.items():
        if isinstance(p, Float):
            dims.append(Real(p.low, p.high, prior="log-uniform" if p.log else "uniform", name=name))
        elif isinstance(p, Int):
            dims.append(
                Integer(p.low, p.high, prior="log-uniform" if p.log else "uniform", name=name)
            )
        else:
            dims.append(SkCat(list(p.choices), name=name))

    def f(x: list[Any]) -> float:
        pairs = zip(names, x, strict=True)
        params = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in pairs}
        return prob.f(params)

    res = skopt.gp_minimize(f, dims, n_calls=n, random_state=seed)
    return [float(v) for v in res.func_vals]


METHODS: dict[str, Callable[[Problem, int, int], list[float]]] = {
    "kaizenml": run_kaizenml,
    "optuna_gp": lambda p, n, s: run_optuna(p, n, s, "optuna_gp"),
    "optuna_tpe": lambda p, n, s: run_optuna(p, n, s, "optuna_tpe"),
    "optuna_cmaes": lambda p, n, s: run_optuna(p, n, s, "optuna_cmaes"),
    "optuna_random": lambda p, n, s: run_optuna(p, n, s, "optuna_random"),
    "skopt_gp": run_skopt,
}


def log_regret(values: list[float], k: int, f_min: float) -> float:
    return math.log10(max(min(values[:k]) - f_min, 1e-12))


def quartiles(xs: list[float]) -> tuple[float, float, float]:
    q = np.percentile(xs, [25, 50, 75])
    return float(q[0]), float(q[1]), float(q[2])


def regret_suite(
    problem_names: list[str], methods: list[str], seeds: list[int], budget: int, out: str
) -> dict[str, Any]:
    probs = problems()
    results: dict[str, Any] = {"budget": budget, "seeds": seeds, "runs": {}}
    try:
        with open(out) as fh:  # resume: keep finished (problem, method) cells
            old = json.load(fh)
        if old.get("budget") == budget and old.get("seeds") == seeds:
            results = old
    except (OSError, ValueError):
        pass
    for pname in problem_names:
        prob = probs[pname]
        for method in methods:
            key = f"{pname}/{method}"
            if key in results["runs"]:
                continue
            t0 = time.perf_counter()
            runs = [METHODS[method](prob, budget, s) for s in seeds]
            results["runs"][key] = {"values": runs, "seconds": time.perf_counter() - t0}
            r50 = [log_regret(v, min(50, budget), prob.f_min) for v in runs]
            rb = [log_regret(v, budget, prob.f_min) for v in runs]
            print(
                f"{pname:16s} {method:14s} median log10 regret @50 {statistics.median(r50):7.2f}"
                f" @{budget} {statistics.median(rb):7.2f}  ({time.perf_counter() - t0:.0f}s)",
                flush=True,
            )
            with open(out, "w") as fh:
                json.dump(results, fh)
    return results


def regret_table(results: dict[str, Any]) -> str:
    """Markdown tables at 50 evaluations and at the full budget (seed counts per method)."""
    probs = problems()
    budget = results["budget"]
    methods = sorted({k.split("/")[1] for k in results["runs"]}, key=list(METHODS).index)
    pnames = [p for p in probs if any(k.startswith(p + "/") for k in results["runs"])]
    n_seeds = {
        m: max(len(r["values"]) for k, r in results["runs"].items() if k.endswith("/" + m))
        for m in methods
    }
    lines = []
    for k in sorted({min(50, budget), budget}):
        lines.append(f"\n**{k} evaluations**: median log10 simple regret [25%, 75%]\n")
        lines.append(
            "| problem | " + " | ".join(f"{m} ({n_seeds[m]} seeds)" for m in methods) + " |"
        )
        lines.append("|---|" + "---|" * len(methods))
        for p in pnames:
            cells = []
            for m in methods:
                runs = results["runs"].get(f"{p}/{m}")
                if runs is None:
                    cells.append("—")
                    continue
                lo, med, hi = quartiles([log_regret(v, k, probs[p].f_min) for v in runs["values"]])
                cells.append(f"{med:.2f} [{lo:.2f}, {hi:.2f}]")
            lines.append(f"| {probs[p].name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def merge_results(paths: list[str]) -> dict[str, Any]:
    """Combine result files of the same budget (e.g. a slow peer run with fewer seeds)."""
    merged: dict[str, Any] = {"budget": None, "seeds": [], "runs": {}}
    for path in paths:
        with open(path) as fh:
            res = json.load(fh)
        if merged["budget"] not in (None, res["budget"]):
            raise ValueError(f"{path} has budget {res['budget']}, expected {merged['budget']}")
        merged["budget"] = res["budget"]
        merged["runs"].update(res["runs"])
    return merged


# ---------------------------------------------------------------------------------------------
# suggestion overhead


def _history(prob: Problem, n: int, seed: int) -> list[tuple[dict[str, Any], float]]:
    rng = np.random.default_rng(seed)
    out = []
    for x in prob.space.sample_uniform(rng, n):
        params = prob.space.decode(x)
        out.append((params, prob.f(params)))
    return out


def time_kaizenml(
    prob: Problem, n_finished: int, repeats: int, seed: int = 0
) -> tuple[float, float]:
    """Median seconds per suggestion from ``n_finished`` completed trials on (warm sampler).

    Each repeat adds the suggested trial, so past 100 trials the repeats include the periodic
    hyperparameter refits (every 5 % of growth) as they occur in a study. Returns the median
    and the slowest suggestion.
    """
    hist = _history(prob, n_finished - 1, seed)
    trials = [Trial(i, p, TrialState.COMPLETE, value=v) for i, (p, v) in enumerate(hist)]
    sampler = BayesianSampler(seed=seed)
    params = sampler.suggest(SamplerContext(prob.space, "minimize", list(trials), len(trials)))
    trials.append(Trial(len(trials), params, TrialState.COMPLETE, value=prob.f(params)))
    times = []
    for _ in range(repeats):
        ctx = SamplerContext(prob.space, "minimize", list(trials), len(trials))
        t0 = time.perf_counter()
        params = sampler.suggest(ctx)
        times.append(time.perf_counter() - t0)
        trials.append(Trial(len(trials), params, TrialState.COMPLETE, value=prob.f(params)))
    return statistics.median(times), max(times)


def time_optuna_gp(prob: Problem, n_finished: int, repeats: int, seed: int = 0) -> float:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    dists = _optuna_distributions(prob.space)
    study = optuna.create_study(sampler=optuna.samplers.GPSampler(seed=seed))
    for p, v in _history(prob, n_finished, seed):
        study.add_trial(optuna.trial.create_trial(params=p, distributions=dists, value=v))
    trial = study.ask(dists)  # warm-up (first fit)
    study.tell(trial, prob.f(trial.params))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        trial = study.ask(dists)
        times.append(time.perf_counter() - t0)
        study.tell(trial, prob.f(trial.params))
    return statistics.median(times)


def overhead_suite(repeats: int) -> list[tuple[str, float, float, float | None]]:
    probs = problems()
    rows: list[tuple[str, float, float, float | None]] = []
    for key in ("hartmann6", "mixed_nn"):
        ours, ours_max = time_kaizenml(probs[key], 100, repeats)
        try:
            peer: float | None = time_optuna_gp(probs[key], 100, repeats)
        except ImportError:
            peer = None
        rows.append((f"{probs[key].name}, 100 finished trials", ours, ours_max, peer))
        print(rows[-1], flush=True)
    ten_d = Problem("10-D Ackley", probs["ackley10"].space, ackley10, 0.0)
    # 20 consecutive suggestions from 300 trials include one hyperparameter refit (at 315)
    ours, ours_max = time_kaizenml(ten_d, 300, max(repeats, 20))
    rows.append(("10-D (Ackley), 300 finished trials", ours, ours_max, None))
    print(rows[-1], flush=True)
    return rows


def overhead_table(rows: list[tuple[str, float, float, float | None]]) -> str:
    lines = [
        "| setting | kaizenml median (slowest) ms | Optuna GPSampler median ms | ratio |",
        "|---|---|---|---|",
    ]
    for name, ours, ours_max, peer in rows:
        p = f"{1e3 * peer:.1f}" if peer is not None else "—"
        r = f"{peer / ours:.1f}× less" if peer is not None else "—"
        lines.append(f"| {name} | {1e3 * ours:.1f} ({1e3 * ours_max:.1f}) | {p} | {r} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# pytest-benchmark entry points (suggestion overhead only)


@pytest.fixture(params=["hartmann6", "mixed_nn"])
def problem_100(request: Any) -> tuple[Problem, list[tuple[dict[str, Any], float]]]:
    prob = problems()[request.param]
    return prob, _history(prob, 100, 0)


def test_overhead_kaizenml(benchmark: Any, problem_100: Any) -> None:
    """One warm suggestion with 100 finished trials."""
    prob, hist = problem_100
    trials = [Trial(i, p, TrialState.COMPLETE, value=v) for i, (p, v) in enumerate(hist)]
    ctx = SamplerContext(prob.space, "minimize", trials, len(trials))
    sampler = BayesianSampler(seed=0)
    sampler.suggest(ctx)  # cold fit once, as the previous trial of a study would have
    benchmark(sampler.suggest, ctx)


def test_overhead_optuna_gp(benchmark: Any, problem_100: Any) -> None:
    """One Optuna GPSampler ask with 100 finished trials (failed right away, so ignored)."""
    import optuna

    single_threaded_peers()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    prob, hist = problem_100
    dists = _optuna_distributions(prob.space)
    study = optuna.create_study(sampler=optuna.samplers.GPSampler(seed=0))
    for p, v in hist:
        study.add_trial(optuna.trial.create_trial(params=p, distributions=dists, value=v))

    def ask() -> None:
        trial = study.ask(dists)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)

    ask()
    benchmark(ask)


def single_threaded_peers() -> None:
    """Run torch (Optuna GPSampler's backend) on one thread, as kaizenml runs its BLAS.

    On a shared 2-core machine torch's default thread pool oversubscribes the CPU and makes
    GPSampler several times slower; one thread is both faster and the fair comparison.
    """
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    reg = sub.add_parser("regret")
    reg.add_argument("--seeds", type=int, default=10)
    reg.add_argument("--budget", type=int, default=100)
    reg.add_argument("--problems", default=",".join(problems()))
    reg.add_argument("--methods", default=",".join(METHODS))
    reg.add_argument("--quick", action="store_true", help="3 seeds, 50 evaluations")
    reg.add_argument("--out", default="bench_bayes_regret.json")
    tab = sub.add_parser("table", help="print the tables of one or more result files")
    tab.add_argument("files", nargs="+")
    ov = sub.add_parser("overhead")
    ov.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    single_threaded_peers()
    if args.cmd == "regret":
        seeds = list(range(3 if args.quick else args.seeds))
        budget = 50 if args.quick else args.budget
        res = regret_suite(
            args.problems.split(","), args.methods.split(","), seeds, budget, args.out
        )
        sys.stdout.write(regret_table(res) + "\n")
    elif args.cmd == "table":
        sys.stdout.write(regret_table(merge_results(args.files)) + "\n")
    else:
        sys.stdout.write(overhead_table(overhead_suite(args.repeats)) + "\n")


if __name__ == "__main__":
    main()
