"""Pruners: decide from intermediate values whether a running trial should stop early.

A pruner sees the study's trials (with their intermediate values) and the trial that just
reported, and answers yes or no; it keeps no state of its own, so it works the same in the
driving process, in a worker process reading SQL storage, or on a snapshot of the study.
Values are compared after turning every study into a minimization, so each pruner is correct
for both directions.

* :class:`MedianPruner` / :class:`PercentilePruner`: at step ``s``, prune when the trial's best
  value so far is worse than the given percentile of the values that completed trials reported
  at the same step ``s``.
* :class:`SuccessiveHalvingPruner` (asynchronous successive halving, ASHA): rung ``k`` sits at
  step ``min_resource * reduction_factor ** (min_early_stopping_rate + k)``. When a trial first
  reports at or past a rung, its value there is compared with the rung values of every other
  trial of the study (finished or not); it continues only if it is in the best
  ``1 / reduction_factor`` of them (the first trials to reach a rung always continue).
* :class:`NopPruner`: never prunes (an objective may still raise :class:`~kaizenml.TrialPruned`).
"""

from __future__ import annotations

import abc
import inspect
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._exceptions import KaizenTypeError, ValidationError
from .._validation import check_float, check_int
from ._trial import Trial, TrialState, direction_sign

__all__ = [
    "MedianPruner",
    "NopPruner",
    "PercentilePruner",
    "Pruner",
    "SuccessiveHalvingPruner",
    "make_pruner",
]


class Pruner(abc.ABC):
    """Base class: :meth:`prune` answers whether ``trial`` should stop now."""

    name = "base"

    @abc.abstractmethod
    def prune(self, trials: Sequence[Trial], trial: Trial, direction: str) -> bool:
        """Whether ``trial`` should stop now, given every trial of the study."""

    def config(self) -> dict[str, Any]:
        return {"name": self.name}


class NopPruner(Pruner):
    """A pruner that never prunes.

    Examples
    --------
    >>> NopPruner().prune([], None, "minimize")
    False
    """

    name = "none"

    def prune(self, trials: Sequence[Trial], trial: Trial, direction: str) -> bool:
        return False


def _step_checks(trial: Trial, n_warmup_steps: int, interval_steps: int) -> int | None:
    """The step to check now, or None: past the warm-up, and the first report at or after an
    interval boundary (``n_warmup_steps + k * interval_steps``), as Optuna decides it, so a
    trial that reports on steps other than the exact multiples is still checked."""
    step = trial.last_step
    if step is None or step < n_warmup_steps:
        return None
    boundary = (step - n_warmup_steps) // interval_steps * interval_steps + n_warmup_steps
    before = max((s for s in trial.intermediate_values if s != step), default=-1)
    if before >= boundary:  # an earlier report already passed this boundary
        return None
    return step


class PercentilePruner(Pruner):
    """Prune a trial whose best value so far is worse than a percentile of its peers.

    Parameters
    ----------
    percentile:
        In ``[0, 100]``: 50 is the median; 25 keeps only trials in the best quarter.
    n_startup_trials:
        No pruning until this many trials have completed.
    n_warmup_steps:
        Steps below this are never pruned.
    interval_steps:
        Check at the first report at or after each ``n_warmup_steps + k * interval_steps``
        (Optuna's rule), so a trial reporting on other steps is still checked once per interval.
    n_min_trials:
        Completed trials that must have reported the same step before comparing (a NaN
        report counts, as in Optuna; the percentile is taken over the finite ones).

    Examples
    --------
    >>> from kaizenml.optimize import Trial, TrialState
    >>> done = [Trial(i, {}, TrialState.COMPLETE, 0.0, intermediate_values={0: float(i)})
    ...         for i in range(5)]
    >>> bad = Trial(5, {}, TrialState.RUNNING, intermediate_values={0: 3.5})
    >>> PercentilePruner(50.0, n_startup_trials=5).prune(done, bad, "minimize")
    True
    """

    name = "percentile"

    def __init__(
        self,
        percentile: float = 50.0,
        *,
        n_startup_trials: int = 5,
        n_warmup_steps: int = 0,
        interval_steps: int = 1,
        n_min_trials: int = 1,
    ) -> None:
        self.percentile = check_float(percentile, "percentile", minimum=0.0, maximum=100.0)
        self.n_startup_trials = check_int(n_startup_trials, "n_startup_trials", minimum=0)
        self.n_warmup_steps = check_int(n_warmup_steps, "n_warmup_steps", minimum=0)
        self.interval_steps = check_int(interval_steps, "interval_steps", minimum=1)
        self.n_min_trials = check_int(n_min_trials, "n_min_trials", minimum=1)

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "percentile": self.percentile,
            "n_startup_trials": self.n_startup_trials,
            "n_warmup_steps": self.n_warmup_steps,
            "interval_steps": self.interval_steps,
            "n_min_trials": self.n_min_trials,
        }

    def prune(self, trials: Sequence[Trial], trial: Trial, direction: str) -> bool:
        step = _step_checks(trial, self.n_warmup_steps, self.interval_steps)
        if step is None:
            return False
        completed = [
            t for t in trials if t.state == TrialState.COMPLETE and t.number != trial.number
        ]
        if not completed or len(completed) < self.n_startup_trials:
            return False  # nothing finished yet to compare with, as in Optuna
        sign = direction_sign(direction)
        own = [sign * v for s, v in trial.intermediate_values.items() if s <= step]
        finite = [v for v in own if not math.isnan(v)]
        if not finite:
            return True  # nothing but NaN: a diverged run cannot recover a comparable value
        best = min(finite)  # a NaN among the values (a metric undefined early) is skipped
        reported = [
            t.intermediate_values[step]
            for t in trials
            if t.number != trial.number
            and t.state == TrialState.COMPLETE
            and step in t.intermediate_values
        ]
        if len(reported) < self.n_min_trials:  # a NaN report counts, as in Optuna
            return False
        peers = [sign * v for v in reported if not math.isnan(v)]
        if not peers:
            return False  # no peer value to compare with at this step
        return bool(best > np.percentile(np.asarray(peers, dtype=np.float64), self.percentile))


class MedianPruner(PercentilePruner):
    """:class:`PercentilePruner` at the 50th percentile.

    Examples
    --------
    >>> MedianPruner(n_startup_trials=5, n_warmup_steps=10).percentile
    50.0
    """

    name = "median"

    def __init__(
        self,
        *,
        n_startup_trials: int = 5,
        n_warmup_steps: int = 0,
        interval_steps: int = 1,
        n_min_trials: int = 1,
    ) -> None:
        super().__init__(
            50.0,
            n_startup_trials=n_startup_trials,
            n_warmup_steps=n_warmup_steps,
            interval_steps=interval_steps,
            n_min_trials=n_min_trials,
        )

    def config(self) -> dict[str, Any]:
        cfg = super().config()
        cfg.pop("percentile")
        return cfg


class SuccessiveHalvingPruner(Pruner):
    """Asynchronous successive halving (ASHA, Li et al. 2020).

    Parameters
    ----------
    min_resource:
        Step of the first rung.
    reduction_factor:
        Each rung keeps the best ``1 / reduction_factor`` of the trials that reached it.
    min_early_stopping_rate:
        Skips the first rungs: rung ``k`` is at ``min_resource * reduction_factor **
        (min_early_stopping_rate + k)``.

    Examples
    --------
    >>> SuccessiveHalvingPruner(min_resource=1, reduction_factor=3).rung_steps(30)
    [1, 3, 9, 27]
    """

    name = "asha"

    def __init__(
        self, *, min_resource: int = 1, reduction_factor: int = 3, min_early_stopping_rate: int = 0
    ) -> None:
        self.min_resource = check_int(min_resource, "min_resource", minimum=1)
        self.reduction_factor = check_int(reduction_factor, "reduction_factor", minimum=2)
        self.min_early_stopping_rate = check_int(
            min_early_stopping_rate, "min_early_stopping_rate", minimum=0
        )

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "min_resource": self.min_resource,
            "reduction_factor": self.reduction_factor,
            "min_early_stopping_rate": self.min_early_stopping_rate,
        }

    def rung_steps(self, up_to: int) -> list[int]:
        """Steps of the rungs up to ``up_to`` (included)."""
        out: list[int] = []
        k = 0
        while True:
            s = self.min_resource * self.reduction_factor ** (self.min_early_stopping_rate + k)
            if s > up_to:
                return out
            out.append(s)
            k += 1

    @staticmethod
    def _rung_value(trial: Trial, rung_step: int) -> float | None:
        # the value of the first report at or after the rung
        steps = [s for s in trial.intermediate_values if s >= rung_step]
        return trial.intermediate_values[min(steps)] if steps else None

    def prune(self, trials: Sequence[Trial], trial: Trial, direction: str) -> bool:
        step = trial.last_step
        if step is None:
            return False
        previous = [s for s in trial.intermediate_values if s < step]
        prev_step = max(previous) if previous else -1
        sign = direction_sign(direction)
        for rung_step in self.rung_steps(step):
            if rung_step <= prev_step:
                continue  # this rung was decided at an earlier report
            value = sign * trial.intermediate_values[step]
            if math.isnan(value):
                return True
            competing = [value]
            for t in trials:
                if t.number == trial.number:
                    continue
                v = self._rung_value(t, rung_step)
                if v is not None and not math.isnan(v):
                    competing.append(sign * v)
            competing.sort()
            keep = max(len(competing) // self.reduction_factor, 1)
            if value > competing[keep - 1]:
                return True
        return False


_PRUNERS = {
    "median": MedianPruner,
    "percentile": PercentilePruner,
    "asha": SuccessiveHalvingPruner,
    "successive_halving": SuccessiveHalvingPruner,
    "none": NopPruner,
}


def make_pruner(pruner: str | Pruner | None, **options: Any) -> Pruner:
    """Build a pruner from a name (``"median"``, ``"percentile"``, ``"asha"``, ``"none"``),
    ``None`` (no pruning) or an instance.

    Examples
    --------
    >>> make_pruner("median", n_warmup_steps=5).n_warmup_steps
    5
    """
    if pruner is None:
        pruner = "none"
    if isinstance(pruner, Pruner):
        if options:
            raise ValidationError(
                "pruner_options cannot be combined with a Pruner instance; pass them to its "
                "constructor"
            )
        return pruner
    if not isinstance(pruner, str):
        raise KaizenTypeError(
            f"pruner must be a name {sorted(_PRUNERS)}, None or a Pruner, got {pruner!r}"
        )
    if pruner not in _PRUNERS:
        raise ValidationError(
            f"pruner={pruner!r} is not supported; choose one of {sorted(_PRUNERS)} or pass a "
            "Pruner instance"
        )
    cls = _PRUNERS[pruner]
    accepted = set(inspect.signature(cls).parameters)
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ValidationError(
            f"pruner={pruner!r} does not accept the options {unknown}; it takes "
            f"{sorted(accepted)}"
        )
    # a bad value raises its own error, naming the option
    return cls(**options)  # type: ignore[arg-type]
