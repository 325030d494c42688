# cython: language_level=3
"""Genetic operators on populations in the unit-cube encoding.

Called by :mod:`kaizenml.optimize._ga_engine` (the standalone ``GeneticSearch`` engine, the
operator functions) and, through them, by the ``genetic`` sampler. Nothing here validates its
inputs beyond cheap invariants: the Python layer checks shapes, dtypes and options once.

Layout and conventions
----------------------
* A population is a C-contiguous ``(n, n_genes)`` float64 matrix with values in ``[0, 1]``.
* ``kinds[j]`` is 0 (continuous), 1 (discrete: ``n_levels[j]`` ordered levels, valid only at the
  bin centres ``(i + 0.5) / n``) or 2 (categorical: unordered levels, same centres).
* Fitness is always minimized here; the caller flips the sign for maximization and maps NaN to
  ``+inf``.
* Random numbers come from numpy bit generators through their C API (``bitgen_t``). Work is cut
  into fixed chunks of rows (or of pairs of rows), and chunk ``c`` draws only from
  ``streams[c]``. The chunk layout does not depend on the number of threads, so a set of
  streams spawned from one ``SeedSequence`` gives bit-identical results serially and in
  parallel, with any thread count.

SBX here is the symmetric form: both children sit at ``mean -/+ beta * |x2 - x1| / 2`` with one
spread factor ``beta`` per crossed gene pair (one ``log`` and one ``exp``, or ``k`` square roots
when ``eta + 1 == 2^k`` as for the common ``eta = 15``), and the spread is
shrunk, never the centre moved, when a child would leave ``[0, 1]``, so the children always stay
symmetric around the parents' mean.
"""

from cpython.pycapsule cimport PyCapsule_GetPointer
from libc.math cimport exp, fabs, floor, log, sqrt
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy
from cython.parallel cimport prange

from numpy.random cimport bitgen_t

import numpy as np

cdef extern from *:
    """
    #if defined(_MSC_VER)
    #include <intrin.h>
    static inline int kz_ctz64(unsigned long long x) {
        unsigned long i; _BitScanForward64(&i, x); return (int)i;
    }
    #define KZ_PREFETCH(p) ((void)0)
    #else
    static inline int kz_ctz64(unsigned long long x) { return __builtin_ctzll(x); }
    #define KZ_PREFETCH(p) __builtin_prefetch((const void *)(p), 0, 1)
    #endif
    """
    int kz_ctz64(uint64_t x) noexcept nogil
    void KZ_PREFETCH(const void* p) noexcept nogil

# gene kinds (same numbers as kaizenml.optimize._space)
cdef enum:
    K_CONT = 0
    K_DISC = 1
    K_CAT = 2

cdef enum:
    X_SBX = 0
    X_UNIFORM = 1
    X_BLX = 2
    X_NONE = 3

cdef enum:
    M_POLY = 0
    M_GAUSS = 1
    M_NONE = 2

CROSSOVERS = {"sbx": X_SBX, "uniform": X_UNIFORM, "blx": X_BLX, "none": X_NONE}
MUTATIONS = {"polynomial": M_POLY, "gaussian": M_GAUSS, "none": M_NONE}

ctypedef struct GAParams:
    int crossover
    double crossover_rate   # probability that a pair is crossed at all
    double gene_rate        # probability that a gene of a crossed pair is crossed
    bint gene_rate_half     # gene_rate == 0.5: take the coin from a bit of a 64-bit draw
    double inv_eta_c1       # 1 / (eta_c + 1)
    int sbx_sqrts           # k when eta_c + 1 == 2^k (1 <= k <= 6), else 0
    double alpha            # BLX-alpha
    int mutation
    double mut_rate         # per-gene mutation probability
    double log1m_rate       # log(1 - mut_rate), for geometric skipping
    double eta_m1           # eta_m + 1
    double inv_eta_m1       # 1 / (eta_m + 1)
    double sigma
    int k                   # tournament size


# ---------------------------------------------------------------------------------------------
# random numbers
# ---------------------------------------------------------------------------------------------
cdef inline double _u01(bitgen_t* rng) noexcept nogil:
    return rng.next_double(rng.state)


cdef inline Py_ssize_t _randint(bitgen_t* rng, Py_ssize_t n) noexcept nogil:
    # a 53-bit uniform scaled to n: bias below n / 2**53, negligible for any population
    cdef Py_ssize_t i = <Py_ssize_t>(rng.next_double(rng.state) * n)
    return i if i < n else n - 1


cdef inline double _normal(bitgen_t* rng) noexcept nogil:
    # Marsaglia's polar method, keeping one of the pair so each call is self-contained
    cdef double a, b, s
    while True:
        a = 2.0 * rng.next_double(rng.state) - 1.0
        b = 2.0 * rng.next_double(rng.state) - 1.0
        s = a * a + b * b
        if s > 0.0 and s < 1.0:
            break
    return a * sqrt(-2.0 * log(s) / s)


# ---------------------------------------------------------------------------------------------
# gene helpers
# ---------------------------------------------------------------------------------------------
cdef inline double _clip01(double x) noexcept nogil:
    if x < 0.0:
        return 0.0
    if x > 1.0:
        return 1.0
    return x


cdef inline double _snap(double x, int64_t n) noexcept nogil:
    cdef double lv = floor(x * n)
    if lv < 0.0:
        lv = 0.0
    elif lv > n - 1:
        lv = <double>(n - 1)
    return (lv + 0.5) / n


cdef inline double _pw(double base, double p) noexcept nogil:
    # base ** p for base >= 0, p > 0, through one log and one exp (exact enough, faster than pow)
    if base <= 0.0:
        return 0.0
    return exp(p * log(base))


# ---------------------------------------------------------------------------------------------
# operators on single rows
# ---------------------------------------------------------------------------------------------
cdef inline Py_ssize_t _tournament(const double* fit, Py_ssize_t n, int k,
                                   bitgen_t* rng) noexcept nogil:
    cdef Py_ssize_t best = _randint(rng, n), c
    cdef double bf = fit[best]
    cdef int t
    for t in range(1, k):
        c = _randint(rng, n)
        if fit[c] < bf:
            best = c
            bf = fit[c]
    return best


cdef void _cross_pair(const double* a, const double* b, double* c1, double* c2, Py_ssize_t g,
                      const int64_t* kinds, const int64_t* nlev, const GAParams* P,
                      bitgen_t* rng) noexcept nogil:
    """Two children ``c1``, ``c2`` of parents ``a``, ``b`` (rows of ``g`` genes).

    Draw order, per pair: one uniform for the pair's crossover decision (when the rate is
    below 1); then per block of 64 genes the crossed-gene mask (one 64-bit word when the gene
    rate is 1/2, none when it is 1, else one uniform per gene), for SBX one 64-bit word of
    side coins, and per crossed gene in increasing order its own draws (SBX: one uniform;
    BLX: two). Crossed genes are visited through the set bits of the mask, so the loop has no
    unpredictable branch on the coin."""
    cdef Py_ssize_t j, w0, wlen, t
    cdef int r
    cdef uint64_t mask, sides
    cdef int64_t kind
    cdef double x1, x2, d, u, tt, beta, mean, half, lim, sgn, y1, y2, lo, hi, ext
    memcpy(c1, a, g * sizeof(double))
    memcpy(c2, b, g * sizeof(double))
    if P.crossover == X_NONE or (
        P.crossover_rate < 1.0 and rng.next_double(rng.state) >= P.crossover_rate
    ):
        return
    w0 = 0
    while w0 < g:
        wlen = g - w0 if g - w0 < 64 else 64
        if P.gene_rate_half:
            mask = rng.next_uint64(rng.state)
        elif P.gene_rate >= 1.0:
            mask = ~(<uint64_t>0)
        else:
            mask = 0
            for t in range(wlen):
                if rng.next_double(rng.state) < P.gene_rate:
                    mask |= (<uint64_t>1) << t
        if wlen < 64:
            mask &= ((<uint64_t>1) << wlen) - 1
        sides = rng.next_uint64(rng.state) if (P.crossover == X_SBX and mask != 0) else 0
        while mask != 0:
            t = kz_ctz64(mask)
            mask &= mask - 1
            j = w0 + t
            x1 = a[j]
            x2 = b[j]
            kind = kinds[j]
            if kind == K_CAT or P.crossover == X_UNIFORM:
                # unordered levels (and uniform crossover) only exchange values
                c1[j] = x2
                c2[j] = x1
                continue
            if P.crossover == X_SBX:
                d = fabs(x2 - x1)
                if d < 1e-14:
                    continue
                u = rng.next_double(rng.state)
                # beta = (2u)^(1/(eta+1)) below 1/2, (2(1-u))^(-1/(eta+1)) above: one log and
                # one exp either way (u == 0 gives beta == 0)
                tt = 2.0 * u if u <= 0.5 else 0.5 / (1.0 - u)
                if P.sbx_sqrts:
                    # eta + 1 == 2^k: the root is k square roots, each correctly rounded and
                    # several times cheaper than log + exp
                    beta = tt
                    for r in range(P.sbx_sqrts):
                        beta = sqrt(beta)
                else:
                    beta = exp(log(tt) * P.inv_eta_c1)
                mean = 0.5 * (x1 + x2)
                half = 0.5 * beta * d
                lim = mean if mean < 1.0 - mean else 1.0 - mean
                if half > lim:
                    half = lim
                # child 1 on parent a's side unless its side coin says otherwise
                sgn = -1.0 if ((x1 <= x2) != <int>((sides >> t) & 1)) else 1.0
                y1 = mean + sgn * half
                y2 = mean - sgn * half
            else:  # BLX-alpha
                lo = x1 if x1 < x2 else x2
                hi = x2 if x1 < x2 else x1
                ext = P.alpha * (hi - lo)
                lo = lo - ext
                hi = hi + ext
                y1 = _clip01(lo + (hi - lo) * rng.next_double(rng.state))
                y2 = _clip01(lo + (hi - lo) * rng.next_double(rng.state))
            if kind == K_DISC:
                y1 = _snap(y1, nlev[j])
                y2 = _snap(y2, nlev[j])
            c1[j] = y1
            c2[j] = y2
        w0 += 64


cdef inline double _mutate_gene(double x, int64_t kind, int64_t n, const GAParams* P,
                                bitgen_t* rng) noexcept nogil:
    cdef double r, xy, val, dq, y, lv, nl
    if kind == K_CAT:
        if n <= 1:
            return x
        lv = floor(x * n)
        if lv < 0.0:
            lv = 0.0
        elif lv > n - 1:
            lv = <double>(n - 1)
        # another level, uniformly among the n - 1 others
        nl = <double>((<int64_t>lv + 1 + _randint(rng, n - 1)) % n)
        return (nl + 0.5) / n
    if P.mutation == M_POLY:
        # Deb's bounded polynomial mutation on [0, 1]
        r = rng.next_double(rng.state)
        if r < 0.5:
            xy = 1.0 - x
            val = 2.0 * r + (1.0 - 2.0 * r) * _pw(xy, P.eta_m1)
            dq = _pw(val, P.inv_eta_m1) - 1.0
        else:
            xy = x
            val = 2.0 * (1.0 - r) + 2.0 * (r - 0.5) * _pw(xy, P.eta_m1)
            dq = 1.0 - _pw(val, P.inv_eta_m1)
        y = _clip01(x + dq)
    else:
        # gaussian step reflected at the bounds (then clipped for steps longer than the cube)
        y = x + P.sigma * _normal(rng)
        if y < 0.0:
            y = -y
        if y > 1.0:
            y = 2.0 - y
        y = _clip01(y)
    if kind == K_DISC:
        y = _snap(y, n)
    return y


cdef inline Py_ssize_t _skip(const GAParams* P, bitgen_t* rng) noexcept nogil:
    """Genes left untouched before the next mutated one: geometric with the mutation rate.

    One draw per mutated gene instead of one per gene."""
    cdef double u, s
    if P.mut_rate >= 1.0:
        return 0
    u = 1.0 - rng.next_double(rng.state)  # in (0, 1]
    s = floor(log(u) / P.log1m_rate)
    if s > 1e15:
        return <Py_ssize_t>1000000000000000
    return <Py_ssize_t>s


cdef void _mutate_block(double* X, Py_ssize_t n_rows, Py_ssize_t g, const int64_t* kinds,
                        const int64_t* nlev, const GAParams* P, bitgen_t* rng) noexcept nogil:
    """Mutate a block of contiguous rows in place, treating it as one stream of genes."""
    cdef Py_ssize_t total = n_rows * g
    cdef Py_ssize_t pos, j
    if P.mutation == M_NONE or P.mut_rate <= 0.0:
        return
    pos = _skip(P, rng)
    while pos < total:
        j = pos % g
        X[pos] = _mutate_gene(X[pos], kinds[j], nlev[j], P, rng)
        pos += 1 + _skip(P, rng)


# ---------------------------------------------------------------------------------------------
# chunk workers
# ---------------------------------------------------------------------------------------------
cdef inline void _mut_at(double* base, Py_ssize_t pos, Py_ssize_t g, const int64_t* kinds,
                         const int64_t* nlev, const GAParams* P, bitgen_t* rng) noexcept nogil:
    cdef Py_ssize_t j = pos % g
    base[pos] = _mutate_gene(base[pos], kinds[j], nlev[j], P, rng)


cdef void _generation_chunk(const double* pop, Py_ssize_t n_pop, const double* fit, double* out,
                            Py_ssize_t n_out, Py_ssize_t g, Py_ssize_t p0, Py_ssize_t p1,
                            const int64_t* kinds, const int64_t* nlev, const GAParams* P,
                            bitgen_t* rng, double* scratch, int64_t* winners) noexcept nogil:
    """Offspring rows ``2 * p0`` up to ``2 * p1`` (capped at ``n_out``).

    Draw order: the ``2 * (p1 - p0)`` tournaments of the chunk first (their winners are known
    early, so the parents' rows are prefetched a few pairs ahead of use), then the first
    mutation gap, then per pair its crossover draws followed by the mutation draws of the genes
    it completes. Mutation positions run as one geometric stream over the chunk's genes."""
    cdef Py_ssize_t p, i, r0, nrows, n_p = p1 - p0, line, ahead
    cdef double* c2
    cdef const double* row
    cdef Py_ssize_t next_mut = 0, row_end
    cdef int mutating = P.mutation != M_NONE and P.mut_rate > 0.0
    cdef Py_ssize_t row_bytes = g * sizeof(double)
    cdef Py_ssize_t n_cand = 2 * n_p * P.k, c, best, t
    cdef int64_t* cand = <int64_t*>malloc(n_cand * sizeof(int64_t))
    if cand != NULL:
        # contestants first, their fitness prefetched, then the comparisons: the same draws
        # as one tournament after another, without waiting on each random fitness load
        for c in range(n_cand):
            cand[c] = _randint(rng, n_pop)
            KZ_PREFETCH(fit + cand[c])
        for i in range(2 * n_p):
            best = cand[i * P.k]
            for t in range(1, P.k):
                c = cand[i * P.k + t]
                if fit[c] < fit[best]:
                    best = c
            winners[i] = best
        free(cand)
    else:
        for i in range(2 * n_p):
            winners[i] = _tournament(fit, n_pop, P.k, rng)
    if mutating:
        next_mut = _skip(P, rng)
    for p in range(p0, p1):
        i = p - p0
        ahead = i + 6
        if ahead < n_p:
            for line in range(0, row_bytes, 64):
                KZ_PREFETCH(<const char*>(pop + winners[2 * ahead] * g) + line)
                KZ_PREFETCH(<const char*>(pop + winners[2 * ahead + 1] * g) + line)
        r0 = 2 * p
        c2 = out + (r0 + 1) * g if r0 + 1 < n_out else scratch
        _cross_pair(pop + winners[2 * i] * g, pop + winners[2 * i + 1] * g, out + r0 * g, c2,
                    g, kinds, nlev, P, rng)
        if not mutating:
            continue
        nrows = 2 if r0 + 1 < n_out else 1
        row_end = (2 * i + nrows) * g
        while next_mut < row_end:
            _mut_at(out + 2 * p0 * g, next_mut, g, kinds, nlev, P, rng)
            next_mut += 1 + _skip(P, rng)


cdef void _crossover_chunk(const double* pop, const int64_t* ia, const int64_t* ib, double* out,
                           Py_ssize_t n_out, Py_ssize_t g, Py_ssize_t p0, Py_ssize_t p1,
                           const int64_t* kinds, const int64_t* nlev, const GAParams* P,
                           bitgen_t* rng, double* scratch) noexcept nogil:
    cdef Py_ssize_t p, r0
    cdef double* c2
    for p in range(p0, p1):
        r0 = 2 * p
        c2 = out + (r0 + 1) * g if r0 + 1 < n_out else scratch
        _cross_pair(pop + ia[p] * g, pop + ib[p] * g, out + r0 * g, c2, g, kinds, nlev, P, rng)


# ---------------------------------------------------------------------------------------------
# Python entry points
# ---------------------------------------------------------------------------------------------
cdef bitgen_t** _bitgens(list streams, Py_ssize_t n_chunks) except NULL:
    cdef bitgen_t** out
    cdef Py_ssize_t c
    if len(streams) < n_chunks:
        raise ValueError(f"need {n_chunks} random streams, got {len(streams)}")
    out = <bitgen_t**>malloc(max(n_chunks, 1) * sizeof(bitgen_t*))
    if out == NULL:
        raise MemoryError()
    try:
        for c in range(n_chunks):
            out[c] = <bitgen_t*>PyCapsule_GetPointer(streams[c].capsule, "BitGenerator")
    except BaseException:
        free(out)
        raise
    return out


cdef class Operators:
    """Selection, crossover and mutation settings for one gene layout.

    Parameters
    ----------
    kinds, n_levels : int64 arrays of shape ``(n_genes,)``
        Gene kinds (0 continuous, 1 discrete, 2 categorical) and level counts.
    crossover : {"sbx", "uniform", "blx", "none"}
    mutation : {"polynomial", "gaussian", "none"}
    Other options as in :class:`kaizenml.optimize.GeneticSearch`; already validated.
    """

    cdef GAParams P
    cdef readonly object kinds
    cdef readonly object n_levels
    cdef const int64_t[::1] _kinds
    cdef const int64_t[::1] _nlev
    cdef readonly Py_ssize_t n_genes

    def __init__(self, kinds, n_levels, *, str crossover="sbx", double crossover_rate=0.9,
                 double gene_crossover_rate=0.5, double crossover_eta=15.0,
                 double blx_alpha=0.5, str mutation="polynomial", double mutation_rate=0.1,
                 double mutation_eta=20.0, double mutation_sigma=0.1, int tournament_size=2):
        self.kinds = np.ascontiguousarray(kinds, dtype=np.int64)
        self.n_levels = np.ascontiguousarray(n_levels, dtype=np.int64)
        if self.kinds.ndim != 1 or self.kinds.shape != self.n_levels.shape:
            raise ValueError("kinds and n_levels must be 1-D arrays of the same length")
        self._kinds = self.kinds
        self._nlev = self.n_levels
        self.n_genes = self.kinds.shape[0]
        self.P.crossover = CROSSOVERS[crossover]
        self.P.crossover_rate = crossover_rate
        self.P.gene_rate = gene_crossover_rate
        self.P.gene_rate_half = gene_crossover_rate == 0.5
        self.P.inv_eta_c1 = 1.0 / (crossover_eta + 1.0)
        self.P.sbx_sqrts = 0
        for r in range(1, 7):
            if crossover_eta + 1.0 == 2.0 ** r:
                self.P.sbx_sqrts = r
        self.P.alpha = blx_alpha
        self.P.mutation = MUTATIONS[mutation]
        self.P.mut_rate = mutation_rate
        self.P.log1m_rate = log(1.0 - mutation_rate) if mutation_rate < 1.0 else 0.0
        self.P.eta_m1 = mutation_eta + 1.0
        self.P.inv_eta_m1 = 1.0 / (mutation_eta + 1.0)
        self.P.sigma = mutation_sigma
        self.P.k = tournament_size

    def tournament(self, const double[::1] fitness, Py_ssize_t n_select, list streams,
                   Py_ssize_t chunk, int n_threads=1):
        """Indices of ``n_select`` tournament winners (size ``k``, lower fitness wins).

        Selection ``i`` draws from ``streams[i // chunk]``."""
        cdef Py_ssize_t n = fitness.shape[0]
        cdef Py_ssize_t n_chunks = (n_select + chunk - 1) // chunk
        cdef Py_ssize_t c, i, i1
        out_arr = np.empty(n_select, dtype=np.int64)
        cdef int64_t[::1] out = out_arr
        if n_select == 0:
            return out_arr
        if n == 0:
            raise ValueError("cannot select from an empty population")
        cdef bitgen_t** rngs = _bitgens(streams, n_chunks)
        cdef const double* fp = &fitness[0]
        cdef int k = self.P.k
        try:
            with nogil:
                for c in prange(n_chunks, num_threads=n_threads, schedule="dynamic"):
                    i1 = (c + 1) * chunk
                    if i1 > n_select:
                        i1 = n_select
                    for i in range(c * chunk, i1):
                        out[i] = _tournament(fp, n, k, rngs[c])
        finally:
            free(rngs)
        return out_arr

    def crossover(self, const double[:, ::1] pop, const int64_t[::1] idx_a,
                  const int64_t[::1] idx_b, double[:, ::1] out, list streams, Py_ssize_t chunk,
                  int n_threads=1):
        """Children of the pairs ``(pop[idx_a[p]], pop[idx_b[p]])`` into rows ``2p, 2p + 1`` of
        ``out`` (the last child is dropped when ``out`` has an odd number of rows).

        Pair ``p`` draws from ``streams[p // chunk]``."""
        cdef Py_ssize_t n_out = out.shape[0], g = self.n_genes
        cdef Py_ssize_t n_pairs = (n_out + 1) // 2
        cdef Py_ssize_t n_chunks = (n_pairs + chunk - 1) // chunk
        cdef Py_ssize_t c, p1, n_pop = pop.shape[0], p
        if pop.shape[1] != g or out.shape[1] != g:
            raise ValueError(f"populations must have {g} genes")
        if idx_a.shape[0] < n_pairs or idx_b.shape[0] < n_pairs:
            raise ValueError(f"need {n_pairs} parent indices for {n_out} children")
        for p in range(n_pairs):
            if not (0 <= idx_a[p] < n_pop and 0 <= idx_b[p] < n_pop):
                raise ValueError("parent index out of range")
        if n_out == 0:
            return
        cdef bitgen_t** rngs = _bitgens(streams, n_chunks)
        cdef double* scratch = <double*>malloc(g * n_chunks * sizeof(double))
        if scratch == NULL:
            free(rngs)
            raise MemoryError()
        try:
            with nogil:
                for c in prange(n_chunks, num_threads=n_threads, schedule="dynamic"):
                    p1 = (c + 1) * chunk
                    if p1 > n_pairs:
                        p1 = n_pairs
                    _crossover_chunk(&pop[0, 0], &idx_a[0], &idx_b[0], &out[0, 0], n_out, g,
                                     c * chunk, p1, &self._kinds[0], &self._nlev[0], &self.P,
                                     rngs[c], scratch + c * g)
        finally:
            free(scratch)
            free(rngs)

    def mutate(self, double[:, ::1] X, list streams, Py_ssize_t chunk, int n_threads=1):
        """Mutate ``X`` in place; rows ``[c * chunk, (c + 1) * chunk)`` draw from
        ``streams[c]``."""
        cdef Py_ssize_t n = X.shape[0], g = self.n_genes
        cdef Py_ssize_t n_chunks = (n + chunk - 1) // chunk
        cdef Py_ssize_t c, r1
        if X.shape[1] != g:
            raise ValueError(f"population must have {g} genes")
        if n == 0:
            return
        cdef bitgen_t** rngs = _bitgens(streams, n_chunks)
        try:
            with nogil:
                for c in prange(n_chunks, num_threads=n_threads, schedule="dynamic"):
                    r1 = (c + 1) * chunk
                    if r1 > n:
                        r1 = n
                    _mutate_block(&X[c * chunk, 0], r1 - c * chunk, g, &self._kinds[0],
                                  &self._nlev[0], &self.P, rngs[c])
        finally:
            free(rngs)

    def generation(self, const double[:, ::1] pop, const double[::1] fitness,
                   double[:, ::1] out, list streams, Py_ssize_t chunk, int n_threads=1):
        """One generation of offspring into ``out``: for every pair of output rows, two
        tournament winners are crossed and both children mutated, in one pass.

        Pair ``p`` (rows ``2p, 2p + 1``) draws from ``streams[p // chunk]``. ``out`` must not
        overlap ``pop``."""
        cdef Py_ssize_t n_pop = pop.shape[0], n_out = out.shape[0], g = self.n_genes
        cdef Py_ssize_t n_pairs = (n_out + 1) // 2
        cdef Py_ssize_t n_chunks = (n_pairs + chunk - 1) // chunk
        cdef Py_ssize_t c, p1
        if pop.shape[1] != g or out.shape[1] != g:
            raise ValueError(f"populations must have {g} genes")
        if fitness.shape[0] != n_pop:
            raise ValueError("fitness must have one value per individual")
        if n_out == 0:
            return
        if n_pop == 0:
            raise ValueError("cannot select from an empty population")
        cdef bitgen_t** rngs = _bitgens(streams, n_chunks)
        cdef double* scratch = <double*>malloc(g * n_chunks * sizeof(double))
        # tournament winners, 2 * chunk indices per chunk: 8 bytes per offspring row
        cdef int64_t* winners = <int64_t*>malloc(2 * chunk * n_chunks * sizeof(int64_t))
        if scratch == NULL or winners == NULL:
            free(rngs)
            free(scratch)
            free(winners)
            raise MemoryError()
        try:
            with nogil:
                for c in prange(n_chunks, num_threads=n_threads, schedule="dynamic"):
                    p1 = (c + 1) * chunk
                    if p1 > n_pairs:
                        p1 = n_pairs
                    _generation_chunk(&pop[0, 0], n_pop, &fitness[0], &out[0, 0], n_out, g,
                                      c * chunk, p1, &self._kinds[0], &self._nlev[0], &self.P,
                                      rngs[c], scratch + c * g, winners + 2 * chunk * c)
        finally:
            free(winners)
            free(scratch)
            free(rngs)


cdef extern from *:
    """
    #ifdef _OPENMP
    #define KZ_OPENMP 1
    #else
    #define KZ_OPENMP 0
    #endif
    """
    int KZ_OPENMP


def openmp_enabled():
    """Whether this build runs ``prange`` loops on several threads."""
    return bool(KZ_OPENMP)
