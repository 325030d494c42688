"""Tables of the feature store on the shared :data:`kaizenml.storage.metadata`."""

from __future__ import annotations

import sqlalchemy as sa

from ..storage import metadata, register_component

__all__ = [
    "feature_definitions",
    "feature_drift_references",
    "feature_lineage",
    "feature_statistics",
]

feature_definitions = sa.Table(
    "feature_definitions",
    metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("version", sa.String(128), primary_key=True),
    sa.Column("definition_hash", sa.String(64), nullable=False),
    sa.Column("definition", sa.Text, nullable=False),  # JSON of FeatureDefinition.to_dict()
    sa.Column("deprecated", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", sa.String(40), nullable=False),  # ISO 8601 UTC
    # JSON {dependency: version}: the version each unpinned feature dependency resolved to when
    # the definition was first registered (NULL in stores from before it was recorded)
    sa.Column("resolved_dependencies", sa.Text, nullable=True),
)


def _statistics_columns() -> list[sa.Column]:
    """The columns of one set of column statistics (shared by the two tables below)."""
    return [
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("version", sa.String(128), primary_key=True),
        sa.Column("column_name", sa.String(160), primary_key=True),
        sa.Column("count", sa.BigInteger, nullable=False),
        sa.Column("missing", sa.BigInteger, nullable=False),
        # NULL stands for NaN (SQLite has no NaN)
        sa.Column("mean", sa.Float),
        sa.Column("std", sa.Float),
        sa.Column("min", sa.Float),
        sa.Column("max", sa.Float),
        sa.Column("p5", sa.Float),
        sa.Column("p25", sa.Float),
        sa.Column("p50", sa.Float),
        sa.Column("p75", sa.Float),
        sa.Column("p95", sa.Float),
        sa.Column("reference", sa.Text, nullable=False),  # JSON: decile edges and bin fractions
        sa.Column("computed_at", sa.String(40), nullable=False),
    ]


# Statistics of the latest computation of each column (replaced by every computation).
feature_statistics = sa.Table("feature_statistics", metadata, *_statistics_columns())

# The baseline that drift is measured against: the statistics of the first computation with
# values, until set_drift_reference pins others. A computation never replaces it. A new table
# (not a column of feature_statistics) so that stores from before it get it from CREATE TABLE.
feature_drift_references = sa.Table(
    "feature_drift_references",
    metadata,
    *_statistics_columns(),
    sa.Column("origin", sa.String(32), nullable=False),  # "computation" or "pinned"
    sa.Column("pinned_at", sa.String(40), nullable=False),
)

feature_lineage = sa.Table(
    "feature_lineage",
    metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("version", sa.String(128), primary_key=True),
    sa.Column("lineage", sa.Text, nullable=False),  # JSON of FeatureLineage.to_dict()
    sa.Column("computed_at", sa.String(40), nullable=False),
)

# Schema version 1 of the feature store (see kaizenml.storage's migrations): a store written by
# a newer kaizenml is refused instead of modified.
register_component(
    "features",
    tables=[
        t.name
        for t in (feature_definitions, feature_statistics, feature_drift_references,
                  feature_lineage)
    ],
)
