"""Where studies and their trials live: in memory, or in SQL through the shared storage layer.

Both backends implement :class:`StudyStorage`. The SQL backend declares two tables on the
shared :data:`kaizenml.storage.metadata` and runs every change as one transaction through
:func:`kaizenml.storage.retry_on_conflict`:

* trial numbers are allocated inside the transaction that inserts the trial; a unique
  constraint on ``(study_id, number)`` backs it up, so processes sharing one SQLite file (or a
  PostgreSQL database) never lose a trial nor reuse a number;
* a trial is created by its owner (a random token per optimizer) with a heartbeat that the
  owner refreshes; a waiting or running trial whose heartbeat is older than a grace period is
  reclaimed by whoever looks next: marked failed, or put back in the queue (same number, same
  parameters) while it has retries left;
* finished trials never change again, so the backend caches them and each refresh reads only
  new trials and those that were unfinished at the last read.

Parameters, metrics, intermediate values and attributes are stored as JSON text.
"""

from __future__ import annotations

import abc
import json
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

from .._exceptions import NotFoundError, StateError, StorageError, ValidationError
from ..storage import (
    ensure_schema,
    metadata,
    read_connection,
    register_component,
    resolve_engine,
    retry_on_conflict,
)
from ._trial import Trial, TrialState

__all__ = [
    "InMemoryStorage",
    "SQLStorage",
    "StudyRecord",
    "StudyStorage",
    "make_storage",
]

_UNFINISHED = (TrialState.WAITING.value, TrialState.RUNNING.value)

studies_table = sa.Table(
    "optimize_studies",
    metadata,
    sa.Column("study_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("direction", sa.String(8), nullable=False),
    sa.Column("metric", sa.String(128), nullable=True),
    sa.Column("space_json", sa.Text, nullable=False),
    sa.Column("sampler_json", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

trials_table = sa.Table(
    "optimize_trials",
    metadata,
    sa.Column("trial_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "study_id",
        sa.Integer,
        sa.ForeignKey("optimize_studies.study_id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("state", sa.String(10), nullable=False),
    sa.Column("params_json", sa.Text, nullable=False),
    sa.Column("value", sa.Float, nullable=True),
    sa.Column("metrics_json", sa.Text, nullable=False),
    sa.Column("intermediate_json", sa.Text, nullable=False),
    sa.Column("user_attrs_json", sa.Text, nullable=False),
    sa.Column("system_attrs_json", sa.Text, nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("datetime_start", sa.Float, nullable=True),
    sa.Column("datetime_complete", sa.Float, nullable=True),
    sa.Column("heartbeat", sa.Float, nullable=True),
    sa.Column("owner", sa.String(64), nullable=True),
    sa.UniqueConstraint("study_id", "number", name="uq_optimize_trials_study_number"),
    sa.Index("ix_optimize_trials_study_state", "study_id", "state"),
)

# Schema version 1 of the study store (see kaizenml.storage's migrations): a store written by a
# newer kaizenml is refused instead of modified.
register_component("studies", tables=[studies_table.name, trials_table.name])


@dataclass(frozen=True)
class StudyRecord:
    """The stored identity of a study."""

    study_id: int
    name: str
    direction: str
    metric: str | None
    space: dict[str, Any]
    sampler: dict[str, Any]


def new_owner_token() -> str:
    return uuid.uuid4().hex


def _dt(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, tz=timezone.utc)


def _ts(dt: datetime | None) -> float | None:
    return None if dt is None else dt.timestamp()


def _dumps(obj: Any) -> str:
    # NaN survives as a JSON extension token (a diverging run may report one)
    return json.dumps(obj, separators=(",", ":"), allow_nan=True)


def _check_finished_transition(trial: Trial, action: str) -> None:
    if trial.state.is_finished:
        raise StateError(
            f"trial {trial.number} is already {trial.state.value}; a trial is {action} only once "
            "and finished trials cannot change"
        )


class StudyStorage(abc.ABC):
    """Interface of a study backend (in memory or SQL).

    Trials are addressed by ``(study_id, number)``. Methods that change a trial raise
    :class:`~kaizenml.StateError` when the change is not allowed (for example finishing a
    finished trial) and :class:`~kaizenml.NotFoundError` for an unknown trial.
    """

    #: whether worker processes can open this storage themselves (by :attr:`url`)
    shareable: bool = False
    url: str | None = None

    @abc.abstractmethod
    def create_study(
        self,
        name: str,
        *,
        direction: str,
        metric: str | None,
        space: dict[str, Any],
        sampler: dict[str, Any],
        load_if_exists: bool,
    ) -> StudyRecord: ...

    @abc.abstractmethod
    def get_study(self, name: str) -> StudyRecord: ...

    @abc.abstractmethod
    def study_names(self) -> list[str]: ...

    @abc.abstractmethod
    def delete_study(self, name: str) -> None: ...

    @abc.abstractmethod
    def get_trials(self, study_id: int) -> list[Trial]:
        """Every trial of the study, ordered by number (shared objects: do not mutate)."""

    @abc.abstractmethod
    def get_trial(self, study_id: int, number: int) -> Trial: ...

    @abc.abstractmethod
    def create_trial(
        self,
        study_id: int,
        number: int,
        params: dict[str, Any],
        *,
        owner: str,
        system_attrs: dict[str, Any] | None = None,
        limit: int | None = None,
    ) -> Trial | None:
        """Insert a waiting trial under ``number``; ``None`` when that number is taken or,
        with ``limit``, when the study already holds ``limit`` trials."""

    @abc.abstractmethod
    def enqueue_trial(self, study_id: int, params: dict[str, Any]) -> Trial:
        """Insert a waiting trial that the next ask of any process picks up."""

    @abc.abstractmethod
    def claim_waiting(self, study_id: int, owner: str) -> Trial | None:
        """Take ownership of the oldest queued trial, if any."""

    @abc.abstractmethod
    def has_queued(self, study_id: int) -> bool:
        """Whether the last refresh saw queued trials (cheap hint for :meth:`claim_waiting`)."""

    @abc.abstractmethod
    def start_trial(self, study_id: int, number: int) -> Trial: ...

    @abc.abstractmethod
    def report(self, study_id: int, number: int, step: int, value: float) -> Trial: ...

    @abc.abstractmethod
    def clear_intermediate(self, study_id: int, number: int) -> None: ...

    @abc.abstractmethod
    def finish_trial(
        self,
        study_id: int,
        number: int,
        state: TrialState,
        *,
        value: float | None = None,
        metrics: Mapping[str, float] | None = None,
        error: str | None = None,
        intermediate_values: Mapping[int, float] | None = None,
        user_attrs: Mapping[str, Any] | None = None,
    ) -> Trial: ...

    @abc.abstractmethod
    def set_user_attr(self, study_id: int, number: int, key: str, value: Any) -> None: ...

    @abc.abstractmethod
    def heartbeat(self, study_id: int, numbers: Iterable[int]) -> None: ...

    @abc.abstractmethod
    def reclaim_stale(self, study_id: int, grace_period: float, retry_failed: int) -> list[Trial]:
        """Fail or re-queue unfinished trials whose heartbeat is older than ``grace_period``."""

    @abc.abstractmethod
    def requeue_trial(self, study_id: int, number: int) -> Trial:
        """Put an unfinished trial back in the queue with the same parameters (one more retry)."""


def _set_outcome(
    trial: Trial,
    state: TrialState,
    value: float | None,
    metrics: Mapping[str, float] | None,
    error: str | None,
    intermediate_values: Mapping[int, float] | None,
    user_attrs: Mapping[str, Any] | None,
) -> None:
    # the fields finish_trial sets, in the same way for every backend's trial objects
    trial.state = TrialState(state)
    trial.value = value
    trial.metrics = dict(metrics or {})
    trial.error = error
    if intermediate_values is not None:
        trial.intermediate_values = dict(intermediate_values)
    if user_attrs:
        trial.user_attrs.update(user_attrs)


def _lost_message(number: int, age: float) -> str:
    return (
        f"trial {number} lost: no heartbeat for {age:.1f} s (the process running it died or "
        "was stopped)"
    )


# --------------------------------------------------------------------------------------------
# in memory
# --------------------------------------------------------------------------------------------


class InMemoryStorage(StudyStorage):
    """Studies kept in this process's memory (the default).

    One instance may be shared by several optimizers of the same process (e.g. to resume a
    study with ``load_if_exists=True``). Thread-safe.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._studies: dict[str, StudyRecord] = {}
        self._trials: dict[int, list[Trial]] = {}
        self._owners: dict[int, dict[int, str | None]] = {}
        self._heartbeats: dict[int, dict[int, float]] = {}
        self._next_id = 1

    def create_study(
        self,
        name: str,
        *,
        direction: str,
        metric: str | None,
        space: dict[str, Any],
        sampler: dict[str, Any],
        load_if_exists: bool,
    ) -> StudyRecord:
        with self._lock:
            if name in self._studies:
                if not load_if_exists:
                    raise ValidationError(
                        f"study_name={name!r} already exists; pass load_if_exists=True to resume "
                        "it or choose another name"
                    )
                return self._studies[name]
            rec = StudyRecord(self._next_id, name, direction, metric, dict(space), dict(sampler))
            self._next_id += 1
            self._studies[name] = rec
            self._trials[rec.study_id] = []
            self._owners[rec.study_id] = {}
            self._heartbeats[rec.study_id] = {}
            return rec

    def get_study(self, name: str) -> StudyRecord:
        with self._lock:
            if name not in self._studies:
                raise NotFoundError(f"no study named {name!r}; known: {sorted(self._studies)}")
            return self._studies[name]

    def study_names(self) -> list[str]:
        with self._lock:
            return sorted(self._studies)

    def delete_study(self, name: str) -> None:
        with self._lock:
            rec = self.get_study(name)
            del self._studies[name]
            for d in (self._trials, self._owners, self._heartbeats):
                d.pop(rec.study_id, None)

    def _trial(self, study_id: int, number: int) -> Trial:
        trials = self._trials.get(study_id)
        if trials is None:
            raise NotFoundError(f"no study with id {study_id}")
        if not isinstance(number, int) or not 0 <= number < len(trials):
            raise NotFoundError(
                f"trial {number!r} does not exist in this study (it has {len(trials)} trials)"
            )
        return trials[number]

    def get_trials(self, study_id: int) -> list[Trial]:
        with self._lock:
            return list(self._trials[study_id])

    def get_trial(self, study_id: int, number: int) -> Trial:
        with self._lock:
            return self._trial(study_id, number)

    def _insert(
        self, study_id: int, params: dict[str, Any], owner: str | None, attrs: Any
    ) -> Trial:
        trials = self._trials[study_id]
        t = Trial(number=len(trials), params=dict(params), system_attrs=dict(attrs or {}))
        trials.append(t)
        self._owners[study_id][t.number] = owner
        self._heartbeats[study_id][t.number] = time.time()
        return t

    def create_trial(
        self,
        study_id: int,
        number: int,
        params: dict[str, Any],
        *,
        owner: str,
        system_attrs: dict[str, Any] | None = None,
        limit: int | None = None,
    ) -> Trial | None:
        with self._lock:
            if number != len(self._trials[study_id]):
                return None
            if limit is not None and number >= limit:
                return None
            return self._insert(study_id, params, owner, system_attrs)

    def enqueue_trial(self, study_id: int, params: dict[str, Any]) -> Trial:
        with self._lock:
            return self._insert(study_id, params, None, None)

    def has_queued(self, study_id: int) -> bool:
        # unowned entries are exactly the queued trials (finishing removes the entry)
        owners = self._owners[study_id]
        return len(owners) > 0 and None in owners.values()

    def claim_waiting(self, study_id: int, owner: str) -> Trial | None:
        with self._lock:
            owners = self._owners[study_id]
            for n in sorted(owners):
                if owners[n] is None and self._trials[study_id][n].state == TrialState.WAITING:
                    owners[n] = owner
                    self._heartbeats[study_id][n] = time.time()
                    return self._trials[study_id][n]
            return None

    def start_trial(self, study_id: int, number: int) -> Trial:
        with self._lock:
            t = self._trial(study_id, number)
            _check_finished_transition(t, "started")
            if t.state == TrialState.WAITING:
                t.state = TrialState.RUNNING
                t.datetime_start = datetime.now(timezone.utc)
            return t

    def report(self, study_id: int, number: int, step: int, value: float) -> Trial:
        with self._lock:
            t = self._trial(study_id, number)
            _check_finished_transition(t, "reported to while running")
            if step in t.intermediate_values:
                raise StateError(
                    f"trial {number} already has a value for step {step} "
                    f"({t.intermediate_values[step]}); report each step once"
                )
            if t.state == TrialState.WAITING:
                t.state = TrialState.RUNNING
                t.datetime_start = datetime.now(timezone.utc)
            t.intermediate_values[step] = value
            return t

    def clear_intermediate(self, study_id: int, number: int) -> None:
        with self._lock:
            self._trial(study_id, number).intermediate_values.clear()

    def finish_trial(
        self,
        study_id: int,
        number: int,
        state: TrialState,
        *,
        value: float | None = None,
        metrics: Mapping[str, float] | None = None,
        error: str | None = None,
        intermediate_values: Mapping[int, float] | None = None,
        user_attrs: Mapping[str, Any] | None = None,
    ) -> Trial:
        with self._lock:
            t = self._trial(study_id, number)
            _check_finished_transition(t, "told")
            now = datetime.now(timezone.utc)
            if t.datetime_start is None:
                t.datetime_start = now
            _set_outcome(t, state, value, metrics, error, intermediate_values, user_attrs)
            t.datetime_complete = now
            self._owners[study_id].pop(number, None)
            self._heartbeats[study_id].pop(number, None)
            return t

    def set_user_attr(self, study_id: int, number: int, key: str, value: Any) -> None:
        with self._lock:
            t = self._trial(study_id, number)
            json.dumps(value)  # attributes must be JSON-able, as in SQL storage
            t.user_attrs[key] = value

    def heartbeat(self, study_id: int, numbers: Iterable[int]) -> None:
        with self._lock:
            now = time.time()
            hb = self._heartbeats[study_id]
            for n in numbers:
                if n in hb:
                    hb[n] = now

    def reclaim_stale(self, study_id: int, grace_period: float, retry_failed: int) -> list[Trial]:
        with self._lock:
            now = time.time()
            out = []
            for n, beat in list(self._heartbeats[study_id].items()):
                t = self._trials[study_id][n]
                if t.state.is_finished or self._owners[study_id].get(n) is None:
                    continue
                if now - beat <= grace_period:
                    continue
                if int(t.system_attrs.get("retries", 0)) < retry_failed:
                    self._requeue(study_id, t)
                else:
                    self.finish_trial(
                        study_id, n, TrialState.FAILED, error=_lost_message(n, now - beat)
                    )
                out.append(t)
            return out

    def _requeue(self, study_id: int, t: Trial) -> None:
        t.state = TrialState.WAITING
        t.intermediate_values.clear()
        t.datetime_start = None
        t.system_attrs["retries"] = int(t.system_attrs.get("retries", 0)) + 1
        self._owners[study_id][t.number] = None

    def requeue_trial(self, study_id: int, number: int) -> Trial:
        with self._lock:
            t = self._trials[study_id][number]
            if t.state.is_finished:
                raise StateError(
                    f"trial {number} is already {t.state.value}; it cannot be re-queued"
                )
            self._requeue(study_id, t)
            self._heartbeats[study_id].pop(number, None)
            return t


# --------------------------------------------------------------------------------------------
# SQL
# --------------------------------------------------------------------------------------------


def _requeue_values(system_attrs: dict[str, Any]) -> dict[str, Any]:
    """Column values that put an unfinished trial back in the queue, counting one more retry."""
    system_attrs["retries"] = int(system_attrs.get("retries", 0)) + 1
    return {
        "state": TrialState.WAITING.value,
        "owner": None,
        "heartbeat": None,
        "datetime_start": None,
        "intermediate_json": "{}",
        "system_attrs_json": _dumps(system_attrs),
    }


def _row_to_trial(row: Any) -> Trial:
    return Trial(
        number=int(row.number),
        params=json.loads(row.params_json),
        state=TrialState(row.state),
        value=row.value,
        metrics=json.loads(row.metrics_json),
        intermediate_values={int(k): v for k, v in json.loads(row.intermediate_json).items()},
        datetime_start=_dt(row.datetime_start),
        datetime_complete=_dt(row.datetime_complete),
        user_attrs=json.loads(row.user_attrs_json),
        system_attrs=json.loads(row.system_attrs_json),
        error=row.error,
    )


class _StudyCache:
    """Trials of one study as last read; finished ones are final and never re-read.

    ``next_number`` is the first number :meth:`SQLStorage.get_trials` has not read yet: every
    trial below it is in the cache. Only a full read (or inserting the next number, which proves
    every number below exists and was read) may move it; a single trial read on its own (a
    claim, a reclaim, ``get_trial``) is cached without moving it, or the trials before that one
    would never be read.
    """

    __slots__ = ("finished", "unfinished", "queued", "next_number")

    def __init__(self) -> None:
        self.finished: dict[int, Trial] = {}
        self.unfinished: dict[int, Trial] = {}
        self.queued: set[int] = set()
        self.next_number = 0

    def put(self, t: Trial, owner: str | None, *, advance: bool = False) -> None:
        if t.state.is_finished:
            self.unfinished.pop(t.number, None)
            self.finished[t.number] = t
            self.queued.discard(t.number)
        else:
            self.unfinished[t.number] = t
            if owner is None and t.state == TrialState.WAITING:
                self.queued.add(t.number)
            else:
                self.queued.discard(t.number)
        if advance:
            self.next_number = max(self.next_number, t.number + 1)


class SQLStorage(StudyStorage):
    """Studies in a SQL database (SQLite file or PostgreSQL) through the shared storage layer.

    Parameters
    ----------
    url:
        A database URL such as ``"sqlite:///studies.db"`` or an SQLAlchemy ``Engine``.

    Examples
    --------
    >>> import tempfile, os
    >>> storage = SQLStorage("sqlite:///" + os.path.join(tempfile.mkdtemp(), "s.db"))
    >>> rec = storage.create_study("demo", direction="minimize", metric=None,
    ...                            space={}, sampler={}, load_if_exists=False)
    >>> rec.name
    'demo'
    """

    shareable = True

    def __init__(self, url: Any) -> None:
        self.engine = resolve_engine(url)
        self.url = self.engine.url.render_as_string(hide_password=False)
        ensure_schema(self.engine)
        self._caches: dict[int, _StudyCache] = {}
        self._lock = threading.RLock()

    # studies -------------------------------------------------------------------------------
    def _record(self, row: Any) -> StudyRecord:
        return StudyRecord(
            int(row.study_id),
            row.name,
            row.direction,
            row.metric,
            json.loads(row.space_json),
            json.loads(row.sampler_json),
        )

    def create_study(
        self,
        name: str,
        *,
        direction: str,
        metric: str | None,
        space: dict[str, Any],
        sampler: dict[str, Any],
        load_if_exists: bool,
    ) -> StudyRecord:
        s = studies_table

        def txn() -> StudyRecord:
            with self.engine.begin() as conn:
                row = conn.execute(sa.select(s).where(s.c.name == name)).first()
                if row is not None:
                    if not load_if_exists:
                        raise ValidationError(
                            f"study_name={name!r} already exists in {self.engine.url!r}; pass "
                            "load_if_exists=True to resume it or choose another name"
                        )
                    return self._record(row)
                conn.execute(
                    sa.insert(s).values(
                        name=name,
                        direction=direction,
                        metric=metric,
                        space_json=_dumps(space),
                        sampler_json=_dumps(sampler),
                        created_at=time.time(),
                    )
                )
                row = conn.execute(sa.select(s).where(s.c.name == name)).one()
                return self._record(row)

        return retry_on_conflict(txn)

    def get_study(self, name: str) -> StudyRecord:
        s = studies_table
        with read_connection(self.engine) as conn:
            row = conn.execute(sa.select(s).where(s.c.name == name)).first()
        if row is None:
            raise NotFoundError(f"no study named {name!r} in {self.engine.url!r}")
        return self._record(row)

    def study_names(self) -> list[str]:
        with read_connection(self.engine) as conn:
            return sorted(r[0] for r in conn.execute(sa.select(studies_table.c.name)))

    def delete_study(self, name: str) -> None:
        rec = self.get_study(name)

        def txn() -> None:
            with self.engine.begin() as conn:
                conn.execute(sa.delete(trials_table).where(trials_table.c.study_id == rec.study_id))
                conn.execute(
                    sa.delete(studies_table).where(studies_table.c.study_id == rec.study_id)
                )

        retry_on_conflict(txn)
        with self._lock:
            self._caches.pop(rec.study_id, None)

    # trials: reading -----------------------------------------------------------------------
    def _cache(self, study_id: int) -> _StudyCache:
        c = self._caches.get(study_id)
        if c is None:
            c = self._caches[study_id] = _StudyCache()
        return c

    def get_trials(self, study_id: int) -> list[Trial]:
        t = trials_table
        with self._lock:
            cache = self._cache(study_id)
            cond = t.c.number >= cache.next_number
            if cache.unfinished:
                cond = sa.or_(cond, t.c.number.in_(list(cache.unfinished)))
            with read_connection(self.engine) as conn:
                rows = conn.execute(sa.select(t).where(t.c.study_id == study_id, cond)).fetchall()
            for row in rows:
                cache.put(_row_to_trial(row), row.owner, advance=True)
            merged = {**cache.finished, **cache.unfinished}
            return [merged[n] for n in sorted(merged)]

    def get_trial(self, study_id: int, number: int) -> Trial:
        t = trials_table
        with read_connection(self.engine) as conn:
            row = conn.execute(
                sa.select(t).where(t.c.study_id == study_id, t.c.number == number)
            ).first()
        if row is None:
            raise NotFoundError(f"trial {number!r} does not exist in this study")
        trial = _row_to_trial(row)
        with self._lock:
            self._cache(study_id).put(trial, row.owner)
        return trial

    def has_queued(self, study_id: int) -> bool:
        with self._lock:
            return bool(self._cache(study_id).queued)

    # trials: writing -----------------------------------------------------------------------
    def _insert_values(
        self, study_id: int, number: int, params: dict[str, Any], owner: str | None, attrs: Any
    ) -> dict[str, Any]:
        return dict(
            study_id=study_id,
            number=number,
            state=TrialState.WAITING.value,
            params_json=_dumps(params),
            value=None,
            metrics_json="{}",
            intermediate_json="{}",
            user_attrs_json="{}",
            system_attrs_json=_dumps(attrs or {}),
            heartbeat=time.time(),
            owner=owner,
        )

    def _next_number(self, conn: Any, study_id: int) -> int:
        t = trials_table
        return int(
            conn.execute(
                sa.select(sa.func.coalesce(sa.func.max(t.c.number) + 1, 0)).where(
                    t.c.study_id == study_id
                )
            ).scalar_one()
        )

    def create_trial(
        self,
        study_id: int,
        number: int,
        params: dict[str, Any],
        *,
        owner: str,
        system_attrs: dict[str, Any] | None = None,
        limit: int | None = None,
    ) -> Trial | None:
        values = self._insert_values(study_id, number, params, owner, system_attrs)

        def txn() -> int:
            with self.engine.begin() as conn:
                # numbers are contiguous from 0, so the next number is also the trial count
                nxt = self._next_number(conn, study_id)
                if nxt != number or (limit is not None and nxt >= limit):
                    return -1 if nxt == number else nxt
                conn.execute(sa.insert(trials_table).values(**values))
                return number

        got = retry_on_conflict(txn)
        with self._lock:
            cache = self._cache(study_id)
            if got != number:
                return None
            trial = Trial(number=number, params=dict(params), system_attrs=dict(system_attrs or {}))
            # the insert saw exactly `number` trials, all read by the caller's get_trials
            cache.put(trial, owner, advance=cache.next_number == number)
            return trial

    def enqueue_trial(self, study_id: int, params: dict[str, Any]) -> Trial:
        def txn() -> int:
            with self.engine.begin() as conn:
                nxt = self._next_number(conn, study_id)
                conn.execute(
                    sa.insert(trials_table).values(
                        **self._insert_values(study_id, nxt, params, None, None)
                    )
                )
                return nxt

        number = retry_on_conflict(txn)
        return self.get_trial(study_id, number)

    def claim_waiting(self, study_id: int, owner: str) -> Trial | None:
        t = trials_table

        def txn() -> int | None:
            with self.engine.begin() as conn:
                row = conn.execute(
                    sa.select(t.c.number)
                    .where(
                        t.c.study_id == study_id,
                        t.c.state == TrialState.WAITING.value,
                        t.c.owner.is_(None),
                    )
                    .order_by(t.c.number)
                    .limit(1)
                ).first()
                if row is None:
                    return None
                res = conn.execute(
                    sa.update(t)
                    .where(
                        t.c.study_id == study_id,
                        t.c.number == row.number,
                        t.c.owner.is_(None),
                        t.c.state == TrialState.WAITING.value,
                    )
                    .values(owner=owner, heartbeat=time.time())
                )
                return int(row.number) if res.rowcount == 1 else None

        number = retry_on_conflict(txn)
        if number is None:
            with self._lock:
                self._cache(study_id).queued.clear()
            return None
        return self.get_trial(study_id, number)

    def _update_unfinished(self, study_id: int, number: int, action: str, **values: Any) -> None:
        """UPDATE a trial that must still be unfinished, or raise the right error."""
        t = trials_table

        def txn() -> int:
            with self.engine.begin() as conn:
                res = conn.execute(
                    sa.update(t)
                    .where(
                        t.c.study_id == study_id,
                        t.c.number == number,
                        t.c.state.in_(_UNFINISHED),
                    )
                    .values(**values)
                )
                return int(res.rowcount)

        if retry_on_conflict(txn) != 1:
            _check_finished_transition(self.get_trial(study_id, number), action)
            raise StorageError(f"trial {number} could not be updated")  # pragma: no cover

    def start_trial(self, study_id: int, number: int) -> Trial:
        t = trials_table
        now = time.time()

        def txn() -> int:
            with self.engine.begin() as conn:
                res = conn.execute(
                    sa.update(t)
                    .where(
                        t.c.study_id == study_id,
                        t.c.number == number,
                        t.c.state == TrialState.WAITING.value,
                    )
                    .values(state=TrialState.RUNNING.value, datetime_start=now, heartbeat=now)
                )
                return int(res.rowcount)

        with self._lock:
            cached = self._cache(study_id).unfinished.get(number)
        if retry_on_conflict(txn) == 1 and cached is not None:
            cached.state = TrialState.RUNNING
            cached.datetime_start = _dt(now)
            return cached
        trial = self.get_trial(study_id, number)
        _check_finished_transition(trial, "started")
        return trial

    def report(self, study_id: int, number: int, step: int, value: float) -> Trial:
        t = trials_table

        def txn() -> Trial:
            with self.engine.begin() as conn:
                row = conn.execute(
                    sa.select(t).where(t.c.study_id == study_id, t.c.number == number)
                ).first()
                if row is None:
                    raise NotFoundError(f"trial {number!r} does not exist in this study")
                trial = _row_to_trial(row)
                _check_finished_transition(trial, "reported to while running")
                if step in trial.intermediate_values:
                    raise StateError(
                        f"trial {number} already has a value for step {step} "
                        f"({trial.intermediate_values[step]}); report each step once"
                    )
                trial.intermediate_values[step] = value
                values: dict[str, Any] = {
                    "intermediate_json": _dumps(
                        {str(k): v for k, v in trial.intermediate_values.items()}
                    )
                }
                if trial.state == TrialState.WAITING:
                    values.update(state=TrialState.RUNNING.value, datetime_start=time.time())
                    trial.state = TrialState.RUNNING
                conn.execute(
                    sa.update(t)
                    .where(t.c.study_id == study_id, t.c.number == number)
                    .values(**values)
                )
                return trial

        trial = retry_on_conflict(txn)
        with self._lock:
            cache = self._cache(study_id)
            cached = cache.unfinished.get(number)
            if cached is not None:
                cached.intermediate_values[step] = value
                cached.state = trial.state
                return cached
        return trial

    def clear_intermediate(self, study_id: int, number: int) -> None:
        self._update_unfinished(study_id, number, "reset", intermediate_json="{}")
        with self._lock:
            cached = self._cache(study_id).unfinished.get(number)
            if cached is not None:
                cached.intermediate_values.clear()

    def finish_trial(
        self,
        study_id: int,
        number: int,
        state: TrialState,
        *,
        value: float | None = None,
        metrics: Mapping[str, float] | None = None,
        error: str | None = None,
        intermediate_values: Mapping[int, float] | None = None,
        user_attrs: Mapping[str, Any] | None = None,
    ) -> Trial:
        t = trials_table
        now = time.time()
        values: dict[str, Any] = {
            "state": TrialState(state).value,
            "value": value,
            "metrics_json": _dumps(dict(metrics or {})),
            "error": error,
            "datetime_complete": now,
            "heartbeat": None,
            "owner": None,
        }
        if intermediate_values is not None:
            values["intermediate_json"] = _dumps(
                {str(k): v for k, v in intermediate_values.items()}
            )
        with self._lock:
            cached = self._cache(study_id).unfinished.get(number)
        if user_attrs and cached is None:
            cached = self.get_trial(study_id, number)
        if user_attrs:
            assert cached is not None
            values["user_attrs_json"] = _dumps({**cached.user_attrs, **dict(user_attrs)})

        def txn() -> tuple[int, float | None]:
            with self.engine.begin() as conn:
                res = conn.execute(
                    sa.update(t)
                    .where(
                        t.c.study_id == study_id,
                        t.c.number == number,
                        t.c.state.in_(_UNFINISHED),
                    )
                    .values(**values)
                )
                start = None
                if res.rowcount == 1:
                    start = conn.execute(
                        sa.select(t.c.datetime_start).where(
                            t.c.study_id == study_id, t.c.number == number
                        )
                    ).scalar_one()
                    if start is None:
                        conn.execute(
                            sa.update(t)
                            .where(t.c.study_id == study_id, t.c.number == number)
                            .values(datetime_start=now)
                        )
                        start = now
                return int(res.rowcount), start

        count, start = retry_on_conflict(txn)
        if count != 1:
            _check_finished_transition(self.get_trial(study_id, number), "told")
            raise StorageError(f"trial {number} could not be finished")  # pragma: no cover
        with self._lock:
            cache = self._cache(study_id)
            trial = cache.unfinished.get(number)
            if trial is None:
                return self.get_trial(study_id, number)
            _set_outcome(trial, state, value, metrics, error, intermediate_values, user_attrs)
            trial.datetime_start = _dt(start)
            trial.datetime_complete = _dt(now)
            cache.put(trial, None)
            return trial

    def set_user_attr(self, study_id: int, number: int, key: str, value: Any) -> None:
        t = trials_table
        text = _dumps(value)

        def txn() -> None:
            with self.engine.begin() as conn:
                row = conn.execute(
                    sa.select(t.c.user_attrs_json).where(
                        t.c.study_id == study_id, t.c.number == number
                    )
                ).first()
                if row is None:
                    raise NotFoundError(f"trial {number!r} does not exist in this study")
                attrs = json.loads(row.user_attrs_json)
                attrs[key] = json.loads(text)
                conn.execute(
                    sa.update(t)
                    .where(t.c.study_id == study_id, t.c.number == number)
                    .values(user_attrs_json=_dumps(attrs))
                )

        retry_on_conflict(txn)
        with self._lock:
            cache = self._cache(study_id)
            cached = cache.unfinished.get(number) or cache.finished.get(number)
            if cached is not None:
                cached.user_attrs[key] = json.loads(text)

    def heartbeat(self, study_id: int, numbers: Iterable[int]) -> None:
        numbers = list(numbers)
        if not numbers:
            return
        t = trials_table

        def txn() -> None:
            with self.engine.begin() as conn:
                conn.execute(
                    sa.update(t)
                    .where(
                        t.c.study_id == study_id,
                        t.c.number.in_(numbers),
                        t.c.state.in_(_UNFINISHED),
                        t.c.owner.is_not(None),
                    )
                    .values(heartbeat=time.time())
                )

        retry_on_conflict(txn)

    def reclaim_stale(self, study_id: int, grace_period: float, retry_failed: int) -> list[Trial]:
        t = trials_table

        def txn() -> list[int]:
            now = time.time()
            with self.engine.begin() as conn:
                rows = conn.execute(
                    sa.select(t.c.number, t.c.heartbeat, t.c.system_attrs_json).where(
                        t.c.study_id == study_id,
                        t.c.state.in_(_UNFINISHED),
                        t.c.owner.is_not(None),
                        t.c.heartbeat < now - grace_period,
                    )
                ).fetchall()
                reclaimed = []
                for row in rows:
                    attrs = json.loads(row.system_attrs_json)
                    # compare-and-set: still unfinished, owned and with the heartbeat seen
                    # above. On PostgreSQL another worker may have reclaimed the trial and a
                    # third claimed it since the SELECT; it must not be taken from that one.
                    where = sa.and_(
                        t.c.study_id == study_id,
                        t.c.number == row.number,
                        t.c.state.in_(_UNFINISHED),
                        t.c.owner.is_not(None),
                        t.c.heartbeat == row.heartbeat,
                    )
                    if int(attrs.get("retries", 0)) < retry_failed:
                        values = _requeue_values(attrs)
                    else:
                        values = dict(
                            state=TrialState.FAILED.value,
                            owner=None,
                            heartbeat=None,
                            datetime_complete=now,
                            error=_lost_message(int(row.number), now - row.heartbeat),
                        )
                    if conn.execute(sa.update(t).where(where).values(**values)).rowcount == 1:
                        reclaimed.append(int(row.number))
                return reclaimed

        numbers = retry_on_conflict(txn)
        return [self.get_trial(study_id, n) for n in numbers]

    def requeue_trial(self, study_id: int, number: int) -> Trial:
        t = trials_table

        def txn() -> None:
            with self.engine.begin() as conn:
                row = conn.execute(
                    sa.select(t.c.state, t.c.system_attrs_json).where(
                        t.c.study_id == study_id, t.c.number == number
                    )
                ).first()
                if row is None:
                    raise NotFoundError(f"trial {number} does not exist in this study")
                if row.state not in _UNFINISHED:
                    raise StateError(
                        f"trial {number} is already {row.state}; it cannot be re-queued"
                    )
                conn.execute(
                    sa.update(t)
                    .where(t.c.study_id == study_id, t.c.number == number)
                    .values(**_requeue_values(json.loads(row.system_attrs_json)))
                )

        retry_on_conflict(txn)
        return self.get_trial(study_id, number)


def make_storage(storage: Any) -> StudyStorage:
    """Turn a ``storage=`` argument into a backend: ``None`` (memory), a URL, an Engine or a
    :class:`StudyStorage`."""
    if storage is None:
        return InMemoryStorage()
    if isinstance(storage, StudyStorage):
        return storage
    if isinstance(storage, str) or isinstance(storage, sa.engine.Engine):
        return SQLStorage(storage)
    from .._exceptions import KaizenTypeError

    raise KaizenTypeError(
        f"storage must be None (in memory), a database URL such as 'sqlite:///study.db', an "
        f"SQLAlchemy Engine or a StudyStorage, got {type(storage).__name__}"
    )
