"""Metric comparison, recommendations, rollback plans and their execution."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kaizenml import StateError, ValidationError
from kaizenml.versioning import (
    ModelVersionManager,
    RollbackPlan,
    diff_metrics,
    metric_direction,
    recommend,
)

W = {"w": np.ones(2)}


@pytest.mark.parametrize(
    ("name", "direction"),
    [("accuracy", "higher"), ("win_rate", "higher"), ("sharpe", "higher"),
     ("sortino", "higher"), ("return", "higher"), ("auc", "higher"), ("f1", "higher"),
     ("precision", "higher"), ("recall", "higher"), ("profit", "higher"),
     ("val_accuracy", "higher"), ("Sharpe_Ratio", "higher"), ("loss", "lower"),
     ("val_loss", "lower"), ("drawdown", "lower"), ("max_drawdown", "lower"),
     ("mse", "lower"), ("mae", "lower"), ("rmse", "lower"), ("error", "lower"),
     ("volatility", "lower"), ("test-mse", "lower"), ("log_loss", "lower"),
     ("mystery", None), ("lossy_sharpe", "higher"), ("precisionish", None)],
)
def test_metric_direction(name: str, direction: str | None) -> None:
    assert metric_direction(name) == direction


def test_direction_overrides() -> None:
    assert metric_direction("mystery", {"mystery": "minimize"}) == "lower"
    assert metric_direction("loss", {"loss": "higher"}) == "higher"
    with pytest.raises(ValidationError, match="direction"):
        metric_direction("x", {"x": "up"})


def test_diff_values() -> None:
    diffs = {d.name: d for d in diff_metrics(
        {"sharpe": 1.0, "max_drawdown": 0.2, "n_trades": 10, "old": 1.0, "zero_loss": 0.0},
        {"sharpe": 1.5, "max_drawdown": 0.25, "n_trades": 10, "new": 2.0, "zero_loss": 0.5},
    )}
    s = diffs["sharpe"]
    assert (s.value_a, s.value_b, s.absolute_change, s.relative_change) == (1.0, 1.5, 0.5, 0.5)
    assert (s.direction, s.verdict) == ("higher", "better")
    d = diffs["max_drawdown"]
    assert d.absolute_change == pytest.approx(0.05) and d.relative_change == pytest.approx(0.25)
    assert d.verdict == "worse"
    assert diffs["n_trades"].verdict == "unknown" and diffs["n_trades"].relative_change == 0.0
    assert diffs["old"].verdict == "missing" and diffs["old"].value_b is None
    assert diffs["new"].verdict == "missing" and diffs["new"].value_a is None
    z = diffs["zero_loss"]
    assert z.relative_change is None and z.verdict == "worse"


def test_recommend_confidence_formula() -> None:
    # sharpe +10% (saturates at 5%): +1; loss -2.5%: +0.5; mean 0.75
    diffs = diff_metrics({"sharpe": 1.0, "loss": 0.4}, {"sharpe": 1.1, "loss": 0.39})
    rec = recommend(diffs, b_is_newer=True)
    assert rec.action == "upgrade" and rec.confidence == pytest.approx(0.75)
    assert "sharpe 1 -> 1.1" in rec.reasoning and "loss 0.4 -> 0.39" in rec.reasoning
    assert recommend(diffs, b_is_newer=False).action == "rollback"
    # sharpe +1% (+0.2) and max_drawdown +10% worse (-1): mean -0.4 -> keep with 0.4
    diffs = diff_metrics(
        {"sharpe": 1.0, "max_drawdown": 0.2}, {"sharpe": 1.01, "max_drawdown": 0.22}
    )
    rec = recommend(diffs, b_is_newer=True)
    assert rec.action == "keep" and rec.confidence == pytest.approx(0.4)
    assert "worse: max_drawdown" in rec.reasoning
    none = recommend(diff_metrics({"foo": 1.0}, {"foo": 2.0}), b_is_newer=True)
    assert (none.action, none.confidence) == ("keep", 0.0) and "foo" in none.reasoning


def test_compare_versions(manager: ModelVersionManager) -> None:
    manager.create_version("m", W, change_type="architecture",
                           metrics={"sharpe": 1.0, "max_drawdown": 0.2, "accuracy": 0.55})
    manager.create_version("m", W, change_type="retrain",
                           metrics={"sharpe": 1.3, "max_drawdown": 0.18, "accuracy": 0.56})
    cmp = manager.compare_versions("m", "1.0.0", "1.1.0")
    assert (cmp.version_a, cmp.version_b) == ("1.0.0", "1.1.0")
    assert [d.name for d in cmp.metrics] == ["accuracy", "max_drawdown", "sharpe"]
    assert cmp.metric("sharpe").relative_change == pytest.approx(0.3)
    assert cmp.metric("max_drawdown").verdict == "better"
    # evidence: accuracy +1.8% -> 0.3636..., drawdown -10% -> 1, sharpe +30% -> 1
    expected = (0.01 / 0.55 / 0.05 + 1 + 1) / 3
    assert cmp.recommendation.action == "upgrade"
    assert cmp.recommendation.confidence == pytest.approx(expected)
    back = manager.compare_versions("m", "1.1.0", "1.0.0")
    assert back.recommendation.action == "keep"
    assert back.recommendation.confidence == pytest.approx(expected, rel=0.05)


def test_configured_directions(db_url: str, art_root: Path) -> None:
    mgr = ModelVersionManager(db_url, art_root, metric_directions={"slippage_bps": "lower"})
    mgr.create_version("m", W, change_type="architecture", metrics={"slippage_bps": 4.0})
    mgr.create_version("m", W, change_type="bugfix", metrics={"slippage_bps": 3.0})
    cmp = mgr.compare_versions("m", "1.0.0", "1.0.1")
    assert cmp.metric("slippage_bps").verdict == "better"
    assert cmp.recommendation.action == "upgrade"
    with pytest.raises(ValidationError, match="metric_directions"):
        ModelVersionManager(db_url, art_root, metric_directions={"x": "sideways"})


@pytest.fixture
def deployed(manager: ModelVersionManager) -> ModelVersionManager:
    manager.create_version("m", W, change_type="architecture",
                           metrics={"sharpe": 1.0, "max_drawdown": 0.2})        # 1.0.0
    manager.create_version("m", W, change_type="retrain",
                           metrics={"sharpe": 1.1, "max_drawdown": 0.2})        # 1.1.0
    manager.create_version("m", W, change_type="bugfix",
                           metrics={"sharpe": 1.15, "max_drawdown": 0.21})      # 1.1.1
    manager.create_version("m", W, change_type="architecture",
                           metrics={"sharpe": 1.2, "max_drawdown": 0.2})        # 2.0.0
    manager.set_active_version("m", "2.0.0", changed_by="ana", reason="launch")
    return manager


def _checks(plan: RollbackPlan) -> dict[str, bool]:
    return {c.name: c.passed for c in plan.checks}


def test_plan_checks_and_risk(deployed: ModelVersionManager) -> None:
    plan = deployed.create_rollback_plan("m", "1.1.1", "live drawdown", created_by="bo")
    assert plan.status == "pending" and plan.plan_id >= 1
    assert (plan.from_version, plan.to_version, plan.reason) == ("2.0.0", "1.1.1", "live drawdown")
    assert _checks(plan) == {"target_exists": True, "artifact_valid": True,
                             "not_already_active": True, "metric_thresholds": True,
                             "major_version_change": False}
    major = next(c for c in plan.checks if c.name == "major_version_change")
    assert not major.blocking and "2.0.0 -> 1.1.1" in major.message
    assert plan.passed and plan.impact.version_jump == "major" and plan.impact.risk == "high"
    sharpe = next(d for d in plan.impact.metric_changes if d.name == "sharpe")
    assert (sharpe.value_a, sharpe.value_b, sharpe.verdict) == (1.2, 1.15, "worse")
    assert deployed.get_rollback_plan(plan.plan_id) == plan  # persisted as returned
    assert deployed.list_rollback_plans("m")[0].plan_id == plan.plan_id


def test_risk_levels(deployed: ModelVersionManager) -> None:
    deployed.create_version("m", W, change_type="bugfix",
                            metrics={"sharpe": 1.1, "max_drawdown": 0.25})  # 2.0.1
    deployed.set_active_version("m", "2.0.1")
    low = deployed.create_rollback_plan("m", "2.0.0")  # patch jump, every metric better
    assert (low.impact.version_jump, low.impact.risk) == ("patch", "low")
    deployed.set_active_version("m", "1.1.1")
    worse = deployed.create_rollback_plan("m", "1.1.0")  # patch jump, sharpe worse
    assert (worse.impact.version_jump, worse.impact.risk) == ("patch", "medium")
    deployed.set_active_version("m", "1.1.0")
    plan = deployed.create_rollback_plan("m", "1.0.0")  # minor jump, sharpe -9%
    assert (plan.impact.version_jump, plan.impact.risk) == ("minor", "medium")


def test_failing_checks(deployed: ModelVersionManager, art_root: Path) -> None:
    missing = deployed.create_rollback_plan("m", "1.7.0")
    assert _checks(missing)["target_exists"] is False and missing.impact.risk == "high"
    active = deployed.create_rollback_plan("m", "2.0.0")
    assert _checks(active)["not_already_active"] is False
    # sharpe 1.2 -> 1.0 is -16.7%: inside the default 20 %, outside a 10 % threshold
    assert _checks(deployed.create_rollback_plan("m", "1.0.0"))["metric_thresholds"]
    strict = deployed.create_rollback_plan("m", "1.0.0", max_degradation={"sharpe": 0.1})
    assert not _checks(strict)["metric_thresholds"]
    assert "sharpe 1.2 -> 1" in next(c.message for c in strict.checks if not c.passed)
    blocked = deployed.create_rollback_plan("m", "1.0.0", allow_major=False)
    assert not blocked.passed
    (art_root / "m" / "1.1.0" / "arrays.npz").write_bytes(b"garbage")
    corrupt = deployed.create_rollback_plan("m", "1.1.0")
    msg = next(c.message for c in corrupt.checks if c.name == "artifact_valid")
    assert not _checks(corrupt)["artifact_valid"] and "arrays.npz" in msg


def test_manager_thresholds(db_url: str, art_root: Path) -> None:
    mgr = ModelVersionManager(db_url, art_root, rollback_thresholds=0.05)
    mgr.create_version("m", W, change_type="architecture", metrics={"sharpe": 1.0})
    mgr.create_version("m", W, change_type="retrain", metrics={"sharpe": 1.1})
    mgr.set_active_version("m", "1.1.0")
    assert not mgr.create_rollback_plan("m", "1.0.0").passed  # -9.1% > 5%
    assert mgr.create_rollback_plan("m", "1.0.0", max_degradation=0.1).passed


def test_execute_rollback_success(deployed: ModelVersionManager) -> None:
    plan = deployed.create_rollback_plan("m", "1.1.1", "live drawdown", created_by="bo")
    result = deployed.execute_rollback("m", plan, executed_by="carol")
    assert result.success and (result.from_version, result.to_version) == ("2.0.0", "1.1.1")
    assert "1.1.1" in result.message and "risk high" in result.message
    assert result.plan.status == "executed" and result.plan.executed_at is not None
    assert deployed.get_active_version("m").version == "1.1.1"
    log = deployed.get_deployment_history("m")[0]
    assert (log.from_version, log.to_version, log.changed_by, log.reason, log.action,
            log.rollback_plan_id) == ("2.0.0", "1.1.1", "carol", "live drawdown", "rollback",
                                      plan.plan_id)
    with pytest.raises(StateError, match="executed"):
        deployed.execute_rollback("m", plan.plan_id)


def test_execute_rollback_by_version(deployed: ModelVersionManager) -> None:
    result = deployed.execute_rollback("m", "1.1.0", reason="bad fills", executed_by="dan")
    assert result.success and deployed.get_active_version("m").version == "1.1.0"
    assert result.plan.reason == "bad fills" and result.plan.created_by == "dan"


def test_failed_rollback_leaves_active_untouched(
    deployed: ModelVersionManager, art_root: Path
) -> None:
    plan = deployed.create_rollback_plan("m", "1.1.0", "try")
    assert plan.passed
    # the artifact gets corrupted between planning and execution: the rerun catches it
    (art_root / "m" / "1.1.0" / "arrays.npz").write_bytes(b"PK not a zip")
    result = deployed.execute_rollback("m", plan)
    assert not result.success and "arrays.npz" in result.message
    assert result.plan.status == "failed" and result.plan.result_message == result.message
    assert deployed.get_active_version("m").version == "2.0.0"
    assert len(deployed.get_deployment_history("m")) == 1
    blocked = deployed.execute_rollback("m", "1.0.0", allow_major=False)
    assert not blocked.success and "major_version_change" in blocked.message
    assert deployed.get_active_version("m").version == "2.0.0"


def test_rollback_wrong_model_plan(deployed: ModelVersionManager) -> None:
    deployed.create_version("z", W, change_type="architecture")
    plan = deployed.create_rollback_plan("m", "1.1.0")
    with pytest.raises(ValidationError, match="for model 'm'"):
        deployed.execute_rollback("z", plan)


def test_concurrent_switch_during_rollback_is_refused(
    deployed: ModelVersionManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = deployed.create_rollback_plan("m", "1.1.0", "try")
    real = deployed._rollback_checks

    def checks_then_someone_deploys(*args, **kwargs):  # type: ignore[no-untyped-def]
        out = real(*args, **kwargs)
        deployed.set_active_version("m", "1.1.1", changed_by="other", reason="hotfix")
        return out

    monkeypatch.setattr(deployed, "_rollback_checks", checks_then_someone_deploys)
    result = deployed.execute_rollback("m", plan)
    assert not result.success and "changed to '1.1.1'" in result.message
    assert result.plan.status == "failed"
    assert deployed.get_active_version("m").version == "1.1.1"


def test_threshold_and_author_validation(db_url: str, art_root: Path,
                                         deployed: ModelVersionManager) -> None:
    with pytest.raises(ValidationError, match="nan"):
        ModelVersionManager(db_url, art_root, rollback_thresholds=float("nan"))
    with pytest.raises(ValidationError, match=r"max_degradation\['sharpe'\]"):
        deployed.create_rollback_plan("m", "1.1.0", max_degradation={"sharpe": -0.1})
    with pytest.raises(ValidationError, match="created_by"):
        deployed.create_rollback_plan("m", "1.1.0", created_by="x" * 300)
    # an infinite threshold disables the metric check
    plan = deployed.create_rollback_plan("m", "1.0.0", max_degradation=float("inf"))
    assert next(c for c in plan.checks if c.name == "metric_thresholds").passed
