"""Tables of the versioning module, declared on the shared storage metadata.

Times are stored as float seconds since the Unix epoch (UTC), which keeps ordering exact and
identical on SQLite and PostgreSQL. Artifact paths are relative to the artifact root so a root
can be moved.
"""

from __future__ import annotations

import sqlalchemy as sa

from ..storage import metadata, register_component

__all__ = [
    "active_versions",
    "checkpoints",
    "deleted_versions",
    "deployments",
    "history_revisions",
    "model_versions",
    "rollback_plans",
    "version_metrics",
    "version_tags",
]

model_versions = sa.Table(
    "kz_model_versions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model_name", sa.String(128), nullable=False),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("major", sa.Integer, nullable=False),
    sa.Column("minor", sa.Integer, nullable=False),
    sa.Column("patch", sa.Integer, nullable=False),
    sa.Column("change_type", sa.String(32), nullable=False),
    sa.Column("parent_version", sa.String(64), nullable=True),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("created_by", sa.String(256), nullable=False, default=""),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("metrics", sa.Text, nullable=False, default="{}"),
    sa.Column("tags", sa.Text, nullable=False, default="{}"),
    sa.Column("artifact_path", sa.String(512), nullable=False),
    sa.Column("checksum", sa.String(64), nullable=False),
    sa.Column("serializer", sa.String(16), nullable=True),
    # The model's history revision (see history_revisions) of the transaction that created
    # the row; NULL for rows written before the column existed.
    sa.Column("revision", sa.Integer, nullable=True),
    # The unique key is what makes concurrent writers safe: the version number is chosen and
    # inserted in one transaction, and a duplicate makes the transaction retry.
    sa.UniqueConstraint("model_name", "version", name="uq_kz_model_versions_name_version"),
    # "latest version" = highest (major, minor, patch); history = insertion order.
    sa.Index("ix_kz_model_versions_semver", "model_name", "major", "minor", "patch"),
    sa.Index("ix_kz_model_versions_history", "model_name", "id"),
    sa.Index("ix_kz_model_versions_revision", "model_name", "revision"),
)


def _references_version(ondelete: str | None = None) -> sa.ForeignKeyConstraint:
    """A table's (model_name, version) pointing at a row of :data:`model_versions`."""
    return sa.ForeignKeyConstraint(
        ["model_name", "version"],
        ["kz_model_versions.model_name", "kz_model_versions.version"],
        ondelete=ondelete,
    )


# Numbers of deleted versions: never handed out again, so a version number always names one
# artifact for the life of the model (caches and audit logs keyed by it stay truthful).
deleted_versions = sa.Table(
    "kz_model_deleted_versions",
    metadata,
    sa.Column("model_name", sa.String(128), nullable=False),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("major", sa.Integer, nullable=False),
    sa.Column("minor", sa.Integer, nullable=False),
    sa.Column("patch", sa.Integer, nullable=False),
    sa.Column("deleted_at", sa.Float, nullable=False),
    # The model's history revision of the deleting transaction (NULL before the column existed).
    sa.Column("revision", sa.Integer, nullable=True),
    # The deleted row's id in kz_model_versions and its content (a JSON object of the columns a
    # ModelVersion is built from, plus the row's own revision), written by the deleting
    # transaction: a history read before the deletion loads its rows lazily and finds the
    # version here. NULL for deletions made before the columns existed.
    sa.Column("row_id", sa.Integer, nullable=True),
    sa.Column("record", sa.Text, nullable=True),
    sa.PrimaryKeyConstraint("model_name", "version"),
    sa.Index("ix_kz_model_deleted_versions_semver", "model_name", "major", "minor", "patch"),
    sa.Index("ix_kz_model_deleted_versions_revision", "model_name", "revision"),
    sa.Index("ix_kz_model_deleted_versions_row", "model_name", "row_id"),
)

# One counter per model, incremented inside every transaction that creates or deletes one of
# its versions (versions are otherwise immutable). The increment locks the row until commit, so
# revisions are handed out in commit order: a reader that sees revision R sees every change
# numbered up to R, and can bring a history it read at revision r up to date by reading only the
# rows and deletions numbered above r. A model without a row is at revision 0.
history_revisions = sa.Table(
    "kz_model_history_revisions",
    metadata,
    sa.Column("model_name", sa.String(128), primary_key=True),
    sa.Column("revision", sa.Integer, nullable=False),
)

version_tags = sa.Table(
    "kz_model_version_tags",
    metadata,
    sa.Column("model_name", sa.String(128), nullable=False),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("key", sa.String(256), nullable=False),
    sa.Column("value", sa.String(1024), nullable=False),
    sa.PrimaryKeyConstraint("model_name", "version", "key"),
    _references_version(ondelete="CASCADE"),
    sa.Index("ix_kz_model_version_tags_kv", "key", "value"),
)

version_metrics = sa.Table(
    "kz_model_version_metrics",
    metadata,
    sa.Column("model_name", sa.String(128), nullable=False),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("name", sa.String(256), nullable=False),
    sa.Column("value", sa.Float, nullable=False),
    sa.PrimaryKeyConstraint("model_name", "version", "name"),
    _references_version(ondelete="CASCADE"),
    sa.Index("ix_kz_model_version_metrics_nv", "name", "value"),
)

active_versions = sa.Table(
    "kz_model_active_versions",
    metadata,
    sa.Column("model_name", sa.String(128), primary_key=True),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("changed_at", sa.Float, nullable=False),
    sa.Column("changed_by", sa.String(256), nullable=False, default=""),
    # An active version can never be deleted from under the pointer.
    _references_version(),
)

deployments = sa.Table(
    "kz_model_deployments",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model_name", sa.String(128), nullable=False),
    sa.Column("from_version", sa.String(64), nullable=True),
    sa.Column("to_version", sa.String(64), nullable=False),
    sa.Column("changed_by", sa.String(256), nullable=False, default=""),
    sa.Column("changed_at", sa.Float, nullable=False),
    sa.Column("reason", sa.Text, nullable=False, default=""),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("rollback_plan_id", sa.Integer, nullable=True),
    sa.Index("ix_kz_model_deployments_history", "model_name", "id"),
)

rollback_plans = sa.Table(
    "kz_model_rollback_plans",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model_name", sa.String(128), nullable=False),
    sa.Column("from_version", sa.String(64), nullable=True),
    sa.Column("to_version", sa.String(64), nullable=False),
    sa.Column("reason", sa.Text, nullable=False, default=""),
    sa.Column("created_by", sa.String(256), nullable=False, default=""),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("checks", sa.Text, nullable=False),
    sa.Column("impact", sa.Text, nullable=False),
    sa.Column("executed_at", sa.Float, nullable=True),
    sa.Column("result_message", sa.Text, nullable=True),
    sa.Index("ix_kz_model_rollback_plans_model", "model_name", "id"),
)

checkpoints = sa.Table(
    "kz_model_checkpoints",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model_name", sa.String(128), nullable=False),
    sa.Column("step", sa.Integer, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("metrics", sa.Text, nullable=False, default="{}"),
    sa.Column("artifact_path", sa.String(512), nullable=False),
    sa.Column("checksum", sa.String(64), nullable=False),
    sa.Column("serializer", sa.String(16), nullable=True),
    sa.UniqueConstraint("model_name", "step", name="uq_kz_model_checkpoints_name_step"),
)

# Schema version 1 of the version store. Declaring it lets a store written by a newer
# kaizenml (a higher recorded version) be refused instead of modified.
register_component(
    "versioning",
    tables=[
        t.name
        for t in (
            model_versions, deleted_versions, history_revisions, version_tags, version_metrics,
            active_versions, deployments, rollback_plans, checkpoints,
        )
    ],
)
