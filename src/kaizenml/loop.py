"""The continuous-improvement loop: features -> tuning -> versioning -> guarded promotion.

:func:`improve_model` is one turn of the loop a research team runs every day on a live model:

1. compute the model's features through the feature store (cached, causal, with lineage);
2. tune the hyperparameters with the chosen strategy, pruning trials that report poorly, in a
   study named after the model and a digest of space, metric and the rows searched (a rerun on
   the same data with the same holdout resumes it; the held-out rows are never among them);
   the active version's parameters are queued as a trial, so the champion is measured on the
   same rows as the challengers (its stored metrics are the fallback);
3. compare the best trial with the champion on the latest rows of the data, which the search
   never saw (by default the latest 20 % when ``data`` has at least 100 rows): the best of many
   trials scores above its true level on the rows it was selected on (the winner's curse), so
   its search score would let a challenger no better than the champion "win". On shorter data
   the search's own scores decide and the report's reason says so; ``holdout=None`` asks for
   that explicitly;
4. store the best trial as a new version (``change_type="hyperparameter"``) with its
   parameters, trained artifact and the metrics the comparison used;
5. make it the active version only when it beats the champion by ``min_improvement`` (or
   when ``promote_if`` says so).

The active version changes only in step 5, after every other step succeeded, so an error or a
Ctrl-C anywhere leaves it untouched.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import math
import numbers
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._exceptions import KaizenTypeError, NotFoundError, ValidationError
from ._validation import check_choice, check_float, check_int, check_tags, validate_name

__all__ = ["ImprovementReport", "improve_model"]

logger = logging.getLogger(__name__)

_PROMOTE_RULES = ("better", "always", "never")

# holdout="auto": the latest fifth of the rows judges the search's winner, when that leaves at
# least 20 held-out rows (a metric averaged over fewer is mostly noise, and the default
# evaluation refits within the held-out window) and 80 rows to the search
_AUTO_FRACTION = 0.2
_AUTO_MIN_ROWS = 100


@dataclass
class ImprovementReport:
    """What one :func:`improve_model` run tried, what won and what was promoted.

    Attributes
    ----------
    model_name, study_name, strategy, metric, direction:
        The run's setup.
    n_trials, n_complete, n_pruned, n_failed:
        Trials run by this call (a resumed study may hold more).
    best_params, best_metrics, best_value:
        The best trial of the study (``None`` when no trial completed).
    baseline_version, baseline_metrics, baseline_value, baseline_source:
        The active version before the run and its metrics: ``"reevaluated"`` on this run's
        data, ``"stored"`` from its version record, or ``None`` when there was no active
        version.
    improvement:
        ``candidate_value - baseline_value`` signed so that positive is better (``None``
        without a baseline).
    new_version:
        The version created from the best trial, ``None`` when none was created.
    promoted:
        Whether the new version became the active one.
    active_version:
        The active version after the run.
    reason:
        One sentence saying why it was or was not promoted.
    interrupted:
        The search was stopped by Ctrl-C; no version was created or promoted.
    result:
        The ``OptimizationResult`` of the search.
    feature_names:
        The feature columns given to ``train_and_evaluate``.
    elapsed:
        Seconds for the whole run.
    holdout_rows:
        Rows held out of the search (the latest ones); 0 when the search's scores decided.
    candidate_metrics, candidate_value:
        The best trial's metrics the promotion was decided on: measured on the holdout rows,
        or the search's own (then equal to ``best_metrics``) when nothing was held out.
    decided_on:
        ``"holdout"`` or ``"search"``: which measurements ``candidate_*``, ``baseline_*`` and
        ``improvement`` are.
    """

    model_name: str
    study_name: str
    strategy: str
    metric: str
    direction: str
    n_trials: int = 0
    n_complete: int = 0
    n_pruned: int = 0
    n_failed: int = 0
    best_params: dict[str, Any] | None = None
    best_metrics: dict[str, float] | None = None
    best_value: float | None = None
    baseline_version: str | None = None
    baseline_metrics: dict[str, float] | None = None
    baseline_value: float | None = None
    baseline_source: str | None = None
    improvement: float | None = None
    new_version: str | None = None
    promoted: bool = False
    active_version: str | None = None
    reason: str = ""
    interrupted: bool = False
    result: Any = None
    feature_names: list[str] = field(default_factory=list)
    elapsed: float = 0.0
    holdout_rows: int = 0
    candidate_metrics: dict[str, float] | None = None
    candidate_value: float | None = None
    decided_on: str = "search"

    @property
    def won(self) -> bool:
        """The best trial beat the baseline (or there was no baseline)."""
        return self.candidate_value is not None and (
            self.baseline_value is None or (self.improvement is not None and self.improvement > 0)
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (the optimization result is reduced to its counts)."""
        out = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "result"}
        out["won"] = self.won
        return json.loads(json.dumps(out, default=_json_default))

    def summary(self) -> str:
        """A few lines for a terminal or a log."""
        lines = [
            f"improve_model({self.model_name!r}): {self.n_trials} trials "
            f"({self.n_complete} complete, {self.n_pruned} pruned, {self.n_failed} failed), "
            f"strategy={self.strategy}, {self.direction} {self.metric}",
        ]
        if self.best_value is not None:
            where = " in the search" if self.decided_on == "holdout" else ""
            lines.append(
                f"  best {self.metric}{where} = {self.best_value:.6g} with {self.best_params}"
            )
        if self.decided_on == "holdout" and self.candidate_value is not None:
            lines.append(
                f"  on the {self.holdout_rows} holdout rows: {self.metric} = "
                f"{self.candidate_value:.6g}"
            )
        if self.baseline_version is not None:
            lines.append(
                f"  active {self.baseline_version}: {self.metric} = "
                f"{_fmt(self.baseline_value)} ({self.baseline_source}"
                + (
                    " on the holdout rows)"
                    if self.decided_on == "holdout" and self.baseline_source == "reevaluated"
                    else ")"
                )
            )
        if self.new_version is not None:
            lines.append(
                f"  created {self.new_version}; "
                + ("promoted" if self.promoted else "not promoted")
                + f": {self.reason}"
            )
        else:
            lines.append(f"  no version created: {self.reason}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


class _UntrackedTrial:
    """The trial handle given when a model is trained outside the study (re-measuring the
    active version, or retraining the winner): reports are ignored and nothing is pruned."""

    number = None

    def report(self, step: int, value: float) -> None:
        pass

    def should_prune(self) -> bool:
        return False


_UNTRACKED = _UntrackedTrial()


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.6g}"


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def _metrics_dict(out: Any, metric: str, source: str = "train_and_evaluate") -> dict[str, float]:
    if isinstance(out, Mapping):
        metrics = {str(k): float(v) for k, v in out.items()}
    elif isinstance(out, (int, float, np.integer, np.floating)) and not isinstance(out, bool):
        metrics = {metric: float(out)}
    else:
        shape = ", optionally as (metrics, artifact)" if source == "train_and_evaluate" else ""
        raise KaizenTypeError(
            f"{source} must return a dict of metrics (or a float){shape}; got "
            f"{type(out).__name__}"
        )
    if metric not in metrics:
        raise ValidationError(
            f"{source} returned metrics {sorted(metrics)} without metric={metric!r}; "
            "return it, or pass the name of one of those as metric="
        )
    return metrics


def _split_output(out: Any, metric: str) -> tuple[dict[str, float], Any]:
    if isinstance(out, tuple):
        if len(out) != 2:
            raise KaizenTypeError(
                f"train_and_evaluate returned a tuple of {len(out)} items; return metrics or "
                "(metrics, artifact)"
            )
        return _metrics_dict(out[0], metric), out[1]
    return _metrics_dict(out, metric), None


def _takes_trial(fn: Callable[..., Any]) -> bool:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    params = [
        p for p in sig.parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    return len(params) >= 3 or any(p.kind == p.VAR_POSITIONAL for p in sig.parameters.values())


def _sign(direction: str) -> float:
    return 1.0 if direction == "maximize" else -1.0


def _params_key(params: Mapping[str, Any]) -> str:
    return json.dumps({k: params[k] for k in sorted(params)}, default=_json_default, sort_keys=True)


def _version_of(v: Any) -> str | None:
    if v is None:
        return None
    return str(getattr(v, "version", v))


def _build_dataset(
    store: Any, features: Sequence[str], data: Any
) -> tuple[dict[str, Any], list[str]]:
    """Raw columns plus computed feature columns, as one mapping of numpy arrays."""
    dataset: dict[str, Any] = {}
    if data is not None:
        if isinstance(data, Mapping):
            dataset.update({str(k): np.asarray(v) for k, v in data.items()})
        elif hasattr(data, "columns"):  # pandas / polars
            dataset.update({str(c): np.asarray(data[c]) for c in data.columns})
        else:
            raise KaizenTypeError(
                "data must be a mapping of column -> array or a pandas/polars DataFrame, got "
                f"{type(data).__name__}"
            )
    if not features:
        return dataset, []
    if data is None:
        raise ValidationError("features=... needs data=... (the raw columns to compute them from)")
    try:
        computed = store.compute_features(list(features), data)
    except NotFoundError as exc:
        raise NotFoundError(f"features={list(features)!r}: {exc}") from None
    if hasattr(computed, "columns"):
        cols = {str(c): np.asarray(computed[c]) for c in computed.columns}
    else:
        cols = {str(k): np.asarray(v) for k, v in dict(computed).items()}
    dataset.update(cols)
    return dataset, list(cols)


def improve_model(
    model_name: str,
    *,
    space: Any,
    train_and_evaluate: Callable[..., Any],
    metric: str,
    direction: str,
    data: Any = None,
    features: Sequence[str] = (),
    strategy: str = "bayesian",
    max_trials: int = 20,
    promote_if: str | Callable[[Mapping[str, float], Mapping[str, float] | None], bool] = "better",
    min_improvement: float = 0.0,
    reevaluate_active: bool = True,
    pruner: Any = "median",
    timeout: float | None = None,
    n_jobs: int = 1,
    seed: int | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    feature_store: Any = None,
    version_manager: Any = None,
    strategy_options: Mapping[str, Any] | None = None,
    show_progress_bar: bool = False,
    description: str = "",
    created_by: str = "kaizenml.improve_model",
    tags: Mapping[str, str] | None = None,
    holdout: float | int | str | None = "auto",
    evaluate: Callable[[Mapping[str, Any], Any, Mapping[str, Any]], Any] | None = None,
) -> ImprovementReport:
    """Tune a model, version the best result and promote it only if it beats the active one.

    Parameters
    ----------
    model_name:
        Name of the model in the version store (validated: letters, digits, ``_-.``).
    space:
        Search space: dict of name -> ``Float``/``Int``/``Categorical`` (or their dict form).
    train_and_evaluate:
        ``train_and_evaluate(params, dataset)`` or ``train_and_evaluate(params, dataset,
        trial)``. ``dataset`` maps the raw columns of ``data`` and the computed feature columns
        to numpy arrays. ``trial`` has ``report(step, value)`` and ``should_prune()`` (when the
        active version is re-measured, or the winner retrained, it is a handle that records
        nothing and never prunes): report a validation score per epoch and
        raise :class:`kaizenml.TrialPruned` when ``should_prune()`` is true. Return a dict of
        metrics (or a float), or ``(metrics, artifact)`` where ``artifact`` is a mapping of
        names to numpy arrays and JSON-able values (the trained model).
    metric, direction:
        The metric that decides (``"minimize"`` or ``"maximize"``).
    data:
        Raw columns (mapping of arrays, or a pandas/polars DataFrame).
    features:
        Feature names (optionally pinned, ``"rsi_14@1.0"``) computed through the store.
    strategy, max_trials, pruner, timeout, n_jobs, seed, strategy_options, show_progress_bar:
        Passed to :func:`kaizenml.optimize.optimize_hyperparameters`. ``max_trials`` is the
        number of new trials of this run (the active version's re-measurement included); the
        study (``study_name``, default ``"<model_name>-tuning-<digest of space, metric,
        direction, features and the rows searched>"``) is kept in ``storage`` and a rerun on
        the same data with the same ``holdout`` resumes it instead of starting from nothing.
    promote_if:
        ``"better"`` (beat the active version's ``metric`` by more than ``min_improvement``),
        ``"always"``, ``"never"``, or ``callable(candidate_metrics, active_metrics) -> bool``
        (``active_metrics`` is ``None`` without an active version). With ``holdout``, both are
        the metrics measured on the held-out rows.
    min_improvement:
        Margin for ``"better"``, in the metric's units (>= 0).
    reevaluate_active:
        Measure the active version's stored parameters on this run's data (as a trial of the
        study, or directly when they lie outside today's space), so champion and challengers
        are compared on the same rows; falls back to the stored metrics when the version holds
        no parameters for this space.
    holdout:
        Which rows decide the promotion. A fraction in (0, 1), or a number of rows (an int
        >= 1): the latest ``holdout * n`` rows (rounded to the nearest row), or ``holdout``
        rows, of ``data`` and its features are kept out of the search, which runs on the
        earlier rows only (the study's name digests those rows, so a rerun on the same data
        with the same holdout resumes the study). The best trial and the active version are
        then measured on the held-out rows; that measurement decides the promotion and
        becomes the new version's metrics. The search's own scores are kept in the artifact's
        ``"search"`` record (``best_metrics``), out of the version's metrics, so that
        ``compare_versions`` does not weigh them. Rows must be in time order (a ``timestamp``
        column, when present, is checked to be non-decreasing) so that nothing the choice was
        made on follows the rows that judge it. Features are computed on all rows first (they
        are causal), so the held-out rows keep their history.

        ``"auto"`` (default): ``0.2`` when ``data`` has at least 100 rows (so at least 20
        rows judge and 80 are searched); with fewer rows, or without ``data``, nothing is held
        out and the search's scores decide, which the report's ``reason`` says (and an info
        log) when ``data`` was too short.

        ``None``: the search's own scores decide. The best of many trials is the luckiest
        measurement as much as the best model, so its score is biased upward (the winner's
        curse) and a challenger no better than the champion usually "wins"; use it when
        ``train_and_evaluate`` already scores on rows its own selection did not use.
    evaluate:
        How the held-out rows are measured: ``evaluate(params, artifact, holdout_dataset)``
        returning metrics (a dict or a float). It is called with the best trial's trained
        artifact (as ``train_and_evaluate`` returned it, trained on the search's rows) and,
        when ``reevaluate_active``, with the active version's stored artifact (without the
        ``params``, ``feature_names`` and ``search`` entries the loop adds). ``None``
        (default): ``train_and_evaluate(params, holdout_dataset)`` is run on the held-out rows
        alone, for the best trial's and the active version's parameters, so it fits and
        scores within that window as it did within the search's rows. Needs rows held out:
        with ``holdout="auto"`` on data too short to split (or without ``data``) it raises
        :class:`ValidationError` rather than be ignored.
    storage:
        Database URL for studies, features and versions (default: the ``KAIZENML_HOME``
        store).
    feature_store, version_manager:
        Explicit store objects (default: made from ``storage`` or the process defaults).
    description, created_by, tags:
        Recorded on the new version.

    Returns
    -------
    ImprovementReport

    Examples
    --------
    >>> from kaizenml.optimize import Float
    >>> def fit(params, dataset):
    ...     return {"loss": (params["x"] - 0.3) ** 2}
    >>> report = improve_model("toy", space={"x": Float(0.0, 1.0)}, train_and_evaluate=fit,
    ...                        metric="loss", direction="minimize", strategy="random",
    ...                        max_trials=10, seed=0)  # doctest: +SKIP
    >>> report.promoted  # doctest: +SKIP
    True

    Bars in time order: by default the search tunes on the first 80 % and the winner and the
    active version are judged on the last 20 %, which the search never saw.

    >>> report = improve_model("momentum", space=space, train_and_evaluate=fit_and_score,
    ...                        data=bars, metric="sharpe",
    ...                        direction="maximize")  # doctest: +SKIP
    >>> report.decided_on, report.best_value, report.candidate_value  # doctest: +SKIP
    ('holdout', 0.094, 0.031)
    """
    started = time.perf_counter()
    model_name = validate_name(model_name, "model_name")
    if not callable(train_and_evaluate):
        raise KaizenTypeError(
            f"train_and_evaluate must be callable, got {type(train_and_evaluate).__name__}"
        )
    if not isinstance(metric, str) or not metric:
        raise KaizenTypeError(f"metric must be a non-empty str, got {metric!r}")
    direction = check_choice(direction, "direction", ("minimize", "maximize"))
    max_trials = check_int(max_trials, "max_trials", minimum=1)
    min_improvement = check_float(min_improvement, "min_improvement", minimum=0.0)
    if not callable(promote_if):
        check_choice(promote_if, "promote_if", _PROMOTE_RULES)
    tags = check_tags(tags)
    if holdout is not None:
        holdout = _check_holdout(holdout)
        if data is None:
            if holdout != "auto":
                raise ValidationError(
                    f"holdout={holdout!r} needs data=... (the rows to hold out of the search)"
                )
            if evaluate is None:
                holdout = None  # no rows to hold out: train_and_evaluate scores as it can
    if evaluate is not None:
        if not callable(evaluate):
            raise KaizenTypeError(f"evaluate must be callable, got {type(evaluate).__name__}")
        if holdout is None:
            raise ValidationError(
                "evaluate=... measures the holdout rows, but holdout=None holds none out; pass "
                "holdout='auto' (the default), a fraction in (0, 1) or a number of rows"
            )
        if data is None:
            raise ValidationError(
                "evaluate=... measures the rows held out of data=...; pass data= (the rows "
                "to search on and to hold out)"
            )
    if isinstance(features, str):
        features = [features]
    features = list(features)
    from .optimize import SearchSpace, optimize_hyperparameters

    space = space if isinstance(space, SearchSpace) else SearchSpace(space)
    if study_name is not None:
        study_name = validate_name(study_name, "study_name")
    store = feature_store
    if store is None and features:
        from .features import get_feature_store

        store = get_feature_store(storage)
    manager = version_manager
    if manager is None:
        from .versioning import ModelVersionManager, get_model_version_manager

        manager = ModelVersionManager(storage=storage) if storage else get_model_version_manager()

    strategy_name = strategy if isinstance(strategy, str) else type(strategy).__name__
    report = ImprovementReport(
        model_name=model_name,
        study_name=study_name or "",
        strategy=strategy_name,
        metric=metric,
        direction=direction,
    )

    # 1. features
    dataset, report.feature_names = _build_dataset(store, features, data)
    not_held_out = ""  # why holdout="auto" left the decision to the search's scores
    holdout_spec = holdout
    if holdout == "auto":
        n_rows = _n_rows(dataset, holdout)
        if n_rows >= _AUTO_MIN_ROWS:
            holdout = _AUTO_FRACTION
        else:
            not_held_out = (
                f"the data's {n_rows} rows are fewer than the {_AUTO_MIN_ROWS} holdout='auto' "
                f"needs to hold the latest {_AUTO_FRACTION:.0%} out"
            )
            if evaluate is not None:
                raise ValidationError(
                    f"evaluate=... measures the held-out rows, but {not_held_out}; pass more "
                    "rows, or holdout= a fraction in (0, 1) or a number of rows"
                )
            logger.info(
                "%s: %s; the search's own scores decide (biased upward for its best trial)",
                model_name,
                not_held_out,
            )
            holdout = None
    holdout_set: dict[str, Any] | None = None
    if holdout is not None:
        assert not isinstance(holdout, str)
        # the search sees only the earlier rows; the latest ones judge its winner
        dataset, holdout_set = _split_holdout(dataset, holdout, holdout_spec)
        report.holdout_rows = len(next(iter(holdout_set.values())))
    if study_name is None:
        # trials are comparable only on the same data, space and metric: a change of any of
        # them starts a new study, rerunning on the same ones resumes it
        key = {
            "space": space.to_dict(),
            "metric": metric,
            "direction": direction,
            "features": features,
            "data": _fingerprint(dataset),
        }
        digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
        study_name = f"{model_name[:110]}-tuning-{digest[:12]}"
    report.study_name = study_name

    # 2. the champion, measured on this data when possible
    active = _active_version(manager, model_name)
    report.baseline_version = _version_of(active)
    sign = _sign(direction)
    with_trial = _takes_trial(train_and_evaluate)

    def call(
        params: dict[str, Any], trial: Any, rows: Mapping[str, Any] | None = None
    ) -> tuple[dict[str, float], Any]:
        rows = dataset if rows is None else rows
        if with_trial:
            metrics, artifact = _split_output(train_and_evaluate(params, rows, trial), metric)
        else:
            metrics, artifact = _split_output(train_and_evaluate(params, rows), metric)
        _check_artifact(artifact)
        return metrics, artifact

    def measure_holdout(params: Mapping[str, Any], artifact: Any) -> dict[str, float]:
        assert holdout_set is not None
        if evaluate is None:
            return call(dict(params), _UNTRACKED, holdout_set)[0]
        return _metrics_dict(evaluate(dict(params), artifact, holdout_set), metric, "evaluate")

    active_params: dict[str, Any] | None = None
    stored_metrics: dict[str, float] = {}
    if active is not None:
        stored_metrics = {k: float(v) for k, v in (getattr(active, "metrics", None) or {}).items()}
        if reevaluate_active:
            active_params = _stored_params(manager, model_name, report.baseline_version, space)

    # 3. the search; the best artifact is kept in memory so the winner need not be retrained
    best_seen: dict[str, Any] = {"value": None, "key": None, "artifact": None, "metrics": None}

    def objective(params: dict[str, Any], trial: Any) -> dict[str, float]:
        metrics, artifact = call(params, trial)
        value = metrics[metric]
        if math.isfinite(value) and (
            best_seen["value"] is None or sign * (value - best_seen["value"]) > 0
        ):
            best_seen.update(
                value=value, key=_params_key(params), artifact=artifact, metrics=metrics
            )
        return metrics

    bad_artifact: list[str] = []
    study_storage = storage if storage is not None else _default_storage()
    # the champion's parameters join the study as its first trial, measured like every
    # challenger on this data (and informing the sampler); a resumed study has it already
    n_before = _prepare_study(
        space,
        study_storage,
        study_name,
        direction,
        metric,
        strategy,
        strategy_options,
        seed,
        active_params,
    )
    result = optimize_hyperparameters(
        space,
        objective,
        strategy=strategy,
        max_trials=n_before + max_trials,  # the study's budget is a total: add this run's
        timeout=timeout,
        direction=direction,
        metric=metric,
        pruner=pruner,
        n_jobs=n_jobs,
        storage=study_storage,
        study_name=study_name,
        load_if_exists=True,
        seed=seed,
        show_progress_bar=show_progress_bar,
        sampler_options=dict(strategy_options or {}),
        callbacks=[_stop_on_bad_artifact(bad_artifact)],
    )
    if bad_artifact:  # every trial would fail the same way: stopped at the first
        raise KaizenTypeError(bad_artifact[0])
    report.result = result
    _count_trials(report, result, n_before)
    report.interrupted = bool(result.interrupted)
    best = result.best_trial if result.completed_trials else None
    if best is not None:
        report.best_params = dict(best.params)
        report.best_metrics = dict(best.metrics or {metric: float(best.value)})
        report.best_value = float(best.value)
    report.active_version = report.baseline_version

    if active is not None and not report.interrupted:
        _measure_baseline(report, result, active_params, stored_metrics, call)

    if report.best_metrics is not None:
        report.candidate_metrics = dict(report.best_metrics)
        report.candidate_value = report.best_value
    if report.baseline_value is not None and report.candidate_value is not None:
        report.improvement = sign * (report.candidate_value - report.baseline_value)
    if report.interrupted:
        report.reason = "the search was interrupted; nothing was versioned or promoted"
        report.elapsed = time.perf_counter() - started
        return report
    if best is None:
        report.reason = "no trial completed (see the failed trials' errors in the study)"
        report.elapsed = time.perf_counter() - started
        return report
    best_params = dict(best.params)
    if active_params is not None and _params_key(best_params) == _params_key(active_params):
        report.reason = (
            f"the best parameters are the active version's ({report.baseline_version}); "
            "nothing new to version"
        )
        report.elapsed = time.perf_counter() - started
        return report

    # 4. the new version, with the winner's artifact (retrained when it ran in another process);
    # a winner from an earlier run of this study that was versioned then is not versioned again
    earlier = (
        manager.search(model_name, tags={"study": study_name, "trial": str(best.number)}, limit=1)
        if best.number < n_before
        else []
    )
    artifact: Any = None
    if earlier:
        version = earlier[0]
        logger.info(
            "the best trial (#%d) is from an earlier run, versioned then as %s", best.number,
            version.version,
        )
        if evaluate is not None:
            artifact = _user_artifact(manager.load_artifact(model_name, version.version))
    elif best_seen["key"] == _params_key(best_params):
        artifact = best_seen["artifact"]
    else:
        _, artifact = call(dict(best_params), _UNTRACKED)

    if holdout_set is not None:
        # the winner was chosen for its search score, so that score overstates it: the
        # decision is taken on rows the choice never saw, for it and for the champion alike
        report.candidate_metrics = measure_holdout(best_params, artifact)
        report.candidate_value = float(report.candidate_metrics[metric])
        report.decided_on = "holdout"
        _measure_baseline_on_holdout(
            report, manager, stored_metrics, active_params if reevaluate_active else None,
            reevaluate_active and evaluate is not None, measure_holdout,
        )
        report.improvement = (
            None
            if report.baseline_value is None
            else sign * (report.candidate_value - report.baseline_value)
        )

    if not earlier:
        payload = _artifact_payload(artifact, report, space)
        summary = f"best {metric}={report.best_value:.6g}"
        if holdout_set is not None:
            summary += (
                f" in the search, {report.candidate_value:.6g} on {report.holdout_rows} "
                "holdout rows"
            )
        version = manager.create_version(
            model_name,
            payload,
            change_type="hyperparameter",
            description=description
            or f"{strategy_name} search over {space.n_dims} parameters, {summary}",
            created_by=created_by,
            # the metrics the promotion was decided on; the search's own scores, biased by
            # the selection, stay in the artifact's "search" record, out of compare_versions
            metrics=report.candidate_metrics,
            parent_version=report.baseline_version,
            tags={**tags, "study": study_name, "trial": str(best.number)},
        )
    report.new_version = _version_of(version)

    # 5. the only step that changes the active version
    if report.decided_on == "search" and report.baseline_value is not None:
        logger.info(
            "%s: deciding on the search's own %s, which overstates the best of its trials; "
            "holdout= decides on rows the search did not see",
            model_name,
            metric,
        )
    promote, report.reason = _decide(report, promote_if, min_improvement)
    if not_held_out:
        report.reason += f" (decided on the search's own scores: {not_held_out})"
    if promote:
        manager.set_active_version(model_name, report.new_version, reason=report.reason)
        report.promoted = True
        report.active_version = report.new_version
    report.elapsed = time.perf_counter() - started
    logger.info("%s", report.summary())
    return report


def _default_storage() -> str:
    from .storage import default_storage_url

    return default_storage_url()


def _active_version(manager: Any, model_name: str) -> Any:
    try:
        return manager.get_active_version(model_name)
    except NotFoundError:
        return None


def _stored_params(
    manager: Any, model_name: str, version: str | None, space: Any
) -> dict[str, Any] | None:
    """The active version's tuned parameters when it has the space's parameters, else None."""
    if version is None:
        return None
    try:
        artifact = manager.load_artifact(model_name, version)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:
        logger.warning(
            "cannot load %s %s (%s); comparing with its stored metrics", model_name, version, exc
        )
        return None
    params = artifact.get("params") if isinstance(artifact, Mapping) else None
    if not isinstance(params, Mapping) or set(params) != set(space):
        return None  # tuned over another set of parameters: compare with the stored metrics
    # values outside today's ranges are kept: the champion is re-measured as it was tuned
    return dict(params)


def _prepare_study(
    space: Any,
    storage: Any,
    study_name: str,
    direction: str,
    metric: str,
    strategy: Any,
    strategy_options: Mapping[str, Any] | None,
    seed: int | None,
    champion: Mapping[str, Any] | None,
) -> int:
    """Create or open the study, queue the champion's parameters unless the study already
    holds them, and return how many trials it had finished before this run."""
    from .optimize import HyperparameterOptimizer

    opt = HyperparameterOptimizer(
        space,
        strategy=strategy,
        direction=direction,
        metric=metric,
        pruner=None,
        seed=seed,
        storage=storage,
        study_name=study_name,
        load_if_exists=True,
        sampler_options=dict(strategy_options or {}),
    )
    try:
        trials = opt.trials
        if champion is not None:
            key = _params_key(champion)
            if not any(_params_key(t.params) == key for t in trials):
                try:
                    opt.enqueue_trial(champion)
                except ValueError as exc:  # outside today's ranges: measured directly later
                    logger.info("active parameters not queued in the study: %s", exc)
        return sum(1 for t in trials if t.state.is_finished)
    finally:
        opt.close()


def _measure_baseline(
    report: ImprovementReport,
    result: Any,
    champion: Mapping[str, Any] | None,
    stored_metrics: Mapping[str, float],
    call: Callable[[dict[str, Any], Any], tuple[dict[str, float], Any]],
) -> None:
    """The active version's metrics on this data: its trial in the study, else a direct run,
    else its stored metrics."""
    metric = report.metric
    if champion is not None:
        key = _params_key(champion)
        done = [t for t in result.completed_trials if _params_key(t.params) == key]
        if done:
            report.baseline_metrics = dict(done[-1].metrics or {metric: float(done[-1].value)})
            report.baseline_source = "reevaluated"
        else:
            try:
                report.baseline_metrics, _ = call(dict(champion), _UNTRACKED)
                report.baseline_source = "reevaluated"
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:  # a champion that no longer runs is compared as stored
                logger.warning(
                    "re-evaluating %s %s failed (%s); using its stored metrics",
                    report.model_name,
                    report.baseline_version,
                    exc,
                )
    _settle_baseline(report, stored_metrics)


def _settle_baseline(report: ImprovementReport, stored_metrics: Mapping[str, float]) -> None:
    """Fall back to the active version's stored metrics when it was not measured, and take
    the compared value from whichever metrics it has."""
    metric = report.metric
    if report.baseline_metrics is None and metric in stored_metrics:
        report.baseline_metrics = dict(stored_metrics)
        report.baseline_source = "stored"
    if report.baseline_metrics is not None and metric in report.baseline_metrics:
        report.baseline_value = float(report.baseline_metrics[metric])


def _measure_baseline_on_holdout(
    report: ImprovementReport,
    manager: Any,
    stored_metrics: Mapping[str, float],
    champion_params: Mapping[str, Any] | None,
    with_artifact: bool,
    measure: Callable[[Mapping[str, Any], Any], dict[str, float]],
) -> None:
    """The active version's metrics on the holdout rows (its stored metrics when it cannot be
    measured there): what the candidate's holdout metrics are compared with."""
    report.baseline_metrics = report.baseline_value = report.baseline_source = None
    if report.baseline_version is None:
        return
    try:
        if with_artifact:  # evaluate= scores the trained champion as it was stored
            stored = manager.load_artifact(report.model_name, report.baseline_version)
            params = stored.get("params") if isinstance(stored, Mapping) else None
            report.baseline_metrics = measure(
                dict(params) if isinstance(params, Mapping) else {}, _user_artifact(stored)
            )
            report.baseline_source = "reevaluated"
        elif champion_params is not None:
            report.baseline_metrics = measure(champion_params, None)
            report.baseline_source = "reevaluated"
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # a champion that no longer runs is compared as stored
        logger.warning(
            "measuring %s %s on the holdout rows failed (%s); using its stored metrics",
            report.model_name,
            report.baseline_version,
            exc,
        )
    _settle_baseline(report, stored_metrics)


def _user_artifact(stored: Any) -> Any:
    """A stored artifact without the keys improve_model adds, as train_and_evaluate made it."""
    if not isinstance(stored, Mapping):
        return stored
    return {k: v for k, v in stored.items() if k not in _RESERVED_KEYS}


def _check_holdout(holdout: Any) -> float | int | str:
    if isinstance(holdout, str):
        if holdout != "auto":
            raise ValidationError(
                f"holdout={holdout!r} is not understood; pass 'auto' (the latest "
                f"{_AUTO_FRACTION:.0%} of data with at least {_AUTO_MIN_ROWS} rows), a fraction "
                "in (0, 1), a number of rows, or None to decide on the search's own scores"
            )
        return holdout
    if isinstance(holdout, bool) or not isinstance(holdout, numbers.Real):
        raise KaizenTypeError(
            "holdout must be 'auto', a fraction in (0, 1), a number of rows (an int >= 1) or "
            f"None, got {holdout!r}"
        )
    if isinstance(holdout, numbers.Integral):
        if holdout < 1:
            raise ValidationError(
                f"holdout={holdout!r} rows: hold out at least 1 row, or pass a fraction in (0, 1)"
            )
        return int(holdout)
    value = float(holdout)
    if not 0.0 < value < 1.0:
        raise ValidationError(
            f"holdout={holdout!r}: a float is a fraction of the rows and must lie in (0, 1); "
            "pass an int for a number of rows"
        )
    return value


def _n_rows(dataset: Mapping[str, Any], holdout: float | int | str) -> int:
    """The number of rows of the data's columns, which must all have it (0 without columns)."""
    arrays = {name: np.asarray(col) for name, col in dataset.items()}
    lengths = {name: (len(a) if a.ndim else None) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1 or None in lengths.values():
        raise ValidationError(
            f"holdout={holdout!r} splits the data by rows, but its columns differ in length "
            f"({lengths}); give columns of one length, one row per bar, or pass holdout=None "
            "to decide on the search's own scores"
        )
    return next(iter(lengths.values()), None) or 0


def _split_holdout(
    dataset: Mapping[str, Any], holdout: float | int, spec: float | int | str | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The earlier rows (for the search) and the latest ``holdout`` rows (to judge its winner).

    ``spec`` is the ``holdout=`` the caller gave (``"auto"``), named in the errors."""
    arrays = {name: np.asarray(col) for name, col in dataset.items()}
    shown = holdout if spec is None else spec
    if not arrays:
        raise ValidationError(f"holdout={shown!r} needs data with at least one column")
    n = _n_rows(arrays, shown)
    n_holdout = holdout if isinstance(holdout, int) else int(math.floor(holdout * n + 0.5))
    if not 1 <= n_holdout <= n - 1:
        raise ValidationError(
            f"holdout={shown!r} leaves {n - n_holdout} of the {n} rows to the search and "
            f"{n_holdout} to the holdout; each needs at least one row"
        )
    stamps = arrays.get("timestamp")
    if stamps is not None and stamps.dtype.kind in "iufM":
        back = np.flatnonzero(stamps[1:] < stamps[:-1])
        if back.size:
            raise ValidationError(
                f"holdout={shown!r} holds out the last rows as the latest, but column "
                f"'timestamp' goes back in time at row {int(back[0]) + 1}; sort the data by time"
                + (", or pass holdout=None to decide on the search's own scores"
                   if shown == "auto" else "")
            )
    cut = n - n_holdout
    return (
        {name: a[:cut] for name, a in arrays.items()},
        {name: a[cut:] for name, a in arrays.items()},
    )


def _fingerprint(dataset: Mapping[str, Any]) -> str:
    """A digest of the data's columns (names, dtypes, shapes and bytes)."""
    h = hashlib.sha256()
    for name in sorted(dataset):
        arr = np.asarray(dataset[name])
        h.update(f"{name}|{arr.dtype.str}|{arr.shape}".encode())
        if arr.dtype.kind == "O":
            h.update("\x1f".join(map(str, arr.ravel().tolist())).encode())
        else:
            h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def _count_trials(report: ImprovementReport, result: Any, n_before: int) -> None:
    trials = [t for t in result.trials if t.number >= n_before]
    states = [str(getattr(t.state, "value", t.state)) for t in trials]
    report.n_trials = len(trials)
    report.n_complete = states.count("complete")
    report.n_pruned = states.count("pruned")
    report.n_failed = states.count("failed")


_BAD_ARTIFACT = "the artifact returned by train_and_evaluate"


def _check_artifact(artifact: Any) -> None:
    """Refuse, in the trial that returned it, an artifact the version store would refuse after
    the whole search."""
    if artifact is None:
        return
    from .versioning._artifacts import check_artifact

    try:
        check_artifact(artifact)
    except (KaizenTypeError, ValidationError) as exc:
        raise KaizenTypeError(f"{_BAD_ARTIFACT} cannot be versioned: {exc}") from None
    for reserved in _RESERVED_KEYS:
        if reserved in artifact:
            raise KaizenTypeError(
                f"{_BAD_ARTIFACT} cannot be versioned: the key {reserved!r} is reserved by "
                "improve_model; rename it"
            )


def _stop_on_bad_artifact(found: list[str]) -> Callable[[Any, Any], None]:
    """A study callback that stops the search at the first trial that failed on its artifact
    (a programming error every later trial would repeat) and keeps the message."""

    def callback(opt: Any, trial: Any) -> None:
        error = getattr(trial, "error", None) or ""
        if _BAD_ARTIFACT in error and not found:
            line = next(line for line in error.splitlines()[::-1] if _BAD_ARTIFACT in line)
            found.append(line[line.index(_BAD_ARTIFACT) :])
            opt.stop()

    return callback


_RESERVED_KEYS = ("params", "feature_names", "search")


def _artifact_payload(artifact: Any, report: ImprovementReport, space: Any) -> dict[str, Any]:
    # the artifact came through call(), which refused what cannot be versioned
    payload: dict[str, Any] = {} if artifact is None else dict(artifact)
    payload["params"] = json.loads(json.dumps(report.best_params, default=_json_default))
    payload["feature_names"] = list(report.feature_names)
    payload["search"] = {
        "study": report.study_name,
        "strategy": report.strategy,
        "metric": report.metric,
        "direction": report.direction,
        "space": space.to_dict(),
        "best_metrics": dict(report.best_metrics or {}),
        "decided_on": report.decided_on,
        "holdout_rows": report.holdout_rows,
    }
    return payload


def _decide(
    report: ImprovementReport,
    promote_if: str | Callable[[Mapping[str, float], Mapping[str, float] | None], bool],
    min_improvement: float,
) -> tuple[bool, str]:
    metric = report.metric
    if callable(promote_if):
        ok = bool(promote_if(dict(report.candidate_metrics or {}), report.baseline_metrics))
        return ok, f"promote_if returned {ok}"
    if promote_if == "never":
        return False, "promote_if='never'"
    if promote_if == "always":
        return True, "promote_if='always'"
    if report.baseline_version is None:
        return True, "first version of the model"
    if report.baseline_value is None:
        return True, (
            f"the active version {report.baseline_version} has no {metric!r} metric to beat"
        )
    assert report.improvement is not None and report.candidate_value is not None
    where = f" on the {report.holdout_rows} holdout rows" if report.decided_on == "holdout" else ""
    if report.improvement > min_improvement:
        return True, (
            f"{metric} {report.candidate_value:.6g} beats {report.baseline_value:.6g} of "
            f"{report.baseline_version}{where} by {report.improvement:.6g} "
            f"(> {min_improvement:g})"
        )
    return False, (
        f"{metric} {report.candidate_value:.6g} does not beat {report.baseline_value:.6g} of "
        f"{report.baseline_version}{where} by more than {min_improvement:g}; "
        f"{report.baseline_version} stays active"
    )
