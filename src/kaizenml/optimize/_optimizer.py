"""The ask/tell optimizer: a study, its sampler, its pruner and its stopping rules.

The sampler lives in the process that asks. Before every suggestion it receives the whole study
from storage (finished trials and the ones still running, including those of other processes),
so parallel workers get different suggestions and a resumed study continues where it stopped.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import threading
import time
import traceback
import uuid
import weakref
from collections.abc import Mapping
from typing import Any

import numpy as np

from .._exceptions import KaizenTypeError, StateError, ValidationError
from .._validation import check_choice, check_float, check_int, validate_name
from ._pruners import Pruner, make_pruner
from ._sampler import Sampler, SamplerContext, SpaceExhausted, make_sampler
from ._space import SearchSpace
from ._storage import StudyStorage, make_storage, new_owner_token
from ._trial import Trial, TrialState, completion_key, direction_sign

__all__ = ["HyperparameterOptimizer", "as_real", "check_user_attr", "resolve_value"]

logger = logging.getLogger("kaizenml.optimize")

_DIRECTIONS = ("minimize", "maximize")


def as_real(value: Any) -> float | None:
    """``float(value)`` for one real number, ``None`` for anything else.

    Accepted: Python and numpy real numbers, 0-d numeric arrays and other objects that convert
    with ``float()`` (``Decimal``, a framework's one-element tensor). Refused: bools, strings
    (``"1.5"`` is text, not a result), complex numbers and arrays with more than zero dimensions,
    even of size one, because an objective returning a vector is almost always a bug.
    """
    if isinstance(value, (bool, np.bool_, str, bytes, complex, np.complexfloating)):
        return None
    if isinstance(value, np.ndarray):
        if value.ndim != 0 or value.dtype.kind not in "iuf":
            return None
        return float(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if not hasattr(value, "__float__"):
        return None
    try:
        return float(value)
    except (TypeError, ValueError, ArithmeticError, RuntimeError):
        return None


def describe_value(value: Any) -> str:
    """A short description of a rejected result for error messages."""
    if isinstance(value, np.ndarray):
        return f"array of shape {value.shape}"
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{type(value).__name__} {text}"


def check_user_attr(key: Any, value: Any) -> None:
    """Refuse a user attribute that storage could not keep: a key that is not a non-empty str,
    or a value that is not JSON-able."""
    if not isinstance(key, str) or not key:
        raise KaizenTypeError(f"key must be a non-empty str, got {key!r}")
    try:
        json.dumps(value, allow_nan=True)
    except (TypeError, ValueError) as exc:  # ValueError: a container that contains itself
        raise KaizenTypeError(
            f"user attribute {key!r}: value must be JSON-able (str, int, float, bool, None, or "
            f"lists and dicts of them), got {describe_value(value)} ({exc})"
        ) from None


def resolve_value(
    metrics: Any, metric: str | None, trial_number: int
) -> tuple[float, dict[str, float]]:
    """Turn what an objective returned into ``(objective value, metrics dict)``.

    Raises :class:`~kaizenml.ValidationError` or :class:`~kaizenml.KaizenTypeError` for
    unusable results (each number must be one real value); a non-finite value is returned as it
    is (the caller fails the trial).
    """
    if isinstance(metrics, Mapping):
        if not metrics:
            raise ValidationError(f"trial {trial_number}: the metrics dict is empty")
        out: dict[str, float] = {}
        for k, v in metrics.items():
            if not isinstance(k, str):
                raise KaizenTypeError(f"trial {trial_number}: metric names must be str, got {k!r}")
            real = as_real(v)
            if real is None:
                raise KaizenTypeError(
                    f"trial {trial_number}: metric {k!r} must be a real number, got "
                    f"{describe_value(v)}"
                )
            out[k] = real
        if metric is None:
            if len(out) != 1:
                raise ValidationError(
                    f"trial {trial_number} returned several metrics {sorted(out)}; pass "
                    "metric=<name> to choose the one to optimize"
                )
            return next(iter(out.values())), out
        if metric not in out:
            raise ValidationError(
                f"trial {trial_number}: metric={metric!r} is not among the returned metrics "
                f"{sorted(out)}"
            )
        return out[metric], out
    value = as_real(metrics)
    if value is None:
        raise KaizenTypeError(
            f"trial {trial_number}: the objective must return a real number or a dict of "
            f"metrics, got {describe_value(metrics)}"
        )
    return value, {metric or "value": value}


def _heartbeat_loop(ref: weakref.ReferenceType, stop: threading.Event, interval: float) -> None:
    while not stop.wait(interval):
        opt = ref()
        if opt is None:
            return
        try:
            numbers = list(opt._owned.copy())  # copy() is atomic; iterating a live set is not
            if numbers:
                opt._storage.heartbeat(opt._study.study_id, numbers)
        except Exception:  # a failed beat is retried at the next interval
            logger.debug("heartbeat failed", exc_info=True)
        del opt


class HyperparameterOptimizer:
    """A study driven by ask and tell.

    Parameters
    ----------
    space:
        A :class:`SearchSpace` or a dict of name -> parameter (objects or plain dicts).
    strategy:
        ``"bayesian"``, ``"random"``, ``"grid"``, ``"genetic"`` or a :class:`Sampler`.
    direction:
        ``"minimize"`` or ``"maximize"``.
    metric:
        When trials report a dict of metrics, the one to optimize.
    pruner:
        ``"median"``, ``"percentile"``, ``"asha"``, ``"none"``/``None`` or a :class:`Pruner`.
    seed:
        Seed of the sampler.
    storage:
        ``None`` (in memory), a database URL (``"sqlite:///studies.db"``), an SQLAlchemy Engine
        or a :class:`StudyStorage`.
    study_name:
        Name of the study in the storage (generated when ``None``).
    load_if_exists:
        Resume the study of that name instead of failing when it exists. The space and the
        direction must be the ones it was created with (the error names what differs). The
        sampler is the one given here: samplers derive everything from the stored trials and
        draw from ``(seed, trial number)``, so the same strategy, options and seed continue the
        study exactly as if it had never stopped; other ones are used as given, with a warning
        naming the options that differ from those stored with the study.
    max_trials:
        Total budget of finished trials of the study (``None``: no limit).
    timeout:
        Seconds after which :meth:`should_stop` is true.
    early_stopping, patience, min_delta:
        Stop once ``patience`` completed trials in a row, in the order they finished, did not
        improve the best value by more than ``min_delta``.
    sampler_options, pruner_options:
        Keyword options of the named strategy and pruner.
    retry_failed:
        How many times a trial whose process died (lost heartbeat) is put back in the queue
        before it is marked failed.
    heartbeat_interval, grace_period:
        With SQL storage, owned trials are touched every ``heartbeat_interval`` seconds and
        trials untouched for ``grace_period`` seconds (default 4 intervals) are reclaimed.

    Examples
    --------
    >>> from kaizenml.optimize import Float
    >>> opt = HyperparameterOptimizer({"x": Float(-2.0, 2.0)}, strategy="random", seed=0,
    ...                               pruner=None, max_trials=20)
    >>> while not opt.should_stop():
    ...     trial = opt.ask()
    ...     _ = opt.complete_trial(trial.number, (trial.params["x"] - 1.0) ** 2)
    >>> abs(opt.best_trial.params["x"] - 1.0) < 0.3
    True
    """

    def __init__(
        self,
        space: SearchSpace | Mapping[str, Any],
        *,
        strategy: str | Sampler = "bayesian",
        direction: str = "minimize",
        metric: str | None = None,
        pruner: str | Pruner | None = "median",
        seed: int | None = None,
        storage: Any = None,
        study_name: str | None = None,
        load_if_exists: bool = False,
        max_trials: int | None = None,
        timeout: float | None = None,
        early_stopping: bool = False,
        patience: int = 10,
        min_delta: float = 0.0,
        sampler_options: Mapping[str, Any] | None = None,
        pruner_options: Mapping[str, Any] | None = None,
        retry_failed: int = 0,
        heartbeat_interval: float = 10.0,
        grace_period: float | None = None,
    ) -> None:
        self.space = space if isinstance(space, SearchSpace) else SearchSpace(space)
        self.direction = check_choice(direction, "direction", _DIRECTIONS)
        if metric is not None and (not isinstance(metric, str) or not metric):
            raise KaizenTypeError(f"metric must be a non-empty str or None, got {metric!r}")
        self.metric = metric
        if seed is not None:
            seed = check_int(seed, "seed", minimum=0)
        self.seed = seed
        if sampler_options is not None and not isinstance(sampler_options, Mapping):
            raise KaizenTypeError(
                f"sampler_options must be a dict or None, got {type(sampler_options).__name__}"
            )
        if sampler_options is not None and "seed" in sampler_options:
            raise ValidationError(
                "sampler_options must not contain 'seed'; pass seed= to the study instead"
            )
        if isinstance(strategy, Sampler) and seed is not None and strategy.seed is None:
            logger.debug("seed=%s ignored: the Sampler instance carries its own seed", seed)
        self.sampler = make_sampler(strategy, seed=seed, **dict(sampler_options or {}))
        self.pruner = make_pruner(pruner, **dict(pruner_options or {}))
        self.max_trials = (
            None if max_trials is None else check_int(max_trials, "max_trials", minimum=1)
        )
        self.timeout = None if timeout is None else check_float(timeout, "timeout", minimum=0.0)
        self.early_stopping = bool(early_stopping)
        self.patience = check_int(patience, "patience", minimum=1)
        self.min_delta = check_float(min_delta, "min_delta", minimum=0.0)
        self.retry_failed = check_int(retry_failed, "retry_failed", minimum=0)
        self.heartbeat_interval = check_float(
            heartbeat_interval, "heartbeat_interval", minimum=1e-3
        )
        self.grace_period = (
            4.0 * self.heartbeat_interval
            if grace_period is None
            else check_float(grace_period, "grace_period", minimum=0.0)
        )
        if self.grace_period <= self.heartbeat_interval:
            raise ValidationError(
                f"grace_period={self.grace_period} must exceed heartbeat_interval="
                f"{self.heartbeat_interval}, or live trials would be reclaimed"
            )

        self._storage: StudyStorage = make_storage(storage)
        if study_name is None:
            study_name = f"study-{uuid.uuid4().hex[:12]}"
        self.study_name = validate_name(study_name, "study_name")
        self._study = self._storage.create_study(
            self.study_name,
            direction=self.direction,
            metric=self.metric,
            space=self.space.to_dict(),
            sampler=self.sampler.config(),
            load_if_exists=bool(load_if_exists),
        )
        self._check_resumed()
        self._stats = _StudyStats(direction_sign(self.direction), self.min_delta)
        self._owner = new_owner_token()
        self._owned: set[int] = set()
        self._started_at = time.monotonic()
        self._exhausted = False
        self._stop_requested = False
        self._last_reclaim = -math.inf
        self._hb_stop: threading.Event | None = None
        if self._storage.shareable:
            self.reclaim_stale_trials()

    # setup ---------------------------------------------------------------------------------
    def _check_resumed(self) -> None:
        rec = self._study
        if rec.direction != self.direction:
            raise ValidationError(
                f"study {rec.name!r} was created with direction={rec.direction!r}, got "
                f"direction={self.direction!r}; use the same direction to resume it"
            )
        stored = SearchSpace(rec.space) if rec.space else None
        if stored is not None and stored != self.space:
            changes = _dict_changes(stored.to_dict(), self.space.to_dict(), "parameter")
            raise ValidationError(
                f"study {rec.name!r} was created with another search space ({changes}); "
                "resume it with the same space or use a new study_name"
            )
        if rec.sampler:
            # the stored options are the study's record, not a state to restore: this run's
            # sampler is used, and a different one cannot reproduce an uninterrupted run
            given = json.loads(json.dumps(self.sampler.config(), allow_nan=True))
            if given != rec.sampler:
                if given.get("name") != rec.sampler.get("name"):
                    changes = (
                        f"strategy: stored {rec.sampler.get('name')!r}, given {given.get('name')!r}"
                    )
                else:
                    changes = _dict_changes(rec.sampler, given, "option")
                logger.warning(
                    "study %r was created with another sampler (%s); it goes on with this "
                    "run's, so its next trials differ from those of an uninterrupted run (pass "
                    "the stored strategy, options and seed to reproduce it)",
                    rec.name,
                    changes,
                )

    def _start_heartbeat(self) -> None:
        if self._hb_stop is not None or not self._storage.shareable:
            return
        self._hb_stop = threading.Event()
        thread = threading.Thread(
            target=_heartbeat_loop,
            args=(weakref.ref(self), self._hb_stop, self.heartbeat_interval),
            name=f"kaizenml-heartbeat-{self.study_name}",
            daemon=True,
        )
        thread.start()

    def close(self) -> None:
        """Stop the heartbeat thread (trials still owned will be reclaimed by others later)."""
        if self._hb_stop is not None:
            self._hb_stop.set()
            self._hb_stop = None

    def __enter__(self) -> HyperparameterOptimizer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    # reading -------------------------------------------------------------------------------
    @property
    def storage(self) -> StudyStorage:
        return self._storage

    @property
    def study_id(self) -> int:
        return self._study.study_id

    @property
    def trials(self) -> list[Trial]:
        """Every trial of the study, ordered by number."""
        return self._storage.get_trials(self._study.study_id)

    def get_trial(self, trial_id: int | Trial) -> Trial:
        return self._storage.get_trial(self._study.study_id, self._number(trial_id))

    @property
    def best_trial(self) -> Trial | None:
        """The completed trial with the best value (``None`` before the first one)."""
        return self._stats.summary(self.trials)[1]

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._started_at

    def reclaim_stale_trials(self) -> list[Trial]:
        """Fail or re-queue trials of the study whose heartbeat stopped; returns them."""
        self._last_reclaim = time.monotonic()
        out = self._storage.reclaim_stale(
            self._study.study_id, self.grace_period, self.retry_failed
        )
        for t in out:
            self._owned.discard(t.number)
            if t.state == TrialState.FAILED:
                logger.warning("%s", t.error)
            else:
                logger.warning(
                    "trial %d lost its heartbeat and was put back in the queue", t.number
                )
        return out

    def _maybe_reclaim(self) -> None:
        if (
            self._storage.shareable
            and time.monotonic() - self._last_reclaim > self.grace_period / 2
        ):
            self.reclaim_stale_trials()

    def budget_left(self, trials: list[Trial] | None = None) -> int | None:
        """Trials that may still be started within ``max_trials`` (``None``: no limit).

        Finished trials and trials running anywhere count against the budget.
        """
        if self.max_trials is None:
            return None
        trials = self.trials if trials is None else trials
        return max(self.max_trials - len(trials), 0)

    def should_stop(self) -> bool:
        """Whether the study is done: budget used, timeout, grid exhausted, early stopping, or
        :meth:`stop` called."""
        if self._stop_requested or self._exhausted:
            return True
        if self.timeout is not None and self.elapsed >= self.timeout:
            return True
        n_finished, _, since = self._stats.summary(self.trials)
        if self.max_trials is not None and n_finished >= self.max_trials:
            return True
        return self.early_stopping and since >= self.patience

    def early_stopping_triggered(self, trials: list[Trial] | None = None) -> bool:
        """Whether the last ``patience`` trials to complete did not improve by more than
        ``min_delta``.

        Trials count in the order they finished (their ``datetime_complete``, ties by number),
        not by number: with parallel workers, a trial that finishes late with a better value is
        the latest improvement, and the trials that finished before it do not count against
        the patience. Failed and pruned trials do not count. The reference is the value of the
        last counted improvement, so several small gains that add up to more than
        ``min_delta`` count as one improvement.
        """
        if trials is None:
            return self._stats.summary(self.trials)[2] >= self.patience
        stats = _StudyStats(direction_sign(self.direction), self.min_delta)
        return stats.summary(trials)[2] >= self.patience

    def stop(self) -> None:
        """Make :meth:`should_stop` true (e.g. from a callback)."""
        self._stop_requested = True

    # ask -----------------------------------------------------------------------------------
    def get_next_trial(self) -> Trial:
        """Ask for a new trial (state waiting); raises :class:`SpaceExhausted` when the
        strategy has nothing new to propose (e.g. a finished grid)."""
        trial = self._ask(limit=None)
        assert trial is not None
        return trial

    def _claim(self) -> Trial | None:
        sid = self._study.study_id
        if not self._storage.has_queued(sid):
            return None
        trial = self._storage.claim_waiting(sid, self._owner)
        if trial is not None:
            self._owned.add(trial.number)
            self._start_heartbeat()
        return trial

    def _ask(self, limit: int | None) -> Trial | None:
        """Ask; with ``limit``, ``None`` once the study holds ``limit`` trials (checked in the
        same transaction that allocates the number, so processes sharing a study never
        overshoot the budget)."""
        self._maybe_reclaim()
        sid = self._study.study_id
        trial = self._claim()
        if trial is not None:
            return trial
        for _ in range(1000):
            trials = self._storage.get_trials(sid)
            trial = self._claim()  # the refresh may have revealed re-queued trials
            if trial is not None:
                return trial
            number = trials[-1].number + 1 if trials else 0
            if limit is not None and number >= limit:
                return None
            ctx = SamplerContext(self.space, self.direction, trials, number)
            try:
                params = self.sampler.suggest(ctx)
            except SpaceExhausted:
                self._exhausted = True
                raise
            if not getattr(self.sampler, "_valid_by_construction", False):
                params = self.space.validate_params(params, "suggested params")
            trial = self._storage.create_trial(sid, number, params, owner=self._owner, limit=limit)
            if trial is not None:
                self._owned.add(number)
                self._start_heartbeat()
                return trial
            # another process took this number (or the budget) first: re-read and retry
        raise StateError("could not allocate a trial number after 1000 attempts")

    ask = get_next_trial

    def enqueue_trial(self, params: Mapping[str, Any]) -> Trial:
        """Queue a trial with fixed parameters; the next ask (of any process) returns it."""
        params = self.space.validate_params(params, "params")
        return self._storage.enqueue_trial(self._study.study_id, params)

    # tell ----------------------------------------------------------------------------------
    def _number(self, trial_id: int | Trial) -> int:
        if isinstance(trial_id, Trial):
            return trial_id.number
        if isinstance(trial_id, bool) or not isinstance(trial_id, int):
            raise KaizenTypeError(
                f"trial_id must be a trial number (int) or a Trial, got {trial_id!r}"
            )
        return trial_id

    def start_trial(self, trial_id: int | Trial) -> Trial:
        """Mark a waiting trial as running (records its start time)."""
        return self._storage.start_trial(self._study.study_id, self._number(trial_id))

    def report_intermediate_result(self, trial_id: int | Trial, step: int, value: float) -> bool:
        """Record ``value`` at ``step``; returns ``True`` when the pruner stopped the trial
        (it is then finished as pruned)."""
        number = self._number(trial_id)
        trial = self._report(number, step, value)
        if self.pruner.prune(self.trials, trial, self.direction):
            self._finish_pruned(number, trial.intermediate_values)
            return True
        return False

    def _report(self, number: int, step: int, value: float) -> Trial:
        step = check_int(step, "step", minimum=0)
        value = check_float(value, "value", finite=False)
        return self._storage.report(self._study.study_id, number, step, value)

    def should_prune(self, trial_id: int | Trial) -> bool:
        """The pruner's answer for a running trial, without changing it."""
        trial = self.get_trial(trial_id)
        return bool(self.pruner.prune(self.trials, trial, self.direction))

    def _finish_pruned(self, number: int, intermediate: Mapping[int, float] | None) -> Trial:
        last = None
        if intermediate:
            last = intermediate[max(intermediate)]
        trial = self._storage.finish_trial(
            self._study.study_id,
            number,
            TrialState.PRUNED,
            value=last if last is not None and math.isfinite(last) else None,
        )
        return self._finished(trial)

    def _finish_pruned_with(self, number: int, intermediate: Mapping[int, float] | None) -> Trial:
        # a worker's own intermediate values (in-memory studies) land with the final state
        if intermediate is None:
            intermediate = self.get_trial(number).intermediate_values
            return self._finish_pruned(number, intermediate)
        last = intermediate[max(intermediate)] if intermediate else None
        trial = self._storage.finish_trial(
            self._study.study_id,
            number,
            TrialState.PRUNED,
            value=last if last is not None and math.isfinite(last) else None,
            intermediate_values=intermediate,
        )
        return self._finished(trial)

    def prune_trial(self, trial_id: int | Trial) -> Trial:
        """Finish a trial as pruned (what raising :class:`~kaizenml.TrialPruned` does)."""
        number = self._number(trial_id)
        return self._finish_pruned(number, self.get_trial(number).intermediate_values)

    def complete_trial(
        self, trial_id: int | Trial, metrics: float | Mapping[str, float], **kw: Any
    ) -> Trial:
        """Finish a trial with its result: a number, or a dict of metrics (``metric`` picks the
        objective). A NaN or infinite objective value fails the trial instead.

        A result that is not a real number (a string, an array, a list) raises
        :class:`~kaizenml.KaizenTypeError` and leaves the trial as it was, so it can be told
        again or failed with :meth:`fail_trial`.
        """
        number = self._number(trial_id)
        value, all_metrics = resolve_value(metrics, self.metric, number)
        if not math.isfinite(value):
            return self.fail_trial(
                number, f"the objective returned a non-finite value ({value})", metrics=all_metrics
            )
        trial = self._storage.finish_trial(
            self._study.study_id,
            number,
            TrialState.COMPLETE,
            value=value,
            metrics=all_metrics,
            **kw,
        )
        return self._finished(trial)

    def fail_trial(
        self, trial_id: int | Trial, error: str | BaseException | None = None, **kw: Any
    ) -> Trial:
        """Finish a trial as failed, keeping the error text (the traceback of an exception)."""
        number = self._number(trial_id)
        if isinstance(error, BaseException):
            error = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        elif error is not None and not isinstance(error, str):
            raise KaizenTypeError(f"error must be a str or an exception, got {error!r}")
        metrics = kw.pop("metrics", None)
        if metrics is not None:
            metrics = {k: v for k, v in metrics.items() if math.isfinite(v)}
        trial = self._storage.finish_trial(
            self._study.study_id,
            number,
            TrialState.FAILED,
            error=error or "failed",
            metrics=metrics,
            **kw,
        )
        return self._finished(trial)

    def requeue_or_fail_trial(self, trial_id: int | Trial, error: str) -> Trial:
        """Handle a trial whose worker was lost (not an error of the objective).

        With retries left (``retry_failed``), the trial goes back in the queue with the same
        number and parameters and is returned in the waiting state; otherwise it fails with
        ``error``.
        """
        number = self._number(trial_id)
        trial = self._storage.get_trial(self._study.study_id, number)
        if int(trial.system_attrs.get("retries", 0)) < self.retry_failed:
            self._owned.discard(number)
            logger.warning("trial %d lost its worker and was put back in the queue", number)
            return self._storage.requeue_trial(self._study.study_id, number)
        return self.fail_trial(number, error)

    def _finished(self, trial: Trial) -> Trial:
        self._owned.discard(trial.number)
        if type(self.sampler).on_trial_finished is Sampler.on_trial_finished:
            return trial  # the sampler does not listen: skip building its context
        try:
            ctx = SamplerContext(self.space, self.direction, self.trials, trial.number)
            self.sampler.on_trial_finished(ctx, trial)
        except Exception:
            logger.exception("sampler %s failed in on_trial_finished", self.sampler.name)
        return trial

    def set_user_attr(self, trial_id: int | Trial, key: str, value: Any) -> None:
        """Attach a JSON-able attribute to a trial (:class:`~kaizenml.KaizenTypeError` for a
        value JSON cannot hold, such as a set, an array or a datetime: convert it first, e.g.
        ``arr.tolist()`` or ``dt.isoformat()``)."""
        check_user_attr(key, value)
        self._storage.set_user_attr(self._study.study_id, self._number(trial_id), key, value)

    def result(self) -> Any:
        """An :class:`~kaizenml.optimize.OptimizationResult` of the study as it stands."""
        from ._result import OptimizationResult

        return OptimizationResult.from_optimizer(self)

    def __repr__(self) -> str:
        return (
            f"HyperparameterOptimizer(study_name={self.study_name!r}, strategy="
            f"{self.sampler.name!r}, direction={self.direction!r})"
        )


class _StudyStats:
    """Finished count, best trial and early-stopping state of a study, folded incrementally.

    The count and the best trial follow trial numbers (equal values: the lowest number wins, as
    in :attr:`OptimizationResult.best_trial`). The early-stopping count follows the order in
    which trials *finished* (:func:`completion_key`): with parallel workers a trial may finish
    after trials with higher numbers, and an improvement it brings is the latest one, not one
    followed by every trial with a higher number.

    Trial ``i`` of a study has number ``i``. The leading run of finished trials never changes
    again, so it is folded once; each query folds only the trials after it (the running ones
    and the newest), which keeps ``should_stop`` cheap in studies of many thousand trials.
    Trials finishing in completion order are folded once too; one that turns up with an earlier
    completion time than a trial already folded (clocks of several hosts, a slow commit) makes
    the early-stopping state start over from the sorted trials.
    """

    __slots__ = ("sign", "min_delta", "upto", "state", "seen", "last_key", "ref", "since")

    def __init__(self, sign: float, min_delta: float) -> None:
        self.sign = sign
        self.min_delta = min_delta
        self._reset()

    def _reset(self) -> None:
        self.upto = 0
        # (n_finished, best trial, best signed value), folded over trials[: self.upto]
        self.state: tuple[int, Trial | None, float] = (0, None, math.inf)
        # early stopping, in completion order: trials folded, key of the last one, the value of
        # the last counted improvement and the completed trials since
        self.seen: set[int] = set()
        self.last_key: tuple[float, int] = (-math.inf, -1)
        self.ref = math.inf
        self.since = 0

    def _fold(
        self, state: tuple[int, Trial | None, float], t: Trial
    ) -> tuple[int, Trial | None, float]:
        n, best, best_v = state
        if t.state.is_finished:
            n += 1
        v = t.objective_value()
        if v is not None and self.sign * v < best_v:
            best, best_v = t, self.sign * v
        return n, best, best_v

    def _fold_completed(self, completed: list[Trial]) -> None:
        """Fold completed trials, sorted by :func:`completion_key`, into the patience count."""
        for t in completed:
            v = self.sign * t.objective_value()  # type: ignore[operator]
            if self.ref == math.inf or v < self.ref - self.min_delta:
                self.ref, self.since = v, 0
            else:
                self.since += 1
        if completed:
            self.last_key = completion_key(completed[-1])

    def summary(self, trials: list[Trial]) -> tuple[int, Trial | None, int]:
        """``(finished trials, best trial, completed trials since the last improvement)``; the
        last counts trials in the order they finished."""
        if self.upto > len(trials):  # not the list this was folded from: start over
            self._reset()
        start = self.upto  # trials before it were finished, and seen, at the last query
        while self.upto < len(trials) and trials[self.upto].state.is_finished:
            self.state = self._fold(self.state, trials[self.upto])
            self.upto += 1
        state = self.state
        for t in trials[self.upto :]:
            state = self._fold(state, t)

        new = [t for t in trials[start:] if t.state.is_finished and t.number not in self.seen]
        self.seen.update(t.number for t in new)
        completed = sorted((t for t in new if t.objective_value() is not None), key=completion_key)
        if completed and completion_key(completed[0]) < self.last_key:
            # finished before a trial already counted: count every completed trial again
            self.ref, self.since, self.last_key = math.inf, 0, (-math.inf, -1)
            completed = sorted(
                (t for t in trials if t.state.is_finished and t.objective_value() is not None),
                key=completion_key,
            )
        self._fold_completed(completed)
        return state[0], state[1], self.since


def _dict_changes(stored: Mapping[str, Any], given: Mapping[str, Any], what: str) -> str:
    """What differs between a study's stored options and the ones given, key by key."""
    out = []
    for key in stored:
        if key not in given:
            out.append(f"{what} {key!r} removed (stored {stored[key]!r})")
        elif given[key] != stored[key]:
            out.append(f"{what} {key!r}: stored {stored[key]!r}, given {given[key]!r}")
    out.extend(f"{what} {key!r} added ({given[key]!r})" for key in given if key not in stored)
    return "; ".join(out) or "the same entries in another order"


def best_of(trials: list[Trial], direction: str) -> Trial | None:
    sign = direction_sign(direction)
    best: Trial | None = None
    best_v = math.inf
    for t in trials:
        v = t.objective_value()
        if v is not None and sign * v < best_v:
            best, best_v = t, sign * v
    return best
