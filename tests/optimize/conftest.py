"""Shared fixtures of the optimization tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from kaizenml.optimize import InMemoryStorage, SQLStorage

SRC = str(Path(__file__).resolve().parents[2] / "src")


@pytest.fixture()
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'studies.db'}"


@pytest.fixture(params=["memory", "sqlite"])
def storage(request: pytest.FixtureRequest, tmp_path: Path):
    """Both study backends."""
    if request.param == "memory":
        return InMemoryStorage()
    return SQLStorage(f"sqlite:///{tmp_path / 'studies.db'}")


@pytest.fixture()
def subprocess_env(worker_env: dict[str, str]) -> dict[str, str]:
    """Environment for child Python processes that must import this checkout's kaizenml."""
    return {"OPENBLAS_NUM_THREADS": "1", **worker_env}


@pytest.fixture()
def python() -> str:
    return sys.executable
