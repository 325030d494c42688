"""Compilation settings shared by the indicator kernels."""

from __future__ import annotations

__all__ = ["PARALLEL_CACHE"]

# Whether the prange batch kernels are cached on disk like the serial ones.
PARALLEL_CACHE = False
