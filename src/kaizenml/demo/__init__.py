"""The end-to-end demo and its market data.

``kaizenml demo`` (or :func:`run_demo`) runs the continuous-improvement loop on generated or
user-supplied bars; :func:`kaizenml.demo.data.generate_ohlcv` is the seeded market-data
generator it uses, also handy for tests and notebooks.
"""

from __future__ import annotations

from typing import Any

from .data import generate_ohlcv, load_ohlcv

__all__ = ["generate_ohlcv", "load_ohlcv", "run_demo"]


def run_demo(**options: Any) -> Any:
    """Run the demo; see :func:`kaizenml.demo._run.run_demo` for the options."""
    from ._run import run_demo as _run_demo

    return _run_demo(**options)
