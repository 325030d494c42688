"""Fixtures of the stress tests: parallel worker processes and a throughput report."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
_FIGURES: list[str] = []


@pytest.fixture
def run_parallel(worker_env: dict[str, str]) -> Callable[..., list[dict[str, Any]]]:
    """Run ``_stress_worker.py MODE i ARGS...`` for i in range(n) at once; parse their JSON."""

    def run(mode: str, n: int, *args: str, timeout: float = 170.0) -> list[dict[str, Any]]:
        procs = [
            subprocess.Popen(
                [sys.executable, str(HERE / "_stress_worker.py"), mode, str(i), *args],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=worker_env,
            )
            for i in range(n)
        ]
        results = []
        try:
            for p in procs:
                out, err = p.communicate(timeout=timeout)
                assert p.returncode == 0, f"{mode} worker failed ({p.returncode}):\n{err[-4000:]}"
                results.append(json.loads(out.strip().splitlines()[-1]))
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        return results

    return run


@pytest.fixture
def report_figure() -> Callable[[str], None]:
    """Record a line for the end-of-run summary (throughput figures)."""
    return _FIGURES.append


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _FIGURES:
        terminalreporter.section("kaizenml stress figures")
        for line in _FIGURES:
            terminalreporter.write_line(line)
