"""Turn kaizenml result objects into JSON-able data, for the command line and reports."""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["to_jsonable"]


def to_jsonable(obj: Any, _depth: int = 0) -> Any:
    """A JSON-able copy of ``obj``: ``to_dict()`` when the object has one, dataclass fields,
    mappings and sequences recursively; datetimes as ISO text, enums by value, numpy scalars
    as Python numbers, arrays as lists, NaN/inf as None."""
    if _depth > 12:
        return repr(obj)
    if obj is None or isinstance(obj, (bool, str, int)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, enum.Enum):
        return to_jsonable(obj.value, _depth + 1)
    if isinstance(obj, (datetime, date)):
        return obj.isoformat()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item(), _depth + 1)
    if isinstance(obj, np.ndarray):
        return (
            [to_jsonable(x, _depth + 1) for x in obj.tolist()]
            if obj.ndim
            else to_jsonable(obj.item())
        )
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v, _depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_jsonable(x, _depth + 1) for x in obj]
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict):
        try:
            return to_jsonable(to_dict(), _depth + 1)
        except TypeError:
            pass
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            f.name: to_jsonable(getattr(obj, f.name), _depth + 1) for f in dataclasses.fields(obj)
        }
    if hasattr(obj, "__dict__"):
        return {
            k: to_jsonable(v, _depth + 1) for k, v in vars(obj).items() if not k.startswith("_")
        }
    return str(obj)
