"""ensure_schema creates tables declared after an engine was first set up.

A program that uses the feature store first and then imports the optimizer (whose tables are
declared when its module loads) must still get the optimizer's tables on the same engine.
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa

from kaizenml.storage import ensure_schema, get_engine, metadata


def test_tables_declared_later_are_created(tmp_path) -> None:
    engine = get_engine(f"sqlite:///{tmp_path / 'k.db'}")
    ensure_schema(engine)
    name = f"late_{uuid.uuid4().hex[:8]}"
    table = sa.Table(name, metadata, sa.Column("id", sa.Integer, primary_key=True))
    try:
        assert not sa.inspect(engine).has_table(name)
        ensure_schema(engine)
        assert sa.inspect(engine).has_table(name)
    finally:
        metadata.remove(table)
