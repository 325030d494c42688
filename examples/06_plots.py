"""Plot a study, a feature and a model's versions with kaizenml.plot (needs matplotlib).

Run: python examples/06_plots.py [OUTPUT_FOLDER]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from kaizenml.demo.data import generate_ohlcv  # noqa: E402
from kaizenml.features import FeatureStore  # noqa: E402
from kaizenml.optimize import Float, optimize_hyperparameters  # noqa: E402
from kaizenml.plot import (  # noqa: E402
    plot_convergence,
    plot_feature_distribution,
    plot_optimization_history,
    plot_param_importances,
    plot_version_metrics,
)

out = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp())
out.mkdir(parents=True, exist_ok=True)

result = optimize_hyperparameters(
    {"x": Float(-2.0, 2.0), "y": Float(-2.0, 2.0), "z": Float(0.0, 1.0)},
    lambda p: (p["x"] - 0.5) ** 2 + 0.3 * (p["y"] + 1.0) ** 2 + 0.01 * p["z"],
    strategy="random",
    max_trials=40,
    seed=0,
)
store = FeatureStore(f"sqlite:///{tempfile.mkdtemp()}/f.db")
rsi = store.compute_feature("rsi_14", {"close": generate_ohlcv(5_000, seed=1)["close"]})
versions = [
    {"version": "1.0.0", "created_at": "2024-03-01T10:00:00", "metrics": {"sharpe": 1.1}},
    {"version": "1.1.0", "created_at": "2024-03-08T10:00:00", "metrics": {"sharpe": 1.4}},
    {"version": "1.2.0", "created_at": "2024-03-15T10:00:00", "metrics": {"sharpe": 0.9}},
]

fig, axes = plt.subplots(2, 3, figsize=(15, 8))
plot_optimization_history(result, ax=axes[0, 0])
plot_param_importances(result, ax=axes[0, 1])
plot_convergence(result, ax=axes[0, 2])
plot_feature_distribution(
    rsi, name="rsi_14", statistics=store.get_statistics("rsi_14").to_dict(), ax=axes[1, 0]
)
plot_version_metrics(versions, active="1.1.0", ax=axes[1, 1])
axes[1, 2].axis("off")
fig.tight_layout()
fig.savefig(out / "kaizenml_plots.png")
print("wrote", out / "kaizenml_plots.png")
