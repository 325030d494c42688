"""The `kaizenml` command: output, --json, exit codes and messages, on a real store."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from kaizenml.cli import build_parser, main


@pytest.fixture()
def home(tmp_path, monkeypatch):
    """A store with versions of one model, one computed feature and one study."""
    from kaizenml.demo.data import generate_ohlcv
    from kaizenml.features import get_feature_store
    from kaizenml.optimize import Float, optimize_hyperparameters
    from kaizenml.storage import default_storage_url
    from kaizenml.versioning import get_model_version_manager

    monkeypatch.setenv("KAIZENML_HOME", str(tmp_path / "home"))
    mgr = get_model_version_manager()
    mgr.create_version(
        "m",
        {"w": np.ones(2)},
        change_type="architecture",
        metrics={"sharpe": 1.3, "max_drawdown": 0.09},
    )
    mgr.create_version(
        "m",
        {"w": np.ones(2) * 2},
        change_type="retrain",
        metrics={"sharpe": 1.5, "max_drawdown": 0.08},
    )
    mgr.create_version(
        "m",
        {"w": np.ones(2) * 3},
        change_type="retrain",
        metrics={"sharpe": 0.2, "max_drawdown": 0.30},
    )
    mgr.set_active_version("m", "1.1.0", reason="better sharpe")
    store = get_feature_store()
    bars = generate_ohlcv(500, seed=4)
    rsi = store.compute_feature("rsi_14", {"close": bars["close"]})
    values = []

    def objective(p):
        values.append((p["x"] - 0.25) ** 2)
        return values[-1]

    optimize_hyperparameters(
        {"x": Float(0.0, 1.0)},
        objective,
        strategy="random",
        max_trials=7,
        seed=3,
        storage=default_storage_url(),
        study_name="s1",
    )
    return {"manager": mgr, "rsi": rsi, "values": values, "path": tmp_path / "home"}


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_help_everywhere(capsys) -> None:
    parser = build_parser()
    paths = [[]]
    for group in ("studies", "features", "models"):
        paths.append([group])
    paths += [
        ["studies", "list"],
        ["studies", "show"],
        ["features", "list"],
        ["features", "stats"],
        ["features", "lineage"],
        ["models", "list"],
        ["models", "history"],
        ["models", "compare"],
        ["models", "rollback"],
        ["models", "activate"],
        ["demo"],
    ]
    for path in paths:
        code, out, _ = run(capsys, *path, "--help")
        assert code == 0 and out.startswith("usage: kaizenml"), path
        assert "--storage" in out and "--json" in out
    assert parser.prog == "kaizenml"
    code, _, err = run(capsys)
    assert code == 2 and "COMMAND" in err
    code, _, err = run(capsys, "models")
    assert code == 2 and "rollback" in err
    code, _, err = run(capsys, "models", "compare", "m")
    assert code == 2 and "required" in err
    code, out, _ = run(capsys, "--version")
    assert code == 0


def test_models_list_and_history(home, capsys) -> None:
    code, out, _ = run(capsys, "--json", "models", "list")
    assert code == 0
    assert json.loads(out) == [{"model": "m", "versions": 3, "latest": "1.2.0", "active": "1.1.0"}]
    code, out, _ = run(capsys, "models", "history", "m")
    assert code == 0
    lines = [ln for ln in out.splitlines() if "1." in ln and "retrain" in ln or "initial" in ln]
    assert any(ln.startswith("* 1.1.0") for ln in lines)
    code, out, _ = run(capsys, "models", "history", "m", "--json")
    data = json.loads(out)
    assert [v["version"] for v in data["versions"]] == ["1.2.0", "1.1.0", "1.0.0"]
    assert data["deployments"][0]["to_version"] == "1.1.0"
    code, out, err = run(capsys, "models", "history", "nope")
    assert code == 2 and out == ""
    assert "'nope'" in err and "kaizenml models list" in err


def test_models_compare_json(home, capsys) -> None:
    code, out, _ = run(capsys, "models", "compare", "m", "1.0.0", "1.1.0", "--json")
    assert code == 0
    data = json.loads(out)
    diffs = {d["name"]: d for d in data["metrics"]}
    assert diffs["sharpe"]["absolute_change"] == pytest.approx(0.2)
    assert diffs["sharpe"]["relative_change"] == pytest.approx(0.2 / 1.3)
    assert diffs["max_drawdown"]["absolute_change"] == pytest.approx(-0.01)
    assert diffs["max_drawdown"]["verdict"] == "better"
    assert data["recommendation"]["action"] == "upgrade"
    code, out, _ = run(capsys, "models", "compare", "m", "1.0.0", "1.1.0")
    assert "recommendation: upgrade" in out and "sharpe" in out
    code, _, err = run(capsys, "models", "compare", "m", "1.0.0", "7.0.0")
    assert code == 2 and "7.0.0" in err


def test_rollback_checks_and_exit_codes(home, capsys) -> None:
    mgr = home["manager"]
    code, out, _ = run(capsys, "models", "rollback", "m", "1.1.0", "--dry-run")
    assert code == 1 and "[FAIL] not_already_active" in out
    code, out, _ = run(capsys, "models", "rollback", "m", "1.0.0", "--dry-run")
    assert code == 0 and "all checks pass" in out
    assert mgr.get_active_version("m").version == "1.1.0"  # a dry run changes nothing
    code, out, _ = run(capsys, "models", "rollback", "m", "1.0.0", "--reason", "drill")
    assert code == 0 and "done" in out
    assert mgr.get_active_version("m").version == "1.0.0"
    assert mgr.get_deployment_history("m")[0].reason == "drill"
    # 1.2.0 loses 85 % of the Sharpe ratio: the metric check refuses it
    code, out, err = run(capsys, "models", "rollback", "m", "1.2.0")
    assert code == 1 and "[FAIL] metric_thresholds" in out and "unchanged" in err
    assert mgr.get_active_version("m").version == "1.0.0"
    code, out, _ = run(capsys, "--json", "models", "rollback", "m", "1.2.0")
    assert code == 1 and json.loads(out)["success"] is False
    code, out, _ = run(capsys, "models", "activate", "m", "1.2.0", "--reason", "manual")
    assert code == 0 and "1.0.0 -> 1.2.0" in out
    assert mgr.get_active_version("m").version == "1.2.0"
    code, _, err = run(capsys, "models", "activate", "m", "9.0.0")
    assert code == 2 and "9.0.0" in err
    assert mgr.get_active_version("m").version == "1.2.0"


def test_features_commands(home, capsys) -> None:
    code, out, _ = run(capsys, "features", "list")
    assert code == 0 and "rsi_14" in out and "macd" in out
    code, out, _ = run(capsys, "--json", "features", "stats", "rsi_14")
    stats = json.loads(out)
    rsi = home["rsi"]
    finite = rsi[np.isfinite(rsi)]
    assert stats["count"] == finite.size and stats["missing"] == rsi.size - finite.size
    assert stats["mean"] == pytest.approx(finite.mean(), rel=1e-12)
    assert stats["max"] == pytest.approx(finite.max())
    assert stats["percentiles"]["50"] == pytest.approx(np.percentile(finite, 50), rel=1e-9)
    code, out, _ = run(capsys, "features", "stats", "rsi_14")
    assert code == 0 and "percentiles.95" in out
    code, out, _ = run(capsys, "--json", "features", "lineage", "rsi_14")
    lineage = json.loads(out)
    assert lineage["source_columns"] == ["close"] and lineage["n_rows"] == 500
    code, out, _ = run(capsys, "features", "lineage", "rsi_14")
    assert code == 0 and "transformations" in out
    code, _, err = run(capsys, "features", "stats", "no_such_feature")
    assert code == 2 and "kaizenml features list" in err


def test_studies_commands(home, capsys) -> None:
    code, out, _ = run(capsys, "--json", "studies", "list")
    (study,) = json.loads(out)
    assert study["study"] == "s1" and study["trials"] == 7 and study["complete"] == 7
    assert study["best_value"] == pytest.approx(min(home["values"]))
    code, out, _ = run(capsys, "studies", "show", "s1", "--limit", "3")
    assert code == 0 and "best       #" in out and "random" in out
    assert len([ln for ln in out.splitlines() if "complete" in ln and "x=" in ln]) == 3
    code, _, err = run(capsys, "studies", "show", "nope")
    assert code == 2 and "kaizenml studies list" in err


def test_storage_selection(home, tmp_path, capsys, monkeypatch) -> None:
    url = f"sqlite:///{home['path'] / 'kaizenml.db'}"
    monkeypatch.setenv("KAIZENML_HOME", str(tmp_path / "elsewhere"))
    code, out, _ = run(capsys, "--json", "models", "list")
    assert json.loads(out) == []
    code, out, _ = run(capsys, "--json", "--storage", url, "models", "list")
    assert [m["model"] for m in json.loads(out)] == ["m"]
    code, out, _ = run(capsys, "models", "list", "--home", str(home["path"]), "--json")
    assert [m["model"] for m in json.loads(out)] == ["m"]
    code, _, err = run(capsys, "--storage", "not a url", "models", "list")
    assert code == 2 and "sqlite:///" in err
    # a rollback reads the target's artifact, which lives next to the store: with --storage
    # alone it would look in KAIZENML_HOME and fail every check, so it asks for --artifacts
    code, _, err = run(capsys, "--storage", url, "models", "rollback", "m", "1.0.0")
    assert code == 2 and "--artifacts DIR" in err
    code, out, _ = run(capsys, "--json", "--storage", url, "--artifacts",
                       str(home["path"] / "artifacts"), "models", "rollback", "m", "1.0.0",
                       "--dry-run")
    assert code == 0
    assert all(c["passed"] for c in json.loads(out)["checks"])


def test_console_entry_point(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "kaizenml", "models", "history", "ghost", "--home", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "ghost" in proc.stderr


def test_corrupted_artifact_is_a_failed_action(home, capsys) -> None:
    npz = home["path"] / "artifacts" / "m" / "1.0.0" / "arrays.npz"
    data = bytearray(npz.read_bytes())
    data[-40] ^= 0x01
    npz.write_bytes(bytes(data))
    code, _, err = run(capsys, "models", "activate", "m", "1.0.0")
    assert code == 1 and "arrays.npz is corrupted" in err
