"""The on-disk numba cache: cold and warm starts, and a read-only package directory.

Each case runs fresh interpreters, because the cache only matters across processes. The
one-series kernels normally run ahead-of-time compiled, without numba; these runs turn that
off (``KAIZENML_AOT=0``) unless a case says otherwise, so the one-series kernels go through
numba's cache too.
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
import sys
import numpy as np
from kaizenml import indicators as ki

rng = np.random.default_rng(0)
x = 100 + np.cumsum(rng.normal(size=(4, 300)), axis=1)
high, low = x + 1.0, x - 1.0
last_rsi = float(ki.rsi(x[0])[-1])
numba_for_one_series = "numba" in sys.modules
from kaizenml.indicators import _kernels as k
batch_macd = ki.macd(x)
batch_stoch = ki.stochastic(high, low, x)
rows_agree = all(
    np.array_equal(batch_macd.hist[i], ki.macd(x[i]).hist, equal_nan=True)
    and np.array_equal(batch_stoch.d[i], ki.stochastic(high[i], low[i], x[i]).d, equal_nan=True)
    for i in range(len(x))
)
stats = {}
for name in ("_rsi_1d", "_macd_2d", "_stochastic_2d"):
    dispatcher = getattr(k, name)
    s = dispatcher.stats
    cached = type(dispatcher._cache).__name__ != "NullCache"
    stats[name] = [sum(s.cache_hits.values()), sum(s.cache_misses.values()), cached]
print(json.dumps({"rsi": last_rsi, "hist": float(batch_macd.hist[2, -1]),
                  "rows_agree": rows_agree, "stats": stats, "module": ki.__file__,
                  "numba_for_one_series": numba_for_one_series}))
"""


def _run(env_extra: dict[str, str], pythonpath: Path, *, stderr: list | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    env.pop("KAIZENML_PARALLEL_CACHE", None)
    env["KAIZENML_AOT"] = "0"
    env.update(env_extra)
    env["PYTHONPATH"] = str(pythonpath)
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    if stderr is not None:
        stderr.append(proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _assert_cold_then_warm(first: dict, second: dict) -> None:
    assert first["rows_agree"] and second["rows_agree"]
    assert (first["rsi"], first["hist"]) == (second["rsi"], second["hist"])
    for name, (hits, misses, cached) in first["stats"].items():
        assert cached and hits == 0 and misses >= 1, f"{name} should compile in a cold cache"
    for name, (hits, misses, cached) in second["stats"].items():
        assert cached and hits >= 1 and misses == 0, f"{name} should load from a warm cache"


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
    # and a process on numba's portable thread pool instead of the default layer
    fourth = _run({**env, "NUMBA_THREADING_LAYER": "workqueue"}, PACKAGE.parent)
    assert fourth["rows_agree"] and fourth["hist"] == first["hist"]


def _make_read_only(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def _make_writable(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        path.chmod(path.stat().st_mode | stat.S_IWUSR)


@pytest.mark.slow
@pytest.mark.skipif(
    sys.platform == "win32", reason="Windows ignores the read-only bit on directories"
)
def test_read_only_package_uses_the_user_cache(tmp_path: Path) -> None:
    site = tmp_path / "site-packages"
    shutil.copytree(PACKAGE, site / "kaizenml", ignore=shutil.ignore_patterns("__pycache__"))
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # permission bits do not stop root; a plain file where numba would create its
        # __pycache__ directory makes the package tree unwritable for it all the same
        (site / "kaizenml" / "indicators" / "__pycache__").write_text("")
    _make_read_only(site)
    before = sorted(p.relative_to(site) for p in site.rglob("*"))
    # the user cache directory: $XDG_CACHE_HOME on Linux, under $HOME on macOS
    home = tmp_path / "home"
    env = {"XDG_CACHE_HOME": str(tmp_path / "xdg-cache"), "HOME": str(home)}
    try:
        first = _run(env, site)
        second = _run(env, site)
    finally:
        _make_writable(site)
    assert Path(first["module"]).is_relative_to(site)
    _assert_cold_then_warm(first, second)
    assert sorted(p.relative_to(site) for p in site.rglob("*")) == before
    index_files = [p for p in tmp_path.rglob("*.nbi") if not p.is_relative_to(site)]
    assert index_files and all("numba" in p.parts for p in index_files)
    # with the ahead-of-time kernels (the default) a one-series call needs no cache at all
    _make_read_only(site)
    try:
        default = _run({**env, "KAIZENML_AOT": "1"}, site)
    finally:
        _make_writable(site)
    assert not default["numba_for_one_series"] and first["numba_for_one_series"]
    assert (default["rsi"], default["hist"]) == (first["rsi"], first["hist"])


@pytest.mark.slow
@pytest.mark.skipif(
    sys.platform == "win32", reason="Windows ignores the read-only bit on directories"
)
def test_no_writable_cache_directory_anywhere_still_computes(tmp_path: Path) -> None:
    site = tmp_path / "site-packages"
    shutil.copytree(PACKAGE, site / "kaizenml", ignore=shutil.ignore_patterns("__pycache__"))
    # plain files where numba would create its cache directories: none can be made, even as
    # root, so numba has no cache location at all
    (site / "kaizenml" / "indicators" / "__pycache__").write_text("")
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    _make_read_only(site)
    env = {"XDG_CACHE_HOME": str(blocked), "HOME": str(blocked)}
    messages: list[str] = []
    try:
        result = _run(env, site, stderr=messages)
    finally:
        _make_writable(site)
    assert result["rows_agree"]
    assert "no writable numba cache directory" in messages[0]
    for name, (_, _, cached) in result["stats"].items():
        assert not cached, f"{name} should run without an on-disk cache"
    # same numbers as the cached build
    reference = _run({"NUMBA_CACHE_DIR": str(tmp_path / "cache")}, PACKAGE.parent)
    assert (result["rsi"], result["hist"]) == (reference["rsi"], reference["hist"])
