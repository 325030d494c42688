"""Standalone genetic search over a :class:`SearchSpace`, and the operator functions.

The population lives in one ``(population_size, n_genes)`` float64 matrix in the unit-cube
encoding of :mod:`kaizenml.optimize._space`; a second matrix of the same shape receives the
offspring, and the two are reused every generation. Selection, crossover and mutation run in
one compiled pass (:mod:`kaizenml._ext._ga`) with the GIL released, so a generation of
10^6 individuals x 32 genes takes a fraction of a second and needs no memory beyond the two
matrices. The fitness function sees the whole population at once.

Reproducibility: the offspring rows are cut into fixed chunks of :data:`PAIRS_PER_CHUNK` pairs,
and chunk ``c`` of generation ``t`` draws from its own PCG64 stream, spawned from
``SeedSequence(seed)`` with spawn key ``(t, c)``. The layout does not depend on the number of
threads, so a seed gives the same bits with ``n_threads=1`` or ``n_threads=8``.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Union

import numpy as np

from .._exceptions import KaizenTypeError, ValidationError
from .._validation import check_choice, check_float, check_int
from ._space import CATEGORICAL, CONTINUOUS, DISCRETE, Float, Int, SearchSpace

__all__ = [
    "GeneticResult",
    "GeneticSearch",
    "PAIRS_PER_CHUNK",
    "crossover",
    "log_int_columns",
    "make_operators",
    "mutate",
    "operator_kinds",
    "spawn_streams",
    "tournament_selection",
]

logger = logging.getLogger(__name__)

#: pairs of offspring rows per random stream; part of the reproducibility contract
PAIRS_PER_CHUNK = 1024

CROSSOVERS = ("sbx", "uniform", "blx", "none")
MUTATIONS = ("polynomial", "gaussian", "none")
REPLACEMENTS = ("plus", "generational")
INPUTS = ("dict", "array", "unit")

SeedLike = Union[int, np.random.SeedSequence, np.random.Generator, None]  # noqa: UP007


def _ga_module() -> Any:
    try:
        from .._ext import _ga  # type: ignore[attr-defined]
    except ImportError as exc:  # pragma: no cover - only in a source tree without a build
        raise ImportError(
            "kaizenml's compiled genetic operators are missing; install a kaizenml wheel or "
            "build the extensions with `python setup.py build_ext --inplace`"
        ) from exc
    return _ga


def default_threads() -> int:
    """Cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


def _seed_sequence(seed: SeedLike, param: str = "seed") -> np.random.SeedSequence:
    if seed is None:
        return np.random.SeedSequence()
    if isinstance(seed, np.random.SeedSequence):
        return seed
    if isinstance(seed, np.random.Generator):
        ss = seed.bit_generator.seed_seq
        if not isinstance(ss, np.random.SeedSequence):  # pragma: no cover - legacy seeding
            raise KaizenTypeError(f"{param}: the generator was not seeded from a SeedSequence")
        return ss
    check_int(seed, param, minimum=0)
    return np.random.SeedSequence(int(seed))


def spawn_streams(
    seed: SeedLike, n_chunks: int, key: tuple[int, ...] = ()
) -> list[np.random.BitGenerator]:
    """``n_chunks`` independent PCG64 streams, stream ``c`` seeded by spawn key ``key + (c,)``.

    A :class:`numpy.random.Generator` with ``n_chunks == 1`` and no key is used as it is (its
    state advances), which is how the genetic sampler draws from ``Sampler.rng_for``.
    """
    if isinstance(seed, np.random.Generator) and n_chunks == 1 and not key:
        return [seed.bit_generator]
    root = _seed_sequence(seed)
    base_key = tuple(root.spawn_key) + tuple(key)
    return [
        np.random.PCG64(
            np.random.SeedSequence(
                root.entropy, spawn_key=base_key + (c,), pool_size=root.pool_size
            )
        )
        for c in range(max(1, n_chunks))
    ]


def log_int_columns(space: SearchSpace) -> list[int]:
    """Columns of log-scaled ints, whose valid encodings are not at bin centres."""
    out = []
    for j, name in enumerate(space.names):
        p = space[name]
        if isinstance(p, Int) and p.log:
            out.append(j)
    return out


def operator_kinds(space: SearchSpace) -> tuple[np.ndarray, list[int]]:
    """Gene kinds for :func:`make_operators` and the log-int columns among them.

    Log-scaled ints are not spaced at bin centres, so the operators evolve them as continuous
    genes; the caller moves them onto valid values (decoding rounds them).
    """
    log_ints = log_int_columns(space)
    kinds = space.kinds.copy()
    kinds[log_ints] = CONTINUOUS
    return kinds, log_ints


def _layout(kinds: Any, n_levels: Any, n_genes: int) -> tuple[np.ndarray, np.ndarray]:
    if kinds is None:
        kinds = np.zeros(n_genes, dtype=np.int64)
    if n_levels is None:
        n_levels = np.zeros(n_genes, dtype=np.int64)
    kinds = np.ascontiguousarray(kinds, dtype=np.int64)
    n_levels = np.ascontiguousarray(n_levels, dtype=np.int64)
    if kinds.shape != (n_genes,) or n_levels.shape != (n_genes,):
        raise ValidationError(
            f"kinds and n_levels must have shape ({n_genes},), got {kinds.shape} and "
            f"{n_levels.shape}"
        )
    if np.any((kinds != CONTINUOUS) & (kinds != DISCRETE) & (kinds != CATEGORICAL)):
        raise ValidationError(
            f"kinds must hold 0, 1 or 2 (continuous, discrete, categorical), got {kinds}"
        )
    if np.any((kinds != CONTINUOUS) & (n_levels < 1)):
        raise ValidationError("discrete and categorical genes need n_levels >= 1")
    return kinds, n_levels


def _population(X: Any, param: str, n_genes: int | None = None) -> np.ndarray:
    X = np.asarray(X)
    if X.ndim != 2 or X.dtype.kind not in "fiu":
        raise ValidationError(f"{param} must be a 2-D numeric array, got shape {X.shape}")
    X = np.ascontiguousarray(X, dtype=np.float64)
    if n_genes is not None and X.shape[1] != n_genes:
        raise ValidationError(f"{param} must have {n_genes} columns, got {X.shape[1]}")
    if X.size and not (np.all(X >= 0.0) and np.all(X <= 1.0)):
        raise ValidationError(f"{param} must hold unit-cube values in [0, 1] (NaN not allowed)")
    return X


def make_operators(
    kinds: Any,
    n_levels: Any,
    *,
    crossover: str = "sbx",
    crossover_rate: float = 0.9,
    gene_crossover_rate: float = 0.5,
    crossover_eta: float = 15.0,
    blx_alpha: float = 0.5,
    mutation: str = "polynomial",
    mutation_rate: float | None = None,
    mutation_eta: float = 20.0,
    mutation_sigma: float = 0.1,
    tournament_size: int = 2,
) -> Any:
    """Validate operator options and build the compiled :class:`Operators` object."""
    kinds = np.ascontiguousarray(kinds, dtype=np.int64)
    n_genes = kinds.shape[0]
    kinds, n_levels = _layout(kinds, n_levels, n_genes)
    check_choice(crossover, "crossover", CROSSOVERS)
    check_choice(mutation, "mutation", MUTATIONS)
    crossover_rate = check_float(crossover_rate, "crossover_rate", minimum=0.0, maximum=1.0)
    gene_crossover_rate = check_float(
        gene_crossover_rate, "gene_crossover_rate", minimum=0.0, maximum=1.0
    )
    crossover_eta = check_float(crossover_eta, "crossover_eta", minimum=0.0)
    blx_alpha = check_float(blx_alpha, "blx_alpha", minimum=0.0)
    if mutation_rate is None:
        mutation_rate = 1.0 / max(1, n_genes)
    mutation_rate = check_float(mutation_rate, "mutation_rate", minimum=0.0, maximum=1.0)
    mutation_eta = check_float(mutation_eta, "mutation_eta", minimum=0.0)
    mutation_sigma = check_float(mutation_sigma, "mutation_sigma", minimum=0.0)
    tournament_size = check_int(tournament_size, "tournament_size", minimum=1)
    return _ga_module().Operators(
        kinds,
        n_levels,
        crossover=crossover,
        crossover_rate=crossover_rate,
        gene_crossover_rate=gene_crossover_rate,
        crossover_eta=crossover_eta,
        blx_alpha=blx_alpha,
        mutation=mutation,
        mutation_rate=mutation_rate,
        mutation_eta=mutation_eta,
        mutation_sigma=mutation_sigma,
        tournament_size=tournament_size,
    )


# ---------------------------------------------------------------------------------------------
# operator functions
# ---------------------------------------------------------------------------------------------
_KIND_NAMES = {
    "U": "strings",
    "S": "bytes",
    "c": "complex numbers",
    "M": "datetimes",
    "m": "timedeltas",
    "O": "objects",
    "V": "records",
}


def _real_array(values: Any, what: str) -> np.ndarray:
    """``values`` as float64, refusing text and other non-real values by name.

    ``np.asarray(..., dtype=float64)`` would turn ``"1.5"`` into 1.5 and fail on ``"abc"`` with
    a bare ValueError; a fitness made of strings is a bug in the caller's function either way.
    """
    try:
        raw = np.asarray(values)
    except ValueError as exc:  # ragged nested lists
        raise ValidationError(f"{what} values numpy cannot stack into an array: {exc}") from None
    if raw.dtype.kind in "biuf":
        return raw.astype(np.float64, copy=False)
    if raw.dtype.kind == "O":
        try:  # Python numbers, Decimals and None (NaN) in an object array are fine
            return raw.astype(np.float64)
        except (TypeError, ValueError):
            pass
    preview = raw.reshape(-1)[:3].tolist()
    more = ", ..." if raw.size > 3 else ""
    shown = f"{preview}"[:-1] + f"{more}]"
    kind = _KIND_NAMES.get(raw.dtype.kind, f"dtype {raw.dtype}")
    raise KaizenTypeError(
        f"{what} {kind} {shown}; fitness values must be real numbers (NaN counts as the worst)"
    )


def tournament_selection(
    fitness: Any,
    n_select: int,
    *,
    k: int = 2,
    seed: SeedLike = None,
    chunk: int = 2 * PAIRS_PER_CHUNK,
    n_threads: int = 1,
) -> np.ndarray:
    """Indices of ``n_select`` winners of size-``k`` tournaments (lower fitness wins).

    Contestants are drawn uniformly with replacement; NaN fitness never wins against a number.

    Examples
    --------
    >>> idx = tournament_selection([3.0, 1.0, 2.0], 4, k=2, seed=0)
    >>> idx.shape
    (4,)
    """
    f = _real_array(fitness, "fitness holds").reshape(-1)
    if f.size == 0:
        raise ValidationError("fitness must have at least one value, got an empty array")
    n_select = check_int(n_select, "n_select", minimum=0)
    chunk = check_int(chunk, "chunk", minimum=1)
    f = np.where(np.isnan(f), np.inf, f)
    ops = make_operators(np.zeros(1, np.int64), np.zeros(1, np.int64), tournament_size=k)
    n_chunks = max(1, -(-n_select // chunk))
    return ops.tournament(f, n_select, spawn_streams(seed, n_chunks), chunk, n_threads)


def crossover(
    parents_a: Any,
    parents_b: Any,
    *,
    kinds: Any = None,
    n_levels: Any = None,
    method: str = "sbx",
    rate: float = 1.0,
    gene_rate: float = 0.5,
    eta: float = 15.0,
    alpha: float = 0.5,
    seed: SeedLike = None,
    n_threads: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Cross row ``i`` of ``parents_a`` with row ``i`` of ``parents_b``; two children per pair.

    ``method`` is ``"sbx"`` (simulated binary, distribution index ``eta``), ``"uniform"`` or
    ``"blx"`` (blend, ``alpha``). A pair is crossed with probability ``rate`` and each of its
    genes with probability ``gene_rate``; categorical genes are exchanged, never blended.

    Examples
    --------
    >>> c1, c2 = crossover([[0.2, 0.4]], [[0.6, 0.8]], rate=1.0, gene_rate=1.0, seed=0)
    >>> bool(np.allclose(c1 + c2, [[0.8, 1.2]]))
    True
    """
    a = _population(parents_a, "parents_a")
    b = _population(parents_b, "parents_b", a.shape[1])
    if a.shape != b.shape:
        raise ValidationError(
            f"parents_a and parents_b must have the same shape, got {a.shape} and {b.shape}"
        )
    n, g = a.shape
    kinds, n_levels = _layout(kinds, n_levels, g)
    ops = make_operators(
        kinds,
        n_levels,
        crossover=method,
        crossover_rate=rate,
        gene_crossover_rate=gene_rate,
        crossover_eta=eta,
        blx_alpha=alpha,
        mutation="none",
    )
    pop = np.concatenate([a, b])
    idx_a = np.arange(n, dtype=np.int64)
    idx_b = idx_a + n
    out = np.empty((2 * n, g))
    n_chunks = max(1, -(-n // PAIRS_PER_CHUNK))
    ops.crossover(pop, idx_a, idx_b, out, spawn_streams(seed, n_chunks), PAIRS_PER_CHUNK, n_threads)
    return out[0::2].copy(), out[1::2].copy()


def mutate(
    X: Any,
    *,
    kinds: Any = None,
    n_levels: Any = None,
    method: str = "polynomial",
    rate: float | None = None,
    eta: float = 20.0,
    sigma: float = 0.1,
    seed: SeedLike = None,
    n_threads: int = 1,
) -> np.ndarray:
    """A mutated copy of the unit-cube population ``X`` (each gene with probability ``rate``,
    default ``1 / n_genes``).

    ``"polynomial"`` is Deb's bounded polynomial mutation (index ``eta``); ``"gaussian"`` adds
    ``sigma``-scaled normal noise reflected at the bounds. Discrete genes end on a bin centre,
    categorical genes move to another category.

    Examples
    --------
    >>> Y = mutate(np.full((3, 4), 0.5), rate=1.0, seed=0)
    >>> bool(((Y >= 0) & (Y <= 1)).all())
    True
    """
    Y = _population(X, "X").copy()
    n, g = Y.shape
    kinds, n_levels = _layout(kinds, n_levels, g)
    ops = make_operators(
        kinds,
        n_levels,
        crossover="none",
        mutation=method,
        mutation_rate=rate,
        mutation_eta=eta,
        mutation_sigma=sigma,
    )
    chunk = 2 * PAIRS_PER_CHUNK
    n_chunks = max(1, -(-n // chunk))
    ops.mutate(Y, spawn_streams(seed, n_chunks), chunk, n_threads)
    return Y


def _row_hashes(X: np.ndarray, step: int = 65536) -> np.ndarray:
    """A 64-bit hash of each row's bytes (multiply-xor of the float bits), shape ``(n,)``."""
    g = X.shape[1]
    mult = (
        np.arange(g, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        + np.uint64(0xBF58476D1CE4E5B9)
    ) | np.uint64(1)
    out = np.empty(X.shape[0], dtype=np.uint64)
    with np.errstate(over="ignore"):
        for r in range(0, X.shape[0], step):
            bits = X[r : r + step].view(np.uint64) * mult
            bits ^= bits >> np.uint64(29)
            out[r : r + step] = bits.sum(axis=1, dtype=np.uint64)
    return out


def _duplicate_offspring(pop: np.ndarray, off: np.ndarray) -> np.ndarray:
    """Mask of offspring rows equal to a parent or to an earlier offspring row (by hash)."""
    h_par = _row_hashes(pop)
    h_off = _row_hashes(off)
    dup = np.isin(h_off, h_par)
    _, first = np.unique(h_off, return_index=True)
    repeat = np.ones(off.shape[0], dtype=bool)
    repeat[first] = False
    return dup | repeat


def _diversity(X: np.ndarray, step: int = 65536) -> float:
    """Mean over genes of the population's standard deviation, in row blocks (no full-size
    temporaries)."""
    n = X.shape[0]
    s = np.zeros(X.shape[1])
    s2 = np.zeros(X.shape[1])
    for r in range(0, n, step):
        block = X[r : r + step]
        s += block.sum(axis=0)
        s2 += np.einsum("ij,ij->j", block, block)
    mean = s / n
    var = np.maximum(s2 / n - mean * mean, 0.0)
    return float(np.sqrt(var).mean())


# ---------------------------------------------------------------------------------------------
# the engine
# ---------------------------------------------------------------------------------------------
@dataclass
class GeneticResult:
    """What :meth:`GeneticSearch.run` returns.

    Attributes
    ----------
    best_params:
        The best individual decoded to a parameter dict.
    best_value:
        Its fitness (in the caller's direction).
    best_x:
        Its unit-cube encoding, shape ``(n_genes,)``.
    history:
        ``{"generation", "best", "mean", "diversity"}`` arrays, one entry per generation
        (generation 0 is the initial population). ``best`` is the best value found so far,
        ``mean`` the mean finite fitness of the population, ``diversity`` the mean over genes of
        the population's standard deviation in the unit cube.
    population, fitness:
        The final population (unit cube) and its fitness (caller's direction).
    n_generations, n_evaluations:
        Generations run after the initial one, and individuals evaluated.
    stop_reason:
        ``"generations"``, ``"target"`` or ``"stagnation"``.
    elapsed:
        Seconds spent in :meth:`GeneticSearch.run`.
    """

    best_params: dict[str, Any]
    best_value: float
    best_x: np.ndarray
    history: dict[str, np.ndarray]
    population: np.ndarray
    fitness: np.ndarray
    n_generations: int
    n_evaluations: int
    stop_reason: str
    elapsed: float = 0.0
    direction: str = "minimize"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (without the population)."""
        return {
            "best_params": dict(self.best_params),
            "best_value": self.best_value,
            "history": {k: v.tolist() for k, v in self.history.items()},
            "n_generations": self.n_generations,
            "n_evaluations": self.n_evaluations,
            "stop_reason": self.stop_reason,
            "elapsed": self.elapsed,
            "direction": self.direction,
        }


class GeneticSearch:
    """A genetic algorithm over a search space, evaluating whole populations at once.

    Each generation, pairs of parents are picked by tournaments, crossed and mutated into a
    full population of offspring in one compiled pass; the fitness function scores the
    offspring in one call; then survivors are chosen:

    * ``replacement="plus"`` (default): the best ``population_size`` of parents and offspring
      together (a (mu + lambda) scheme, strongly elitist);
    * ``replacement="generational"``: the offspring replace the parents, except that the
      ``elitism`` best parents take the places of the worst offspring.

    Parameters
    ----------
    space:
        A :class:`SearchSpace` or a dict of name -> parameter.
    population_size:
        Individuals per generation (at least 2).
    replacement:
        ``"plus"`` or ``"generational"``.
    elitism:
        Parents kept unchanged per generation with ``replacement="generational"``.
    crossover:
        ``"sbx"`` (simulated binary, index ``crossover_eta``), ``"uniform"``, ``"blx"``
        (BLX-``blx_alpha``) or ``"none"``.
    crossover_rate:
        Probability that a pair of parents is crossed (else both are copied).
    gene_crossover_rate:
        Probability that each gene of a crossed pair takes part (default 1: every gene is
        recombined, which converges markedly better on multimodal test functions than the
        common 0.5).
    mutation:
        ``"polynomial"`` (index ``mutation_eta``), ``"gaussian"`` (``mutation_sigma`` in unit
        cube scale) or ``"none"``; categorical genes always jump to another category.
    mutation_rate:
        Per-gene mutation probability, default ``1 / n_genes``.
    tournament_size:
        Contestants per tournament; larger means stronger selection pressure.
    n_threads:
        Threads for the operators (default: every core this process may use). Results do not
        depend on it.
    seed:
        Seed of every random draw; the same seed reproduces a run bit for bit.

    Examples
    --------
    >>> from kaizenml.optimize import Float
    >>> space = {"x": Float(-5, 5), "y": Float(-5, 5)}
    >>> ga = GeneticSearch(space, population_size=200, seed=1)
    >>> res = ga.run(lambda p: p["x"] ** 2 + p["y"] ** 2, generations=60)
    >>> res.best_value < 1e-4
    True
    """

    def __init__(
        self,
        space: SearchSpace | Mapping[str, Any],
        *,
        population_size: int = 100,
        replacement: str = "plus",
        elitism: int = 1,
        crossover: str = "sbx",
        crossover_rate: float = 0.9,
        gene_crossover_rate: float = 1.0,
        crossover_eta: float = 15.0,
        blx_alpha: float = 0.5,
        mutation: str = "polynomial",
        mutation_rate: float | None = None,
        mutation_eta: float = 20.0,
        mutation_sigma: float = 0.1,
        tournament_size: int = 2,
        n_threads: int | None = None,
        seed: int | None = None,
    ) -> None:
        self.space = space if isinstance(space, SearchSpace) else SearchSpace(space)
        self.population_size = check_int(population_size, "population_size", minimum=2)
        self.replacement = check_choice(replacement, "replacement", REPLACEMENTS)
        self.elitism = check_int(elitism, "elitism", minimum=0)
        if self.elitism >= self.population_size:
            raise ValidationError(
                f"elitism must be smaller than population_size={self.population_size}, "
                f"got {self.elitism}"
            )
        self.n_threads = (
            default_threads() if n_threads is None else check_int(n_threads, "n_threads", minimum=1)
        )
        if seed is not None:
            check_int(seed, "seed", minimum=0)
        self.seed = seed
        self._seed_seq = np.random.SeedSequence(seed)
        # the engine moves log-int genes onto valid encodings after each generation
        kinds, self._log_int_cols = operator_kinds(self.space)
        operator_options: dict[str, Any] = {
            "crossover": crossover,
            "crossover_rate": crossover_rate,
            "gene_crossover_rate": gene_crossover_rate,
            "crossover_eta": crossover_eta,
            "blx_alpha": blx_alpha,
            "mutation": mutation,
            "mutation_rate": mutation_rate,
            "mutation_eta": mutation_eta,
            "mutation_sigma": mutation_sigma,
            "tournament_size": tournament_size,
        }
        self._ops = make_operators(kinds, self.space.n_levels, **operator_options)
        self.options = {
            "population_size": self.population_size,
            "replacement": self.replacement,
            "elitism": self.elitism,
            **operator_options,
            "seed": seed,
        }

    # -----------------------------------------------------------------------------------------
    def _decode_block(self, block_t: np.ndarray, j: int, as_array: bool) -> np.ndarray:
        """Gene ``j`` of a transposed row block in parameter units. The operators keep genes
        inside [0, 1], so plain floats skip the clipping of
        :meth:`SearchSpace.decode_column`."""
        p = self.space[self.space.names[j]]
        u = block_t[j]
        if isinstance(p, Float) and not p.log and p.step is None:
            out = u * (p.high - p.low)
            out += p.low
            np.minimum(out, p.high, out=out)  # low + 1.0 * (high - low) may round past high
            return out
        if self.space.kinds[j] == CATEGORICAL and as_array:
            n = int(self.space.n_levels[j])
            return np.minimum(np.floor(u * n), n - 1)
        return self.space.decode_column(j, u)

    def _decode_all(self, X: np.ndarray, as_array: bool) -> Any:
        """Every parameter of the population, decoded through cache-sized transposed row blocks
        (reading a column of a row-major matrix touches every row's cache line; a block
        transpose reads the matrix once)."""
        n, g = X.shape
        if as_array:
            out_arr = np.empty((n, g), dtype=np.float64)
        else:
            cols = [
                np.empty(n, dtype=object if k == CATEGORICAL else np.float64)
                for k in self.space.kinds
            ]
        step = max(1, (1 << 17) // max(1, g))
        for r in range(0, n, step):
            block_t = np.ascontiguousarray(X[r : r + step].T)  # (g, rows)
            for j in range(g):
                vals = self._decode_block(block_t, j, as_array)
                if as_array:
                    out_arr[r : r + step, j] = vals
                else:
                    if r == 0 and vals.dtype != cols[j].dtype:
                        cols[j] = np.empty(n, dtype=vals.dtype)
                    cols[j][r : r + step] = vals
        if as_array:
            return out_arr
        return dict(zip(self.space.names, cols, strict=True))

    def _snap_inplace(self, X: np.ndarray) -> None:
        """Move discrete columns onto valid encodings, one column at a time."""
        for j in range(X.shape[1]):
            n = int(self.space.n_levels[j])
            if n and j not in self._log_int_cols:
                col = np.floor(X[:, j] * n)
                np.minimum(col, n - 1, out=col)
                col += 0.5
                col /= n
                X[:, j] = col
        self._snap_log_ints(X)

    def _snap_log_ints(self, X: np.ndarray) -> None:
        for j in self._log_int_cols:
            p = self.space[self.space.names[j]]
            assert isinstance(p, Int)
            vals = self.space.decode_column(j, X[:, j]).astype(np.float64)
            lo, hi = math.log(p.low - 0.5), math.log(p.high + 0.5)
            X[:, j] = (np.log(vals) - lo) / (hi - lo)

    def _evaluate(
        self, fitness: Callable[[Any], Any], X: np.ndarray, inputs: str, sign: float
    ) -> np.ndarray:
        if inputs in ("dict", "array"):
            arg: Any = self._decode_all(X, as_array=inputs == "array")
        else:
            arg = X.view()
            arg.flags.writeable = False
        values = fitness(arg)
        name = getattr(fitness, "__name__", None) or type(fitness).__name__
        f = _real_array(values, f"the fitness function {name!r} returned")
        if f.shape != (X.shape[0],):
            f = f.reshape(-1) if f.size == X.shape[0] else f
            if f.shape != (X.shape[0],):
                raise ValidationError(
                    f"fitness must return one value per individual, shape ({X.shape[0]},); "
                    f"got shape {np.shape(values)}"
                )
        f = f * sign  # a new array: the caller's is left alone
        f[np.isnan(f)] = np.inf
        return f

    def _streams(self, generation: int, n_rows: int) -> list[np.random.BitGenerator]:
        n_pairs = (n_rows + 1) // 2
        n_chunks = max(1, -(-n_pairs // PAIRS_PER_CHUNK))
        return spawn_streams(self._seed_seq, n_chunks, key=(generation,))

    def run(
        self,
        fitness: Callable[[Any], Any],
        *,
        generations: int = 100,
        direction: str = "minimize",
        target: float | None = None,
        stagnation: int | None = None,
        inputs: str = "dict",
        initial_population: Any = None,
        show_progress_bar: bool = False,
    ) -> GeneticResult:
        """Evolve the population and return the best individual found.

        Parameters
        ----------
        fitness:
            Called once per generation with the whole population and returning one number
            per individual (NaN counts as the worst). What it receives depends on ``inputs``:
            ``"dict"`` (default) a dict of arrays, one per parameter, in parameter units
            (categoricals as object arrays of choices); ``"array"`` a ``(n, n_params)``
            float64 array in parameter units, categoricals as level indices; ``"unit"`` the
            raw unit-cube matrix (read-only).
        generations:
            Generations after the initial population.
        direction:
            ``"minimize"`` or ``"maximize"``.
        target:
            Stop once the best value reaches it (``<=`` when minimizing, ``>=`` maximizing).
        stagnation:
            Stop after this many generations without an improvement of the best value.
        initial_population:
            Optional ``(population_size, n_params)`` unit-cube matrix to start from (snapped to
            valid encodings); default uniform random.
        show_progress_bar:
            Show a tqdm bar with the best value.

        Returns
        -------
        GeneticResult
        """
        if not callable(fitness):
            raise KaizenTypeError(f"fitness must be callable, got {type(fitness).__name__}")
        generations = check_int(generations, "generations", minimum=0)
        check_choice(direction, "direction", ("minimize", "maximize"))
        check_choice(inputs, "inputs", INPUTS)
        if target is not None:
            target = check_float(target, "target")
        if stagnation is not None:
            stagnation = check_int(stagnation, "stagnation", minimum=1)
        sign = 1.0 if direction == "minimize" else -1.0
        n, g = self.population_size, self.space.n_dims
        t_start = time.perf_counter()

        if initial_population is None:
            init_rng = np.random.Generator(spawn_streams(self._seed_seq, 1, key=(0,))[0])
            pop = np.empty((n, g))
            init_rng.random(out=pop)
            self._snap_inplace(pop)
        else:
            pop = _population(initial_population, "initial_population", g)
            if pop.shape[0] != n:
                raise ValidationError(
                    f"initial_population must have population_size={n} rows, got {pop.shape[0]}"
                )
            pop = self.space.snap(pop)
        pop = np.ascontiguousarray(pop)
        off = np.empty_like(pop)
        fit = self._evaluate(fitness, pop, inputs, sign)
        n_evals = n

        i_best = int(np.argmin(fit))
        best_f = float(fit[i_best])
        best_x = pop[i_best].copy()
        hist_best: list[float] = []
        hist_mean: list[float] = []
        hist_div: list[float] = []

        def record() -> None:
            hist_best.append(sign * best_f)
            finite = fit[np.isfinite(fit)]
            hist_mean.append(sign * float(finite.mean()) if finite.size else math.nan)
            hist_div.append(_diversity(pop))

        record()
        stop_reason = "generations"
        since_improved = 0

        def reached(value: float) -> bool:
            return target is not None and sign * value <= sign * target

        bar = None
        if show_progress_bar:
            from tqdm.auto import tqdm

            bar = tqdm(total=generations, desc="genetic search", unit="gen")
        try:
            gen = 0
            if reached(best_f):
                stop_reason = "target"
            else:
                for gen in range(1, generations + 1):
                    self._ops.generation(
                        pop, fit, off, self._streams(gen, n), PAIRS_PER_CHUNK, self.n_threads
                    )
                    if self._log_int_cols:
                        self._snap_log_ints(off)
                    fit_off = self._evaluate(fitness, off, inputs, sign)
                    n_evals += n
                    j = int(np.argmin(fit_off))
                    improved = fit_off[j] < best_f
                    if improved:
                        best_f = float(fit_off[j])
                        best_x = off[j].copy()
                    if self.replacement == "plus":
                        self._plus_survival(pop, fit, off, fit_off)
                    else:
                        self._generational_survival(pop, fit, off, fit_off)
                        pop, off = off, pop
                        fit = fit_off
                    record()
                    since_improved = 0 if improved else since_improved + 1
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(best=sign * best_f)
                    if reached(best_f):
                        stop_reason = "target"
                        break
                    if stagnation is not None and since_improved >= stagnation:
                        stop_reason = "stagnation"
                        break
                else:
                    gen = generations
        finally:
            if bar is not None:
                bar.close()

        elapsed = time.perf_counter() - t_start
        logger.info(
            "genetic search stopped after %d generations (%s): best %.6g",
            gen,
            stop_reason,
            sign * best_f,
        )
        return GeneticResult(
            best_params=self.space.decode(best_x),
            best_value=sign * best_f,
            best_x=best_x,
            history={
                "generation": np.arange(len(hist_best), dtype=np.int64),
                "best": np.array(hist_best),
                "mean": np.array(hist_mean),
                "diversity": np.array(hist_div),
            },
            population=pop,
            fitness=sign * fit,
            n_generations=gen,
            n_evaluations=n_evals,
            stop_reason=stop_reason,
            elapsed=elapsed,
            direction=direction,
        )

    @staticmethod
    def _plus_survival(
        pop: np.ndarray, fit: np.ndarray, off: np.ndarray, fit_off: np.ndarray
    ) -> None:
        """Keep the best ``n`` of parents + offspring, in place in ``pop``/``fit``."""
        n = pop.shape[0]
        both = np.concatenate([fit, fit_off])
        keep = np.argpartition(both, n - 1)[:n]
        kept_off = np.sort(keep[keep >= n]) - n
        if kept_off.size == 0:
            return
        alive = np.zeros(n, dtype=bool)
        alive[keep[keep < n]] = True
        dead = np.flatnonzero(~alive)  # exactly as many as kept offspring
        step = max(1, (1 << 16) // max(1, pop.shape[1]))  # row moves through 512 kB temporaries
        for s in range(0, dead.size, step):
            d, o = dead[s : s + step], kept_off[s : s + step]
            pop[d] = off[o]
            fit[d] = fit_off[o]

    def _generational_survival(
        self, pop: np.ndarray, fit: np.ndarray, off: np.ndarray, fit_off: np.ndarray
    ) -> None:
        """Offspring replace parents; the ``elitism`` best parents replace the worst offspring."""
        e = self.elitism
        if e == 0:
            return
        n = pop.shape[0]
        elite = np.argsort(fit, kind="stable")[:e]
        worst = np.argsort(fit_off, kind="stable")[n - e :]
        off[worst] = pop[elite]
        fit_off[worst] = fit[elite]
