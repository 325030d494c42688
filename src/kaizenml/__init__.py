"""kaizenml: continuous improvement of ML models in trading research.

Hyperparameter optimization (``kaizenml.optimize``), a causal feature store with compiled
technical indicators (``kaizenml.features``, ``kaizenml.indicators``) and model versioning with
safe rollback (``kaizenml.versioning``), on one embedded or shared storage layer.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._exceptions import (
    IntegrityError,
    KaizenError,
    KaizenTypeError,
    NotFoundError,
    RollbackError,
    StateError,
    StorageError,
    TrialPruned,
    ValidationError,
)

__version__ = "0.1.0"

if TYPE_CHECKING:  # what the lazy __getattr__ below resolves, for type checkers and IDEs
    from . import demo, features, indicators, loop, optimize, plot, storage, versioning
    from .features import ComputationConfig, FeatureDefinition, FeatureStore, get_feature_store
    from .loop import ImprovementReport, improve_model
    from .optimize import (
        BayesianSampler,
        Categorical,
        Float,
        GeneticResult,
        GeneticSearch,
        HyperparameterOptimizer,
        Int,
        OptimizationResult,
        SearchSpace,
        optimize_hyperparameters,
        param_importances,
    )
    from .versioning import (
        Checkpointer,
        ModelVersion,
        ModelVersionManager,
        RollbackPlan,
        get_model_version_manager,
    )

# Subpackages load on first attribute access, so `import kaizenml` stays fast and an
# indicator call does not pay for the optimizer's imports.
_SUBPACKAGES = (
    "indicators",
    "optimize",
    "features",
    "versioning",
    "storage",
    "loop",
    "plot",
    "demo",
)


# public names re-exported from subpackages: name -> subpackage
_EXPORTS: dict[str, str] = {
    "optimize_hyperparameters": "optimize",
    "HyperparameterOptimizer": "optimize",
    "OptimizationResult": "optimize",
    "Float": "optimize",
    "Int": "optimize",
    "Categorical": "optimize",
    "SearchSpace": "optimize",
    "param_importances": "optimize",
    "GeneticSearch": "optimize",
    "BayesianSampler": "optimize",
    "GeneticResult": "optimize",
    "FeatureStore": "features",
    "FeatureDefinition": "features",
    "ComputationConfig": "features",
    "get_feature_store": "features",
    "ModelVersionManager": "versioning",
    "get_model_version_manager": "versioning",
    "ModelVersion": "versioning",
    "RollbackPlan": "versioning",
    "Checkpointer": "versioning",
    "improve_model": "loop",
    "ImprovementReport": "loop",
}


__all__ = [
    "IntegrityError",
    "KaizenError",
    "KaizenTypeError",
    "NotFoundError",
    "RollbackError",
    "StateError",
    "StorageError",
    "TrialPruned",
    "ValidationError",
    "__version__",
    *_SUBPACKAGES,
    *_EXPORTS,
]


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        return importlib.import_module(f".{name}", __name__)
    if name in _EXPORTS:
        module = importlib.import_module(f".{_EXPORTS[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'kaizenml' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | set(_EXPORTS))
