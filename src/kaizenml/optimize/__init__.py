"""Hyperparameter optimization: search spaces, samplers, trials and studies."""

from __future__ import annotations

from ._sampler import Sampler, SamplerContext, SpaceExhausted, available_strategies, make_sampler
from ._space import CATEGORICAL, CONTINUOUS, DISCRETE, Categorical, Float, Int, SearchSpace
from ._trial import Trial, TrialState

__all__ = [
    "CATEGORICAL",
    "CONTINUOUS",
    "DISCRETE",
    "Categorical",
    "Float",
    "Int",
    "Sampler",
    "SamplerContext",
    "SearchSpace",
    "SpaceExhausted",
    "Trial",
    "TrialState",
    "available_strategies",
    "make_sampler",
]
