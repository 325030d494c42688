"""The version history returned by :meth:`ModelVersionManager.get_version_history`.

A model can hold tens of thousands of versions, and a caller often looks at a few of them (the
newest, a page, the count). :class:`VersionHistory` is therefore lazy twice over:

* the first read of a model fetches only the row ids (from the ``(model_name, id)`` index), the
  model's history revision and its active version, in one statement; the rows themselves are
  loaded on first access, :data:`CHUNK_SIZE` consecutive items per query (iteration loads
  growing blocks);
* each :class:`ModelVersion` (datetime, JSON of metrics and tags, artifact path) is built the
  first time that item is used, and kept.

A history is a snapshot: it shows exactly the versions that existed at the history revision it
was read at (see ``kz_model_history_revisions``), whenever its items are accessed. Versions are
immutable except for deletion, and the transaction deleting a version stores the deleted row
(its id and a JSON record of its columns) in ``kz_model_deleted_versions``, so a row deleted
after the snapshot is loaded from there. The loader holds the store's engine, not the manager:
a history keeps working after its manager is garbage collected.
"""

from __future__ import annotations

import bisect
import json
import operator
import os
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from typing import Any, overload

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .._exceptions import StateError
from ..storage import read_connection
from ._records import ModelVersion
from ._schema import deleted_versions, model_versions

__all__ = ["CHUNK_SIZE", "HistoryRow", "HistorySource", "VersionHistory"]

# (tag, id, version, change_type, parent_version, description, created_by, created_at,
#  metrics, tags, artifact_path, checksum, serializer): one row of kz_model_versions, metrics
# and tags still as their JSON text, artifact_path relative to the artifact root. The history
# ignores ``tag`` (the row kind of the manager's refresh statement, or the row's revision when
# the loader read it).
HistoryRow = tuple[
    int, int, str, str, "str | None", str, str, float, str, str, str, str, "str | None"
]

#: How many consecutive items one query of a lazy history loads (iteration loads blocks
#: growing from this size up to :data:`MAX_BLOCK`).
CHUNK_SIZE = 256
MAX_BLOCK = 4096

# raw_decode skips json.loads' wrapper layers (3-4x faster on the small documents of a row);
# the texts were written by json.dumps, so they start with the document and hold nothing else.
_decode = json.JSONDecoder().raw_decode
_UTC = timezone.utc
_neg = operator.neg

_mv = model_versions
_dv = deleted_versions
# The record of a deleted row holds these keys (the columns of a HistoryRow after the id).
RECORD_KEYS = (
    "version", "change_type", "parent_version", "description", "created_by", "created_at",
    "metrics", "tags", "artifact_path", "checksum", "serializer",
)

_name = sa.bindparam("name", type_=sa.String)
_lo = sa.bindparam("lo", type_=sa.Integer)
_hi = sa.bindparam("hi", type_=sa.Integer)
# The version-row columns behind RECORD_KEYS, in that order.
RECORD_COLUMNS = tuple(_mv.c[key] for key in RECORD_KEYS)
# Live rows of one id range (the (model_name, id) index), the row's revision in the tag slot.
_LIVE_RANGE = sa.select(_mv.c.revision, _mv.c.id, *RECORD_COLUMNS).where(
    _mv.c.model_name == _name, _mv.c.id >= _lo, _mv.c.id <= _hi
)
# Rows of that range deleted after the snapshot's revision.
_DELETED_RANGE = sa.select(_dv.c.row_id, _dv.c.revision, _dv.c.record).where(
    _dv.c.model_name == _name, _dv.c.row_id >= _lo, _dv.c.row_id <= _hi,
    _dv.c.revision > sa.bindparam("revision", type_=sa.Integer),
)


def deleted_record(row: Any) -> str:
    """The JSON record stored for a deleted row (``row`` has the HistoryRow columns by name and
    ``revision``, the row's own history revision)."""
    record = {key: getattr(row, key) for key in RECORD_KEYS}
    record["revision"] = row.revision
    return json.dumps(record)


def _row_from_record(row_id: int, text: str) -> HistoryRow:
    record = json.loads(text)
    return (  # type: ignore[return-value]
        record.get("revision"), row_id, *(record[key] for key in RECORD_KEYS)
    )


class HistorySource:
    """Where a lazy history loads its rows: one model of one store, at one history revision.

    It holds the engine (whose connection pool outlives any manager), so a history stays
    usable after the manager that read it is gone.
    """

    __slots__ = ("engine", "model_name", "revision")

    def __init__(self, engine: Engine, model_name: str, revision: int) -> None:
        self.engine = engine
        self.model_name = model_name
        self.revision = revision

    def load(self, ids: Sequence[int]) -> dict[int, Any]:
        """The rows with these ids as they were at :attr:`revision` (``id -> HistoryRow``).

        The live rows of the id range are read first, then, for ids missing there (or held by
        a row created after the snapshot: SQLite may hand a deleted newest id out again), the
        records of rows deleted after the snapshot, which take precedence. In that order a
        deletion committed between the two statements is seen by the second, and on SQLite
        both run in one transaction.

        Raises
        ------
        StateError
            If a row of the snapshot can be found neither live nor among the deleted records
            (deleted by a writer that kept no record, or the store was replaced).
        """
        wanted = set(ids)
        params = {"name": self.model_name, "lo": min(wanted), "hi": max(wanted)}
        revision = self.revision
        found: dict[int, Any] = {}
        # Live rows created after the snapshot: another row may have held their id at the
        # snapshot (SQLite hands the largest id out again after its row is deleted).
        newer: dict[int, Any] = {}
        with read_connection(self.engine) as conn:
            for row in conn.execute(_LIVE_RANGE, params).all():
                if row[1] in wanted:
                    # NULL: a row written before revisions existed, so before any snapshot.
                    if row[0] is None or row[0] <= revision:
                        found[row[1]] = row
                    else:
                        newer[row[1]] = row
            if len(found) < len(wanted):
                # The row alive at the snapshot is the first one deleted after it.
                first: dict[int, tuple[int, str]] = {}
                for row_id, deleted_at, record in conn.execute(
                    _DELETED_RANGE, {**params, "revision": revision}
                ):
                    if row_id in wanted and row_id not in found and record is not None:
                        seen = first.get(row_id)
                        if seen is None or deleted_at < seen[0]:
                            first[row_id] = (deleted_at, record)
                for row_id, (_, record) in first.items():
                    found[row_id] = _row_from_record(row_id, record)
        # A newer live row with no deleted row of its id after the snapshot is the snapshot's
        # own row (its revision is above the snapshot's only if the counter was reset).
        for row_id, row in newer.items():
            found.setdefault(row_id, row)
        if len(found) < len(wanted):
            missing = sorted(wanted - found.keys())
            raise StateError(
                f"the history of model {self.model_name!r} read at revision {revision} lists "
                f"row ids {missing[:5]} that are neither stored nor recorded as deleted since "
                "(deleted by a kaizenml that kept no record, or the store was replaced); read "
                "the history again with get_version_history"
            )
        return found


class VersionHistory(Sequence[ModelVersion]):
    """The versions of one model, newest (most recently created) first.

    A read-only sequence of :class:`ModelVersion`: ``len``, indexing (negative indexes too),
    slicing (which gives a ``VersionHistory``), iteration, ``reversed``, ``in``, ``index`` and
    ``count`` behave as on a list, and a history equals a list (or tuple) of the same
    ``ModelVersion`` records in the same order. Rows are read from the store on first access,
    a few hundred at a time, and each item is built on first access and kept, so reading the
    newest versions of a long history costs only those versions. Use ``list(history)`` for a
    mutable copy.

    A history is a snapshot: it holds exactly the versions that existed when it was read, also
    if some of them are deleted before its items are accessed. ``is_active`` of each item
    reflects the model's active version at that time. It keeps working after the manager that
    returned it is gone (it holds the store's engine).

    Examples
    --------
    >>> history = mgr.get_version_history("momentum")  # doctest: +SKIP
    >>> history[0].version, len(history)  # doctest: +SKIP
    ('1.1.0', 2)
    >>> [v.version for v in history[:1]]  # doctest: +SKIP
    ['1.1.0']
    """

    __slots__ = ("_active", "_ids", "_items", "_model_name", "_root", "_rows", "_source")

    def __init__(
        self,
        model_name: str,
        rows: Sequence[HistoryRow],
        active_version: str | None,
        artifact_root: str,
    ) -> None:
        loaded = list(rows)
        self._assign(
            model_name, [row[1] for row in loaded], active_version, artifact_root, None, loaded
        )

    def _assign(
        self,
        model_name: str,
        ids: list[int],
        active_version: str | None,
        artifact_root: str,
        source: HistorySource | None,
        rows: list[Any] | None = None,
        items: list[ModelVersion | None] | None = None,
    ) -> None:
        self._model_name = model_name
        self._ids = ids
        self._rows: list[Any] = [None] * len(ids) if rows is None else rows
        self._items: list[ModelVersion | None] = [None] * len(ids) if items is None else items
        self._active = active_version
        self._root = artifact_root
        self._source = source

    @classmethod
    def _lazy(cls, *state: Any) -> VersionHistory:
        """A history of the rows ``ids`` (newest first, except in a reversed slice), loaded
        from ``source`` on access except those already in ``rows``/``items`` (same length as
        ``ids``); ``state`` is :meth:`_assign`'s arguments. Only a history with strictly
        decreasing ids may be ``_refreshed``."""
        history = cls.__new__(cls)
        history._assign(*state)
        return history

    def _refreshed(
        self,
        added: Sequence[Any],
        deleted: set[int],
        active_version: str | None,
        source: HistorySource,
    ) -> VersionHistory:
        """This history brought to a newer snapshot: ``added`` rows (newest first) in, the
        rows with ids in ``deleted`` out, keeping the rows loaded and the records built (a
        record whose ``is_active`` changes is built again)."""
        if active_version == self._active:
            items = self._items
        else:
            flipped = (self._active, active_version)
            items = [
                None if item is not None and item.version in flipped else item
                for item in self._items
            ]
        if not deleted and (not added or not self._ids or added[-1][1] > self._ids[0]):
            # The common case (new versions, newest ids): one copy of each list.
            unbuilt: list[ModelVersion | None] = [None] * len(added)
            return VersionHistory._lazy(
                self._model_name, [row[1] for row in added] + self._ids, active_version,
                self._root, source, list(added) + self._rows, unbuilt + items,
            )
        ids = list(self._ids)
        rows = list(self._rows)
        items = list(items)
        if deleted:
            if len(deleted) > 32:
                keep = [p for p, row_id in enumerate(ids) if row_id not in deleted]
                ids = [ids[p] for p in keep]
                rows = [rows[p] for p in keep]
                items = [items[p] for p in keep]
            else:
                for row_id in deleted:
                    p = bisect.bisect_left(ids, -row_id, key=_neg)
                    if p < len(ids) and ids[p] == row_id:
                        del ids[p], rows[p], items[p]
        if added:
            if not ids or added[-1][1] > ids[0]:
                ids[:0] = [row[1] for row in added]
                rows[:0] = added
                items[:0] = [None] * len(added)
            else:
                # On PostgreSQL a lower id can commit after a higher one: insert in order.
                for row in reversed(added):
                    p = bisect.bisect_left(ids, -row[1], key=_neg)
                    ids.insert(p, row[1])
                    rows.insert(p, row)
                    items.insert(p, None)
        return VersionHistory._lazy(
            self._model_name, ids, active_version, self._root, source, rows, items
        )

    @property
    def model_name(self) -> str:
        """The model these versions belong to."""
        return self._model_name

    @property
    def active_version(self) -> str | None:
        """The model's active version when the history was read (``None`` if none was set)."""
        return self._active

    def _load(self, start: int, stop: int) -> None:
        """Load the rows not loaded yet among positions ``start:stop``."""
        rows = self._rows
        positions = [p for p in range(start, stop) if rows[p] is None]
        if not positions:
            return
        source = self._source
        assert source is not None  # an eager history holds every row
        ids = self._ids
        found = source.load([ids[p] for p in positions])
        for p in positions:
            rows[p] = found[ids[p]]

    def _row(self, index: int) -> Any:
        row = self._rows[index]
        if row is None:
            start = index - index % CHUNK_SIZE
            self._load(start, min(start + CHUNK_SIZE, len(self._rows)))
            row = self._rows[index]
        return row

    def _load_all(self) -> None:
        for start in range(0, len(self._rows), MAX_BLOCK):
            self._load(start, min(start + MAX_BLOCK, len(self._rows)))

    def _build(self, index: int) -> ModelVersion:
        (_, _, version, change_type, parent_version, description, created_by, created_at,
         metrics, tags, artifact_path, checksum, serializer) = self._row(index)
        item = ModelVersion(
            model_name=self._model_name,
            version=version,
            change_type=change_type,
            parent_version=parent_version,
            description=description,
            created_by=created_by,
            created_at=datetime.fromtimestamp(created_at, tz=_UTC),
            metrics={} if metrics == "{}" else _decode(metrics)[0],
            tags={} if tags == "{}" else _decode(tags)[0],
            artifact_path=os.path.join(self._root, artifact_path),
            checksum=checksum,
            is_active=version == self._active,
            serializer=serializer,
        )
        self._items[index] = item
        return item

    def __len__(self) -> int:
        return len(self._ids)

    @overload
    def __getitem__(self, index: int) -> ModelVersion: ...

    @overload
    def __getitem__(self, index: slice) -> VersionHistory: ...

    def __getitem__(self, index: int | slice) -> ModelVersion | VersionHistory:
        if isinstance(index, slice):
            return VersionHistory._lazy(
                self._model_name, self._ids[index], self._active, self._root, self._source,
                self._rows[index], self._items[index],
            )
        # Any int-like index (numpy integers included), range-checked as a list would.
        item = self._items[index]
        if item is None:
            position = index.__index__()
            return self._build(position + len(self._ids) if position < 0 else position)
        return item

    def __iter__(self) -> Iterator[ModelVersion]:
        items = self._items
        rows = self._rows
        n = len(items)
        block = CHUNK_SIZE
        for i in range(n):
            item = items[i]
            if item is None:
                if rows[i] is None:
                    # A full pass is likely: fewer, larger queries as it goes on.
                    self._load(i, min(i + block, n))
                    block = min(2 * block, MAX_BLOCK)
                item = self._build(i)
            yield item

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, ModelVersion) or value.model_name != self._model_name:
            return False
        # A version number names one row, so only that row is built and compared.
        self._load_all()
        for i, row in enumerate(self._rows):
            if row[2] == value.version:
                return self[i] == value
        return False

    def __eq__(self, other: object) -> bool:
        if isinstance(other, VersionHistory):
            # The same snapshot of the same rows holds the same records.
            if (
                self._source is not None
                and self._source is other._source
                and (self._model_name, self._active, self._root)
                == (other._model_name, other._active, other._root)
                and self._ids == other._ids
            ):
                return True
        elif not isinstance(other, (list, tuple)):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    def __ne__(self, other: object) -> bool:
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    __hash__ = None  # type: ignore[assignment]  # compares by content like a list

    def __repr__(self) -> str:
        n = len(self._ids)
        if n == 0:
            return f"VersionHistory(model_name={self._model_name!r}, 0 versions)"
        span = (
            f"newest={self._row(0)[2]!r}"
            if n == 1
            else f"newest={self._row(0)[2]!r}, oldest={self._row(n - 1)[2]!r}"
        )
        return (
            f"VersionHistory(model_name={self._model_name!r}, {n} version"
            f"{'s' if n != 1 else ''}, {span}, active={self._active!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # A pickle carries the rows themselves (no engine): load them all first.
        self._load_all()
        rows = tuple(tuple(row) for row in self._rows)
        return (VersionHistory, (self._model_name, rows, self._active, self._root))
