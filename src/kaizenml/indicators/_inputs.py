"""Input conversion and output wrapping for :mod:`kaizenml.indicators`.

Turns whatever the caller passed (list, numpy array of any numeric dtype and strides, pandas
Series or DataFrame) into the C-contiguous float64 arrays the kernels expect, and remembers how
to give the result back in the caller's container. pandas is imported only when a pandas object
arrives, so numpy users never pay for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .._exceptions import KaizenTypeError, ValidationError

__all__: list[str] = []


@dataclass(frozen=True)
class Layout:
    """How the caller's input was shaped, so outputs can be returned the same way.

    ``kind`` is ``"array"`` (numpy, 1-D or 2-D with one series per row), ``"series"`` or
    ``"frame"`` (pandas; a DataFrame's columns are the series).
    """

    kind: str
    ndim: int
    index: Any = None
    columns: Any = None
    name: Any = None


def _frozen(arr: np.ndarray) -> np.ndarray:
    """A read-only view of ``arr``.

    numba compiles a separate specialization for read-only arrays (which pandas hands out under
    copy-on-write); presenting every input as read-only keeps one compiled kernel per type.
    """
    view = arr.view()
    view.flags.writeable = False
    return view


def _is_pandas(obj: Any) -> bool:
    return type(obj).__module__.partition(".")[0] == "pandas"


def _check_numeric_dtype(dtype: np.dtype, param: str) -> None:
    if dtype.kind == "b":
        raise KaizenTypeError(
            f"{param} must hold numbers, got booleans (dtype {dtype}); convert with .astype(float)"
        )
    if dtype.kind not in "iuf":
        raise KaizenTypeError(
            f"{param} must hold real numbers, got dtype {dtype}; pass prices or volumes as a "
            "numeric array"
        )


def _numeric_from_numpy(arr: np.ndarray, param: str) -> np.ndarray:
    if arr.dtype.kind == "O":
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise KaizenTypeError(
                f"{param} must hold real numbers, got non-numeric values ({exc}); convert the "
                "data to a numeric array first"
            ) from None
    _check_numeric_dtype(arr.dtype, param)
    return arr


def _check_ndim(ndim: int, param: str) -> None:
    if ndim not in (1, 2):
        raise ValidationError(
            f"{param} must be 1-D (one series) or 2-D (one series per row), got a {ndim}-D "
            "input; reshape it or pass a pandas DataFrame with one column per series"
        )


def as_float(x: Any, param: str) -> tuple[np.ndarray, Layout]:
    """Return ``x`` as a C-contiguous float64 array (``(n,)`` or ``(n_series, n)``)."""
    if _is_pandas(x):
        import pandas as pd

        if isinstance(x, pd.Series):
            _check_pandas_dtype(x.dtype, param)
            values = x.to_numpy(dtype=np.float64, na_value=np.nan)
            return _frozen(np.ascontiguousarray(values)), Layout(
                "series", 1, index=x.index, name=x.name
            )
        if isinstance(x, pd.DataFrame):
            # check each distinct dtype once (wide frames have thousands of columns), and name
            # the first offending column only when one fails
            try:
                for dtype in set(x.dtypes):
                    _check_pandas_dtype(dtype, param)
            except KaizenTypeError:
                for column, dtype in x.dtypes.items():
                    _check_pandas_dtype(dtype, f"{param}[{column!r}]")
            values = x.to_numpy(dtype=np.float64, na_value=np.nan)
            # pandas columns are the series; the kernels want one series per row
            return _frozen(np.ascontiguousarray(values.T)), Layout(
                "frame", 2, index=x.index, columns=x.columns
            )
        raise KaizenTypeError(
            f"{param} must be a numpy array, list, pandas Series or DataFrame, got "
            f"{type(x).__name__}"
        )
    if isinstance(x, (str, bytes)) or x is None:
        raise KaizenTypeError(f"{param} must be an array of numbers, got {type(x).__name__}")
    arr = _numeric_from_numpy(_asarray(x, param), param)
    _check_ndim(arr.ndim, param)
    return _frozen(np.ascontiguousarray(arr, dtype=np.float64)), Layout("array", arr.ndim)


def _asarray(x: Any, param: str) -> np.ndarray:
    """``np.asarray(x)``, with nested lists of unequal lengths refused naming ``param``."""
    try:
        return np.asarray(x)
    except ValueError as exc:  # "inhomogeneous shape"
        raise ValidationError(
            f"{param} must be rectangular: every series (row) needs the same length ({exc})"
        ) from None


def _check_pandas_dtype(dtype: Any, param: str) -> None:
    import pandas as pd

    if pd.api.types.is_bool_dtype(dtype) or not pd.api.types.is_numeric_dtype(dtype):
        raise KaizenTypeError(
            f"{param} must hold real numbers, got dtype {dtype}; convert it with .astype(float)"
        )
    if pd.api.types.is_complex_dtype(dtype):
        raise KaizenTypeError(f"{param} must hold real numbers, got dtype {dtype}")


def as_float_many(named: dict[str, Any]) -> tuple[list[np.ndarray], Layout]:
    """Convert several same-shaped inputs (high/low/close, close/volume)."""
    arrays = []
    layout: Layout | None = None
    first_name = next(iter(named))
    first_shape: tuple[int, ...] | None = None
    for param, value in named.items():
        arr, lay = as_float(value, param)
        if first_shape is None:
            first_shape = arr.shape
        elif arr.shape != first_shape:
            names = ", ".join(named)
            raise ValidationError(
                f"{param} has {_describe(arr.shape, lay)} but {first_name} has "
                f"{_describe(first_shape, layout)}; {names} must have the same shape"
            )
        if layout is None or (layout.kind == "array" and lay.kind != "array"):
            layout = lay
        arrays.append(arr)
    assert layout is not None
    return arrays, layout


def _describe(shape: tuple[int, ...], layout: Layout | None) -> str:
    if layout is not None and layout.kind == "frame":
        return f"{shape[1]} rows and {shape[0]} columns"
    return f"shape {shape}"


def wrap(out: np.ndarray, layout: Layout) -> Any:
    """Give a kernel result back in the caller's container."""
    if layout.kind == "array":
        return out
    import pandas as pd

    if layout.kind == "series":
        return pd.Series(out, index=layout.index, name=layout.name, copy=False)
    return pd.DataFrame(out.T, index=layout.index, columns=layout.columns, copy=False)


def empty_like(arr: np.ndarray) -> np.ndarray:
    return np.empty(arr.shape, dtype=np.float64)


_NAT_FIX = "drop or fill the missing timestamps first"


def as_ticks(timestamps: Any, param: str = "timestamps") -> tuple[np.ndarray, int, Layout]:
    """Convert timestamps to int64 ticks since the Unix epoch and the number of ticks per day.

    Accepts numpy ``datetime64`` of any unit, integer or float epoch seconds (floats are
    rounded to the microsecond), and pandas datetime Series, DatetimeIndex or DataFrame
    (timezone-aware values are read as wall-clock time in their own timezone).
    """
    if _is_pandas(timestamps):
        return _pandas_ticks(timestamps, param)
    if isinstance(timestamps, (str, bytes)) or timestamps is None:
        raise KaizenTypeError(
            f"{param} must be datetime64 values or epoch seconds, got {type(timestamps).__name__}"
        )
    arr = np.asarray(timestamps)
    _check_ndim(arr.ndim, param)
    ticks, per_day = _numpy_ticks(arr, param)
    return _frozen(ticks), per_day, Layout("array", arr.ndim)


def _numpy_ticks(arr: np.ndarray, param: str) -> tuple[np.ndarray, int]:
    if arr.dtype.kind == "M":
        # NaT is the smallest int64: one vectorized min finds it, faster than np.isnat().any()
        if arr.size and arr.view(np.int64).min() == np.iinfo(np.int64).min:
            where = np.argwhere(np.isnat(arr))[0]
            raise ValidationError(
                f"{param} contains NaT at position {tuple(int(i) for i in where)}; {_NAT_FIX}"
            )
        unit, count = np.datetime_data(arr.dtype)
        if unit in ("Y", "M", "W", "generic"):
            arr = arr.astype("datetime64[D]")
        elif unit in ("ps", "fs", "as"):
            arr = arr.astype("datetime64[ns]")
        elif count != 1:  # e.g. datetime64[7s]: a day need not be a whole number of ticks
            arr = arr.astype(f"datetime64[{unit}]")
        unit, count = np.datetime_data(arr.dtype)
        # ticks of this dtype in one day, e.g. 86_400 for datetime64[s]
        per_day = int(np.timedelta64(1, "D").astype(f"timedelta64[{count}{unit}]").astype(np.int64))
        return np.ascontiguousarray(arr.view(np.int64)), per_day
    if arr.dtype.kind in "iu":
        if arr.dtype == np.uint64 and arr.size and arr.max() > np.iinfo(np.int64).max:
            where = np.argwhere(arr > np.iinfo(np.int64).max)[0]
            raise ValidationError(
                f"{param} holds {int(arr[tuple(where)])} at position "
                f"{tuple(int(i) for i in where)}: epoch seconds must fit in a signed 64-bit "
                "integer"
            )
        return np.ascontiguousarray(arr, dtype=np.int64), 86_400
    if arr.dtype.kind == "f":
        # beyond this many seconds the microseconds below overflow int64 (about 292,000 years)
        limit = np.iinfo(np.int64).max / 1e6
        bad = ~(np.abs(arr) < limit)  # also NaN and inf
        if bad.any():
            where = np.argwhere(bad)[0]
            value = float(arr[tuple(where)])
            fix = (
                _NAT_FIX
                if not np.isfinite(value)
                else f"epoch seconds must be within +-{limit:.4g}"
            )
            raise ValidationError(
                f"{param} contains {value!r} at position {tuple(int(i) for i in where)}; {fix}"
            )
        micros = np.rint(arr.astype(np.float64) * 1e6).astype(np.int64)
        return np.ascontiguousarray(micros), 86_400_000_000
    raise KaizenTypeError(
        f"{param} must be datetime64 values or epoch seconds, got dtype {arr.dtype}; parse "
        "strings with numpy.datetime64 or pandas.to_datetime first"
    )


def _pandas_ticks(obj: Any, param: str) -> tuple[np.ndarray, int, Layout]:
    import pandas as pd

    def column_values(col: Any, name: str) -> np.ndarray:
        dtype = col.dtype
        if isinstance(dtype, pd.DatetimeTZDtype):
            col = col.tz_localize(None) if isinstance(col, pd.Index) else col.dt.tz_localize(None)
        if pd.api.types.is_datetime64_dtype(col.dtype):
            values = np.asarray(col.to_numpy(), dtype="datetime64[ns]")
        elif pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
            values = col.to_numpy(dtype=np.float64, na_value=np.nan)
            if pd.api.types.is_integer_dtype(col.dtype) and not np.isnan(values).any():
                values = col.to_numpy(dtype=np.int64)
        else:
            raise KaizenTypeError(
                f"{name} must be datetime64 values or epoch seconds, got dtype {col.dtype}; "
                "convert it with pandas.to_datetime"
            )
        return values

    if isinstance(obj, pd.DatetimeIndex):
        ticks, per_day = _numpy_ticks(column_values(obj, param), param)
        return _frozen(ticks), per_day, Layout("series", 1, index=obj, name=None)
    if isinstance(obj, pd.Series):
        ticks, per_day = _numpy_ticks(column_values(obj, param), param)
        return _frozen(ticks), per_day, Layout("series", 1, index=obj.index, name=obj.name)
    if isinstance(obj, pd.DataFrame):
        rows = []
        per_days = set()
        for column in obj.columns:
            name = f"{param}[{column!r}]"
            t, p = _numpy_ticks(column_values(obj[column], name), name)
            rows.append(t)
            per_days.add(p)
        if len(per_days) > 1:
            raise ValidationError(
                f"{param} mixes datetime columns and epoch-second columns; use one kind"
            )
        per_day = per_days.pop() if per_days else 86_400
        ticks = np.ascontiguousarray(np.stack(rows) if rows else np.empty((0, len(obj))))
        return (
            _frozen(ticks.astype(np.int64, copy=False)),
            per_day,
            Layout("frame", 2, index=obj.index, columns=obj.columns),
        )
    raise KaizenTypeError(
        f"{param} must be datetime64 values, epoch seconds or a pandas datetime Series/Index, "
        f"got {type(obj).__name__}"
    )
