"""The serial indicator kernels compiled ahead of time, so a fresh process starts without numba.

``setup.py`` compiles every kernel named in :data:`EXPORTS` with numba's ahead-of-time compiler
(``numba.pycc``) for the build machine's CPU into the extension ``kaizenml._ext._aot``; the
source is the same Python function the just-in-time path compiles, so both give the same bits.
The validated wrappers in ``_api`` reach the kernels through :data:`kernels`, which takes a
kernel from that extension when it exists and was compiled for this CPU, and from numba's
just-in-time ``_kernels`` otherwise (the 2-D batch kernels always: they run on threads).

Importing numba and setting up its compiler costs a fresh process most of a second; a one-series
indicator call through the ahead-of-time kernels needs neither. The CPU check is the one numba
makes for its own on-disk cache (target triple, CPU name and feature flags): machine code built
for another CPU could use instructions this one lacks, so it is never loaded here.
``KAIZENML_AOT=0`` in the environment turns the extension off.
"""

from __future__ import annotations

import hashlib
import importlib
import os
from types import ModuleType
from typing import Any

__all__ = ["EXPORTS", "kernels", "load", "target_id"]

# Argument codes: "x" a read-only C-contiguous float64 series, "t" a read-only C-contiguous int64
# series (timestamps), "out" a writable C-contiguous float64 array, "i" an int64 scalar, "f" a
# float64 scalar. Each entry: kernel name -> (return code or None, argument codes).
EXPORTS: dict[str, tuple[str | None, tuple[str, ...]]] = {
    "_sma_1d": (None, ("x", "i", "out")),
    "_ema_1d": (None, ("x", "i", "out")),
    "_rsi_1d": (None, ("x", "i", "out")),
    "_macd_1d": (None, ("x", "i", "i", "i", "out", "out", "out")),
    "_std_1d": (None, ("x", "i", "i", "out")),
    "_zscore_1d": (None, ("x", "i", "i", "out")),
    "_bollinger_1d": (None, ("x", "i", "f", "out", "out", "out", "out", "out")),
    "_volatility_1d": (None, ("x", "i", "i", "f", "out", "out")),
    "_lag_1d": (None, ("x", "i", "i", "out")),
    "_volume_ratio_1d": (None, ("x", "i", "out")),
    "_atr_1d": (None, ("x", "x", "x", "i", "out")),
    "_stochastic_1d": (None, ("x", "x", "x", "i", "i", "i", "out", "out", "out", "out")),
    "_obv_1d": (None, ("x", "x", "out")),
    "_calendar_slots": ("i", ("i",)),
    "_hour_table": (None, ("i", "out", "out")),
    "_day_table": (None, ("out", "out")),
    "_hour_of_day_1d": (None, ("t", "i", "out", "out", "out", "out")),
    "_day_of_week_1d": (None, ("t", "i", "out", "out", "out", "out")),
}

EXTENSION = "kaizenml._ext._aot"
TARGET_FUNCTION = "_target_id"

_UNSET = object()
_module: Any = _UNSET


def target_id() -> int:
    """A 63-bit fingerprint of the CPU the just-in-time compiler would target in this process.

    Built from llvmlite alone (no numba import): the process triple, the host CPU name and its
    feature flags. ``setup.py`` stores the build machine's value in the extension.
    """
    import llvmlite.binding as llvm

    text = "|".join(
        (
            llvm.get_process_triple(),
            llvm.get_host_cpu_name(),
            llvm.get_host_cpu_features().flatten(),
        )
    )
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def load() -> ModuleType | None:
    """The ahead-of-time kernels, or None when absent, built for another CPU or turned off."""
    global _module
    if _module is _UNSET:
        _module = _find()
    return _module  # type: ignore[no-any-return]


def _find() -> ModuleType | None:
    if os.environ.get("KAIZENML_AOT", "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    try:
        module = importlib.import_module(EXTENSION)
    except ImportError:
        return None
    if getattr(module, TARGET_FUNCTION)() != target_id():
        return None
    return module


class _KernelTable:
    """Attribute access to a kernel by name: ahead of time where built, else just in time."""

    def __getattr__(self, name: str) -> Any:
        kernel = None
        if name in EXPORTS:
            module = load()
            if module is not None:
                kernel = getattr(module, name)
        if kernel is None:
            from . import _kernels

            kernel = getattr(_kernels, name)
        setattr(self, name, kernel)  # later lookups skip __getattr__
        return kernel


kernels: Any = _KernelTable()
