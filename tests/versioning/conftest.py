"""Versioning test fixtures: a manager on a fresh SQLite file and a child-process runner."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from kaizenml.versioning import ModelVersionManager


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'kaizenml.db'}"


@pytest.fixture
def art_root(tmp_path: Path) -> Path:
    return tmp_path / "artifacts"


@pytest.fixture
def manager(db_url: str, art_root: Path) -> ModelVersionManager:
    return ModelVersionManager(db_url, art_root)


@pytest.fixture
def child(worker_env: dict[str, str]) -> Callable[..., subprocess.Popen[str]]:
    """Start ``python -c <code>`` with kaizenml importable; stdout is a text pipe."""
    procs: list[subprocess.Popen[str]] = []

    def start(code: str, *args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=worker_env,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
