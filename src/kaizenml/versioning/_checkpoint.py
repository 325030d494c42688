"""Automatic checkpoints of a training loop, kept by recency and by a metric.

A checkpoint is written like a version (temporary folder, fsync, rename inside the transaction
that inserts its row), under ``<root>/<model>/checkpoints/step-<step>-<id>/``; the unique
suffix means a re-saved step never renames over a live folder. Retention commits the row
deletions first and removes folders after, so a crash of the training process at any point
leaves every recorded checkpoint complete; a new :class:`Checkpointer` on the same model picks
them up.
"""

from __future__ import annotations

import builtins
import json
import logging
import math
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from .._exceptions import NotFoundError, StorageError, ValidationError
from .._validation import check_float, check_int, validate_name
from ..storage import read_connection, retry_on_conflict
from ._artifacts import (
    check_serializer,
    load_folder,
    publish_folder,
    remove_folder,
    unpublish_folder,
    write_temp_folder,
)
from ._compare import normalize_direction
from ._records import ModelVersion, to_datetime
from ._schema import checkpoints

if TYPE_CHECKING:
    from ._manager import ModelVersionManager

__all__ = ["Checkpoint", "Checkpointer"]

logger = logging.getLogger(__name__)
_ck = checkpoints


@dataclass(frozen=True)
class Checkpoint:
    """One saved checkpoint: its step, metrics, time, folder and manifest checksum."""

    model_name: str
    step: int
    created_at: datetime
    metrics: dict[str, float]
    artifact_path: str
    checksum: str
    serializer: str | None = None


class Checkpointer:
    """Save training checkpoints at a cadence, keeping the last N and the best K.

    Create it with :meth:`ModelVersionManager.checkpointer`.

    Parameters
    ----------
    manager:
        The :class:`ModelVersionManager` whose storage and artifact root are used.
    model_name:
        The model being trained.
    every_n_steps:
        Save when at least this many steps passed since the last saved step.
    every_seconds:
        Save when at least this many seconds passed since the last save. With both cadences a
        save happens when either is due; with neither, every call saves.
    keep_last:
        Number of checkpoints saved last to keep (order of saving, not of steps); at least 1.
    keep_best:
        Number of best checkpoints by ``metric`` to keep as well (0 to disable).
    metric:
        The metric ranking checkpoints; required when ``keep_best > 0``.
    direction:
        ``"higher"``/``"maximize"`` or ``"lower"``/``"minimize"``; inferred from the metric
        name (``loss`` -> lower, ``sharpe`` -> higher, ...) or the manager's
        ``metric_directions`` when omitted.
    serializer:
        ``"pickle"``/``"joblib"`` to checkpoint arbitrary objects (the same opt-in then
        applies to :meth:`restore`).

    Examples
    --------
    >>> ckpt = mgr.checkpointer("momentum", every_n_steps=5, keep_last=2, keep_best=1,
    ...                         metric="val_loss")  # doctest: +SKIP
    >>> ckpt.save(0, {"w": w}, {"val_loss": 0.9})  # doctest: +SKIP
    True
    >>> ckpt.save(3, {"w": w}, {"val_loss": 0.8})  # doctest: +SKIP
    False
    """

    def __init__(
        self,
        manager: ModelVersionManager,
        model_name: str,
        *,
        every_n_steps: int | None = None,
        every_seconds: float | None = None,
        keep_last: int = 3,
        keep_best: int = 1,
        metric: str | None = None,
        direction: str | None = None,
        serializer: str | None = None,
    ) -> None:
        self._manager = manager
        self._name = validate_name(model_name, "model_name")
        self._every_n = None if every_n_steps is None else check_int(
            every_n_steps, "every_n_steps", minimum=1
        )
        self._every_s = None if every_seconds is None else check_float(
            every_seconds, "every_seconds", minimum=0.0
        )
        self._keep_last = check_int(keep_last, "keep_last", minimum=1)
        self._keep_best = check_int(keep_best, "keep_best", minimum=0)
        if metric is not None and not isinstance(metric, str):
            raise ValidationError(f"metric must be a metric name (str), got {metric!r}")
        if self._keep_best > 0 and metric is None:
            raise ValidationError(
                f"keep_best={keep_best} needs metric=, the metric that ranks checkpoints; pass "
                "metric='val_loss' (for example) or keep_best=0"
            )
        self._metric = metric
        if metric is not None:
            if direction is None:
                inferred = manager.metric_direction(metric)
                if inferred is None:
                    raise ValidationError(
                        f"direction is needed: metric={metric!r} has no known direction; pass "
                        "direction='higher' or direction='lower'"
                    )
                direction = inferred
            self._direction: str | None = normalize_direction(direction, "direction")
        else:
            self._direction = None
        self._serializer = check_serializer(serializer)
        self._engine = manager.engine
        self._dir = manager.artifact_root / self._name / "checkpoints"
        latest = self.latest()
        self._last_step = None if latest is None else latest.step
        self._last_time = None if latest is None else latest.created_at.timestamp()

    # --- reading ---------------------------------------------------------------------------
    def _to_checkpoint(self, row: Any) -> Checkpoint:
        return Checkpoint(
            model_name=row.model_name, step=row.step,
            created_at=to_datetime(row.created_at),  # type: ignore[arg-type]
            metrics=json.loads(row.metrics),
            artifact_path=str(self._manager.artifact_root / row.artifact_path),
            checksum=row.checksum, serializer=row.serializer,
        )

    def list(self) -> builtins.list[Checkpoint]:
        """Every kept checkpoint, by step ascending."""
        with read_connection(self._engine) as conn:
            rows = conn.execute(
                sa.select(_ck).where(_ck.c.model_name == self._name).order_by(_ck.c.step)
            ).all()
        return [self._to_checkpoint(r) for r in rows]

    def latest(self) -> Checkpoint | None:
        """The checkpoint saved last (after a restarted run, the new run's), or None."""
        with read_connection(self._engine) as conn:
            row = conn.execute(
                sa.select(_ck).where(_ck.c.model_name == self._name)
                .order_by(_ck.c.id.desc()).limit(1)
            ).first()
        return None if row is None else self._to_checkpoint(row)

    def best(self) -> Checkpoint | None:
        """The checkpoint with the best ``metric`` (latest step on ties), or None."""
        if self._metric is None:
            raise ValidationError("best() needs the checkpointer to be created with metric=")
        ranked = self._rank_best(self.list())
        return ranked[0] if ranked else None

    def _rank_best(self, items: builtins.list[Checkpoint]) -> builtins.list[Checkpoint]:
        metric = self._metric
        if metric is None:
            return []
        sign = 1.0 if self._direction == "lower" else -1.0
        scored = [c for c in items if metric in c.metrics and math.isfinite(c.metrics[metric])]
        return sorted(scored, key=lambda c: (sign * c.metrics[metric], -c.step))

    def _get(self, step: int) -> Checkpoint:
        with read_connection(self._engine) as conn:
            row = conn.execute(
                sa.select(_ck).where(_ck.c.model_name == self._name, _ck.c.step == step)
            ).first()
        if row is None:
            raise NotFoundError(f"model {self._name!r} has no checkpoint at step {step}")
        return self._to_checkpoint(row)

    def restore(self, step: int | None = None) -> Any:
        """Load the artifact of checkpoint ``step`` (default: the latest), verified."""
        if step is None:
            latest = self.latest()
            if latest is None:
                raise NotFoundError(f"model {self._name!r} has no checkpoints")
            found = latest
        else:
            found = self._get(check_int(step, "step", minimum=0))
        return load_folder(Path(found.artifact_path), found.checksum, self._serializer)

    # --- writing ---------------------------------------------------------------------------
    def should_save(self, step: int) -> bool:
        """Whether :meth:`save` at ``step`` would write, given the cadence."""
        if self._every_n is None and self._every_s is None:
            return True
        if self._last_step is None or step < self._last_step:
            return True  # the first save, or a training run restarted below the last step
        due = False
        if self._every_n is not None and step - self._last_step >= self._every_n:
            due = True
        if self._every_s is not None and (
            self._last_time is None or time.time() - self._last_time >= self._every_s
        ):
            due = True
        return due

    def save(
        self,
        step: int,
        artifact: Any,
        metrics: Mapping[str, float] | None = None,
        *,
        force: bool = False,
    ) -> bool:
        """Save a checkpoint if the cadence says so (or ``force``); return whether it saved.

        Saving a step that already has a checkpoint replaces it. After a save, checkpoints
        outside the ``keep_last`` saved last and the best ``keep_best`` by ``metric`` are
        deleted (rows first, then folders). "Last" is the order of saving, not of steps: a
        training run restarted from step 0 keeps its new checkpoints, not the old run's higher
        steps.
        """
        from ._manager import _check_metrics

        step = check_int(step, "step", minimum=0)
        metric_values = _check_metrics(metrics)
        if self._metric is not None and self._keep_best > 0 and self._metric not in metric_values:
            raise ValidationError(
                f"metrics must include {self._metric!r} (the checkpoint ranking metric), got "
                f"{sorted(metric_values)}"
            )
        if not force and not self.should_save(step):
            return False
        temp, checksum = write_temp_folder(self._dir, artifact, self._serializer)
        try:
            replaced = retry_on_conflict(lambda: self._insert(step, metric_values, temp, checksum))
        finally:
            if temp.exists():
                remove_folder(temp)
        if replaced is not None:
            remove_folder(self._manager.artifact_root / replaced)
        self._last_step = step
        self._last_time = time.time()
        self._prune()
        return True

    def _insert(
        self, step: int, metrics: dict[str, float], temp: Path, checksum: str
    ) -> str | None:
        final = self._dir / f"step-{step:09d}-{uuid.uuid4().hex[:8]}"
        relative = f"{self._name}/checkpoints/{final.name}"
        published = False
        try:
            with self._engine.connect() as conn, conn.begin():
                old = conn.execute(
                    sa.select(_ck.c.artifact_path)
                    .where(_ck.c.model_name == self._name, _ck.c.step == step)
                ).scalar_one_or_none()
                if old is not None:
                    conn.execute(
                        sa.delete(_ck).where(_ck.c.model_name == self._name, _ck.c.step == step)
                    )
                conn.execute(sa.insert(_ck).values(
                    model_name=self._name, step=step, created_at=time.time(),
                    metrics=json.dumps(metrics), artifact_path=relative, checksum=checksum,
                    serializer=self._serializer,
                ))
                publish_folder(temp, final)
                published = True
        except BaseException as exc:
            if published:
                # The COMMIT itself failed; a lost connection leaves its outcome unknown.
                stored = self._row_stored(relative)
                if stored and isinstance(exc, Exception):
                    logger.warning(
                        "the commit of checkpoint %s step %d reported %r but it was stored; "
                        "keeping it", self._name, step, exc,
                    )
                    return old
                if stored is False:  # no row points at it, and its name is this save's alone
                    unpublish_folder(final, temp)
                elif stored is None and isinstance(exc, Exception):
                    raise StorageError(
                        f"the commit of checkpoint {self._name} step {step} failed ({exc}) and "
                        "the store could not be asked whether it was stored; check list() "
                        "before saving it again"
                    ) from exc
            raise
        return old

    def _row_stored(self, relative: str) -> bool | None:
        """Whether the store holds the checkpoint saved in ``relative`` (None: it cannot say)."""
        try:
            with read_connection(self._engine) as conn:
                found = conn.execute(
                    sa.select(_ck.c.step).where(
                        _ck.c.model_name == self._name, _ck.c.artifact_path == relative
                    )
                ).first()
        except Exception:  # the store is unreachable: the outcome stays unknown
            return None
        return found is not None

    def _prune(self) -> None:
        def txn() -> builtins.list[str]:
            with self._engine.connect() as conn, conn.begin():
                rows = conn.execute(
                    sa.select(_ck).where(_ck.c.model_name == self._name).order_by(_ck.c.id)
                ).all()
                items = [self._to_checkpoint(r) for r in rows]
                keep = {c.step for c in items[-self._keep_last:]}  # the ones saved last
                if self._metric is not None and self._keep_best > 0:
                    keep |= {c.step for c in self._rank_best(items)[: self._keep_best]}
                drop = [r for r in rows if r.step not in keep]
                if drop:
                    conn.execute(sa.delete(_ck).where(
                        _ck.c.model_name == self._name,
                        _ck.c.step.in_([r.step for r in drop]),
                    ))
                return [r.artifact_path for r in drop]

        for relative in retry_on_conflict(txn):
            remove_folder(self._manager.artifact_root / relative)

    # --- promotion -------------------------------------------------------------------------
    def promote(
        self,
        step: int | None = None,
        *,
        change_type: str = "retrain",
        description: str = "",
        created_by: str = "",
        parent_version: str | None = None,
        tags: Mapping[str, str] | None = None,
        metrics: Mapping[str, float] | None = None,
    ) -> ModelVersion:
        """Turn checkpoint ``step`` (default: the best, else the latest) into a new version.

        The version gets the checkpoint's metrics (updated by ``metrics``) and a tag
        ``checkpoint_step``; its number follows ``change_type`` as in
        :meth:`ModelVersionManager.create_version`.
        """
        if step is None:
            chosen = (self.best() if self._metric is not None else None) or self.latest()
            if chosen is None:
                raise NotFoundError(f"model {self._name!r} has no checkpoints")
        else:
            chosen = self._get(check_int(step, "step", minimum=0))
        artifact = load_folder(Path(chosen.artifact_path), chosen.checksum, self._serializer)
        merged = dict(chosen.metrics)
        merged.update(metrics or {})
        all_tags = {"checkpoint_step": str(chosen.step)}
        all_tags.update(tags or {})
        return self._manager.create_version(
            self._name, artifact, change_type=change_type, description=description,
            created_by=created_by, metrics=merged, parent_version=parent_version,
            tags=all_tags, serializer=self._serializer,
        )
