"""``optimize_hyperparameters``: the one-call loop around :class:`HyperparameterOptimizer`.

Serial runs call the objective in this process. Parallel runs (``n_jobs > 1`` or
``executor=``) keep the sampler here, in the driving process, and send each trial to a
``concurrent.futures.Executor`` as one task: the objective serialized with cloudpickle (so
lambdas, closures and functions defined in a notebook work), the parameters, and what the
worker needs to answer ``trial.should_prune()`` on its own:

* with SQL storage the worker opens the same database, writes each intermediate value there as
  it is reported, and asks the pruner against the study as stored, so every process sees
  everyone's progress;
* with in-memory storage the task carries a snapshot of the trials finished when it was sent;
  the worker prunes against that snapshot, and its intermediate values reach the study when the
  task returns.

A task never raises for an objective's own error (it returns the traceback). A worker process
that dies breaks the pool: the trials that were in flight are re-run one at a time, and the one
that breaks it again alone is the one that fails.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import hashlib
import inspect
import logging
import math
import os
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from .._exceptions import KaizenTypeError, StateError, TrialPruned, ValidationError
from .._validation import check_float, check_int
from ._optimizer import HyperparameterOptimizer, as_real, check_user_attr, resolve_value
from ._pruners import NopPruner, Pruner
from ._sampler import Sampler, SpaceExhausted
from ._space import SearchSpace
from ._trial import Trial, TrialState

__all__ = ["TrialHandle", "optimize_hyperparameters"]

logger = logging.getLogger("kaizenml.optimize")


class TrialHandle:
    """What an objective with a second argument receives: report progress, ask about pruning.

    Examples
    --------
    >>> def objective(params, trial):
    ...     for epoch in range(10):
    ...         loss = (params["x"] - 1.0) ** 2 + 1.0 / (epoch + 1)
    ...         trial.report(epoch, loss)
    ...         if trial.should_prune():
    ...             raise TrialPruned()
    ...     return loss
    """

    def __init__(self, number: int, params: dict[str, Any], backend: Any) -> None:
        self.number = number
        self.params = params
        self._backend = backend
        self.user_attrs: dict[str, Any] = {}

    def report(self, step: int, value: float) -> None:
        """Record the intermediate ``value`` at ``step`` (each step once)."""
        self._backend.report(self.number, step, value)

    def should_prune(self) -> bool:
        """Whether the pruner says this trial should stop now (then raise ``TrialPruned``)."""
        return bool(self._backend.should_prune(self.number))

    def set_user_attr(self, key: str, value: Any) -> None:
        """Attach a JSON-able attribute, saved with the trial (a value JSON cannot hold raises
        :class:`~kaizenml.KaizenTypeError` here, in the objective)."""
        check_user_attr(key, value)
        self.user_attrs[key] = value

    @property
    def intermediate_values(self) -> dict[int, float]:
        return dict(self._backend.intermediate(self.number))


class _LocalBackend:
    """Reports go straight into the optimizer's storage (serial runs)."""

    def __init__(self, opt: HyperparameterOptimizer) -> None:
        self.opt = opt
        self._last: dict[int, Trial] = {}

    def report(self, number: int, step: int, value: float) -> None:
        self._last[number] = self.opt._report(number, step, value)

    def should_prune(self, number: int) -> bool:
        trial = self._last.get(number)
        if trial is None or trial.last_step is None:
            return False
        return self.opt.pruner.prune(self.opt.trials, trial, self.opt.direction)

    def intermediate(self, number: int) -> dict[int, float]:
        t = self._last.get(number)
        return t.intermediate_values if t is not None else {}


class _SQLWorkerBackend:
    """Reports written to the shared SQL study; pruning against the study as stored."""

    def __init__(self, url: str, study_id: int, pruner: Pruner, direction: str) -> None:
        from ._storage import SQLStorage

        self.storage = _worker_storage(url, SQLStorage)
        self.study_id = study_id
        self.pruner = pruner
        self.direction = direction
        self.values: dict[int, float] = {}
        self._last: Trial | None = None

    def report(self, number: int, step: int, value: float) -> None:
        step = check_int(step, "step", minimum=0)
        value = check_float(value, "value", finite=False)
        self._last = self.storage.report(self.study_id, number, step, value)
        self.values[step] = value

    def should_prune(self, number: int) -> bool:
        if self._last is None:
            return False
        return self.pruner.prune(self.storage.get_trials(self.study_id), self._last, self.direction)

    def intermediate(self, number: int) -> dict[int, float]:
        return self.values


class _SnapshotBackend:
    """Reports kept in the task; pruning against the finished trials sent with it."""

    def __init__(
        self, snapshot: Sequence[Trial], params: dict[str, Any], pruner: Pruner, direction: str
    ) -> None:
        self.snapshot = list(snapshot)
        self.params = params
        self.pruner = pruner
        self.direction = direction
        self.values: dict[int, float] = {}

    def report(self, number: int, step: int, value: float) -> None:
        step = check_int(step, "step", minimum=0)
        value = check_float(value, "value", finite=False)
        if step in self.values:
            raise StateError(
                f"trial {number} already has a value for step {step} ({self.values[step]}); "
                "report each step once"
            )
        self.values[step] = value

    def should_prune(self, number: int) -> bool:
        if not self.values:
            return False
        me = Trial(number, self.params, TrialState.RUNNING, intermediate_values=dict(self.values))
        return self.pruner.prune([*self.snapshot, me], me, self.direction)

    def intermediate(self, number: int) -> dict[int, float]:
        return self.values


_WORKER_STORAGES: dict[str, Any] = {}
_WORKER_OBJECTIVES: collections.OrderedDict[str, Callable[..., Any]] = collections.OrderedDict()


def _worker_storage(url: str, cls: Any) -> Any:
    st = _WORKER_STORAGES.get(url)
    if st is None:
        st = _WORKER_STORAGES[url] = cls(url)
    return st


def _load_objective(blob: bytes) -> Callable[..., Any]:
    import cloudpickle

    key = hashlib.sha256(blob).hexdigest()
    fn = _WORKER_OBJECTIVES.get(key)
    if fn is None:
        fn = cloudpickle.loads(blob)
        _WORKER_OBJECTIVES[key] = fn
        while len(_WORKER_OBJECTIVES) > 8:
            _WORKER_OBJECTIVES.popitem(last=False)
    return fn


def _plain(result: Any) -> Any:
    # numpy scalars and the like become floats so the outcome pickles anywhere; anything else
    # is sent back as it is and rejected (with its description) by resolve_value
    if isinstance(result, Mapping):
        return {k: _plain(v) for k, v in result.items()}
    real = as_real(result)
    return result if real is None else real


def _call_objective(
    objective: Callable[..., Any], wants_handle: bool, handle: TrialHandle
) -> dict[str, Any]:
    """Run one objective call and describe how it ended (never raises for Exception)."""
    out: dict[str, Any] = {"status": "failed", "result": None, "error": None}
    try:
        if wants_handle:
            result = objective(dict(handle.params), handle)
        else:
            result = objective(dict(handle.params))
        out["status"] = "complete"
        out["result"] = _plain(result)
    except TrialPruned:
        out["status"] = "pruned"
    except Exception as exc:
        out["error"] = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    out["intermediate"] = dict(handle.intermediate_values)
    out["user_attrs"] = dict(handle.user_attrs)
    return out


def _execute_trial(task: dict[str, Any]) -> dict[str, Any]:
    """Worker entry point: run one trial described by ``task``."""
    objective = _load_objective(task["objective"])
    if task.get("storage_url"):
        backend: Any = _SQLWorkerBackend(
            task["storage_url"], task["study_id"], task["pruner"], task["direction"]
        )
    else:
        backend = _SnapshotBackend(
            task["snapshot"], task["params"], task["pruner"], task["direction"]
        )
    handle = TrialHandle(task["number"], task["params"], backend)
    out = _call_objective(objective, task["wants_handle"], handle)
    out["pid"] = os.getpid()
    return out


def _wants_handle(objective: Callable[..., Any]) -> bool:
    try:
        sig = inspect.signature(objective)
    except (TypeError, ValueError):
        return False
    positional = 0
    for p in sig.parameters.values():
        if p.kind == inspect.Parameter.VAR_POSITIONAL:
            return True
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
            positional += 1
    return positional >= 2


class _Progress:
    def __init__(self, enabled: bool, total: int | None, name: str) -> None:
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=name, unit="trial")

    def update(self, best: Trial | None) -> None:
        if self.bar is None:
            return
        if best is not None:
            self.bar.set_postfix(best=f"{best.value:.6g}", trial=best.number, refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _apply_outcome(opt: HyperparameterOptimizer, trial: Trial, out: Mapping[str, Any]) -> Trial:
    """Record in the study how a trial ended.

    If the trial was finished meanwhile by another worker (this worker's heartbeat lapsed, the
    trial was re-queued and run again elsewhere), the result that arrived first stays and this
    one is dropped with a warning; the run goes on.
    """
    try:
        return _record_outcome(opt, trial, out)
    except StateError as exc:
        stored = opt.get_trial(trial.number)
        if not stored.state.is_finished:
            raise
        logger.warning(
            "trial %d was finished by another worker while this one ran it (its heartbeat "
            "lapsed and the trial was re-queued); this result is dropped: %s",
            trial.number, exc,
        )
        return stored


def _record_outcome(opt: HyperparameterOptimizer, trial: Trial, out: Mapping[str, Any]) -> Trial:
    number = trial.number
    status = out["status"]
    inter = out.get("intermediate") or None
    attrs = out.get("user_attrs") or None
    if attrs:
        for k, v in attrs.items():
            try:
                opt.set_user_attr(number, k, v)
            except (TypeError, ValueError) as exc:
                logger.warning("trial %d: user attribute %r not saved: %s", number, k, exc)
    if status == "pruned":
        return opt._finish_pruned_with(number, inter)
    if status == "failed":
        logger.warning("trial %d failed:\n%s", number, out.get("error"))
        return opt.fail_trial(number, out.get("error") or "failed", intermediate_values=inter)
    try:
        value, metrics = resolve_value(out["result"], opt.metric, number)
    except (ValidationError, KaizenTypeError) as exc:
        logger.warning("trial %d failed: %s", number, exc)
        return opt.fail_trial(number, str(exc), intermediate_values=inter)
    if not math.isfinite(value):
        logger.warning("trial %d failed: the objective returned %s", number, value)
    return opt.complete_trial(
        number, metrics if isinstance(out["result"], Mapping) else value, intermediate_values=inter
    )


def optimize_hyperparameters(
    space: SearchSpace | Mapping[str, Any],
    objective: Callable[..., Any],
    *,
    strategy: str | Sampler = "bayesian",
    max_trials: int,
    timeout: float | None = None,
    direction: str = "minimize",
    metric: str | None = None,
    early_stopping: bool = False,
    patience: int = 10,
    min_delta: float = 0.0,
    pruner: str | Pruner | None = "median",
    n_jobs: int = 1,
    executor: cf.Executor | None = None,
    storage: Any = None,
    study_name: str | None = None,
    load_if_exists: bool = False,
    seed: int | None = None,
    show_progress_bar: bool = False,
    callbacks: (
        Callable[[HyperparameterOptimizer, Trial], Any]
        | Iterable[Callable[[HyperparameterOptimizer, Trial], Any]]
    ) = (),
    sampler_options: Mapping[str, Any] | None = None,
    retry_failed: int = 0,
    pruner_options: Mapping[str, Any] | None = None,
    heartbeat_interval: float = 10.0,
    grace_period: float | None = None,
) -> Any:
    """Minimize or maximize ``objective`` over ``space``.

    Parameters
    ----------
    space:
        Dict of name -> ``Float``/``Int``/``Categorical`` (or their plain-dict form).
    objective:
        ``objective(params)`` or ``objective(params, trial)`` returning a float or a dict of
        metrics. ``trial`` is a :class:`TrialHandle` (``report(step, value)``,
        ``should_prune()``); raising :class:`~kaizenml.TrialPruned` prunes the trial, any other
        exception fails it (the traceback is kept) and the study goes on; NaN or infinite
        results fail the trial, and so does a result that is not a real number (a string, an
        array; the error names the trial and the metric, and a warning is logged).
    strategy:
        ``"bayesian"``, ``"random"``, ``"grid"``, ``"genetic"`` or a :class:`Sampler`.
    max_trials:
        Total budget of finished trials of the study (a resumed study counts its old trials).
    timeout:
        Stop starting trials after this many seconds.
    direction, metric:
        ``"minimize"``/``"maximize"``; with dict results, the metric to optimize.
    early_stopping, patience, min_delta:
        Stop after ``patience`` completed trials, in the order they finished, without an
        improvement larger than ``min_delta``.
    pruner, pruner_options:
        ``"median"``, ``"percentile"``, ``"asha"``, ``"none"``/``None`` or a :class:`Pruner`.
    n_jobs:
        Worker processes (loky); ``-1`` uses every CPU. Ignored when ``executor`` is given.
    executor:
        Any ``concurrent.futures.Executor`` (e.g. a Dask client's ``get_executor()``). Up to
        ``n_jobs`` trials are kept in flight; with the default ``n_jobs=1``, as many as the
        executor's ``max_workers`` when it exposes it, else 2.
    storage, study_name, load_if_exists:
        Where the study lives (``None``: memory; ``"sqlite:///file.db"``), its name, and whether
        to resume it.
    seed:
        Seed of the sampler; with ``n_jobs=1`` two runs give identical trials.
    show_progress_bar:
        A tqdm bar with the best value so far.
    callbacks:
        ``callback(optimizer, trial)`` after each finished trial (call ``optimizer.stop()`` to
        end the study); one callable or a list of them.
    sampler_options:
        Options of the named strategy (e.g. ``{"qmc": True}`` for random, ``{"grid_points":
        5}`` for grid).
    retry_failed:
        Times a trial whose process died (lost heartbeat) is re-queued before it fails.
    heartbeat_interval, grace_period:
        Heartbeat of running trials in SQL storage and the age after which they are reclaimed.

    Returns
    -------
    OptimizationResult

    Examples
    --------
    >>> from kaizenml.optimize import Float, Int
    >>> space = {"x": Float(-3.0, 3.0), "n": Int(1, 5)}
    >>> res = optimize_hyperparameters(space, lambda p: (p["x"] - 1) ** 2 + p["n"],
    ...                                strategy="random", max_trials=50, seed=0)
    >>> res.best_params["n"]
    1
    """
    if not callable(objective):
        raise KaizenTypeError(f"objective must be callable, got {type(objective).__name__}")
    max_trials = check_int(max_trials, "max_trials", minimum=1)
    n_jobs = check_int(n_jobs, "n_jobs", minimum=-1)
    if n_jobs == 0:
        raise ValidationError("n_jobs must be >= 1, or -1 for every CPU; got 0")
    if n_jobs == -1:
        n_jobs = os.cpu_count() or 1
    if executor is not None and not isinstance(executor, cf.Executor):
        raise KaizenTypeError(
            f"executor must be a concurrent.futures.Executor, got {type(executor).__name__}"
        )
    if callable(callbacks):
        callbacks = [callbacks]  # one callback needs no list
    elif isinstance(callbacks, (str, bytes)) or not isinstance(callbacks, Iterable):
        raise KaizenTypeError(
            f"callbacks must be a callable or a list of callables, got {callbacks!r}"
        )
    callbacks = list(callbacks)
    for cb in callbacks:
        if not callable(cb):
            raise KaizenTypeError(
                f"callbacks must be a callable or a list of callables; got {cb!r} in the list"
            )

    opt = HyperparameterOptimizer(
        space,
        strategy=strategy,
        direction=direction,
        metric=metric,
        pruner=pruner,
        seed=seed,
        storage=storage,
        study_name=study_name,
        load_if_exists=load_if_exists,
        max_trials=max_trials,
        timeout=timeout,
        early_stopping=early_stopping,
        patience=patience,
        min_delta=min_delta,
        sampler_options=sampler_options,
        pruner_options=pruner_options,
        retry_failed=retry_failed,
        heartbeat_interval=heartbeat_interval,
        grace_period=grace_period,
    )
    started = time.monotonic()
    wants_handle = _wants_handle(objective)
    progress = _Progress(bool(show_progress_bar), opt.budget_left(), opt.study_name)
    interrupted = False
    try:
        if executor is None and n_jobs == 1:
            interrupted = _run_serial(opt, objective, wants_handle, progress, callbacks)
        else:
            interrupted = _run_parallel(
                opt, objective, wants_handle, progress, callbacks, executor, max(n_jobs, 1)
            )
    finally:
        progress.close()
        opt.close()
    from ._result import OptimizationResult

    result = OptimizationResult.from_optimizer(opt, elapsed=time.monotonic() - started)
    result.interrupted = interrupted
    return result


def _after_trial(
    opt: HyperparameterOptimizer, trial: Trial, progress: _Progress, callbacks: list[Any]
) -> None:
    best = opt.best_trial
    if trial.state == TrialState.COMPLETE:
        logger.info(
            "trial %d complete: value=%.6g params=%s; best is trial %d (%.6g)",
            trial.number,
            trial.value,
            trial.params,
            best.number if best else -1,
            best.value if best else math.nan,
        )
    else:
        logger.info("trial %d %s", trial.number, trial.state.value)
    progress.update(best)
    for cb in callbacks:
        cb(opt, trial)


def _running_elsewhere(opt: HyperparameterOptimizer) -> bool:
    if not opt.storage.shareable:
        return False
    return any(not t.state.is_finished and t.number not in opt._owned for t in opt.trials)


def _next_trial(opt: HyperparameterOptimizer, *, wait_for_others: bool = True) -> Trial | None:
    while True:
        if opt.should_stop():
            return None
        try:
            # None once the study holds max_trials trials: the rest of the budget is running
            # in other processes (or was used)
            trial = opt._ask(limit=opt.max_trials)
        except SpaceExhausted:
            logger.info("the %s strategy has no new point to propose; stopping", opt.sampler.name)
            return None
        if trial is not None or not wait_for_others or not _running_elsewhere(opt):
            return trial
        # The rest of the budget is held by trials running in other processes. Wait until
        # they finish or their heartbeat stops (each ask reclaims stale trials: failed, or
        # re-queued for this worker to run), so a worker that dies never leaves the study
        # short of max_trials finished trials.
        time.sleep(max(0.05, min(opt.heartbeat_interval, opt.grace_period / 4)))


def _run_serial(
    opt: HyperparameterOptimizer,
    objective: Callable[..., Any],
    wants_handle: bool,
    progress: _Progress,
    callbacks: list[Any],
) -> bool:
    backend = _LocalBackend(opt)
    trial: Trial | None = None
    try:
        while True:
            trial = None
            trial = _next_trial(opt)
            if trial is None:
                return False
            trial = opt.start_trial(trial.number)
            handle = TrialHandle(trial.number, dict(trial.params), backend)
            out = _call_objective(objective, wants_handle, handle)
            out["intermediate"] = None  # already in storage
            backend._last.pop(trial.number, None)
            finished = _apply_outcome(opt, trial, out)
            trial = None
            _after_trial(opt, finished, progress, callbacks)
    except BaseException as exc:
        # a KeyboardInterrupt ends the study cleanly; anything else (SystemExit, an error in a
        # callback) propagates, but never leaves the current trial "running"
        interrupted = isinstance(exc, KeyboardInterrupt)
        if trial is not None:
            reason = (
                "interrupted by KeyboardInterrupt"
                if interrupted
                else "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            )
            try:
                opt.fail_trial(trial.number, reason)
            except StateError:
                pass
        if not interrupted:
            raise
        logger.warning("interrupted: stopping the study, finished trials are kept")
        return True


def _run_parallel(
    opt: HyperparameterOptimizer,
    objective: Callable[..., Any],
    wants_handle: bool,
    progress: _Progress,
    callbacks: list[Any],
    executor: cf.Executor | None,
    n_jobs: int,
) -> bool:
    import cloudpickle

    try:
        blob = cloudpickle.dumps(objective)
    except Exception as exc:
        raise KaizenTypeError(
            f"the objective cannot be serialized for worker processes ({exc}); make sure what "
            "it refers to can be pickled by cloudpickle, or use n_jobs=1"
        ) from exc
    own_executor = executor is None
    if own_executor or n_jobs > 1:
        n_slots = n_jobs
    else:
        # keep the executor busy: its worker count when it tells, else two trials in flight
        workers = getattr(executor, "_max_workers", None)
        n_slots = workers if isinstance(workers, int) and workers > 0 else 2

    def get_executor() -> cf.Executor:
        if executor is not None:
            return executor
        from loky import get_reusable_executor

        return get_reusable_executor(max_workers=n_jobs, timeout=60)

    use_sql = opt.storage.shareable
    prune_needed = not isinstance(opt.pruner, NopPruner)

    def task_for(trial: Trial) -> dict[str, Any]:
        task: dict[str, Any] = {
            "objective": blob,
            "number": trial.number,
            "params": dict(trial.params),
            "wants_handle": wants_handle,
            "pruner": opt.pruner,
            "direction": opt.direction,
            "storage_url": opt.storage.url if use_sql else None,
            "study_id": opt.study_id,
            "snapshot": (),
            # executors that key tasks by their arguments (dask) must see a retry as a new task
            "attempt": int(trial.system_attrs.get("retries", 0)),
        }
        if not use_sql and wants_handle and prune_needed:
            task["snapshot"] = [t for t in opt.trials if t.state.is_finished]
        return task

    in_flight: dict[cf.Future[Any], Trial] = {}
    suspects: collections.deque[Trial] = collections.deque()
    isolating = False
    executor_dead = False
    ex = get_executor()

    def submit(trial: Trial) -> bool:
        nonlocal ex, executor_dead
        try:
            fut = ex.submit(_execute_trial, task_for(trial))
        except (cf.BrokenExecutor, RuntimeError) as first_exc:
            exc: BaseException = first_exc
            if own_executor:
                ex = get_executor()
                try:
                    fut = ex.submit(_execute_trial, task_for(trial))
                except Exception as exc2:  # pragma: no cover - loky could not restart
                    exc = exc2
                else:
                    in_flight[fut] = trial
                    return True
            executor_dead = True
            logger.error("the executor cannot run trials any more: %s", exc)
            finished = opt.fail_trial(trial.number, f"the executor refused the trial: {exc}")
            _after_trial(opt, finished, progress, callbacks)
            return False
        in_flight[fut] = trial
        return True

    try:
        while True:
            # dispatch
            if suspects:
                if not in_flight:
                    trial = suspects.popleft()
                    try:
                        opt.storage.clear_intermediate(opt.study_id, trial.number)
                    except StateError:
                        continue
                    isolating = True
                    if own_executor:
                        ex = get_executor()
                    submit(trial)
            else:
                isolating = False
                while not executor_dead and len(in_flight) < n_slots:
                    # wait for other processes' trials only once ours are collected
                    asked = _next_trial(opt, wait_for_others=not in_flight)
                    if asked is None:
                        break
                    if not submit(opt.start_trial(asked.number)):
                        break
            if not in_flight:
                if suspects and not executor_dead:
                    continue
                return False
            done, _ = cf.wait(list(in_flight), return_when=cf.FIRST_COMPLETED)
            for fut in done:
                trial = in_flight.pop(fut)
                err = fut.exception()
                if err is None:
                    finished = _apply_outcome(opt, trial, fut.result())
                elif isinstance(err, cf.BrokenExecutor) and not isolating and own_executor:
                    # every trial in flight broke with the pool; find the culprit alone
                    logger.warning(
                        "a worker process died; re-running trial %d on its own", trial.number
                    )
                    suspects.append(trial)
                    continue
                else:
                    if isinstance(err, cf.BrokenExecutor) and not own_executor:
                        executor_dead = True
                    # the objective's own errors come back as outcomes: an exception here
                    # means the worker was lost, so the trial may be retried elsewhere
                    msg = "".join(traceback.format_exception(type(err), err, err.__traceback__))
                    finished = opt.requeue_or_fail_trial(
                        trial.number,
                        "the worker running this trial died or could not return its result:\n"
                        + msg,
                    )
                    if not finished.state.is_finished:
                        continue
                    logger.warning("trial %d failed in its worker: %s", trial.number, err)
                _after_trial(opt, finished, progress, callbacks)
    except BaseException as exc:
        # nothing may stay "running" behind us: in-flight trials fail with the reason
        interrupted = isinstance(exc, KeyboardInterrupt)
        reason = (
            "interrupted by KeyboardInterrupt"
            if interrupted
            else f"the study loop stopped before this trial returned: {exc!r}"
        )
        if interrupted:
            logger.warning("interrupted: stopping the study, finished trials are kept")
        for fut, trial in list(in_flight.items()):
            fut.cancel()
            try:
                opt.fail_trial(trial.number, reason)
            except StateError:
                pass
        for trial in suspects:
            try:
                opt.fail_trial(trial.number, reason)
            except StateError:
                pass
        if own_executor and interrupted:
            try:
                ex.shutdown(wait=False, kill_workers=True)  # type: ignore[call-arg]
            except TypeError:  # pragma: no cover
                ex.shutdown(wait=False)
        if not interrupted:
            raise
        return True
