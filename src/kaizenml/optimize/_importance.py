"""Parameter importance: first-order Sobol indices of a Gaussian-process surrogate.

Method
------
1. The completed trials are encoded in the unit cube (categoricals one-hot) and their values
   standardized. A Gaussian process with a Matérn-5/2 kernel, one lengthscale per column, a
   signal variance and a noise variance is fitted by maximizing the log marginal likelihood
   (scipy L-BFGS-B with analytic gradients, a few deterministic starts).
2. The importance of parameter ``i`` is its first-order Sobol index under the search space's
   own uniform distribution (uniform in the encoding: log-uniform for log parameters, every
   level equally likely for discrete ones), computed on the surrogate's posterior mean ``m``:

   ``S_i = Var_{x_i}( E[m(x) | x_i] ) / Var( m(x) )``

   ``E[m | x_i = g]`` is averaged over one scrambled Sobol base sample of the other parameters
   (the same sample for every ``g``, which cancels most of the Monte Carlo noise), ``g`` runs
   over stratified points of ``x_i`` (or every level of a discrete parameter).

``S_i`` is the share of the objective's variance explained by parameter ``i`` alone; the indices
sum to at most 1 (the rest is interactions). A parameter the objective ignores gets about 0.
This is the functional-ANOVA main effect; no scikit-learn is needed.

With ``total=True`` the total-order index is returned instead, from the same predictions:

   ``S_T,i = E_{x_~i}[ Var_{x_i}( m(x) | x_~i ) ] / Var( m(x) )``

the share of the variance that involves ``i`` at all, interactions included. A parameter whose
total index is about 0 can be fixed without losing anything; one acting only through an
interaction (``(x1 - 0.5) * (x2 - 0.5)``) has first-order indices near 0 but large total ones.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .._exceptions import KaizenTypeError, ValidationError
from .._validation import check_int
from ._space import SearchSpace
from ._trial import Trial, TrialState

__all__ = ["GPSurrogate", "param_importances"]

_SQRT5 = math.sqrt(5.0)


def _single_threaded_blas() -> Any:
    """Limit BLAS to one thread while fitting: the matrices are small (a few hundred rows),
    and a multi-threaded BLAS on a busy machine spends 100x longer waiting than computing."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: without it BLAS keeps its default threads
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _matern52(X1: np.ndarray, X2: np.ndarray, inv_ls: np.ndarray) -> np.ndarray:
    # (n1, n2) Matérn-5/2 correlation of scaled points
    A = X1 * inv_ls
    B = X2 * inv_ls
    d2 = (A * A).sum(1)[:, None] + (B * B).sum(1)[None, :] - 2.0 * A @ B.T
    r = np.sqrt(np.maximum(d2, 0.0))
    return (1.0 + _SQRT5 * r + (5.0 / 3.0) * d2.clip(min=0.0)) * np.exp(-_SQRT5 * r)


class GPSurrogate:
    """A small exact Gaussian process (Matérn-5/2, ARD) used to read importances.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.random((40, 2)); y = np.sin(6 * X[:, 0])
    >>> gp = GPSurrogate().fit(X, y)
    >>> bool(np.abs(gp.predict(X) - y).max() < 0.05)
    True
    """

    def __init__(self, *, n_restarts: int = 3, max_iter: int = 200) -> None:
        self.n_restarts = n_restarts
        self.max_iter = max_iter

    def _nll(
        self, theta: np.ndarray, X: np.ndarray, y: np.ndarray, diffs2: np.ndarray
    ) -> tuple[float, np.ndarray]:
        from scipy import linalg

        n, d = X.shape
        log_ls, log_sf2, log_sn2 = theta[:d], theta[d], theta[d + 1]
        ls = np.exp(log_ls)
        sf2, sn2 = math.exp(log_sf2), math.exp(log_sn2)
        # (d, n, n) squared scaled differences summed into r^2
        s2 = np.tensordot(1.0 / ls**2, diffs2, axes=(0, 0))
        r = np.sqrt(s2)
        e = np.exp(-_SQRT5 * r)
        Kf = sf2 * (1.0 + _SQRT5 * r + (5.0 / 3.0) * s2) * e
        K = Kf + (sn2 + 1e-8) * np.eye(n)
        try:
            L = linalg.cholesky(K, lower=True)
        except linalg.LinAlgError:
            return 1e25, np.zeros_like(theta)
        alpha = linalg.cho_solve((L, True), y)
        nll = 0.5 * y @ alpha + np.log(np.diag(L)).sum() + 0.5 * n * math.log(2 * math.pi)
        Kinv, info = linalg.lapack.dpotri(L, lower=1)
        if info != 0:
            return 1e25, np.zeros_like(theta)
        Kinv = np.tril(Kinv) + np.tril(Kinv, -1).T
        W = np.outer(alpha, alpha) - Kinv  # d nll / dK = -W / 2
        grad = np.empty_like(theta)
        common = sf2 * (5.0 / 3.0) * (1.0 + _SQRT5 * r) * e
        for j in range(d):
            dK = common * diffs2[j] / ls[j] ** 2
            grad[j] = -0.5 * (W * dK).sum()
        grad[d] = -0.5 * (W * Kf).sum()
        grad[d + 1] = -0.5 * np.trace(W) * sn2
        # weak log-normal prior on lengthscales keeps flat directions from running off
        prior = 0.5 * ((log_ls - math.log(0.5)) ** 2).sum() / 1.5**2
        grad[:d] += (log_ls - math.log(0.5)) / 1.5**2
        return float(nll + prior), grad

    def fit(self, X: np.ndarray, y: np.ndarray) -> GPSurrogate:
        with _single_threaded_blas():
            return self._fit(X, y)

    def _fit(self, X: np.ndarray, y: np.ndarray) -> GPSurrogate:
        from scipy import linalg, optimize

        X = np.ascontiguousarray(X, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        self.y_mean = float(y.mean())
        self.y_std = float(y.std()) or 1.0
        ys = (y - self.y_mean) / self.y_std
        n, d = X.shape
        diffs2 = (X.T[:, :, None] - X.T[:, None, :]) ** 2  # (d, n, n)
        bounds = [(math.log(0.02), math.log(20.0))] * d + [
            (math.log(0.05), math.log(20.0)),
            (math.log(1e-6), math.log(1.0)),
        ]
        best = None
        starts = [0.5, 0.2, 1.0][: max(1, self.n_restarts)]
        for ls0 in starts:
            theta0 = np.array([math.log(ls0)] * d + [0.0, math.log(1e-2)])
            res = optimize.minimize(
                self._nll,
                theta0,
                args=(X, ys, diffs2),
                jac=True,
                method="L-BFGS-B",
                bounds=bounds,
                options={"maxiter": self.max_iter},
            )
            if best is None or res.fun < best.fun:
                best = res
        assert best is not None
        theta = best.x
        self.inv_ls = np.exp(-theta[:d])
        self.sf2 = math.exp(theta[d])
        self.sn2 = math.exp(theta[d + 1])
        K = self.sf2 * _matern52(X, X, self.inv_ls) + (self.sn2 + 1e-8) * np.eye(n)
        L = linalg.cholesky(K, lower=True)
        self.alpha = linalg.cho_solve((L, True), ys)
        self.X = X
        return self

    def predict(self, Xq: np.ndarray, chunk: int = 4096) -> np.ndarray:
        """Posterior mean at ``Xq`` (n, d), in the original units."""
        Xq = np.asarray(Xq, dtype=np.float64)
        out = np.empty(Xq.shape[0])
        for s in range(0, Xq.shape[0], chunk):
            Kq = self.sf2 * _matern52(Xq[s : s + chunk], self.X, self.inv_ls)
            out[s : s + chunk] = Kq @ self.alpha
        return out * self.y_std + self.y_mean


def _trials_of(obj: Any) -> tuple[list[Trial], SearchSpace | None]:
    if hasattr(obj, "trials") and hasattr(obj, "space"):
        return list(obj.trials), obj.space
    if isinstance(obj, Sequence) and all(isinstance(t, Trial) for t in obj):
        return list(obj), None
    raise KaizenTypeError(
        "param_importances needs an OptimizationResult, a HyperparameterOptimizer or a list "
        f"of Trial, got {type(obj).__name__}"
    )


def param_importances(
    trials: Any,
    *,
    space: SearchSpace | Mapping[str, Any] | None = None,
    n_base: int = 1024,
    n_grid: int = 32,
    max_trials: int = 400,
    seed: int = 0,
    total: bool = False,
) -> dict[str, float]:
    """First-order (or, with ``total``, total-order) Sobol indices of each parameter, from a
    GP surrogate of the trials.

    Parameters
    ----------
    trials:
        An :class:`OptimizationResult`, a :class:`HyperparameterOptimizer` or a list of
        :class:`Trial` (then ``space`` is required). Only completed trials are used.
    space:
        The search space (taken from a result or optimizer when omitted).
    n_base:
        Size of the scrambled Sobol base sample for the conditional means.
    n_grid:
        Stratified values per continuous parameter.
    max_trials:
        At most this many completed trials (the most recent) are fitted.
    seed:
        Seed of the base sample (the result is deterministic for a given seed).
    total:
        Return total-order indices (main effect plus every interaction) instead.

    Returns
    -------
    dict
        name -> index in [0, 1], sorted from most to least important.

    Examples
    --------
    >>> from kaizenml.optimize import Float, optimize_hyperparameters
    >>> space = {"a": Float(0, 1), "b": Float(0, 1)}
    >>> res = optimize_hyperparameters(space, lambda p: 4 * p["a"] + 0.1 * p["b"],
    ...                                strategy="random", max_trials=40, seed=0, pruner=None)
    >>> list(param_importances(res))
    ['a', 'b']
    """
    found, found_space = _trials_of(trials)
    if space is None:
        space = found_space
    if space is None:
        raise ValidationError("param_importances of a list of trials needs space=")
    space = space if isinstance(space, SearchSpace) else SearchSpace(space)
    n_base = check_int(n_base, "n_base", minimum=16)
    n_grid = check_int(n_grid, "n_grid", minimum=2)
    max_trials = check_int(max_trials, "max_trials", minimum=4)
    if not isinstance(total, bool):
        raise KaizenTypeError(f"total must be a bool, got {total!r}")
    first, total_order = _importances(found, space, n_base, n_grid, max_trials, seed)
    return total_order if total else first


def _importances(
    found: list[Trial],
    space: SearchSpace,
    n_base: int = 1024,
    n_grid: int = 32,
    max_trials: int = 400,
    seed: int = 0,
) -> tuple[dict[str, float], dict[str, float]]:
    """(first-order, total-order) indices from one GP fit, for checked arguments
    (:class:`OptimizationResult` caches both from a single call)."""
    done = [t for t in found if t.state == TrialState.COMPLETE and t.objective_value() is not None]
    done = done[-max_trials:]
    if len(done) < 4:
        raise ValidationError(
            f"param_importances needs at least 4 completed trials, got {len(done)}"
        )
    U = space.encode_many([t.params for t in done])
    y = np.array([t.value for t in done], dtype=np.float64)
    if float(np.ptp(y)) == 0.0:
        return {name: 0.0 for name in space.names}, {name: 0.0 for name in space.names}
    with _single_threaded_blas():
        return _sobol_indices(space, U, y, n_base, n_grid, seed)


def _sobol_indices(
    space: SearchSpace, U: np.ndarray, y: np.ndarray, n_base: int, n_grid: int, seed: int
) -> tuple[dict[str, float], dict[str, float]]:
    from scipy.stats import qmc

    gp = GPSurrogate()._fit(space.one_hot(U), y)

    base = qmc.Sobol(d=space.n_dims, scramble=True, seed=np.random.default_rng(seed)).random(n_base)
    base = space.snap(base)
    total_var = float(np.var(gp.predict(space.one_hot(base))))
    first: dict[str, float] = {}
    total: dict[str, float] = {}
    for j, name in enumerate(space.names):
        n_levels = int(space.n_levels[j])
        if n_levels and n_levels <= 64:
            grid = (np.arange(n_levels) + 0.5) / n_levels
        else:
            grid = (np.arange(n_grid) + 0.5) / n_grid
        X = np.repeat(base[None, :, :], grid.size, axis=0)  # (n_grid, n_base, n_dims)
        X[:, :, j] = grid[:, None]
        X = space.snap(X.reshape(-1, space.n_dims))
        pred = gp.predict(space.one_hot(X)).reshape(grid.size, n_base)
        # each row holds x_i fixed: the variance of the conditional means (first order);
        # each column holds the other parameters fixed: the variance along x_i (total order)
        for out, part in (
            (first, float(np.var(pred.mean(axis=1)))),
            (total, float(np.var(pred, axis=0).mean())),
        ):
            s = part / total_var if total_var > 0 else 0.0
            out[name] = min(max(s, 0.0), 1.0)
    return _by_importance(first), _by_importance(total)


def _by_importance(indices: dict[str, float]) -> dict[str, float]:
    return dict(sorted(indices.items(), key=lambda kv: -kv[1]))
