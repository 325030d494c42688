"""Search spaces and the unit-cube encoding every sampler shares.

Encoding (one column per parameter, values in [0, 1]):

* ``Float`` without a step: ``u = (v - low) / (high - low)``, computed on ``log(v)`` for log
  parameters. Decoding clips to ``[low, high]``.
* Discrete parameters (``Int``, a ``Float`` with a step, and ``Categorical``) have ``n``
  levels; level ``i`` is encoded at the bin centre ``u = (i + 0.5) / n`` and any ``u`` decodes to
  ``floor(u * n)`` (clipped). A uniform ``u`` therefore gives a uniform level, and every valid
  value round-trips exactly. Log ints space their levels by ``log`` of the value.
* ``kinds`` tells a sampler how to treat each column: :data:`CONTINUOUS`, :data:`DISCRETE`
  (ordered levels) or :data:`CATEGORICAL` (unordered levels: samplers that need it expand those
  columns with :meth:`SearchSpace.one_hot`).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._exceptions import KaizenTypeError, ValidationError
from .._validation import INT64_MAX, INT64_MIN

__all__ = [
    "CATEGORICAL",
    "CONTINUOUS",
    "DISCRETE",
    "Categorical",
    "Float",
    "Int",
    "Parameter",
    "SearchSpace",
]

CONTINUOUS = 0
DISCRETE = 1
CATEGORICAL = 2


# Int values are decoded with int64 arithmetic (low + level * step)
# levels are encoded as float64 bin centres (i + 0.5) / n: up to 2**50 of them round-trip
# exactly, with a margin for the rounding of the division and of the decoding product
_MAX_LEVELS = 2**50


def _show(value: Any) -> str:
    # a huge int's repr is hundreds of digits (and raises past Python's str limit)
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        v = int(value)
        if abs(v) >= 10**21:
            sign = "a negative" if v < 0 else "an"
            return f"{sign} integer of about {int(abs(v).bit_length() * math.log10(2)) + 1} digits"
    return repr(value)


def _real(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise KaizenTypeError(f"{what} must be a real number, got {_show(value)}")
    try:
        out = float(value)
    except OverflowError:
        raise ValidationError(
            f"{what} must be a finite float (at most about 1.8e308 in size), got {_show(value)}"
        ) from None
    if not math.isfinite(out):
        raise ValidationError(f"{what} must be finite, got {value!r}")
    return out


@dataclass(frozen=True)
class Float:
    """A real parameter in ``[low, high]``, optionally log-scaled or on a grid of ``step``."""

    low: float
    high: float
    log: bool = False
    step: float | None = None

    def __init__(
        self, low: float, high: float, *, log: bool = False, step: float | None = None
    ) -> None:
        low_f, high_f = _real(low, "Float low"), _real(high, "Float high")
        if not low_f < high_f:
            raise ValidationError(f"Float needs low < high, got low={low_f}, high={high_f}")
        if not math.isfinite(high_f - low_f):
            raise ValidationError(
                f"Float range [{low_f}, {high_f}] is too wide: high - low overflows a float; "
                "narrow it or search a log-scaled parameter"
            )
        if log and low_f <= 0:
            raise ValidationError(f"Float(log=True) needs low > 0, got low={low_f}")
        if step is not None:
            if log:
                raise ValidationError("Float cannot combine log=True with a step; choose one")
            step_f = _real(step, "Float step")
            if step_f <= 0:
                raise ValidationError(f"Float step must be > 0, got {step_f}")
            n = (high_f - low_f) / step_f
            if n >= _MAX_LEVELS:
                raise ValidationError(
                    f"Float step={step_f} gives {n:.3g} levels in [{low_f}, {high_f}]; at most "
                    "2**50 are supported: use a larger step or no step"
                )
            if abs(n - round(n)) > 1e-9 * max(1.0, abs(n)):
                raise ValidationError(
                    f"Float step={step_f} does not divide the range [{low_f}, {high_f}]; "
                    "choose a step so that (high - low) / step is a whole number"
                )
            step = step_f
        object.__setattr__(self, "low", low_f)
        object.__setattr__(self, "high", high_f)
        object.__setattr__(self, "log", bool(log))
        object.__setattr__(self, "step", step)

    @property
    def n_levels(self) -> int:
        """Number of distinct values, 0 for a continuous parameter."""
        if self.step is None:
            return 0
        return int(round((self.high - self.low) / self.step)) + 1

    def level_value(self, i: int) -> float:
        assert self.step is not None
        return min(self.high, self.low + i * self.step)

    def contains(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return False
        v = float(value)
        if not (self.low <= v <= self.high):
            return False
        if self.step is not None:
            k = (v - self.low) / self.step
            return abs(k - round(k)) < 1e-9 * max(1.0, abs(k))
        return True

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "float", "min": self.low, "max": self.high}
        if self.log:
            out["log"] = True
        if self.step is not None:
            out["step"] = self.step
        return out


@dataclass(frozen=True)
class Int:
    """An integer parameter in ``[low, high]`` (both included), optionally log-scaled or stepped."""

    low: int
    high: int
    log: bool = False
    step: int = 1

    def __init__(self, low: int, high: int, *, log: bool = False, step: int = 1) -> None:
        checks: tuple[tuple[str, Any], ...] = (
            ("Int low", low),
            ("Int high", high),
            ("Int step", step),
        )
        for what, v in checks:
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                if not (isinstance(v, float) and v.is_integer()):
                    raise KaizenTypeError(f"{what} must be an integer, got {v!r}")
            if not INT64_MIN <= int(v) <= INT64_MAX:
                raise ValidationError(
                    f"{what} must fit in a 64-bit integer ([-2**63, 2**63 - 1]), got {_show(v)}"
                )
        low_i, high_i, step_i = int(low), int(high), int(step)
        if not low_i < high_i:
            raise ValidationError(f"Int needs low < high, got low={low_i}, high={high_i}")
        if log and low_i <= 0:
            raise ValidationError(f"Int(log=True) needs low >= 1, got low={low_i}")
        if step_i < 1:
            raise ValidationError(f"Int step must be >= 1, got {step_i}")
        if log and step_i != 1:
            raise ValidationError("Int cannot combine log=True with step > 1; choose one")
        if (high_i - low_i) % step_i:
            raise ValidationError(
                f"Int step={step_i} does not divide the range [{low_i}, {high_i}]; "
                "choose high so that (high - low) is a multiple of step"
            )
        if high_i - low_i > INT64_MAX or (high_i - low_i) // step_i >= _MAX_LEVELS:
            raise ValidationError(
                f"Int range [{low_i}, {high_i}] with step={step_i} is too wide: high - low must "
                "fit in a 64-bit integer and the range may hold at most 2**50 levels; narrow it "
                "or use a larger step"
            )
        object.__setattr__(self, "low", low_i)
        object.__setattr__(self, "high", high_i)
        object.__setattr__(self, "log", bool(log))
        object.__setattr__(self, "step", step_i)

    @property
    def n_levels(self) -> int:
        return (self.high - self.low) // self.step + 1

    def level_value(self, i: int) -> int:
        return self.low + i * self.step

    def contains(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return False
        if isinstance(value, float) and not value.is_integer():
            return False
        v = int(float(value))
        return self.low <= v <= self.high and (v - self.low) % self.step == 0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "int", "min": self.low, "max": self.high}
        if self.log:
            out["log"] = True
        if self.step != 1:
            out["step"] = self.step
        return out


@dataclass(frozen=True)
class Categorical:
    """An unordered choice among ``choices`` (str, int, float, bool or None values)."""

    choices: tuple[Any, ...] = field(default=())

    def __init__(self, choices: Sequence[Any]) -> None:
        if isinstance(choices, (str, bytes)) or not isinstance(choices, Sequence):
            raise KaizenTypeError(
                f"Categorical choices must be a list or tuple, got {type(choices).__name__}"
            )
        ch = tuple(choices)
        if not ch:
            raise ValidationError("Categorical needs at least one choice, got an empty list")
        for c in ch:
            if c is not None and not isinstance(c, (str, int, float, bool)):
                raise KaizenTypeError(
                    f"Categorical choices must be str, int, float, bool or None, got {c!r}"
                )
            # NaN never equals itself, so a trial's value could never be matched to its choice
            if isinstance(c, float) and not math.isfinite(c):
                raise ValidationError(
                    f"Categorical choices must be finite numbers, got {c!r} in {list(ch)}; "
                    "use a string such as 'nan' or None for a missing value"
                )
        keys = [(type(c).__name__, c) for c in ch]
        if len(set(keys)) != len(keys):
            raise ValidationError(f"Categorical choices must be distinct, got {list(ch)}")
        object.__setattr__(self, "choices", ch)

    @property
    def n_levels(self) -> int:
        return len(self.choices)

    def level_value(self, i: int) -> Any:
        return self.choices[i]

    def index(self, value: Any) -> int:
        for i, c in enumerate(self.choices):
            if type(c) is type(value) and c == value:
                return i
        for i, c in enumerate(self.choices):  # 1 == 1.0 for values read back from JSON
            if c == value and not isinstance(c, bool) and not isinstance(value, bool):
                return i
        raise ValidationError(f"{value!r} is not one of the choices {list(self.choices)}")

    def contains(self, value: Any) -> bool:
        try:
            self.index(value)
        except ValidationError:
            return False
        return True

    def to_dict(self) -> dict[str, Any]:
        return {"type": "categorical", "choices": list(self.choices)}


Parameter = Float | Int | Categorical

_DICT_KEYS = {
    "float": {"type", "min", "max", "low", "high", "log", "step"},
    "int": {"type", "min", "max", "low", "high", "log", "step"},
    "categorical": {"type", "choices"},
}


def parameter_from_dict(name: str, spec: Mapping[str, Any]) -> Parameter:
    """Build a parameter from the plain-dict form used in config files."""
    kind = spec.get("type")
    if kind not in _DICT_KEYS:
        raise ValidationError(
            f"space[{name!r}] has type={kind!r}; use 'float', 'int' or 'categorical'"
        )
    unknown = set(spec) - _DICT_KEYS[kind]
    if unknown:
        raise ValidationError(
            f"space[{name!r}] has unknown keys {sorted(unknown)}; "
            f"allowed for {kind!r}: {sorted(_DICT_KEYS[kind])}"
        )
    try:
        if kind == "categorical":
            if "choices" not in spec:
                raise ValidationError(f"space[{name!r}] of type 'categorical' needs 'choices'")
            return Categorical(spec["choices"])
        low = spec.get("min", spec.get("low"))
        high = spec.get("max", spec.get("high"))
        if low is None or high is None:
            raise ValidationError(f"space[{name!r}] of type {kind!r} needs 'min' and 'max'")
        if kind == "float":
            return Float(low, high, log=bool(spec.get("log", False)), step=spec.get("step"))
        return Int(low, high, log=bool(spec.get("log", False)), step=spec.get("step", 1))
    except (ValidationError, KaizenTypeError) as exc:
        raise type(exc)(f"space[{name!r}]: {exc}") from None


class SearchSpace(Mapping[str, Parameter]):
    """An ordered mapping of parameter names to parameters, with the unit-cube encoding.

    Examples
    --------
    >>> space = SearchSpace({"lr": Float(1e-4, 1e-1, log=True), "depth": Int(2, 8)})
    >>> x = space.encode({"lr": 1e-2, "depth": 5})
    >>> space.decode(x)["depth"]
    5
    """

    def __init__(self, params: Mapping[str, Any]) -> None:
        if isinstance(params, SearchSpace):
            params = dict(params.items())
        if not isinstance(params, Mapping):
            raise KaizenTypeError(
                f"space must be a dict of name -> parameter, got {type(params).__name__}"
            )
        if not params:
            raise ValidationError("space must define at least one parameter, got an empty dict")
        parsed: dict[str, Parameter] = {}
        for name, p in params.items():
            if not isinstance(name, str) or not name:
                raise KaizenTypeError(f"space keys must be non-empty strings, got {name!r}")
            if isinstance(p, (Float, Int, Categorical)):
                parsed[name] = p
            elif isinstance(p, Mapping):
                parsed[name] = parameter_from_dict(name, p)
            else:
                raise KaizenTypeError(
                    f"space[{name!r}] must be Float, Int, Categorical or a dict with a 'type', "
                    f"got {p!r}"
                )
        self._params = parsed
        self.names: tuple[str, ...] = tuple(parsed)
        # (n_params,) per-column kind and level count (0 for continuous columns)
        self.kinds = np.array(
            [
                CATEGORICAL
                if isinstance(p, Categorical)
                else (DISCRETE if p.n_levels else CONTINUOUS)
                for p in parsed.values()
            ],
            dtype=np.int64,
        )
        self.n_levels = np.array([p.n_levels for p in parsed.values()], dtype=np.int64)

    # Mapping protocol ---------------------------------------------------------------------
    def __getitem__(self, name: str) -> Parameter:
        return self._params[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._params)

    def __len__(self) -> int:
        return len(self._params)

    def __repr__(self) -> str:
        return f"SearchSpace({self._params!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SearchSpace) and self._params == other._params

    def __hash__(self) -> int:
        return hash(tuple(self._params.items()))

    @property
    def n_dims(self) -> int:
        return len(self._params)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """The plain-dict (JSON) form, accepted back by the constructor."""
        return {name: p.to_dict() for name, p in self._params.items()}

    # Encoding ----------------------------------------------------------------------------
    def _level_index(self, p: Parameter, value: Any) -> int:
        if isinstance(p, Categorical):
            return p.index(value)
        if isinstance(p, Int):
            return (int(value) - p.low) // p.step
        assert p.step is not None
        return int(round((float(value) - p.low) / p.step))

    def _to_unit_int_log(self, p: Int, value: int) -> float:
        # log ints: levels spaced by log(value); bin edges at log(v -/+ 0.5)
        lo, hi = math.log(p.low - 0.5), math.log(p.high + 0.5)
        return (math.log(value) - lo) / (hi - lo)

    def validate_params(self, params: Mapping[str, Any], param: str = "params") -> dict[str, Any]:
        """Check that ``params`` has exactly this space's names with valid values."""
        if not isinstance(params, Mapping):
            raise KaizenTypeError(f"{param} must be a dict, got {type(params).__name__}")
        missing = [n for n in self.names if n not in params]
        extra = [n for n in params if n not in self._params]
        if missing or extra:
            raise ValidationError(
                f"{param} must have exactly the space's parameters; missing {missing}, "
                f"unknown {extra}"
            )
        out = {}
        for name in self.names:
            p, v = self._params[name], params[name]
            if not p.contains(v):
                raise ValidationError(f"{param}[{name!r}]={v!r} is outside {p.to_dict()}")
            if isinstance(p, Int):
                v = int(v)
            elif isinstance(p, Float):
                v = float(v)
            else:
                v = p.choices[p.index(v)]
            out[name] = v
        return out

    def encode(self, params: Mapping[str, Any]) -> np.ndarray:
        """Parameters to a point of the unit cube, shape ``(n_dims,)``."""
        x = np.empty(self.n_dims, dtype=np.float64)
        for j, (name, p) in enumerate(self._params.items()):
            v = params[name]
            if isinstance(p, Int) and p.log:
                x[j] = self._to_unit_int_log(p, int(v))
            elif p.n_levels or isinstance(p, Categorical):
                x[j] = (self._level_index(p, v) + 0.5) / p.n_levels
            elif p.log:
                x[j] = (math.log(v) - math.log(p.low)) / (math.log(p.high) - math.log(p.low))
            else:
                x[j] = (float(v) - p.low) / (p.high - p.low)
        return x

    def encode_many(self, params_list: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Encode several parameter dicts, shape ``(n, n_dims)``."""
        out = np.empty((len(params_list), self.n_dims), dtype=np.float64)
        for i, params in enumerate(params_list):
            out[i] = self.encode(params)
        return out

    def decode_column(self, j: int, u: np.ndarray) -> np.ndarray:
        """Decode one column of unit values to parameter values (vectorized).

        Discrete columns give level indices mapped to values; the result has dtype float64 for
        floats, int64 for ints and object for categoricals.
        """
        p = self._params[self.names[j]]
        u = np.clip(np.asarray(u, dtype=np.float64), 0.0, 1.0)
        if isinstance(p, Int) and p.log:
            lo, hi = math.log(p.low - 0.5), math.log(p.high + 0.5)
            v = np.rint(np.exp(lo + u * (hi - lo))).astype(np.int64)
            return np.clip(v, p.low, p.high)
        if p.n_levels:
            idx = np.minimum((u * p.n_levels).astype(np.int64), p.n_levels - 1)
            if isinstance(p, Categorical):
                return np.array(p.choices, dtype=object)[idx]
            if isinstance(p, Int):
                return p.low + idx * p.step
            assert p.step is not None
            return np.minimum(p.low + idx * p.step, p.high)
        assert not isinstance(p, Categorical)
        if p.log:
            lo, hi = math.log(p.low), math.log(p.high)
            return np.clip(np.exp(lo + u * (hi - lo)), p.low, p.high)
        return np.clip(p.low + u * (p.high - p.low), p.low, p.high)

    def decode(self, x: np.ndarray) -> dict[str, Any]:
        """A point of the unit cube to a parameter dict of plain Python values."""
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        if x.shape[0] != self.n_dims:
            raise ValidationError(f"x must have {self.n_dims} entries, got {x.shape[0]}")
        out: dict[str, Any] = {}
        for j, name in enumerate(self.names):
            v = self.decode_column(j, x[j : j + 1])[0]
            out[name] = v.item() if isinstance(v, np.generic) else v
        return out

    def decode_many(self, X: np.ndarray) -> dict[str, np.ndarray]:
        """Decode ``(n, n_dims)`` unit points to one array per parameter (no per-row objects)."""
        X = np.asarray(X, dtype=np.float64)
        return {name: self.decode_column(j, X[:, j]) for j, name in enumerate(self.names)}

    def snap(self, X: np.ndarray) -> np.ndarray:
        """Move unit points onto valid encodings (discrete columns to their bin centres)."""
        X = np.clip(np.array(X, dtype=np.float64, copy=True), 0.0, 1.0)
        for j, name in enumerate(self.names):
            p = self._params[name]
            if isinstance(p, Int) and p.log:
                vals = self.decode_column(j, X[..., j])
                lo, hi = math.log(p.low - 0.5), math.log(p.high + 0.5)
                X[..., j] = (np.log(vals.astype(np.float64)) - lo) / (hi - lo)
            elif p.n_levels:
                n = p.n_levels
                X[..., j] = (np.minimum(np.floor(X[..., j] * n), n - 1) + 0.5) / n
        return X

    def one_hot(self, X: np.ndarray) -> np.ndarray:
        """Expand categorical columns of unit points into one-hot blocks.

        Non-categorical columns are kept as they are, in order; each categorical column becomes
        ``n_levels`` columns of 0/1. Shape ``(n, n_dims)`` -> ``(n, n_onehot_dims)``.
        """
        X = np.atleast_2d(np.asarray(X, dtype=np.float64))
        cols = []
        for j in range(self.n_dims):
            if self.kinds[j] == CATEGORICAL:
                n = int(self.n_levels[j])
                idx = np.minimum((X[:, j] * n).astype(np.int64), n - 1)
                cols.append(np.eye(n)[idx])
            else:
                cols.append(X[:, j : j + 1])
        return np.hstack(cols)

    def sample_uniform(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` uniform unit points, snapped to valid encodings, shape ``(n, n_dims)``."""
        return self.snap(rng.random((n, self.n_dims)))
