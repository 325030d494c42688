"""Fixtures of the distributed tests: worker processes on a shared study, and reading it back."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent


@pytest.fixture
def spawn_worker(worker_env: dict[str, str]) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start ``_study_worker.py INDEX CONFIG`` in its own process; killed at teardown if alive."""
    procs: list[subprocess.Popen[str]] = []

    def spawn(index: int, cfg: dict[str, Any]) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "_study_worker.py"), str(index), json.dumps(cfg)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=worker_env,
            start_new_session=True,  # its own process group: dask children die with it
        )
        procs.append(proc)
        return proc

    yield spawn
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        else:
            try:  # reap any dask worker left behind by a killed driver
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if proc.stdout:
            proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()


@pytest.fixture
def finish() -> Callable[..., None]:
    """Wait for workers and fail with their stderr when one of them failed."""

    def wait(*procs: subprocess.Popen[str], timeout: float = 150.0) -> None:
        for proc in procs:
            _out, err = proc.communicate(timeout=timeout)
            assert proc.returncode == 0, f"worker exited with {proc.returncode}:\n{err[-4000:]}"

    return wait


@pytest.fixture
def read_log() -> Callable[[Path], list[dict[str, Any]]]:
    def read(path: Path) -> list[dict[str, Any]]:
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    return read


@pytest.fixture
def study_trials() -> Callable[[str, str], list[Any]]:
    """Every trial of a stored study, read back through a fresh storage object."""

    def read(url: str, study: str) -> list[Any]:
        from kaizenml.optimize import SQLStorage

        storage = SQLStorage(url)
        return list(storage.get_trials(storage.get_study(study).study_id))

    return read


@pytest.fixture
def wait_for_file() -> Callable[..., dict[str, Any]]:
    def wait(path: Path, procs: list[subprocess.Popen[str]], timeout: float = 90.0) -> Any:
        deadline = time.monotonic() + timeout
        while not path.exists():
            for proc in procs:
                if proc.poll() is not None:
                    _out, err = proc.communicate()
                    pytest.fail(f"worker exited ({proc.returncode}) before {path.name}:\n{err}")
            if time.monotonic() > deadline:
                pytest.fail(f"{path.name} did not appear within {timeout} s")
            time.sleep(0.05)
        return json.loads(path.read_text())

    return wait
