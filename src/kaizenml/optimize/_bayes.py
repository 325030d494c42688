"""Bayesian optimization: a Gaussian-process sampler (strategy ``"bayesian"``).

How a suggestion is made
------------------------
1. The first ``n_startup_trials`` trials are points of one scrambled Sobol sequence (point ``i``
   for trial ``i``), so concurrent workers cover the space evenly.
2. Then a Gaussian process (:mod:`kaizenml.optimize._gp`) is fitted to the completed trials on
   the unit-cube encoding, categoricals one-hot, values turned into a minimization and
   standardized (optionally warped). Kernel hyperparameters are re-fitted at every suggestion
   (past 100 observations, whenever the data has grown by 5 %), warm-started from the previous
   fit kept on the sampler instance; a sampler without that cache fits from scratch.
3. Trials still running are "believed": their outcome is fantasized as the posterior mean
   (kriging believer), but never better than the best value seen, and the model is conditioned
   on it, which collapses the uncertainty at those points, so several workers asking at once
   get different suggestions.
4. The acquisition (log expected improvement by default) is evaluated by the Cython kernel on
   scrambled Sobol candidates plus perturbations of the best trials; the most promising are
   polished by L-BFGS-B with the analytic gradient (categorical values fixed, integer and
   stepped values relaxed), snapped to valid values, each categorical of the best point is
   swept over its choices, and the best candidate that no trial has used yet is returned.

Failed trials are left out of the model (their objective is undefined) but their points are
never proposed again. Pruned trials enter the model with their last reported intermediate value
but never better than the median completed value: they were stopped for looking worse than
their peers, and an early-step value usually overstates how good a trial would have become, so
this keeps the model away from regions that were pruned without letting a short run pose as a
good one (``pruned_trials="exclude"`` ignores them instead).
"""

from __future__ import annotations

import contextlib
import logging
import math
from typing import Any

import numpy as np
import scipy.optimize
from scipy.stats import qmc

from .._exceptions import KaizenTypeError, ValidationError
from .._validation import check_choice
from ._gp import (
    ACQ_KINDS,
    GaussianProcess,
    default_theta,
    fit_hyperparameters,
    theta_bounds,
    transform_outputs,
)
from ._sampler import Sampler, SamplerContext, SpaceExhausted
from ._space import CATEGORICAL, SearchSpace
from ._trial import Trial, TrialState

__all__ = ["BayesianSampler"]

logger = logging.getLogger(__name__)

_WARPINGS = ("auto", "none", "power", "rank")
_PARALLEL = ("believer", "liar_best", "liar_mean", "liar_worst")
_PRUNED = ("last_value", "exclude")

# streams of rng_for(); distinct so the draws for one trial do not overlap
_STREAM_STARTUP, _STREAM_FIT, _STREAM_CANDIDATES, _STREAM_FALLBACK = 11, 12, 13, 14
# hyperparameters are re-fitted at every suggestion below this many observations, then
# whenever the observations have grown by this fraction since the last fit
_REFIT_ALWAYS_BELOW = 100
_REFIT_GROWTH = 0.05
# one-hot columns are scaled so that two different categories sit 0.5 apart (half the range
# of a numeric parameter): under the shared lengthscale prior the choices start out correlated,
# so what is learned about the numeric parameters under one choice carries over to the others
# (on the mixed benchmark space this halved the trials needed to find the best optimizer)
_ONE_HOT_SCALE = 0.5 / math.sqrt(2.0)


class _Layout:
    """Column bookkeeping between the ``d``-column encoding and its one-hot expansion."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        groups: list[int] = []
        expanded_col: list[int] = []  # first expanded column of each parameter
        for j in range(space.n_dims):
            expanded_col.append(len(groups))
            width = int(space.n_levels[j]) if space.kinds[j] == CATEGORICAL else 1
            groups.extend([j] * width)
        self.col_group = np.array(groups, dtype=np.int64)
        self.expanded_col = np.array(expanded_col, dtype=np.int64)
        self.free = np.flatnonzero(space.kinds != CATEGORICAL)  # parameters polished by L-BFGS-B
        self.free_expanded = self.expanded_col[self.free]
        self.categorical = np.flatnonzero(space.kinds == CATEGORICAL)
        self.onehot_cols = np.flatnonzero(np.isin(self.col_group, self.categorical))
        finite = bool(np.all(space.n_levels > 0))
        self.n_points = int(np.prod(space.n_levels.astype(object))) if finite else None

    def expand(self, X: np.ndarray) -> np.ndarray:
        if self.categorical.size == 0:
            return np.ascontiguousarray(X, dtype=np.float64)
        E = self.space.one_hot(X)
        E[:, self.onehot_cols] *= _ONE_HOT_SCALE
        return np.ascontiguousarray(E)


class BayesianSampler(Sampler):
    """Gaussian-process Bayesian optimization with a Cython acquisition function.

    Parameters
    ----------
    seed:
        Seed of every random draw; with a fixed seed a serial study is reproducible.
    n_startup_trials:
        Quasi-random (scrambled Sobol) trials before the model is used. Default
        ``min(max(5, n_params + 3), 20)``.
    acquisition:
        ``"logei"`` (log expected improvement, numerically stable), ``"ucb"`` (upper confidence
        bound with weight ``sqrt(ucb_beta)``) or ``"pi"`` (log probability of improvement).
    ucb_beta:
        Exploration weight of ``"ucb"``.
    output_warping:
        ``"auto"`` (power transform for a long tail of bad values), ``"none"``, ``"power"``
        (Box-Cox) or ``"rank"`` (normal scores); helps heavy-tailed objectives.
    parallel_strategy:
        How running trials are accounted for: ``"believer"`` (posterior mean, default) or a
        constant liar with the best, mean or worst observed value.
    pruned_trials:
        ``"last_value"`` (default; see the module notes) or ``"exclude"``.
    n_candidates:
        Raw Sobol candidates per suggestion; default ``min(2048, max(512, 256 * n_params))``,
        scaled down past 200 observations (each candidate then costs more).
    n_polish:
        Candidates polished by L-BFGS-B.
    n_hyper_starts:
        Starting points of the hyperparameter fit when no previous fit is cached.

    Examples
    --------
    >>> from kaizenml.optimize import Float, SearchSpace, SamplerContext
    >>> sampler = BayesianSampler(seed=0)
    >>> space = SearchSpace({"x": Float(-5.0, 5.0)})
    >>> params = sampler.suggest(SamplerContext(space, "minimize", [], 0))
    >>> -5.0 <= params["x"] <= 5.0
    True
    """

    name = "bayesian"

    def __init__(
        self,
        *,
        seed: int | None = None,
        n_startup_trials: int | None = None,
        acquisition: str = "logei",
        ucb_beta: float = 4.0,
        output_warping: str = "auto",
        parallel_strategy: str = "believer",
        pruned_trials: str = "last_value",
        n_candidates: int | None = None,
        n_polish: int = 4,
        n_hyper_starts: int = 3,
    ) -> None:
        super().__init__(seed=seed)
        if n_startup_trials is not None:
            if isinstance(n_startup_trials, bool) or not isinstance(n_startup_trials, int):
                raise KaizenTypeError(
                    f"n_startup_trials must be an int or None, got {n_startup_trials!r}"
                )
            if n_startup_trials < 1:
                raise ValidationError(
                    f"n_startup_trials must be >= 1, got {n_startup_trials}; the model needs "
                    "at least one observed trial"
                )
        check_choice(acquisition, "acquisition", tuple(ACQ_KINDS))
        if not isinstance(ucb_beta, (int, float)) or not (
            ucb_beta >= 0 and math.isfinite(ucb_beta)
        ):
            raise ValidationError(f"ucb_beta must be a finite number >= 0, got {ucb_beta!r}")
        check_choice(output_warping, "output_warping", _WARPINGS)
        check_choice(parallel_strategy, "parallel_strategy", _PARALLEL)
        check_choice(pruned_trials, "pruned_trials", _PRUNED)
        for count_name, count, low in (
            ("n_candidates", n_candidates, 16),
            ("n_polish", n_polish, 0),
            ("n_hyper_starts", n_hyper_starts, 1),
        ):
            if count is None and count_name == "n_candidates":
                continue
            if isinstance(count, bool) or not isinstance(count, int) or count < low:
                raise ValidationError(f"{count_name} must be an int >= {low}, got {count!r}")
        self.n_startup_trials = n_startup_trials
        self.acquisition = acquisition
        self.ucb_beta = float(ucb_beta)
        self.output_warping = output_warping
        self.parallel_strategy = parallel_strategy
        self.pruned_trials = pruned_trials
        self.n_candidates = n_candidates
        self.n_polish = n_polish
        self.n_hyper_starts = n_hyper_starts
        # last fitted hyperparameters, to warm-start the next fit (an optimization only)
        # (space, theta, number of observations it was fitted on)
        self._theta_cache: tuple[SearchSpace, np.ndarray, int] | None = None
        self._layout_cache: _Layout | None = None

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "seed": self.seed,
            "n_startup_trials": self.n_startup_trials,
            "acquisition": self.acquisition,
            "ucb_beta": self.ucb_beta,
            "output_warping": self.output_warping,
            "parallel_strategy": self.parallel_strategy,
            "pruned_trials": self.pruned_trials,
            "n_candidates": self.n_candidates,
            "n_polish": self.n_polish,
            "n_hyper_starts": self.n_hyper_starts,
        }

    # ------------------------------------------------------------------------------------
    def _layout(self, space: SearchSpace) -> _Layout:
        if self._layout_cache is None or self._layout_cache.space != space:
            self._layout_cache = _Layout(space)
        return self._layout_cache

    def startup_size(self, space: SearchSpace) -> int:
        if self.n_startup_trials is not None:
            return self.n_startup_trials
        return min(max(5, space.n_dims + 3), 20)

    def suggest(self, ctx: SamplerContext) -> dict[str, Any]:
        # the matrices here are small (hundreds of rows): threaded BLAS only adds contention,
        # which on a busy machine makes a suggestion many times slower
        with _single_threaded_blas():
            return self._suggest(ctx)

    def _suggest(self, ctx: SamplerContext) -> dict[str, Any]:
        space = ctx.space
        layout = self._layout(space)
        with_params = [t for t in ctx.trials if t.params]
        encoded_all = ctx.encoded(with_params)
        row_of = {t.number: i for i, t in enumerate(with_params)}
        # a trial's params are valid values, so their encoding is already the canonical key
        taken = {tuple(row) for row in np.round(encoded_all, 9).tolist()}
        if layout.n_points is not None and len(taken) >= layout.n_points:
            raise SpaceExhausted(f"all {layout.n_points} points of the search space were tried")

        model_trials, y = self._model_data(ctx)
        if ctx.trial_number < self.startup_size(space) or len(model_trials) < 2:
            return space.decode(self._startup_point(ctx, layout, taken))

        X = encoded_all[[row_of[t.number] for t in model_trials]]
        gp, best = self._fit(ctx, layout, X, y)
        running = ctx.running()
        if running:
            X_running = encoded_all[[row_of[t.number] for t in running if t.number in row_of]]
            gp = self._account_for_running(gp, layout, X_running)
        failed = [t for t in ctx.trials if t.state == TrialState.FAILED and t.params]
        feasibility = None
        if failed:
            X_failed = encoded_all[[row_of[t.number] for t in failed]]
            feasibility = _feasibility_model(gp, layout, X, X_failed)
        acq = _Acquisition(
            gp, layout, ACQ_KINDS[self.acquisition], best, self.ucb_beta, feasibility
        )
        n_model = X.shape[0]
        x = self._maximize_acquisition(ctx, layout, acq, X, gp.y[:n_model], taken)
        return space.decode(x)

    # data ---------------------------------------------------------------------------------
    def _model_data(self, ctx: SamplerContext) -> tuple[list[Trial], np.ndarray]:
        complete = [t for t in ctx.trials if t.objective_value() is not None]
        values = [ctx.sign * float(t.value) for t in complete]  # type: ignore[arg-type]
        trials = list(complete)
        if self.pruned_trials == "last_value":
            floor = float(np.median(values)) if values else -math.inf
            for t in ctx.trials:
                if t.state != TrialState.PRUNED or not t.intermediate_values:
                    continue
                v = t.intermediate_values[max(t.intermediate_values)]
                if v is None or not math.isfinite(v):
                    continue
                trials.append(t)
                values.append(max(ctx.sign * float(v), floor))
        return trials, np.asarray(values, dtype=np.float64)

    # startup ------------------------------------------------------------------------------
    def _startup_point(self, ctx: SamplerContext, layout: _Layout, taken: set) -> np.ndarray:
        space = ctx.space
        # one scrambled sequence for the whole study: trial i takes point i
        m = max(0, math.ceil(math.log2(ctx.trial_number + 1)))
        sobol = qmc.Sobol(space.n_dims, scramble=True, seed=self.rng_for(0, _STREAM_STARTUP))
        points = space.snap(sobol.random_base2(m) if m else sobol.random(1))
        x = points[min(ctx.trial_number, points.shape[0] - 1)]
        if _key(space, x) not in taken:
            return x
        return self._fallback_point(ctx, taken)

    def _fallback_point(self, ctx: SamplerContext, taken: set) -> np.ndarray:
        rng = self.rng_for(ctx.trial_number, _STREAM_FALLBACK)
        for _ in range(64):
            X = ctx.space.sample_uniform(rng, 64)
            for x in X:
                if _key(ctx.space, x) not in taken:
                    return x
        raise SpaceExhausted("no untried point found in the search space")

    # model --------------------------------------------------------------------------------
    def _fit(
        self, ctx: SamplerContext, layout: _Layout, X: np.ndarray, y: np.ndarray
    ) -> tuple[GaussianProcess, float]:
        n_params = ctx.space.n_dims
        X1 = layout.expand(X)
        ys = transform_outputs(y, self.output_warping)
        n = X1.shape[0]
        starts = []
        maxiter, ftol = 200, 2.2e-9
        cached = self._theta_cache
        if cached is not None and cached[0] == ctx.space and cached[1].shape[0] == n_params + 2:
            theta_prev, n_prev = cached[1], cached[2]
            if n >= _REFIT_ALWAYS_BELOW and n_prev <= n < n_prev * (1.0 + _REFIT_GROWTH):
                # with hundreds of points, a few more barely move the posterior of the
                # hyperparameters: keep them until the data has grown by 5 %
                return self._model(layout, X1, ys, theta_prev)
            starts.append(theta_prev)
            if n < 60:
                # few points: the posterior can move between modes, keep a fresh start too
                starts.append(default_theta(n_params))
            else:
                # one more observation moves the optimum little: a short warm run suffices
                maxiter, ftol = 50, 1e-6
        else:
            starts.append(default_theta(n_params))
            rng = self.rng_for(ctx.trial_number, _STREAM_FIT)
            lo = np.array([b[0] for b in theta_bounds(n_params)])
            hi = np.array([b[1] for b in theta_bounds(n_params)])
            for _ in range(self.n_hyper_starts - 1):
                t0 = default_theta(n_params) + rng.normal(0.0, 1.0, n_params + 2)
                starts.append(np.clip(t0, lo, hi))
        theta, value = fit_hyperparameters(
            X1, ys, layout.col_group, n_params, starts=starts, maxiter=maxiter, ftol=ftol
        )
        self._theta_cache = (ctx.space, theta, n)
        logger.debug(
            "GP fit on %d points: lengthscales %s, signal %.3g, noise %.3g, -log post %.4g",
            n,
            np.round(np.exp(theta[:n_params]), 4).tolist(),
            math.exp(theta[n_params]),
            math.exp(theta[n_params + 1]),
            value,
        )
        return self._model(layout, X1, ys, theta)

    def _model(
        self, layout: _Layout, X1: np.ndarray, ys: np.ndarray, theta: np.ndarray
    ) -> tuple[GaussianProcess, float]:
        gp = GaussianProcess(X1, ys, theta, layout.col_group)
        # plug-in incumbent: the best posterior mean at observed points (robust under noise)
        best = float(np.min(gp.mean(X1)))
        return gp, best

    def _account_for_running(
        self, gp: GaussianProcess, layout: _Layout, X_running: np.ndarray
    ) -> GaussianProcess:
        Xr = layout.expand(X_running)
        if self.parallel_strategy == "believer":
            # believe the model, except that a pending point is not believed to beat the best
            # value seen: otherwise its neighbourhood keeps promising improvement and the
            # workers crowd around one spot
            fantasy = np.maximum(gp.mean(Xr), float(gp.y.min()))
        elif self.parallel_strategy == "liar_best":
            fantasy = np.full(Xr.shape[0], float(gp.y.min()))
        elif self.parallel_strategy == "liar_mean":
            fantasy = np.full(Xr.shape[0], float(gp.y.mean()))
        else:
            fantasy = np.full(Xr.shape[0], float(gp.y.max()))
        return gp.condition_on(Xr, fantasy)

    # acquisition optimization ----------------------------------------------------------
    def _raw_candidates(
        self, ctx: SamplerContext, X_obs: np.ndarray, y_order: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        d = ctx.space.n_dims
        n_obs = X_obs.shape[0]
        n_raw = self.n_candidates or min(2048, max(512, 256 * d))
        if self.n_candidates is None and n_obs > 200:
            # the batch costs O(n_obs^2) per candidate; with many observations the local
            # candidates and the gradient polish carry more of the search
            n_raw = max(512, n_raw * 150 // n_obs)
        m = max(4, math.ceil(math.log2(n_raw)))
        sobol = qmc.Sobol(d, scramble=True, seed=rng).random_base2(m)[:n_raw]
        # local perturbations of the best observed points, on a random subset of dimensions
        n_best = min(5, X_obs.shape[0])
        n_each = 64
        centres = np.repeat(X_obs[y_order[:n_best]], n_each, axis=0)
        scales = rng.choice([0.005, 0.02, 0.08, 0.2], size=(centres.shape[0], 1))
        mask = rng.random(centres.shape) < min(1.0, 4.0 / d)
        mask[np.arange(centres.shape[0]), rng.integers(0, d, centres.shape[0])] = True
        local = centres + mask * rng.normal(0.0, 1.0, centres.shape) * scales
        cat = ctx.space.kinds == CATEGORICAL
        if cat.any():
            resample = mask & cat[None, :]
            local[resample] = rng.random(int(resample.sum()))
        local = np.clip(local, 0.0, 1.0)
        return ctx.space.snap(np.vstack([sobol, local]))

    def _maximize_acquisition(
        self,
        ctx: SamplerContext,
        layout: _Layout,
        acq: _Acquisition,
        X_obs: np.ndarray,
        y_obs: np.ndarray,
        taken: set,
    ) -> np.ndarray:
        space = ctx.space
        rng = self.rng_for(ctx.trial_number, _STREAM_CANDIDATES)
        y_order = np.argsort(y_obs, kind="stable")
        cands = self._raw_candidates(ctx, X_obs, y_order, rng)
        values, _ = acq(cands, grad=False)
        pool = [cands]
        pool_acq = [values]

        starts = np.argsort(-values, kind="stable")[: self.n_polish]
        if starts.size and layout.free.size:
            polished = space.snap(_polish(acq, layout, cands[starts]))
            pool.append(polished)
            pool_acq.append(acq(polished, grad=False)[0])

        # sweep each categorical of the current best over all its choices
        all_c = np.vstack(pool)
        all_a = np.concatenate(pool_acq)
        if layout.categorical.size:
            top = all_c[int(np.argmax(all_a))]
            sweep = []
            for j in layout.categorical:
                n = int(space.n_levels[j])
                block = np.repeat(top[None, :], n, axis=0)
                block[:, j] = (np.arange(n) + 0.5) / n
                sweep.append(block)
            sweep_x = np.vstack(sweep)
            all_c = np.vstack([all_c, sweep_x])
            all_a = np.concatenate([all_a, acq(sweep_x, grad=False)[0]])

        for i in np.argsort(-all_a, kind="stable"):
            x = all_c[i]
            if _key(space, x) not in taken:
                return x
        return self._fallback_point(ctx, taken)


class _Acquisition:
    """The acquisition on unit-cube points, times the estimated chance of not failing.

    With failed trials, a second GP (same kernel hyperparameters, zero prior mean) regresses
    the failure indicator of every finished point; ``log(1 - p_fail)`` is added to the
    acquisition (log EI and log PI are log-scale, so this multiplies EI/PI by the chance of
    success), which steers suggestions away from regions that fail without putting made-up
    objective values into the model.
    """

    def __init__(
        self,
        gp: GaussianProcess,
        layout: _Layout,
        kind: int,
        best: float,
        beta: float,
        feasibility: GaussianProcess | None,
    ) -> None:
        self.gp, self.layout, self.kind, self.best, self.beta = gp, layout, kind, best, beta
        self.feasibility = feasibility

    def expanded(self, E: np.ndarray, grad: bool) -> tuple[np.ndarray, np.ndarray]:
        """Values (m,) and gradients (m, D) at one-hot expanded points."""
        acq, _, _, g = self.gp.acquisition(E, self.kind, self.best, self.beta, grad=grad)
        if self.feasibility is not None:
            # UCB with beta = 0 returns -mean and its gradient
            neg_p, _, _, neg_dp = self.feasibility.acquisition(
                E, ACQ_KINDS["ucb"], 0.0, 0.0, grad=grad
            )
            ok = np.clip(1.0 + neg_p, _MIN_FEASIBILITY, 1.0)
            acq = acq + np.log(ok)
            if grad:
                inside = (1.0 + neg_p > _MIN_FEASIBILITY) & (1.0 + neg_p < 1.0)
                g = g + np.where(inside, 1.0 / ok, 0.0)[:, None] * neg_dp
        return acq, g

    def __call__(self, X: np.ndarray, grad: bool) -> tuple[np.ndarray, np.ndarray]:
        return self.expanded(self.layout.expand(X), grad)


_MIN_FEASIBILITY = 1e-3


def _feasibility_model(
    gp: GaussianProcess, layout: _Layout, X_ok: np.ndarray, X_failed: np.ndarray
) -> GaussianProcess:
    theta = gp.theta.copy()
    n_params = gp.n_params
    theta[n_params] = 0.0  # unit signal variance for a 0/1 target
    theta[n_params + 1] = math.log(0.05)  # smooth: one failure is evidence, not certainty
    X = np.vstack([layout.expand(X_ok), layout.expand(X_failed)])
    y = np.concatenate([np.zeros(X_ok.shape[0]), np.ones(X_failed.shape[0])])
    return GaussianProcess(X, y, theta, gp.col_group)


def _polish(acq: _Acquisition, layout: _Layout, X0: np.ndarray) -> np.ndarray:
    """L-BFGS-B on the sum of the starts' acquisitions (they are independent)."""
    k = X0.shape[0]
    free, free_e = layout.free, layout.free_expanded
    E = layout.expand(X0).copy()  # categorical blocks stay as they are

    def fun(z: np.ndarray) -> tuple[float, np.ndarray]:
        E[:, free_e] = z.reshape(k, free.size)
        values, g = acq.expanded(E, grad=True)
        return -float(np.sum(values)), -np.ascontiguousarray(g[:, free_e]).ravel()

    z0 = X0[:, free].ravel()
    res = scipy.optimize.minimize(
        fun,
        z0,
        jac=True,
        method="L-BFGS-B",
        bounds=[(0.0, 1.0)] * z0.size,
        options={"maxiter": 100},
    )
    out = X0.copy()
    z = res.x if np.all(np.isfinite(res.x)) else z0
    out[:, free] = np.clip(z.reshape(k, free.size), 0.0, 1.0)
    return out


_BLAS_CONTROLLER: Any = None


def _single_threaded_blas() -> Any:
    global _BLAS_CONTROLLER
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # optional: without it BLAS keeps its own thread setting
        return contextlib.nullcontext()
    if _BLAS_CONTROLLER is None:
        _BLAS_CONTROLLER = ThreadpoolController()
    return _BLAS_CONTROLLER.limit(limits=1, user_api="blas")


def _key(space: SearchSpace, x: np.ndarray) -> tuple[float, ...]:
    """Identity of a point: the encoding of its decoded parameters, rounded."""
    return tuple(np.round(space.encode(space.decode(x)), 9).tolist())
