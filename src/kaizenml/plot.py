"""Plots of studies, features and model versions (matplotlib, the ``plot`` extra).

Every function takes kaizenml objects or plain data, draws on ``ax`` when one is given (or on
a new figure), and returns the matplotlib ``Axes``; nothing is shown or saved, so they work the
same in a notebook, a script and the demo report. matplotlib is imported on the first call,
so ``import kaizenml.plot`` is cheap and works without it.

Accepted inputs:

* studies: an ``OptimizationResult`` (anything with ``.trials``), a list of trials (objects
  with ``.number``, ``.state``, ``.value``), or a plain sequence of values;
* importances: an ``OptimizationResult`` (``.importance``) or a ``{name: importance}``
  mapping;
* convergence: an ``OptimizationResult``, a genetic search history (mapping with ``best`` and
  ``mean`` per generation, or an object with ``.history``), or a sequence of values;
* features: an array, or a mapping of name -> array, plus optional stored statistics;
* versions: a version history (objects or mappings with ``version``, ``created_at`` and
  ``metrics``), oldest first or newest first.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np

from ._exceptions import KaizenTypeError, ValidationError

__all__ = [
    "plot_convergence",
    "plot_feature_distribution",
    "plot_optimization_history",
    "plot_param_importances",
    "plot_version_metrics",
]


def _new_axes(ax: Any, figsize: tuple[float, float] = (7.0, 4.0)) -> Any:
    if ax is not None:
        return ax
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            "kaizenml.plot needs matplotlib: pip install 'kaizenml[plot]' (or matplotlib)"
        ) from exc
    _fig, new = plt.subplots(figsize=figsize)
    return new


def _get(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _state_name(state: Any) -> str:
    value = getattr(state, "value", state)
    return str(value).lower() if value is not None else "complete"


def _trials_of(study: Any) -> list[Any] | None:
    trials = _get(study, "trials")
    if trials is None and isinstance(study, Sequence) and study and not _is_number(study[0]):
        trials = study
    return list(trials) if trials is not None else None


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


def _direction_of(study: Any, direction: str | None) -> str:
    if direction is None:
        direction = _get(study, "direction", None) if not isinstance(study, Sequence) else None
    direction = direction or "minimize"
    if direction not in ("minimize", "maximize"):
        raise ValidationError(f"direction={direction!r} must be 'minimize' or 'maximize'")
    return direction


def _history_values(study: Any) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(trial numbers, values, states) of a study or a plain sequence of values, in trial
    number order (a list of trials may come in the order they finished)."""
    trials = _trials_of(study)
    if trials is None:
        plain = np.asarray(study, dtype=np.float64).reshape(-1)
        return np.arange(plain.size), plain, ["complete"] * plain.size
    numbers: list[Any] = []
    values: list[float] = []
    states: list[str] = []
    for i, t in enumerate(trials):
        numbers.append(_get(t, "number", i))
        v = _get(t, "value")
        state = _state_name(_get(t, "state"))
        if v is None and state == "pruned":
            inter = _get(t, "intermediate_values") or {}
            v = inter[max(inter)] if inter else None
        values.append(np.nan if v is None else float(v))
        states.append(state)
    order = np.argsort(np.asarray(numbers), kind="stable")
    return (
        np.asarray(numbers)[order],
        np.asarray(values, dtype=np.float64)[order],
        [states[i] for i in order],
    )


def _running_best(values: np.ndarray, direction: str) -> np.ndarray:
    filled = np.where(np.isfinite(values), values, np.inf if direction == "minimize" else -np.inf)
    best = (
        np.minimum.accumulate(filled) if direction == "minimize" else np.maximum.accumulate(filled)
    )
    return np.where(np.isfinite(best), best, np.nan)


def plot_optimization_history(
    study: Any, *, direction: str | None = None, ax: Any = None, title: str | None = None
) -> Any:
    """Each trial's value and the best value so far, by trial number.

    Complete trials are dots, pruned trials (at their last reported value) are grey crosses,
    failed trials are left out.

    Examples
    --------
    >>> ax = plot_optimization_history([3.0, 2.0, 2.5, 1.0])  # doctest: +SKIP
    """
    direction = _direction_of(study, direction)
    numbers, values, states = _history_values(study)
    ax = _new_axes(ax)
    st = np.asarray(states)
    done = (st == "complete") & np.isfinite(values)
    pruned = (st == "pruned") & np.isfinite(values)
    ax.scatter(numbers[done], values[done], s=18, color="tab:blue", label="trial value", zorder=3)
    if pruned.any():
        ax.scatter(
            numbers[pruned],
            values[pruned],
            s=18,
            marker="x",
            color="0.6",
            label="pruned (last report)",
            zorder=2,
        )
    best = _running_best(np.where(done, values, np.nan), direction)
    ax.step(numbers, best, where="post", color="tab:red", label="best so far", zorder=4)
    ax.set_xlabel("trial")
    ax.set_ylabel(_get(study, "metric", None) or "objective value")
    ax.set_title(title or f"Optimization history ({direction})")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return ax


def plot_param_importances(importances: Any, *, ax: Any = None, title: str | None = None) -> Any:
    """Horizontal bars of each parameter's importance, largest on top.

    Examples
    --------
    >>> ax = plot_param_importances({"lr": 0.7, "hidden": 0.2, "l2": 0.1})  # doctest: +SKIP
    """
    if not isinstance(importances, Mapping):
        got = None
        for attr in ("importance", "param_importances", "importances"):
            got = _get(importances, attr)
            if got is not None:
                break
        if callable(got):
            got = got()
        if got is None:
            raise KaizenTypeError(
                "plot_param_importances needs a {name: importance} mapping or an "
                f"OptimizationResult, got {type(importances).__name__}"
            )
        importances = got
    items = sorted(((str(k), float(v)) for k, v in dict(importances).items()), key=lambda kv: kv[1])
    ax = _new_axes(ax, (7.0, max(2.0, 0.45 * len(items) + 1.2)))
    names = [k for k, _ in items]
    vals = [v for _, v in items]
    bars = ax.barh(names, vals, color="tab:green")
    for bar, v in zip(bars, vals, strict=True):
        ax.text(
            bar.get_width(),
            bar.get_y() + bar.get_height() / 2,
            f" {v:.3f}",
            va="center",
            fontsize=8,
        )
    ax.set_xlabel("importance")
    ax.set_xlim(0, max(vals + [1e-12]) * 1.2)
    ax.set_title(title or "Parameter importance")
    ax.grid(axis="x", alpha=0.3)
    return ax


def plot_convergence(
    history: Any, *, direction: str | None = None, ax: Any = None, title: str | None = None
) -> Any:
    """Best-so-far and running mean against trial number, or best/mean per generation.

    ``history`` may be an ``OptimizationResult`` (uses its ``convergence`` data when present),
    a genetic history (``{"best": [...], "mean": [...]}`` per generation, optionally
    ``"diversity"``), a list of trials (in any order: the curve follows their numbers, as
    ``OptimizationResult.convergence`` does) or a sequence of values.
    """
    ax = _new_axes(ax)
    hist = (
        _get(history, "history", None)
        if not isinstance(history, (Mapping, Sequence, np.ndarray))
        else None
    )
    if hist is not None and not callable(hist):
        history = hist
    if isinstance(history, Mapping) and "best" in history:
        best = np.asarray(history["best"], dtype=np.float64)
        gens = np.asarray(history.get("generation", np.arange(best.size)))
        ax.plot(gens, best, color="tab:red", label="best of generation")
        if "mean" in history:
            ax.plot(
                gens,
                np.asarray(history["mean"], dtype=np.float64),
                color="tab:blue",
                label="population mean",
            )
        ax.set_xlabel("generation")
        ax.set_ylabel("fitness")
        if "diversity" in history:
            twin = ax.twinx()
            twin.plot(
                gens,
                np.asarray(history["diversity"], dtype=np.float64),
                color="0.6",
                ls="--",
                label="diversity",
            )
            twin.set_ylabel("diversity", color="0.4")
        ax.set_title(title or "Convergence per generation")
    else:
        conv = (
            _get(history, "convergence")
            if not isinstance(history, (Sequence, np.ndarray))
            else None
        )
        if callable(conv):
            conv = conv()
        direction = _direction_of(history, direction)
        best_key = next(
            (k for k in ("best_so_far", "best") if isinstance(conv, Mapping) and k in conv), None
        )
        if best_key is not None and isinstance(conv, Mapping):
            best = np.asarray(conv[best_key], dtype=np.float64)
            x = np.asarray(conv.get("number", conv.get("trial", np.arange(best.size))))
            mean_key = next((k for k in ("running_mean", "mean") if k in conv), None)
            mean = np.asarray(conv[mean_key], dtype=np.float64) if mean_key else None
        else:
            x, values, states = _history_values(history)
            ok = np.isfinite(values) & (np.asarray(states) == "complete")
            x, values = x[ok], values[ok]
            best = _running_best(values, direction)
            mean = np.cumsum(values) / np.arange(1, values.size + 1) if values.size else values
        ax.plot(x, best, color="tab:red", label="best so far")
        if mean is not None:
            ax.plot(x, mean, color="tab:blue", alpha=0.7, label="running mean")
        ax.set_xlabel("trial")
        ax.set_ylabel("objective value")
        ax.set_title(title or f"Convergence ({direction})")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return ax


def plot_feature_distribution(
    values: Any,
    *,
    name: str | None = None,
    statistics: Mapping[str, Any] | None = None,
    bins: int = 60,
    ax: Any = None,
    title: str | None = None,
) -> Any:
    """Histogram of a feature (NaN left out), with its stored percentiles when given.

    ``values`` is an array, or a mapping of name -> array (``name`` picks one; a mapping of
    several arrays overlays them). ``statistics`` is the store's statistics for the feature
    (keys such as ``p5``, ``p50``, ``p95`` or ``percentiles``), drawn as vertical lines.
    """
    ax = _new_axes(ax)
    if isinstance(values, Mapping):
        if name is not None:
            if name not in values:
                raise ValidationError(f"name={name!r} is not one of {sorted(values)}")
            series = {name: values[name]}
        else:
            series = dict(values)
    else:
        series = {name or "feature": values}
    for label, arr in series.items():
        a = np.asarray(arr, dtype=np.float64).reshape(-1)
        a = a[np.isfinite(a)]
        if a.size:
            ax.hist(
                a, bins=bins, alpha=0.6 if len(series) > 1 else 0.85, label=str(label), density=True
            )
    if statistics:
        marks: list[tuple[str, float]] = []
        pct = statistics.get("percentiles") if isinstance(statistics, Mapping) else None
        if isinstance(pct, Mapping):
            marks = [(f"p{k}", float(v)) for k, v in pct.items()]
        else:
            for key in ("p5", "p25", "p50", "p75", "p95"):
                if statistics.get(key) is not None:
                    marks.append((key, float(statistics[key])))
        top = ax.get_ylim()[1]
        for key, v in marks:
            if math.isfinite(v):
                ax.axvline(v, color="k", ls=":", lw=0.8)
                if key in ("p5", "p50", "p95"):  # inner quartile labels would overlap
                    ax.text(v, top * 0.95, key, fontsize=7, ha="center")
    ax.set_xlabel("value")
    ax.set_ylabel("density")
    ax.set_title(title or f"Distribution of {name or ', '.join(map(str, series))}")
    if len(series) > 1:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return ax


def _as_datetime(value: Any) -> Any:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return value
    return value


def plot_version_metrics(
    history: Iterable[Any],
    *,
    metrics: Sequence[str] | None = None,
    active: str | None = None,
    ax: Any = None,
    title: str | None = None,
) -> Any:
    """Each metric of a model's versions over time, versions labelled, the active one starred.

    ``history`` is a version history (objects or mappings with ``version``, ``created_at`` and
    ``metrics``) in any order; it is sorted by creation time. ``metrics`` picks which metrics
    to draw (default: every metric found).
    """
    rows = []
    for v in history:
        rows.append(
            (
                _as_datetime(_get(v, "created_at")),
                str(_get(v, "version")),
                dict(_get(v, "metrics") or {}),
            )
        )
    if not rows:
        raise ValidationError("history is empty: the model has no versions to plot")
    if all(r[0] is not None for r in rows):
        rows.sort(key=lambda r: r[0])
    names = list(metrics) if metrics is not None else sorted({k for r in rows for k in r[2]})
    ax = _new_axes(ax)
    x = np.arange(len(rows))
    for metric in names:
        y = np.array([float(r[2].get(metric, np.nan)) for r in rows])
        ax.plot(x, y, marker="o", label=metric)
        if active is not None:
            for i, r in enumerate(rows):
                if r[1] == active and np.isfinite(y[i]):
                    ax.scatter(
                        [i], [y[i]], marker="*", s=180, color="gold", edgecolor="k", zorder=5
                    )
    ax.set_xticks(x)
    ax.set_xticklabels([r[1] for r in rows], rotation=30, fontsize=8)
    ax.set_xlabel("version (by creation time)")
    ax.set_ylabel("metric value")
    ax.set_title(title or "Version metrics over time" + (f" (active: {active})" if active else ""))
    ax.grid(alpha=0.3)
    if names:
        ax.legend(fontsize=8)
    return ax
