"""The feature cache: an in-memory LRU bounded in bytes, and an optional on-disk .npz layer.

Keys are hex digests built by the store from (feature name, version, definition hash, compute
function fingerprint, input-column fingerprints, symbol layout), so a changed definition or a
changed input simply misses; nothing is ever invalidated by time. Cached arrays are read-only:
a caller that mutates a result gets an error instead of silently corrupting later hits.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from ..storage import atomic_write_bytes, atomic_write_text, npz_bytes, read_npz

__all__ = ["FeatureCache"]

logger = logging.getLogger(__name__)

_KEY_RE = re.compile(r"^[0-9a-f]{16,128}$")


class FeatureCache:
    """LRU of ``key -> {column: array}`` bounded by ``max_bytes``, optionally backed by files."""

    def __init__(
        self, max_bytes: int, cache_dir: Path | None = None, max_disk_bytes: int | None = None
    ) -> None:
        self.max_bytes = int(max_bytes)
        self.cache_dir = cache_dir
        self.max_disk_bytes = max_disk_bytes
        self._entries: OrderedDict[str, dict[str, np.ndarray]] = OrderedDict()
        self._sizes: dict[str, int] = {}
        self.current_bytes = 0
        self.hits = 0
        self.misses = 0
        self.disk_hits = 0
        self._lock = threading.Lock()
        if cache_dir is not None:
            cache_dir.mkdir(parents=True, exist_ok=True)

    # -- memory -----------------------------------------------------------------------------
    def _insert(self, key: str, columns: dict[str, np.ndarray]) -> None:
        size = sum(a.nbytes for a in columns.values())
        if size > self.max_bytes:
            return  # never evict everything for one entry that cannot fit anyway
        old = self._entries.pop(key, None)
        if old is not None:
            self.current_bytes -= self._sizes.pop(key)
        self._entries[key] = columns
        self._sizes[key] = size
        self.current_bytes += size
        while self.current_bytes > self.max_bytes and self._entries:
            victim, _ = self._entries.popitem(last=False)
            self.current_bytes -= self._sizes.pop(victim)

    def get(self, key: str) -> dict[str, np.ndarray] | None:
        """The cached columns for ``key`` or None; counts a hit or a miss."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                return entry
        entry = self._load(key)
        with self._lock:
            if entry is None:
                self.misses += 1
                return None
            self.hits += 1
            self.disk_hits += 1
            self._insert(key, entry)
            return entry

    def put(self, key: str, columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Store read-only versions of ``columns`` and return them."""
        frozen = {}
        for name, arr in columns.items():
            arr = np.ascontiguousarray(arr)
            arr.flags.writeable = False
            frozen[name] = arr
        with self._lock:
            self._insert(key, frozen)
        if self.cache_dir is not None:
            self._save(key, frozen)
        return frozen

    def clear(self, *, disk: bool = True) -> None:
        """Drop every entry (and the files when ``disk``); counters restart at zero."""
        with self._lock:
            self._entries.clear()
            self._sizes.clear()
            self.current_bytes = 0
            self.hits = self.misses = self.disk_hits = 0
        if disk and self.cache_dir is not None:
            for path in self.cache_dir.glob("*.npz*"):
                try:
                    path.unlink()
                except FileNotFoundError:
                    pass

    def __len__(self) -> int:
        return len(self._entries)

    # -- disk -------------------------------------------------------------------------------
    def _paths(self, key: str) -> tuple[Path, Path]:
        assert self.cache_dir is not None and _KEY_RE.match(key)
        return self.cache_dir / f"{key}.npz", self.cache_dir / f"{key}.npz.sha256"

    def _save(self, key: str, columns: dict[str, np.ndarray]) -> None:
        data_path, sum_path = self._paths(key)
        try:
            digest = atomic_write_bytes(data_path, npz_bytes(columns))
            # the checksum lands after the data, so a reader never trusts a half-written pair
            atomic_write_text(sum_path, digest)
        except OSError as exc:  # a full or read-only disk degrades to a memory-only cache
            logger.warning("feature cache: could not write %s: %s", data_path, exc)
            return
        if self.max_disk_bytes is not None:
            self._trim_disk(keep=data_path)

    def _trim_disk(self, keep: Path) -> None:
        """Delete the least recently used files until the folder fits ``max_disk_bytes``."""
        assert self.cache_dir is not None and self.max_disk_bytes is not None
        files = []
        for path in self.cache_dir.glob("*.npz"):
            try:
                st = path.stat()
            except FileNotFoundError:  # removed by another process meanwhile
                continue
            files.append((st.st_mtime, st.st_size, path))
        total = sum(size for _mtime, size, _path in files)
        for _mtime, size, path in sorted(files):
            if total <= self.max_disk_bytes:
                break
            if path == keep:
                continue
            for victim in (path, path.with_name(path.name + ".sha256")):
                try:
                    victim.unlink()
                except FileNotFoundError:
                    pass
            total -= size

    def _load(self, key: str) -> dict[str, np.ndarray] | None:
        if self.cache_dir is None:
            return None
        data_path, sum_path = self._paths(key)
        try:
            expected = sum_path.read_text().strip()
            raw = data_path.read_bytes()
        except (FileNotFoundError, OSError):
            return None
        if hashlib.sha256(raw).hexdigest() != expected:
            logger.warning("feature cache: checksum mismatch for %s; ignoring it", data_path)
            for path in (data_path, sum_path):
                try:
                    os.unlink(path)
                except OSError:
                    pass
            return None
        columns = read_npz(raw)
        try:
            os.utime(data_path)  # recency for the disk bound's LRU order
        except OSError:
            pass
        for arr in columns.values():
            arr.flags.writeable = False
        return columns
