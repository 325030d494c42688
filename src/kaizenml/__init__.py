"""kaizenml: continuous improvement of ML models in trading research.

Hyperparameter optimization (``kaizenml.optimize``), a causal feature store with compiled
technical indicators (``kaizenml.features``, ``kaizenml.indicators``) and model versioning with
safe rollback (``kaizenml.versioning``), on one embedded or shared storage layer.
"""

from __future__ import annotations

import importlib
from typing import Any

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

# Subpackages load on first attribute access, so `import kaizenml` stays fast and an
# indicator call does not pay for the optimizer's imports.
_SUBPACKAGES = ("indicators", "optimize", "features", "versioning", "storage")

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
]

# public names re-exported from subpackages: name -> subpackage
_EXPORTS: dict[str, str] = {}


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        return importlib.import_module(f".{name}", __name__)
    if name in _EXPORTS:
        module = importlib.import_module(f".{_EXPORTS[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'kaizenml' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | set(_EXPORTS))
