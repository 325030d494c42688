"""Genetic operators and search: kaizenml against pymoo, DEAP and a vectorized numpy version.

One generation = binary tournament selection + SBX (eta 15, pair rate 0.9, gene rate 0.5) +
polynomial mutation (eta 20, per-gene rate 1/32) on a population of N x 32 genes in [0, 1],
fitness excluded. Peers, timed in the same run:

* pymoo's array-level operator functions (``cross_sbx``, ``mut_pm``) with a vectorized binary
  tournament on random permutations, as pymoo's own selection draws them;
* pymoo's object path (``TournamentSelection.do`` -> ``SBX.do`` -> ``PM.do`` on a
  ``Population``; building the Population is excluded);
* DEAP's toolbox loop (``selTournament``, ``clone``, ``cxSimulatedBinaryBounded``,
  ``mutPolynomialBounded``) as in ``algorithms.varAnd``;
* ``benchmarks/_ga_numpy.py``, the same operators as kaizenml written in chunked numpy.

The slow peers are measured on a smaller population and scaled linearly (their cost is per
individual). Quality: Rastrigin-10 and Ackley-10, population 1000 for 100 generations (100,000
evaluations), median best over 10 seeds, kaizenml's GeneticSearch defaults against pymoo's GA
defaults.

Run everything and print the results table::

    PYTHONPATH=src python benchmarks/bench_genetic.py            # N = 10^6
    PYTHONPATH=src python benchmarks/bench_genetic.py --quick    # N = 10^5, 3 seeds

or through pytest-benchmark::

    PYTHONPATH=src python -m pytest benchmarks/bench_genetic.py --benchmark-only
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import random
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _ga_numpy import numpy_generation  # noqa: E402

from kaizenml.optimize import Float  # noqa: E402
from kaizenml.optimize._ga_engine import (  # noqa: E402
    PAIRS_PER_CHUNK,
    GeneticSearch,
    default_threads,
    make_operators,
    spawn_streams,
)

N_GENES = 32
ETA_C, ETA_M, PC, GENE_RATE = 15.0, 20.0, 0.9, 0.5
MUT_RATE = 1.0 / N_GENES


def _population(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random((n, N_GENES)), rng.random(n)


# ---------------------------------------------------------------------------------------------
# one generation, each implementation
# ---------------------------------------------------------------------------------------------
_OPS = make_operators(
    np.zeros(N_GENES, np.int64),
    np.zeros(N_GENES, np.int64),
    crossover="sbx",
    crossover_rate=PC,
    gene_crossover_rate=GENE_RATE,
    crossover_eta=ETA_C,
    mutation="polynomial",
    mutation_rate=MUT_RATE,
    mutation_eta=ETA_M,
    tournament_size=2,
)


def kaizen_generation(X, F, seed, n_threads=1, out=None):
    """Streams spawned, offspring allocated (unless given) and filled: what the engine does."""
    n = X.shape[0]
    if out is None:
        out = np.empty_like(X)
    n_chunks = -(-((n + 1) // 2) // PAIRS_PER_CHUNK)
    _OPS.generation(X, F, out, spawn_streams(seed, n_chunks), PAIRS_PER_CHUNK, n_threads)
    return out


def numpy_reference_generation(X, F, seed, out=None):
    return numpy_generation(
        X,
        F,
        np.random.default_rng(seed),
        out=out,
        k=2,
        eta_c=ETA_C,
        crossover_rate=PC,
        gene_rate=GENE_RATE,
        eta_m=ETA_M,
        mutation_rate=MUT_RATE,
    )


def pymoo_array_generation(X, F, seed):
    """pymoo's operator math on arrays: tournament on permutations, cross_sbx, mut_pm."""
    from pymoo.operators.crossover.sbx import cross_sbx
    from pymoo.operators.mutation.pm import mut_pm

    rng = np.random.default_rng(seed)
    n, g = X.shape
    m = n // 2
    # binary tournament on random permutations, as pymoo's TournamentSelection draws them
    need = 2 * m * 2
    perms = np.concatenate([rng.permutation(n) for _ in range(-(-need // n))])[:need]
    P = perms.reshape(2 * m, 2)
    winners = np.where(F[P[:, 0]] <= F[P[:, 1]], P[:, 0], P[:, 1]).reshape(m, 2)
    parents = np.swapaxes(X[winners], 0, 1)  # (2, m, g)
    xl, xu = np.zeros(g), np.ones(g)
    Q = cross_sbx(
        parents,
        xl,
        xu,
        np.full((m, 1), ETA_C),
        np.full((m, 1), GENE_RATE),
        np.full((m, 1), 0.5),
        random_state=rng,
    )
    crossed = rng.random(m) < PC
    Q[:, ~crossed] = parents[:, ~crossed]
    off = Q.reshape(-1, g)
    return mut_pm(
        off,
        xl,
        xu,
        np.full(len(off), ETA_M),
        np.full(len(off), MUT_RATE),
        False,
        random_state=rng,
    )


def pymoo_population(X, F):
    from pymoo.core.population import Population

    pop = Population.new("X", X)
    pop.set("F", F[:, None])
    return pop


def pymoo_do_generation(pop, seed):
    """pymoo's object path on a prebuilt Population."""
    from pymoo.algorithms.soo.nonconvex.ga import comp_by_cv_and_fitness
    from pymoo.core.problem import Problem
    from pymoo.operators.crossover.sbx import SBX
    from pymoo.operators.mutation.pm import PM
    from pymoo.operators.selection.tournament import TournamentSelection

    rng = np.random.default_rng(seed)
    problem = Problem(n_var=N_GENES, n_obj=1, xl=0.0, xu=1.0)
    sel = TournamentSelection(func_comp=comp_by_cv_and_fitness)
    parents = sel.do(
        problem, pop, n_select=len(pop) // 2, n_parents=2, to_pop=False, random_state=rng
    )
    off = SBX(eta=ETA_C, prob=PC, prob_var=GENE_RATE).do(problem, pop, parents, random_state=rng)
    return PM(eta=ETA_M, prob=1.0, prob_var=MUT_RATE).do(problem, off, random_state=rng)


def deap_setup(X, F):
    from deap import base, creator, tools

    if not hasattr(creator, "KzFitnessMin"):
        creator.create("KzFitnessMin", base.Fitness, weights=(-1.0,))
        creator.create("KzIndividual", list, fitness=creator.KzFitnessMin)
    tb = base.Toolbox()
    tb.register("select", tools.selTournament, tournsize=2)
    tb.register("mate", tools.cxSimulatedBinaryBounded, eta=ETA_C, low=0.0, up=1.0)
    tb.register("mutate", tools.mutPolynomialBounded, eta=ETA_M, low=0.0, up=1.0, indpb=MUT_RATE)
    pop = []
    for row, f in zip(X.tolist(), F.tolist(), strict=True):
        ind = creator.KzIndividual(row)
        ind.fitness.values = (f,)
        pop.append(ind)
    return tb, pop


def deap_generation(tb, pop, seed):
    """DEAP's varAnd: select, clone, mate pairs with probability cxpb, mutate every child."""
    random.seed(seed)
    offspring = list(map(tb.clone, tb.select(pop, len(pop))))
    for i in range(1, len(offspring), 2):
        if random.random() < PC:
            offspring[i - 1], offspring[i] = tb.mate(offspring[i - 1], offspring[i])
    for i in range(len(offspring)):
        (offspring[i],) = tb.mutate(offspring[i])
    return offspring


# ---------------------------------------------------------------------------------------------
# measurement helpers
# ---------------------------------------------------------------------------------------------
def best_time(fn, rounds: int) -> float:
    times = []
    for r in range(rounds):
        gc.collect()
        t0 = time.perf_counter()
        fn(r)
        times.append(time.perf_counter() - t0)
    return min(times)


def peak_extra_bytes(fn) -> int:
    """tracemalloc peak of one call (numpy allocations included; C-side malloc not)."""
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak


def rastrigin(X):
    return 10.0 * X.shape[1] + (X * X - 10.0 * np.cos(2.0 * np.pi * X)).sum(axis=1)


def ackley(X):
    d = X.shape[1]
    a = -20.0 * np.exp(-0.2 * np.sqrt((X * X).sum(axis=1) / d))
    return a - np.exp(np.cos(2.0 * np.pi * X).sum(axis=1) / d) + 20.0 + math.e


QUALITY = {"rastrigin": (rastrigin, 5.12), "ackley": (ackley, 5.0)}


def kaizen_quality(name: str, seed: int, **options) -> float:
    f, b = QUALITY[name]
    space = {f"x{i}": Float(-b, b) for i in range(10)}
    ga = GeneticSearch(space, population_size=1000, seed=seed, n_threads=1, **options)
    return ga.run(f, generations=99, inputs="array").best_value


def pymoo_quality(name: str, seed: int) -> float:
    from pymoo.algorithms.soo.nonconvex.ga import GA
    from pymoo.core.problem import Problem
    from pymoo.optimize import minimize

    f, b = QUALITY[name]

    class _P(Problem):
        def __init__(self):
            super().__init__(n_var=10, n_obj=1, xl=-b, xu=b)

        def _evaluate(self, x, out, *args, **kwargs):
            out["F"] = f(x)

    res = minimize(_P(), GA(pop_size=1000), ("n_gen", 100), seed=seed, verbose=False)
    return float(res.F[0])


_ENGINE_SCRIPT = """
import sys, time
import numpy as np
from kaizenml.optimize import Float, GeneticSearch

def hwm():
    # VmHWM belongs to this process image (ru_maxrss would carry the parent's peak over exec)
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0

n, g = int(sys.argv[1]), int(sys.argv[2])
space = {f"x{i}": Float(-5.0, 5.0) for i in range(g)}
base = hwm()
def sphere(p):
    total = np.zeros(n)
    for v in p.values():
        total += v * v
    return total
t0 = time.perf_counter()
res = GeneticSearch(space, population_size=n, seed=0).run(sphere, generations=3)
dt = time.perf_counter() - t0
peak = hwm()
print(f"peak RSS {peak / 2**30:.2f} GiB (after imports {base / 2**30:.2f} GiB); "
      f"{dt / 4:.2f} s per generation including decoding and fitness; best {res.best_value:.3g}")
"""


def engine_rss(n: int) -> str:
    """Peak resident memory of a fresh process running GeneticSearch on n x 32 genes."""
    import subprocess

    out = subprocess.run(
        [sys.executable, "-c", _ENGINE_SCRIPT, str(n), str(N_GENES)],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


# ---------------------------------------------------------------------------------------------
# pytest-benchmark entry points
# ---------------------------------------------------------------------------------------------
BENCH_N = int(os.environ.get("KZ_BENCH_N", "1000000"))
SLOW_N = max(1000, BENCH_N // 10)


def test_kaizen_generation_one_thread(benchmark):
    X, F = _population(BENCH_N)
    out = np.empty_like(X)
    benchmark.pedantic(kaizen_generation, args=(X, F, 0, 1, out), rounds=3, iterations=1)


def test_kaizen_generation_all_threads(benchmark):
    X, F = _population(BENCH_N)
    out = np.empty_like(X)
    benchmark.pedantic(
        kaizen_generation, args=(X, F, 0, default_threads(), out), rounds=3, iterations=1
    )


def test_numpy_reference_generation(benchmark):
    X, F = _population(BENCH_N)
    out = np.empty_like(X)
    benchmark.pedantic(numpy_reference_generation, args=(X, F, 0, out), rounds=3, iterations=1)


def test_pymoo_array_generation(benchmark):
    X, F = _population(BENCH_N)
    benchmark.pedantic(pymoo_array_generation, args=(X, F, 0), rounds=1, iterations=1)


def test_pymoo_do_generation_small(benchmark):
    X, F = _population(SLOW_N)
    pop = pymoo_population(X, F)
    benchmark.pedantic(pymoo_do_generation, args=(pop, 0), rounds=1, iterations=1)


def test_deap_generation_small(benchmark):
    X, F = _population(SLOW_N)
    tb, pop = deap_setup(X, F)
    benchmark.pedantic(deap_generation, args=(tb, pop, 0), rounds=1, iterations=1)


# ---------------------------------------------------------------------------------------------
# the whole comparison as one script
# ---------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="N = 10^5 and 3 quality seeds")
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--skip-speed", action="store_true")
    args = ap.parse_args()
    n = 100_000 if args.quick else 1_000_000
    slow_n = n // 10
    seeds = range(3 if args.quick else 10)
    threads = default_threads()
    rows: list[tuple[str, str, str]] = []

    if not args.skip_speed:
        X, F = _population(n)
        out = np.empty_like(X)
        out.fill(0.0)  # touch the pages once so every implementation writes warm memory
        t_k1 = best_time(lambda r: kaizen_generation(X, F, r, 1, out), 5)
        t_kn = best_time(lambda r: kaizen_generation(X, F, r, threads, out), 5)
        t_np = best_time(lambda r: numpy_reference_generation(X, F, r, out), 3)
        t_pa = best_time(lambda r: pymoo_array_generation(X, F, r), 1)
        Xs, Fs = _population(slow_n)
        pop = pymoo_population(Xs, Fs)
        t_pd = best_time(lambda r: pymoo_do_generation(pop, r), 1) * (n / slow_n)
        del pop
        tb, dpop = deap_setup(Xs, Fs)
        t_dp = best_time(lambda r: deap_generation(tb, dpop, r), 1) * (n / slow_n)
        del dpop

        out_bytes = X.nbytes
        m_k = peak_extra_bytes(lambda: kaizen_generation(X, F, 0, threads))
        m_np = peak_extra_bytes(lambda: numpy_reference_generation(X, F, 0))
        m_pa = peak_extra_bytes(lambda: pymoo_array_generation(X, F, 0))
        c_side = 2 * ((n + 1) // 2) * 8 + N_GENES * 8 * -(-((n + 1) // 2) // PAIRS_PER_CHUNK)

        best = min(t_k1, t_kn)
        print(f"\n## One generation, {n:,} x {N_GENES} (fitness excluded), {threads} cores\n")
        print("| implementation | seconds | kaizenml faster by |")
        print("| --- | ---: | ---: |")
        for name, t in [
            ("kaizenml, 1 thread", t_k1),
            (f"kaizenml, {threads} threads", t_kn),
            ("numpy reference (benchmarks/_ga_numpy.py)", t_np),
            ("pymoo array-level (cross_sbx, mut_pm)", t_pa),
            (f"pymoo .do() path (measured at {slow_n:,}, scaled)", t_pd),
            (f"DEAP toolbox loop (measured at {slow_n:,}, scaled)", t_dp),
        ]:
            print(f"| {name} | {t:.3f} | {t / best:.1f}x (1 thread: {t / t_k1:.1f}x) |")
        print(f"\nOutput population: {out_bytes / 2**20:.0f} MiB")
        print("| implementation | peak extra memory (tracemalloc) | x output |")
        print("| --- | ---: | ---: |")
        for name, b in [
            ("kaizenml (output allocated in the call)", m_k),
            ("kaizenml C-side buffers (winners, scratch)", c_side),
            ("numpy reference", m_np),
            ("pymoo array-level", m_pa),
        ]:
            print(f"| {name} | {b / 2**20:.0f} MiB | {b / out_bytes:.2f} |")
        rows.append(("speed", "done", ""))

    if not args.skip_speed:
        print(f"\n## Whole engine, {n:,} x {N_GENES}, 3 generations, inputs='dict'\n")
        print(engine_rss(n))

    if not args.skip_quality:
        print(f"\n## Quality: median best over {len(seeds)} seeds, pop 1000 x 100 generations\n")
        print("| function | kaizenml defaults | kaizenml tournament_size=3 | pymoo GA defaults |")
        print("| --- | ---: | ---: | ---: |")
        for name in QUALITY:
            t0 = time.perf_counter()
            k = statistics.median(kaizen_quality(name, s) for s in seeds)
            t1 = time.perf_counter()
            k3 = statistics.median(kaizen_quality(name, s, tournament_size=3) for s in seeds)
            t2 = time.perf_counter()
            p = statistics.median(pymoo_quality(name, s) for s in seeds)
            t3 = time.perf_counter()
            print(
                f"| {name}-10 | {k:.2e} ({t1 - t0:.1f} s) | {k3:.2e} ({t2 - t1:.1f} s) | "
                f"{p:.2e} ({t3 - t2:.1f} s) |"
            )


if __name__ == "__main__":
    main()
