"""The feature store: registry, dependency resolution, computation, cache, statistics, lineage."""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import math
import os
import reprlib
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .. import __version__
from .._exceptions import KaizenTypeError, NotFoundError, StorageError, ValidationError
from .._validation import check_choice, check_float, check_int, validate_name
from ..storage import (
    default_storage_url,
    ensure_schema,
    kaizenml_home,
    read_connection,
    resolve_engine,
    retry_on_conflict,
)
from . import _kernels as K
from ._builtins import BUILTIN_DEFINITIONS, BUILTIN_FUNCTIONS
from ._cache import FeatureCache
from ._definition import ComputationConfig, FeatureDefinition, parse_version, split_name_version
from ._frame import FrameData
from ._schema import (
    feature_definitions,
    feature_drift_references,
    feature_lineage,
    feature_statistics,
)
from ._stats import (
    PERCENTILES,
    DriftReport,
    FeatureStatistics,
    column_statistics,
    population_stability_index,
)

__all__ = ["FeatureLineage", "FeatureStore", "get_feature_store"]

logger = logging.getLogger(__name__)

FUNCTION_MODES = ("series", "batch", "elementwise")
BUILTIN_VERSION = "1.0.0"
DEFAULT_CACHE_BYTES = 512 * 2**20


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _digest(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=20).hexdigest()


def _value_token(value: Any, seen: set[int]) -> Any:
    """What a value contributes to a function's fingerprint: an array's full bytes (its repr
    elides the middle of a large one), the code of a function, containers item by item."""
    if isinstance(value, np.ndarray):
        data = np.ascontiguousarray(value)
        if data.dtype.hasobject:
            return ["ndarray", repr(value)]
        digest = hashlib.blake2b(data.view(np.uint8).reshape(-1).data, digest_size=20)
        return ["ndarray", str(value.dtype), list(value.shape), digest.hexdigest()]
    if isinstance(value, (list, tuple)):
        return [type(value).__name__, [_value_token(v, seen) for v in value]]
    if isinstance(value, dict):
        return ["dict", [[repr(k), _value_token(v, seen)] for k, v in value.items()]]
    if callable(value) and getattr(value, "__code__", None) is not None:
        return ["function", _code_parts(value, seen)]
    return repr(value)


def _code_parts(fn: Callable[..., Any], seen: set[int]) -> list[Any]:
    if id(fn) in seen:  # recursion between helpers
        return ["seen", getattr(fn, "__qualname__", "")]
    seen.add(id(fn))
    # (a callable object has no qualified name of its own, and its repr carries its address)
    qualname = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    parts: list[Any] = [getattr(fn, "__module__", ""), qualname]
    code = getattr(fn, "__code__", None)
    if code is None:  # a callable object: fingerprint its __call__ and its attributes
        call = type(fn).__call__
        code = getattr(call, "__code__", None)
        parts.append(_value_token(dict(getattr(fn, "__dict__", {})), seen))
        fn = call
    if code is not None:
        parts.append(code.co_code.hex())
        parts.append(repr(code.co_consts))
        parts.append(repr(code.co_names))
    parts.append(_value_token(getattr(fn, "__defaults__", None), seen))
    parts.append(_value_token(getattr(fn, "__kwdefaults__", None), seen))
    closure = getattr(fn, "__closure__", None) or ()
    cells = []
    for cell in closure:
        try:
            cells.append(_value_token(cell.cell_contents, seen))
        except ValueError:
            cells.append("<empty>")
    parts.append(cells)
    # what the code reads by global name from its own module: the functions it calls (its
    # helpers, recursively) and plain values (numbers, strings, arrays, tuples of them)
    module = getattr(fn, "__module__", None)
    namespace = getattr(fn, "__globals__", {})
    used = []
    for name in getattr(code, "co_names", ()):
        target = namespace.get(name)
        if callable(target) and getattr(target, "__code__", None) is not None:
            if getattr(target, "__module__", None) == module:
                used.append([name, _code_parts(target, seen)])
        elif isinstance(target, (bool, int, float, complex, str, bytes, tuple, np.ndarray)):
            used.append([name, _value_token(target, seen)])
    parts.append(used)
    return parts


def _function_token(fn: Callable[..., Any]) -> str:
    """A fingerprint of a function's code, so re-registering a changed function misses the cache.

    Hashed: bytecode, constants, defaults, closure values and a callable object's attributes
    (arrays by their full bytes); what the code reads by global name from its own module, the
    functions it calls (recursively) and plain values; and kaizenml's version (its built-in
    kernels change with it). Helpers from other modules and mutable objects that change after
    registration are not seen, which the docs warn about: bump the feature's version then.
    """
    return _digest([__version__, _code_parts(fn, set())])


@dataclass(frozen=True)
class _Function:
    name: str
    fn: Callable[..., Any]
    mode: str
    token: str
    builtin: bool
    accepts: frozenset[str] | None  # keyword names it takes; None when it has **kwargs
    thread_safe: bool = False


@dataclass
class _Dep:
    keyword: str
    raw: str | None = None  # raw column name
    ref: str | None = None  # upstream feature "name@version"
    column: str | None = None  # the upstream column used


@dataclass
class _Node:
    definition: FeatureDefinition
    function: _Function
    deps: list[_Dep]
    key: str = ""
    upstream: list[str] = field(default_factory=list)  # transitive, dependency order
    sources: list[str] = field(default_factory=list)  # transitive raw columns


@dataclass(frozen=True)
class FeatureLineage:
    """Where a feature's last computed values came from.

    ``transformations`` lists every step in the order it ran, upstream features first; each step
    is a dict with ``feature``, ``step`` (``compute``, ``aggregation``, ``fill_missing`` or
    ``normalize``) and its parameters.
    """

    feature: str
    version: str
    definition_hash: str
    compute_function: str
    source_columns: tuple[str, ...]
    upstream_features: tuple[str, ...]
    transformations: tuple[dict[str, Any], ...]
    input_fingerprints: dict[str, str]
    input_fingerprint: str
    n_rows: int
    n_symbols: int
    causal: bool
    computed_at: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "version": self.version,
            "definition_hash": self.definition_hash,
            "compute_function": self.compute_function,
            "source_columns": list(self.source_columns),
            "upstream_features": list(self.upstream_features),
            "transformations": [dict(t) for t in self.transformations],
            "input_fingerprints": dict(self.input_fingerprints),
            "input_fingerprint": self.input_fingerprint,
            "n_rows": self.n_rows,
            "n_symbols": self.n_symbols,
            "causal": self.causal,
            "computed_at": self.computed_at,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeatureLineage:
        return cls(
            feature=d["feature"],
            version=d["version"],
            definition_hash=d["definition_hash"],
            compute_function=d["compute_function"],
            source_columns=tuple(d["source_columns"]),
            upstream_features=tuple(d["upstream_features"]),
            transformations=tuple(d["transformations"]),
            input_fingerprints=dict(d["input_fingerprints"]),
            input_fingerprint=d["input_fingerprint"],
            n_rows=int(d["n_rows"]),
            n_symbols=int(d["n_symbols"]),
            causal=bool(d["causal"]),
            computed_at=d["computed_at"],
        )


def _steps(definition: FeatureDefinition, function: _Function) -> list[dict[str, Any]]:
    cfg = definition.computation_config
    assert isinstance(cfg, ComputationConfig)
    ref = definition.ref
    steps: list[dict[str, Any]] = [
        {
            "feature": ref,
            "step": "compute",
            "function": function.name,
            "params": dict(cfg.params),
            "window_size": cfg.window_size,
            "inputs": list(definition.dependencies),
        }
    ]
    if cfg.aggregation is not None:
        steps.append(
            {
                "feature": ref,
                "step": "aggregation",
                "method": cfg.aggregation,
                "window": cfg.window_size,
            }
        )
    if cfg.fill_missing is not None:
        steps.append({"feature": ref, "step": "fill_missing", "method": cfg.fill_missing})
    if cfg.normalize:
        steps.append(
            {
                "feature": ref,
                "step": "normalize",
                "method": cfg.normalize,
                "window": cfg.normalize_window if cfg.normalize_window else "expanding",
            }
        )
    return steps


def _postprocess(y: np.ndarray, cfg: ComputationConfig, offsets: np.ndarray) -> np.ndarray:
    """aggregation -> fill_missing -> normalize, each per segment and (except backward) causal."""
    if cfg.aggregation is not None:
        w = int(cfg.window_size)  # type: ignore[arg-type]
        out = np.empty_like(y)
        agg = cfg.aggregation
        if agg in ("mean", "sum"):
            K.rolling_sum(y, offsets, w, agg == "mean", out)
        elif agg == "std":
            K.rolling_std(y, offsets, w, 1, np.empty_like(y), out)
        elif agg in ("min", "max"):
            K.rolling_extreme(y, offsets, w, agg == "max", out)
        else:
            K.rolling_last(y, offsets, w, out)
        y = out
    if cfg.fill_missing is not None:
        out = np.empty_like(y)
        fill = cfg.fill_missing
        if fill == "zero":
            K.fill_value(y, 0.0, out)
        elif fill == "forward":
            K.fill_forward(y, offsets, out)
        elif fill == "mean":
            K.fill_expanding_mean(y, offsets, out)
        else:
            K.fill_backward(y, offsets, out)
        y = out
    if cfg.normalize:
        out = np.empty_like(y)
        nw = cfg.normalize_window
        if cfg.normalize == "zscore":
            if nw is None:
                K.expanding_zscore(y, offsets, 1, out)
            else:
                mean = np.empty_like(y)
                std = np.empty_like(y)
                K.rolling_std(y, offsets, nw, 1, mean, std)
                K.combine_zscore(y, mean, std, out)
        else:
            if nw is None:
                K.expanding_minmax(y, offsets, out)
            else:
                lo = np.empty_like(y)
                hi = np.empty_like(y)
                K.rolling_extreme(y, offsets, nw, False, lo)
                K.rolling_extreme(y, offsets, nw, True, hi)
                K.combine_minmax(y, lo, hi, out)
        y = out
    return y


_DELETE_LINEAGE = feature_lineage.delete().where(
    feature_lineage.c.name == sa.bindparam("b_name"),
    feature_lineage.c.version == sa.bindparam("b_version"),
)
_DELETE_STATISTICS = feature_statistics.delete().where(
    feature_statistics.c.name == sa.bindparam("b_name"),
    feature_statistics.c.version == sa.bindparam("b_version"),
    feature_statistics.c.column_name == sa.bindparam("b_col"),
)


_STATISTICS_FIELDS = tuple(c.name for c in feature_statistics.columns)


def _nan_to_none(v: float) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def _none_to_nan(v: Any) -> float:
    return math.nan if v is None else float(v)


def _statistics_row(st: Mapping[str, Any]) -> dict[str, Any]:
    """The stored form of :func:`column_statistics` (NaN as NULL, the decile reference as JSON)."""
    return {
        "count": int(st["count"]),
        "missing": int(st["missing"]),
        "mean": _nan_to_none(st["mean"]),
        "std": _nan_to_none(st["std"]),
        "min": _nan_to_none(st["min"]),
        "max": _nan_to_none(st["max"]),
        **{f"p{q}": _nan_to_none(st["percentiles"][q]) for q in PERCENTILES},
        "reference": json.dumps(
            {
                "edges": [_nan_to_none(e) for e in st["reference_edges"]],
                "fractions": [float(f) for f in st["reference_fractions"]],
            }
        ),
    }


class FeatureStore:
    """Registered, versioned, causal features with a cache, statistics and lineage.

    Parameters
    ----------
    storage : str, sqlalchemy Engine or None
        Database for definitions, statistics and lineage (None: the embedded SQLite database in
        ``$KAIZENML_HOME``).
    cache_dir : str, Path, True or None
        Folder of the on-disk cache (``.npz`` files that survive restarts); True puts it beside
        the SQLite file (or in ``$KAIZENML_HOME``); None keeps the cache in memory only.
    cache_bytes : int
        Bound of the in-memory LRU cache in bytes.
    cache_disk_bytes : int, optional
        Bound of the on-disk cache in bytes (least recently used files go first); None: no
        bound.
    statistics : bool
        Record statistics of every computed column (can be overridden per call).
    n_threads : int, optional
        Threads for computing independent features of one series at once (default: the CPU
        count, at most 8; 1 computes everything on the calling thread). Many symbols are
        spread over threads inside the indicators' 2-D kernels instead.

    Examples
    --------
    >>> import numpy as np
    >>> store = FeatureStore("sqlite:///:memory:")
    >>> close = 100 + np.cumsum(np.random.default_rng(0).normal(size=200))
    >>> rsi = store.compute_feature("rsi_14", {"close": close})
    >>> bool(np.isnan(rsi[:14]).all() and (rsi[14:] >= 0).all())
    True
    """

    def __init__(
        self,
        storage: str | Engine | None = None,
        *,
        cache_dir: str | Path | bool | None = None,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        cache_disk_bytes: int | None = None,
        statistics: bool = True,
        n_threads: int | None = None,
    ) -> None:
        self._n_threads = (
            min(os.cpu_count() or 1, 8)
            if n_threads is None
            else check_int(n_threads, "n_threads", minimum=1)
        )
        self._executor: ThreadPoolExecutor | None = None
        self._engine = resolve_engine(storage)
        ensure_schema(self._engine)
        cache_bytes = check_int(cache_bytes, "cache_bytes", minimum=0)
        if not isinstance(statistics, bool):
            raise KaizenTypeError(f"statistics must be a bool, got {statistics!r}")
        self._record_statistics = statistics
        if cache_disk_bytes is not None:
            cache_disk_bytes = check_int(cache_disk_bytes, "cache_disk_bytes", minimum=0)
        self._cache = FeatureCache(
            cache_bytes, self._resolve_cache_dir(cache_dir), max_disk_bytes=cache_disk_bytes
        )
        self._lock = threading.RLock()
        self._functions: dict[str, _Function] = {}
        self._definitions: dict[str, dict[str, FeatureDefinition]] = {}
        # ref -> {unpinned dependency: the version it resolved to at registration}
        self._pins: dict[str, dict[str, str]] = {}
        self._builtin_refs: set[str] = set()
        # ref -> (cache key, whether statistics were recorded) of its last recorded computation
        self._last_recorded: dict[str, tuple[str, bool]] = {}
        # (name, version, column) known to have a drift reference (one is never removed)
        self._pinned: set[tuple[str, str, str]] = set()
        for fname, (fn, mode) in BUILTIN_FUNCTIONS.items():
            self._add_function(fname, fn, mode, builtin=True)
        for spec in BUILTIN_DEFINITIONS:
            d = FeatureDefinition.from_dict({"version": BUILTIN_VERSION, **spec})
            self._definitions.setdefault(d.name, {})[d.version] = d
            self._builtin_refs.add(d.ref)
        self._load_definitions()

    # ------------------------------------------------------------------ configuration
    def _resolve_cache_dir(self, cache_dir: str | Path | bool | None) -> Path | None:
        if cache_dir is None or cache_dir is False:
            return None
        if cache_dir is True:
            url = self._engine.url
            if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
                path = Path(url.database).expanduser().resolve().parent / "feature-cache"
            else:
                path = kaizenml_home() / "feature-cache"
        elif isinstance(cache_dir, (str, Path)):
            path = Path(cache_dir).expanduser()
        else:
            raise KaizenTypeError(
                f"cache_dir must be a folder path, True or None, got {type(cache_dir).__name__}"
            )
        try:
            path.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as exc:
            raise ValidationError(
                f"cache_dir must be a folder, but {str(path)!r} is a file or lies under one; "
                "pass the path of a folder (it is created when missing), True or None"
            ) from exc
        return path

    def _pool(self) -> ThreadPoolExecutor | None:
        if self._n_threads <= 1:
            return None
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=self._n_threads, thread_name_prefix="kaizenml-features"
                )
            return self._executor

    def close(self) -> None:
        """Stop the worker threads (the store stays usable and restarts them when needed)."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine holding definitions, statistics and lineage."""
        return self._engine

    # ------------------------------------------------------------------ functions
    def _add_function(
        self,
        name: str,
        fn: Callable[..., Any],
        mode: str,
        *,
        builtin: bool,
        thread_safe: bool = False,
    ) -> None:
        try:
            sig = inspect.signature(fn)
        except (TypeError, ValueError):
            accepts = None
        else:
            if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()):
                accepts = None
            else:
                accepts = frozenset(
                    n
                    for n, p in sig.parameters.items()
                    if p.kind
                    in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
                )
        self._functions[name] = _Function(
            name, fn, mode, _function_token(fn), builtin, accepts, thread_safe or builtin
        )

    def register_function(
        self, name: str, fn: Callable[..., Any], *, mode: str = "series", thread_safe: bool = False
    ) -> Callable[..., Any]:
        """Register ``fn`` as compute function ``name`` (functions are code, not stored).

        Parameters
        ----------
        name : str
            The name definitions refer to in ``compute_function``.
        fn : callable
            Called with each dependency as a keyword argument, ``window_size`` and the config's
            ``params``; returns an array of the input's length (or, for ``outputs``, a tuple or
            dict of arrays).
        mode : {"series", "batch", "elementwise"}
            ``"series"``: called once per symbol with 1-D arrays. ``"batch"``: called once with
            2-D arrays, one NaN-padded row per symbol (must be causal along rows).
            ``"elementwise"``: called once with all rows (only for pointwise functions).
        thread_safe : bool
            True lets the store run this function on a worker thread beside other features
            (worth it when it spends its time in code that releases the GIL, such as numba
            ``nogil`` kernels or numpy); it must not mutate shared state.

        Examples
        --------
        >>> store = FeatureStore("sqlite:///:memory:")
        >>> _ = store.register_function("spread", lambda high, low, window_size=None: high - low)
        """
        validate_name(name, "name")
        if not callable(fn):
            raise KaizenTypeError(f"fn must be callable, got {type(fn).__name__}")
        check_choice(mode, "mode", FUNCTION_MODES)
        with self._lock:
            existing = self._functions.get(name)
            if existing is not None and existing.builtin:
                raise ValidationError(
                    f"compute function {name!r} is built in and cannot be replaced; register "
                    "yours under another name"
                )
            if not isinstance(thread_safe, bool):
                raise KaizenTypeError(f"thread_safe must be a bool, got {thread_safe!r}")
            self._add_function(name, fn, mode, builtin=False, thread_safe=thread_safe)
        return fn

    def compute_function(
        self, name: str, *, mode: str = "series", thread_safe: bool = False
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator form of :meth:`register_function`.

        Examples
        --------
        >>> store = FeatureStore("sqlite:///:memory:")
        >>> @store.compute_function("range_")
        ... def range_(high, low, *, window_size=None):
        ...     return high - low
        """

        def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
            return self.register_function(name, fn, mode=mode, thread_safe=thread_safe)

        return decorator

    def list_functions(self) -> list[str]:
        """Names of the registered compute functions (built-ins included)."""
        return sorted(self._functions)

    def _check_params(self, definition: FeatureDefinition, function: _Function) -> None:
        if function.accepts is None:
            return
        cfg = definition.computation_config
        assert isinstance(cfg, ComputationConfig)
        wanted = {split_name_version(d)[0] for d in definition.dependencies} | set(cfg.params)
        wanted.add("window_size")
        unknown = sorted(wanted - function.accepts)
        if unknown:
            raise ValidationError(
                f"feature {definition.ref!r}: compute function {function.name!r} does not take "
                f"{unknown}; it accepts {sorted(function.accepts)} (dependencies and params are "
                "passed as keyword arguments, plus window_size)"
            )

    # ------------------------------------------------------------------ definitions
    def _load_definitions(self) -> None:
        with read_connection(self._engine) as conn:
            rows = conn.execute(
                sa.select(
                    feature_definitions.c.definition,
                    feature_definitions.c.name,
                    feature_definitions.c.resolved_dependencies,
                )
            ).all()
        for text, name, resolved in rows:
            try:
                d = FeatureDefinition.from_dict(json.loads(text))
                pins = json.loads(resolved) if resolved else {}
            except (ValueError, TypeError, KeyError) as exc:
                raise StorageError(
                    f"stored definition of feature {name!r} is unreadable: {exc}"
                ) from exc
            self._definitions.setdefault(d.name, {})[d.version] = d
            self._pins[d.ref] = {str(k): str(v) for k, v in pins.items()}

    def _pin_dependencies(self, definition: FeatureDefinition) -> dict[str, str]:
        """The version each unpinned dependency that is a registered feature (or an output
        column of one) resolves to now: recorded at registration, so that ``name@version``
        keeps computing the same thing when its upstream gets a new version."""
        pins: dict[str, str] = {}
        for dep in definition.dependencies:
            base, version = split_name_version(dep, "dependency")
            if version is not None:
                continue
            up = self._pick(base, None) or self._column_definition(base, None)
            if up is not None:
                pins[dep] = up.version
        return pins

    def _column_owner(self, column: str) -> str | None:
        for name, versions in self._definitions.items():
            for d in versions.values():
                if column in d.outputs:
                    return name
        return None

    def _column_definition(self, column: str, version: str | None) -> FeatureDefinition | None:
        """The definition providing output ``column``: the pinned version of its feature, or
        the newest version that still has that column."""
        owner = self._column_owner(column)
        if owner is None:
            return None
        if version is not None:
            d = self._lookup(owner, version)
            return d if d is not None and column in d.columns else None
        having = [d for d in self._definitions[owner].values() if column in d.columns]
        return max(having, key=lambda d: d.version_key) if having else None

    def register_feature(
        self, definition: FeatureDefinition | Mapping[str, Any]
    ) -> FeatureDefinition:
        """Register (and persist) a definition; several versions of one name coexist.

        Re-registering an identical ``name@version`` is a no-op; a changed description, tags or
        deprecation flag updates it; any change to what is computed needs a new version.

        Examples
        --------
        >>> store = FeatureStore("sqlite:///:memory:")
        >>> d = store.register_feature(FeatureDefinition(
        ...     "rsi_7", "1.0.0", dependencies=["close"], compute_function="rsi",
        ...     computation_config={"params": {"window": 7}}))
        >>> d.ref
        'rsi_7@1.0.0'
        """
        if isinstance(definition, Mapping):
            definition = FeatureDefinition.from_dict(definition)
        if not isinstance(definition, FeatureDefinition):
            raise KaizenTypeError(
                f"definition must be a FeatureDefinition or a dict, got {type(definition).__name__}"
            )
        function = self._functions.get(definition.compute_function)
        if function is None:
            raise NotFoundError(
                f"feature {definition.ref!r} names compute function "
                f"{definition.compute_function!r}, which is not registered; register it first "
                f"with store.register_function({definition.compute_function!r}, fn) "
                f"(registered: {self.list_functions()})"
            )
        self._check_params(definition, function)
        with self._lock:
            if definition.ref in self._builtin_refs:
                raise ValidationError(
                    f"{definition.ref!r} is a built-in feature; register a new version or name"
                )
            for col in definition.outputs:
                owner = self._column_owner(col)
                if (owner is not None and owner != definition.name) or (
                    col != definition.name and col in self._definitions
                ):
                    raise ValidationError(
                        f"output column {col!r} of {definition.ref!r} is already a feature or "
                        f"a column of feature {owner or col!r}; choose another column name"
                    )
            owner = self._column_owner(definition.name)
            if definition.name not in self._definitions and owner is not None:
                raise ValidationError(
                    f"name {definition.name!r} is already an output column of feature {owner!r}"
                )
            new_hash = definition.definition_hash()
            payload = json.dumps(definition.to_dict(), sort_keys=True)
            pins = self._pin_dependencies(definition)
            stored_pins: dict[str, str] = {}

            def txn() -> FeatureDefinition:
                with self._engine.begin() as conn:
                    row = conn.execute(
                        sa.select(
                            feature_definitions.c.definition_hash,
                            feature_definitions.c.definition,
                            feature_definitions.c.resolved_dependencies,
                        ).where(
                            feature_definitions.c.name == definition.name,
                            feature_definitions.c.version == definition.version,
                        )
                    ).first()
                    stored_pins.clear()
                    if row is None:
                        conn.execute(
                            feature_definitions.insert().values(
                                name=definition.name,
                                version=definition.version,
                                definition_hash=new_hash,
                                definition=payload,
                                deprecated=definition.deprecated,
                                created_at=_now(),
                                resolved_dependencies=json.dumps(pins, sort_keys=True),
                            )
                        )
                        stored_pins.update(pins)
                    elif row.definition_hash != new_hash:
                        raise ValidationError(
                            f"feature {definition.ref!r} is already registered with a different "
                            "computation; register the change under a new version "
                            "(e.g. bump the minor version)"
                        )
                    elif row.definition != payload:
                        conn.execute(
                            feature_definitions.update()
                            .where(
                                feature_definitions.c.name == definition.name,
                                feature_definitions.c.version == definition.version,
                            )
                            .values(definition=payload, deprecated=definition.deprecated)
                        )
                    if row is not None and row.resolved_dependencies:
                        # registered before: the versions it resolved to then stay
                        stored_pins.update(json.loads(row.resolved_dependencies))
                return definition

            # versions that differ only by spelling ("1.0" vs "1.0.0") are the same version
            for other in self._definitions.get(definition.name, {}).values():
                if (
                    other.version != definition.version
                    and other.version_key == definition.version_key
                ):
                    raise ValidationError(
                        f"version {definition.version!r} of {definition.name!r} equals the "
                        f"registered version {other.version!r}; use that spelling or a new version"
                    )
            retry_on_conflict(txn)
            self._definitions.setdefault(definition.name, {})[definition.version] = definition
            self._pins[definition.ref] = dict(stored_pins)
        return definition

    def deprecate(self, ref: str) -> FeatureDefinition:
        """Mark ``name@version`` (default: the newest) deprecated; computing it then warns."""
        d = self.get_definition(ref)
        if d.ref in self._builtin_refs:
            raise ValidationError(f"built-in feature {d.ref!r} cannot be deprecated")
        new = FeatureDefinition.from_dict({**d.to_dict(), "deprecated": True})
        return self.register_feature(new)

    def list_features(self, *, include_deprecated: bool = True) -> list[FeatureDefinition]:
        """Every registered definition and version, by name then semantic version.

        Examples
        --------
        >>> store = FeatureStore("sqlite:///:memory:")
        >>> "rsi_14@1.0.0" in [d.ref for d in store.list_features()]
        True
        """
        with self._lock:
            self._load_definitions()
            out = [
                d
                for name in sorted(self._definitions)
                for d in sorted(self._definitions[name].values(), key=lambda d: d.version_key)
            ]
        if not include_deprecated:
            out = [d for d in out if not d.deprecated]
        return out

    def _pick(self, name: str, version: str | None) -> FeatureDefinition | None:
        versions = self._definitions.get(name)
        if not versions:
            return None
        if version is None:
            return max(versions.values(), key=lambda d: d.version_key)
        key = parse_version(version)
        for d in versions.values():
            if d.version_key == key:
                return d
        return None

    def _lookup(self, name: str, version: str | None) -> FeatureDefinition | None:
        d = self._pick(name, version)
        if d is None:  # another process may have registered it since
            self._load_definitions()
            d = self._pick(name, version)
        return d

    def get_definition(self, ref: str) -> FeatureDefinition:
        """The definition of ``"name"`` (newest version) or ``"name@version"``."""
        name, version = split_name_version(ref, "name")
        d = self._lookup(name, version)
        if d is None:
            known = sorted(self._definitions.get(name, {}))
            hint = f"registered versions: {known}" if known else "no such feature is registered"
            raise NotFoundError(f"feature {ref!r} not found ({hint})")
        return d

    def _resolve_output(
        self, ref: str, param: str = "name"
    ) -> tuple[FeatureDefinition, tuple[str, ...]]:
        """A requested name: a feature (all its columns) or one output column of a feature."""
        name, version = split_name_version(ref, param)
        d = self._lookup(name, version)
        if d is not None:
            return d, d.columns
        d = self._column_definition(name, version)
        if d is not None:
            return d, (name,)
        known = sorted(self._definitions.get(name, {}))
        if known:
            raise NotFoundError(f"feature {name!r} has no version {version!r}; registered: {known}")
        raise NotFoundError(
            f"{param}={ref!r} is neither a registered feature nor an output column; see "
            "store.list_features()"
        )

    # ------------------------------------------------------------------ planning
    def _plan(
        self, requests: list[tuple[FeatureDefinition, tuple[str, ...]]], frame: FrameData
    ) -> dict[str, _Node]:
        nodes: dict[str, _Node] = {}
        on_stack: list[str] = []

        def visit(d: FeatureDefinition) -> _Node:
            if d.ref in nodes:
                return nodes[d.ref]
            if d.ref in on_stack:
                cycle = on_stack[on_stack.index(d.ref) :] + [d.ref]
                raise ValidationError("dependency cycle: " + " -> ".join(cycle))
            on_stack.append(d.ref)
            function = self._functions.get(d.compute_function)
            if function is None:
                raise NotFoundError(
                    f"feature {d.ref!r} needs compute function {d.compute_function!r}, which is "
                    "not "
                    "registered in this process; functions are code and are not stored, so "
                    f"register it again with store.register_function({d.compute_function!r}, fn)"
                )
            self._check_params(d, function)
            deps: list[_Dep] = []
            upstream: list[str] = []
            sources: list[str] = []
            for dep in d.dependencies:
                base, version = split_name_version(dep, "dependency")
                if version is None and frame.has(base):
                    deps.append(_Dep(base, raw=base))
                    if base not in sources:
                        sources.append(base)
                    continue
                if version is None:  # the version it resolved to when d was registered
                    version = self._pins.get(d.ref, {}).get(dep)
                up: FeatureDefinition | None = self._lookup(base, version)
                column = None
                if up is not None:
                    if len(up.columns) == 1:
                        column = up.columns[0]
                    elif base in up.columns:
                        column = base
                    else:
                        raise ValidationError(
                            f"feature {d.ref!r} depends on {dep!r}, which has several columns "
                            f"{list(up.columns)}; depend on one of them"
                        )
                else:
                    up = self._column_definition(base, version)
                    column = base if up is not None else None
                if up is None or column is None:
                    chain = " -> ".join([*on_stack, dep])
                    raise NotFoundError(
                        f"missing input {dep!r} (chain: {chain}): it is neither a column of the "
                        f"data (columns: {frame.columns}) nor a registered feature"
                    )
                node = visit(up)
                deps.append(_Dep(base, ref=up.ref, column=column))
                for r in [*node.upstream, up.ref]:
                    if r not in upstream:
                        upstream.append(r)
                for s in node.sources:
                    if s not in sources:
                        sources.append(s)
            on_stack.pop()
            node = _Node(d, function, deps, upstream=upstream, sources=sources)
            node.key = _digest(
                [
                    d.ref,
                    d.definition_hash(),
                    function.token,
                    function.mode,
                    frame.layout_fp,
                    [
                        [p.keyword, "raw", frame.fingerprint(p.raw)]
                        if p.raw is not None
                        else [p.keyword, nodes[p.ref].key, p.column]  # type: ignore[index]
                        for p in deps
                    ],
                ]
            )
            nodes[d.ref] = node
            return node

        for d, _cols in requests:
            visit(d)
        return nodes

    # ------------------------------------------------------------------ computing
    def _call(
        self, node: _Node, inputs: dict[str, np.ndarray], frame: FrameData
    ) -> dict[str, np.ndarray]:
        """Run the compute function on segment-ordered inputs; return segment-ordered columns."""
        d = node.definition
        cfg = d.computation_config
        assert isinstance(cfg, ComputationConfig)
        fn = node.function
        kwargs = {"window_size": cfg.window_size, **cfg.params}
        offsets = frame.offsets
        n = frame.n_rows
        mode = fn.mode
        if mode == "batch" and any(a.dtype.kind != "f" for a in inputs.values()):
            mode = "series"  # NaN padding needs float inputs
        if mode == "batch" and frame.n_segments > 1:
            lengths = np.diff(offsets)
            width = int(lengths.max()) if lengths.size else 0
            if frame.n_segments * width > 2 * n + 1024:
                mode = "series"  # very uneven symbols: padding would waste too much memory
        if mode == "elementwise" or (mode == "batch" and frame.n_segments <= 1):
            args = inputs
            if mode == "batch":
                args = {k: v.reshape(1, -1) for k, v in inputs.items()}
            return self._split_outputs(node, fn.fn(**args, **kwargs), (n,), 1)
        if mode == "batch":
            lengths = np.diff(offsets)
            width = int(lengths.max())
            # equal lengths: the segment-ordered column already is the (symbols, rows) block
            uniform = bool(np.all(lengths == width))
            padded = {}
            for k, v in inputs.items():
                if uniform:
                    padded[k] = v.reshape(frame.n_segments, width)
                    continue
                block = frame.padded.get(id(v))
                if block is None:
                    block = K.pad_segments(v, offsets, np.empty((frame.n_segments, width)))
                    frame.padded[id(v)] = block
                padded[k] = block
            cols2d = self._split_outputs(
                node, fn.fn(**padded, **kwargs), (frame.n_segments, width), 0
            )
            if uniform:
                return {c: a.reshape(-1) for c, a in cols2d.items()}
            return {c: K.unpad_segments(a, offsets, np.empty(n)) for c, a in cols2d.items()}
        out = {c: np.empty(n) for c in d.columns}
        for s in range(frame.n_segments):
            lo, hi = int(offsets[s]), int(offsets[s + 1])
            part = self._split_outputs(
                node, fn.fn(**{k: v[lo:hi] for k, v in inputs.items()}, **kwargs), (hi - lo,), 0
            )
            for c, a in part.items():
                out[c][lo:hi] = a
        return out

    def _split_outputs(
        self, node: _Node, result: Any, shape: tuple[int, ...], flatten_rows: int
    ) -> dict[str, np.ndarray]:
        d = node.definition
        where = f"compute function {node.function.name!r} of feature {d.ref!r}"
        if d.outputs:
            if isinstance(result, Mapping):
                missing = [c for c in d.outputs if c not in result]
                if missing:
                    raise ValidationError(
                        f"{where} returned no {missing}; it must return {list(d.outputs)}"
                    )
                values = [result[c] for c in d.outputs]
            elif isinstance(result, (tuple, list)) and len(result) == len(d.outputs):
                values = list(result)
            else:
                raise ValidationError(
                    f"{where} must return {len(d.outputs)} arrays {list(d.outputs)} (a tuple in "
                    f"that order or a dict), got {type(result).__name__}"
                )
        else:
            if isinstance(result, (tuple, Mapping)):
                raise ValidationError(
                    f"{where} returned a {type(result).__name__}; a one-column feature returns "
                    "one array (declare outputs=[...] for several)"
                )
            values = [result]
        out = {}
        for col, v in zip(d.columns, values, strict=True):
            if type(v).__module__.startswith(("pandas", "polars")):
                v = v.to_numpy()
            arr = np.asarray(v)
            if arr.dtype.kind not in "biuf":
                raise KaizenTypeError(
                    f"{where} returned dtype {arr.dtype} for {col!r}; return numbers"
                )
            arr = np.ascontiguousarray(arr, dtype=np.float64)
            if flatten_rows and arr.ndim == 2 and arr.shape[0] == 1:
                arr = arr.reshape(-1)
            if arr.shape != shape:
                raise ValidationError(
                    f"{where} returned shape {arr.shape} for {col!r}, expected {shape} "
                    "(one value per input row)"
                )
            out[col] = arr
        return out

    def _compute(
        self,
        refs: Sequence[str],
        data: Any,
        *,
        symbol: str | None,
        use_cache: bool,
        statistics: bool | None,
        record: bool = True,
        columns: Mapping[str, str] | None = None,
        params: Sequence[str] | None = None,
    ) -> tuple[
        FrameData, list[tuple[FeatureDefinition, tuple[str, ...]]], dict[str, dict[str, np.ndarray]]
    ]:
        """``params`` names each of ``refs`` as the caller spelled it (for error messages)."""
        labels = list(params) if params is not None else ["name"] * len(refs)
        # names first: a wrong name is reported before the data is read
        requests = [self._resolve_output(r, p) for r, p in zip(refs, labels, strict=True)]
        frame = (
            data if isinstance(data, FrameData) else FrameData(data, symbol=symbol, columns=columns)
        )
        nodes = self._plan(requests, frame)
        for node in nodes.values():
            d = node.definition
            if d.deprecated:
                warnings.warn(
                    f"feature {d.ref!r} is deprecated; see store.list_features() for newer "
                    "versions",
                    DeprecationWarning,
                    stacklevel=4,
                )
            cfg = d.computation_config
            assert isinstance(cfg, ComputationConfig)
            if not cfg.causal:
                logger.warning("feature %s is marked non-causal (it may look ahead)", d.ref)
        results: dict[str, dict[str, np.ndarray]] = {}
        segmented: dict[tuple[str, str], np.ndarray] = {}
        fresh: list[str] = []

        # 1. top-down: which features must be computed (a cache hit needs nothing upstream)
        level: dict[str, int] = {}

        def plan(ref: str) -> None:
            if ref in results or ref in level:
                return
            node = nodes[ref]
            if use_cache:
                hit = self._cache.get(node.key)
                if hit is not None:
                    results[ref] = hit
                    return
            depth = 0
            for dep in node.deps:
                if dep.ref is not None:
                    plan(dep.ref)
                    depth = max(depth, level.get(dep.ref, -1) + 1)
            level[ref] = depth

        for d, _cols in requests:
            plan(d.ref)

        def compute(ref: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            node = nodes[ref]
            cfg = node.definition.computation_config
            assert isinstance(cfg, ComputationConfig)
            raw_cols = self._call(node, inputs, frame)
            out = {}
            for c, y in raw_cols.items():
                y = _postprocess(y, cfg, frame.offsets)
                # a function may hand back (a view of) its input, which can be the caller's own
                # array: the cache freezes what it stores, so it must own the memory
                if any(np.may_share_memory(y, v) for v in inputs.values()):
                    y = y.copy()
                out[c] = y
            return out

        # 2. level by level (every input of a level is ready); independent thread-safe features
        # of one series run on the thread pool, since the numba kernels release the GIL
        for depth in range(max(level.values(), default=-1) + 1):
            batch = [ref for ref, lv in level.items() if lv == depth]
            jobs: list[tuple[str, dict[str, np.ndarray]]] = []
            for ref in batch:
                inputs = {}
                for dep in nodes[ref].deps:
                    if dep.raw is not None:
                        inputs[dep.keyword] = frame.segmented(dep.raw)
                    else:
                        assert dep.ref is not None and dep.column is not None
                        key = (dep.ref, dep.column)
                        if key not in segmented:
                            segmented[key] = frame.to_segment_order(results[dep.ref][dep.column])
                        inputs[dep.keyword] = segmented[key]
                jobs.append((ref, inputs))
            pool = self._pool() if frame.n_segments == 1 else None
            parallel = [j for j in jobs if pool is not None and nodes[j[0]].function.thread_safe]
            futures = {}
            if len(parallel) > 1 and pool is not None:
                futures = {ref: pool.submit(compute, ref, inputs) for ref, inputs in parallel}
            outputs = {}
            for ref, inputs in jobs:
                if ref not in futures:
                    outputs[ref] = compute(ref, inputs)
            for ref, future in futures.items():
                outputs[ref] = future.result()
            for ref in batch:
                cols = {}
                for c, y in outputs[ref].items():
                    segmented[(ref, c)] = y
                    cols[c] = frame.to_input_order(y)
                if use_cache:
                    cols = self._cache.put(nodes[ref].key, cols)
                else:
                    for a in cols.values():
                        a.flags.writeable = False
                results[ref] = cols
                fresh.append(ref)
        if record:
            want_stats = self._record_statistics if statistics is None else bool(statistics)

            def recorded(ref: str) -> bool:
                # a repeat of the last recorded result; one recorded without statistics still
                # needs them when they are wanted now
                last = self._last_recorded.get(ref)
                return (
                    last is not None and last[0] == nodes[ref].key and (last[1] or not want_stats)
                )

            to_record = [ref for ref in results if ref in fresh or not recorded(ref)]
            if to_record:
                self._record(to_record, nodes, results, frame, want_stats)
        return frame, requests, results

    def _record(
        self,
        refs: list[str],
        nodes: dict[str, _Node],
        results: dict[str, dict[str, np.ndarray]],
        frame: FrameData,
        want_stats: bool,
    ) -> None:
        now = _now()
        lineage_rows = []
        stats_rows = []
        column_stats: dict[tuple[str, str], dict[str, Any]] = {}
        if want_stats:
            # one column per task: the statistics kernels release the GIL
            keys = [(ref, col) for ref in refs for col in results[ref]]
            pool = self._pool() if len(keys) > 1 else None
            arrays = [results[ref][col] for ref, col in keys]
            stats = pool.map(column_statistics, arrays) if pool else map(column_statistics, arrays)
            column_stats = dict(zip(keys, stats, strict=True))
        for ref in refs:
            node = nodes[ref]
            d = node.definition
            cfg = d.computation_config
            assert isinstance(cfg, ComputationConfig)
            transformations: list[dict[str, Any]] = []
            for up in node.upstream:
                transformations.extend(_steps(nodes[up].definition, nodes[up].function))
            transformations.extend(_steps(d, node.function))
            causal = cfg.causal and all(
                nodes[u].definition.computation_config.causal  # type: ignore[union-attr]
                for u in node.upstream
            )
            lineage = FeatureLineage(
                feature=d.name,
                version=d.version,
                definition_hash=d.definition_hash(),
                compute_function=d.compute_function,
                source_columns=tuple(node.sources),
                upstream_features=tuple(node.upstream),
                transformations=tuple(transformations),
                input_fingerprints={c: frame.fingerprint(c) for c in node.sources},
                input_fingerprint=node.key,
                n_rows=frame.n_rows,
                n_symbols=frame.n_segments,
                causal=causal,
                computed_at=now,
            )
            lineage_rows.append(
                {
                    "name": d.name,
                    "version": d.version,
                    "lineage": json.dumps(lineage.to_dict(), sort_keys=True),
                    "computed_at": now,
                }
            )
            if want_stats:
                for col in results[ref]:
                    st = column_stats[(ref, col)]
                    stats_rows.append(
                        {
                            "name": d.name,
                            "version": d.version,
                            "column_name": col,
                            **_statistics_row(st),
                            "computed_at": now,
                        }
                    )

        def txn() -> list[tuple[str, str, str]]:
            # one executemany per statement: the rows replace the previous computation's
            with self._engine.begin() as conn:
                pinned = self._pin_first_references(conn, stats_rows, now)
                if lineage_rows:
                    conn.execute(
                        _DELETE_LINEAGE,
                        [{"b_name": r["name"], "b_version": r["version"]} for r in lineage_rows],
                    )
                    conn.execute(feature_lineage.insert(), lineage_rows)
                if stats_rows:
                    conn.execute(
                        _DELETE_STATISTICS,
                        [
                            {
                                "b_name": r["name"],
                                "b_version": r["version"],
                                "b_col": r["column_name"],
                            }
                            for r in stats_rows
                        ],
                    )
                    conn.execute(feature_statistics.insert(), stats_rows)
            return pinned

        self._pinned.update(retry_on_conflict(txn))
        for ref in refs:
            self._last_recorded[ref] = (nodes[ref].key, want_stats)

    def _pin_first_references(
        self, conn: sa.Connection, stats_rows: list[dict[str, Any]], now: str
    ) -> list[tuple[str, str, str]]:
        """Pin a drift reference for every column in ``stats_rows`` that has none yet; return
        the keys known to have one. Runs inside the transaction that replaces the statistics.

        The reference is the first statistics with values that the store saw: the stored
        statistics about to be replaced when they hold values (a store from before drift
        references kept only those), else the new ones. Columns without values pin nothing.
        """
        keys = [(r["name"], r["version"], r["column_name"]) for r in stats_rows]
        unknown = [k for k in keys if k not in self._pinned]
        if not unknown:
            return keys
        names = sorted({k[0] for k in unknown})
        ref_t = feature_drift_references
        have = {
            tuple(row)
            for row in conn.execute(
                sa.select(ref_t.c.name, ref_t.c.version, ref_t.c.column_name).where(
                    ref_t.c.name.in_(names)
                )
            )
        }
        missing = [k for k in unknown if k not in have]
        if not missing:
            return keys
        st_t = feature_statistics
        previous = {
            (row["name"], row["version"], row["column_name"]): dict(row)
            for row in conn.execute(sa.select(st_t).where(st_t.c.name.in_(names))).mappings()
        }
        new = dict(zip(keys, stats_rows, strict=True))
        inserts = []
        for key in missing:
            old = previous.get(key)
            source = old if old is not None and old["count"] > 0 else new[key]
            if source["count"] > 0:
                row = {f: source[f] for f in _STATISTICS_FIELDS}
                inserts.append({**row, "origin": "computation", "pinned_at": now})
        if inserts:
            conn.execute(ref_t.insert(), inserts)
        done = {(r["name"], r["version"], r["column_name"]) for r in inserts}
        return [k for k in keys if k not in missing or k in done]

    def compute_feature(
        self,
        name: str,
        data: Any,
        *,
        symbol: str | None = None,
        use_cache: bool = True,
        statistics: bool | None = None,
        copy: bool = False,
        columns: Mapping[str, str] | None = None,
    ) -> Any:
        """Compute one feature (or one output column) aligned with the rows of ``data``.

        Parameters
        ----------
        name : str
            ``"feature"``, ``"feature@version"`` or an output column such as ``"macd_signal"``.
        data : mapping of column -> array, pandas.DataFrame, polars.DataFrame or dict of frames
            The raw columns; rows in time order (within each symbol).
        symbol : str, optional
            Column of symbol ids; each symbol's rows are one series.
        use_cache : bool
            Look up and store the result in the cache.
        statistics : bool, optional
            Record statistics (default: the store's setting).
        copy : bool
            Return a writable copy instead of a read-only view of the cached values.
        columns : mapping of str to str, optional
            Input names mapped to the data's column names, e.g. ``{"close": "Close"}``.

        Returns
        -------
        numpy.ndarray
            float64, one value per input row (shape ``(n, k)`` for a feature with k columns),
            read-only unless ``copy``; for a dict of frames, a dict of symbol -> array.

        Examples
        --------
        >>> import numpy as np
        >>> store = FeatureStore("sqlite:///:memory:")
        >>> close = np.arange(100.0, 150.0)
        >>> store.compute_feature("price_momentum", {"close": close})[9:12]
        array([nan, 10., 10.])
        """
        frame, requests, results = self._compute(
            [name],
            data,
            symbol=symbol,
            use_cache=use_cache,
            statistics=statistics,
            columns=columns,
            params=["name"],
        )
        d, cols = requests[0]
        values = results[d.ref]
        if len(cols) == 1:
            value = values[cols[0]]
            return frame.wrap_array(value.copy() if copy else value)
        # rows of a (k, n) block, transposed: an (n, k) view without an interleaving copy
        block = np.empty((len(cols), frame.n_rows))
        for i, c in enumerate(cols):
            block[i] = values[c]
        stacked = block.T
        stacked.flags.writeable = copy
        return frame.wrap_array(stacked)

    def compute_features(
        self,
        names: Sequence[str],
        data: Any,
        *,
        symbol: str | None = None,
        use_cache: bool = True,
        statistics: bool | None = None,
        copy: bool = False,
        columns: Mapping[str, str] | None = None,
    ) -> Any:
        """Compute several features; shared dependencies are computed once.

        Returns a table like the input: a pandas DataFrame (same index) for pandas, a polars
        DataFrame for polars, a dict of column -> array for a mapping, and a dict of symbol ->
        table for a dict of frames. Multi-column features contribute all their columns. The
        columns are read-only views of the cached values (a cache hit costs no copy); pass
        ``copy=True`` for writable columns, e.g. to modify a pandas result in place, and
        ``columns={"close": "Close"}`` when the data names its columns differently.

        Examples
        --------
        >>> import numpy as np
        >>> store = FeatureStore("sqlite:///:memory:")
        >>> close = 100 + np.cumsum(np.random.default_rng(1).normal(size=100))
        >>> out = store.compute_features(["rsi_14", "macd"], {"close": close})
        >>> sorted(out)
        ['macd', 'macd_hist', 'macd_signal', 'rsi_14']
        """
        if isinstance(names, str):
            raise KaizenTypeError(
                f"names must be a list of feature names, got the str {names!r}; pass "
                f"[{names!r}], or call compute_feature for one feature"
            )
        if not isinstance(names, Sequence):
            raise KaizenTypeError(
                f"names must be a list of feature names such as ['rsi_14', 'macd'], got "
                f"{type(names).__name__}"
            )
        frame, requests, results = self._compute(
            list(names),
            data,
            symbol=symbol,
            use_cache=use_cache,
            statistics=statistics,
            columns=columns,
            params=[f"names[{i}]" for i in range(len(names))],
        )
        table: dict[str, np.ndarray] = {}
        for d, cols in requests:
            for c in cols:
                table[c] = results[d.ref][c].copy() if copy else results[d.ref][c]
        return frame.wrap_columns(table)

    # ------------------------------------------------------------------ cache
    def clear_cache(self, *, disk: bool = True) -> None:
        """Empty the in-memory cache (and the on-disk one when ``disk``); counters restart."""
        self._cache.clear(disk=disk)

    def cache_info(self) -> dict[str, Any]:
        """Cache counters: hits, misses, disk_hits, entries, bytes, max_bytes, cache_dir."""
        c = self._cache
        return {
            "hits": c.hits,
            "misses": c.misses,
            "disk_hits": c.disk_hits,
            "entries": len(c),
            "bytes": c.current_bytes,
            "max_bytes": c.max_bytes,
            "cache_dir": str(c.cache_dir) if c.cache_dir else None,
        }

    @property
    def cache_hits(self) -> int:
        return self._cache.hits

    @property
    def cache_misses(self) -> int:
        return self._cache.misses

    # ------------------------------------------------------------------ statistics & lineage
    def _column_ref(self, ref: str) -> tuple[FeatureDefinition, str]:
        """The one column that statistics and drift refer to.

        Naming rule: a feature with several outputs may name one of them after itself (``macd``
        names the MACD line ``macd``). Where one column is required, such a name means that
        column; the feature's other columns are asked for by their own names (``macd_signal``).
        A multi-output feature without a column of its own name is refused with the list of its
        columns.
        """
        d, cols = self._resolve_output(ref)
        if len(cols) > 1 and d.name in cols:
            return d, d.name
        if len(cols) != 1:
            raise ValidationError(
                f"feature {d.ref!r} has several columns {list(cols)}; ask for one of them"
            )
        return d, cols[0]

    def _column_values(
        self,
        d: FeatureDefinition,
        col: str,
        given: Any,
        param: str,
        *,
        symbol: str | None,
        columns: Mapping[str, str] | None,
    ) -> np.ndarray:
        """Values of column ``col``: ``given`` itself (array-like), or computed from ``given``
        as raw data (a mapping or a table) without recording statistics or lineage."""
        if isinstance(given, Mapping) or type(given).__name__ == "DataFrame":
            _f, _r, results = self._compute(
                [f"{col}@{d.version}"],  # pinned: the version asked for, not the newest
                given,
                symbol=symbol,
                use_cache=True,
                statistics=False,
                record=False,
                columns=columns,
            )
            return np.ascontiguousarray(results[d.ref][col])
        given_type = type(given).__name__
        if type(given).__module__.startswith(("pandas", "polars")):
            given = given.to_numpy()
        kind = "numbers (an array of the column's values) or raw data (a dict or a table)"
        try:
            raw = np.asarray(given)
        except (TypeError, ValueError) as exc:
            raise KaizenTypeError(f"{param} must be {kind}, got {given_type}: {exc}") from exc
        if raw.dtype.kind not in "biufO":
            raise KaizenTypeError(
                f"{param} must be {kind}, got an array of dtype {raw.dtype} "
                f"({reprlib.repr(given)}); convert it to float values first"
            )
        try:
            values = np.ascontiguousarray(raw, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise KaizenTypeError(
                f"{param} must be {kind}, got {given_type} {reprlib.repr(given)} "
                f"whose items are not all numbers ({exc})"
            ) from exc
        if values.ndim != 1:
            raise ValidationError(
                f"{param} must be 1-D values or a table, got shape {values.shape}; pass one "
                "column's values"
            )
        return values

    @staticmethod
    def _statistics_from_row(
        d: FeatureDefinition, col: str, row: Mapping[str, Any]
    ) -> FeatureStatistics:
        ref = json.loads(row["reference"])
        return FeatureStatistics(
            feature=d.name,
            version=d.version,
            column=col,
            count=int(row["count"]),
            missing=int(row["missing"]),
            mean=_none_to_nan(row["mean"]),
            std=_none_to_nan(row["std"]),
            min=_none_to_nan(row["min"]),
            max=_none_to_nan(row["max"]),
            percentiles={q: _none_to_nan(row[f"p{q}"]) for q in PERCENTILES},
            reference_edges=tuple(_none_to_nan(e) for e in ref["edges"]),
            reference_fractions=tuple(float(f) for f in ref["fractions"]),
            computed_at=row["computed_at"],
        )

    def _read_row(self, table: sa.Table, d: FeatureDefinition, col: str) -> Any:
        with read_connection(self._engine) as conn:
            return (
                conn.execute(
                    sa.select(table).where(
                        table.c.name == d.name,
                        table.c.version == d.version,
                        table.c.column_name == col,
                    )
                )
                .mappings()
                .first()
            )

    def get_statistics(self, name: str) -> FeatureStatistics:
        """Statistics of the latest computation of a feature column (persisted in storage).

        Every computation with statistics replaces them; drift is measured against a separate
        reference that computations never replace (see :meth:`get_drift_reference`).

        ``name`` names one column: a one-column feature, an output column (``"macd_signal"``),
        or a multi-output feature that has a column of its own name, which then means that
        column (``"macd"`` is the MACD line of the three-column ``macd`` feature).

        Examples
        --------
        >>> import numpy as np
        >>> store = FeatureStore("sqlite:///:memory:")
        >>> _ = store.compute_feature("price_return", {"close": np.arange(1.0, 11.0)})
        >>> store.get_statistics("price_return").count
        9
        """
        d, col = self._column_ref(name)
        row = self._read_row(feature_statistics, d, col)
        if row is None:
            raise NotFoundError(
                f"no statistics for {col!r} of {d.ref!r}: compute the feature first (with "
                "statistics enabled)"
            )
        return self._statistics_from_row(d, col, row)

    def _reference(self, d: FeatureDefinition, col: str) -> tuple[FeatureStatistics, str, str]:
        """The drift reference of a column, its origin and when it was pinned."""
        row = self._read_row(feature_drift_references, d, col)
        if row is not None:
            self._pinned.add((d.name, d.version, col))
            return self._statistics_from_row(d, col, row), row["origin"], row["pinned_at"]
        # Not pinned yet: only a store from before drift references, or one whose computations
        # had no values so far. Its stored statistics are then the first ones with values, and
        # the next computation pins them before replacing them.
        row = self._read_row(feature_statistics, d, col)
        if row is None or int(row["count"]) == 0:
            raise NotFoundError(
                f"no drift reference for {col!r} of {d.ref!r}: compute the feature on reference "
                "data (with statistics enabled) or pin one with "
                f"store.set_drift_reference({col!r}, reference_data)"
            )
        return self._statistics_from_row(d, col, row), "computation", row["computed_at"]

    def get_drift_reference(self, name: str) -> FeatureStatistics:
        """Statistics of the reference that :meth:`check_drift` compares with.

        The reference is pinned once: by the first computation of the column that has values,
        or explicitly by :meth:`set_drift_reference`. Later computations update
        :meth:`get_statistics` (the latest) but never the reference, so serving a feature on new
        data cannot hide the drift of that data.

        Examples
        --------
        >>> import tempfile
        >>> import numpy as np
        >>> store = FeatureStore(f"sqlite:///{tempfile.mkdtemp()}/features.db")
        >>> _ = store.compute_feature("price_return", {"close": np.arange(1.0, 11.0)})
        >>> _ = store.compute_feature("price_return", {"close": np.arange(1.0, 4.0)})
        >>> store.get_drift_reference("price_return").count  # the first computation
        9
        >>> store.get_statistics("price_return").count  # the latest
        2
        """
        d, col = self._column_ref(name)
        return self._reference(d, col)[0]

    def set_drift_reference(
        self,
        name: str,
        reference: Any,
        *,
        symbol: str | None = None,
        columns: Mapping[str, str] | None = None,
    ) -> FeatureStatistics:
        """Pin the reference that :meth:`check_drift` measures drift against.

        Parameters
        ----------
        name : str
            One column, as in :meth:`get_statistics` (``"rsi_14"``, ``"macd_signal"``,
            ``"rsi_14@1.0.0"``). Each version of a feature has its own reference.
        reference : FeatureStatistics, array-like or raw data
            Statistics of this column (for example ``store.get_statistics(name)``, to adopt the
            latest computation), the column's reference values, or raw data (a mapping or a
            table) the feature is computed from, without recording statistics or lineage.
        symbol, columns
            As in :meth:`compute_feature`, when ``reference`` is raw data.

        Returns
        -------
        FeatureStatistics
            The statistics now pinned as the reference.

        Examples
        --------
        >>> import numpy as np
        >>> store = FeatureStore("sqlite:///:memory:")
        >>> rng = np.random.default_rng(0)
        >>> training = {"close": 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 1_000)))}
        >>> store.set_drift_reference("price_return", training).count
        999
        """
        d, col = self._column_ref(name)
        if isinstance(reference, FeatureStatistics):
            if (reference.feature, reference.version, reference.column) != (
                d.name,
                d.version,
                col,
            ):
                raise ValidationError(
                    f"reference holds statistics of column {reference.column!r} of "
                    f"'{reference.feature}@{reference.version}', not of {col!r} of {d.ref!r}; "
                    "pass statistics of the same column and version, or its values"
                )
            if not reference.reference_edges:
                raise ValidationError(
                    f"reference statistics of {col!r} of {d.ref!r} hold no values to compare "
                    "with; pass statistics of a computation that had values"
                )
            st: dict[str, Any] = {
                "count": reference.count,
                "missing": reference.missing,
                "mean": reference.mean,
                "std": reference.std,
                "min": reference.min,
                "max": reference.max,
                "percentiles": dict(reference.percentiles),
                "reference_edges": reference.reference_edges,
                "reference_fractions": reference.reference_fractions,
            }
            computed_at = reference.computed_at or _now()
        else:
            values = self._column_values(
                d, col, reference, "reference", symbol=symbol, columns=columns
            )
            st = column_statistics(values)
            if st["count"] == 0:
                raise ValidationError(
                    f"reference for {col!r} of {d.ref!r} has no non-missing values; pass "
                    "values (or data) the drift check can bin"
                )
            computed_at = _now()
        if set(st["percentiles"]) != set(PERCENTILES):
            raise ValidationError(
                f"reference statistics must have the percentiles {list(PERCENTILES)}, got "
                f"{sorted(st['percentiles'])}"
            )
        row = {
            "name": d.name,
            "version": d.version,
            "column_name": col,
            **_statistics_row(st),
            "computed_at": computed_at,
            "origin": "pinned",
            "pinned_at": _now(),
        }
        t = feature_drift_references

        def txn() -> None:
            with self._engine.begin() as conn:
                conn.execute(
                    t.delete().where(
                        t.c.name == d.name, t.c.version == d.version, t.c.column_name == col
                    )
                )
                conn.execute(t.insert(), [row])

        retry_on_conflict(txn)
        self._pinned.add((d.name, d.version, col))
        return self._statistics_from_row(d, col, row)

    def check_drift(
        self,
        name: str,
        new: Any,
        *,
        symbol: str | None = None,
        threshold: float = 0.2,
        columns: Mapping[str, str] | None = None,
    ) -> DriftReport:
        """Population stability index of new values against the column's drift reference.

        The reference (see :meth:`get_drift_reference`) is the first computation of the column
        that had values, or what :meth:`set_drift_reference` pinned; later computations do not
        replace it. ``new`` is either the new values of the column (array-like) or raw data the
        feature is computed from (without recording statistics). Bins are the reference's
        deciles; the PSI is ``sum((a - e) * ln(a / e))`` over the 10 bins with shares floored at
        1e-6.

        Examples
        --------
        >>> import tempfile
        >>> import numpy as np
        >>> store = FeatureStore(f"sqlite:///{tempfile.mkdtemp()}/features.db")
        >>> rng = np.random.default_rng(0)
        >>> _ = store.compute_feature("price_return", {"close": 100 + rng.random(500)})
        >>> store.check_drift("price_return", {"close": 100 + rng.random(500)}).drifted
        False
        """
        threshold = check_float(threshold, "threshold", minimum=0.0)
        d, col = self._column_ref(name)
        stats, origin, pinned_at = self._reference(d, col)
        values = self._column_values(d, col, new, "new", symbol=symbol, columns=columns)
        if not stats.reference_edges:
            raise ValidationError(
                f"the drift reference of {name!r} holds no values to compare with; pin one "
                f"with store.set_drift_reference({name!r}, reference_data)"
            )
        edges = np.array(stats.reference_edges, dtype=np.float64)
        counts = K.bin_counts(values, edges, np.zeros(edges.size + 1, np.int64))
        total = int(counts.sum())
        if total == 0:
            raise ValidationError(f"new data for {name!r} has no non-missing values")
        actual = counts / total
        expected = np.array(stats.reference_fractions)
        psi, contrib = population_stability_index(expected, actual)
        return DriftReport(
            feature=d.ref,
            column=col,
            psi=psi,
            threshold=threshold,
            drifted=psi > threshold,
            edges=tuple(stats.reference_edges),
            expected=tuple(float(e) for e in expected),
            actual=tuple(float(a) for a in actual),
            n_values=total,
            contributions=tuple(float(c) for c in contrib),
            reference_origin=origin,
            reference_computed_at=stats.computed_at,
            reference_pinned_at=pinned_at,
        )

    def get_lineage(self, name: str) -> FeatureLineage:
        """Where the last computed values of a feature came from (persisted in storage).

        Examples
        --------
        >>> import numpy as np
        >>> store = FeatureStore("sqlite:///:memory:")
        >>> _ = store.compute_feature("rsi_14", {"close": np.arange(1.0, 40.0)})
        >>> lin = store.get_lineage("rsi_14")
        >>> lin.source_columns, lin.transformations[0]["params"]
        (('close',), {'window': 14})
        """
        d, _cols = self._resolve_output(name)
        t = feature_lineage
        with read_connection(self._engine) as conn:
            text = conn.execute(
                sa.select(t.c.lineage).where(t.c.name == d.name, t.c.version == d.version)
            ).scalar()
        if text is None:
            raise NotFoundError(
                f"feature {d.ref!r} has not been computed yet, so it has no lineage"
            )
        return FeatureLineage.from_dict(json.loads(text))


_DEFAULT_STORES: dict[str, FeatureStore] = {}
_DEFAULT_LOCK = threading.Lock()


def get_feature_store(
    storage: str | None = None,
    *,
    cache_dir: str | Path | bool | None = None,
    cache_bytes: int = DEFAULT_CACHE_BYTES,
) -> FeatureStore:
    """The process-wide feature store for ``storage`` (default: SQLite in ``$KAIZENML_HOME``).

    The same URL always returns the same store, so registered functions and the cache are shared
    across a program; ``cache_dir``/``cache_bytes`` apply when the store is first created.

    Examples
    --------
    >>> store = get_feature_store("sqlite:///:memory:")
    >>> store is get_feature_store("sqlite:///:memory:")
    True
    """
    url = default_storage_url() if storage is None else storage
    if not isinstance(url, str):
        raise KaizenTypeError(
            f"storage must be a database URL string or None, got {type(url).__name__}"
        )
    with _DEFAULT_LOCK:
        store = _DEFAULT_STORES.get(url)
        if store is None:
            store = FeatureStore(url, cache_dir=cache_dir, cache_bytes=cache_bytes)
            _DEFAULT_STORES[url] = store
        return store
