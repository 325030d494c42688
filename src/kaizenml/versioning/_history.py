"""The version history returned by :meth:`ModelVersionManager.get_version_history`.

A model can hold tens of thousands of versions, and a caller often looks at a few of them (the
newest, a page, the count). :class:`VersionHistory` therefore keeps the stored rows as read from
the database and builds each :class:`ModelVersion` (datetime, JSON of metrics and tags, artifact
path) the first time that item is used. It is immutable: the rows and the active version are
those of one database snapshot, so later writes never change a history already returned.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from typing import Any, overload

from ._records import ModelVersion

__all__ = ["HistoryRow", "VersionHistory"]

# (kind, id, version, change_type, parent_version, description, created_by, created_at,
#  metrics, tags, artifact_path, checksum, serializer): one row of kz_model_versions as the
# manager's history query returns it (kind is that query's row tag), metrics and tags still
# as their JSON text, artifact_path relative to the artifact root.
HistoryRow = tuple[
    int, int, str, str, "str | None", str, str, float, str, str, str, str, "str | None"
]

# raw_decode skips json.loads' wrapper layers (3-4x faster on the small documents of a row);
# the texts were written by json.dumps, so they start with the document and hold nothing else.
_decode = json.JSONDecoder().raw_decode
_UTC = timezone.utc


class VersionHistory(Sequence[ModelVersion]):
    """The versions of one model, newest (most recently created) first.

    A read-only sequence of :class:`ModelVersion`: ``len``, indexing (negative indexes too),
    slicing (which gives a ``VersionHistory``), iteration, ``reversed``, ``in``, ``index`` and
    ``count`` behave as on a list, and a history equals a list (or tuple) of the same
    ``ModelVersion`` records in the same order. Items are built on first access and kept, so
    reading the newest versions of a long history costs only those versions. Use
    ``list(history)`` for a mutable copy.

    ``is_active`` of each item reflects the model's active version at the time the history was
    read.

    Examples
    --------
    >>> history = mgr.get_version_history("momentum")  # doctest: +SKIP
    >>> history[0].version, len(history)  # doctest: +SKIP
    ('1.1.0', 2)
    >>> [v.version for v in history[:1]]  # doctest: +SKIP
    ['1.1.0']
    """

    __slots__ = ("_active", "_items", "_model_name", "_root", "_rows")

    def __init__(
        self,
        model_name: str,
        rows: Sequence[HistoryRow],
        active_version: str | None,
        artifact_root: str,
    ) -> None:
        self._model_name = model_name
        self._rows = tuple(rows)
        self._active = active_version
        self._root = artifact_root
        self._items: list[ModelVersion | None] = [None] * len(rows)

    def _with_newer(self, newer: Sequence[HistoryRow]) -> VersionHistory:
        """This history with ``newer`` rows (newest first) in front, keeping the records
        already built (same rows, same active version: the records are equal)."""
        history = VersionHistory(self._model_name, (), self._active, self._root)
        history._rows = tuple(newer) + self._rows
        unbuilt: list[ModelVersion | None] = [None] * len(newer)
        history._items = unbuilt + self._items
        return history

    @property
    def model_name(self) -> str:
        """The model these versions belong to."""
        return self._model_name

    @property
    def active_version(self) -> str | None:
        """The model's active version when the history was read (``None`` if none was set)."""
        return self._active

    def _build(self, index: int) -> ModelVersion:
        (_, _, version, change_type, parent_version, description, created_by, created_at,
         metrics, tags, artifact_path, checksum, serializer) = self._rows[index]
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
        return len(self._rows)

    @overload
    def __getitem__(self, index: int) -> ModelVersion: ...

    @overload
    def __getitem__(self, index: slice) -> VersionHistory: ...

    def __getitem__(self, index: int | slice) -> ModelVersion | VersionHistory:
        if isinstance(index, slice):
            return VersionHistory(self._model_name, self._rows[index], self._active, self._root)
        # Any int-like index (numpy integers included), range-checked as a list would.
        item = self._items[index]
        if item is None:
            position = index.__index__()
            return self._build(position + len(self._rows) if position < 0 else position)
        return item

    def __iter__(self) -> Iterator[ModelVersion]:
        items = self._items
        for i in range(len(items)):
            item = items[i]
            yield self._build(i) if item is None else item

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, ModelVersion) or value.model_name != self._model_name:
            return False
        # A version number names one row, so only that row is built and compared.
        for i, row in enumerate(self._rows):
            if row[2] == value.version:
                return self[i] == value
        return False

    def __eq__(self, other: object) -> bool:
        if isinstance(other, VersionHistory):
            if (self._model_name, self._active, self._root) == (
                other._model_name, other._active, other._root
            ) and self._rows == other._rows:
                return True
        elif not isinstance(other, (list, tuple)):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    def __ne__(self, other: object) -> bool:
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    __hash__ = None  # type: ignore[assignment]  # compares by content like a list

    def __repr__(self) -> str:
        n = len(self._rows)
        if n == 0:
            return f"VersionHistory(model_name={self._model_name!r}, 0 versions)"
        span = (
            f"newest={self._rows[0][2]!r}"
            if n == 1
            else f"newest={self._rows[0][2]!r}, oldest={self._rows[-1][2]!r}"
        )
        return (
            f"VersionHistory(model_name={self._model_name!r}, {n} version"
            f"{'s' if n != 1 else ''}, {span}, active={self._active!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (VersionHistory, (self._model_name, self._rows, self._active, self._root))
