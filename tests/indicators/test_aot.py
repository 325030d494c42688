"""The ahead-of-time compiled one-series kernels (``kaizenml._ext._aot``).

They must be built by a source install on this machine, give the same bits as numba's
just-in-time kernels for every input (gaps, flat stretches, zero volume included), and keep a
fresh process's one-series calls free of any numba import.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import kaizenml
from kaizenml.indicators import _aot
from kaizenml.indicators import _kernels as jit

PACKAGE_PARENT = Path(kaizenml.__file__).resolve().parent.parent
N = 700


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.flags.writeable = False
    return a


@pytest.fixture(scope="module")
def aot():
    module = _aot.load()
    assert module is not None, (
        "kaizenml._ext._aot is missing or was built for another CPU: install kaizenml from "
        "source on this machine (pip install .) or build it with python setup.py build_ext"
    )
    return module


@pytest.fixture(scope="module")
def bars() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    close = 100 + np.cumsum(rng.normal(size=N))
    close[100:140] = close[99]  # a flat stretch: zero spread
    close[[200, 201, 450]] = np.nan
    close[300] = np.inf
    spread = np.abs(rng.normal(size=N))
    volume = rng.integers(0, 1000, size=N).astype(float)
    volume[500:540] = 0.0  # a window of zero volume
    volume[600] = np.nan
    ticks = np.sort(rng.integers(0, 40 * 86400, size=N))
    return {
        "close": _frozen(close),
        "high": _frozen(close + spread),
        "low": _frozen(close - spread),
        "volume": _frozen(volume),
        "ticks": _frozen(ticks.astype(np.int64)),
    }


def _outs(count: int, size: int, init: np.ndarray | None) -> list[np.ndarray]:
    return [np.full(size, -12345.0) if init is None else init.copy() for _ in range(count)]


def _log_returns(close: np.ndarray) -> np.ndarray:
    out = np.full(close.shape, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        out[1:] = np.log(close[1:] / close[:-1])
    return out


Case = tuple[tuple, int, int, "np.ndarray | None"]


def _windows(kernel_args: Callable[[dict, int], tuple], windows: tuple, n_out: int = 1) -> list:
    return [lambda b, w=w: (kernel_args(b, w), n_out, N, None) for w in windows]


# kernel name -> functions of the bars giving (arguments before the outputs, number of outputs,
# length of each output, initial content of the outputs or None)
CASES: dict[str, list[Callable[[dict], Case]]] = {
    "_sma_1d": _windows(lambda b, w: (b["close"], w), (1, 5, 30)),
    "_ema_1d": _windows(lambda b, w: (b["close"], w), (1, 12, 30)),
    "_rsi_1d": _windows(lambda b, w: (b["close"], w), (2, 14)),
    "_macd_1d": [
        lambda b: ((b["close"], 12, 26, 9), 3, N, None),
        lambda b: ((b["close"], 3, 5, 2), 3, N, None),
    ],
    "_std_1d": _windows(lambda b, w: (b["close"], w, w % 2), (5, 20, 200)),
    "_zscore_1d": _windows(lambda b, w: (b["close"], w, w % 2), (5, 20)),
    "_bollinger_1d": _windows(lambda b, w: (b["close"], w, 1.5), (5, 20), n_out=5),
    # the volatility kernel runs in place over the log returns already in its output
    "_volatility_1d": [
        lambda b, w=w: ((b["close"], w, 1, 2.0, np.empty(w)), 1, N, _log_returns(b["close"]))
        for w in (2, 20)
    ],
    "_lag_1d": [
        lambda b, h=h, kind=kind: ((b["close"], h, kind), 1, N, None)
        for h in (1, 10)
        for kind in range(4)
    ],
    "_volume_ratio_1d": _windows(lambda b, w: (b["volume"], w), (1, 20)),
    "_atr_1d": _windows(lambda b, w: (b["high"], b["low"], b["close"], w), (1, 14)),
    "_stochastic_1d": [
        lambda b: (
            (b["high"], b["low"], b["close"], 14, 3, 3, np.empty(3), np.empty(3)),
            2,
            N,
            None,
        )
    ],
    "_obv_1d": [lambda b: ((b["close"], b["volume"]), 1, N, None)],
    "_calendar_slots": [lambda b, p=p: ((p,), 0, 0, None) for p in (86400, 86_400_000_000)],
    "_hour_table": [lambda b: ((86400,), 2, 1440, None)],
    "_day_table": [lambda b: ((), 2, 7, None)],
    "_hour_of_day_1d": [lambda b: ((b["ticks"], 86400, *_hour_tables()), 2, N, None)],
    "_day_of_week_1d": [lambda b: ((b["ticks"], 86400, *_day_tables()), 2, N, None)],
}


def _hour_tables() -> tuple[np.ndarray, np.ndarray]:
    tab_sin, tab_cos = np.empty(1440), np.empty(1440)
    jit._hour_table(86400, tab_sin, tab_cos)
    return tab_sin, tab_cos


def _day_tables() -> tuple[np.ndarray, np.ndarray]:
    tab_sin, tab_cos = np.empty(7), np.empty(7)
    jit._day_table(tab_sin, tab_cos)
    return tab_sin, tab_cos


def test_every_export_has_a_case() -> None:
    assert set(CASES) == set(_aot.EXPORTS)


@pytest.mark.parametrize("name", sorted(_aot.EXPORTS))
def test_export_equals_the_jit_kernel_bit_for_bit(aot, bars, name: str) -> None:
    for case in CASES[name]:
        args, n_out, size, init = case(bars)
        ours, theirs = _outs(n_out, size, init), _outs(n_out, size, init)
        got = getattr(aot, name)(*args, *ours)
        expected = getattr(jit, name)(*args, *theirs)
        assert got == expected
        for a, b in zip(ours, theirs, strict=True):
            assert np.array_equal(a, b, equal_nan=True), name
            assert not np.any(a == -12345.0), f"{name} left an output element unwritten"


def test_public_functions_use_the_aot_kernels(aot) -> None:
    assert _aot.kernels._rsi_1d is aot._rsi_1d
    assert _aot.kernels._rsi_2d is jit._rsi_2d


def test_another_cpu_or_the_switch_falls_back_to_numba(monkeypatch) -> None:
    monkeypatch.setattr(_aot, "target_id", lambda: -1)
    assert _aot._find() is None
    monkeypatch.undo()
    monkeypatch.setenv("KAIZENML_AOT", "0")
    assert _aot._find() is None
    monkeypatch.setenv("KAIZENML_AOT", "1")
    assert _aot._find() is not None


def test_target_id_is_stable_and_positive() -> None:
    assert _aot.target_id() == _aot.target_id() > 0


FRESH = r"""
import json, sys
import numpy as np
from kaizenml import indicators as ki
rng = np.random.default_rng(3)
c = 100 + np.cumsum(rng.normal(size=500))
h, lo, v = c + 1, c - 1, rng.uniform(1, 9, size=500)
t = np.arange(500) * 3600
results = [ki.sma(c), ki.ema(c), ki.rsi(c), *ki.macd(c), ki.rolling_std(c), ki.zscore(c),
           *ki.bollinger(c), ki.volatility(c), ki.returns(c), ki.momentum(c), ki.roc(c),
           ki.volume_ratio(v), ki.atr(h, lo, c), *ki.stochastic(h, lo, c), ki.obv(c, v),
           *ki.hour_of_day(t), *ki.day_of_week(t)]
print(json.dumps({"numba": "numba" in sys.modules,
                  "sums": [float(np.nansum(r)) for r in results]}))
"""


def _fresh(aot_switch: str) -> dict:
    env = {**os.environ, "KAIZENML_AOT": aot_switch, "PYTHONPATH": str(PACKAGE_PARENT)}
    proc = subprocess.run(
        [sys.executable, "-c", FRESH], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_fresh_process_computes_every_one_series_indicator_without_numba(aot) -> None:
    ahead = _fresh("1")
    just_in_time = _fresh("0")
    assert not ahead["numba"]
    assert just_in_time["numba"]
    assert ahead["sums"] == just_in_time["sums"]


def _longest_main_thread_pause(kernel, x: np.ndarray, out: np.ndarray) -> tuple[float, float]:
    """Run ``kernel`` on a worker thread while this thread stamps the time of each loop
    iteration; return the longest gap between stamps during the call and the call's length."""
    call: list[float] = []
    done = threading.Event()

    def work() -> None:
        call.append(time.perf_counter())
        kernel(x, 14, out)
        call.append(time.perf_counter())
        done.set()

    worker = threading.Thread(target=work)
    stamps: list[float] = []
    worker.start()
    while not done.is_set():
        stamps.append(time.perf_counter())
    worker.join()
    during = np.array([call[0], *(t for t in stamps if call[0] < t < call[1]), call[1]])
    return float(np.diff(during).max()), call[1] - call[0]


def test_aot_kernels_release_the_gil(aot) -> None:
    """The feature store runs one-series kernels in threads: they must not hold the GIL.

    With the GIL held, this thread would stop for the whole call: one gap between its stamps
    about as long as the call, in every attempt. Released, the stamps keep coming (an attempt
    may still see a long gap when the machine deschedules this thread, hence three tries).
    """
    x = _frozen(100 + np.cumsum(np.random.default_rng(0).normal(size=20_000_000)))
    out = np.empty_like(x)
    attempts = [_longest_main_thread_pause(aot._rsi_1d, x, out) for _ in range(3)]
    assert any(pause < 0.5 * length for pause, length in attempts), attempts
    assert np.isfinite(out[-1])
