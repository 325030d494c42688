"""The end-to-end demo behind ``kaizenml demo``.

One run is one day of a research desk's continuous-improvement loop:

1. **data**: bars arrive (generated, and a little more history on every run, or a user's file);
2. **features**: built-in indicators and one custom feature computed through the feature
   store, computed again to show the cache, described by statistics and lineage;
3. **trading rule**: an EMA-crossover rule tuned by a large-population genetic search whose
   fitness is a numba backtest of the whole population at once; the winner is versioned and
   promoted only if it beats the active version on the held-out bars;
4. **classifier**: a small neural network predicting whether volatility expands over the next
   hour (what a desk sizes positions and sets stops by), tuned by
   Bayesian optimization with pruning over epochs through :func:`kaizenml.improve_model` on
   the earlier 80 % of the bars; the winner and the active version are scored on the latest
   20 %, which the search never saw, and that score decides the promotion;
5. **incident drill**: a bad retrain is deployed, the comparison recommends a rollback, a
   rollback plan is validated and executed (and a rollback that fails its checks is refused);
6. **report**: tables on the terminal, an HTML report with plots in the output folder.

State lives in the store (``KAIZENML_HOME`` or ``--storage``): a second run resumes the
studies, seeds the genetic search with the active rule and compares with the active versions.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._exceptions import NotFoundError, TrialPruned, ValidationError
from .._jsonable import to_jsonable
from ..storage import atomic_write_text, kaizenml_home
from ._backtest import RuleData, backtest_population, backtest_rule
from ._classifier import MLPClassifier, log_loss, make_labeled_dataset
from ._report import HtmlReport, have_matplotlib
from .data import generate_ohlcv, load_ohlcv

__all__ = ["DemoReport", "run_demo"]

logger = logging.getLogger(__name__)

RULE_MODEL = "demo-ema-rule"
CLASSIFIER_MODEL = "demo-volatility-mlp"
HORIZON = 12  # bars: one hour of 5-minute bars


@dataclass(frozen=True)
class _Sizes:
    total_bars: int
    first_run_bars: int
    new_bars_per_run: int
    population: int
    generations: int
    bo_trials: int
    epochs: int
    span_hi: int


FULL = _Sizes(36_000, 24_000, 2_000, 8_000, 10, 20, 20, 200)
QUICK = _Sizes(7_000, 5_000, 500, 600, 4, 6, 6, 96)


@dataclass
class DemoReport:
    """What a demo run did: the output folder, the HTML report and a JSON-able summary."""

    out: Path
    html: Path
    summary: dict[str, Any] = field(default_factory=dict)
    figures: list[Path] = field(default_factory=list)
    elapsed: float = 0.0


def _rule_space(span_hi: int) -> dict[str, Any]:
    from ..optimize import Categorical, Float, Int

    return {
        "fast": Int(2, 48),
        "slow": Int(16, span_hi),
        "entry": Float(0.0, 3.0),
        "exit_frac": Float(0.0, 1.0),
        "mode": Categorical(["trend", "revert"]),
    }


def _classifier_space() -> dict[str, Any]:
    from ..optimize import Categorical, Float, Int

    return {
        "learning_rate": Float(1e-4, 0.3, log=True),
        "hidden": Int(2, 64, log=True),
        "l2": Float(1e-6, 1e-1, log=True),
        "batch_size": Categorical([64, 128, 256, 512]),
    }


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------


class _Console:
    def __init__(self, echo: Callable[[str], Any] | None) -> None:
        self.echo = echo

    def __call__(self, text: str = "") -> None:
        if self.echo is not None:
            self.echo(text)

    def section(self, title: str) -> None:
        self(f"\n== {title} " + "=" * max(0, 74 - len(title)))

    def table(self, headers: list[str], rows: list[list[Any]]) -> None:
        if self.echo is None:
            return
        from ..cli import format_table

        self(format_table(rows, headers))


def _active(manager: Any, name: str) -> Any:
    try:
        return manager.get_active_version(name)
    except NotFoundError:
        return None


def _history(manager: Any, name: str) -> list[Any]:
    try:
        return list(manager.get_version_history(name))
    except NotFoundError:
        return []


def _load_data(
    data: str | os.PathLike[str] | None,
    columns: Mapping[str, str] | None,
    sizes: _Sizes,
    seed: int,
    run_index: int,
) -> tuple[dict[str, np.ndarray], str]:
    if data is not None:
        bars = load_ohlcv(data, **dict(columns or {}))
        symbols, counts = np.unique(bars["symbol"], return_counts=True)
        symbol = str(symbols[int(np.argmax(counts))])
        keep = bars["symbol"] == symbol
        bars = {k: v[keep] for k, v in bars.items()}
        if bars["close"].shape[0] < 2_000:
            raise ValidationError(
                f"--data has {bars['close'].shape[0]} bars for {symbol}; the demo needs at "
                "least 2000 bars of one symbol"
            )
        return bars, f"{Path(data).name} ({symbol})"
    n = min(sizes.total_bars, sizes.first_run_bars + run_index * sizes.new_bars_per_run)
    full = generate_ohlcv(sizes.total_bars, seed=seed)
    # the same seeded history, revealed a little further on every run: "new bars arrived"
    bars = {k: v[:n] for k, v in full.items()}
    return bars, f"generated (seed {seed})"


# --------------------------------------------------------------------------------------------
# 2. features
# --------------------------------------------------------------------------------------------


def _hl_range(high: np.ndarray, low: np.ndarray, close: np.ndarray, **_: Any) -> np.ndarray:
    """Bar range relative to the close, log(high / low) / ... in basis points."""
    return np.log(np.asarray(high) / np.asarray(low)) * 1e4


def _setup_features(store: Any) -> list[str]:
    from ..features import FeatureDefinition
    from ..features._builtins import BUILTIN_DEFINITIONS

    store.register_function("hl_range", _hl_range)
    wanted = [
        FeatureDefinition(
            "range_z",
            "1.0.0",
            description="bar range log(high/low), 20-bar mean, expanding z-score (custom)",
            dependencies=["high", "low", "close"],
            compute_function="hl_range",
            computation_config={"window_size": 20, "aggregation": "mean", "normalize": "zscore"},
            tags=["demo", "custom"],
        ),
        FeatureDefinition(
            "trend_120",
            "1.0.0",
            description="120-bar log return (slow momentum), from the built-in price_return",
            dependencies=["close"],
            compute_function="returns",
            computation_config={"params": {"horizon": 120, "kind": "log"}},
            tags=["demo"],
        ),
    ]
    registered = {(d.name, d.version) for d in store.list_features()}
    for d in wanted:
        if (d.name, d.version) not in registered:
            store.register_feature(d)
    return [spec["name"] for spec in BUILTIN_DEFINITIONS] + [d.name for d in wanted]


# --------------------------------------------------------------------------------------------
# the demo
# --------------------------------------------------------------------------------------------


def run_demo(
    *,
    out: str | os.PathLike[str] | None = None,
    data: str | os.PathLike[str] | None = None,
    columns: Mapping[str, str] | None = None,
    seed: int = 0,
    quick: bool = False,
    storage: str | None = None,
    show_progress: bool = True,
    echo: Callable[[str], Any] | None = print,
) -> DemoReport:
    """Run the demo and write its report.

    Parameters
    ----------
    out:
        Output folder (default ``KAIZENML_HOME/demo``).
    data:
        A CSV or Parquet file of bars instead of generated data; ``columns`` maps roles to the
        file's column names (``{"close_col": "Adj Close"}``, see :func:`load_ohlcv`).
    seed:
        Seed of the generated data and of the searches.
    quick:
        Small sizes (seconds instead of about a minute).
    storage:
        Database URL of the store (default: ``KAIZENML_HOME``).
    show_progress:
        tqdm progress bars for the searches.
    echo:
        Where the tables go (``print``); None for silence.

    Returns
    -------
    DemoReport
    """
    t_start = time.perf_counter()
    sizes = QUICK if quick else FULL
    say = _Console(echo)
    out_dir = Path(out).expanduser() if out is not None else kaizenml_home() / "demo"
    out_dir.mkdir(parents=True, exist_ok=True)

    from ..features import get_feature_store
    from ..versioning import ModelVersionManager, get_model_version_manager

    store = get_feature_store(storage)
    manager = ModelVersionManager(storage=storage) if storage else get_model_version_manager()
    run_index = len(_history(manager, RULE_MODEL))
    summary: dict[str, Any] = {"run": run_index + 1, "quick": quick, "seed": seed}
    report = HtmlReport(title=f"kaizenml demo, run {run_index + 1}", folder=out_dir)

    # 1. data ---------------------------------------------------------------------------------
    bars, source = _load_data(data, columns, sizes, seed, run_index)
    n = bars["close"].shape[0]
    ret = np.diff(np.log(bars["close"]))
    per_day = _bars_per_day(bars["timestamp"])
    say.section(f"kaizenml demo: run {run_index + 1}" + (" (quick)" if quick else ""))
    data_rows = [
        ["source", source],
        ["bars", n],
        ["first bar", str(bars["timestamp"][0])[:19]],
        ["last bar", str(bars["timestamp"][-1])[:19]],
        ["annualized volatility", float(ret.std() * math.sqrt(252 * per_day))],
        ["total log return", float(np.log(bars["close"][-1] / bars["close"][0]))],
    ]
    if "regime" in bars:
        shares = np.bincount(bars["regime"], minlength=3) / n
        data_rows.append(
            ["regimes up/down/mean-revert", f"{shares[0]:.0%} / {shares[1]:.0%} / {shares[2]:.0%}"]
        )
    if run_index and data is None:
        data_rows.append(
            ["new since last run", f"{min(sizes.new_bars_per_run, n - sizes.first_run_bars)} bars"]
        )
    say.table(["market data", ""], data_rows)
    report.heading("1. Market data")
    report.table(["", ""], data_rows)
    summary["data"] = {"source": source, "bars": n}

    # 2. features -----------------------------------------------------------------------------
    say.section("features (feature store)")
    feature_names = _setup_features(store)
    raw = {k: bars[k] for k in ("timestamp", "open", "high", "low", "close", "volume")}
    t0 = time.perf_counter()
    feats = store.compute_features(feature_names, raw)
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    feats = store.compute_features(feature_names, raw)
    warm = time.perf_counter() - t0
    feats = {str(k): np.asarray(v, dtype=np.float64) for k, v in dict(feats).items()}
    cache = store.cache_info()
    say(
        f"{len(feature_names)} features -> {len(feats)} columns on {n} bars: computed in "
        f"{cold * 1e3:.1f} ms, again from the cache in {warm * 1e3:.2f} ms "
        f"(hits {cache.get('hits')}, misses {cache.get('misses')})"
        + (
            " [the first call compiled the numba kernels; they are cached on disk]"
            if cold > 2
            else ""
        )
    )
    stat_rows = []
    stats_by_col: dict[str, dict[str, Any]] = {}
    for col in feats:
        try:
            s = to_jsonable(store.get_statistics(col))
        except ValidationError:
            # a column named like its multi-column feature ("macd" of macd) is not addressable
            # by name alone
            continue
        stats_by_col[col] = s
        stat_rows.append(
            [
                col,
                s.get("count"),
                s.get("missing"),
                s.get("mean"),
                s.get("std"),
                s.get("min"),
                _pct(s, 50),
                s.get("max"),
            ]
        )
    headers = ["column", "count", "missing", "mean", "std", "min", "median", "max"]
    say.table(headers, stat_rows)
    lineage = to_jsonable(store.get_lineage("range_z"))
    lineage_text = _lineage_text(lineage)
    say("\nlineage of the custom feature range_z:\n" + lineage_text)
    report.heading("2. Features")
    report.text(
        f"{len(feature_names)} features ({len(feats)} columns) computed through the "
        f"feature store in {cold * 1e3:.1f} ms; the second request was served by the "
        f"cache in {warm * 1e3:.2f} ms."
    )
    report.table(headers, stat_rows)
    report.pre("lineage of range_z\n" + lineage_text)
    summary["features"] = {
        "names": feature_names,
        "columns": list(feats),
        "cold_ms": cold * 1e3,
        "cached_ms": warm * 1e3,
    }

    # 3. trading rule: genetic search ----------------------------------------------------------
    rule = _tune_rule(bars, feats, manager, sizes, seed, run_index, show_progress, say, report)
    summary["rule"] = {k: v for k, v in rule.items() if k not in ("equity", "train_equity")}

    # 4. classifier: Bayesian optimization with pruning -----------------------------------------
    clf = _tune_classifier(
        bars, feats, store, manager, sizes, seed, storage, show_progress, say, report
    )
    summary["classifier"] = {
        "report": clf["report"],
        "importances": clf["importances"],
        "columns": clf["columns"],
        "recommendations": clf["result"].recommendations(),
    }

    # 5. incident drill: a bad release and its rollback --------------------------------------
    drill = _incident_drill(bars, feats, manager, clf, say, report)
    summary["rollback"] = drill

    # 6. versions and plots ----------------------------------------------------------------------
    say.section("model versions")
    for model in (RULE_MODEL, CLASSIFIER_MODEL):
        hist = _history(manager, model)
        active = _active(manager, model)
        rows = [
            [
                ("* " if active is not None and v.version == active.version else "  ") + v.version,
                v.change_type,
                str(v.created_at)[:19],
                _short_metrics(v.metrics),
                v.description[:60],
            ]
            for v in hist[:8]
        ]
        say(f"{model} (* = active)")
        say.table(["version", "change", "created", "metrics", "description"], rows)
        report.heading(f"Versions of {model}")
        report.table(["version", "change", "created", "metrics", "description"], rows)
    figures = _figures(report, feats, stats_by_col, rule, clf, manager)
    summary["elapsed_seconds"] = time.perf_counter() - t_start
    html = report.write()
    atomic_write_text(out_dir / "summary.json", json.dumps(to_jsonable(summary), indent=2))
    say(
        f"\nreport: {html}"
        + ("" if have_matplotlib() else "  (plots need matplotlib: pip install 'kaizenml[plot]')")
    )
    say(
        f"done in {summary['elapsed_seconds']:.1f} s; run `kaizenml demo` again to continue "
        "from this state, or `kaizenml models history " + CLASSIFIER_MODEL + "` to inspect it."
    )
    return DemoReport(
        out=out_dir,
        html=html,
        summary=to_jsonable(summary),
        figures=figures,
        elapsed=summary["elapsed_seconds"],
    )


def _bars_per_day(timestamps: np.ndarray) -> int:
    """Typical bars per calendar day (the median over days), for annualizing."""
    _, counts = np.unique(timestamps.astype("datetime64[D]"), return_counts=True)
    return max(1, int(np.median(counts)))


def _pct(stats: Mapping[str, Any], p: int) -> Any:
    pct = stats.get("percentiles")
    if isinstance(pct, Mapping):
        return pct.get(str(p), pct.get(p, pct.get(f"p{p}")))
    return stats.get(f"p{p}")


def _short_metrics(metrics: Mapping[str, float]) -> str:
    keep = [
        k
        for k in ("sharpe", "log_loss", "accuracy", "test_accuracy", "max_drawdown")
        if k in metrics
    ]
    return ", ".join(f"{k}={metrics[k]:.4g}" for k in keep)


def _lineage_text(lineage: Mapping[str, Any]) -> str:
    lines = []
    for key, value in lineage.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            lines.append(f"  {key}:")
            lines.extend(
                f"    {i}. " + ", ".join(f"{k}={v}" for k, v in step.items())
                for i, step in enumerate(value, 1)
            )
        else:
            lines.append(f"  {key}: {value}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# 3. the trading rule
# --------------------------------------------------------------------------------------------


def _tune_rule(
    bars: Mapping[str, np.ndarray],
    feats: Mapping[str, np.ndarray],
    manager: Any,
    sizes: _Sizes,
    seed: int,
    run_index: int,
    show_progress: bool,
    say: _Console,
    report: HtmlReport,
) -> dict[str, Any]:
    from ..optimize import GeneticSearch, SearchSpace

    say.section("trading rule: genetic search, numba backtest as fitness")
    n = bars["close"].shape[0]
    split = int(n * 0.7)
    per_day = _bars_per_day(bars["timestamp"])
    rd = RuleData(
        bars["close"],
        feats["price_volatility"],
        span_lo=2,
        span_hi=sizes.span_hi,
        bars_per_year=252.0 * per_day,
    )
    space = SearchSpace(_rule_space(sizes.span_hi))
    warmup = sizes.span_hi
    # a rule must trade about once a day (intraday bars) or once a month (daily bars)
    # in-sample; rarer trading makes a lucky, untestable edge
    min_trades = max(10, (split - warmup) // max(per_day, 20))

    def fitness(pop: Mapping[str, np.ndarray]) -> np.ndarray:
        return backtest_population(rd, pop, start=warmup, stop=split, min_trades=min_trades)[
            "sharpe"
        ]

    active = _active(manager, RULE_MODEL)
    active_params = None
    if active is not None:
        art = manager.load_artifact(RULE_MODEL, active.version)
        active_params = dict(art["params"])
    init = None
    if active_params is not None:
        # continue from the stored state: the champion and mutants of it join a random population
        rng = np.random.default_rng(seed + run_index)
        init = space.sample_uniform(rng, sizes.population)
        x0 = space.encode(active_params)
        k = max(1, sizes.population // 10)
        init[:k] = np.clip(x0 + rng.normal(0.0, 0.05, size=(k, space.n_dims)), 0.0, 1.0)
        init[0] = x0
    ga = GeneticSearch(space, population_size=sizes.population, seed=seed + run_index)
    t0 = time.perf_counter()
    res = ga.run(
        fitness,
        generations=sizes.generations,
        direction="maximize",
        initial_population=init,
        show_progress_bar=show_progress,
        stagnation=6,
    )
    ga_time = time.perf_counter() - t0
    evals_per_s = res.n_evaluations / max(ga_time, 1e-9)
    best = {k: (v.item() if hasattr(v, "item") else v) for k, v in res.best_params.items()}
    train = backtest_rule(rd, best, start=warmup, stop=split)
    test = backtest_rule(rd, best, start=split)
    metrics = {
        "sharpe": test["sharpe"],
        "total_return": test["total_return"],
        "max_drawdown": test["max_drawdown"],
        "trades": float(test["trades"]),
        "hit_rate": test["hit_rate"],
        "train_sharpe": train["sharpe"],
    }
    say(
        f"{res.n_evaluations:,} backtests of {split - warmup:,} bars in {ga_time:.1f} s "
        f"({evals_per_s:,.0f} backtests/s, {res.n_generations} generations, "
        f"stop: {res.stop_reason})"
    )
    rows = [
        ["best parameters", _fmt_params(best)],
        ["in-sample Sharpe", train["sharpe"]],
        ["held-out Sharpe", test["sharpe"]],
        ["held-out return (log)", test["total_return"]],
        ["held-out max drawdown", test["max_drawdown"]],
        ["held-out trades", test["trades"]],
    ]
    champion = None
    if active_params is not None:
        champ = backtest_rule(rd, active_params, start=split)
        champion = {"version": active.version, "sharpe": champ["sharpe"]}
        rows.append([f"active {active.version}, held-out Sharpe today", champ["sharpe"]])
    say.table(["genetic search", ""], rows)

    # version it; promote only if it beats the champion on today's held-out bars
    margin = 0.05
    version = manager.create_version(
        RULE_MODEL,
        {"params": best, "space": space.to_dict(), "equity": test["equity"].astype(np.float64)},
        change_type="hyperparameter" if active is not None else "architecture",
        description=(
            f"genetic search, population {sizes.population:,}, {res.n_generations} generations"
        ),
        created_by="kaizenml demo",
        metrics=metrics,
        parent_version=active.version if active is not None else None,
        tags={"run": str(run_index + 1), "strategy": "genetic"},
    )
    if champion is None:
        promote, why = True, "first version"
    elif test["sharpe"] > champion["sharpe"] + margin:
        promote, why = (
            True,
            (
                f"held-out Sharpe {test['sharpe']:.3f} beats {champion['sharpe']:.3f} "
                f"of {champion['version']} by more than {margin}"
            ),
        )
    else:
        promote, why = (
            False,
            (
                f"held-out Sharpe {test['sharpe']:.3f} does not beat "
                f"{champion['sharpe']:.3f} of {champion['version']} by {margin}; it stays active"
            ),
        )
    if promote:
        manager.set_active_version(
            RULE_MODEL, version.version, changed_by="kaizenml demo", reason=why
        )
    say(
        f"created {RULE_MODEL} {version.version}: "
        + ("PROMOTED, " if promote else "kept inactive, ")
        + why
    )
    if active is not None:
        comp = manager.compare_versions(RULE_MODEL, active.version, version.version)
        say(
            f"compare {active.version} -> {version.version}: {comp.recommendation.action} "
            f"(confidence {comp.recommendation.confidence:.2f}): {comp.recommendation.reasoning}"
        )
    report.heading("3. Trading rule: genetic search")
    report.text(
        f"Population {sizes.population:,}, {res.n_generations} generations, "
        f"{res.n_evaluations:,} full backtests in {ga_time:.1f} s ({evals_per_s:,.0f}/s). "
        f"Version {version.version}: {'promoted' if promote else 'not promoted'} ({why})."
    )
    report.table(["", ""], rows)
    return {
        "version": version.version,
        "promoted": promote,
        "reason": why,
        "params": best,
        "metrics": metrics,
        "champion": champion,
        "evaluations": res.n_evaluations,
        "seconds": ga_time,
        "history": {k: np.asarray(v).tolist() for k, v in res.history.items()},
        "equity": test["equity"],
        "train_equity": train["equity"],
    }


def _fmt_num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def _fmt_params(params: Mapping[str, Any]) -> str:
    return ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()
    )


# --------------------------------------------------------------------------------------------
# 4. the classifier
# --------------------------------------------------------------------------------------------

_CLF_FEATURES = [
    "price_return",
    "price_volatility",
    "volume_ratio",
    "rsi_14",
    "macd",
    "macd_signal",
    "macd_hist",
    "bb_position",
    "range_z",
    "trend_120",
]


def _classifier_columns(feats: Mapping[str, np.ndarray]) -> list[str]:
    cols = [c for c in _CLF_FEATURES if c in feats]
    cols += [c for c in feats if c.startswith("hour_of_day")]
    return cols


def _splits(n_rows: int) -> tuple[slice, slice]:
    a = int(n_rows * 0.75)
    # a gap of HORIZON rows keeps the training labels from overlapping the validation rows
    # (the rows after the search's, held out by improve_model, are the test)
    return slice(0, a - HORIZON), slice(a, n_rows)


def _classifier_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    return {"log_loss": log_loss(y, p), "accuracy": float(np.mean((p > 0.5) == (y > 0.5)))}


def _labeled(
    rows: Mapping[str, np.ndarray], columns: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Features and volatility-expansion labels of ``rows``: one definition for the search
    and the held-out bars, so both score the same target."""
    X, y, _ = make_labeled_dataset(
        {c: rows[c] for c in columns}, rows["close"], horizon=HORIZON, target="volatility"
    )
    return X, y


def _make_train_and_evaluate(columns: list[str], epochs: int, seed: int) -> Callable[..., Any]:
    def train_and_evaluate(
        params: Mapping[str, Any], dataset: Mapping[str, np.ndarray], trial: Any = None
    ) -> Any:
        # labels from the rows given only: the last ones, whose next hour is not among them,
        # are dropped, so nothing is learned from the held-out bars that follow
        X, y = _labeled(dataset, columns)
        tr, va = _splits(X.shape[0])
        clf = MLPClassifier(
            hidden=int(params["hidden"]),
            learning_rate=float(params["learning_rate"]),
            l2=float(params["l2"]),
            batch_size=int(params["batch_size"]),
            seed=seed,
        )
        for epoch in range(epochs):
            clf.train_epoch(X[tr], y[tr])
            val = log_loss(y[va], clf.predict_proba(X[va]))
            if trial is not None:
                trial.report(epoch, val)
                if trial.should_prune():
                    raise TrialPruned(f"pruned after epoch {epoch}")
        metrics = _classifier_metrics(y[va], clf.predict_proba(X[va]))
        artifact = clf.to_artifact()
        artifact["columns"] = list(columns)
        return metrics, artifact

    return train_and_evaluate


def _evaluate_on_holdout(
    params: Mapping[str, Any], artifact: Mapping[str, Any], rows: Mapping[str, np.ndarray]
) -> dict[str, float]:
    """The trained classifier, as it would be deployed, scored on the held-out bars."""
    X, y = _labeled(rows, [str(c) for c in artifact["columns"]])
    return _classifier_metrics(y, MLPClassifier.from_artifact(artifact).predict_proba(X))


def _tune_classifier(
    bars: Mapping[str, np.ndarray],
    feats: Mapping[str, np.ndarray],
    store: Any,
    manager: Any,
    sizes: _Sizes,
    seed: int,
    storage: str | None,
    show_progress: bool,
    say: _Console,
    report: HtmlReport,
) -> dict[str, Any]:
    from ..loop import improve_model

    say.section("classifier: Bayesian optimization with pruning over epochs")
    columns = _classifier_columns(feats)
    fn = _make_train_and_evaluate(columns, sizes.epochs, seed)
    raw = {k: bars[k] for k in ("timestamp", "open", "high", "low", "close", "volume")}
    feature_refs = sorted(
        {
            "price_return",
            "price_volatility",
            "volume_ratio",
            "rsi_14",
            "macd",
            "bb_position",
            "range_z",
            "trend_120",
            "hour_of_day",
        }
    )
    rep = improve_model(
        CLASSIFIER_MODEL,
        space=_classifier_space(),
        train_and_evaluate=fn,
        features=feature_refs,
        data=raw,
        strategy="bayesian",
        max_trials=sizes.bo_trials,
        metric="log_loss",
        direction="minimize",
        # the default holdout="auto" keeps the latest 20 % of the bars out of the search; the
        # winner and the active version, as trained, are scored there and that decides
        evaluate=_evaluate_on_holdout,
        promote_if="better",
        min_improvement=1e-4,
        pruner="median",
        seed=seed,
        storage=storage,
        feature_store=store,
        version_manager=manager,
        show_progress_bar=show_progress,
        description="MLP volatility-expansion classifier tuned by Bayesian optimization",
        created_by="kaizenml demo",
    )
    n_bars = bars["close"].shape[0]
    rows: list[list[Any]] = [
        [
            "trials this run",
            f"{rep.n_trials} ({rep.n_complete} complete, {rep.n_pruned} pruned, "
            f"{rep.n_failed} failed)",
        ],
        ["trials in the study", len(getattr(rep.result, "trials", []) or [])],
        [
            "bars searched / held out",
            f"{n_bars - rep.holdout_rows} / {rep.holdout_rows} (the latest, never searched)",
        ],
        ["best parameters", _fmt_params(rep.best_params or {})],
        ["best validation log-loss (search)", rep.best_value],
    ]
    held_out = rep.decided_on == "holdout"
    if held_out:
        rows += [
            ["its held-out log-loss (decides)", rep.candidate_value],
            ["its held-out accuracy", (rep.candidate_metrics or {}).get("accuracy")],
        ]
    if rep.baseline_version:
        where = {
            "reevaluated": "on the held-out bars" if held_out else "in the search",
            "stored": "stored with the version",
        }.get(str(rep.baseline_source), str(rep.baseline_source))
        active_text = f"{rep.baseline_version} (log-loss {_fmt_num(rep.baseline_value)} {where})"
    else:
        active_text = "none"
    rows += [
        ["active before", active_text],
        ["new version", rep.new_version],
        ["decision", ("PROMOTED: " if rep.promoted else "not promoted: ") + rep.reason],
    ]
    say.table(["Bayesian optimization", ""], rows)
    importances = dict(rep.result.importance)
    if importances:
        say(
            "parameter importance: "
            + ", ".join(
                f"{k} {v:.2f}" for k, v in sorted(importances.items(), key=lambda kv: -kv[1])
            )
        )
    for r in rep.result.recommendations()[:4]:
        say(f"  hint: {r['message']}")
    report.heading("4. Classifier: Bayesian optimization with pruning")
    report.table(["", ""], rows)
    return {
        "report": rep.to_dict(),
        "result": rep.result,
        "importances": importances,
        "columns": columns,
        "train_and_evaluate": fn,
        "evaluate": _evaluate_on_holdout,
        "holdout_rows": rep.holdout_rows,
    }


# --------------------------------------------------------------------------------------------
# 5. incident drill
# --------------------------------------------------------------------------------------------


def _incident_drill(
    bars: Mapping[str, np.ndarray],
    feats: Mapping[str, np.ndarray],
    manager: Any,
    clf: Mapping[str, Any],
    say: _Console,
    report: HtmlReport,
) -> dict[str, Any]:
    say.section("incident drill: a bad release and its rollback")
    good = _active(manager, CLASSIFIER_MODEL)
    if good is None:
        say("no active classifier version; skipping the drill")
        return {"skipped": True}
    # a rushed retrain: a learning rate far too high, no tuning; trained on the bars the search
    # used and scored on the held-out bars, as the active version was, so the comparison below
    # weighs like with like
    bad_params = {"learning_rate": 0.3, "hidden": 64, "l2": 1e-6, "batch_size": 64}
    dataset = {"close": np.asarray(bars["close"]), **feats}
    cut = len(dataset["close"]) - int(clf["holdout_rows"])
    _, artifact = clf["train_and_evaluate"](
        bad_params, {k: v[:cut] for k, v in dataset.items()}, None
    )
    held_out = {k: v[cut:] for k, v in dataset.items()}
    metrics = clf["evaluate"](bad_params, artifact, held_out)
    good_now = clf["evaluate"](
        {}, manager.load_artifact(CLASSIFIER_MODEL, good.version), held_out
    )["log_loss"]
    artifact["params"] = bad_params
    bad = manager.create_version(
        CLASSIFIER_MODEL,
        artifact,
        change_type="retrain",
        description="rushed retrain with an untuned learning rate (simulated bad release)",
        created_by="kaizenml demo",
        metrics=metrics,
        parent_version=good.version,
        tags={"drill": "bad-release"},
    )
    manager.set_active_version(
        CLASSIFIER_MODEL,
        bad.version,
        changed_by="kaizenml demo",
        reason="simulated: deployed without comparison",
    )
    say(
        f"deployed {bad.version} without checks (simulated); log-loss on the held-out bars "
        f"{metrics['log_loss']:.4f} vs {good_now:.4f} of {good.version}"
    )
    comp = manager.compare_versions(CLASSIFIER_MODEL, bad.version, good.version)
    rec = comp.recommendation
    say(f"compare {bad.version} -> {good.version}: {rec.action} (confidence {rec.confidence:.2f})")
    say(f"  {rec.reasoning}")
    plan = manager.create_rollback_plan(
        CLASSIFIER_MODEL, good.version, reason="bad release: validation log-loss degraded"
    )
    check_rows = [[c.name, "PASS" if c.passed else "FAIL", c.message] for c in plan.checks]
    say(f"rollback plan #{plan.plan_id} to {good.version} (risk {plan.impact.risk}):")
    say.table(["check", "result", "message"], check_rows)
    result = manager.execute_rollback(
        CLASSIFIER_MODEL, plan.plan_id, executed_by="kaizenml demo", reason="bad release"
    )
    now = _active(manager, CLASSIFIER_MODEL)
    say(
        f"rollback {'succeeded' if result.success else 'FAILED'}: active version is now "
        f"{now.version if now else None}. {result.message}"
    )
    # a rollback that must be refused: the target is already active
    versioning_log = logging.getLogger("kaizenml.versioning")
    level = versioning_log.level
    versioning_log.setLevel(logging.ERROR)  # the refusal below is expected: no warning for it
    try:
        refused = manager.execute_rollback(
            CLASSIFIER_MODEL,
            good.version,
            executed_by="kaizenml demo",
            reason="second rollback to the same version",
        )
    finally:
        versioning_log.setLevel(level)
    failed = [c for c in refused.plan.checks if not c.passed]
    say(
        f"a second rollback to {good.version} is refused: "
        + "; ".join(f"{c.name}: {c.message}" for c in failed)
        + " (active version unchanged)"
    )
    report.heading("5. Incident drill: bad release, comparison, rollback")
    report.text(
        f"Version {bad.version} (an untuned retrain) was deployed; compare_versions "
        f"recommends '{rec.action}' (confidence {rec.confidence:.2f}): {rec.reasoning}"
    )
    report.table(["check", "result", "message"], check_rows)
    report.text(
        f"Rollback to {good.version}: {'done' if result.success else 'refused'}; a second "
        f"rollback to the already active version was refused by its checks."
    )
    return {
        "bad_version": bad.version,
        "restored": now.version if now else None,
        "success": bool(result.success),
        "recommendation": rec.action,
        "checks": {c.name: c.passed for c in plan.checks},
        "refused_checks": [c.name for c in failed],
        "refused": not refused.success,
    }


# --------------------------------------------------------------------------------------------
# 6. figures
# --------------------------------------------------------------------------------------------


def _figures(
    report: HtmlReport,
    feats: Mapping[str, np.ndarray],
    stats: Mapping[str, Any],
    rule: Mapping[str, Any],
    clf: Mapping[str, Any],
    manager: Any,
) -> list[Path]:
    if not have_matplotlib():
        report.text("Plots need matplotlib: pip install 'kaizenml[plot]'.")
        return []
    from .. import plot

    report.heading("6. Plots")
    result = clf["result"]

    def history(fig: Any) -> None:
        plot.plot_optimization_history(
            result,
            ax=fig.add_subplot(),
            direction="minimize",
            title="Classifier: validation log-loss per trial",
        )

    def importance(fig: Any) -> None:
        plot.plot_param_importances(
            clf["importances"] or {"(not enough trials)": 0.0},
            ax=fig.add_subplot(),
            title="Classifier: parameter importance",
        )

    def convergence(fig: Any) -> None:
        ax1 = fig.add_subplot(1, 2, 1)
        plot.plot_convergence(rule["history"], ax=ax1, title="Rule: genetic search")
        ax2 = fig.add_subplot(1, 2, 2)
        plot.plot_convergence(result, ax=ax2, direction="minimize", title="Classifier: Bayesian")

    def distributions(fig: Any) -> None:
        names = [
            c
            for c in ("rsi_14", "bb_position", "range_z", "volume_ratio", "macd_hist", "trend_120")
            if c in feats
        ][:6]
        for i, name in enumerate(names):
            ax = fig.add_subplot(2, 3, i + 1)
            plot.plot_feature_distribution(
                feats[name], name=name, statistics=stats.get(name), bins=50, ax=ax, title=name
            )
            ax.set_xlabel("")
            ax.set_ylabel("")

    def versions(fig: Any) -> None:
        panels = (
            (RULE_MODEL, ["sharpe", "train_sharpe"]),
            (CLASSIFIER_MODEL, ["log_loss", "accuracy"]),
        )
        for i, (model, metrics) in enumerate(panels, 1):
            act = _active(manager, model)
            plot.plot_version_metrics(
                _history(manager, model),
                metrics=metrics,
                ax=fig.add_subplot(1, 2, i),
                active=act.version if act else None,
                title=model,
            )

    def equity(fig: Any) -> None:
        ax = fig.add_subplot()
        ax.plot(np.asarray(rule["equity"]), color="tab:blue")
        ax.set_title(f"Rule {rule['version']}: held-out equity (cumulative log return)")
        ax.set_xlabel("bar")
        ax.grid(alpha=0.3)

    for name, caption, draw, size in (
        ("optimization_history", "Optimization history (classifier)", history, (6.4, 3.8)),
        ("param_importances", "Parameter importance (classifier)", importance, (6.4, 3.0)),
        (
            "convergence",
            "Convergence: genetic search and Bayesian optimization",
            convergence,
            (11, 3.8),
        ),
        (
            "feature_distributions",
            "Feature distributions with stored percentiles",
            distributions,
            (11, 5.5),
        ),
        ("version_metrics", "Version metrics over time (* active)", versions, (11, 4.0)),
        ("rule_equity", "Held-out equity of the new rule", equity, (6.4, 3.4)),
    ):
        report.figure(name, caption, draw, size=size)
    return list(report.figures)
