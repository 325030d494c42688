"""Ask + tell overhead of the random strategy: kaizenml against Optuna, in the same run.

Each measurement runs 1,000 ask/tell cycles of a four-parameter space (log float, int, float,
categorical) with a trivial objective, so only the library's own bookkeeping is timed:
Optuna's ``RandomSampler`` with ``study.ask()`` + ``suggest_*`` + ``study.tell()``, and
kaizenml's ``HyperparameterOptimizer(strategy="random")`` with ``ask()`` + ``complete_trial()``.
Both libraries run in memory and with a fresh SQLite file.

Run with pytest-benchmark::

    PYTHONPATH=src python -m pytest benchmarks/bench_optimize.py --benchmark-only

or as a script, which prints the table of benchmarks/optimize.md with the ratios::

    PYTHONPATH=src python benchmarks/bench_optimize.py
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from kaizenml.optimize import Categorical, Float, HyperparameterOptimizer, Int

N_TRIALS = 1000

SPACE = {
    "lr": Float(1e-5, 1e-1, log=True),
    "depth": Int(2, 12),
    "dropout": Float(0.0, 0.5),
    "optimizer": Categorical(["adam", "sgd", "rmsprop"]),
}


def _sqlite_url(folder: Path) -> str:
    return f"sqlite:///{folder / f'{uuid.uuid4().hex}.db'}"


def run_kaizenml(storage: str | None, n: int = N_TRIALS) -> float:
    opt = HyperparameterOptimizer(SPACE, strategy="random", seed=0, pruner=None, storage=storage)
    t0 = time.perf_counter()
    for _ in range(n):
        trial = opt.ask()
        opt.complete_trial(trial.number, trial.params["dropout"])
    elapsed = time.perf_counter() - t0
    opt.close()
    return elapsed


def run_optuna(storage: str | None, n: int = N_TRIALS) -> float:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0), storage=storage)
    t0 = time.perf_counter()
    for _ in range(n):
        trial = study.ask()
        trial.suggest_float("lr", 1e-5, 1e-1, log=True)
        trial.suggest_int("depth", 2, 12)
        dropout = trial.suggest_float("dropout", 0.0, 0.5)
        trial.suggest_categorical("optimizer", ["adam", "sgd", "rmsprop"])
        study.tell(trial, dropout)
    return time.perf_counter() - t0


RUNNERS = {"kaizenml": run_kaizenml, "optuna": run_optuna}


@pytest.mark.parametrize("library", ["kaizenml", "optuna"])
def test_ask_tell_in_memory(benchmark, library: str) -> None:
    if library == "optuna":
        pytest.importorskip("optuna")
    benchmark.group = f"ask+tell x{N_TRIALS}, in memory"
    benchmark.pedantic(RUNNERS[library], args=(None,), rounds=3, iterations=1)


@pytest.mark.parametrize("library", ["kaizenml", "optuna"])
def test_ask_tell_sqlite(benchmark, library: str, tmp_path: Path) -> None:
    if library == "optuna":
        pytest.importorskip("optuna")
    benchmark.group = f"ask+tell x{N_TRIALS}, SQLite"
    # Optuna's SQLite run takes minutes on a shared machine: one round each
    benchmark.pedantic(lambda: RUNNERS[library](_sqlite_url(tmp_path)), rounds=1, iterations=1)


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    import optuna

    folder = Path(tempfile.mkdtemp(prefix="bench_optimize_"))
    rows = []
    for backend in ("memory", "sqlite"):
        rounds = 3 if backend == "memory" else 1
        times = {}
        for lib, fn in RUNNERS.items():
            best = min(
                fn(None if backend == "memory" else _sqlite_url(folder)) for _ in range(rounds)
            )
            times[lib] = best
        rows.append((backend, times["kaizenml"], times["optuna"]))
    print(f"kaizenml vs Optuna {optuna.__version__}, {N_TRIALS} ask+tell, random strategy")
    print("| storage | kaizenml (s) | per trial (µs) | Optuna (s) | per trial (µs) | ratio |")
    print("|---|---:|---:|---:|---:|---:|")
    for backend, k, o in rows:
        print(
            f"| {backend} | {k:.3f} | {1e6 * k / N_TRIALS:.0f} | {o:.3f} | "
            f"{1e6 * o / N_TRIALS:.0f} | {o / k:.1f}x |"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
