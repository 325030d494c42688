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

__all__ = ["RandomSampler"]

# Sobol points are generated in blocks of this power of two, which keeps their balance
_SOBOL_BLOCK = 256


class RandomSampler(Sampler):
    """Uniform random search over the unit-cube encoding of the space.

    Parameters
    ----------
    seed:
        Seed of the per-trial streams; a fixed seed gives the same points for the same trial
        numbers.
    qmc:
        Draw points from one scrambled Sobol sequence (``scipy.stats.qmc.Sobol``) instead of
        independent uniforms; trial ``n`` uses point ``n`` of the sequence.

    Examples
    --------
    >>> from kaizenml.optimize import Float, SamplerContext, SearchSpace
    >>> space = SearchSpace({"x": Float(0.0, 1.0)})
    >>> sampler = RandomSampler(seed=1)
    >>> p = sampler.suggest(SamplerContext(space, "minimize", [], 0))
    >>> p == sampler.suggest(SamplerContext(space, "minimize", [], 0))
    True
    """

    name = "random"

    def __init__(self, *, seed: int | None = None, qmc: bool = False) -> None:
        super().__init__(seed=seed)
        self.qmc = bool(qmc)
        self._sobol_engine: Any = None
        self._sobol_dims = -1
        self._sobol_block = -1
        self._sobol_points: np.ndarray | None = None

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "seed": self.seed, "qmc": self.qmc}

    def _sobol_point(self, n_dims: int, position: int) -> np.ndarray:
        from scipy.stats import qmc

        position = check_int(position, "trial_number", minimum=0)
        if self._sobol_engine is None or self._sobol_dims != n_dims:
            seq = np.random.SeedSequence([int(self._entropy), 0x5EB0])
            self._sobol_engine = qmc.Sobol(d=n_dims, scramble=True, seed=np.random.default_rng(seq))
            self._sobol_dims = n_dims
            self._sobol_block = -1
        block = position // _SOBOL_BLOCK
        if block != self._sobol_block:
            self._sobol_engine.reset()
            if block:
                self._sobol_engine.fast_forward(block * _SOBOL_BLOCK)
            self._sobol_points = self._sobol_engine.random(_SOBOL_BLOCK)
            self._sobol_block = block
        assert self._sobol_points is not None
        return self._sobol_points[position - block * _SOBOL_BLOCK]

    def suggest(self, ctx: SamplerContext) -> dict[str, Any]:
        n_dims = ctx.space.n_dims
        if self.qmc:
            u = self._sobol_point(n_dims, ctx.trial_number)
        else:
            u = self.rng_for(ctx.trial_number).random(n_dims)
        return ctx.space.decode(u)
