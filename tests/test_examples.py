"""Every script in examples/ runs to completion and prints what it promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

EXPECTED = {
    "01_optimize_hyperparameters.py": ["pruned", "best loss", "importance"],
    "02_feature_store.py": ["cached", "rsi_14: mean", "gap_bps lineage: ['compute', 'normalize']"],
    "03_model_versioning.py": ["rollback: True -> active 1.1.0", "[PASS] metric_thresholds"],
    "04_genetic_backtest.py": ["36000 backtests", "held-out Sharpe"],
    "05_improve_model.py": [
        "on the 1200 holdout rows: log_loss",
        "created 1.0.0; promoted: first version of the model",
        "decided on: holdout (1200 held-out bars)",
    ],
    "06_plots.py": ["wrote"],
}


def _run(
    script: Path, *args: str, cwd: Path, worker_env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    env = {**worker_env, "KAIZENML_HOME": str(cwd / "home"), "MPLBACKEND": "Agg"}
    return subprocess.run(
        [sys.executable, str(script), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_every_example_is_listed() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs(name: str, tmp_path: Path, worker_env: dict[str, str]) -> None:
    args = [str(tmp_path / "out")] if name in ("05_improve_model.py", "06_plots.py") else []
    proc = _run(EXAMPLES / name, *args, cwd=tmp_path, worker_env=worker_env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for text in EXPECTED[name]:
        assert text in proc.stdout, (text, proc.stdout)
    if name == "06_plots.py":
        png = (tmp_path / "out" / "kaizenml_plots.png").read_bytes()
        assert png[:4] == b"\x89PNG"
    if name == "05_improve_model.py":
        # a second run resumes the study and compares its winner with the promoted version,
        # both measured again on the held-out bars
        again = _run(EXAMPLES / name, *args, cwd=tmp_path, worker_env=worker_env)
        assert again.returncode == 0, again.stderr[-3000:]
        assert "active 1.0.0: log_loss" in again.stdout
        assert "(reevaluated on the holdout rows)" in again.stdout
