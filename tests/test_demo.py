"""`kaizenml demo` end to end (quick sizes): two runs on one store, and a user's CSV."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kaizenml.cli import main
from kaizenml.demo._run import CLASSIFIER_MODEL, QUICK, RULE_MODEL


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory):
    import matplotlib  # noqa: F401  (the report needs it)
    home = tmp_path_factory.mktemp("home")
    out = home / "report"
    mp = pytest.MonkeyPatch()
    mp.setenv("KAIZENML_HOME", str(home))
    mp.setenv("MPLBACKEND", "Agg")
    try:
        code1 = main(["demo", "--quick", "--no-progress", "--out", str(out)])
        first = json.loads((out / "summary.json").read_text())
        html1 = (out / "report.html").read_text()
        code2 = main(["demo", "--quick", "--no-progress", "--out", str(out)])
        second = json.loads((out / "summary.json").read_text())
        from kaizenml.versioning import get_model_version_manager

        manager = get_model_version_manager()
        yield {
            "codes": (code1, code2),
            "first": first,
            "second": second,
            "html1": html1,
            "out": out,
            "manager": manager,
        }
    finally:
        mp.undo()


def held_out_log_loss(artifact, n_bars: int, n_held_out: int) -> float:
    """A stored demo classifier's log-loss on the last ``n_held_out`` of the run's ``n_bars``
    generated bars: labels (does the next hour move more than the last one did?) and loss
    computed here with numpy, the network's probabilities from its stored weights."""
    from kaizenml.demo._classifier import MLPClassifier
    from kaizenml.demo._run import _setup_features
    from kaizenml.demo.data import generate_ohlcv
    from kaizenml.features import get_feature_store

    bars = {k: v[:n_bars] for k, v in generate_ohlcv(QUICK.total_bars, seed=0).items()}
    store = get_feature_store()
    raw = {k: bars[k] for k in ("timestamp", "open", "high", "low", "close", "volume")}
    feats = store.compute_features(_setup_features(store), raw)
    cols = list(artifact["columns"])
    X = np.column_stack([np.asarray(feats[c], dtype=float)[-n_held_out:] for c in cols])
    moves = np.abs(np.diff(np.log(bars["close"][-n_held_out:])))
    h = 12
    y = np.full(n_held_out, np.nan)
    for t in range(h, n_held_out - h):  # moves[t - h:t] ends at bar t, moves[t:t + h] follows it
        y[t] = float(moves[t : t + h].sum() > moves[t - h : t].sum())
    keep = np.isfinite(X).all(axis=1) & np.isfinite(y)
    p = np.clip(MLPClassifier.from_artifact(artifact).predict_proba(X[keep]), 1e-12, 1 - 1e-12)
    yk = y[keep]
    return float(-np.mean(yk * np.log(p) + (1 - yk) * np.log(1 - p)))


def test_first_run_shows_every_pillar(demo_runs) -> None:
    assert demo_runs["codes"] == (0, 0)
    s = demo_runs["first"]
    assert s["run"] == 1 and s["data"]["bars"] == QUICK.first_run_bars
    # features: built-ins and the custom one, the second request served by the cache
    assert {"rsi_14", "macd_hist", "range_z", "hour_of_day_sin"} <= set(s["features"]["columns"])
    assert s["features"]["cached_ms"] < s["features"]["cold_ms"]
    # the genetic search evaluated whole populations
    rule = s["rule"]
    assert rule["evaluations"] >= QUICK.population * (1 + 1)
    assert rule["promoted"] and rule["version"] == "1.0.0"
    best = np.asarray(rule["history"]["best"])
    assert np.all(np.diff(best) >= 0)  # best-so-far of a maximization never drops
    # Bayesian optimization through improve_model, with pruning available per epoch
    clf = s["classifier"]["report"]
    assert clf["n_trials"] == QUICK.bo_trials and clf["new_version"] == "1.0.0" and clf["promoted"]
    assert clf["best_value"] < np.log(2)  # better than a coin on the validation rows
    # the drill: a bad release rolled back, and a second rollback refused by its checks
    drill = s["rollback"]
    assert (
        drill["success"] and drill["restored"] == "1.0.0" and drill["recommendation"] == "rollback"
    )
    assert all(drill["checks"].values())
    assert drill["refused"] and drill["refused_checks"] == ["not_already_active"]


def test_report_files(demo_runs) -> None:
    out = demo_runs["out"]
    html = demo_runs["html1"]
    names = [
        "optimization_history",
        "param_importances",
        "convergence",
        "feature_distributions",
        "version_metrics",
    ]
    for name in names:
        png = (out / f"{name}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5_000
    assert html.count("data:image/png;base64,") >= len(names)
    for text in ("Market data", "Features", "genetic search", "Bayesian", "rollback"):
        assert text.lower() in html.lower()


def test_second_run_continues_from_the_stored_state(demo_runs) -> None:
    first, second = demo_runs["first"], demo_runs["second"]
    manager = demo_runs["manager"]
    assert second["run"] == 2
    assert second["data"]["bars"] == QUICK.first_run_bars + QUICK.new_bars_per_run
    # the rule search was seeded with the champion and compared with it on today's bars
    champ = second["rule"]["champion"]
    assert champ is not None and champ["version"] == "1.0.0"
    rule_active = manager.get_active_version(RULE_MODEL)
    if second["rule"]["promoted"]:
        assert second["rule"]["metrics"]["sharpe"] > champ["sharpe"]
        assert rule_active.version != champ["version"]
    else:  # the champion stays active
        assert rule_active.version == champ["version"]
    # new bars, so a new study, whose first trial re-measures the active classifier
    clf1, clf2 = first["classifier"]["report"], second["classifier"]["report"]
    assert clf2["study_name"] != clf1["study_name"]
    assert clf2["baseline_version"] == first["rollback"]["restored"]
    assert clf2["baseline_source"] == "reevaluated"
    from kaizenml.optimize import SQLStorage
    from kaizenml.storage import default_storage_url

    storage = SQLStorage(default_storage_url())
    trials = storage.get_trials(storage.get_study(clf2["study_name"]).study_id)
    assert len(trials) == QUICK.bo_trials
    stored = manager.load_artifact(CLASSIFIER_MODEL, clf2["baseline_version"])
    assert trials[0].params == stored["params"]
    # the promotion is decided on the latest 20 % of the bars, which the search never saw: the
    # active network, as stored, is scored there (recomputed here from the bars and weights)
    n = second["data"]["bars"]
    assert clf2["decided_on"] == "holdout" and clf2["holdout_rows"] == round(0.2 * n)
    assert clf2["baseline_value"] == pytest.approx(
        held_out_log_loss(stored, n, clf2["holdout_rows"]), rel=1e-9
    )
    if clf2["new_version"] is not None:
        assert manager.get_version(CLASSIFIER_MODEL, clf2["new_version"]).metrics == (
            pytest.approx(clf2["candidate_metrics"])
        )
        winner = manager.load_artifact(CLASSIFIER_MODEL, clf2["new_version"])
        assert clf2["candidate_value"] == pytest.approx(
            held_out_log_loss(winner, n, clf2["holdout_rows"]), rel=1e-9
        )
        assert winner["search"]["best_metrics"]["log_loss"] == pytest.approx(clf2["best_value"])
    active = manager.get_active_version(CLASSIFIER_MODEL)
    if clf2["promoted"]:
        assert clf2["candidate_value"] < clf2["baseline_value"] - 1e-4
        assert active.version == second["rollback"]["restored"] == clf2["new_version"]
    else:
        assert active.version == clf2["baseline_version"]
    # every version is kept, the audit log holds both rollbacks
    history = manager.get_version_history(CLASSIFIER_MODEL)
    # 1.0.0, two drill releases, and the run-2 version unless the search re-found the champion
    assert len(history) == 3 + (clf2["new_version"] is not None)
    actions = [d.action for d in manager.get_deployment_history(CLASSIFIER_MODEL)]
    assert actions.count("rollback") == 2
    assert manager.get_active_version(RULE_MODEL) is not None


def test_demo_on_a_users_csv(tmp_path, monkeypatch, capsys) -> None:
    from kaizenml.demo.data import generate_ohlcv

    monkeypatch.setenv("KAIZENML_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    bars = generate_ohlcv(3_000, seed=9)
    path = tmp_path / "my bars.csv"
    with open(path, "w") as fh:
        fh.write("When;Px Open;Px High;Px Low;Px Last;Qty\n")
        for i in range(3_000):
            ts = str(bars["timestamp"][i])[:19]
            fh.write(
                f"{ts};{bars['open'][i]};{bars['high'][i]};{bars['low'][i]};"
                f"{bars['close'][i]};{bars['volume'][i]}\n"
            )
    argv = [
        "demo",
        "--quick",
        "--no-progress",
        "--json",
        "--data",
        str(path),
        "--timestamp-col",
        "When",
        "--open-col",
        "Px Open",
        "--high-col",
        "Px High",
        "--low-col",
        "Px Low",
        "--close-col",
        "Px Last",
        "--volume-col",
        "Qty",
        "--sep",
        ";",
    ]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["data"] == {"source": "my bars.csv (my bars)", "bars": 3_000}
    # a missing column is a usage error that names the option to use
    assert main(["demo", "--quick", "--data", str(path), "--sep", ";", "--no-progress"]) == 2
    assert "--close-col" in capsys.readouterr().err
