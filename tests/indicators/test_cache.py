"""The on-disk numba cache: cold and warm starts, and a read-only package directory.

Each case runs fresh interpreters, because the cache only matters across processes.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import kaizenml

PACKAGE = Path(kaizenml.__file__).resolve().parent

SCRIPT = r"""
import json
import numpy as np
from kaizenml import indicators as ki
from kaizenml.indicators import _kernels as k

rng = np.random.default_rng(0)
x = 100 + np.cumsum(rng.normal(size=(4, 300)), axis=1)
high, low = x + 1.0, x - 1.0
last_rsi = float(ki.rsi(x[0])[-1])
batch_macd = ki.macd(x)
batch_stoch = ki.stochastic(high, low, x)
rows_agree = all(
    np.array_equal(batch_macd.hist[i], ki.macd(x[i]).hist, equal_nan=True)
    and np.array_equal(batch_stoch.d[i], ki.stochastic(high[i], low[i], x[i]).d, equal_nan=True)
    for i in range(len(x))
)
stats = {}
for name in ("_rsi_1d", "_macd_2d", "_stochastic_2d"):
    s = getattr(k, name).stats
    stats[name] = [sum(s.cache_hits.values()), sum(s.cache_misses.values())]
print(json.dumps({"rsi": last_rsi, "hist": float(batch_macd.hist[2, -1]),
                  "rows_agree": rows_agree, "stats": stats, "module": ki.__file__}))
"""


def _run(env_extra: dict[str, str], pythonpath: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    env.pop("KAIZENML_PARALLEL_CACHE", None)
    env.update(env_extra)
    env["PYTHONPATH"] = str(pythonpath)
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _assert_cold_then_warm(first: dict, second: dict) -> None:
    assert first["rows_agree"] and second["rows_agree"]
    assert (first["rsi"], first["hist"]) == (second["rsi"], second["hist"])
    for name, (hits, misses) in first["stats"].items():
        assert hits == 0 and misses >= 1, f"{name} should compile in a cold cache"
    for name, (hits, misses) in second["stats"].items():
        assert hits >= 1 and misses == 0, f"{name} should load from a warm cache"


@pytest.mark.slow
def test_cold_and_warm_cache_with_parallel_kernels(tmp_path: Path) -> None:
    cache = tmp_path / "numba-cache"
    env = {"NUMBA_CACHE_DIR": str(cache)}
    first = _run(env, PACKAGE.parent)
    second = _run(env, PACKAGE.parent)
    _assert_cold_then_warm(first, second)
    assert any(cache.rglob("*.nbi"))
    # a warm cache written with the default thread count also serves a single-thread process
    third = _run({**env, "NUMBA_NUM_THREADS": "1"}, PACKAGE.parent)
    assert third["rows_agree"] and third["hist"] == first["hist"]


def _make_read_only(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def _make_writable(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        path.chmod(path.stat().st_mode | stat.S_IWUSR)


@pytest.mark.slow
def test_read_only_package_uses_the_user_cache(tmp_path: Path) -> None:
    site = tmp_path / "site-packages"
    shutil.copytree(PACKAGE, site / "kaizenml", ignore=shutil.ignore_patterns("__pycache__"))
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # permission bits do not stop root; a plain file where numba would create its
        # __pycache__ directory makes the package tree unwritable for it all the same
        (site / "kaizenml" / "indicators" / "__pycache__").write_text("")
    _make_read_only(site)
    before = sorted(p.relative_to(site) for p in site.rglob("*"))
    user_cache = tmp_path / "xdg-cache"
    env = {"XDG_CACHE_HOME": str(user_cache), "HOME": str(tmp_path / "home")}
    try:
        first = _run(env, site)
        second = _run(env, site)
    finally:
        _make_writable(site)
    assert Path(first["module"]).is_relative_to(site)
    _assert_cold_then_warm(first, second)
    assert sorted(p.relative_to(site) for p in site.rglob("*")) == before
    assert any((user_cache / "numba").rglob("*.nbi"))
