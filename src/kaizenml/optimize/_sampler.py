"""The sampler interface every strategy implements.

A sampler is asked for the parameters of one new trial at a time, and sees a
:class:`SamplerContext`: the search space, the direction, every trial of the study so far
(finished ones and those still running, possibly in other processes). Samplers keep no history
of their own: everything they need is derived from the trials, so a study resumed from storage,
or shared by several workers, drives them correctly. Randomness comes from
:meth:`Sampler.rng_for`, seeded by ``(seed, trial number)``, so a fixed seed reproduces a serial
run and a resumed run draws the same numbers it would have drawn without the interruption.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._space import SearchSpace
from ._trial import Trial, TrialState, direction_sign

__all__ = ["Sampler", "SamplerContext", "SpaceExhausted", "available_strategies", "make_sampler"]


class SpaceExhausted(Exception):
    """Raised by :meth:`Sampler.suggest` when it has nothing new to propose (e.g. a full grid)."""


@dataclass(frozen=True)
class SamplerContext:
    """What a sampler sees when it is asked for a suggestion."""

    space: SearchSpace
    direction: str  # "minimize" or "maximize"
    trials: Sequence[Trial]  # every trial of the study, ordered by number
    trial_number: int  # the number the suggested trial will get

    @property
    def sign(self) -> float:
        """Multiply values by this to turn every study into a minimization."""
        return direction_sign(self.direction)

    def complete(self) -> list[Trial]:
        return [t for t in self.trials if t.state == TrialState.COMPLETE and t.value is not None]

    def running(self) -> list[Trial]:
        return [t for t in self.trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]

    def with_state(self, *states: TrialState) -> list[Trial]:
        return [t for t in self.trials if t.state in states]

    def encoded(self, trials: Sequence[Trial]) -> np.ndarray:
        """Unit-cube encoding of the trials' parameters, shape ``(len(trials), n_dims)``."""
        if not trials:
            return np.empty((0, self.space.n_dims), dtype=np.float64)
        return self.space.encode_many([t.params for t in trials])

    def minimized_values(self, trials: Sequence[Trial]) -> np.ndarray:
        """The trials' values turned into a minimization, shape ``(len(trials),)``."""
        # only complete trials have a value: a None here is a caller's bug and raises
        return np.array(
            [self.sign * float(t.value) for t in trials],  # type: ignore[arg-type]
            dtype=np.float64,
        )


class Sampler(abc.ABC):
    """Base class of the search strategies.

    Subclasses implement :meth:`suggest`. They may override :meth:`on_trial_finished` to update
    caches, but must stay correct when it is not called (trials finished by other processes).
    """

    #: short name used by ``strategy=`` and stored with a study
    name: str = "base"

    def __init__(self, *, seed: int | None = None) -> None:
        self.seed = seed
        if seed is None:
            # an unseeded sampler still needs per-trial streams; draw the root entropy once
            self._entropy = int(np.random.SeedSequence().entropy)  # type: ignore[arg-type]
        else:
            self._entropy = seed

    def rng_for(self, trial_number: int, stream: int = 0) -> np.random.Generator:
        """A generator determined by the sampler seed, the trial number and a stream id."""
        return np.random.default_rng(
            np.random.SeedSequence([int(self._entropy), int(trial_number), int(stream)])
        )

    @abc.abstractmethod
    def suggest(self, ctx: SamplerContext) -> dict[str, Any]:
        """Return the parameters of the next trial, or raise :class:`SpaceExhausted`."""

    def on_trial_finished(self, ctx: SamplerContext, trial: Trial) -> None:  # noqa: B027
        """Hook called in the driving process when one of its trials finishes."""

    def config(self) -> dict[str, Any]:
        """JSON-able options, stored with a study for the record."""
        return {"name": self.name, "seed": self.seed}


# strategy name -> "module:Class"; imported on first use so optional kernels load lazily
_STRATEGIES: dict[str, str] = {
    "random": "kaizenml.optimize._random:RandomSampler",
    "grid": "kaizenml.optimize._grid:GridSampler",
    "bayesian": "kaizenml.optimize._bayes:BayesianSampler",
    "genetic": "kaizenml.optimize._genetic:GeneticSampler",
}


def available_strategies() -> tuple[str, ...]:
    return tuple(_STRATEGIES)


def _accepted_options(cls: type) -> set[str] | None:
    """Keyword options of a sampler class besides ``seed`` (``None``: it takes ``**kwargs``)."""
    import inspect

    out = set()
    for name, p in inspect.signature(cls).parameters.items():
        if p.kind == inspect.Parameter.VAR_KEYWORD:
            return None
        if name != "seed" and p.kind in (
            inspect.Parameter.KEYWORD_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        ):
            out.add(name)
    return out


def make_sampler(strategy: str | Sampler, *, seed: int | None = None, **options: Any) -> Sampler:
    """Build the sampler for ``strategy`` (a name from :func:`available_strategies` or a
    :class:`Sampler` instance, returned as it is).

    Options the strategy does not have raise :class:`~kaizenml.ValidationError` naming them and
    the accepted ones.

    Examples
    --------
    >>> make_sampler("random", seed=0, qmc=True).qmc
    True
    """
    import importlib

    from .._exceptions import KaizenTypeError, ValidationError

    if isinstance(strategy, Sampler):
        if options:
            raise ValidationError(
                "strategy options cannot be combined with a Sampler instance; "
                "pass them to the sampler's constructor"
            )
        return strategy
    if not isinstance(strategy, str):
        raise KaizenTypeError(
            f"strategy must be a name {list(_STRATEGIES)} or a Sampler instance, got "
            f"{type(strategy).__name__} {strategy!r}"
        )
    if strategy not in _STRATEGIES:
        raise ValidationError(
            f"strategy={strategy!r} is not supported; choose one of {list(_STRATEGIES)} "
            "or pass a Sampler instance"
        )
    module_name, cls_name = _STRATEGIES[strategy].split(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    accepted = _accepted_options(cls)
    unknown = [] if accepted is None else [k for k in options if k not in accepted]
    if unknown:
        names = ", ".join(repr(k) for k in unknown)
        raise ValidationError(
            f"strategy={strategy!r} does not accept the option{'s' if len(unknown) > 1 else ''} "
            f"{names}; its options are {sorted(accepted or ())}"
        )
    return cls(seed=seed, **options)
