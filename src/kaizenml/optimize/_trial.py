"""Trials: the record of one evaluation of the objective."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["Trial", "TrialState", "completion_key", "direction_sign"]


class TrialState(str, enum.Enum):
    """Life cycle of a trial: waiting -> running -> complete | pruned | failed."""

    WAITING = "waiting"
    RUNNING = "running"
    COMPLETE = "complete"
    PRUNED = "pruned"
    FAILED = "failed"

    @property
    def is_finished(self) -> bool:
        return self in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAILED)


def direction_sign(direction: str) -> float:
    """+1 for ``"minimize"``, -1 for ``"maximize"``: ``sign * value`` is always minimized."""
    return 1.0 if direction == "minimize" else -1.0


@dataclass
class Trial:
    """One evaluation of the objective.

    Attributes
    ----------
    number:
        Position in the study, unique and starting at 0.
    params:
        The parameter dict given to the objective.
    state:
        A :class:`TrialState`.
    value:
        The objective value (the metric chosen by ``metric``), ``None`` unless complete.
    metrics:
        Every metric the objective returned.
    intermediate_values:
        ``step -> value`` reported while the trial ran (used by pruners).
    system_attrs:
        Sampler bookkeeping (for example a genetic generation number); JSON-able.
    """

    number: int
    params: dict[str, Any]
    state: TrialState = TrialState.WAITING
    value: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    intermediate_values: dict[int, float] = field(default_factory=dict)
    datetime_start: datetime | None = None
    datetime_complete: datetime | None = None
    user_attrs: dict[str, Any] = field(default_factory=dict)
    system_attrs: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def duration(self) -> float | None:
        """Seconds from start to end, ``None`` while not finished."""
        if self.datetime_start is None or self.datetime_complete is None:
            return None
        return (self.datetime_complete - self.datetime_start).total_seconds()

    @property
    def last_step(self) -> int | None:
        return max(self.intermediate_values) if self.intermediate_values else None

    def objective_value(self) -> float | None:
        """The value a sampler should model: the final value, else ``None``."""
        if self.state == TrialState.COMPLETE and self.value is not None and math.isfinite(
            self.value
        ):
            return self.value
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "params": dict(self.params),
            "state": self.state.value,
            "value": self.value,
            "metrics": dict(self.metrics),
            "intermediate_values": {str(k): v for k, v in self.intermediate_values.items()},
            "datetime_start": self.datetime_start.isoformat() if self.datetime_start else None,
            "datetime_complete": (
                self.datetime_complete.isoformat() if self.datetime_complete else None
            ),
            "duration": self.duration,
            "user_attrs": dict(self.user_attrs),
            "system_attrs": dict(self.system_attrs),
            "error": self.error,
        }


def completion_key(trial: Trial) -> tuple[float, int]:
    """Sort key putting finished trials in the order they finished (ties: lower number first).

    With parallel workers, trials finish out of number order; rules about what happened *last*
    (early stopping, "no improvement lately") follow this order, while the convergence curve
    follows trial numbers. A finished trial without a completion time sorts first.
    """
    done = trial.datetime_complete
    return (-math.inf if done is None else done.timestamp(), trial.number)
