"""The exceptions raised by kaizenml.

Every error derives from :class:`KaizenError`; the concrete classes also derive from the
built-in exception a user would expect (``ValueError``, ``TypeError``, ``KeyError``), so
``except ValueError`` keeps working.
"""

from __future__ import annotations

__all__ = [
    "KaizenError",
    "ValidationError",
    "KaizenTypeError",
    "NotFoundError",
    "StateError",
    "IntegrityError",
    "StorageError",
    "TrialPruned",
    "RollbackError",
]


class KaizenError(Exception):
    """Base class of every exception raised by kaizenml."""


class ValidationError(KaizenError, ValueError):
    """An argument has a bad value; the message names the parameter and the fix."""


class KaizenTypeError(KaizenError, TypeError):
    """An argument has the wrong type; the message names the parameter and the fix."""


class NotFoundError(KaizenError, KeyError):
    """A named object (study, trial, feature, model, version) does not exist."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class StateError(KaizenError, RuntimeError):
    """An operation is not allowed in the object's current state (e.g. telling a trial twice)."""


class IntegrityError(KaizenError):
    """Stored data failed a checksum or consistency check."""


class StorageError(KaizenError):
    """The storage backend failed or holds data this version cannot read."""


class RollbackError(KaizenError):
    """A rollback was refused because one of its validation checks failed."""


class TrialPruned(KaizenError):
    """Raise inside an objective to stop the current trial as pruned."""
