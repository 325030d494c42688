"""Grid search: every combination of a fixed set of values per parameter, each point once.

The grid is enumerated in a fixed order (the last parameter varies fastest, or a seeded
permutation with ``shuffle=True``). The sampler keeps no record of what it proposed: on every
call it skips the points already held by a trial of the study (in any state), so a resumed
study, or several workers sharing one, never repeat a point, and :class:`SpaceExhausted` is
raised once every point has a trial.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from .._exceptions import ValidationError
from .._validation import check_int
from ._sampler import Sampler, SamplerContext, SpaceExhausted
from ._space import Categorical, Float, Int, Parameter, SearchSpace

__all__ = ["GridSampler", "grid_values"]

# beyond this many points a shuffled order is drawn lazily instead of as one permutation
_MAX_PERMUTATION = 10_000_000


def _value_key(value: Any) -> tuple[str, Any]:
    # bool is an int subclass: keep True and 1 apart; ints and floats equal by value
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return (type(value).__name__, value)
    return ("num", float(value))


def _param_values(p: Parameter, grid_points: int, max_levels: int | None) -> list[Any]:
    if isinstance(p, Categorical):
        return list(p.choices)
    n = p.n_levels
    if n:
        if max_levels is None or n <= max_levels:
            idx = np.arange(n)
        else:
            # an even subset of the levels, both ends included
            idx = np.unique(np.rint(np.linspace(0, n - 1, max_levels)).astype(np.int64))
        if isinstance(p, Int) and p.log and (max_levels is not None and n > max_levels):
            vals = np.unique(np.rint(np.geomspace(p.low, p.high, max_levels)).astype(np.int64))
            return [int(v) for v in vals]
        return [p.level_value(int(i)) for i in idx]
    assert isinstance(p, Float)
    points = (
        np.geomspace(p.low, p.high, grid_points)
        if p.log
        else np.linspace(p.low, p.high, grid_points)
    )
    points[0], points[-1] = p.low, p.high  # exact ends despite rounding
    return [float(v) for v in points]


def grid_values(
    space: SearchSpace | Mapping[str, Any],
    *,
    grid_points: int = 10,
    max_int_points: int | None = None,
) -> dict[str, list[Any]]:
    """The values each parameter takes on the grid.

    Parameters
    ----------
    space:
        The search space.
    grid_points:
        Values per continuous float (linearly spaced, or log-spaced for ``log=True``), ends
        included.
    max_int_points:
        ``None`` uses every value of integer and stepped parameters; a number keeps an even
        subset of that many values (log-spaced for log integers), ends included.

    Examples
    --------
    >>> from kaizenml.optimize import Float, Int
    >>> grid_values({"a": Float(0, 1), "b": Int(1, 3)}, grid_points=3)
    {'a': [0.0, 0.5, 1.0], 'b': [1, 2, 3]}
    """
    space = space if isinstance(space, SearchSpace) else SearchSpace(space)
    grid_points = check_int(grid_points, "grid_points", minimum=2)
    if max_int_points is not None:
        max_int_points = check_int(max_int_points, "max_int_points", minimum=2)
    return {name: _param_values(space[name], grid_points, max_int_points) for name in space.names}


class GridSampler(Sampler):
    """Exhaustive search over a grid of the space.

    Parameters
    ----------
    seed:
        Used only with ``shuffle=True``, to draw the visiting order.
    grid_points:
        Values per continuous float dimension (log-spaced for log floats).
    max_int_points:
        ``None`` takes every value of integer and stepped dimensions; a number takes an even
        subset of that many values.
    shuffle:
        Visit the points in a seeded random order instead of the lexicographic one (useful
        when a large grid may not be finished).

    Examples
    --------
    >>> from kaizenml.optimize import Categorical, Int, SamplerContext, SearchSpace
    >>> space = SearchSpace({"k": Int(1, 2), "kind": Categorical(["a", "b"])})
    >>> GridSampler().suggest(SamplerContext(space, "minimize", [], 0))
    {'k': 1, 'kind': 'a'}
    """

    name = "grid"
    # suggestions are grid values of the space itself, valid by construction
    _valid_by_construction = True

    def __init__(
        self,
        *,
        seed: int | None = None,
        grid_points: int = 10,
        max_int_points: int | None = None,
        shuffle: bool = False,
    ) -> None:
        super().__init__(seed=seed)
        self.grid_points = check_int(grid_points, "grid_points", minimum=2)
        self.max_int_points = (
            None
            if max_int_points is None
            else check_int(max_int_points, "max_int_points", minimum=2)
        )
        self.shuffle = bool(shuffle)
        self._space: SearchSpace | None = None
        self._values: list[list[Any]] = []
        self._lookup: list[dict[tuple[str, Any], int]] = []
        self._sizes: list[int] = []
        self._order: np.ndarray | None = None
        self._cursor = 0  # every position before it is known to be taken
        # grid indices of the leading run of finished trials (they never change again)
        self._finished_taken: set[int] = set()
        self._finished_upto = 0

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "seed": self.seed,
            "grid_points": self.grid_points,
            "max_int_points": self.max_int_points,
            "shuffle": self.shuffle,
        }

    def _prepare(self, space: SearchSpace) -> None:
        if self._space is not None and self._space == space:
            return
        values = grid_values(
            space, grid_points=self.grid_points, max_int_points=self.max_int_points
        )
        self._space = space
        self._values = [values[n] for n in space.names]
        self._lookup = [{_value_key(v): i for i, v in enumerate(vals)} for vals in self._values]
        self._sizes = [len(v) for v in self._values]
        total = self.grid_size
        self._order = None
        if self.shuffle:
            if total > _MAX_PERMUTATION:
                raise ValidationError(
                    f"grid of {total} points is too large to shuffle; lower grid_points or "
                    "max_int_points, or use shuffle=False"
                )
            self._order = self.rng_for(0, stream=0x6121D).permutation(total)
        self._reset_scan()

    def _reset_scan(self) -> None:
        self._cursor = 0
        self._finished_taken = set()
        self._finished_upto = 0

    @property
    def grid_size(self) -> int:
        """Number of points of the grid (after the first suggestion)."""
        return math.prod(self._sizes) if self._sizes else 0

    def _index_of(self, params: Mapping[str, Any]) -> int | None:
        assert self._space is not None
        index = 0
        for j, name in enumerate(self._space.names):
            if name not in params:
                return None
            i = self._lookup[j].get(_value_key(params[name]))
            if i is None:
                return None  # a point off the grid (e.g. enqueued by hand)
            index = index * self._sizes[j] + i
        return index

    def _point(self, index: int) -> dict[str, Any]:
        assert self._space is not None
        out: dict[str, Any] = {}
        for j in range(len(self._sizes) - 1, -1, -1):
            index, i = divmod(index, self._sizes[j])
            out[self._space.names[j]] = self._values[j][i]
        return {name: out[name] for name in self._space.names}

    def suggest(self, ctx: SamplerContext) -> dict[str, Any]:
        self._prepare(ctx.space)
        trials = ctx.trials
        if self._finished_upto > len(trials):  # another study's trials: start over
            self._reset_scan()
        # fold the leading finished trials once; rescan only the rest on each call
        while self._finished_upto < len(trials) and trials[self._finished_upto].state.is_finished:
            idx = self._index_of(trials[self._finished_upto].params)
            if idx is not None:
                self._finished_taken.add(idx)
            self._finished_upto += 1
        done = self._finished_taken
        taken = set()
        for t in trials[self._finished_upto :]:
            idx = self._index_of(t.params)
            if idx is not None:
                taken.add(idx)
        total = self.grid_size
        pos = self._cursor
        while pos < total:
            index = int(self._order[pos]) if self._order is not None else pos
            if index not in done and index not in taken:
                self._cursor = pos
                return self._point(index)
            pos += 1
        self._cursor = total
        raise SpaceExhausted(f"all {total} grid points have a trial")
