"""The Cython acquisition kernel against a slow numpy reference, mpmath and scikit-learn."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import scipy.linalg
import scipy.optimize
import scipy.special
import scipy.stats

from kaizenml._ext import _acqf
from kaizenml.optimize._gp import (
    GaussianProcess,
    default_theta,
    fit_hyperparameters,
    neg_log_posterior,
)

# ---------------------------------------------------------------------------------------------
# numpy reference: written for clarity, one formula per line, no shared code with the kernel


def ref_log_h(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """log(phi(z) + z Phi(z)) and its derivative, branch by branch as in Ament et al. (2023)."""
    z = np.asarray(z, dtype=np.float64)
    val = np.empty_like(z)
    der = np.empty_like(z)
    c1 = 0.5 * math.log(2 * math.pi)
    c2 = 0.5 * math.log(math.pi / 2)
    hi = z > -1
    zh = z[hi]
    phi = scipy.stats.norm.pdf(zh)
    Phi = scipy.stats.norm.cdf(zh)
    val[hi] = np.log(phi + zh * Phi)
    der[hi] = Phi / (phi + zh * Phi)
    mid = (z <= -1) & (z > -100)
    zm = z[mid]
    ex = scipy.special.erfcx(-zm / math.sqrt(2))
    u = np.log(ex * np.abs(zm)) + c2
    log1mexp = np.where(u > -math.log(2), np.log(-np.expm1(u)), np.log1p(-np.exp(u)))
    val[mid] = -0.5 * zm**2 - c1 + log1mexp
    der[mid] = math.sqrt(math.pi / 2) * ex / np.exp(log1mexp)
    lo = ~(hi | mid)
    x = -z[lo]
    # 1 - x R = 1/x^2 - 3/x^4 + 15/x^6 - 105/x^8 + 945/x^10 (Mills ratio series)
    q_over_w = 1 - 3 / x**2 + 15 / x**4 - 105 / x**6 + 945 / x**8
    val[lo] = -0.5 * x**2 - c1 - 2 * np.log(x) + np.log(q_over_w)
    der[lo] = (1 - q_over_w / x**2) * x / q_over_w
    return val, der


def ref_log_ndtr(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    val = scipy.special.log_ndtr(z)
    der = np.exp(scipy.stats.norm.logpdf(z) - val)
    return val, der


def ref_posterior_acquisition(Xt, L, alpha, inv_ls2, s, Xc, kind, best, beta):
    diff = Xc[:, None, :] - Xt[None, :, :]  # (m, n, d)
    r2 = np.sum(inv_ls2 * diff**2, axis=-1)
    r = np.sqrt(5 * r2)
    k = s * (1 + r + r**2 / 3) * np.exp(-r)  # (m, n)
    dk_dr2 = -(5 / 6) * s * (1 + r) * np.exp(-r)
    dk_dx = dk_dr2[:, :, None] * 2 * inv_ls2 * diff  # (m, n, d)
    mean = k @ alpha
    V = scipy.linalg.solve_triangular(L, k.T, lower=True)  # (n, m)
    var = s - np.sum(V**2, axis=0)
    clamped = var < 1e-12 * s
    var = np.where(clamped, 1e-12 * s, var)
    W = scipy.linalg.solve_triangular(L.T, V, lower=False)  # (n, m): K^{-1} k
    dmean = np.einsum("i,cij->cj", alpha, dk_dx)
    dvar = -2 * np.einsum("ic,cij->cj", W, dk_dx)
    dvar[clamped] = 0.0
    sd = np.sqrt(var)
    dsd = dvar / (2 * sd[:, None])
    if kind == _acqf.ACQ_LOG_EI:
        z = (best - mean) / sd
        lh, dlh = ref_log_h(z)
        acq = lh + np.log(sd)
        grad = (-dlh / sd)[:, None] * dmean + ((1 - z * dlh) / sd)[:, None] * dsd
    elif kind == _acqf.ACQ_UCB:
        acq = -mean + math.sqrt(beta) * sd
        grad = -dmean + math.sqrt(beta) * dsd
    else:
        z = (best - mean) / sd
        lp, dlp = ref_log_ndtr(z)
        acq = lp
        grad = (-dlp / sd)[:, None] * dmean + (-dlp * z / sd)[:, None] * dsd
    return acq, mean, var, grad


# ---------------------------------------------------------------------------------------------


def _fitted_problem(seed: int, n: int = 25, d: int = 3, noise: float = 1e-4):
    rng = np.random.default_rng(seed)
    Xt = rng.random((n, d))
    y = np.sin(4 * Xt[:, 0]) + (Xt[:, 1] - 0.4) ** 2 + 0.1 * rng.standard_normal(n)
    y = (y - y.mean()) / y.std()
    inv_ls2 = 1 / rng.uniform(0.15, 0.6, d) ** 2
    s = 1.3
    diff = Xt[:, None, :] - Xt[None, :, :]
    r = np.sqrt(5 * np.sum(inv_ls2 * diff**2, axis=-1))
    K = s * (1 + r + r**2 / 3) * np.exp(-r) + noise * np.eye(n)
    L = np.ascontiguousarray(np.linalg.cholesky(K))
    alpha = scipy.linalg.cho_solve((L, True), y)
    return rng, Xt, y, L, alpha, inv_ls2, s, K


@pytest.mark.parametrize("kind", [_acqf.ACQ_LOG_EI, _acqf.ACQ_UCB, _acqf.ACQ_LOG_PI])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kernel_equals_numpy_reference(kind: int, seed: int) -> None:
    rng, Xt, y, L, alpha, inv_ls2, s, _ = _fitted_problem(seed)
    # include training points themselves (variance at the noise floor) and far-away points
    Xc = np.vstack([rng.random((40, 3)), Xt[:3], rng.uniform(-2, 3, (5, 3))])
    best = float(y.min())
    got = _acqf.posterior_acquisition(Xt, L, alpha, inv_ls2, s, Xc, kind, best, 3.0)
    want = ref_posterior_acquisition(Xt, L, alpha, inv_ls2, s, Xc, kind, best, 3.0)
    for g, w, name in zip(got, want, ["acq", "mean", "var", "grad"], strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("kind", [_acqf.ACQ_LOG_EI, _acqf.ACQ_UCB, _acqf.ACQ_LOG_PI])
def test_gradient_matches_finite_differences(kind: int) -> None:
    rng, Xt, y, L, alpha, inv_ls2, s, _ = _fitted_problem(3)
    Xc = rng.random((6, 3))
    best = float(y.min())
    acq, _, _, grad = _acqf.posterior_acquisition(Xt, L, alpha, inv_ls2, s, Xc, kind, best, 2.0)
    h = 1e-6
    for j in range(3):
        up, dn = Xc.copy(), Xc.copy()
        up[:, j] += h
        dn[:, j] -= h
        a_up = _acqf.posterior_acquisition(Xt, L, alpha, inv_ls2, s, up, kind, best, 2.0)[0]
        a_dn = _acqf.posterior_acquisition(Xt, L, alpha, inv_ls2, s, dn, kind, best, 2.0)[0]
        fd = (a_up - a_dn) / (2 * h)
        np.testing.assert_allclose(grad[:, j], fd, rtol=1e-5, atol=1e-6 * np.abs(acq).max())


def test_posterior_matches_scikit_learn() -> None:
    import sklearn.gaussian_process as sklearn_gp
    import sklearn.gaussian_process.kernels as kernels

    _, Xt, y, L, alpha, inv_ls2, s, _ = _fitted_problem(4, noise=1e-3)
    kern = kernels.ConstantKernel(s, "fixed") * kernels.Matern(
        length_scale=1 / np.sqrt(inv_ls2), length_scale_bounds="fixed", nu=2.5
    )
    model = sklearn_gp.GaussianProcessRegressor(kern, alpha=1e-3, optimizer=None).fit(Xt, y)
    Xc = np.random.default_rng(9).random((30, 3))
    mu, sd = model.predict(Xc, return_std=True)
    _, mean, var, _ = _acqf.posterior_acquisition(
        Xt, L, alpha, inv_ls2, s, Xc, _acqf.ACQ_UCB, 0.0, 0.0, False
    )
    np.testing.assert_allclose(mean, mu, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(np.sqrt(var), sd, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize(
    "z",
    [-1e9, -1e5, -300.0, -100.5, -99.5, -40.0, -12.0, -5.0, -1.5, -1.0, -0.3, 0.0, 0.7, 4.0, 30.0],
)
def test_log_h_matches_high_precision(z: float) -> None:
    with mpmath.workdps(60):
        zz = mpmath.mpf(z)
        phi = mpmath.npdf(zz)
        Phi = mpmath.ncdf(zz)
        h = phi + zz * Phi
        want_val = float(mpmath.log(h))
        want_der = float(Phi / h)
    val, der = _acqf.log_h(z)
    assert val == pytest.approx(want_val, rel=1e-9, abs=1e-12)
    assert der == pytest.approx(want_der, rel=1e-9)
    # the numpy reference follows the same formulas
    rv, rd = ref_log_h(np.array([z]))
    assert rv[0] == pytest.approx(val, rel=1e-13, abs=1e-14)
    assert rd[0] == pytest.approx(der, rel=1e-12)


def test_log_ei_stays_finite_and_ordered_where_ei_underflows() -> None:
    # a point whose mean is 40 sd above the incumbent: plain EI underflows to 0
    Xt = np.array([[0.0], [1.0]])
    inv_ls2 = np.array([4.0])
    s = 1.0
    y = np.array([0.0, 50.0])
    K = np.array([[1 + 1e-6, 0.0], [0.0, 1 + 1e-6]])
    K[0, 1] = K[1, 0] = s * (1 + math.sqrt(20) + 20 / 3) * math.exp(-math.sqrt(20))
    L = np.linalg.cholesky(K)
    alpha = scipy.linalg.cho_solve((L, True), y)
    Xc = np.array([[0.97], [0.98], [0.99]])
    acq, mean, var, _ = _acqf.posterior_acquisition(
        Xt, L, alpha, inv_ls2, s, Xc, _acqf.ACQ_LOG_EI, 0.0, 0.0
    )
    sd = np.sqrt(var)
    z = -mean / sd
    naive = sd * (scipy.stats.norm.pdf(z) + z * scipy.stats.norm.cdf(z))
    assert np.all(naive == 0.0)
    assert np.all(np.isfinite(acq))
    # moving towards the bad observation must lower the (log) improvement
    assert acq[0] > acq[1] > acq[2]


def test_bad_shapes_raise() -> None:
    _, Xt, y, L, alpha, inv_ls2, s, _ = _fitted_problem(0)
    with pytest.raises(ValueError, match="columns"):
        _acqf.posterior_acquisition(Xt, L, alpha, inv_ls2, s, np.zeros((2, 4)), 0, 0.0, 0.0)
    with pytest.raises(ValueError, match="kind"):
        _acqf.posterior_acquisition(Xt, L, alpha, inv_ls2, s, np.zeros((2, 3)), 7, 0.0, 0.0)


# --- hyperparameter fit --------------------------------------------------------------------


def test_log_posterior_gradient_and_value() -> None:
    rng = np.random.default_rng(5)
    # 2 continuous columns and a 3-level one-hot block sharing one lengthscale
    X = np.hstack([rng.random((20, 2)), np.eye(3)[rng.integers(0, 3, 20)]])
    groups = np.array([0, 1, 2, 2, 2])
    y = np.sin(3 * X[:, 0]) + X[:, 2] + 0.05 * rng.standard_normal(20)
    y = (y - y.mean()) / y.std()
    theta = default_theta(3) + rng.normal(0, 0.4, 5)
    f, g = neg_log_posterior(theta, X, y, groups, 3)
    fd = scipy.optimize.approx_fprime(
        theta, lambda t: neg_log_posterior(t, X, y, groups, 3)[0], 1e-6
    )
    np.testing.assert_allclose(g, fd, rtol=1e-4, atol=1e-4)
    # the likelihood part equals a multivariate normal log density with the same kernel
    ls = np.exp(theta[:3])[groups]
    diff = (X[:, None, :] - X[None, :, :]) / ls
    r = np.sqrt(5 * np.sum(diff**2, axis=-1))
    signal, noise = math.exp(theta[3]), math.exp(theta[4])
    K = signal * (1 + r + r**2 / 3) * np.exp(-r) + (noise + 1e-8) * np.eye(20)
    lml = scipy.stats.multivariate_normal(np.zeros(20), K).logpdf(y)
    # Gamma(3, 6) lengthscales, Gamma(2, 1) signal, as densities of the log parameters
    log_prior = (
        np.sum(scipy.stats.gamma(3, scale=1 / 6).logpdf(np.exp(theta[:3])) + theta[:3])
        + 2 * theta[3]
        - signal
        + 0.1 * theta[4]
        - 30 * noise
    )
    # the objective drops the Gamma densities' normalizing constants: log(6^3 / 2!) each
    constant = 3 * (3 * math.log(6) - math.log(2))
    assert f == pytest.approx(-(lml + log_prior - constant), rel=1e-9)


def test_fit_learns_relevance_and_noise() -> None:
    rng = np.random.default_rng(6)
    X = rng.random((50, 3))
    clean = np.sin(6 * X[:, 0])  # only the first column matters
    for noise_sd, lo, hi in ((0.0, 0.0, 1e-3), (0.3, 0.02, 0.5)):
        y = clean + noise_sd * rng.standard_normal(50)
        mu, sd = y.mean(), y.std()
        ys = (y - mu) / sd
        theta, _ = fit_hyperparameters(X, ys, np.arange(3), 3, starts=[default_theta(3)])
        ls = np.exp(theta[:3])
        assert ls[0] < 0.5 * min(ls[1], ls[2])
        noise_var = math.exp(theta[4]) * sd**2  # back on the data scale
        assert lo <= noise_var <= hi, (noise_sd, noise_var)
    gp = GaussianProcess(X, ys, theta, np.arange(3))
    Xc = rng.random((200, 3))
    err = gp.mean(Xc) * sd + mu - np.sin(6 * Xc[:, 0])
    # smoother than the data: the error is well below the noise level (0.3)
    assert np.sqrt(np.mean(err**2)) < 0.2
