"""Small validation helpers shared by the public API boundaries."""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping
from typing import Any

from ._exceptions import KaizenTypeError, ValidationError

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


def validate_name(value: Any, param: str) -> str:
    """Check a name that may become a path component or a database key.

    Allowed: 1-128 characters of letters, digits, ``_``, ``-`` and ``.``, starting with a letter
    or digit, and never ``..`` anywhere.
    """
    if not isinstance(value, str):
        raise KaizenTypeError(f"{param} must be a str, got {type(value).__name__}")
    if not _NAME_RE.fullmatch(value) or ".." in value:
        raise ValidationError(
            f"{param}={value!r} is not a valid name: use 1-128 letters, digits, '_', '-' or '.', "
            "starting with a letter or digit, without path separators or '..'"
        )
    return value


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def check_int(
    value: Any, param: str, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    """Return ``value`` as an int, refusing bools, floats and other types.

    The value must also fit in a signed 64-bit integer (what numpy, numba and the databases
    store), so a huge Python int fails here, naming ``param``, instead of overflowing later.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise KaizenTypeError(f"{param} must be an integer, got {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValidationError(f"{param} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValidationError(f"{param} must be <= {maximum}, got {value}")
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValidationError(
            f"{param}={value} does not fit in a 64-bit integer (at most {INT64_MAX} in size)"
        )
    return value


def check_float(
    value: Any,
    param: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    finite: bool = True,
) -> float:
    """Return ``value`` as a float, refusing bools, non-numbers and (by default) NaN/inf."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise KaizenTypeError(f"{param} must be a real number, got {value!r}")
    try:
        value = float(value)
    except OverflowError:
        raise ValidationError(
            f"{param}={value} is too large for a 64-bit float (at most about 1.8e308)"
        ) from None
    if finite and not math.isfinite(value):
        raise ValidationError(f"{param} must be finite, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValidationError(f"{param} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValidationError(f"{param} must be <= {maximum}, got {value}")
    return value


def check_choice(value: Any, param: str, choices: tuple[str, ...]) -> str:
    """Check that ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValidationError(f"{param}={value!r} is not supported; choose one of {list(choices)}")
    return value


def check_tags(tags: Any) -> dict[str, str]:
    """Tags as ``str -> str`` (numbers and bools become text); None gives an empty dict."""
    if tags is None:
        return {}
    if not isinstance(tags, Mapping):
        raise KaizenTypeError(f"tags must be a mapping of str to str, got {type(tags).__name__}")
    out: dict[str, str] = {}
    for key, value in tags.items():
        if not isinstance(key, str) or not key or len(key) > 256:
            raise KaizenTypeError(f"tags keys must be non-empty str (<=256 chars), got {key!r}")
        if isinstance(value, (str, bool, numbers.Number)):
            text = str(value)
        else:
            raise KaizenTypeError(
                f"tags[{key!r}] must be a str (numbers and bools are stored as text), got "
                f"{type(value).__name__}"
            )
        if len(text) > 1024:
            raise ValidationError(f"tags[{key!r}] is longer than 1024 characters")
        out[key] = text
    return out
