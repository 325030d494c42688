"""The compiled genetic operators against their definitions and a slow pure-Python replay."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from kaizenml._exceptions import ValidationError
from kaizenml.optimize._ga_engine import (
    crossover,
    make_operators,
    mutate,
    spawn_streams,
    tournament_selection,
)

CONT, DISC, CAT = 0, 1, 2


# ---------------------------------------------------------------------------------------------
# slow reference: the same algorithm in plain Python, drawing from the same PCG64 stream
# ---------------------------------------------------------------------------------------------
class _Replay:
    """Pure-Python generation that consumes random numbers in the kernel's documented order."""

    def __init__(self, bitgen, kinds, n_levels, opts):
        self.bg = bitgen
        self.gen = np.random.Generator(bitgen)
        self.kinds = kinds
        self.nlev = n_levels
        self.o = opts

    def u(self):
        return float(self.gen.random())

    def randint(self, n):
        return min(int(self.u() * n), n - 1)

    @staticmethod
    def snap(x, n):
        lv = min(max(math.floor(x * n), 0), n - 1)
        return (lv + 0.5) / n

    def tournament(self, fit):
        n = len(fit)
        best = self.randint(n)
        for _ in range(1, self.o["tournament_size"]):
            c = self.randint(n)
            if fit[c] < fit[best]:
                best = c
        return best

    def cross(self, a, b):
        o = self.o
        c1, c2 = list(a), list(b)
        if o["crossover"] == "none" or (
            o["crossover_rate"] < 1.0 and self.u() >= o["crossover_rate"]
        ):
            return c1, c2
        inv = 1.0 / (o["crossover_eta"] + 1.0)
        g = len(a)
        for w0 in range(0, g, 64):
            wlen = min(64, g - w0)
            rate = o["gene_crossover_rate"]
            if rate == 0.5:
                mask = int(self.bg.random_raw())
            elif rate >= 1.0:
                mask = (1 << 64) - 1
            else:
                mask = sum(1 << t for t in range(wlen) if self.u() < rate)
            mask &= (1 << wlen) - 1
            sides = int(self.bg.random_raw()) if o["crossover"] == "sbx" and mask else 0
            for t in range(wlen):
                if not (mask >> t) & 1:
                    continue
                j = w0 + t
                x1, x2 = a[j], b[j]
                if self.kinds[j] == CAT or o["crossover"] == "uniform":
                    c1[j], c2[j] = x2, x1
                    continue
                if o["crossover"] == "sbx":
                    d = abs(x2 - x1)
                    if d < 1e-14:
                        continue
                    u = self.u()
                    tt = 2.0 * u if u <= 0.5 else 0.5 / (1.0 - u)
                    if o["crossover_eta"] + 1.0 in (2.0, 4.0, 8.0, 16.0, 32.0, 64.0):
                        beta = tt
                        for _ in range(int(math.log2(o["crossover_eta"] + 1.0))):
                            beta = math.sqrt(beta)
                    else:
                        beta = 0.0 if tt == 0.0 else math.exp(math.log(tt) * inv)
                    mean = 0.5 * (x1 + x2)
                    half = min(0.5 * beta * d, min(mean, 1.0 - mean))
                    if int(x1 <= x2) != (sides >> t) & 1:
                        y1, y2 = mean - half, mean + half
                    else:
                        y1, y2 = mean + half, mean - half
                else:
                    lo, hi = min(x1, x2), max(x1, x2)
                    ext = o["blx_alpha"] * (hi - lo)
                    lo, hi = lo - ext, hi + ext
                    y1 = min(max(lo + (hi - lo) * self.u(), 0.0), 1.0)
                    y2 = min(max(lo + (hi - lo) * self.u(), 0.0), 1.0)
                if self.kinds[j] == DISC:
                    y1, y2 = self.snap(y1, self.nlev[j]), self.snap(y2, self.nlev[j])
                c1[j], c2[j] = y1, y2
        return c1, c2

    def skip(self):
        rate = self.o["mutation_rate"]
        if rate >= 1.0:
            return 0
        u = 1.0 - self.u()
        return int(math.floor(math.log(u) / math.log(1.0 - rate)))

    def normal(self):
        while True:
            a = 2.0 * self.u() - 1.0
            b = 2.0 * self.u() - 1.0
            s = a * a + b * b
            if 0.0 < s < 1.0:
                return a * math.sqrt(-2.0 * math.log(s) / s)

    def mutate_gene(self, x, j):
        o, kind, n = self.o, self.kinds[j], self.nlev[j]
        if kind == CAT:
            if n <= 1:
                return x
            lv = min(max(math.floor(x * n), 0), n - 1)
            return ((lv + 1 + self.randint(n - 1)) % n + 0.5) / n

        def pw(base, p):
            return 0.0 if base <= 0.0 else math.exp(p * math.log(base))

        if o["mutation"] == "polynomial":
            e1 = o["mutation_eta"] + 1.0
            r = self.u()
            if r < 0.5:
                val = 2.0 * r + (1.0 - 2.0 * r) * pw(1.0 - x, e1)
                dq = pw(val, 1.0 / e1) - 1.0
            else:
                val = 2.0 * (1.0 - r) + 2.0 * (r - 0.5) * pw(x, e1)
                dq = 1.0 - pw(val, 1.0 / e1)
            y = min(max(x + dq, 0.0), 1.0)
        else:
            y = x + o["mutation_sigma"] * self.normal()
            if y < 0.0:
                y = -y
            if y > 1.0:
                y = 2.0 - y
            y = min(max(y, 0.0), 1.0)
        if kind == DISC:
            y = self.snap(y, n)
        return y

    def generation_chunk(self, pop, fit, n_out, p0, p1, out):
        g = pop.shape[1]
        mutating = self.o["mutation"] != "none" and self.o["mutation_rate"] > 0
        winners = [self.tournament(fit) for _ in range(2 * (p1 - p0))]
        next_mut = self.skip() if mutating else 0
        flat = []
        for p in range(p0, p1):
            i = p - p0
            c1, c2 = self.cross(pop[winners[2 * i]], pop[winners[2 * i + 1]])
            rows = [c1, c2] if 2 * p + 1 < n_out else [c1]
            for row in rows:
                flat.extend(row)
            if not mutating:
                continue
            while next_mut < len(flat):
                flat[next_mut] = self.mutate_gene(flat[next_mut], next_mut % g)
                next_mut += 1 + self.skip()
        out[2 * p0 : 2 * p0 + len(flat) // g] = np.array(flat).reshape(-1, g)


DEFAULTS = dict(
    crossover="sbx",
    crossover_rate=0.9,
    gene_crossover_rate=0.5,
    crossover_eta=15.0,
    blx_alpha=0.5,
    mutation="polynomial",
    mutation_rate=0.25,
    mutation_eta=20.0,
    mutation_sigma=0.1,
    tournament_size=2,
)

MIXED_KINDS = np.array([CONT, CONT, DISC, CAT, CONT, DISC], dtype=np.int64)
MIXED_LEVELS = np.array([0, 0, 5, 3, 0, 2], dtype=np.int64)


def _mixed_population(rng, n):
    X = rng.random((n, MIXED_KINDS.size))
    for j in np.flatnonzero(MIXED_KINDS != CONT):
        k = MIXED_LEVELS[j]
        X[:, j] = (np.floor(X[:, j] * k) + 0.5) / k
    X[:3, 0] = [0.0, 1.0, 0.0]  # bounds themselves
    return X


@pytest.mark.parametrize(
    "opts",
    [
        {},
        {"gene_crossover_rate": 1.0},
        {"gene_crossover_rate": 1.0, "crossover_eta": 10.0},
        {"gene_crossover_rate": 0.7, "crossover_rate": 1.0, "tournament_size": 3},
        {"crossover": "blx", "mutation": "gaussian", "mutation_sigma": 0.3},
        {"crossover": "uniform", "mutation_rate": 1.0},
        {"crossover": "none", "mutation": "gaussian", "mutation_rate": 0.05},
        {"mutation": "none"},
    ],
)
@pytest.mark.parametrize("n_out", [9, 12])
def test_generation_matches_python_replay(opts, n_out):
    rng = np.random.default_rng(1)
    pop = _mixed_population(rng, 15)
    fit = rng.random(15)
    o = {**DEFAULTS, **opts}
    ops = make_operators(MIXED_KINDS, MIXED_LEVELS, **o)
    chunk = 2  # pairs per stream: several streams even for a small population
    n_chunks = -(-((n_out + 1) // 2) // chunk)
    out = np.empty((n_out, pop.shape[1]))
    ops.generation(pop, fit, out, spawn_streams(7, n_chunks), chunk, 1)

    expected = np.full_like(out, np.nan)
    for c, bg in enumerate(spawn_streams(7, n_chunks)):
        p1 = min((c + 1) * chunk, (n_out + 1) // 2)
        _Replay(bg, MIXED_KINDS, MIXED_LEVELS, o).generation_chunk(
            pop, fit, n_out, c * chunk, p1, expected
        )
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("gene_rate", [0.5, 0.3])
def test_generation_replay_with_more_than_64_genes(gene_rate):
    g = 70  # two mask words per pair, the second one partial
    kinds, levels = np.zeros(g, np.int64), np.zeros(g, np.int64)
    kinds[65], levels[65] = DISC, 4
    rng = np.random.default_rng(2)
    pop, fit = rng.random((6, g)), rng.random(6)
    pop[:, 65] = 0.375
    o = {**DEFAULTS, "gene_crossover_rate": gene_rate, "crossover_rate": 1.0}
    out = np.empty((6, g))
    make_operators(kinds, levels, **o).generation(pop, fit, out, spawn_streams(3, 1), 8, 1)
    expected = np.full_like(out, np.nan)
    _Replay(spawn_streams(3, 1)[0], kinds, levels, o).generation_chunk(pop, fit, 6, 0, 3, expected)
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-12)


def test_same_seed_same_bits_serial_and_parallel():
    rng = np.random.default_rng(3)
    pop = _mixed_population(rng, 5000)
    fit = rng.random(5000)
    ops = make_operators(MIXED_KINDS, MIXED_LEVELS, **DEFAULTS)
    chunk = 64
    n_chunks = -(-2500 // chunk)
    outs = []
    for n_threads in (1, 2, 1, 2):
        out = np.empty_like(pop)
        ops.generation(pop, fit, out, spawn_streams(11, n_chunks), chunk, n_threads)
        outs.append(out)
    for out in outs[1:]:
        assert np.array_equal(out.view(np.uint64), outs[0].view(np.uint64))
    other = np.empty_like(pop)
    ops.generation(pop, fit, other, spawn_streams(12, n_chunks), chunk, 2)
    assert not np.array_equal(other, outs[0])
    # the separate operators too
    a, b = pop[:2000], pop[2000:4000]
    r1 = crossover(a, b, kinds=MIXED_KINDS, n_levels=MIXED_LEVELS, seed=5, n_threads=1)
    r2 = crossover(a, b, kinds=MIXED_KINDS, n_levels=MIXED_LEVELS, seed=5, n_threads=2)
    assert np.array_equal(r1[0], r2[0]) and np.array_equal(r1[1], r2[1])
    m1 = mutate(pop, kinds=MIXED_KINDS, n_levels=MIXED_LEVELS, rate=0.5, seed=5, n_threads=1)
    m2 = mutate(pop, kinds=MIXED_KINDS, n_levels=MIXED_LEVELS, rate=0.5, seed=5, n_threads=2)
    assert np.array_equal(m1, m2)


def _assert_valid(X):
    assert np.all((X >= 0.0) & (X <= 1.0))
    for j in np.flatnonzero(MIXED_KINDS != CONT):
        k = MIXED_LEVELS[j]
        level = X[:, j] * k - 0.5
        np.testing.assert_allclose(level, np.rint(level), atol=1e-9)


@pytest.mark.parametrize("method", ["sbx", "blx", "uniform"])
@pytest.mark.parametrize("mutation", ["polynomial", "gaussian"])
def test_children_within_bounds_and_valid_for_their_type(method, mutation):
    rng = np.random.default_rng(4)
    pop = _mixed_population(rng, 4000)
    a, b = pop[:2000], pop[2000:]
    c1, c2 = crossover(
        a,
        b,
        kinds=MIXED_KINDS,
        n_levels=MIXED_LEVELS,
        method=method,
        eta=2.0,
        alpha=1.0,
        seed=1,
    )
    for c in (c1, c2):
        _assert_valid(c)
        cat = 3
        assert set(np.unique(c[:, cat])) <= set(np.unique(pop[:, cat]))
    m = mutate(
        pop,
        kinds=MIXED_KINDS,
        n_levels=MIXED_LEVELS,
        method=mutation,
        rate=1.0,
        eta=1.0,
        sigma=2.0,
        seed=2,
    )
    _assert_valid(m)
    # a categorical gene always moves to another category when mutated
    assert np.all(m[:, 3] != pop[:, 3])


def test_sbx_children_symmetric_around_parents_mean():
    rng = np.random.default_rng(5)
    a, b = rng.random((20000, 4)), rng.random((20000, 4))
    a[:10] = 0.0  # parents at the bounds too
    c1, c2 = crossover(a, b, rate=1.0, gene_rate=1.0, eta=2.0, seed=3)
    np.testing.assert_allclose(c1 + c2, a + b, rtol=0, atol=1e-14)
    assert np.all((c1 >= 0) & (c1 <= 1) & (c2 >= 0) & (c2 <= 1))


@pytest.mark.parametrize("eta", [2.0, 15.0])
def test_sbx_spread_factor_follows_its_distribution(eta):
    # away from the bounds no spread is shrunk: beta = |c2 - c1| / |x2 - x1| has
    # P(beta <= b) = b^(eta+1) / 2 for b <= 1 and 1 - b^-(eta+1) / 2 above
    n = 40000
    a, b = np.full((n, 1), 0.45), np.full((n, 1), 0.55)
    c1, c2 = crossover(a, b, rate=1.0, gene_rate=1.0, eta=eta, seed=9)
    beta = (np.abs(c2 - c1) / 0.1).ravel()

    def cdf(x):
        x = np.asarray(x, dtype=float)
        with np.errstate(divide="ignore"):
            return np.where(x <= 1.0, 0.5 * x ** (eta + 1), 1.0 - 0.5 * x ** -(eta + 1))

    assert beta.max() < 0.55 / 0.1 * 2  # never past the bounds
    assert stats.kstest(beta, cdf).pvalue > 1e-3
    # the spread changes sides freely: child 1 is on parent a's side half of the time
    assert abs(np.mean(c1 < c2) - 0.5) < 0.02


def test_blx_alpha_children_uniform_on_the_extended_interval():
    n = 30000
    a, b = np.full((n, 1), 0.4), np.full((n, 1), 0.6)
    c1, c2 = crossover(a, b, method="blx", alpha=0.5, rate=1.0, gene_rate=1.0, seed=2)
    both = np.concatenate([c1, c2]).ravel()
    assert both.min() >= 0.3 and both.max() <= 0.7
    assert stats.kstest(both, stats.uniform(0.3, 0.4).cdf).pvalue > 1e-3


def test_uniform_crossover_exchanges_genes():
    rng = np.random.default_rng(6)
    a, b = rng.random((5000, 8)), rng.random((5000, 8))
    c1, c2 = crossover(a, b, method="uniform", rate=1.0, gene_rate=0.5, seed=4)
    from_a = c1 == a
    assert np.all(from_a | (c1 == b))
    assert np.all(np.where(from_a, c2 == b, c2 == a))
    assert abs(from_a.mean() - 0.5) < 0.01
    # rate 0: no pair is crossed
    d1, d2 = crossover(a, b, method="sbx", rate=0.0, seed=4)
    assert np.array_equal(d1, a) and np.array_equal(d2, b)


def _numpy_polynomial(x, r, eta):
    """Deb's bounded polynomial mutation of x in [0, 1] for uniforms r (vectorized)."""
    e1 = eta + 1.0
    low = r < 0.5
    val = np.where(low, 2 * r + (1 - 2 * r) * (1 - x) ** e1, 2 * (1 - r) + 2 * (r - 0.5) * x**e1)
    dq = np.where(low, val ** (1 / e1) - 1, 1 - val ** (1 / e1))
    return np.clip(x + dq, 0.0, 1.0)


@pytest.mark.parametrize("x0", [0.05, 0.5, 0.9])
def test_polynomial_mutation_distribution_matches_reference(x0):
    n = 20000
    got = mutate(np.full((n, 1), x0), method="polynomial", eta=20.0, rate=1.0, seed=8).ravel()
    ref = _numpy_polynomial(np.full(n, x0), np.random.default_rng(99).random(n), 20.0)
    assert stats.ks_2samp(got, ref).pvalue > 1e-3
    assert got.min() >= 0.0 and got.max() <= 1.0
    # and it is a perturbation, not a resample: half of the moves go each way
    assert abs(np.mean(got < x0) - 0.5) < 0.02


def test_gaussian_mutation_is_a_reflected_normal():
    n = 20000
    x0, sigma = 0.1, 0.2
    got = mutate(np.full((n, 1), x0), method="gaussian", sigma=sigma, rate=1.0, seed=3).ravel()
    y = x0 + sigma * np.random.default_rng(5).standard_normal(n)
    y = np.where(y < 0, -y, y)
    assert stats.ks_2samp(got, y).pvalue > 1e-3


def test_mutation_rate_per_gene():
    X = np.full((4000, 25), 0.5)
    Y = mutate(X, rate=0.1, seed=1)
    changed = Y != X
    assert abs(changed.mean() - 0.1) < 0.005
    # positions are spread over the genes, not bunched
    assert stats.chisquare(changed.sum(axis=0)).pvalue > 1e-3
    assert np.array_equal(mutate(X, rate=0.0, seed=1), X)


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_tournament_winner_rank_distribution(k):
    n, draws = 20, 200000
    fit = np.random.default_rng(0).permutation(n).astype(float)  # value = rank
    idx = tournament_selection(fit, draws, k=k, seed=k)
    counts = np.bincount(fit[idx].astype(int), minlength=n)
    r = np.arange(n)
    # rank r wins when all k contestants have rank >= r and not all have rank > r
    p = ((n - r) / n) ** k - ((n - r - 1) / n) ** k
    assert stats.chisquare(counts, draws * p).pvalue > 1e-4


def test_selection_pressure_grows_with_tournament_size():
    fit = np.random.default_rng(1).random(1000)
    means = [fit[tournament_selection(fit, 50000, k=k, seed=0)].mean() for k in (1, 2, 4, 8)]
    assert all(b < a for a, b in zip(means, means[1:], strict=False))
    # analytic mean of the minimum of k uniforms is 1 / (k + 1)
    np.testing.assert_allclose(means, [1 / 2, 1 / 3, 1 / 5, 1 / 9], atol=0.01)


def test_tournament_nan_never_beats_a_number():
    fit = np.array([np.nan, np.nan, 5.0])
    idx = tournament_selection(fit, 5000, k=3, seed=0)
    # the number wins whenever it is drawn once in three tries
    assert abs(np.mean(idx == 2) - (1 - (2 / 3) ** 3)) < 0.02


def test_operator_validation_errors():
    with pytest.raises(ValidationError, match="crossover"):
        make_operators([0], [0], crossover="onepoint")
    with pytest.raises(ValidationError, match="mutation_rate"):
        make_operators([0], [0], mutation_rate=1.5)
    with pytest.raises(ValidationError, match="tournament_size"):
        make_operators([0], [0], tournament_size=0)
    with pytest.raises(ValidationError, match="unit-cube"):
        mutate(np.array([[1.5]]))
    with pytest.raises(ValidationError, match="same shape"):
        crossover(np.zeros((2, 2)), np.zeros((3, 2)))
    with pytest.raises(ValidationError, match="kinds"):
        mutate(np.zeros((2, 2)), kinds=[0, 7], n_levels=[0, 0])
