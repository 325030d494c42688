"""The continuous-improvement loop: tune, version, promote only when the new model wins.

The search tunes on the earlier 80 % of the bars; the winner and the active version are then
scored on the latest 20 %, which the search never saw, and that score decides (the best of
many trials looks better on the rows it was picked on than it is).

Run it twice with the same folder to see the second run compare with (and keep or replace)
the version the first one promoted:  python examples/05_improve_model.py [FOLDER]
"""

from __future__ import annotations

import sys
import tempfile

import numpy as np

from kaizenml.demo._classifier import MLPClassifier, log_loss, make_labeled_dataset
from kaizenml.demo.data import generate_ohlcv
from kaizenml.loop import improve_model
from kaizenml.optimize import Float, Int

folder = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp()
storage = f"sqlite:///{folder}/kaizenml.db"
bars = generate_ohlcv(6_000, seed=11)
data = {k: bars[k] for k in ("timestamp", "open", "high", "low", "close", "volume")}
FEATURES = ["price_volatility", "volume_ratio", "rsi_14", "hour_of_day"]


def labeled(dataset, cols):
    return make_labeled_dataset(
        {c: dataset[c] for c in cols}, dataset["close"], horizon=12, target="volatility"
    )[:2]


def train_and_evaluate(params, dataset, trial):
    """Train on the first 75 % of the search's bars, report the loss on the rest."""
    cols = [c for c in dataset if c.startswith(tuple(FEATURES))]
    X, y = labeled(dataset, cols)
    cut = int(0.75 * len(y))
    clf = MLPClassifier(hidden=params["hidden"], learning_rate=params["learning_rate"], seed=0)
    for epoch in range(8):
        clf.train_epoch(X[: cut - 12], y[: cut - 12])
        loss = log_loss(y[cut:], clf.predict_proba(X[cut:]))
        trial.report(epoch, loss)
        if trial.should_prune():
            from kaizenml import TrialPruned

            raise TrialPruned()
    artifact = {**clf.to_artifact(), "columns": cols}
    return {"log_loss": loss, "accuracy": clf.accuracy(X[cut:], y[cut:])}, artifact


def evaluate(params, artifact, held_out):
    """A trained network (the winner's, or the active version's as stored) on the held-out
    bars: what decides the promotion."""
    X, y = labeled(held_out, list(artifact["columns"]))
    clf = MLPClassifier.from_artifact(artifact)
    return {"log_loss": log_loss(y, clf.predict_proba(X)), "accuracy": clf.accuracy(X, y)}


report = improve_model(
    "vol-classifier",
    space={"learning_rate": Float(1e-3, 0.1, log=True), "hidden": Int(2, 32)},
    train_and_evaluate=train_and_evaluate,
    features=FEATURES,
    data=data,
    metric="log_loss",
    direction="minimize",
    evaluate=evaluate,  # the default holdout="auto" holds out the latest 20 % of the 6000 bars
    strategy="bayesian",
    max_trials=8,
    min_improvement=1e-3,
    seed=0,
    storage=storage,
)
print(report.summary())
print(
    "active version:",
    report.active_version,
    f"| decided on: {report.decided_on} ({report.holdout_rows} held-out bars)",
    "| held-out accuracy of the best trial:",
    round((report.candidate_metrics or {}).get("accuracy", float("nan")), 3),
)
assert np.isfinite(report.best_value)
