"""Tune a model's hyperparameters with Bayesian optimization, pruning poor trials early.

The "model" is a synthetic training curve: its final loss depends on the learning rate,
the width and the dropout, and it improves epoch by epoch, so the median pruner can stop
hopeless trials after a few epochs.

Run: python examples/01_optimize_hyperparameters.py
"""

from __future__ import annotations

import math

from kaizenml import TrialPruned
from kaizenml.optimize import Categorical, Float, Int, optimize_hyperparameters

space = {
    "learning_rate": Float(1e-4, 1e-1, log=True),
    "hidden": Int(8, 256, log=True),
    "dropout": Float(0.0, 0.6),
    "optimizer": Categorical(["adam", "sgd"]),
}


def train(params, trial):
    # best near lr=3e-3, hidden=64, dropout=0.2 with adam
    final = (
        (math.log10(params["learning_rate"]) + 2.5) ** 2
        + 0.3 * (math.log2(params["hidden"]) - 6.0) ** 2 / 4.0
        + (params["dropout"] - 0.2) ** 2
        + (0.0 if params["optimizer"] == "adam" else 0.3)
    )
    for epoch in range(20):
        loss = final + 2.0 / (epoch + 1)
        trial.report(epoch, loss)
        if trial.should_prune():
            raise TrialPruned()
    return {"loss": final, "epochs": 20}


result = optimize_hyperparameters(
    space,
    train,
    strategy="bayesian",
    metric="loss",
    direction="minimize",
    max_trials=30,
    pruner="median",
    seed=1,
)
print(f"trials: {result.n_complete} complete, {result.n_pruned} pruned")
print(f"best loss {result.best_value:.4f} with {result.best_params}")
print("importance:", {k: round(v, 2) for k, v in result.importance.items()})
for hint in result.recommendations():
    print("hint:", hint["message"])
