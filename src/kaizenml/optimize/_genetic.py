"""The ``genetic`` strategy: a steady-state genetic algorithm driven by the study's trials.

Scheme (steady state, derived from the trials alone)
----------------------------------------------------
* Until ``population_size`` trials have completed, suggestions are uniform random points.
* After that, the *population* is the ``population_size`` best completed trials (ties broken
  by trial number). Each new suggestion is one child: two parents picked by size-``k``
  tournaments in that population, crossed (SBX by default) and mutated (polynomial by
  default) by the compiled operators of :mod:`kaizenml._ext._ga`.
* A child equal to the parameters of any existing trial (finished, failed or still running) is
  re-drawn, so parallel workers and repeated suggestions do not evaluate a point twice.

Nothing is kept between calls: the population is rebuilt from ``ctx.trials`` every time. Trials
finishing out of order, trials finished by other processes and a study resumed from storage
therefore all drive the sampler correctly, and every random draw comes from
``rng_for(trial_number)``, so a seeded serial study is reproducible.

Resuming a stored study
-----------------------
* With the same seed and options, a resumed study suggests exactly the trials an uninterrupted
  study would have: the population is the stored trials' best, and trial ``n`` draws from
  ``(seed, n)`` whichever process asks for it.
* Only completed trials with a finite value are parents; failed and pruned trials (and trials
  still running) are never parents, but their points are never suggested again. A trial cut
  short by ``KeyboardInterrupt`` is failed, so the trials after it differ from an uninterrupted
  run's (deterministically: two identical resumed runs agree). A trial whose process died stays
  unfinished until its heartbeat is older than ``grace_period``; it is then failed, or with
  ``retry_failed`` run again with the same parameters, which keeps the uninterrupted sequence.
* Another ``population_size``, other operator options or another seed are used as given from
  the next trial on (the population becomes the best ``population_size`` completed trials); the
  optimizer logs a warning naming the options that differ from those stored with the study.
  Another search space is refused.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._validation import check_int
from ._ga_engine import make_operators, operator_kinds, spawn_streams
from ._sampler import Sampler, SamplerContext
from ._space import SearchSpace
from ._trial import TrialState

__all__ = ["GeneticSampler"]

_MAX_REDRAWS = 16


class GeneticSampler(Sampler):
    """Steady-state genetic algorithm over the study's completed trials.

    Parameters
    ----------
    seed:
        Seed of every random draw.
    population_size:
        Completed trials sampled at random before evolution starts, and size of the
        population (the best completed trials) that parents are drawn from.
    crossover, crossover_rate, gene_crossover_rate, crossover_eta, blx_alpha:
        Crossover operator and its options, as in :class:`GeneticSearch`.
    mutation, mutation_rate, mutation_eta, mutation_sigma:
        Mutation operator and its options; ``mutation_rate`` defaults to ``1 / n_params``.
    tournament_size:
        Contestants per parent tournament.

    Examples
    --------
    >>> from kaizenml.optimize import Float, SamplerContext, SearchSpace
    >>> sampler = GeneticSampler(seed=0, population_size=10)
    >>> ctx = SamplerContext(SearchSpace({"x": Float(0, 1)}), "minimize", [], 0)
    >>> 0.0 <= sampler.suggest(ctx)["x"] <= 1.0
    True
    """

    name = "genetic"

    def __init__(
        self,
        *,
        seed: int | None = None,
        population_size: int = 20,
        crossover: str = "sbx",
        crossover_rate: float = 0.9,
        gene_crossover_rate: float = 1.0,
        crossover_eta: float = 15.0,
        blx_alpha: float = 0.5,
        mutation: str = "polynomial",
        mutation_rate: float | None = None,
        mutation_eta: float = 20.0,
        mutation_sigma: float = 0.1,
        tournament_size: int = 2,
    ) -> None:
        super().__init__(seed=seed)
        self.population_size = check_int(population_size, "population_size", minimum=2)
        self._options: dict[str, Any] = {
            "crossover": crossover,
            "crossover_rate": crossover_rate,
            "gene_crossover_rate": gene_crossover_rate,
            "crossover_eta": crossover_eta,
            "blx_alpha": blx_alpha,
            "mutation": mutation,
            "mutation_rate": mutation_rate,
            "mutation_eta": mutation_eta,
            "mutation_sigma": mutation_sigma,
            "tournament_size": tournament_size,
        }
        # validate now, at the API boundary, with a one-gene layout
        make_operators(np.zeros(1, np.int64), np.zeros(1, np.int64), **self._options)
        self._ops_cache: tuple[SearchSpace, Any] | None = None

    def _operators(self, space: SearchSpace) -> Any:
        if self._ops_cache is not None and self._ops_cache[0] is space:
            return self._ops_cache[1]
        kinds, _ = operator_kinds(space)
        ops = make_operators(kinds, space.n_levels, **self._options)
        self._ops_cache = (space, ops)
        return ops

    def suggest(self, ctx: SamplerContext) -> dict[str, Any]:
        space = ctx.space
        rng = self.rng_for(ctx.trial_number)
        # dict equality in a C-level list scan: cheaper than hashing every trial's parameters
        tried = [t.params for t in ctx.trials if t.params]
        complete = [
            t
            for t in ctx.trials
            if t.state == TrialState.COMPLETE and t.value is not None and math.isfinite(t.value)
        ]
        if len(complete) < self.population_size:
            return self._random(space, rng, tried)

        values = ctx.sign * np.array([t.value for t in complete], dtype=np.float64)
        numbers = np.array([t.number for t in complete])
        order = np.lexsort((numbers, values))[: self.population_size]
        members = [complete[i] for i in order]
        pop = np.ascontiguousarray(ctx.encoded(members))
        fit = np.ascontiguousarray(values[order])
        ops = self._operators(space)
        streams = spawn_streams(rng, 1)
        child = np.empty((2, space.n_dims))
        for _ in range(_MAX_REDRAWS):
            ops.generation(pop, fit, child, streams, 1, 1)
            params = space.decode(child[int(rng.integers(2))])
            if params not in tried:
                return params
        # the population has collapsed onto known points: explore instead
        return self._random(space, rng, tried)

    @staticmethod
    def _random(
        space: SearchSpace, rng: np.random.Generator, tried: list[dict[str, Any]]
    ) -> dict[str, Any]:
        params = space.decode(space.sample_uniform(rng, 1)[0])
        if params not in tried:
            return params
        # small discrete spaces fill up: look through a batch for a point not tried yet
        for x in space.sample_uniform(rng, 256):
            candidate = space.decode(x)
            if candidate not in tried:
                return candidate
        return params

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "seed": self.seed,
            "population_size": self.population_size,
            **self._options,
        }
