"""Feature definitions, their computation config, and semantic-version ordering."""

from __future__ import annotations

import hashlib
import json
import math
import re
import reprlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from .._exceptions import KaizenTypeError, ValidationError
from .._validation import check_choice, check_int, validate_name

__all__ = [
    "AGGREGATIONS",
    "FEATURE_TYPES",
    "FILL_POLICIES",
    "NORMALIZATIONS",
    "ComputationConfig",
    "FeatureDefinition",
    "parse_version",
    "split_name_version",
]

FEATURE_TYPES = ("numeric", "categorical", "binary", "embedding")
AGGREGATIONS = ("mean", "sum", "min", "max", "std", "last")
NORMALIZATIONS = ("zscore", "minmax")
FILL_POLICIES = ("zero", "mean", "forward", "backward")

_VERSION_RE = re.compile(
    r"^(0|[1-9]\d*)(?:\.(0|[1-9]\d*))?(?:\.(0|[1-9]\d*))?"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$"
)


def parse_version(value: Any, param: str = "version") -> tuple[Any, ...]:
    """Return a sort key that orders versions as Semantic Versioning 2.0 does.

    ``"1"`` and ``"1.0"`` are read as ``"1.0.0"``; a pre-release (``1.0.0-rc.1``) sorts before its
    release; build metadata (``+build.5``) is ignored for ordering.

    Examples
    --------
    >>> parse_version("1.2") < parse_version("1.10.0")
    True
    """
    if not isinstance(value, str):
        raise KaizenTypeError(f"{param} must be a str such as '1.0.0', got {type(value).__name__}")
    match = _VERSION_RE.match(value)
    if match is None:
        raise ValidationError(
            f"{param}={value!r} is not a semantic version; use MAJOR.MINOR.PATCH such as '1.0.0' "
            "(optionally '-prerelease' and '+build')"
        )
    major, minor, patch, pre, _build = match.groups()
    core = (int(major), int(minor or 0), int(patch or 0))
    if pre is None:
        # a release sorts after every pre-release of the same core version
        return (*core, 1, ())
    parts: list[tuple[int, int | str]] = []
    for ident in pre.split("."):
        if ident.isdigit():
            if len(ident) > 1 and ident[0] == "0":
                raise ValidationError(
                    f"{param}={value!r}: numeric pre-release identifiers must not have leading "
                    "zeros"
                )
            parts.append((0, int(ident)))  # numeric identifiers sort before alphanumeric ones
        else:
            parts.append((1, ident))
    return (*core, 0, tuple(parts))


def split_name_version(ref: Any, param: str = "name") -> tuple[str, str | None]:
    """Split ``"name@version"`` into its parts (version None when not pinned)."""
    if not isinstance(ref, str):
        shown = reprlib.repr(ref)
        raise KaizenTypeError(
            f"{param} must be a feature name str such as 'rsi_14' or 'rsi_14@1.0.0', got "
            f"{type(ref).__name__} {shown}"
        )
    name, sep, version = ref.partition("@")
    validate_name(name, param)
    if sep:
        parse_version(version, f"{param} version")
        return name, version
    return name, None


def _check_json_value(value: Any, where: str) -> Any:
    """Params must survive a JSON round trip unchanged (they are stored and hashed)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError(f"{where}={value!r}: parameters must be finite numbers")
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_check_json_value(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise KaizenTypeError(f"{where} keys must be str, got {k!r}")
            out[k] = _check_json_value(v, f"{where}[{k!r}]")
        return out
    try:  # numpy scalars from config code
        import numpy as np

        if isinstance(value, np.integer):
            return int(value)
        if isinstance(value, np.floating):
            return _check_json_value(float(value), where)
        if isinstance(value, np.bool_):
            return bool(value)
    except ImportError:  # pragma: no cover - numpy is a dependency
        pass
    raise KaizenTypeError(
        f"{where}={value!r} has type {type(value).__name__}; parameters must be JSON values "
        "(str, int, float, bool, None, lists and dicts of them)"
    )


@dataclass(frozen=True)
class ComputationConfig:
    """How the store post-processes what a feature's compute function returns.

    Steps run in this order: the compute function, then ``aggregation`` over ``window_size``
    rows, then ``fill_missing``, then ``normalize``. Every step is causal (row t uses rows <= t
    of the same symbol) except ``fill_missing="backward"``, which is refused unless
    ``causal=False`` marks the feature as looking ahead.

    Parameters
    ----------
    window_size : int or None
        Rows in the rolling ``aggregation`` window; also passed to the compute function.
    aggregation : {None, "mean", "sum", "min", "max", "std", "last"}
        Rolling aggregation (NaN until the window is full or while it holds a NaN or an
        infinity, as pandas' ``rolling(window_size)``; ``std`` uses ``ddof=1``; ``last`` is the
        newest finite value of the window).
    normalize : {False, None, "zscore", "minmax"}
        Causal normalization: rolling over ``normalize_window`` rows, or expanding (all finite
        values so far; NaN and infinities are skipped and give NaN) when ``normalize_window``
        is None. Never over the whole series.
    normalize_window : int or None
        Rolling normalization window (None: expanding).
    fill_missing : {None, "zero", "mean", "forward", "backward"}
        Filling of NaN and infinities: a constant 0, the mean of earlier finite values, the last
        earlier finite value, or (only with ``causal=False``) the next finite value.
    params : dict
        Extra keyword arguments for the compute function (JSON values).
    causal : bool
        False marks a deliberately non-causal feature (required for ``"backward"`` fill).

    Examples
    --------
    >>> cfg = ComputationConfig.from_dict({"window_size": 5, "aggregation": "mean",
    ...                                    "params": {"window": 10}})
    >>> cfg.aggregation, cfg.params["window"]
    ('mean', 10)
    """

    window_size: int | None = None
    aggregation: str | None = None
    normalize: str | bool | None = False
    normalize_window: int | None = None
    fill_missing: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    causal: bool = True

    def __post_init__(self) -> None:
        if self.window_size is not None:
            object.__setattr__(
                self, "window_size", check_int(self.window_size, "window_size", minimum=1)
            )
        if self.aggregation is not None:
            check_choice(self.aggregation, "aggregation", AGGREGATIONS)
            if self.window_size is None:
                raise ValidationError(
                    f"aggregation={self.aggregation!r} needs window_size (rows in the rolling "
                    "window), got window_size=None"
                )
            if self.aggregation == "std" and self.window_size < 2:
                raise ValidationError(
                    f"aggregation='std' needs window_size >= 2 (ddof=1), got {self.window_size}"
                )
        normalize = self.normalize
        if normalize is None or normalize is False:
            object.__setattr__(self, "normalize", False)
        elif normalize is True:
            raise ValidationError(
                "normalize=True is ambiguous; use normalize='zscore' or normalize='minmax'"
            )
        else:
            check_choice(normalize, "normalize", NORMALIZATIONS)
        if self.normalize_window is not None:
            object.__setattr__(
                self,
                "normalize_window",
                check_int(self.normalize_window, "normalize_window", minimum=2),
            )
        if self.fill_missing is not None:
            check_choice(self.fill_missing, "fill_missing", FILL_POLICIES)
        if not isinstance(self.causal, bool):
            raise KaizenTypeError(f"causal must be a bool, got {self.causal!r}")
        if self.fill_missing == "backward" and self.causal:
            raise ValidationError(
                "fill_missing='backward' reads rows after t (look-ahead) and is refused for a "
                "causal feature; use 'forward', 'mean' or 'zero', or pass causal=False to mark "
                "the feature as non-causal on purpose"
            )
        if not isinstance(self.params, Mapping):
            raise KaizenTypeError(
                "params must be a dict of extra function arguments, got "
                f"{type(self.params).__name__}"
            )
        params = _check_json_value(dict(self.params), "params")
        for key in params:
            if not key.isidentifier():
                raise ValidationError(f"params key {key!r} is not a valid keyword argument name")
            if key == "window_size":
                raise ValidationError(
                    "params must not contain 'window_size'; set ComputationConfig.window_size"
                )
        object.__setattr__(self, "params", params)

    @classmethod
    def from_dict(cls, config: ComputationConfig | Mapping[str, Any]) -> ComputationConfig:
        """Build a config from a plain dict (the form kept in YAML/JSON config files)."""
        if isinstance(config, ComputationConfig):
            return config
        if not isinstance(config, Mapping):
            raise KaizenTypeError(
                f"computation_config must be a ComputationConfig or a dict, got "
                f"{type(config).__name__}"
            )
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValidationError(
                f"computation_config has unknown keys {unknown}; allowed keys are {sorted(known)} "
                "(put extra function arguments under 'params')"
            )
        return cls(**dict(config))

    def to_dict(self) -> dict[str, Any]:
        """The plain-dict form (JSON-serializable), inverse of :meth:`from_dict`."""
        return {
            "window_size": self.window_size,
            "aggregation": self.aggregation,
            "normalize": self.normalize,
            "normalize_window": self.normalize_window,
            "fill_missing": self.fill_missing,
            "params": dict(self.params),
            "causal": self.causal,
        }


@dataclass(frozen=True)
class FeatureDefinition:
    """A named, versioned feature: what it is computed from and how.

    Parameters
    ----------
    name : str
        Letters, digits, ``_``, ``-``, ``.`` (no ``@``, no path separators).
    version : str
        Semantic version, e.g. ``"1.0.0"``; several versions of a name coexist.
    description : str
        Free text shown by :meth:`FeatureStore.list_features`.
    type : {"numeric", "categorical", "binary", "embedding"}
        Categorical and binary features cannot be normalized.
    dependencies : list of str
        Raw data columns or other features (``"name"`` or ``"name@version"``), passed to the
        compute function as keyword arguments named after them.
    compute_function : str
        Name of a function in the store's function registry (never evaluated as code).
    computation_config : ComputationConfig or dict
        Post-processing and extra ``params`` for the function.
    tags : list of str
        Free labels.
    deprecated : bool
        Computing a deprecated feature emits a ``DeprecationWarning``.
    outputs : list of str
        Column names when the compute function returns several arrays (a tuple in this order
        or a dict keyed by these names); empty means one column named after the feature.

    Examples
    --------
    >>> d = FeatureDefinition("rsi_fast", "1.0.0", dependencies=["close"],
    ...                       compute_function="rsi", computation_config={"params": {"window": 7}})
    >>> d.computation_config.params
    {'window': 7}
    """

    name: str
    version: str = "1.0.0"
    description: str = ""
    type: str = "numeric"
    dependencies: Sequence[str] = ()
    compute_function: str = ""
    computation_config: ComputationConfig | Mapping[str, Any] = field(
        default_factory=ComputationConfig
    )
    tags: Sequence[str] = ()
    deprecated: bool = False
    outputs: Sequence[str] = ()

    def __post_init__(self) -> None:
        validate_name(self.name, "name")
        parse_version(self.version, "version")
        if not isinstance(self.description, str):
            raise KaizenTypeError(
                f"description must be a str, got {type(self.description).__name__}"
            )
        check_choice(self.type, "type", FEATURE_TYPES)
        if isinstance(self.dependencies, str) or not isinstance(self.dependencies, Sequence):
            raise KaizenTypeError(
                f"dependencies must be a list of column or feature names, got {self.dependencies!r}"
            )
        deps = []
        for i, dep in enumerate(self.dependencies):
            base, _ = split_name_version(dep, f"dependencies[{i}]")
            if not base.isidentifier():
                raise ValidationError(
                    f"dependencies[{i}]={dep!r}: dependency names are passed as keyword arguments "
                    "and must be valid Python identifiers (letters, digits, '_')"
                )
            deps.append(dep)
        bases = [split_name_version(d)[0] for d in deps]
        if len(set(bases)) != len(bases):
            raise ValidationError(f"dependencies={deps!r} lists the same name twice")
        if self.name in bases:
            raise ValidationError(f"feature {self.name!r} cannot depend on itself")
        object.__setattr__(self, "dependencies", tuple(deps))
        if not isinstance(self.compute_function, str) or not self.compute_function:
            raise ValidationError(
                f"compute_function must name a registered function, got {self.compute_function!r}"
            )
        validate_name(self.compute_function, "compute_function")
        cfg = ComputationConfig.from_dict(self.computation_config)
        object.__setattr__(self, "computation_config", cfg)
        if cfg.normalize and self.type in ("categorical", "binary"):
            raise ValidationError(
                f"normalize={cfg.normalize!r} is meaningless for a {self.type} feature; "
                "set normalize=False or type='numeric'"
            )
        if isinstance(self.tags, str) or not isinstance(self.tags, Sequence):
            raise KaizenTypeError(f"tags must be a list of str, got {self.tags!r}")
        for tag in self.tags:
            if not isinstance(tag, str):
                raise KaizenTypeError(f"tags must be str, got {tag!r}")
        object.__setattr__(self, "tags", tuple(self.tags))
        if not isinstance(self.deprecated, bool):
            raise KaizenTypeError(f"deprecated must be a bool, got {self.deprecated!r}")
        if isinstance(self.outputs, str) or not isinstance(self.outputs, Sequence):
            raise KaizenTypeError(f"outputs must be a list of column names, got {self.outputs!r}")
        for i, col in enumerate(self.outputs):
            validate_name(col, f"outputs[{i}]")
            if not col.isidentifier():
                raise ValidationError(
                    f"outputs[{i}]={col!r} must be a valid identifier (letters, digits, '_')"
                )
        if len(set(self.outputs)) != len(tuple(self.outputs)):
            raise ValidationError(f"outputs={list(self.outputs)!r} lists a column twice")
        object.__setattr__(self, "outputs", tuple(self.outputs))

    @property
    def columns(self) -> tuple[str, ...]:
        """The output column names (the feature name itself for a one-column feature)."""
        return tuple(self.outputs) if self.outputs else (self.name,)

    @property
    def ref(self) -> str:
        """``"name@version"``."""
        return f"{self.name}@{self.version}"

    @property
    def version_key(self) -> tuple[Any, ...]:
        """Sort key in semantic-version order."""
        return parse_version(self.version)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict; :meth:`from_dict` inverts it."""
        cfg = self.computation_config
        assert isinstance(cfg, ComputationConfig)
        return {
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "type": self.type,
            "dependencies": list(self.dependencies),
            "compute_function": self.compute_function,
            "computation_config": cfg.to_dict(),
            "tags": list(self.tags),
            "deprecated": self.deprecated,
            "outputs": list(self.outputs),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureDefinition:
        """Build a definition from its dict form."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValidationError(f"feature definition has unknown keys {unknown}")
        return cls(**dict(data))

    def definition_hash(self) -> str:
        """sha256 of everything that changes the computed values (not description/tags)."""
        d = self.to_dict()
        for key in ("description", "tags", "deprecated"):
            d.pop(key)
        text = json.dumps(d, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()
