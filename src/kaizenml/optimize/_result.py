"""The outcome of a study: best trial, counts, convergence, importance and recommendations."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._exceptions import StateError
from ._space import CONTINUOUS, Categorical, SearchSpace
from ._trial import Trial, TrialState, completion_key, direction_sign

__all__ = ["OptimizationResult"]

logger = logging.getLogger("kaizenml.optimize")

# a best value this close to a bound (in the unit encoding) suggests the range is too narrow
_EDGE = 0.05
# a parameter explaining less than this share of the variance alone is a candidate to fix
_LOW_IMPORTANCE = 0.01
_MIN_TRIALS_FOR_IMPORTANCE = 20


@dataclass
class OptimizationResult:
    """What :func:`optimize_hyperparameters` returns (also :meth:`HyperparameterOptimizer.result`).

    Attributes
    ----------
    study_name, direction, metric, strategy:
        Identity of the study.
    space:
        The :class:`SearchSpace`.
    trials:
        Every trial, ordered by number.
    elapsed:
        Seconds spent in the call that produced the result.
    interrupted:
        Whether the run was stopped by ``KeyboardInterrupt``.

    Examples
    --------
    >>> from kaizenml.optimize import Float, optimize_hyperparameters
    >>> res = optimize_hyperparameters({"x": Float(0.0, 1.0)}, lambda p: p["x"],
    ...                                strategy="random", max_trials=10, seed=0)
    >>> res.n_complete, res.best_value == min(t.value for t in res.trials)
    (10, True)
    """

    study_name: str
    direction: str
    metric: str | None
    strategy: str
    space: SearchSpace
    trials: list[Trial]
    elapsed: float = 0.0
    interrupted: bool = False
    _importance: dict[str, float] | None = field(default=None, repr=False)
    _total_importance: dict[str, float] | None = field(default=None, repr=False)

    @classmethod
    def from_optimizer(cls, opt: Any, *, elapsed: float | None = None) -> OptimizationResult:
        return cls(
            study_name=opt.study_name,
            direction=opt.direction,
            metric=opt.metric,
            strategy=opt.sampler.name,
            space=opt.space,
            trials=list(opt.trials),
            elapsed=opt.elapsed if elapsed is None else float(elapsed),
        )

    # best ----------------------------------------------------------------------------------
    @property
    def best_trial(self) -> Trial:
        """The completed trial with the best value (raises StateError if none completed)."""
        sign = direction_sign(self.direction)
        done = self.completed_trials
        if not done:
            raise StateError(
                f"study {self.study_name!r} has no completed trial ({self.n_failed} failed, "
                f"{self.n_pruned} pruned); look at trials[i].error for the failures"
            )
        return min(done, key=lambda t: (sign * float(t.value), t.number))  # type: ignore[arg-type]

    @property
    def best_params(self) -> dict[str, Any]:
        return dict(self.best_trial.params)

    @property
    def best_value(self) -> float:
        return float(self.best_trial.value)  # type: ignore[arg-type]

    # counts --------------------------------------------------------------------------------
    @property
    def completed_trials(self) -> list[Trial]:
        return [t for t in self.trials if t.objective_value() is not None]

    def _count(self, state: TrialState) -> int:
        return sum(1 for t in self.trials if t.state == state)

    @property
    def n_trials(self) -> int:
        return len(self.trials)

    @property
    def n_complete(self) -> int:
        return self._count(TrialState.COMPLETE)

    @property
    def n_pruned(self) -> int:
        return self._count(TrialState.PRUNED)

    @property
    def n_failed(self) -> int:
        return self._count(TrialState.FAILED)

    # analysis ------------------------------------------------------------------------------
    @property
    def importance(self) -> dict[str, float]:
        """First-order Sobol indices per parameter (see :func:`param_importances`); empty
        with fewer than 4 completed trials. Computed on first access."""
        return self._importances()[0]

    @property
    def total_importance(self) -> dict[str, float]:
        """Total-order Sobol indices per parameter (main effect plus interactions; see
        :func:`param_importances` with ``total=True``); empty with fewer than 4 completed
        trials. Computed on first access."""
        return self._importances()[1]

    def _importances(self) -> tuple[dict[str, float], dict[str, float]]:
        # both orders come from the same GP fit and predictions: compute them together once
        if self._importance is None or self._total_importance is None:
            from ._importance import _importances

            try:
                self._importance, self._total_importance = _importances(
                    list(self.trials), self.space
                )
            except ValueError as exc:
                logger.debug("no importance: %s", exc)
                self._importance, self._total_importance = {}, {}
        return dict(self._importance), dict(self._total_importance)

    @property
    def convergence(self) -> dict[str, list[Any]]:
        """Per completed trial, in trial-number order: its number, value, best so far and
        running mean of the values.

        The order is the trial numbers' (the order in which trials were asked), as in Optuna's
        optimization history, so the best-so-far curve never gets worse from one point to the
        next even when parallel workers finish trials out of order. It does not say when a
        value became known: a trial finishing late changes the curve from its number on. The
        rules about what happened last (:meth:`recommendations`' ``no_improvement``, early
        stopping) count trials in the order they finished instead.
        """
        sign = direction_sign(self.direction)
        numbers, values, best, mean = [], [], [], []
        b = math.inf
        total = 0.0
        for i, t in enumerate(self.completed_trials):
            v = float(t.value)  # type: ignore[arg-type]
            b = min(b, sign * v)
            total += v
            numbers.append(t.number)
            values.append(v)
            best.append(sign * b)
            mean.append(total / (i + 1))
        return {"number": numbers, "value": values, "best_so_far": best, "running_mean": mean}

    def recommendations(self, *, last_n: int | None = None) -> list[dict[str, Any]]:
        """Advice computed from the trials, each ``{"kind", "parameter", "message"}``.

        * ``widen_range``: the best value sits within 5% of a bound of a numeric range (in the
          unit encoding), or on the lowest or highest level of an ``Int`` or stepped ``Float``
          with three levels or more;
        * ``fix_parameter``: a parameter takes part in under 1% of the variance, alone or
          through interactions (its total-order index; needs 20 completed trials);
        * ``no_improvement``: the last ``last_n`` trials to complete (default: max(10, a
          fifth), in the order they finished, not by number) did not improve the best value;
        * ``many_failures`` / ``many_pruned``: over 20% failed, or over 60% pruned.
        """
        out: list[dict[str, Any]] = []
        done = self.completed_trials
        if done:
            best = self.best_trial
            u = self.space.encode(best.params)
            for j, name in enumerate(self.space.names):
                p = self.space[name]
                if isinstance(p, Categorical) or (
                    self.space.kinds[j] != CONTINUOUS and self.space.n_levels[j] < 3
                ):
                    continue
                value = best.params[name]
                at_low, at_high = u[j] <= _EDGE, u[j] >= 1.0 - _EDGE
                if self.space.kinds[j] != CONTINUOUS:
                    # a few levels put even the end bins' centres far from the unit edges
                    level = self.space._level_index(p, value)
                    at_low = at_low or level == 0
                    at_high = at_high or level == self.space.n_levels[j] - 1
                side = None
                if at_low:
                    side, bound = "low", p.low
                elif at_high:
                    side, bound = "high", p.high
                if side is not None:
                    direction = "lower" if side == "low" else "raise"
                    out.append(
                        {
                            "kind": "widen_range",
                            "parameter": name,
                            "message": (
                                f"the best {name}={value!r} is at the {side} edge of its range "
                                f"[{p.low}, {p.high}]; {direction} the {side} bound "
                                f"{bound!r} and search again"
                            ),
                        }
                    )
        if len(done) >= _MIN_TRIALS_FOR_IMPORTANCE and self.space.n_dims > 1:
            for name, s in self.total_importance.items():
                if s < _LOW_IMPORTANCE:
                    out.append(
                        {
                            "kind": "fix_parameter",
                            "parameter": name,
                            "message": (
                                f"{name} takes part in {100 * s:.1f}% of the variance of the "
                                "objective (alone and through interactions); fix it at its best "
                                "value to search the other parameters faster"
                            ),
                        }
                    )
        if done:
            n = last_n if last_n is not None else max(10, len(done) // 5)
            if len(done) > n:
                best_number = self.best_trial.number
                # with parallel workers the best trial may finish after higher numbers: what
                # matters is whether it finished before the last n did
                recent = sorted(done, key=completion_key)[-n:]
                if all(t.number != best_number for t in recent):
                    out.append(
                        {
                            "kind": "no_improvement",
                            "parameter": None,
                            "message": (
                                f"the last {n} completed trials did not improve on trial "
                                f"{best_number}; the search has converged (stop, or narrow the "
                                "space around the best point)"
                            ),
                        }
                    )
        finished = [t for t in self.trials if t.state.is_finished]
        if finished:
            f_share = self.n_failed / len(finished)
            p_share = self.n_pruned / len(finished)
            if f_share > 0.2:
                out.append(
                    {
                        "kind": "many_failures",
                        "parameter": None,
                        "message": (
                            f"{self.n_failed} of {len(finished)} trials failed; read "
                            "trials[i].error and exclude the failing region from the space"
                        ),
                    }
                )
            if p_share > 0.6:
                out.append(
                    {
                        "kind": "many_pruned",
                        "parameter": None,
                        "message": (
                            f"{self.n_pruned} of {len(finished)} trials were pruned; if good "
                            "trials start slowly, raise n_warmup_steps or n_startup_trials"
                        ),
                    }
                )
        return out

    # export --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-able summary with every trial."""
        has_best = bool(self.completed_trials)
        return {
            "study_name": self.study_name,
            "direction": self.direction,
            "metric": self.metric,
            "strategy": self.strategy,
            "space": self.space.to_dict(),
            "best_trial": self.best_trial.to_dict() if has_best else None,
            "best_params": self.best_params if has_best else None,
            "best_value": self.best_value if has_best else None,
            "n_trials": self.n_trials,
            "n_complete": self.n_complete,
            "n_pruned": self.n_pruned,
            "n_failed": self.n_failed,
            "elapsed": self.elapsed,
            "interrupted": self.interrupted,
            "importance": self.importance,
            "convergence": self.convergence,
            "recommendations": self.recommendations(),
            "trials": [t.to_dict() for t in self.trials],
        }

    def to_json(self, **kwargs: Any) -> str:
        """:meth:`to_dict` as JSON text (NaN written as null)."""
        return json.dumps(_nan_to_none(self.to_dict()), **kwargs)

    def trials_dataframe(self) -> Any:
        """One row per trial: number, state, value, ``params_*``, ``metrics_*``, times, error
        (needs pandas)."""
        try:
            import pandas as pd
        except ImportError as exc:  # pragma: no cover - pandas is installed in tests
            raise ImportError("trials_dataframe() needs pandas: pip install pandas") from exc
        rows = []
        for t in self.trials:
            row: dict[str, Any] = {
                "number": t.number,
                "state": t.state.value,
                "value": t.value,
            }
            row.update({f"params_{k}": v for k, v in t.params.items()})
            row.update({f"metrics_{k}": v for k, v in t.metrics.items()})
            row.update(
                {
                    "datetime_start": t.datetime_start,
                    "datetime_complete": t.datetime_complete,
                    "duration": t.duration,
                    "error": t.error,
                }
            )
            rows.append(row)
        return pd.DataFrame(rows)

    def __repr__(self) -> str:
        best = f", best_value={self.best_value:.6g}" if self.completed_trials else ""
        return (
            f"OptimizationResult(study_name={self.study_name!r}, n_trials={self.n_trials}, "
            f"complete={self.n_complete}, pruned={self.n_pruned}, failed={self.n_failed}{best})"
        )


def _nan_to_none(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    if isinstance(obj, np.generic):
        return _nan_to_none(obj.item())
    return obj
