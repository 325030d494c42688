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
    got = {}

    def fit(params, dataset):
        got.update(dataset)
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
    np.testing.assert_array_equal(got["rsi_14"], expected["rsi_14"])
    np.testing.assert_array_equal(got["close"], bars["close"])
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
