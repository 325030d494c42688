"""Shared fixtures of the optimization tests."""

from __future__ import annotations

import os
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
def subprocess_env() -> dict[str, str]:
    """Environment for child Python processes that must import this checkout's kaizenml."""
    env = dict(os.environ)
    import kaizenml

    pkg_parent = str(Path(kaizenml.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_parent, env.get("PYTHONPATH", "")) if p)
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    return env


@pytest.fixture()
def python() -> str:
    return sys.executable
