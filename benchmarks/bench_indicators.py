"""Speed of kaizenml.indicators against TA-Lib and pandas, timed in the same run.

Two ways to run it:

* ``PYTHONPATH=src python -m pytest benchmarks/bench_indicators.py`` (pytest-benchmark): one
  group per indicator and workload, ours next to the peer.
* ``PYTHONPATH=src python benchmarks/bench_indicators.py`` prints the markdown tables of
  benchmarks/indicators.md with ratios (ours / peer, lower is better), using the minimum of
  several whole calls (allocation included).

Workloads: one series of 10**6 points; a batch of 2000 series x 5000 points (a 2-D array for
the loop over TA-Lib, a DataFrame with one column per series for pandas); the cold start of a
fresh interpreter that imports kaizenml and computes its first RSI, next to the same with
TA-Lib and with kaizenml's ahead-of-time kernels turned off (numba's warm on-disk cache).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from kaizenml import indicators as ki

talib = pytest.importorskip("talib") if "pytest" in sys.modules else __import__("talib")
pd = pytest.importorskip("pandas") if "pytest" in sys.modules else __import__("pandas")

N_SINGLE = 1_000_000
N_SERIES, N_POINTS = 2000, 5000


def _bars(shape: tuple[int, ...], seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, shape), axis=-1))
    spread = close * rng.uniform(0.0, 0.02, shape)
    return {
        "close": close,
        "high": close + spread * rng.uniform(0.0, 1.0, shape),
        "low": close - spread * rng.uniform(0.0, 1.0, shape),
        "volume": rng.lognormal(10.0, 1.0, shape).round(),
    }


def _talib_bands_with_position(close: np.ndarray) -> tuple:
    """BBANDS plus the position and bandwidth outputs computed with numpy, like ours."""
    upper, middle, lower = talib.BBANDS(close, 20, 2.0, 2.0, 0)
    return middle, upper, lower, (close - lower) / (upper - lower), (upper - lower) / middle


# name -> (ours(d), TA-Lib on one 1-D series(d))
Pair = tuple[Callable[[dict], Any], Callable[[dict], Any]]
TALIB: dict[str, Pair] = {
    "sma": (lambda d: ki.sma(d["close"], 30), lambda d: talib.SMA(d["close"], 30)),
    "ema": (lambda d: ki.ema(d["close"], 30), lambda d: talib.EMA(d["close"], 30)),
    "rsi": (lambda d: ki.rsi(d["close"], 14), lambda d: talib.RSI(d["close"], 14)),
    "macd": (lambda d: ki.macd(d["close"]), lambda d: talib.MACD(d["close"], 12, 26, 9)),
    "bollinger": (
        lambda d: ki.bollinger(d["close"], 20, 2.0),
        lambda d: talib.BBANDS(d["close"], 20, 2.0, 2.0, 0),
    ),
    "bollinger+position": (
        lambda d: ki.bollinger(d["close"], 20, 2.0),
        lambda d: _talib_bands_with_position(d["close"]),
    ),
    "rolling_std": (
        lambda d: ki.rolling_std(d["close"], 5),
        lambda d: talib.STDDEV(d["close"], 5, 1.0),
    ),
    "momentum": (lambda d: ki.momentum(d["close"], 10), lambda d: talib.MOM(d["close"], 10)),
    "roc": (lambda d: ki.roc(d["close"], 10), lambda d: talib.ROC(d["close"], 10)),
    "returns": (lambda d: ki.returns(d["close"], 1), lambda d: talib.ROCP(d["close"], 1)),
    "atr": (
        lambda d: ki.atr(d["high"], d["low"], d["close"], 14),
        lambda d: talib.ATR(d["high"], d["low"], d["close"], 14),
    ),
    "stochastic": (
        lambda d: ki.stochastic(d["high"], d["low"], d["close"]),
        lambda d: talib.STOCH(d["high"], d["low"], d["close"], 5, 3, 0, 3, 0),
    ),
    "obv": (
        lambda d: ki.obv(d["close"], d["volume"]),
        lambda d: talib.OBV(d["close"], d["volume"]),
    ),
}
_ROWS: dict[int, list[dict[str, np.ndarray]]] = {}


def _rows(d: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """The batch as one dict of row views per series, built once outside the timings."""
    if id(d) not in _ROWS:
        _ROWS[id(d)] = [{k: v[i] for k, v in d.items()} for i in range(len(d["close"]))]
    return _ROWS[id(d)]


def _loop(one_series: Callable[[dict], Any]) -> Callable[[dict], Any]:
    return lambda d: [one_series(row) for row in _rows(d)]


# the Python loop over the rows of the batch, calling TA-Lib once per series
TALIB_LOOP: dict[str, Callable[[dict], Any]] = {
    name: _loop(pair[1]) for name, pair in TALIB.items()
}


def _pd_rsi(c: Any, w: int) -> Any:
    delta = c.diff()
    up = delta.clip(lower=0.0).ewm(alpha=1.0 / w, adjust=False).mean()
    down = (-delta).clip(lower=0.0).ewm(alpha=1.0 / w, adjust=False).mean()
    return 100.0 * up / (up + down)


def _pd_macd(c: Any) -> tuple:
    line = c.ewm(span=12, adjust=False).mean() - c.ewm(span=26, adjust=False).mean()
    signal = line.ewm(span=9, adjust=False).mean()
    return line, signal, line - signal


def _pd_bollinger(c: Any, w: int = 20, k: float = 2.0) -> tuple:
    roll = c.rolling(w)
    mid = roll.mean()
    sd = roll.std(ddof=0)
    up, lo = mid + k * sd, mid - k * sd
    return mid, up, lo, (c - lo) / (up - lo), (up - lo) / mid


def _pd_true_range(h: Any, lo: Any, c: Any) -> Any:
    prev = c.shift(1)
    return np.maximum(h - lo, np.maximum((h - prev).abs(), (lo - prev).abs()))


def _pd_stoch(h: Any, lo: Any, c: Any) -> tuple:
    hh = h.rolling(5).max()
    ll = lo.rolling(5).min()
    k = (100.0 * (c - ll) / (hh - ll)).rolling(3).mean()
    return k, k.rolling(3).mean()


# name -> (ours on DataFrames, the pandas equivalent on DataFrames)
PANDAS: dict[str, Pair] = {
    "sma": (lambda f: ki.sma(f["close"], 30), lambda f: f["close"].rolling(30).mean()),
    "ema": (
        lambda f: ki.ema(f["close"], 30),
        lambda f: f["close"].ewm(span=30, adjust=False).mean(),
    ),
    "rsi": (lambda f: ki.rsi(f["close"], 14), lambda f: _pd_rsi(f["close"], 14)),
    "macd": (lambda f: ki.macd(f["close"]), lambda f: _pd_macd(f["close"])),
    "bollinger": (lambda f: ki.bollinger(f["close"]), lambda f: _pd_bollinger(f["close"])),
    "rolling_std": (
        lambda f: ki.rolling_std(f["close"], 5),
        lambda f: f["close"].rolling(5).std(ddof=0),
    ),
    "zscore": (
        lambda f: ki.zscore(f["close"], 20),
        lambda f: (f["close"] - f["close"].rolling(20).mean()) / f["close"].rolling(20).std(ddof=0),
    ),
    "volatility": (
        lambda f: ki.volatility(f["close"], 20),
        lambda f: np.log(f["close"]).diff().rolling(20).std(),
    ),
    "returns": (lambda f: ki.returns(f["close"]), lambda f: f["close"].pct_change()),
    "momentum": (lambda f: ki.momentum(f["close"], 10), lambda f: f["close"].diff(10)),
    "roc": (lambda f: ki.roc(f["close"], 10), lambda f: f["close"].pct_change(10) * 100.0),
    "volume_ratio": (
        lambda f: ki.volume_ratio(f["volume"], 20),
        lambda f: f["volume"] / f["volume"].rolling(20).mean(),
    ),
    "atr": (
        lambda f: ki.atr(f["high"], f["low"], f["close"], 14),
        lambda f: (
            _pd_true_range(f["high"], f["low"], f["close"]).ewm(alpha=1.0 / 14, adjust=False).mean()
        ),
    ),
    "stochastic": (
        lambda f: ki.stochastic(f["high"], f["low"], f["close"]),
        lambda f: _pd_stoch(f["high"], f["low"], f["close"]),
    ),
    "obv": (
        lambda f: ki.obv(f["close"], f["volume"]),
        lambda f: (np.sign(f["close"].diff()).fillna(0.0) * f["volume"]).cumsum(),
    ),
}

_DATA: dict[str, Any] = {}


def single() -> dict[str, np.ndarray]:
    if "single" not in _DATA:
        _DATA["single"] = _bars((N_SINGLE,))
    return _DATA["single"]


def batch() -> dict[str, np.ndarray]:
    if "batch" not in _DATA:
        _DATA["batch"] = _bars((N_SERIES, N_POINTS), seed=1)
    return _DATA["batch"]


def frames() -> dict[str, Any]:
    if "frames" not in _DATA:
        _DATA["frames"] = {k: pd.DataFrame(v.T) for k, v in batch().items()}
    return _DATA["frames"]


COLD_START = {
    "kaizenml": "import numpy as np\nimport kaizenml.indicators as ki\nki.rsi(np.arange(1000.0))\n",
    "TA-Lib": "import numpy as np\nimport talib\ntalib.RSI(np.arange(1000.0))\n",
}
# the same kaizenml script with the ahead-of-time kernels turned off: numba compiles or loads
# the kernel from its on-disk cache, as before the kernels were compiled ahead of time
COLD_VARIANTS = {
    "kaizenml": ("kaizenml", {}),
    "kaizenml, numba just in time (KAIZENML_AOT=0)": ("kaizenml", {"KAIZENML_AOT": "0"}),
    "TA-Lib": ("TA-Lib", {}),
}


def _fresh_process(script: str, extra_env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of one fresh interpreter running ``script``, exit included."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", script], env={**os.environ, **extra_env}, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def cold_start(repeats: int = 7) -> dict[str, tuple[float, float]]:
    """Best wall and CPU seconds of a fresh interpreter's import + first RSI, per variant.

    Each variant runs once untimed first (so numba's cache is warm for the just-in-time
    variant), then the variants take turns so all see the same load.
    """
    for key, env in COLD_VARIANTS.values():
        _fresh_process(COLD_START[key], env)
    walls: dict[str, list[float]] = {name: [] for name in COLD_VARIANTS}
    cpus: dict[str, list[float]] = {name: [] for name in COLD_VARIANTS}
    for _ in range(repeats):
        for name, (key, env) in COLD_VARIANTS.items():
            wall, cpu = _fresh_process(COLD_START[key], env)
            walls[name].append(wall)
            cpus[name].append(cpu)
    return {name: (min(walls[name]), min(cpus[name])) for name in COLD_VARIANTS}


_PHASES = """
import sys, time
start = float(sys.argv[1])
t0 = time.time()
import numpy as np
t1 = time.time()
import kaizenml.indicators as ki
t2 = time.time()
ki.rsi(np.arange(1000.0))
t3 = time.time()
print(t0 - start, t1 - t0, t2 - t1, t3 - t2, t3, "numba" in sys.modules)
"""


def cold_start_phases(repeats: int = 5) -> dict[str, float]:
    """Best seconds per phase of a fresh interpreter's import + first RSI.

    Phases: interpreter start-up (with site), numpy, kaizenml's modules, the first RSI (loading
    the ahead-of-time kernels and checking they were built for this CPU) and interpreter exit.
    Raises if numba was imported along the way.
    """
    names = ["start-up", "numpy", "kaizenml", "first rsi", "exit", "wall"]
    best = dict.fromkeys(names, float("inf"))
    for _ in range(repeats + 1):
        start = time.time()
        out = subprocess.run(
            [sys.executable, "-c", _PHASES, repr(start)],
            env=dict(os.environ),
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
        end = time.time()
        if out[5] != "False":
            raise RuntimeError("the first one-series RSI imported numba")
        values = [float(v) for v in out[:4]] + [end - float(out[4]), end - start]
        for name, value in zip(names, values, strict=True):
            best[name] = min(best[name], value)
    return best


# --------------------------------------------------------------------------- pytest-benchmark


@pytest.mark.parametrize("side", ["kaizenml", "talib"])
@pytest.mark.parametrize("name", list(TALIB))
def test_single_series(benchmark, name: str, side: str) -> None:
    benchmark.group = f"single 1e6: {name}"
    fn = TALIB[name][0 if side == "kaizenml" else 1]
    benchmark(fn, single())


@pytest.mark.parametrize("side", ["kaizenml", "talib-loop"])
@pytest.mark.parametrize("name", ["rsi", "ema", "sma", "macd", "bollinger", "atr"])
def test_batch_vs_talib(benchmark, name: str, side: str) -> None:
    benchmark.group = f"batch 2000x5000 vs TA-Lib: {name}"
    _rows(batch())
    fn = TALIB[name][0] if side == "kaizenml" else TALIB_LOOP[name]
    benchmark.pedantic(fn, args=(batch(),), rounds=3, warmup_rounds=1)


@pytest.mark.parametrize("side", ["kaizenml", "pandas"])
@pytest.mark.parametrize("name", ["rsi", "ema", "sma", "macd", "bollinger", "zscore"])
def test_batch_vs_pandas(benchmark, name: str, side: str) -> None:
    benchmark.group = f"batch 2000x5000 vs pandas: {name}"
    fn = PANDAS[name][0 if side == "kaizenml" else 1]
    benchmark.pedantic(fn, args=(frames(),), rounds=2, warmup_rounds=1)


def test_cold_start() -> None:
    """Fresh process: import + first RSI, kaizenml next to TA-Lib (target: under 0.6 s)."""
    results = cold_start(repeats=5)
    for name, (wall, cpu) in results.items():
        print(f"cold start {name}: wall {wall:.3f} s, CPU {cpu:.3f} s")
    assert results["kaizenml"][0] < 0.6


# --------------------------------------------------------------------------- table mode


def _copy_rows() -> Callable[..., None]:
    import numba

    @numba.njit(parallel=True, nogil=True, cache=False)
    def copy_rows(x: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - compiled
        for r in numba.prange(x.shape[0]):
            for i in range(x.shape[1]):
                out[r, i] = x[r, i]

    return copy_rows


def memory_floor(outputs: int, repeats: int = 5) -> float:
    """Best time to produce ``outputs`` fresh float64 arrays of the batch's shape, each a copy
    of the close prices made by a parallel numba loop (the batch kernels' own machinery with
    no arithmetic). Any implementation that returns that many new arrays pays about this much
    on this machine (page faults of fresh memory and memory bandwidth), so
    ``peer time / floor`` bounds the speed-up it can reach."""
    copy_rows = _copy_rows()
    x = batch()["close"]

    def once() -> list[np.ndarray]:
        outs = [np.empty_like(x) for _ in range(outputs)]
        for out in outs:
            copy_rows(x, out)
        return outs

    once()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        once()
        best = min(best, time.perf_counter() - start)
    return best


def _outputs(result: Any) -> int:
    return len(result) if isinstance(result, tuple) else 1


def _pair(ours: Callable[[Any], Any], peer: Callable[[Any], Any], arg: Any, repeats: int) -> tuple:
    """Best times of ours and the peer, measured alternately so both see the same load."""
    ours(arg)
    peer(arg)
    mine, theirs = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        ours(arg)
        mine.append(time.perf_counter() - start)
        start = time.perf_counter()
        peer(arg)
        theirs.append(time.perf_counter() - start)
    return min(mine), min(theirs)


def main() -> None:
    import numba

    print(
        f"numba {numba.__version__}, threads {numba.get_num_threads()}, "
        f"TA-Lib {talib.__version__} (C {talib.__ta_version__.decode().split()[0]}), "
        f"pandas {pd.__version__}, load average {os.getloadavg()[0]:.1f}\n"
    )
    print("| indicator | kaizenml (ms) | TA-Lib (ms) | ratio |")
    print("|---|---:|---:|---:|")
    for name, (ours, theirs) in TALIB.items():
        a, b = _pair(ours, theirs, single(), 25)
        print(f"| {name} | {a * 1e3:.2f} | {b * 1e3:.2f} | {a / b:.2f} |")
    print("\n| indicator | kaizenml (ms) | TA-Lib loop (ms) | speed-up |")
    print("|---|---:|---:|---:|")
    _rows(batch())
    for name, (ours, _) in TALIB.items():
        a, b = _pair(ours, TALIB_LOOP[name], batch(), 4)
        print(f"| {name} | {a * 1e3:.0f} | {b * 1e3:.0f} | {b / a:.1f}x |")
    print(
        "\n| indicator | kaizenml (ms) | pandas (ms) | speed-up | memory floor (ms) "
        "| largest possible speed-up |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    floors: dict[int, float] = {}
    for name, (ours, theirs) in PANDAS.items():
        a, b = _pair(ours, theirs, frames(), 3)
        k = _outputs(ours(frames()))
        if k not in floors:
            floors[k] = memory_floor(k)
        print(
            f"| {name} | {a * 1e3:.0f} | {b * 1e3:.0f} | {b / a:.1f}x | {floors[k] * 1e3:.0f} "
            f"| {b / floors[k]:.1f}x |"
        )
    print("\n| fresh process: import + first RSI | wall (s) | CPU (s) | wall / TA-Lib's |")
    print("|---|---:|---:|---:|")
    results = cold_start()
    peer_wall = results["TA-Lib"][0]
    for name, (wall, cpu) in results.items():
        print(f"| {name} | {wall:.3f} | {cpu:.3f} | {wall / peer_wall:.2f} |")
    phases = cold_start_phases()
    print(
        "\nkaizenml cold start phases (best of 5, s): "
        + ", ".join(f"{name} {value:.3f}" for name, value in phases.items())
    )


if __name__ == "__main__":
    main()
