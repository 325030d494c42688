# cython: language_level=3
"""Gaussian-process posterior and acquisition functions for a batch of candidates.

Called by :mod:`kaizenml.optimize._gp` (the model behind ``BayesianSampler``). The kernel is
Matérn-5/2 with one inverse squared lengthscale per (one-hot expanded) input column:

    r2 = sum_j inv_ls2[j] * (x[j] - y[j])**2
    k(r) = s * (1 + sqrt(5) r + 5/3 r2) * exp(-sqrt(5) r)

For ``m`` candidates and ``n`` training points the posterior needs
``V = L^{-1} K_*`` and ``W = L^{-T} V`` (two ``dtrsm`` calls), the mean ``K_*^T alpha``
(``dgemv``) and, for the gradient, one ``dgemm`` of an ``(m, n)`` weight matrix with the
training inputs. Everything after argument unpacking runs without the GIL.

Acquisition values are to be *maximized*; the objective is *minimized* (callers pass values
already multiplied by the direction sign):

* ``ACQ_LOG_EI`` (0): log expected improvement below ``best``, computed with the ``log h``
  formulation of Ament et al. (NeurIPS 2023), stable for improvements that underflow ``EI``:
  ``erfcx`` with ``log1mexp`` for moderate ``z``, and the asymptotic series of the Mills ratio
  for ``z < -100``, where ``1 - |z| R(z)`` would lose digits to cancellation.
* ``ACQ_UCB`` (1): ``-mean + sqrt(beta) * sd`` (a lower confidence bound, negated).
* ``ACQ_LOG_PI`` (2): ``log P(f < best)``.
"""

from cython.parallel cimport prange
from libc.math cimport exp, log, sqrt, fabs, erfc, log1p, expm1, INFINITY
from scipy.linalg.cython_blas cimport dtrsm, dgemv, dgemm
from scipy.special.cython_special cimport erfcx

import numpy as np

cdef double SQRT5 = 2.23606797749978969640
cdef double INV_SQRT2 = 0.70710678118654752440
cdef double LOG_2PI_HALF = 0.91893853320467274178   # log(2 pi) / 2
cdef double LOG_PI_2_HALF = 0.22579135264472743236  # log(pi / 2) / 2
cdef double SQRT_PI_2 = 1.25331413731550025121      # sqrt(pi / 2)
cdef double INV_SQRT_2PI = 0.39894228040143267794
# below this z, 1 - |z| R(z) is taken from its asymptotic series instead of erfcx
cdef double Z_ASYMPTOTIC = -100.0

ACQ_LOG_EI = 0
ACQ_UCB = 1
ACQ_LOG_PI = 2


cdef inline double _log1mexp(double x) noexcept nogil:
    # log(1 - exp(x)) for x < 0, accurate on both sides of -log 2 (Maechler 2012)
    if x > -0.6931471805599453:
        return log(-expm1(x))
    return log1p(-exp(x))


cdef inline void _log_h(double z, double* value, double* dvalue) noexcept nogil:
    """log h(z) with h(z) = phi(z) + z Phi(z), and d log h / dz = Phi(z) / h(z)."""
    cdef double phi, Phi, h, ex, u, lm, absz, w, series
    if z > -1.0:
        phi = INV_SQRT_2PI * exp(-0.5 * z * z)
        Phi = 0.5 * erfc(-z * INV_SQRT2)
        h = phi + z * Phi
        value[0] = log(h)
        dvalue[0] = Phi / h
    elif z > Z_ASYMPTOTIC:
        # h = phi(z) * (1 - |z| R(z)) with the Mills-type ratio R = sqrt(pi/2) erfcx(-z/sqrt2)
        absz = -z
        ex = erfcx(-z * INV_SQRT2)
        u = log(ex * absz) + LOG_PI_2_HALF          # log(|z| R)
        lm = _log1mexp(u)                            # log(1 - |z| R)
        value[0] = -0.5 * z * z - LOG_2PI_HALF + lm
        dvalue[0] = exp(log(SQRT_PI_2 * ex) - lm)    # R / (1 - |z| R)
    else:
        # 1 - |z| R cancels for large |z|: use its asymptotic series
        # q = w (1 - 3w + 15w^2 - 105w^3 + 945w^4), w = 1/z^2 (next term ~1e-12 relative)
        absz = -z
        w = 1.0 / (absz * absz)
        series = 1.0 + w * (-3.0 + w * (15.0 + w * (-105.0 + w * 945.0)))
        value[0] = -0.5 * z * z - LOG_2PI_HALF - 2.0 * log(absz) + log(series)
        # R / q = (1 - q) / (|z| q) = (1 - w series) |z| / series
        dvalue[0] = (1.0 - w * series) * absz / series


cdef inline void _log_ndtr(double z, double* value, double* dvalue) noexcept nogil:
    """log Phi(z) and its derivative phi(z) / Phi(z)."""
    cdef double ex
    if z < 0.0:
        ex = erfcx(-z * INV_SQRT2)                   # Phi = 0.5 ex exp(-z^2/2)
        value[0] = log(0.5 * ex) - 0.5 * z * z
        dvalue[0] = 1.0 / (SQRT_PI_2 * ex)
    else:
        ex = 0.5 * erfc(z * INV_SQRT2)               # 1 - Phi(z)
        value[0] = log1p(-ex)
        dvalue[0] = INV_SQRT_2PI * exp(-0.5 * z * z) / (1.0 - ex)


def log_h(double z):
    """``(log h(z), d log h / dz)`` for ``h(z) = phi(z) + z Phi(z)`` (exposed for tests)."""
    cdef double v, dv
    _log_h(z, &v, &dv)
    return v, dv


def posterior_acquisition(
    const double[:, ::1] X_train,
    const double[:, ::1] L,
    const double[::1] alpha,
    const double[::1] inv_ls2,
    double signal_var,
    const double[:, ::1] X_cand,
    int kind,
    double best,
    double beta,
    bint compute_grad=True,
    int n_threads=1,
):
    """Posterior and acquisition of a Matérn-5/2 GP at ``m`` candidates in one call.

    Parameters
    ----------
    X_train : (n, d) training inputs.
    L : (n, n) lower Cholesky factor of ``K + noise I`` (C order; the upper triangle is ignored).
    alpha : (n,) ``(K + noise I)^{-1} y``.
    inv_ls2 : (d,) inverse squared lengthscales.
    signal_var : kernel amplitude ``s``.
    X_cand : (m, d) candidates.
    kind : ``ACQ_LOG_EI``, ``ACQ_UCB`` or ``ACQ_LOG_PI``.
    best : incumbent (minimization) for EI/PI.
    beta : UCB exploration weight (``sqrt(beta)`` multiplies the standard deviation).
    compute_grad : also return the gradient of the acquisition w.r.t. the candidates.
    n_threads : OpenMP threads for the element-wise parts (BLAS uses its own).

    Returns
    -------
    acq, mean, var : (m,) arrays; grad : (m, d) array (zeros unless ``compute_grad``).
    """
    cdef Py_ssize_t n = X_train.shape[0]
    cdef Py_ssize_t d = X_train.shape[1]
    cdef Py_ssize_t m = X_cand.shape[0]
    if L.shape[0] != n or L.shape[1] != n or alpha.shape[0] != n:
        raise ValueError("L must be (n, n) and alpha (n,) for n training points")
    if inv_ls2.shape[0] != d or X_cand.shape[1] != d:
        raise ValueError("inv_ls2 and X_cand must have as many columns as X_train")
    if kind < 0 or kind > 2:
        raise ValueError(f"kind must be 0 (log EI), 1 (UCB) or 2 (log PI), got {kind}")
    if n_threads < 1:
        n_threads = 1

    acq_arr = np.empty(m, dtype=np.float64)
    mean_arr = np.empty(m, dtype=np.float64)
    var_arr = np.empty(m, dtype=np.float64)
    grad_arr = np.zeros((m, d), dtype=np.float64)
    if m == 0:
        return acq_arr, mean_arr, var_arr, grad_arr
    # (m, n) kernel rows, then overwritten in place by V = L^{-1} K_* and W = L^{-T} V
    kc_arr = np.empty((m, n), dtype=np.float64)
    vw_arr = np.empty((m, n), dtype=np.float64)
    # (m, n) dk/dr2, later the gradient weights P
    dk_arr = np.empty((m, n), dtype=np.float64)
    a_mu_arr = np.empty(m, dtype=np.float64)
    a_var_arr = np.empty(m, dtype=np.float64)
    xg_arr = np.empty((m, d), dtype=np.float64)

    cdef double[::1] acq = acq_arr
    cdef double[::1] mean = mean_arr
    cdef double[::1] var = var_arr
    cdef double[:, ::1] grad = grad_arr
    cdef double[:, ::1] kc = kc_arr
    cdef double[:, ::1] vw = vw_arr
    cdef double[:, ::1] dk = dk_arr
    cdef double[::1] a_mu = a_mu_arr
    cdef double[::1] a_var = a_var_arr
    cdef double[:, ::1] xg = xg_arr

    cdef Py_ssize_t c, i, j
    cdef double r2, r, e, diff, s, sd, z, lv, dlv, sqb, var_floor, rowsum
    cdef int n_i = <int>n, m_i = <int>m, d_i = <int>d, one = 1
    cdef double one_d = 1.0, zero_d = 0.0
    cdef char side = b'L', upper = b'U', trans_t = b'T', trans_n = b'N', diag_n = b'N'

    var_floor = 1e-12 * signal_var
    sqb = sqrt(beta) if beta > 0.0 else 0.0

    with nogil:
        # kernel rows and dk/dr2 (hand loop: element-wise, no linear algebra)
        for c in prange(m, num_threads=n_threads, schedule="static"):
            for i in range(n):
                r2 = 0.0
                for j in range(d):
                    diff = X_cand[c, j] - X_train[i, j]
                    r2 = r2 + inv_ls2[j] * diff * diff
                r = sqrt(r2 * 5.0)
                e = exp(-r)
                kc[c, i] = signal_var * (1.0 + r + r * r / 3.0) * e
                dk[c, i] = -(5.0 / 6.0) * signal_var * (1.0 + r) * e
                vw[c, i] = kc[c, i]

        # mean = K_*^T alpha; column-major view of kc is (n, m)
        dgemv(&trans_t, &n_i, &m_i, &one_d, &kc[0, 0], &n_i, <double*>&alpha[0], &one,
              &zero_d, &mean[0], &one)
        # C-order L read column-major is L^T (upper): op = T solves L V = K_*
        dtrsm(&side, &upper, &trans_t, &diag_n, &n_i, &m_i, &one_d, <double*>&L[0, 0], &n_i,
              &vw[0, 0], &n_i)

        for c in prange(m, num_threads=n_threads, schedule="static"):
            s = 0.0
            for i in range(n):
                s = s + vw[c, i] * vw[c, i]
            var[c] = signal_var - s
            if var[c] < var_floor:
                var[c] = var_floor
                s = 0.0              # clamped: no gradient through the variance
            else:
                s = 1.0
            sd = sqrt(var[c])
            if kind == 0:
                z = (best - mean[c]) / sd
                _log_h(z, &lv, &dlv)
                acq[c] = lv + log(sd)
                a_mu[c] = -dlv / sd
                a_var[c] = s * (1.0 - z * dlv) / sd / (2.0 * sd)
            elif kind == 1:
                acq[c] = -mean[c] + sqb * sd
                a_mu[c] = -1.0
                a_var[c] = s * sqb / (2.0 * sd)
            else:
                z = (best - mean[c]) / sd
                _log_ndtr(z, &lv, &dlv)
                acq[c] = lv
                a_mu[c] = -dlv / sd
                a_var[c] = s * (-dlv * z / sd) / (2.0 * sd)

        if compute_grad:
            # W = L^{-T} V: rows of vw become (K + noise I)^{-1} k_c
            dtrsm(&side, &upper, &trans_n, &diag_n, &n_i, &m_i, &one_d, <double*>&L[0, 0],
                  &n_i, &vw[0, 0], &n_i)
            # d acq / d k_ci = a_mu alpha_i - 2 a_var w_ci ; P = that * dk/dr2
            for c in prange(m, num_threads=n_threads, schedule="static"):
                for i in range(n):
                    dk[c, i] = dk[c, i] * (a_mu[c] * alpha[i] - 2.0 * a_var[c] * vw[c, i])
            # xg = P X_train: column-major (d, m) = X^T (d, n) @ P^T (n, m)
            dgemm(&trans_n, &trans_n, &d_i, &m_i, &n_i, &one_d, <double*>&X_train[0, 0], &d_i,
                  &dk[0, 0], &n_i, &zero_d, &xg[0, 0], &d_i)
            # d r2 / d x_cj = 2 inv_ls2_j (x_cj - X_ij)
            for c in prange(m, num_threads=n_threads, schedule="static"):
                rowsum = 0.0
                for i in range(n):
                    rowsum = rowsum + dk[c, i]
                for j in range(d):
                    grad[c, j] = 2.0 * inv_ls2[j] * (X_cand[c, j] * rowsum - xg[c, j])

    return acq_arr, mean_arr, var_arr, grad_arr


def matern52_gram(const double[:, ::1] X, const double[::1] inv_ls2, double signal_var):
    """(n, n) Matérn-5/2 Gram matrix of the rows of ``X`` (no noise term); used by the fit."""
    cdef Py_ssize_t n = X.shape[0]
    cdef Py_ssize_t d = X.shape[1]
    if inv_ls2.shape[0] != d:
        raise ValueError("inv_ls2 must have one entry per column of X")
    K_arr = np.empty((n, n), dtype=np.float64)
    cdef double[:, ::1] K = K_arr
    cdef Py_ssize_t a, b, j
    cdef double r2, r, diff, k
    with nogil:
        for a in range(n):
            K[a, a] = signal_var
            for b in range(a):
                r2 = 0.0
                for j in range(d):
                    diff = X[a, j] - X[b, j]
                    r2 = r2 + inv_ls2[j] * diff * diff
                r = sqrt(5.0 * r2)
                k = signal_var * (1.0 + r + r * r / 3.0) * exp(-r)
                K[a, b] = k
                K[b, a] = k
    return K_arr


def matern52_lml_gradient(
    const double[:, ::1] X,
    const double[::1] inv_ls2,
    double signal_var,
    const double[:, ::1] Kinv,
    const double[::1] alpha,
):
    """Gradient pieces of the log marginal likelihood of a Matérn-5/2 GP.

    With ``W = (alpha alpha^T - K^{-1}) / 2`` (only the lower triangle of ``Kinv`` is read, as
    LAPACK ``dpotri`` leaves it), returns

    * ``col_grad`` (d,): ``sum_ab W_ab dK_ab / d log(lengthscale_j)`` per column,
    * ``d_log_signal``: ``sum_ab W_ab K_ab`` (signal part of ``K``),
    * ``trace_w``: ``sum_a W_aa`` (times the noise variance gives the noise derivative).

    One pass over the pairs, nothing of size (n, n) allocated.
    """
    cdef Py_ssize_t n = X.shape[0]
    cdef Py_ssize_t d = X.shape[1]
    if inv_ls2.shape[0] != d or Kinv.shape[0] != n or Kinv.shape[1] != n or alpha.shape[0] != n:
        raise ValueError("shapes of X, inv_ls2, Kinv and alpha do not agree")
    grad_arr = np.zeros(d, dtype=np.float64)
    cdef double[::1] grad = grad_arr
    cdef Py_ssize_t a, b, j
    cdef double r2, r, e, diff, w, k, dk, d_signal = 0.0, trace_w = 0.0
    with nogil:
        for a in range(n):
            w = 0.5 * (alpha[a] * alpha[a] - Kinv[a, a])
            trace_w = trace_w + w
            d_signal = d_signal + w * signal_var
            for b in range(a):
                w = alpha[a] * alpha[b] - Kinv[a, b]      # both triangles: 2 * W_ab
                r2 = 0.0
                for j in range(d):
                    diff = X[a, j] - X[b, j]
                    r2 = r2 + inv_ls2[j] * diff * diff
                r = sqrt(5.0 * r2)
                e = exp(-r)
                k = signal_var * (1.0 + r + r * r / 3.0) * e
                dk = -(5.0 / 6.0) * signal_var * (1.0 + r) * e
                d_signal = d_signal + w * k
                # d r2 / d log(l_j) = -2 inv_ls2_j diff_j^2
                w = -2.0 * w * dk
                for j in range(d):
                    diff = X[a, j] - X[b, j]
                    grad[j] = grad[j] + w * inv_ls2[j] * diff * diff
    return grad_arr, d_signal, trace_w
