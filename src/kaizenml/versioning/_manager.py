"""The model version manager: versions, artifacts, active version, comparison, rollback.

Write protocol of a version (the crash-safety argument):

1. one transaction chooses the number under the model's lock (the unique key
   ``(model_name, version)`` is taken when its row is inserted);
2. the data files are written into ``<root>/<model>/.tmp-<uuid>/`` (an artifact over 8 MiB
   before the transaction, so the lock is not held while it is written) and their fsyncs start;
3. the folder is renamed to ``<root>/<model>/<version>/``, the manifest (the data files'
   sha256) is written into it, and the fsyncs of the manifest, the folder and the model folder
   start;
4. the row is inserted, the transaction waits for every fsync, and commits.

A crash before the commit leaves no row (at most an orphan folder, which
:meth:`ModelVersionManager.clean_orphans` removes and which the next writer of that number
replaces); the commit comes after every fsync, so a row never points at a missing or
half-written folder. If the transaction fails before its commit, the rename is undone while it
still holds the lock; if the commit itself fails, the folder is left in place (the store is
asked whether the row was stored) and a retry writes the artifact anew.
Deleting a version commits the row deletion first and removes the folder after.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import operator
import os
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.compiler import compiles

from .._exceptions import (
    KaizenTypeError,
    NotFoundError,
    StateError,
    StorageError,
    ValidationError,
)
from .._validation import check_choice, check_float, check_int, check_tags, validate_name
from ..storage import (
    default_artifact_dir,
    default_storage_url,
    ensure_schema,
    read_connection,
    resolve_engine,
    retry_on_conflict,
    transaction_lock,
)
from ._artifacts import (
    TEMP_PREFIX,
    TRASH_PREFIX,
    FolderWrite,
    PreparedArtifact,
    check_serializer,
    load_folder,
    move_folder,
    prepare_artifact,
    remove_folder,
    start_temp_folder,
    unpublish_folder,
    verify_folder,
)
from ._compare import (
    SIGNIFICANT_CHANGE,
    MetricDiff,
    VersionComparison,
    check_directions,
    diff_metrics,
    metric_direction,
    recommend,
)
from ._history import (
    RECORD_COLUMNS,
    RECORD_KEYS,
    HistorySource,
    VersionHistory,
    deleted_record,
)
from ._records import (
    DeploymentRecord,
    ModelVersion,
    RollbackCheck,
    RollbackImpact,
    RollbackPlan,
    RollbackResult,
    to_datetime,
)
from ._schema import (
    active_versions,
    deleted_versions,
    deployments,
    history_revisions,
    model_versions,
    rollback_plans,
    version_metrics,
    version_tags,
)
from ._semver import Version

if TYPE_CHECKING:
    from ._checkpoint import Checkpointer

__all__ = ["CHANGE_TYPES", "ModelVersionManager", "get_model_version_manager"]

logger = logging.getLogger(__name__)

#: Which part of the version each change type bumps.
CHANGE_TYPES: dict[str, str] = {
    "architecture": "major",
    "hyperparameter": "minor",
    "retrain": "minor",
    "bugfix": "patch",
    "data": "patch",
}
FIRST_VERSION = Version(1, 0, 0)
DEFAULT_MAX_DEGRADATION = 0.2

_mv = model_versions
_av = active_versions
_hr = history_revisions
_dv = deleted_versions
# raw_decode skips json.loads' wrapper layers (3-4x faster on the small documents of a row);
# the texts were written by json.dumps, so they start with the document and hold nothing else.
_decode = json.JSONDecoder().raw_decode
# The version columns in the order _to_version unpacks them (before the active flag).
_ROW_COLUMNS = ("model_name", *RECORD_KEYS)
_VERSION_COLUMNS = (_mv.c.model_name, *RECORD_COLUMNS)

#: How many models' histories a manager keeps in memory (least recently read dropped first).
HISTORY_CACHE_MODELS = 32


_row_id = operator.itemgetter(1)  # the id of a history row: creation order


class _id_list(sa.sql.functions.FunctionElement[str]):
    """The ids of a group as one comma-separated text (an aggregate).

    The first read of a model fetches its ids this way: one value instead of one result row
    per version is 2-3x cheaper through the drivers, which matters at 10,000 versions.
    """

    type = sa.Text()
    name = "kz_id_list"
    inherit_cache = True


@compiles(_id_list)
def _id_list_default(element: _id_list, compiler: Any, **kw: Any) -> str:
    return f"group_concat({compiler.process(element.clauses, **kw)})"


@compiles(_id_list, "postgresql")
def _id_list_postgresql(element: _id_list, compiler: Any, **kw: Any) -> str:
    # No ORDER BY inside the aggregate: PostgreSQL then sorts even input read in index order
    # (3-4 ms for 10,000 ids), while the caller's sort of nearly sorted ids is a linear pass.
    column = compiler.process(element.clauses, **kw)
    return f"string_agg(CAST({column} AS TEXT), ',')"


def _first_read_statement() -> sa.Select[Any]:
    """One statement (so one snapshot) reading a model's history revision, its active version
    and the ids of its versions (the covering ``(model_name, id)`` index); the rows are loaded
    by the returned :class:`VersionHistory` on access."""
    name = sa.bindparam("name", type_=sa.String)
    return sa.select(
        sa.select(_hr.c.revision).where(_hr.c.model_name == name).scalar_subquery(),
        sa.select(_av.c.version).where(_av.c.model_name == name).scalar_subquery(),
        sa.select(_id_list(_mv.c.id)).where(_mv.c.model_name == name).scalar_subquery(),
    )


def _refresh_statement() -> sa.CompoundSelect:
    """One statement (so one snapshot) reading a model's history revision, its active version,
    the version rows created after revision ``:since`` and the row ids deleted after it.

    Rows: ``(kind, id, version, change_type, parent_version, description, created_by,
    created_at, metrics, tags, artifact_path, checksum, serializer)`` where ``kind`` is 0 for
    the revision (in ``id``), 1 for the active version (in ``version``), 2 for a version row
    and 3 for a deleted version (its row id in ``id``, NULL if the deletion predates the
    column, and its number in ``version``).
    """
    name = sa.bindparam("name", type_=sa.String)
    since = sa.bindparam("since", type_=sa.Integer)
    row_columns = (_mv.c.id, *RECORD_COLUMNS)

    def kind(k: int) -> Any:
        return sa.literal_column(str(k), sa.Integer).label("kind")

    def nulls(start: int) -> list[Any]:
        # Typed NULLs keep the UNION's column types unambiguous on PostgreSQL.
        return [sa.cast(sa.null(), c.type) for c in row_columns[start:]]

    return sa.union_all(
        sa.select(kind(0), _hr.c.revision, *nulls(1)).where(_hr.c.model_name == name),
        sa.select(kind(1), sa.cast(sa.null(), sa.Integer), _av.c.version, *nulls(2))
        .where(_av.c.model_name == name),
        sa.select(kind(2), *row_columns).where(_mv.c.model_name == name, _mv.c.revision > since),
        sa.select(kind(3), _dv.c.row_id, _dv.c.version, *nulls(2))
        .where(_dv.c.model_name == name, _dv.c.revision > since),
    )


_HISTORY_FIRST = _first_read_statement()
_HISTORY_SINCE = _refresh_statement()


# The statements of create_version, built once: constructing SQLAlchemy expressions anew on
# every call cost more than executing them.
_NAME = sa.bindparam("name", type_=sa.String)
_BUMP_REVISION = (
    sa.update(_hr)
    .where(_hr.c.model_name == _NAME)
    .values(revision=_hr.c.revision + 1)
    .returning(_hr.c.revision)
)
_FIRST_REVISION = sa.insert(_hr)
_INSERT_VERSION = sa.insert(_mv)


def _latest_statement(table: sa.Table) -> sa.Select[Any]:
    return (
        sa.select(table.c.version)
        .where(table.c.model_name == _NAME)
        .order_by(table.c.major.desc(), table.c.minor.desc(), table.c.patch.desc())
        .limit(1)
    )


# The highest live version, then the highest retired one.
_LATEST = (_latest_statement(_mv), _latest_statement(deleted_versions))


def _used_statement(part: str) -> sa.CompoundSelect:
    """Numbers of ``part`` already used above the base (live and retired, one round trip)."""
    major, minor, patch = (sa.bindparam(k, type_=sa.Integer) for k in ("major", "minor", "patch"))
    queries = []
    for table in (_mv, deleted_versions):
        if part == "major":
            where = [table.c.major > major]
        elif part == "minor":
            where = [table.c.major == major, table.c.minor > minor]
        else:
            where = [table.c.major == major, table.c.minor == minor, table.c.patch > patch]
        queries.append(sa.select(table.c[part]).where(table.c.model_name == _NAME, *where))
    return sa.union_all(*queries)


_USED = {part: _used_statement(part) for part in ("major", "minor", "patch")}


# How long create_version's transaction waits for its artifact files to reach the disk before
# it rolls back, waits without holding the write lock, and runs again (seconds).
_SYNC_WAIT_IN_TRANSACTION = 0.002


# Artifacts up to this many bytes of data are written inside create_version's transaction,
# once the number is known: the files, their folder and its rename then reach the disk in one
# journal commit. Larger ones are written before it, so the lock is not held meanwhile.
_WRITE_IN_TRANSACTION_BYTES = 8 << 20
# How long the transaction waits for the fsyncs of files it wrote itself (seconds).
_SYNC_WAIT_AFTER_WRITE = 0.05
# Windows refuses to rename a folder while a file in it is open.
_RENAME_NEEDS_CLOSED_FILES = os.name == "nt"


class _ArtifactJob:
    """The folder of one create_version call: written before or inside its transaction."""

    __slots__ = ("abandoned", "parent", "prepared", "write")

    def __init__(self, parent: Path, prepared: PreparedArtifact) -> None:
        self.parent = parent
        self.prepared = prepared
        self.write: FolderWrite | None = None
        self.abandoned: list[FolderWrite] = []

    def start(self) -> FolderWrite:
        self.write = start_temp_folder(self.parent, self.prepared)
        return self.write

    def abandon(self) -> None:
        """Give up this write, left wherever it is: a retry writes the artifact anew."""
        if self.write is not None:
            self.abandoned.append(self.write)
            self.write = None

    def discard(self) -> None:
        """After the call: wait for the fsyncs, and remove each folder still under its
        temporary name (one renamed into place is left: a row may point at it)."""
        for write in [*self.abandoned, *([self.write] if self.write else [])]:
            write.sync.join()
            if write.temp.exists():
                remove_folder(write.temp)


class _FolderNotSynced(Exception):
    """The artifact's fsync outlasted the in-transaction wait (rolls the transaction back)."""


def _refuse_case_twin(conn: Connection, name: str) -> None:
    """Refuse a new model whose name differs from an existing one only in letter case: on
    macOS and Windows both would live in the same artifact folder."""
    twin = conn.execute(
        sa.select(_mv.c.model_name)
        .where(sa.func.lower(_mv.c.model_name) == name.lower(), _mv.c.model_name != name)
        .limit(1)
    ).scalar()
    if twin is not None:
        raise ValidationError(
            f"model_name={name!r} differs from the existing model {twin!r} only in letter case; "
            "their artifact folders would be the same on macOS and Windows: use that name or "
            "another one"
        )


def _bump_revision(conn: Connection, name: str) -> int:
    """Increment the model's history revision inside the caller's write transaction.

    The UPDATE locks the counter row until commit, so the revisions of a model are handed out
    in commit order (SQLite's single writer gives the same order). The first write of a model
    inserts the row; two such inserts at once collide on the primary key and the loser's
    transaction is retried by :func:`retry_on_conflict`.
    """
    revision = conn.execute(_BUMP_REVISION, {"name": name}).scalar_one_or_none()
    if revision is None:
        conn.execute(_FIRST_REVISION, {"model_name": name, "revision": 1})
        return 1
    return int(revision)


# --- argument checks ---------------------------------------------------------------------------
def _check_text(value: Any, param: str, max_length: int | None = None) -> str:
    if not isinstance(value, str):
        raise KaizenTypeError(f"{param} must be a str, got {type(value).__name__}")
    if max_length is not None and len(value) > max_length:
        raise ValidationError(
            f"{param} is {len(value)} characters long; use at most {max_length}"
        )
    return value


def _check_metrics(metrics: Any, param: str = "metrics") -> dict[str, float]:
    if metrics is None:
        return {}
    if not isinstance(metrics, Mapping):
        raise KaizenTypeError(
            f"{param} must be a mapping of metric name to number, got {type(metrics).__name__}"
        )
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if not isinstance(key, str) or not key or len(key) > 256:
            raise KaizenTypeError(f"{param} keys must be non-empty str (<=256 chars), got {key!r}")
        out[key] = check_float(value, f"{param}[{key!r}]")
    return out


def _check_version_text(version: Any, param: str = "version") -> str:
    if isinstance(version, Version):
        return str(version)
    if not isinstance(version, str):
        raise KaizenTypeError(f"{param} must be a version string such as '1.2.0', got {version!r}")
    if not Version.is_valid(version):
        raise ValidationError(
            f"{param}={version!r} is not a Semantic Versioning 2.0.0 number; expected "
            "MAJOR.MINOR.PATCH such as '1.2.0'"
        )
    return version


def _change_part(change_type: Any) -> str:
    if change_type not in CHANGE_TYPES:
        raise ValidationError(
            f"change_type={change_type!r} is not supported; use one of {list(CHANGE_TYPES)} "
            "(architecture -> major, hyperparameter/retrain -> minor, bugfix/data -> patch)"
        )
    return CHANGE_TYPES[change_type]


def _check_thresholds(value: Any, param: str) -> dict[str, float]:
    if value is None:
        return {"*": DEFAULT_MAX_DEGRADATION}
    def limit(v: Any, name: str) -> float:
        # inf is allowed (no limit); NaN is not a limit
        out = check_float(v, name, minimum=0.0, finite=False)
        if math.isnan(out):
            raise ValidationError(f"{name} must be a number >= 0 (or inf), got nan")
        return out

    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return {"*": limit(value, param)}
    if isinstance(value, Mapping):
        out = {str(k): limit(v, f"{param}[{k!r}]") for k, v in value.items()}
        out.setdefault("*", DEFAULT_MAX_DEGRADATION)
        return out
    raise KaizenTypeError(
        f"{param} must be a number (max relative degradation for every metric, e.g. 0.2) or a "
        f"mapping metric -> number with an optional '*' default, got {type(value).__name__}"
    )


def next_version_number(
    existing: Callable[[str, Version], set[int]], base: Version | None, part: str
) -> Version:
    """The version number of a new version (the documented bump rule).

    ``existing(part, base)`` returns the numbers of that part already used above the base in
    the base's line: majors above ``base.major``; minors above ``base.minor`` within
    ``base.major``; patches above ``base.patch`` within ``base.major.base.minor``.

    * no base (first version): ``1.0.0``;
    * otherwise the base bumped by ``part``; when that line is taken (a version with that
      major, that major.minor, or that exact number exists), the next higher free number of
      the same part is used. Example: with 1.0.0, 1.1.0, 1.2.0 and 2.0.0 stored, a minor bump
      from parent 1.0.0 gives 1.3.0, a major bump from 1.0.0 gives 3.0.0, a patch bump from
      1.0.0 gives 1.0.1.
    """
    if base is None:
        return FIRST_VERSION
    used = existing(part, base)
    if part == "major":
        n = base.major + 1
        while n in used:
            n += 1
        return Version(n, 0, 0)
    if part == "minor":
        n = base.minor + 1
        while n in used:
            n += 1
        return Version(base.major, n, 0)
    n = base.patch + 1
    while n in used:
        n += 1
    return Version(base.major, base.minor, n)


class ModelVersionManager:
    """Versions of models: artifacts, metadata, active version, comparison and rollback.

    Parameters
    ----------
    storage:
        Database URL (``"sqlite:///path.db"``, ``"postgresql+psycopg://..."``), an SQLAlchemy
        Engine, or None for the embedded database in ``KAIZENML_HOME``.
    artifacts:
        Root folder of the artifacts (``<root>/<model>/<version>/``); None for
        ``KAIZENML_HOME/artifacts``.
    metric_directions:
        ``metric name -> "higher" | "lower"``, overriding the built-in directions used by
        comparisons, rollback checks and checkpoints.
    rollback_thresholds:
        Largest relative degradation of a metric allowed by a rollback check: a number for
        every metric, or a mapping ``metric -> number`` with an optional ``"*"`` default.
        Default 0.2 (a metric may get at most 20 % worse).
    significant_change:
        Relative change at which a metric counts as full evidence in recommendations (0.05).

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> tmp = tempfile.mkdtemp()
    >>> mgr = ModelVersionManager(f"sqlite:///{tmp}/k.db", f"{tmp}/artifacts")
    >>> v1 = mgr.create_version("momentum", {"w": np.ones(3), "lags": [1, 5]},
    ...                         change_type="architecture", metrics={"sharpe": 1.1})
    >>> v2 = mgr.create_version("momentum", {"w": np.zeros(3), "lags": [1, 5]},
    ...                         change_type="retrain", metrics={"sharpe": 1.3})
    >>> v1.version, v2.version
    ('1.0.0', '1.1.0')
    >>> mgr.load_artifact("momentum", "1.1.0")["lags"]
    [1, 5]
    """

    def __init__(
        self,
        storage: str | Engine | None = None,
        artifacts: str | os.PathLike[str] | None = None,
        *,
        metric_directions: Mapping[str, str] | None = None,
        rollback_thresholds: float | Mapping[str, float] | None = None,
        significant_change: float = SIGNIFICANT_CHANGE,
    ) -> None:
        self._engine = resolve_engine(storage)
        ensure_schema(self._engine)
        if artifacts is None:
            self._root = default_artifact_dir()
        else:
            if not isinstance(artifacts, (str, os.PathLike)):
                raise KaizenTypeError(
                    f"artifacts must be a folder path, got {type(artifacts).__name__}"
                )
            self._root = Path(artifacts).expanduser()
        try:
            self._root.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as exc:
            raise ValidationError(
                f"artifacts={str(self._root)!r} must be a folder (it, or a folder above it, is "
                "a file)"
            ) from exc
        self._root_text = str(self._root)
        self._directions = check_directions(metric_directions)
        self._thresholds = _check_thresholds(rollback_thresholds, "rollback_thresholds")
        self._significant = check_float(significant_change, "significant_change", minimum=1e-12)
        # model -> (history revision, history): the last full history read, brought up to date
        # incrementally (see get_version_history).
        self._history_cache: OrderedDict[str, tuple[int, VersionHistory]] = OrderedDict()
        self._history_lock = threading.Lock()

    # --- properties -----------------------------------------------------------------------
    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine holding the metadata."""
        return self._engine

    @property
    def artifact_root(self) -> Path:
        """The root folder of the artifacts."""
        return self._root

    @property
    def metric_directions(self) -> dict[str, str]:
        """The configured metric direction overrides."""
        return dict(self._directions)

    def metric_direction(self, metric: str) -> str | None:
        """The direction (``"higher"``/``"lower"``/None) this manager uses for ``metric``."""
        return metric_direction(metric, self._directions)

    # --- internal helpers ---------------------------------------------------------------------
    def _select_versions(self) -> sa.Select[Any]:
        return sa.select(
            *_VERSION_COLUMNS, _av.c.version.label("active_version"),
        ).select_from(
            _mv.outerjoin(
                _av, sa.and_(_av.c.model_name == _mv.c.model_name, _av.c.version == _mv.c.version)
            )
        )

    def _to_version(self, row: Any) -> ModelVersion:
        # Positional unpacking and a plain string join: history queries build thousands of
        # these, and Row attribute access and pathlib dominate otherwise.
        (model_name, version, change_type, parent_version, description, created_by,
         created_at, metrics, tags, artifact_path, checksum, serializer, active) = row
        return ModelVersion(
            model_name=model_name,
            version=version,
            change_type=change_type,
            parent_version=parent_version,
            description=description,
            created_by=created_by,
            created_at=datetime.fromtimestamp(created_at, tz=timezone.utc),
            metrics={} if metrics == "{}" else _decode(metrics)[0],
            tags={} if tags == "{}" else _decode(tags)[0],
            artifact_path=os.path.join(self._root_text, artifact_path),
            checksum=checksum,
            is_active=active is not None,
            serializer=serializer,
        )

    def _fetch_version(self, conn: Connection, name: str, version: str) -> ModelVersion | None:
        row = conn.execute(
            self._select_versions().where(_mv.c.model_name == name, _mv.c.version == version)
        ).first()
        return None if row is None else self._to_version(row)

    def _require_version(self, conn: Connection, name: str, version: str) -> ModelVersion:
        found = self._fetch_version(conn, name, version)
        if found is None:
            raise NotFoundError(f"model {name!r} has no version {version!r}")
        return found

    def _latest_number(self, conn: Connection, name: str) -> Version | None:
        # The highest live version; when every version was deleted, the highest deleted one,
        # so that numbering continues instead of restarting at 1.0.0.
        for statement in _LATEST:
            found = conn.execute(statement, {"name": name}).scalar()
            if found is not None:
                return Version.parse(found)
        return None

    def _used_numbers(self, conn: Connection, name: str) -> Callable[[str, Version], set[int]]:
        def existing(part: str, base: Version) -> set[int]:
            params = {"name": name, "major": base.major, "minor": base.minor, "patch": base.patch}
            return set(conn.execute(_USED[part], params).scalars())

        return existing

    def _active_number(self, conn: Connection, name: str) -> str | None:
        return conn.execute(
            sa.select(_av.c.version).where(_av.c.model_name == name)
        ).scalar_one_or_none()

    def _model_exists(self, conn: Connection, name: str) -> bool:
        return conn.execute(
            sa.select(_mv.c.id).where(_mv.c.model_name == name).limit(1)
        ).first() is not None

    # --- versions -------------------------------------------------------------------------
    def create_version(
        self,
        model_name: str,
        artifact: Any,
        *,
        change_type: str,
        description: str = "",
        created_by: str = "",
        metrics: Mapping[str, float] | None = None,
        parent_version: str | None = None,
        tags: Mapping[str, str] | None = None,
        serializer: str | None = None,
    ) -> ModelVersion:
        """Store a new version of ``model_name`` and return its record.

        The number follows ``change_type``: ``"architecture"`` bumps the major,
        ``"hyperparameter"`` and ``"retrain"`` the minor, ``"bugfix"`` and ``"data"`` the
        patch. The first version of a model is ``1.0.0`` whatever the change type. The base is
        ``parent_version`` if given, else the latest (highest) version. If the bumped number's
        line is already taken (branching from an older parent), the next free number of the
        same part is used: see :func:`next_version_number`. The number is chosen and inserted
        in one transaction under the unique key ``(model_name, version)``, retried on
        conflict, so concurrent writers get distinct numbers. The number of a deleted version
        is never given again (it counts as taken).

        Parameters
        ----------
        model_name:
            1-128 letters, digits, ``_``, ``-``, ``.``; no path separators or ``..``.
        artifact:
            A mapping of names to numpy arrays and JSON-able values; any object when
            ``serializer`` is given.
        change_type:
            One of ``architecture``, ``hyperparameter``, ``retrain``, ``bugfix``, ``data``.
        description, created_by:
            Free text.
        metrics:
            ``name -> finite number``.
        parent_version:
            An existing version to bump from.
        tags:
            ``key -> str`` (numbers and bools are stored as text).
        serializer:
            ``"pickle"`` or ``"joblib"`` to store arbitrary objects; loading then needs the
            same explicit opt-in.

        Returns
        -------
        ModelVersion

        Examples
        --------
        >>> mgr.create_version("momentum", {"w": np.ones(3)}, change_type="bugfix",
        ...                    parent_version="1.0.0").version  # doctest: +SKIP
        '1.0.1'
        """
        name = validate_name(model_name, "model_name")
        part = _change_part(change_type)
        description = _check_text(description, "description")
        created_by = _check_text(created_by, "created_by", 256)
        metric_values = _check_metrics(metrics)
        tag_values = check_tags(tags)
        parent = None if parent_version is None else _check_version_text(
            parent_version, "parent_version"
        )
        serializer = check_serializer(serializer)
        job = _ArtifactJob(self._root / name, prepare_artifact(artifact, serializer))
        if job.prepared.nbytes > _WRITE_IN_TRANSACTION_BYTES:
            # Written before the transaction, so the lock is not held meanwhile; the fsyncs
            # run while the transaction picks the number.
            job.start()

        def attempt() -> ModelVersion:
            args = (
                name, part, change_type, parent, description, created_by, metric_values,
                tag_values, serializer, job,
            )
            try:
                return self._insert_version(*args, wait_briefly=True)
            except _FolderNotSynced:
                # Outside the transaction: no lock held while the disk catches up. What is
                # left then is the fsync of one rename, waited for in the transaction.
                assert job.write is not None
                job.write.sync.wait()
                return self._insert_version(*args, wait_briefly=False)

        try:
            return retry_on_conflict(attempt)
        finally:
            job.discard()

    def _insert_version(
        self,
        name: str,
        part: str,
        change_type: str,
        parent: str | None,
        description: str,
        created_by: str,
        metric_values: dict[str, float],
        tag_values: dict[str, str],
        serializer: str | None,
        job: _ArtifactJob,
        wait_briefly: bool,
    ) -> ModelVersion:
        published: Path | None = None
        checksum: str | None = None
        try:
            with self._engine.connect() as conn, conn.begin():
                # Writers of one model take turns (PostgreSQL; SQLite's write lock already
                # does this): the unique key alone lets two writers bump the same latest
                # version to different numbers, breaking creation order.
                transaction_lock(conn, f"kaizenml.versioning.model:{name}")
                revision = _bump_revision(conn, name)
                if parent is not None:
                    if self._fetch_version(conn, name, parent) is None:
                        raise NotFoundError(
                            f"parent_version={parent!r} does not exist for model {name!r}; "
                            "pass an existing version or None to bump the latest"
                        )
                    base: Version | None = Version.parse(parent)
                else:
                    base = self._latest_number(conn, name)
                    if base is None:
                        _refuse_case_twin(conn, name)
                number = next_version_number(self._used_numbers(conn, name), base, part)
                version = str(number)
                # The row (and its unique key) is ours inside this transaction, so a folder
                # already at `final` is an orphan of a crashed writer and may be replaced.
                # Renamed before the manifest is written, so one journal commit can carry the
                # manifest, the folder's entries and the rename: nothing reaches the folder
                # before the commit, and the commit waits for every fsync.
                final = self._root / name / version
                if job.write is None:  # a small artifact: written now, holding the lock
                    write = job.start()
                    timeout = _SYNC_WAIT_AFTER_WRITE
                else:
                    write = job.write
                    timeout = _SYNC_WAIT_IN_TRANSACTION
                if _RENAME_NEEDS_CLOSED_FILES:
                    # Windows cannot rename a folder holding open files: the fsync tasks close
                    # them, so wait for those (and never undo a rename while one is open).
                    write.sync.wait()
                    wait_briefly = False
                move_folder(write.temp, final)
                published = final
                try:
                    checksum = write.finish(final)
                    write.sync.add_folder(final.parent)
                    now = time.time()
                    row = (
                        name, version, change_type if base is not None else "initial",
                        None if base is None else str(base), description, created_by, now,
                        json.dumps(metric_values), json.dumps(tag_values), f"{name}/{version}",
                        checksum, serializer,
                    )
                    conn.execute(
                        _INSERT_VERSION,
                        {
                            **dict(zip(_ROW_COLUMNS, row, strict=True)), "major": number.major,
                            "minor": number.minor, "patch": number.patch, "revision": revision,
                        },
                    )
                    if tag_values:
                        conn.execute(sa.insert(version_tags), [
                            {"model_name": name, "version": version, "key": k, "value": v}
                            for k, v in tag_values.items()
                        ])
                    if metric_values:
                        conn.execute(sa.insert(version_metrics), [
                            {"model_name": name, "version": version, "name": k, "value": v}
                            for k, v in metric_values.items()
                        ])
                    # Everything must be on disk before the row that points at it is committed.
                    # Usually the data files' fsyncs finished while the statements above ran; a
                    # slow disk is not waited for here, holding the write lock, but after a
                    # rollback.
                    if not write.sync.wait(timeout=timeout if wait_briefly else None):
                        raise _FolderNotSynced
                    # the row as inserted (a new number is never the active one)
                    record = self._to_version((*row, None))
                except BaseException:
                    # Undone while this transaction still holds the model's lock: after the
                    # rollback another writer may be given this number, and this folder name.
                    if _RENAME_NEEDS_CLOSED_FILES:
                        write.sync.join()
                    unpublish_folder(final, write.temp)
                    published = None
                    raise
        except BaseException as exc:
            if published is not None:
                # The COMMIT itself failed (a failure before it undid the rename above). A
                # lost connection leaves its outcome unknown: ask the store.
                committed = checksum is not None and self._row_committed(name, version, checksum)
                if committed and isinstance(exc, Exception):
                    logger.warning(
                        "the commit of %s %s reported %r but the version was stored; keeping it",
                        name, version, exc,
                    )
                    return record
                # The lock is gone with the transaction, so the folder is not renamed back:
                # another writer may hold this number and name by now. It stays where a
                # committed row would look (else it is an orphan, replaced when the number is
                # given again and removed by clean_orphans); a retry writes the artifact anew.
                job.abandon()
                if committed is None and isinstance(exc, Exception):
                    # not retried: a second version of the same artifact could be created
                    raise StorageError(
                        f"the commit of {name} {version} failed ({exc}) and the store could "
                        "not be asked whether it was stored; check get_version_history before "
                        "creating it again"
                    ) from exc
            raise
        logger.info("created %s %s (%s)", name, version, change_type)
        return record

    def _row_committed(self, name: str, version: str, checksum: str) -> bool | None:
        """Whether the store holds this version with this checksum (None: it cannot say)."""
        try:
            with read_connection(self._engine) as conn:
                found = conn.execute(
                    sa.select(_mv.c.checksum).where(
                        _mv.c.model_name == name, _mv.c.version == version
                    )
                ).scalar()
        except Exception:  # the store is unreachable: the outcome stays unknown
            return None
        return found == checksum

    def get_version(self, model_name: str, version: str) -> ModelVersion:
        """The record of one version.

        Raises
        ------
        NotFoundError
            If the model or the version does not exist.
        """
        name = validate_name(model_name, "model_name")
        version = _check_version_text(version)
        with read_connection(self._engine) as conn:
            return self._require_version(conn, name, version)

    def get_latest_version(self, model_name: str) -> ModelVersion:
        """The version with the highest SemVer precedence."""
        name = validate_name(model_name, "model_name")
        with read_connection(self._engine) as conn:
            row = conn.execute(
                self._select_versions()
                .where(_mv.c.model_name == name)
                .order_by(_mv.c.major.desc(), _mv.c.minor.desc(), _mv.c.patch.desc())
                .limit(1)
            ).first()
        if row is None:
            raise NotFoundError(f"model {name!r} has no versions")
        return self._to_version(row)

    def get_version_history(
        self, model_name: str, *, limit: int | None = None
    ) -> VersionHistory:
        """Every version of a model, newest (most recently created) first.

        Returns a :class:`~kaizenml.versioning.VersionHistory`: a read-only sequence of
        :class:`ModelVersion`. The first read of a model fetches only the ids of its versions;
        the rows are loaded a few hundred at a time when items are first used, and each record
        is built once. ``list(history)`` gives a mutable list.

        The manager keeps the last full history it read of each model (up to 32 models) and,
        on the next call, reads only what changed since (versions created or deleted by any
        process, and the active version), in one statement. The result reflects the database
        at the time of the call, and stays that snapshot: versions deleted later are still
        shown by it (their rows are kept with the deleted numbers).

        Parameters
        ----------
        limit:
            Return at most this many versions (the newest).

        Raises
        ------
        NotFoundError
            If the model has no versions.

        Examples
        --------
        >>> history = mgr.get_version_history("momentum")  # doctest: +SKIP
        >>> [v.version for v in history]  # doctest: +SKIP
        ['1.1.0', '1.0.0']
        """
        name = validate_name(model_name, "model_name")
        if limit is not None:
            count = check_int(limit, "limit", minimum=1)
            query = (
                sa.select(
                    sa.literal_column("2", sa.Integer), _mv.c.id, *RECORD_COLUMNS,
                    sa.select(_av.c.version).where(_av.c.model_name == name).scalar_subquery(),
                )
                .where(_mv.c.model_name == name)
                .order_by(_mv.c.id.desc())
                .limit(count)
            )
            with read_connection(self._engine) as conn:
                page = conn.execute(query).all()
            if not page:
                raise NotFoundError(f"model {name!r} has no versions")
            return VersionHistory(
                name, tuple(r[:13] for r in page), page[0][13], self._root_text
            )
        history = self._read_history(name)
        if not history:
            raise NotFoundError(f"model {name!r} has no versions")
        return history

    def _read_history(self, name: str) -> VersionHistory:
        with self._history_lock:
            cached = self._history_cache.get(name)
        with read_connection(self._engine) as conn:
            if cached is not None:
                fetched = conn.execute(_HISTORY_SINCE, {"name": name, "since": cached[0]}).all()
                if cached[0] and not any(r[0] == 0 and r[1] >= cached[0] for r in fetched):
                    # The counter went back (the store was replaced): read everything again.
                    cached = None
                elif any(r[0] == 3 and r[1] is None for r in fetched):
                    # A deletion without its row id (written by an older kaizenml): the cached
                    # ids cannot be matched, read them again.
                    cached = None
            if cached is None:
                first = conn.execute(_HISTORY_FIRST, {"name": name}).one()
        if cached is None:
            revision = first[0] or 0
            active = first[1]
            # Parsing the text is the cost of the first read (about 0.1 us per id).
            ids = [] if first[2] is None else list(map(int, first[2].split(",")))
            ids.sort(reverse=True)  # newest first: id is creation order
            history = VersionHistory._lazy(
                name, ids, active, self._root_text, HistorySource(self._engine, name, revision)
            )
        else:
            revision = 0
            active = None
            added = []
            deleted: set[int] = set()
            for row in fetched:
                kind = row[0]
                if kind == 2:
                    added.append(row)
                elif kind == 0:
                    revision = row[1]
                elif kind == 1:
                    active = row[2]
                else:
                    deleted.add(row[1])
            history = cached[1]
            if revision != cached[0] or added or deleted:
                # Rows arrive in index order, so the sort is a near-linear pass.
                added.sort(key=_row_id, reverse=True)
                history = history._refreshed(
                    added, deleted, active, HistorySource(self._engine, name, revision)
                )
            elif active != history.active_version:
                history = history._refreshed((), deleted, active, history._source or
                                             HistorySource(self._engine, name, revision))
        with self._history_lock:
            current = self._history_cache.get(name)
            # Keep the newest state when two threads refresh at once.
            if current is None or current[0] <= revision:
                self._history_cache[name] = (revision, history)
                self._history_cache.move_to_end(name)
                while len(self._history_cache) > HISTORY_CACHE_MODELS:
                    self._history_cache.popitem(last=False)
        return history

    def list_models(self) -> list[str]:
        """The names of every model with at least one version, sorted."""
        with read_connection(self._engine) as conn:
            return sorted(
                conn.execute(sa.select(_mv.c.model_name).distinct()).scalars()
            )

    def load_artifact(
        self, model_name: str, version: str, *, serializer: str | None = None
    ) -> Any:
        """Load a version's artifact after verifying every checksum.

        Parameters
        ----------
        serializer:
            Must be given (``"pickle"``/``"joblib"``) to load an artifact stored with that
            serializer; deserializing such a file can run code, so only opt in for trusted
            artifacts.

        Raises
        ------
        IntegrityError
            If a file is missing or its checksum does not match (the message names it).
        """
        record = self.get_version(model_name, version)
        return load_folder(Path(record.artifact_path), record.checksum, serializer)

    def verify_version(self, model_name: str, version: str) -> None:
        """Check a version's files against its checksums; raises IntegrityError if not."""
        record = self.get_version(model_name, version)
        verify_folder(Path(record.artifact_path), record.checksum)

    def delete_version(self, model_name: str, version: str) -> None:
        """Delete a version and its artifact folder; its number is never reused.

        Raises
        ------
        StateError
            If it is the model's active version (activate another version first).
        NotFoundError
            If it does not exist.
        """
        name = validate_name(model_name, "model_name")
        version = _check_version_text(version)

        def txn() -> str:
            with self._engine.connect() as conn, conn.begin():
                row = conn.execute(
                    sa.select(_mv.c.id, _mv.c.revision, *RECORD_COLUMNS,
                              _av.c.version.label("active_version"))
                    .select_from(_mv.outerjoin(_av, sa.and_(
                        _av.c.model_name == _mv.c.model_name, _av.c.version == _mv.c.version)))
                    .where(_mv.c.model_name == name, _mv.c.version == version)
                ).first()
                if row is None:
                    raise NotFoundError(f"model {name!r} has no version {version!r}")
                if row.active_version is not None:
                    raise StateError(
                        f"version {version!r} is the active version of model {name!r} and "
                        "cannot be deleted; activate or roll back to another version first"
                    )
                for table in (version_tags, version_metrics, _mv):
                    conn.execute(
                        sa.delete(table).where(
                            table.c.model_name == name, table.c.version == version
                        )
                    )
                number = Version.parse(version)
                # The row itself is kept with the retired number, so that histories read
                # before this deletion still show it (see VersionHistory).
                conn.execute(sa.insert(deleted_versions).values(
                    model_name=name, version=version, major=number.major, minor=number.minor,
                    patch=number.patch, deleted_at=time.time(),
                    revision=_bump_revision(conn, name), row_id=row.id,
                    record=deleted_record(row),
                ))
                return name + "/" + version

        relative = retry_on_conflict(txn)
        # The row is gone first, so no reader can reach a half-removed folder.
        remove_folder(self._root / relative)
        logger.info("deleted %s %s", name, version)

    def search(
        self,
        model_name: str | None = None,
        *,
        tags: Mapping[str, str | None] | None = None,
        metric: str | None = None,
        metric_min: float | None = None,
        metric_max: float | None = None,
        change_type: str | None = None,
        limit: int | None = None,
    ) -> list[ModelVersion]:
        """Versions matching every given filter, newest first.

        Parameters
        ----------
        model_name:
            Restrict to one model (None: all models).
        tags:
            ``key -> value`` that must all match; a value of None only requires the key.
        metric, metric_min, metric_max:
            Versions having ``metric``, with ``metric_min <= value <= metric_max`` (either
            bound optional).
        change_type:
            Only versions with this change type (one of :data:`CHANGE_TYPES`, or ``"initial"``
            for first versions).
        limit:
            At most this many results.

        Examples
        --------
        >>> mgr.search("momentum", tags={"universe": "sp500"}, metric="sharpe",
        ...            metric_min=1.0)  # doctest: +SKIP
        """
        query = self._select_versions()
        if model_name is not None:
            query = query.where(_mv.c.model_name == validate_name(model_name, "model_name"))
        if tags is not None:
            if not isinstance(tags, Mapping):
                raise KaizenTypeError(f"tags must be a mapping, got {type(tags).__name__}")
            for key, value in tags.items():
                cond = [
                    version_tags.c.model_name == _mv.c.model_name,
                    version_tags.c.version == _mv.c.version,
                    version_tags.c.key == str(key),
                ]
                if value is not None:
                    cond.append(version_tags.c.value == str(value))
                query = query.where(sa.exists().where(*cond))
        if metric_min is not None or metric_max is not None:
            if metric is None:
                raise ValidationError(
                    "metric_min/metric_max need metric=, the name of the metric to filter on"
                )
        if metric is not None:
            cond = [
                version_metrics.c.model_name == _mv.c.model_name,
                version_metrics.c.version == _mv.c.version,
                version_metrics.c.name == _check_text(metric, "metric"),
            ]
            if metric_min is not None:
                cond.append(version_metrics.c.value >= check_float(metric_min, "metric_min"))
            if metric_max is not None:
                cond.append(version_metrics.c.value <= check_float(metric_max, "metric_max"))
            query = query.where(sa.exists().where(*cond))
        if change_type is not None:
            # a first version is recorded as "initial" whatever change type created it
            check_choice(change_type, "change_type", (*CHANGE_TYPES, "initial"))
            query = query.where(_mv.c.change_type == change_type)
        query = query.order_by(_mv.c.id.desc())
        if limit is not None:
            query = query.limit(check_int(limit, "limit", minimum=1))
        with read_connection(self._engine) as conn:
            return [self._to_version(r) for r in conn.execute(query)]

    # --- active version -------------------------------------------------------------------------
    def _activate(
        self,
        conn: Connection,
        name: str,
        version: str,
        *,
        expected_from: str | None | object,
        changed_by: str,
        reason: str,
        action: str,
        plan_id: int | None = None,
    ) -> tuple[str | None, bool]:
        """Switch the active version inside the caller's transaction; returns (from, changed)."""
        self._require_version(conn, name, version)
        current = self._active_number(conn, name)
        if expected_from is not _ANY and current != expected_from:
            raise StateError(
                f"the active version of {name!r} changed to {current!r} while the operation "
                f"expected {expected_from!r}; re-check and retry"
            )
        if current == version:
            return current, False
        now = time.time()
        if current is None:
            conn.execute(sa.insert(_av).values(
                model_name=name, version=version, changed_at=now, changed_by=changed_by
            ))
        else:
            conn.execute(
                sa.update(_av).where(_av.c.model_name == name)
                .values(version=version, changed_at=now, changed_by=changed_by)
            )
        conn.execute(sa.insert(deployments).values(
            model_name=name, from_version=current, to_version=version, changed_by=changed_by,
            changed_at=now, reason=reason, action=action, rollback_plan_id=plan_id,
        ))
        return current, True

    def set_active_version(
        self,
        model_name: str,
        version: str,
        *,
        changed_by: str = "",
        reason: str = "",
        verify: bool = True,
    ) -> ModelVersion:
        """Make ``version`` the active (deployed) version and log the change.

        Setting the version that is already active changes nothing and logs nothing. With
        ``verify`` (the default) the version's artifact is checked first, every file against
        its checksum, so a missing or corrupted artifact is never made the running one (an
        :class:`~kaizenml.IntegrityError` naming the file; nothing changes).

        Examples
        --------
        >>> mgr.set_active_version("momentum", "1.1.0", changed_by="ana",
        ...                        reason="better sharpe")  # doctest: +SKIP
        """
        name = validate_name(model_name, "model_name")
        version = _check_version_text(version)
        changed_by = _check_text(changed_by, "changed_by", 256)
        reason = _check_text(reason, "reason")
        if not isinstance(verify, bool):
            raise KaizenTypeError(f"verify must be a bool, got {verify!r}")
        if verify:
            target = self.get_version(name, version)
            verify_folder(Path(target.artifact_path), target.checksum)

        def txn() -> ModelVersion:
            with self._engine.connect() as conn, conn.begin():
                previous, changed = self._activate(
                    conn, name, version, expected_from=_ANY, changed_by=changed_by,
                    reason=reason, action="activate",
                )
                if changed:
                    logger.info("active version of %s: %s -> %s", name, previous, version)
                return self._require_version(conn, name, version)

        return retry_on_conflict(txn)

    def get_active_version(self, model_name: str) -> ModelVersion | None:
        """The active version, or None if none was ever set.

        Raises
        ------
        NotFoundError
            If the model has no versions.
        """
        name = validate_name(model_name, "model_name")
        # Driven from the active-version table (one primary-key lookup, then the unique key of
        # the version), so the cost does not grow with the number of versions.
        query = sa.select(
            *_VERSION_COLUMNS, _av.c.version.label("active_version")
        ).select_from(
            _av.join(_mv, sa.and_(_mv.c.model_name == _av.c.model_name,
                                  _mv.c.version == _av.c.version))
        ).where(_av.c.model_name == name)
        with read_connection(self._engine) as conn:
            row = conn.execute(query).first()
            if row is None and not self._model_exists(conn, name):
                raise NotFoundError(f"model {name!r} has no versions")
        return None if row is None else self._to_version(row)

    def get_deployment_history(
        self, model_name: str, *, limit: int | None = None
    ) -> list[DeploymentRecord]:
        """Every change of the active version (who, when, from, to, why), newest first."""
        name = validate_name(model_name, "model_name")
        query = (
            sa.select(deployments).where(deployments.c.model_name == name)
            .order_by(deployments.c.id.desc())
        )
        if limit is not None:
            query = query.limit(check_int(limit, "limit", minimum=1))
        with read_connection(self._engine) as conn:
            rows = conn.execute(query).all()
        return [
            DeploymentRecord(
                model_name=r.model_name, from_version=r.from_version, to_version=r.to_version,
                changed_by=r.changed_by, changed_at=to_datetime(r.changed_at),  # type: ignore[arg-type]
                reason=r.reason, action=r.action, rollback_plan_id=r.rollback_plan_id,
            )
            for r in rows
        ]

    # --- comparison -----------------------------------------------------------------------
    def compare_versions(self, model_name: str, v1: str, v2: str) -> VersionComparison:
        """Compare the metrics of ``v1`` (current) and ``v2`` (candidate).

        Every metric of either version gets a :class:`MetricDiff` (both values, absolute and
        relative change, better/worse by the metric's direction). The recommendation is
        ``"upgrade"`` when ``v2`` is newer and better on balance, ``"rollback"`` when it is
        older and better, else ``"keep"``; its confidence and reasoning are explained in
        :func:`kaizenml.versioning.recommend`.

        Examples
        --------
        >>> cmp = mgr.compare_versions("momentum", "1.0.0", "1.1.0")  # doctest: +SKIP
        >>> cmp.recommendation.action, cmp.metric("sharpe").relative_change  # doctest: +SKIP
        ('upgrade', 0.18181818181818182)
        """
        name = validate_name(model_name, "model_name")
        a_text = _check_version_text(v1, "v1")
        b_text = _check_version_text(v2, "v2")
        with read_connection(self._engine) as conn:
            a = self._require_version(conn, name, a_text)
            b = self._require_version(conn, name, b_text)
        diffs = diff_metrics(a.metrics, b.metrics, self._directions)
        rec = recommend(
            diffs,
            b_is_newer=Version.parse(b.version) > Version.parse(a.version),
            significant_change=self._significant,
        )
        return VersionComparison(name, a.version, b.version, diffs, rec)

    # --- rollback -------------------------------------------------------------------------
    def _rollback_checks(
        self, name: str, to_version: str, settings: Mapping[str, Any]
    ) -> tuple[str | None, list[RollbackCheck], RollbackImpact]:
        thresholds: dict[str, float] = settings["thresholds"]
        allow_major: bool = settings["allow_major"]
        with read_connection(self._engine) as conn:
            target = self._fetch_version(conn, name, to_version)
            active_text = self._active_number(conn, name)
            active = None if active_text is None else self._fetch_version(conn, name, active_text)
        checks: list[RollbackCheck] = []
        if target is None:
            checks.append(RollbackCheck("target_exists", False,
                                        f"version {to_version!r} of {name!r} does not exist"))
            checks.append(RollbackCheck("artifact_valid", False, "no target version to verify"))
        else:
            checks.append(RollbackCheck("target_exists", True, f"version {to_version} exists"))
            try:
                verify_folder(Path(target.artifact_path), target.checksum)
                checks.append(RollbackCheck(
                    "artifact_valid", True, "artifact present and every checksum matches"
                ))
            except Exception as exc:  # any failure to read the files is a failed check
                checks.append(RollbackCheck("artifact_valid", False, str(exc)))
        if active_text == to_version:
            checks.append(RollbackCheck("not_already_active", False,
                                        f"version {to_version} is already active"))
        else:
            checks.append(RollbackCheck(
                "not_already_active", True,
                f"active version is {active_text}" if active_text else "no version is active",
            ))
        diffs: list[MetricDiff] = []
        if target is not None and active is not None:
            diffs = diff_metrics(active.metrics, target.metrics, self._directions)
        breaches = []
        for d in diffs:
            if d.verdict != "worse":
                continue
            limit = thresholds.get(d.name, thresholds["*"])
            drop = math.inf if d.relative_change is None else abs(d.relative_change)
            if drop > limit:
                breaches.append(f"{d.name} {d.value_a:.6g} -> {d.value_b:.6g} "
                                f"({-drop:+.1%}, limit -{limit:.1%})")
        if target is None:
            checks.append(RollbackCheck("metric_thresholds", False, "no target version"))
        elif active is None:
            checks.append(RollbackCheck("metric_thresholds", True,
                                        "no active version to compare metrics against"))
        elif breaches:
            checks.append(RollbackCheck("metric_thresholds", False,
                                        "metrics degrade beyond threshold: " + "; ".join(breaches)))
        else:
            checks.append(RollbackCheck("metric_thresholds", True,
                                        "every metric within its degradation threshold"))
        jump = "n/a"
        if target is not None and active is not None:
            va, vt = Version.parse(active.version), Version.parse(target.version)
            if va.major != vt.major:
                jump = "major"
            elif va.minor != vt.minor:
                jump = "minor"
            elif va.compare(vt) != 0:
                jump = "patch"
            else:
                jump = "none"
        if jump == "major":
            checks.append(RollbackCheck(
                "major_version_change", False,
                f"{active_text} -> {to_version} crosses a major version (architecture change)"
                + ("" if allow_major else "; refused because allow_major=False"),
                blocking=not allow_major,
            ))
        else:
            checks.append(RollbackCheck("major_version_change", True,
                                        "same major version" if jump != "n/a"
                                        else "no active version to compare against"))
        risk_rank = {"patch": 0, "none": 0, "minor": 1, "n/a": 1, "major": 2}[jump]
        if any(d.verdict == "worse" for d in diffs):
            risk_rank = max(risk_rank, 1)
        if any(not c.passed and c.blocking for c in checks):
            risk_rank = 2
        risk = ("low", "medium", "high")[risk_rank]
        return active_text, checks, RollbackImpact(diffs, jump, risk)

    def _plan_from_row(self, row: Any) -> RollbackPlan:
        checks = [RollbackCheck(**c) for c in json.loads(row.checks)]
        impact_data = json.loads(row.impact)
        impact = RollbackImpact(
            [MetricDiff.from_dict(d) for d in impact_data["metric_changes"]],
            impact_data["version_jump"], impact_data["risk"],
        )
        return RollbackPlan(
            plan_id=row.id, model_name=row.model_name, from_version=row.from_version,
            to_version=row.to_version, reason=row.reason, created_by=row.created_by,
            created_at=to_datetime(row.created_at),  # type: ignore[arg-type]
            status=row.status, checks=checks, impact=impact,
            executed_at=to_datetime(row.executed_at), result_message=row.result_message,
            settings=impact_data.get("settings", {}),
        )

    def _rollback_settings(
        self, max_degradation: float | Mapping[str, float] | None, allow_major: bool
    ) -> dict[str, Any]:
        if not isinstance(allow_major, bool):
            raise KaizenTypeError(f"allow_major must be a bool, got {allow_major!r}")
        thresholds = (
            dict(self._thresholds) if max_degradation is None
            else _check_thresholds(max_degradation, "max_degradation")
        )
        return {"thresholds": thresholds, "allow_major": allow_major}

    def create_rollback_plan(
        self,
        model_name: str,
        to_version: str,
        reason: str = "",
        *,
        created_by: str = "",
        max_degradation: float | Mapping[str, float] | None = None,
        allow_major: bool = True,
    ) -> RollbackPlan:
        """Validate a rollback to ``to_version`` and persist the plan (status ``"pending"``).

        Checks (each with pass/fail and a message): ``target_exists``; ``artifact_valid``
        (files present, checksums match); ``not_already_active``; ``metric_thresholds`` (no
        metric with a known direction worse than the active version's by more than its
        threshold); ``major_version_change`` (a warning, blocking only with
        ``allow_major=False``). The impact lists the metric changes from the active version
        and a risk: high if a blocking check fails or the jump crosses a major version,
        medium for a minor jump, a metric getting worse or no active version, else low.

        Parameters
        ----------
        max_degradation:
            Overrides the manager's ``rollback_thresholds`` for this plan.
        allow_major:
            False makes a major-version change a blocking failure.

        Examples
        --------
        >>> plan = mgr.create_rollback_plan("momentum", "1.0.0", "live drawdown")  # doctest: +SKIP
        >>> plan.status, plan.impact.risk, [c.passed for c in plan.checks]  # doctest: +SKIP
        ('pending', 'medium', [True, True, True, True, True])
        """
        name = validate_name(model_name, "model_name")
        to_text = _check_version_text(to_version, "to_version")
        reason = _check_text(reason, "reason")
        created_by = _check_text(created_by, "created_by", 256)
        settings = self._rollback_settings(max_degradation, allow_major)
        if not self._has_any_version(name):
            raise NotFoundError(f"model {name!r} has no versions")
        from_version, checks, impact = self._rollback_checks(name, to_text, settings)
        impact_json = json.dumps({**impact.to_dict(), "settings": settings})

        def txn() -> int:
            with self._engine.connect() as conn, conn.begin():
                result = conn.execute(sa.insert(rollback_plans).values(
                    model_name=name, from_version=from_version, to_version=to_text,
                    reason=reason, created_by=created_by, created_at=time.time(),
                    status="pending", checks=json.dumps([c.to_dict() for c in checks]),
                    impact=impact_json,
                ))
                key = result.inserted_primary_key
                assert key is not None  # an INSERT always reports its primary key
                return int(key[0])

        return self.get_rollback_plan(retry_on_conflict(txn))

    def _has_any_version(self, name: str) -> bool:
        with read_connection(self._engine) as conn:
            return self._model_exists(conn, name)

    def get_rollback_plan(self, plan_id: int) -> RollbackPlan:
        """A persisted rollback plan by id."""
        plan_id = check_int(plan_id, "plan_id", minimum=1)
        with read_connection(self._engine) as conn:
            row = conn.execute(
                sa.select(rollback_plans).where(rollback_plans.c.id == plan_id)
            ).first()
        if row is None:
            raise NotFoundError(f"rollback plan {plan_id} does not exist")
        return self._plan_from_row(row)

    def list_rollback_plans(self, model_name: str) -> list[RollbackPlan]:
        """Every rollback plan of a model, newest first."""
        name = validate_name(model_name, "model_name")
        with read_connection(self._engine) as conn:
            rows = conn.execute(
                sa.select(rollback_plans).where(rollback_plans.c.model_name == name)
                .order_by(rollback_plans.c.id.desc())
            ).all()
        return [self._plan_from_row(r) for r in rows]

    def execute_rollback(
        self,
        model_name: str,
        target: str | RollbackPlan | int,
        *,
        reason: str = "",
        executed_by: str = "",
        max_degradation: float | Mapping[str, float] | None = None,
        allow_major: bool = True,
    ) -> RollbackResult:
        """Run a rollback: re-check, then switch the active version only if every check passes.

        Parameters
        ----------
        target:
            A version string (a plan is created first with ``reason``), a pending
            :class:`RollbackPlan` or its id.
        executed_by:
            Recorded in the deployment log.
        max_degradation, allow_major:
            As in :meth:`create_rollback_plan`, used only when ``target`` is a version.

        Returns
        -------
        RollbackResult
            ``success`` and a message. On failure the active version is untouched and the plan
            is marked ``"failed"``; on success it is ``"executed"`` and the switch is logged
            with action ``"rollback"``.

        Examples
        --------
        >>> res = mgr.execute_rollback("momentum", "1.0.0",
        ...                            reason="live drawdown")  # doctest: +SKIP
        >>> res.success, res.message  # doctest: +SKIP
        (True, 'rolled back momentum from 1.1.0 to 1.0.0')
        """
        name = validate_name(model_name, "model_name")
        executed_by = _check_text(executed_by, "executed_by", 256)
        if isinstance(target, RollbackPlan):
            plan = self.get_rollback_plan(target.plan_id)
        elif isinstance(target, numbers.Integral) and not isinstance(target, bool):
            plan = self.get_rollback_plan(int(target))
        elif isinstance(target, (str, Version)):
            plan = self.create_rollback_plan(
                name, str(target), reason, created_by=executed_by,
                max_degradation=max_degradation, allow_major=allow_major,
            )
        else:
            raise KaizenTypeError(
                f"target must be a version string, a RollbackPlan or a plan id, got {target!r}"
            )
        if plan.model_name != name:
            raise ValidationError(
                f"rollback plan {plan.plan_id} is for model {plan.model_name!r}, not {name!r}"
            )
        if plan.status != "pending":
            raise StateError(
                f"rollback plan {plan.plan_id} is {plan.status!r}; only a pending plan can be "
                "executed, create a new plan"
            )
        settings = plan.settings or self._rollback_settings(None, True)
        from_version, checks, impact = self._rollback_checks(name, plan.to_version, settings)
        failed = [c for c in checks if c.blocking and not c.passed]
        checks_json = json.dumps([c.to_dict() for c in checks])
        impact_json = json.dumps({**impact.to_dict(), "settings": settings})

        def finish(status: str, message: str, conn: Connection) -> None:
            done = conn.execute(
                sa.update(rollback_plans)
                .where(rollback_plans.c.id == plan.plan_id, rollback_plans.c.status == "pending")
                .values(status=status, checks=checks_json, impact=impact_json,
                        executed_at=time.time(), result_message=message)
            )
            if done.rowcount != 1:
                raise StateError(f"rollback plan {plan.plan_id} was executed concurrently")

        if failed:
            message = "rollback refused: " + "; ".join(f"{c.name}: {c.message}" for c in failed)

            def fail_txn() -> None:
                with self._engine.connect() as conn, conn.begin():
                    finish("failed", message, conn)

            retry_on_conflict(fail_txn)
            logger.warning("%s", message)
            return RollbackResult(False, name, from_version, plan.to_version, message,
                                  self.get_rollback_plan(plan.plan_id))

        message = f"rolled back {name} from {from_version} to {plan.to_version}"
        if impact.risk != "low":
            message += f" (risk {impact.risk})"

        def txn() -> None:
            with self._engine.connect() as conn, conn.begin():
                # The checks ran against `from_version`; refuse if someone switched since.
                self._activate(
                    conn, name, plan.to_version, expected_from=from_version,
                    changed_by=executed_by or plan.created_by,
                    reason=plan.reason, action="rollback", plan_id=plan.plan_id,
                )
                finish("executed", message, conn)

        try:
            retry_on_conflict(txn)
        except StateError as exc:
            message = f"rollback refused: {exc}"

            def race_txn() -> None:
                with self._engine.connect() as conn, conn.begin():
                    finish("failed", message, conn)

            retry_on_conflict(race_txn)
            return RollbackResult(False, name, from_version, plan.to_version, message,
                                  self.get_rollback_plan(plan.plan_id))
        logger.info("%s", message)
        return RollbackResult(True, name, from_version, plan.to_version, message,
                              self.get_rollback_plan(plan.plan_id))

    # --- checkpoints and housekeeping ---------------------------------------------------------
    def checkpointer(
        self,
        model_name: str,
        *,
        every_n_steps: int | None = None,
        every_seconds: float | None = None,
        keep_last: int = 3,
        keep_best: int = 1,
        metric: str | None = None,
        direction: str | None = None,
        serializer: str | None = None,
    ) -> Checkpointer:
        """A :class:`Checkpointer` saving training checkpoints of ``model_name``.

        See :class:`Checkpointer` for the parameters.

        Examples
        --------
        >>> ckpt = mgr.checkpointer("momentum", every_n_steps=10,
        ...                         metric="val_loss")  # doctest: +SKIP
        >>> for step in range(100):  # doctest: +SKIP
        ...     ckpt.save(step, {"w": weights}, {"val_loss": loss})
        >>> version = ckpt.promote(change_type="retrain")  # doctest: +SKIP
        """
        from ._checkpoint import Checkpointer

        return Checkpointer(
            self, model_name, every_n_steps=every_n_steps, every_seconds=every_seconds,
            keep_last=keep_last, keep_best=keep_best, metric=metric, direction=direction,
            serializer=serializer,
        )

    def clean_orphans(self, *, older_than: float = 3600.0) -> list[Path]:
        """Remove leftovers of crashed writers older than ``older_than`` seconds.

        These are temporary and trash folders, and version or checkpoint folders that no row
        references (a crash between the folder rename and the commit). Young folders are kept
        because a live writer may still be about to commit them. Returns the removed paths.
        """
        from ._schema import checkpoints

        older_than = check_float(older_than, "older_than", minimum=0.0)
        cutoff = time.time() - older_than
        with read_connection(self._engine) as conn:
            referenced = set(conn.execute(sa.select(_mv.c.artifact_path)).scalars())
            referenced |= set(conn.execute(sa.select(checkpoints.c.artifact_path)).scalars())
        removed: list[Path] = []
        if not self._root.is_dir():
            return removed
        for model_dir in self._root.iterdir():
            if not model_dir.is_dir():
                continue
            candidates = list(model_dir.iterdir())
            ckpt_dir = model_dir / "checkpoints"
            if ckpt_dir.is_dir():
                candidates += list(ckpt_dir.iterdir())
            for folder in candidates:
                if not folder.is_dir() or folder == ckpt_dir:
                    continue
                relative = folder.relative_to(self._root).as_posix()
                hidden = folder.name.startswith((TEMP_PREFIX, TRASH_PREFIX))
                is_version = Version.is_valid(folder.name) or folder.parent == ckpt_dir
                if not hidden and (not is_version or relative in referenced):
                    continue
                try:
                    if folder.stat().st_mtime > cutoff:
                        continue
                except FileNotFoundError:
                    continue
                if hidden:
                    shutil.rmtree(folder, ignore_errors=True)
                else:
                    remove_folder(folder)
                removed.append(folder)
        return removed


_ANY = object()

_DEFAULT_MANAGERS: dict[tuple[str, str, int], ModelVersionManager] = {}
_DEFAULT_LOCK = threading.Lock()


def get_model_version_manager() -> ModelVersionManager:
    """The process-wide default manager on ``KAIZENML_HOME`` (embedded SQLite + artifacts).

    Examples
    --------
    >>> mgr = get_model_version_manager()  # doctest: +SKIP
    """
    url = default_storage_url()
    root = str(default_artifact_dir())
    key = (url, root, os.getpid())
    with _DEFAULT_LOCK:
        manager = _DEFAULT_MANAGERS.get(key)
        if manager is None:
            manager = ModelVersionManager(url, root)
            _DEFAULT_MANAGERS[key] = manager
        return manager

