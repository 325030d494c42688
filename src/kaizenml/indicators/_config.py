"""Compilation settings shared by the indicator kernels.

The serial kernels are always cached on disk. The parallel batch kernels are cached too: their
first compilation costs seconds per indicator, which would otherwise be paid again by every new
process. The combination of ``cache=True`` and ``parallel=True`` is exercised by the test suite
with a cold and a warm cache, a different thread count and a read-only package directory. If a
platform misbehaves, ``KAIZENML_PARALLEL_CACHE=0`` in the environment compiles the batch
kernels in memory instead.

Where the cache lives is numba's choice, in this order: ``NUMBA_CACHE_DIR`` when set, the
package's own ``__pycache__`` when it is writable, otherwise the user's cache directory
(``~/.cache/numba`` on Linux, honouring ``XDG_CACHE_HOME``). A read-only site-packages therefore
still gets a warm cache after the first run.
"""

from __future__ import annotations

import os

__all__ = ["PARALLEL_CACHE"]

PARALLEL_CACHE = os.environ.get("KAIZENML_PARALLEL_CACHE", "1").strip().lower() not in (
    "0",
    "false",
    "no",
    "off",
)
