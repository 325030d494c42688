"""Helpers for the storage tests: a private table set and a runner for worker processes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from kaizenml.storage import JSONText, UTCDateTime, get_engine

HERE = Path(__file__).resolve().parent


def make_tables() -> tuple[sa.MetaData, dict[str, sa.Table]]:
    md = sa.MetaData()
    tables = {
        "counter": sa.Table(
            "conf_counter",
            md,
            sa.Column("number", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("writer", sa.String(64), nullable=False),
        ),
        "docs": sa.Table(
            "conf_docs",
            md,
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("name", sa.String(200), nullable=False, unique=True),
            sa.Column("doc", JSONText),
            sa.Column("blob", sa.LargeBinary),
            sa.Column("text", sa.Text),
            sa.Column("x", sa.Double),
            sa.Column("at", UTCDateTime),
        ),
    }
    return md, tables


@pytest.fixture
def conf_store(storage_url: str) -> Iterator[tuple[str, sa.engine.Engine, dict[str, sa.Table]]]:
    md, tables = make_tables()
    engine = get_engine(storage_url)
    md.create_all(engine)
    yield storage_url, engine, tables


@pytest.fixture
def run_workers(worker_env: dict[str, str]) -> Callable[..., list[str]]:
    """Start ``n`` copies of a worker script at once; return their stdout, failing on errors."""

    def run(script: str, n: int, *args: str, timeout: float = 120.0) -> list[str]:
        procs = [
            subprocess.Popen(
                [sys.executable, str(HERE / script), str(i), *args],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=worker_env,
            )
            for i in range(n)
        ]
        outs = []
        for p in procs:
            out, err = p.communicate(timeout=timeout)
            assert p.returncode == 0, f"worker failed ({p.returncode}):\n{err}"
            outs.append(out)
        return outs

    return run
