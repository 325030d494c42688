"""kaizenml.loop.improve_model: tune, version, promote only on a real improvement."""

from __future__ import annotations

import numpy as np
import pytest

from kaizenml import KaizenTypeError, NotFoundError, TrialPruned, ValidationError
from kaizenml.loop import improve_model
from kaizenml.optimize import Float, Int
from kaizenml.versioning import ModelVersionManager


@pytest.fixture()
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("KAIZENML_HOME", str(tmp_path / "home"))
    url = f"sqlite:///{tmp_path / 'k.db'}"
    manager = ModelVersionManager(url, tmp_path / "artifacts")
    return url, manager


def quadratic(target: float):
    def fit(params, dataset):
        loss = (params["x"] - target) ** 2
        return {"loss": loss, "other": 1.0}, {"w": np.array([params["x"], target])}

    return fit


SPACE = {"x": Float(0.0, 1.0)}


def run(env, fit, **kw):
    url, manager = env
    opts = dict(
        space=SPACE,
        train_and_evaluate=fit,
        metric="loss",
        direction="minimize",
        strategy="random",
        max_trials=12,
        seed=0,
        storage=url,
        version_manager=manager,
    )
    opts.update(kw)
    return improve_model("toy", **opts)


def test_first_run_creates_and_promotes(env) -> None:
    _, manager = env
    rep = run(env, quadratic(0.3))
    best = min(rep.result.completed_trials, key=lambda t: t.value)
    assert rep.n_trials == 12 and rep.n_complete == 12
    assert rep.best_params == best.params
    assert rep.best_value == pytest.approx((best.params["x"] - 0.3) ** 2)
    assert rep.new_version == "1.0.0" and rep.promoted and rep.won
    assert rep.reason == "first version of the model"
    assert manager.get_active_version("toy").version == "1.0.0"
    art = manager.load_artifact("toy", "1.0.0")
    np.testing.assert_array_equal(art["w"], [best.params["x"], 0.3])
    assert art["params"] == best.params and art["feature_names"] == []
    assert manager.get_version("toy", "1.0.0").metrics["loss"] == pytest.approx(rep.best_value)
    d = rep.to_dict()
    assert d["promoted"] is True and "result" not in d


def test_champion_reevaluated_and_kept_when_challenger_loses(env) -> None:
    _, manager = env
    first = run(env, quadratic(0.3))
    champion_x = first.best_params["x"]
    # the world changed: the optimum moved to 0.9, and the new search is given a space region
    # far from it, so the champion (re-measured on the new objective) must stay
    rep = run(env, quadratic(0.9), space={"x": Float(0.0, 0.2)}, seed=1)
    assert rep.baseline_version == "1.0.0" and rep.baseline_source == "reevaluated"
    assert rep.baseline_value == pytest.approx((champion_x - 0.9) ** 2)
    assert rep.new_version == "1.1.0"
    assert not rep.promoted and not rep.won
    assert "1.0.0 stays active" in rep.reason
    assert manager.get_active_version("toy").version == "1.0.0"
    assert manager.get_version("toy", "1.1.0").change_type == "hyperparameter"
    assert manager.get_version("toy", "1.1.0").parent_version == "1.0.0"


def test_promotes_when_better_by_margin_only(env) -> None:
    _, manager = env
    run(env, quadratic(0.3), max_trials=3)
    # same objective, more trials: the study resumes and finds a better x
    rep = run(env, quadratic(0.3), max_trials=20, seed=5, min_improvement=10.0)
    assert rep.result.n_trials == 23  # 3 old + 20 new trials in one resumed study
    assert rep.n_trials == 20
    assert rep.improvement is not None and 0 < rep.improvement < 10.0
    assert not rep.promoted and "by more than 10" in rep.reason
    rep2 = run(env, quadratic(0.3), max_trials=1, seed=6)
    # the study's best is the version created above (not active): it now wins with margin 0
    assert rep2.promoted and manager.get_active_version("toy").version == rep2.new_version
    assert rep2.best_value == pytest.approx(rep.best_value)


def test_promote_if_callable_and_never(env) -> None:
    _, manager = env
    seen = {}

    def rule(candidate, active):
        seen["args"] = (dict(candidate), active)
        return False

    rep = run(env, quadratic(0.3), promote_if=rule)
    assert seen["args"][1] is None and seen["args"][0]["loss"] == pytest.approx(rep.best_value)
    assert not rep.promoted and rep.new_version == "1.0.0"
    assert manager.get_active_version("toy") is None
    rep = run(env, quadratic(0.3), promote_if="never", max_trials=5, seed=3)
    assert not rep.promoted and manager.get_active_version("toy") is None


def test_failed_runs_never_touch_the_active_version(env) -> None:
    _, manager = env
    run(env, quadratic(0.3))

    def broken(params, dataset):
        raise RuntimeError("data feed down")

    rep = run(env, broken, seed=2)
    assert rep.n_failed == 12 and rep.new_version is None and not rep.promoted
    assert "no trial completed" in rep.reason or "active version's" in rep.reason
    assert manager.get_active_version("toy").version == "1.0.0"

    calls = {"n": 0}

    def interrupted(params, dataset):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return {"loss": -1.0}  # far better than the champion

    rep = run(env, interrupted, seed=4)
    assert rep.interrupted and rep.new_version is None and not rep.promoted
    assert manager.get_active_version("toy").version == "1.0.0"

    calls: list[int] = []

    def bad_artifact(params, dataset):
        calls.append(1)
        return {"loss": -1.0}, {"model": object()}  # cannot be stored as numpy/JSON

    # refused in the first trial that returns it (the version store would refuse it after the
    # whole search), and the search stops there
    with pytest.raises(KaizenTypeError, match=r"train_and_evaluate cannot be versioned: .*JSON"):
        run(env, bad_artifact, seed=7)
    assert len(calls) == 1
    assert manager.get_active_version("toy").version == "1.0.0"
    assert [v.version for v in manager.get_version_history("toy")] == ["1.0.0"]

    def reserved_key(params, dataset):
        return {"loss": -1.0}, {"params": [1, 2]}

    with pytest.raises(KaizenTypeError, match=r"the key 'params' is reserved by improve_model"):
        run(env, reserved_key, seed=8)
    with pytest.raises(NotFoundError, match=r"^features=\['nope'\]: .*'nope' is neither"):
        run(env, reserved_key, features=["nope"], data={"close": np.arange(50.0)})
    with pytest.raises(KaizenTypeError, match="tags must be a mapping of str to str, got list"):
        improve_model("toy", space=SPACE, train_and_evaluate=reserved_key, metric="loss",
                      direction="minimize", max_trials=1, tags=["a"])


def test_pruning_over_epochs(env) -> None:
    def fit(params, dataset, trial):
        # loss curve per epoch: decays to (x - 0.3)^2; poor x are clearly worse early on
        final = (params["x"] - 0.3) ** 2
        for epoch in range(10):
            trial.report(epoch, final + 1.0 / (epoch + 1))
            if trial.should_prune():
                raise TrialPruned()
        return {"loss": final}

    rep = run(env, fit, max_trials=30, pruner="median")
    assert rep.n_pruned > 0 and rep.n_complete + rep.n_pruned == 30
    assert rep.promoted


def test_features_come_from_the_store(env, tmp_path) -> None:
    from kaizenml.demo.data import generate_ohlcv
    from kaizenml.features import FeatureStore

    url, manager = env
    store = FeatureStore(url)
    bars = generate_ohlcv(600, seed=2)
    data = {k: bars[k] for k in ("timestamp", "close", "volume")}
    expected = store.compute_features(["rsi_14", "volume_ratio"], data)
    got = []

    def fit(params, dataset):
        got.append(dict(dataset))
        return {"loss": params["k"]}

    rep = improve_model(
        "feat",
        space={"k": Int(1, 5)},
        train_and_evaluate=fit,
        metric="loss",
        direction="minimize",
        features=["rsi_14", "volume_ratio"],
        data=data,
        strategy="random",
        max_trials=4,
        seed=0,
        storage=url,
        feature_store=store,
        version_manager=manager,
    )
    assert rep.feature_names == ["rsi_14", "volume_ratio"]
    # by default the latest 20 % of the 600 rows judge the winner: the 4 trials get the first
    # 480 rows, the winner's holdout measurement the last 120, all cut from the store's columns
    assert rep.decided_on == "holdout" and rep.holdout_rows == 120 and len(got) == 5
    for seen, rows in [(g, slice(0, 480)) for g in got[:4]] + [(got[4], slice(480, 600))]:
        assert set(seen) == {"timestamp", "close", "volume", "rsi_14", "volume_ratio"}
        np.testing.assert_array_equal(seen["rsi_14"], expected["rsi_14"][rows])
        np.testing.assert_array_equal(seen["volume_ratio"], expected["volume_ratio"][rows])
        np.testing.assert_array_equal(seen["close"], bars["close"][rows])
    assert manager.load_artifact("feat", rep.new_version)["feature_names"] == rep.feature_names
    assert store.get_lineage("rsi_14").n_rows == 600


def test_bad_arguments(env) -> None:
    with pytest.raises(ValidationError, match="model_name"):
        improve_model(
            "../evil",
            space=SPACE,
            train_and_evaluate=quadratic(0.3),
            metric="loss",
            direction="minimize",
        )
    with pytest.raises(ValidationError, match="promote_if"):
        run(env, quadratic(0.3), promote_if="sometimes")
    with pytest.raises(ValidationError, match="direction"):
        run(env, quadratic(0.3), direction="up")
    with pytest.raises(ValidationError, match="needs data"):
        run(env, quadratic(0.3), features=["rsi_14"])
    # a metric the function does not return fails every trial, with the fix in the error
    rep = run(env, quadratic(0.3), metric="sharpe", direction="maximize")
    assert rep.n_failed == 12 and rep.new_version is None
    assert "without metric='sharpe'" in rep.result.trials[0].error


def test_new_data_new_study_seeded_with_the_champion(env) -> None:
    _, manager = env

    def fit(params, dataset):
        # the data moves the optimum: it sits at the mean of the column "target"
        return {"loss": (params["x"] - float(np.mean(dataset["target"]))) ** 2}

    day1 = {"target": np.full(10, 0.3)}
    rep1 = run(env, fit, data=day1, max_trials=6)
    again = run(env, fit, data=day1, max_trials=4, seed=1)
    assert again.study_name == rep1.study_name  # same data: the study resumes
    assert again.result.n_trials == 10
    champion = manager.load_artifact("toy", again.active_version)["params"]

    day2 = {"target": np.full(10, 0.6)}
    rep2 = run(env, fit, data=day2, max_trials=6, seed=2)
    assert rep2.study_name != rep1.study_name  # new data: a new study...
    first = rep2.result.trials[0]
    assert first.params == champion  # ...whose first trial re-measures the champion
    assert rep2.baseline_source == "reevaluated"
    assert rep2.baseline_value == pytest.approx((champion["x"] - 0.6) ** 2)
    assert rep2.baseline_value == pytest.approx(first.value)
    assert rep2.n_trials == 6


def test_a_rejected_winner_is_not_versioned_again_on_rerun(env) -> None:
    """The rerun on the same data resumes the study; when its best trial is still one an earlier
    run versioned (and did not promote), that version is reused, not duplicated."""
    url, manager = env

    def fit(params, dataset):
        return {"loss": (params["x"] - 0.3) ** 2}

    run(env, fit, max_trials=1)  # 1.0.0, promoted as the first version
    reports = [run(env, fit, max_trials=3, min_improvement=1.0) for _ in range(3)]
    candidates = {r.new_version for r in reports}
    assert len(candidates) == 1 and None not in candidates  # one candidate version, reused
    assert not any(r.promoted for r in reports)
    assert len(manager.get_version_history("toy")) == 2


# --- the winner's curse: promotion decided on rows the search never saw -----------------------

N_ROWS = 1000


def returns_data(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ret = 0.01 * rng.standard_normal(N_ROWS)
    return {"timestamp": np.arange(N_ROWS, dtype=np.int64), "ret": ret}


def no_edge_sharpe(params, dataset):
    """Per-bar Sharpe of a +-1 position pattern fixed by x, on i.i.d. zero-mean returns: every x,
    the champion's included, has a true Sharpe of exactly 0; measured ones differ by noise."""
    r = dataset["ret"]
    w = np.random.default_rng(int(round(params["x"] * 1e9))).choice([-1.0, 1.0], size=len(r))
    pnl = w * r
    return {"sharpe": float(pnl.mean() / pnl.std())}


def with_champion(manager, name: str, x: float) -> None:
    v = manager.create_version(name, {"params": {"x": x}}, change_type="hyperparameter")
    manager.set_active_version(name, v.version)


def sharpe_run(env, name: str, seed: int, **kw):
    url, manager = env
    return improve_model(
        name, space=SPACE, train_and_evaluate=no_edge_sharpe, metric="sharpe",
        direction="maximize", strategy="random", max_trials=12, seed=seed,
        data=returns_data(100 + seed), storage=url, version_manager=manager, **kw,
    )


def test_holdout_measures_winner_and_champion_on_unseen_later_rows(env) -> None:
    _, manager = env
    with_champion(manager, "h", 0.5)
    seen: list[int] = []

    def fit(params, dataset):
        seen.append(len(dataset["ret"]))
        return no_edge_sharpe(params, dataset)

    data = returns_data(100)
    url, _ = env
    rep = improve_model(
        "h", space=SPACE, train_and_evaluate=fit, metric="sharpe", direction="maximize",
        strategy="random", max_trials=12, seed=1, data=data, storage=url,
        version_manager=manager, holdout=0.25,
    )
    assert rep.best_params != {"x": 0.5}  # a challenger won the search (else nothing to judge)
    early = {k: v[:750] for k, v in data.items()}
    late = {k: v[750:] for k, v in data.items()}
    # the search saw only the first 750 rows; the holdout runs saw only the last 250
    assert seen.count(750) == 12 and seen.count(250) == 2 and len(seen) == 14
    assert rep.holdout_rows == 250 and rep.decided_on == "holdout"
    champion = no_edge_sharpe({"x": 0.5}, late)["sharpe"]
    winner = no_edge_sharpe(rep.best_params, late)["sharpe"]
    assert rep.best_value == pytest.approx(no_edge_sharpe(rep.best_params, early)["sharpe"])
    assert rep.best_value == max(t.value for t in rep.result.completed_trials)
    assert rep.candidate_value == pytest.approx(winner)
    assert rep.baseline_value == pytest.approx(champion)
    assert rep.baseline_source == "reevaluated"
    assert rep.improvement == pytest.approx(winner - champion)
    assert rep.promoted == (winner > champion)
    # the version carries the holdout metrics; the search's score is kept in its artifact
    assert manager.get_version("h", rep.new_version).metrics == {"sharpe": pytest.approx(winner)}
    search = manager.load_artifact("h", rep.new_version)["search"]
    assert search["best_metrics"] == {"sharpe": pytest.approx(rep.best_value)}
    assert search["decided_on"] == "holdout" and search["holdout_rows"] == 250
    assert "holdout rows" in rep.reason and "holdout rows" in rep.summary()


def test_no_promotion_on_selection_noise(env) -> None:
    """Every challenger is truly as good as the champion (true Sharpe 0 for every x). Judged on
    the search's own scores (holdout=None), the best of 12 noisy trials beats the champion's
    single measurement whenever it is not the champion itself, so it is always promoted; judged
    by default, on the latest 200 of the 1000 rows, the gap is noise around 0 and about half
    are promoted."""
    _, manager = env
    by_search, by_holdout = [], []
    for seed in range(16):
        with_champion(manager, f"s{seed}", 0.5)
        with_champion(manager, f"h{seed}", 0.5)
        by_search.append(sharpe_run(env, f"s{seed}", seed, holdout=None))
        by_holdout.append(sharpe_run(env, f"h{seed}", seed))
    # when the champion itself wins the search nothing is versioned, under either rule
    search = [r for r in by_search if r.new_version is not None]
    holdout = [r for r in by_holdout if r.new_version is not None]
    assert not any(r.promoted for r in by_search + by_holdout if r.new_version is None)
    assert len(search) >= 10 and len(holdout) >= 10
    assert all(r.decided_on == "search" and r.improvement > 0 and r.promoted for r in search)
    assert all(r.decided_on == "holdout" and r.holdout_rows == 200 for r in holdout)
    n_promoted = sum(r.promoted for r in holdout)
    assert 1 <= n_promoted <= 0.75 * len(holdout)
    # the holdout gap is unbiased: its mean lies within 2 standard errors of 0 (the sd of a
    # difference of two per-bar Sharpes over 200 rows is sqrt(2 / 200)), while the search's
    # gap is the selection bias, more than 3 standard errors above 0
    gaps = np.array([r.improvement for r in holdout])
    assert abs(gaps.mean()) < 2 * np.sqrt(2 / 200) / np.sqrt(len(gaps))
    search_gaps = np.array([r.improvement for r in search])
    assert search_gaps.mean() > 3 * np.sqrt(2 / 1000) / np.sqrt(len(search_gaps))


def test_evaluate_scores_the_trained_artifacts(env) -> None:
    url, manager = env
    day1, data = returns_data(3), returns_data(7)
    calls = []
    tail = {"ret": day1["ret"][-100:]}

    def fit(params, dataset):
        mu = float(np.mean(dataset["ret"]))
        loss = float(np.mean((dataset["ret"] - params["x"] * mu) ** 2))
        return {"loss": loss}, {"mu": np.array([mu])}

    def evaluate(params, artifact, holdout):
        calls.append((dict(params), dict(artifact)))
        np.testing.assert_array_equal(holdout["ret"], tail["ret"])
        return {"loss": float(np.mean((holdout["ret"] - params["x"] * artifact["mu"][0]) ** 2))}

    opts = dict(space=SPACE, train_and_evaluate=fit, metric="loss", direction="minimize",
                strategy="random", max_trials=6, storage=url, version_manager=manager,
                holdout=100, evaluate=evaluate)
    first = improve_model("ev", data=day1, seed=0, **opts)
    assert first.promoted and first.reason == "first version of the model"
    champ_mu = manager.load_artifact("ev", first.new_version)["mu"][0]
    calls.clear()
    tail["ret"] = data["ret"][-100:]
    rep = improve_model("ev", data=data, seed=1, **opts)
    assert rep.new_version is not None and rep.decided_on == "holdout"
    late = data["ret"][-100:]
    winner_mu = float(np.mean(data["ret"][:-100]))  # trained on the search rows only
    assert calls[0][1].keys() == {"mu"} and calls[1][1].keys() == {"mu"}  # reserved keys gone
    assert calls[1][0] == first.best_params
    want = float(np.mean((late - rep.best_params["x"] * winner_mu) ** 2))
    base = float(np.mean((late - first.best_params["x"] * champ_mu) ** 2))
    assert rep.candidate_value == pytest.approx(want, rel=1e-12)
    assert rep.baseline_value == pytest.approx(base, rel=1e-12)
    assert rep.promoted == (want < base)


def test_holdout_bad_arguments(env) -> None:
    data = returns_data(0)
    with pytest.raises(ValidationError, match=r"holdout=0.25 needs data="):
        run(env, quadratic(0.3), holdout=0.25)
    with pytest.raises(ValidationError, match=r"holdout=1.5: a float .* \(0, 1\)"):
        run(env, quadratic(0.3), data=data, holdout=1.5)
    with pytest.raises(ValidationError, match=r"holdout=0 rows"):
        run(env, quadratic(0.3), data=data, holdout=0)
    with pytest.raises(KaizenTypeError, match="holdout must be 'auto', a fraction"):
        run(env, quadratic(0.3), data=data, holdout=True)
    with pytest.raises(ValidationError, match=r"leaves 0 of the 1000 rows"):
        run(env, quadratic(0.3), data=data, holdout=N_ROWS)
    with pytest.raises(ValidationError, match=r"measures the holdout rows, but holdout=None"):
        run(env, quadratic(0.3), data=data, holdout=None, evaluate=lambda p, a, d: 0.0)
    # holdout="auto" with nothing to hold out: evaluate= is refused, not silently ignored
    with pytest.raises(ValidationError, match=r"evaluate=... .* pass data="):
        run(env, quadratic(0.3), evaluate=lambda p, a, d: 0.0)
    short = {k: v[:99] for k, v in data.items()}
    with pytest.raises(
        ValidationError,
        match=r"evaluate=... measures the held-out rows, but the data's 99 rows are fewer than "
        r"the 100 holdout='auto' needs",
    ):
        run(env, quadratic(0.3), data=short, evaluate=lambda p, a, d: 0.0)
    with pytest.raises(ValidationError, match=r"holdout='bogus' is not understood; pass 'auto'"):
        run(env, quadratic(0.3), data=data, holdout="bogus")
    with pytest.raises(ValidationError, match=r"holdout='Auto' is not understood"):
        run(env, quadratic(0.3), data=data, holdout="Auto")
    with pytest.raises(KaizenTypeError, match="evaluate must be callable, got int"):
        run(env, quadratic(0.3), data=data, holdout=0.2, evaluate=3)
    shuffled = {**data, "timestamp": data["timestamp"][::-1].copy()}
    with pytest.raises(ValidationError, match="'timestamp' goes back in time at row 1"):
        run(env, quadratic(0.3), data=shuffled, holdout=0.2)
    with pytest.raises(
        ValidationError, match=r"^holdout='auto' holds .* at row 1; .*, or pass holdout=None"
    ):
        run(env, quadratic(0.3), data=shuffled)  # the default holds out, so it checks the order
    with pytest.raises(ValidationError, match="columns differ in length"):
        run(env, quadratic(0.3), data={"a": np.zeros(10), "b": np.zeros(9)}, holdout=0.2)
    with pytest.raises(ValidationError, match=r"^holdout='auto' splits .* differ in length"):
        run(env, quadratic(0.3), data={"a": np.zeros(10), "b": np.zeros(9)})


def test_holdout_features_keep_history_and_stored_fallback(env) -> None:
    from kaizenml.demo.data import generate_ohlcv
    from kaizenml.features import FeatureStore

    url, manager = env
    store = FeatureStore(url)
    bars = generate_ohlcv(400, seed=3)
    data = {k: bars[k] for k in ("timestamp", "close")}
    full = store.compute_features(["rsi_14"], data)["rsi_14"]
    seen = []

    def fit(params, dataset):
        seen.append(np.asarray(dataset["rsi_14"]))
        return {"loss": (params["x"] - 0.3) ** 2 + float(np.nanmean(dataset["rsi_14"])) / 1e3}

    v = manager.create_version("f", {"params": {"y": 1}}, change_type="hyperparameter",
                               metrics={"loss": 0.5})
    manager.set_active_version("f", v.version)  # tuned over another space: not re-measurable
    rep = improve_model("f", space=SPACE, train_and_evaluate=fit, metric="loss",
                        direction="minimize", features=["rsi_14"], data=data, holdout=40,
                        strategy="random", max_trials=3, seed=0, storage=url,
                        feature_store=store, version_manager=manager)
    # computed on all 400 rows, then split: the held-out rows keep their 14-bar history
    assert all(len(s) == 360 for s in seen[:3]) and len(seen[3]) == 40
    np.testing.assert_array_equal(seen[0], full[:360])
    np.testing.assert_array_equal(seen[3], full[360:])
    assert not np.isnan(seen[3]).any()
    assert rep.baseline_source == "stored" and rep.baseline_value == 0.5
    x = rep.best_params["x"]
    want = (x - 0.3) ** 2 + float(np.nanmean(full[360:])) / 1e3
    assert rep.candidate_value == pytest.approx(want)
    assert rep.promoted == (want < 0.5)


def test_default_holds_out_the_latest_fifth(env) -> None:
    """With no holdout argument and enough rows, the latest 20 % of the rows decide: the search
    never receives them, and rerunning on the same data resumes the same study."""
    url, manager = env
    with_champion(manager, "d", 0.5)
    data = returns_data(5)
    seen: list[tuple[int, float]] = []

    def fit(params, dataset):
        seen.append((len(dataset["ret"]), float(dataset["timestamp"][0])))
        return no_edge_sharpe(params, dataset)

    opts = dict(space=SPACE, train_and_evaluate=fit, metric="sharpe", direction="maximize",
                strategy="random", max_trials=8, data=data, storage=url,
                version_manager=manager)
    rep = improve_model("d", seed=2, **opts)
    assert rep.decided_on == "holdout" and rep.holdout_rows == 200
    assert rep.best_params != {"x": 0.5}  # a challenger won the search (else nothing to judge)
    # 8 trials on rows 0..799 (the champion's re-measurement included), then the winner and
    # the champion on rows 800..999 alone
    assert seen == [(800, 0.0)] * 8 + [(200, 800.0)] * 2
    late = {k: v[800:] for k, v in data.items()}
    early = {k: v[:800] for k, v in data.items()}
    assert rep.best_value == pytest.approx(no_edge_sharpe(rep.best_params, early)["sharpe"])
    assert rep.candidate_value == pytest.approx(no_edge_sharpe(rep.best_params, late)["sharpe"])
    assert rep.baseline_value == pytest.approx(no_edge_sharpe({"x": 0.5}, late)["sharpe"])
    assert "on the 200 holdout rows" in rep.reason and "search's own" not in rep.reason
    # same data, same holdout: the same study resumes, and still never sees the last rows
    seen.clear()
    again = improve_model("d", seed=3, **{**opts, "max_trials": 3})
    assert again.study_name == rep.study_name and again.result.n_trials == 11
    assert all(n == 800 for n, _ in seen[:3]) and all(n == 200 for n, _ in seen[3:])
    # an explicit 0.2 is the same split, so the same study; holdout=None is another study
    assert improve_model("d", seed=4, holdout=0.2, **{**opts, "max_trials": 1}).study_name == (
        rep.study_name
    )
    assert improve_model("d", seed=4, holdout=None, **{**opts, "max_trials": 1}).study_name != (
        rep.study_name
    )


def test_default_on_short_data_decides_on_the_search_and_says_so(env) -> None:
    import logging
    url, manager = env
    with_champion(manager, "short", 0.5)
    data = {k: v[:99] for k, v in returns_data(6).items()}
    seen: list[int] = []

    def fit(params, dataset):
        seen.append(len(dataset["ret"]))
        return no_edge_sharpe(params, dataset)

    class Keep(logging.Handler):
        def __init__(self) -> None:
            super().__init__(logging.INFO)
            self.records: list[logging.LogRecord] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.records.append(record)

    # on the module's logger itself: the command line stops "kaizenml" records propagating
    log, keep = logging.getLogger("kaizenml.loop"), Keep()
    level = log.level
    log.addHandler(keep)
    log.setLevel(logging.INFO)
    try:
        rep = improve_model(
            "short", space=SPACE, train_and_evaluate=fit, metric="sharpe",
            direction="maximize", strategy="random", max_trials=6, seed=0, data=data,
            storage=url, version_manager=manager,
        )
    finally:
        log.removeHandler(keep)
        log.setLevel(level)
    assert seen == [99] * 6  # every row went to the search; nothing was measured apart
    assert rep.decided_on == "search" and rep.holdout_rows == 0
    assert rep.best_params != {"x": 0.5} and rep.new_version is not None
    champion = no_edge_sharpe({"x": 0.5}, data)["sharpe"]
    assert rep.baseline_value == pytest.approx(champion)
    assert rep.candidate_value == rep.best_value == max(t.value for t in rep.result.trials)
    assert rep.promoted == (rep.best_value > champion)
    assert rep.reason.endswith(
        "(decided on the search's own scores: the data's 99 rows are fewer than the 100 "
        "holdout='auto' needs to hold the latest 20% out)"
    )
    assert rep.reason in rep.summary()
    assert any("the data's 99 rows are fewer than the 100" in r.getMessage()
               for r in keep.records)
    # without data there is nothing to hold out and nothing to explain
    rep = run(env, quadratic(0.3))
    assert rep.decided_on == "search" and rep.reason == "first version of the model"
