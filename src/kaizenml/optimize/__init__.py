"""Hyperparameter optimization: search spaces, samplers, trials and studies.

>>> from kaizenml.optimize import Float, Int, optimize_hyperparameters
>>> res = optimize_hyperparameters({"x": Float(-2, 2), "k": Int(1, 4)},
...                                lambda p: (p["x"] - 0.5) ** 2 + p["k"],
...                                strategy="random", max_trials=30, seed=1)
>>> res.best_params["k"]
1
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._exceptions import TrialPruned
from ._ga_engine import GeneticResult, GeneticSearch
from ._genetic import GeneticSampler
from ._grid import GridSampler, grid_values
from ._importance import param_importances
from ._optimizer import HyperparameterOptimizer
from ._pruners import (
    MedianPruner,
    NopPruner,
    PercentilePruner,
    Pruner,
    SuccessiveHalvingPruner,
    make_pruner,
)
from ._random import RandomSampler
from ._result import OptimizationResult
from ._run import TrialHandle, optimize_hyperparameters
from ._sampler import Sampler, SamplerContext, SpaceExhausted, available_strategies, make_sampler
from ._space import CATEGORICAL, CONTINUOUS, DISCRETE, Categorical, Float, Int, SearchSpace
from ._storage import InMemoryStorage, SQLStorage, StudyStorage
from ._trial import Trial, TrialState

if TYPE_CHECKING:
    from ._bayes import BayesianSampler

__all__ = [
    "BayesianSampler",
    "CATEGORICAL",
    "CONTINUOUS",
    "DISCRETE",
    "Categorical",
    "Float",
    "GeneticResult",
    "GeneticSampler",
    "GeneticSearch",
    "GridSampler",
    "HyperparameterOptimizer",
    "InMemoryStorage",
    "Int",
    "MedianPruner",
    "NopPruner",
    "OptimizationResult",
    "PercentilePruner",
    "Pruner",
    "RandomSampler",
    "SQLStorage",
    "Sampler",
    "SamplerContext",
    "SearchSpace",
    "SpaceExhausted",
    "StudyStorage",
    "SuccessiveHalvingPruner",
    "Trial",
    "TrialHandle",
    "TrialPruned",
    "TrialState",
    "available_strategies",
    "grid_values",
    "make_pruner",
    "make_sampler",
    "optimize_hyperparameters",
    "param_importances",
]


def __getattr__(name: str) -> object:
    # the Gaussian-process sampler pulls in scipy.optimize and scipy.stats (seconds of import
    # time); load it only when it is asked for, as make_sampler("bayesian") does
    if name == "BayesianSampler":
        from ._bayes import BayesianSampler

        return BayesianSampler
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
