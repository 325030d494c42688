"""Input adaptation: mappings, pandas and polars frames, symbol columns and dicts of frames.

A :class:`FrameData` turns whatever the user passed into columns the store can compute on, and
knows the *segment order*: all rows of one symbol contiguous (in their original relative order,
which must be time order), so rolling kernels run per symbol with no Python loop per row.
Results are computed in segment order and scattered back to the input's row order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from .._exceptions import KaizenTypeError, NotFoundError, ValidationError

try:  # xxh3 hashes ~10 GB/s, which keeps a cache hit on 10^6 rows far under a millisecond
    import xxhash

    def _hash_bytes(buf: Any) -> str:
        return xxhash.xxh3_128_hexdigest(buf)

except ImportError:  # pragma: no cover - fallback when xxhash is not installed

    def _hash_bytes(buf: Any) -> str:
        return hashlib.blake2b(buf, digest_size=16).hexdigest()


__all__ = ["FrameData", "fingerprint_array"]


def fingerprint_array(arr: np.ndarray) -> str:
    """A fast content fingerprint of an array (dtype and shape included)."""
    arr = np.ascontiguousarray(arr)
    if arr.dtype.kind == "M":
        head = f"M8[{np.datetime_data(arr.dtype)[0]}]"
        arr = arr.view(np.int64)
    else:
        head = arr.dtype.str
    flat = arr.reshape(-1)
    body = _hash_bytes(memoryview(flat).cast("B")) if arr.size else "empty"  # type: ignore[arg-type]
    return hashlib.blake2b(f"{head}|{arr.shape}|{body}".encode(), digest_size=16).hexdigest()


def _is_pandas_frame(obj: Any) -> bool:
    mod = type(obj).__module__
    return mod.startswith("pandas") and type(obj).__name__ == "DataFrame"


def _is_polars_frame(obj: Any) -> bool:
    mod = type(obj).__module__
    return mod.startswith("polars") and type(obj).__name__ == "DataFrame"


def _is_frame(obj: Any) -> bool:
    return _is_pandas_frame(obj) or _is_polars_frame(obj)


def _convert(values: Any, name: str) -> np.ndarray:
    """One raw column as contiguous float64, or datetime64 for timestamps."""
    if type(values).__module__.startswith("pandas"):
        dtype = getattr(values, "dtype", None)
        if getattr(dtype, "tz", None) is not None:
            # keep the wall-clock time, as kaizenml.indicators reads tz-aware values
            values = values.dt.tz_localize(None)
            values = values.to_numpy()
        elif getattr(dtype, "kind", "O") in "biuf" and not isinstance(dtype, np.dtype):
            # nullable extension dtypes (Float64, Int64, boolean): pd.NA becomes NaN
            values = values.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            values = values.to_numpy()
    elif type(values).__module__.startswith("polars"):
        values = values.to_numpy()
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValidationError(f"column {name!r} must be 1-D, got shape {arr.shape}")
    if arr.dtype.kind == "M":
        return np.ascontiguousarray(arr)
    if arr.dtype.kind in "biuf":
        return np.ascontiguousarray(arr, dtype=np.float64)
    raise KaizenTypeError(
        f"column {name!r} has dtype {arr.dtype}; features are computed from numeric or datetime64 "
        "columns (convert it, or pass the symbol column as symbol=...)"
    )


class FrameData:
    """The data of one compute call.

    Parameters
    ----------
    data : mapping, pandas.DataFrame, polars.DataFrame, or dict of symbol -> frame/mapping
    symbol : str or None
        Name of a column holding symbol ids; rows of each symbol are computed as one series.
    """

    def __init__(self, data: Any, *, symbol: str | None = None) -> None:
        self.kind: str
        self.index: Any = None
        self.symbols: list[Any] | None = None
        self.order: np.ndarray | None = None
        self._raw: dict[str, np.ndarray] = {}
        self._seg: dict[str, np.ndarray] = {}
        self._fp: dict[str, str] = {}
        self._parts: list[Any] | None = None
        # NaN-padded (symbols, rows) blocks of segment-ordered columns, by id() of the column;
        # the columns stay referenced by _seg or the store for the whole call
        self.padded: dict[int, np.ndarray] = {}
        if _is_frame(data):
            self.kind = "pandas" if _is_pandas_frame(data) else "polars"
            self._data = data
            self.n_rows = int(data.shape[0])
            self._names = [str(c) for c in data.columns]
            if self.kind == "pandas":
                self.index = data.index
        elif (
            isinstance(data, Mapping)
            and data
            and all(_is_frame(v) or isinstance(v, Mapping) for v in data.values())
        ):
            self.kind = "frames"
            if symbol is not None:
                raise ValidationError(
                    "symbol= is for one frame with a symbol column; a dict of frames already "
                    "names its symbols by its keys"
                )
            self.symbols = list(data.keys())
            self._parts = [FrameData(v) for v in data.values()]
            names = set(self._parts[0]._names)
            for part in self._parts:
                names &= set(part._names)
            self._names = [c for c in self._parts[0]._names if c in names]
            self._part_kind = self._parts[0].kind
            lengths = np.array([p.n_rows for p in self._parts], dtype=np.int64)
            self.n_rows = int(lengths.sum())
            self.offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
            self.layout_fp = "frames:" + fingerprint_array(self.offsets)
            return
        elif isinstance(data, Mapping):
            self.kind = "mapping"
            self._data = data
            self._names = [str(k) for k in data.keys()]
            n_rows = None
            for key, values in data.items():
                length = len(values) if hasattr(values, "__len__") else None
                if length is None:
                    raise KaizenTypeError(
                        f"data[{key!r}] must be an array-like column, got {type(values).__name__}"
                    )
                if n_rows is None:
                    n_rows = length
                elif length != n_rows:
                    raise ValidationError(
                        f"data columns must have equal lengths: {self._names[0]!r} has {n_rows} "
                        f"rows but {key!r} has {length}"
                    )
            self.n_rows = int(n_rows or 0)
        else:
            raise KaizenTypeError(
                "data must be a mapping of column name -> array, a pandas or polars DataFrame, or "
                f"a dict of symbol -> frame; got {type(data).__name__}"
            )
        if symbol is None:
            self.offsets = np.array([0, self.n_rows], dtype=np.int64)
            self.layout_fp = f"single:{self.n_rows}"
        else:
            self._segment_by(symbol)

    # -- layout ---------------------------------------------------------------------------
    def _segment_by(self, symbol: str) -> None:
        if not isinstance(symbol, str) or symbol not in self._names:
            raise ValidationError(
                f"symbol={symbol!r} is not a column of the data; columns are {self._names}"
            )
        values = self._column_source(symbol)
        if type(values).__module__.startswith(("pandas", "polars")):
            values = values.to_numpy()
        values = np.asarray(values)
        if values.ndim != 1:
            raise ValidationError(f"symbol column {symbol!r} must be 1-D, got shape {values.shape}")
        if values.size and values.dtype.kind in "biufUSM":
            # rows already grouped by symbol (the common layout): the runs are the segments,
            # found with one vectorized comparison instead of a hash factorization
            starts = np.flatnonzero(values[1:] != values[:-1]) + 1
            starts = np.concatenate([[0], starts]).astype(np.int64)
            labels = values[starts]
            if values.dtype.kind == "f" and np.isnan(labels).any():
                raise ValidationError(f"symbol column {symbol!r} contains missing values")
            if np.unique(labels).size == labels.size:
                self.symbols = list(labels)
                self.offsets = np.concatenate([starts, [values.size]]).astype(np.int64)
                self.layout_fp = "runs:" + fingerprint_array(self.offsets)
                return
        try:
            import pandas as pd

            codes, uniques = pd.factorize(values)
            uniques = list(uniques)
        except ImportError:  # pragma: no cover - pandas is optional
            uniques_arr, first, inverse = np.unique(values, return_index=True, return_inverse=True)
            rank = np.argsort(np.argsort(first))
            codes = rank[inverse]
            uniques = list(uniques_arr[np.argsort(first)])
        codes = np.asarray(codes, dtype=np.int64)
        if codes.size and codes.min() < 0:
            raise ValidationError(f"symbol column {symbol!r} contains missing values")
        self.symbols = uniques
        counts = np.bincount(codes, minlength=len(uniques)) if codes.size else np.zeros(0, np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        if codes.size and np.any(codes[1:] < codes[:-1]):
            self.order = np.argsort(codes, kind="stable")
        self.layout_fp = "symbols:" + fingerprint_array(codes)

    @property
    def n_segments(self) -> int:
        return int(self.offsets.shape[0] - 1)

    @property
    def columns(self) -> list[str]:
        return list(self._names)

    def has(self, name: str) -> bool:
        return name in self._names

    def _column_source(self, name: str) -> Any:
        if self.kind == "pandas":
            return self._data[name]
        if self.kind == "polars":
            return self._data.get_column(name)
        return self._data[name]

    # -- columns --------------------------------------------------------------------------
    def raw(self, name: str) -> np.ndarray:
        """A column in the input's row order (float64 or datetime64)."""
        arr = self._raw.get(name)
        if arr is not None:
            return arr
        if not self.has(name):
            raise NotFoundError(f"column {name!r} is not in the data; columns are {self._names}")
        if self.kind == "frames":
            assert self._parts is not None
            pieces = [p.raw(name) for p in self._parts]
            kinds = {p.dtype.kind for p in pieces}
            if len(kinds) > 1:
                raise KaizenTypeError(
                    f"column {name!r} mixes datetime and numeric types across frames"
                )
            arr = np.concatenate(pieces) if pieces else np.empty(0)
        else:
            arr = _convert(self._column_source(name), name)
        if arr.shape[0] != self.n_rows:
            raise ValidationError(
                f"column {name!r} has {arr.shape[0]} rows, expected {self.n_rows}"
            )
        self._raw[name] = arr
        return arr

    def segmented(self, name: str) -> np.ndarray:
        """A column in segment order."""
        arr = self._seg.get(name)
        if arr is None:
            arr = self.to_segment_order(self.raw(name))
            self._seg[name] = arr
        return arr

    def fingerprint(self, name: str) -> str:
        fp = self._fp.get(name)
        if fp is None:
            fp = fingerprint_array(self.raw(name))
            self._fp[name] = fp
        return fp

    def to_segment_order(self, arr: np.ndarray) -> np.ndarray:
        if self.order is None:
            return arr
        return arr[self.order]

    def to_input_order(self, arr: np.ndarray) -> np.ndarray:
        if self.order is None:
            return arr
        out = np.empty_like(arr)
        out[self.order] = arr
        return out

    # -- results --------------------------------------------------------------------------
    def wrap_array(self, arr: np.ndarray) -> Any:
        """One feature's values: an array aligned with the rows, or a dict per symbol."""
        if self.kind == "frames":
            assert self.symbols is not None
            return {
                sym: arr[self.offsets[i] : self.offsets[i + 1]]
                for i, sym in enumerate(self.symbols)
            }
        return arr

    def wrap_columns(self, columns: dict[str, np.ndarray]) -> Any:
        """Several columns as the input's kind of table (or a dict of them per symbol)."""
        if self.kind == "frames":
            assert self.symbols is not None and self._parts is not None
            out = {}
            for i, (sym, part) in enumerate(zip(self.symbols, self._parts, strict=True)):
                lo, hi = self.offsets[i], self.offsets[i + 1]
                out[sym] = part.wrap_columns({k: v[lo:hi] for k, v in columns.items()})
            return out
        if self.kind == "pandas":
            import pandas as pd

            return pd.DataFrame(columns, index=self.index, copy=False)
        if self.kind == "polars":
            import polars as pl

            return pl.DataFrame(columns)
        return dict(columns)
