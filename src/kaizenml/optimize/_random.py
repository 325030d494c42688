"""Random search: independent uniform draws, or one scrambled Sobol sequence.

Each trial's point depends only on the seed and the trial number, never on the order in which
trials are asked, so a serial run, a resumed run and parallel workers draw the same points for
the same numbers. With ``qmc=True`` trial ``n`` takes position ``n`` of a single scrambled Sobol
sequence seeded once per sampler: a study that is resumed or shared by several workers still
covers the space with low discrepancy, as if one process had drawn the points in order.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._validation import check_int
from ._sampler import Sampler, SamplerContext
from ._space import SearchSpace

__all__ = ["RandomSampler"]

# Points are drawn and decoded in blocks of this many trial numbers (a power of two, which
# keeps the balance of Sobol points); a block depends only on the seed and its index.
_BLOCK = 256


class RandomSampler(Sampler):
    """Uniform random search over the unit-cube encoding of the space.

    Trial ``n`` takes row ``n % 256`` of block ``n // 256``; a block is drawn from the stream
    ``rng_for(block index)`` (or, with ``qmc=True``, is the matching slice of one scrambled
    Sobol sequence) and decoded in one vectorized call, which keeps the cost per suggestion
    to a dictionary lookup.

    Parameters
    ----------
    seed:
        Seed of the streams; a fixed seed gives the same points for the same trial numbers.
    qmc:
        Draw points from one scrambled Sobol sequence (``scipy.stats.qmc.Sobol``) instead of
        independent uniforms; trial ``n`` uses point ``n`` of the sequence.

    Examples
    --------
    >>> from kaizenml.optimize import Float, SamplerContext, SearchSpace
    >>> space = SearchSpace({"x": Float(0.0, 1.0)})
    >>> sampler = RandomSampler(seed=1)
    >>> p = sampler.suggest(SamplerContext(space, "minimize", [], 0))
    >>> p == RandomSampler(seed=1).suggest(SamplerContext(space, "minimize", [], 0))
    True
    """

    name = "random"
    # suggestions are decoded from the space itself, so they are valid by construction
    _valid_by_construction = True

    def __init__(self, *, seed: int | None = None, qmc: bool = False) -> None:
        super().__init__(seed=seed)
        self.qmc = bool(qmc)
        self._sobol_engine: Any = None
        self._space: SearchSpace | None = None
        self._blocks: dict[int, tuple[list[str], list[list[Any]]]] = {}

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "seed": self.seed, "qmc": self.qmc}

    def _unit_block(self, n_dims: int, block: int) -> np.ndarray:
        """(_BLOCK, n_dims) unit points of trial numbers ``block * _BLOCK ...``."""
        if not self.qmc:
            return self.rng_for(block, stream=0xB10C).random((_BLOCK, n_dims))
        from scipy.stats import qmc

        if self._sobol_engine is None or self._sobol_engine.d != n_dims:
            self._sobol_engine = qmc.Sobol(
                d=n_dims, scramble=True, seed=self.rng_for(0, stream=0x5EB0)
            )
        self._sobol_engine.reset()
        if block:
            self._sobol_engine.fast_forward(block * _BLOCK)
        return self._sobol_engine.random(_BLOCK)

    def suggest(self, ctx: SamplerContext) -> dict[str, Any]:
        space = ctx.space
        if space is not self._space:
            if self._space is None or space != self._space:
                self._blocks.clear()
            self._space = space
        number = check_int(ctx.trial_number, "trial_number", minimum=0)
        block, row = divmod(number, _BLOCK)
        cached = self._blocks.get(block)
        if cached is None:
            columns = space.decode_many(self._unit_block(space.n_dims, block))
            # plain Python values, one list per parameter
            cached = (list(columns), [col.tolist() for col in columns.values()])
            if len(self._blocks) >= 8:  # parallel or resumed studies touch few blocks at once
                self._blocks.pop(next(iter(self._blocks)))
            self._blocks[block] = cached
        names, values = cached
        return {name: values[j][row] for j, name in enumerate(names)}
