"""Vectorized numpy version of kaizenml's genetic operators: the reference the compiled kernels
must beat.

Same operators and the same distributions as ``kaizenml._ext._ga`` (binary or k-tournament,
symmetric SBX with one spread factor per gene pair, bounded polynomial mutation with a per-gene
rate), written the way a careful numpy user would: chunks of rows so temporaries stay in cache,
in-place ufuncs with ``out=``, masks instead of Python loops. The random streams differ from the
compiled kernels', so results agree in distribution, not bit for bit.
"""

from __future__ import annotations

import numpy as np

__all__ = ["numpy_generation"]


def _sbx_chunk(a, b, rng, eta, crossover_rate, gene_rate, out1, out2):
    m, g = a.shape
    pair_on = rng.random(m) < crossover_rate
    gene_on = (rng.random((m, g)) < gene_rate) & pair_on[:, None]
    d = np.abs(b - a)
    gene_on &= d > 1e-14
    u = rng.random((m, g))
    # beta from u through one log and one exp: (2u)^(1/(eta+1)) or (2(1-u))^(-1/(eta+1))
    lower = u <= 0.5
    t = np.where(lower, 2.0 * u, 2.0 * (1.0 - u))
    with np.errstate(divide="ignore"):
        np.log(t, out=t)
    t *= 1.0 / (eta + 1.0)
    np.negative(t, out=t, where=~lower)
    np.exp(t, out=t)  # beta
    mean = a + b
    mean *= 0.5
    half = t
    half *= d
    half *= 0.5
    np.minimum(half, np.minimum(mean, 1.0 - mean), out=half)
    # child 1 on parent a's side, then exchanged with probability 1/2
    side = (a <= b) != (rng.random((m, g)) < 0.5)
    half[side] *= -1.0
    np.copyto(out1, a)
    np.copyto(out2, b)
    np.add(mean, half, out=out1, where=gene_on)
    np.subtract(mean, half, out=out2, where=gene_on)


def _polynomial_chunk(x, rng, eta, rate):
    mask = rng.random(x.shape) < rate
    idx = np.nonzero(mask)
    if idx[0].size == 0:
        return
    v = x[idx]
    r = rng.random(v.size)
    lower = r < 0.5
    xy = np.where(lower, 1.0 - v, v)
    pw = xy ** (eta + 1.0)
    val = np.where(lower, 2.0 * r + (1.0 - 2.0 * r) * pw, 2.0 * (1.0 - r) + 2.0 * (r - 0.5) * pw)
    q = val ** (1.0 / (eta + 1.0))
    dq = np.where(lower, q - 1.0, 1.0 - q)
    x[idx] = np.clip(v + dq, 0.0, 1.0)


def numpy_generation(
    pop: np.ndarray,
    fitness: np.ndarray,
    rng: np.random.Generator,
    *,
    out: np.ndarray | None = None,
    k: int = 2,
    eta_c: float = 15.0,
    crossover_rate: float = 0.9,
    gene_rate: float = 0.5,
    eta_m: float = 20.0,
    mutation_rate: float | None = None,
    chunk: int = 8192,
) -> np.ndarray:
    """Tournament selection + SBX + polynomial mutation for continuous genes in [0, 1].

    Shapes: ``pop`` (n, g), ``fitness`` (n,) (lower is better); returns (n, g) offspring.
    """
    n, g = pop.shape
    if out is None:
        out = np.empty_like(pop)
    if mutation_rate is None:
        mutation_rate = 1.0 / g
    for r0 in range(0, n, chunk):
        r1 = min(n, r0 + chunk)
        m = (r1 - r0 + 1) // 2
        cand = rng.integers(0, n, size=(2 * m, k))
        winners = cand[np.arange(2 * m), np.argmin(fitness[cand], axis=1)]
        a = pop[winners[:m]]
        b = pop[winners[m:]]
        c1 = np.empty((m, g))
        c2 = np.empty((m, g))
        _sbx_chunk(a, b, rng, eta_c, crossover_rate, gene_rate, c1, c2)
        block = out[r0:r1]
        block[0::2] = c1[: (r1 - r0 + 1) // 2]
        block[1::2] = c2[: (r1 - r0) // 2]
        _polynomial_chunk(block, rng, eta_m, mutation_rate)
    return out
