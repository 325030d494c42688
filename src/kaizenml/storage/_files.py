"""Atomic, checksummed file writes for artifacts and caches."""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np


def fsync_dir(path: Path) -> None:
    """Flush a directory entry so a rename inside it survives a power cut (no-op on Windows)."""
    if os.name == "nt":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> str:
    """Write ``data`` to ``path`` atomically and return its sha256 hex digest.

    The bytes go to a temporary file in the same folder, are fsynced, then renamed over
    ``path``: a reader sees either the old file or the whole new one, never a part.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(target.parent)
    return hashlib.sha256(data).hexdigest()


def atomic_write_text(path: str | os.PathLike[str], text: str) -> str:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def sha256_file(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    """The sha256 hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            block = fh.read(chunk_size)
            if not block:
                break
            digest.update(block)
    return digest.hexdigest()


def write_npz(fileobj: Any, arrays: Mapping[str, np.ndarray], piece: int = 1 << 18) -> None:
    """Write ``arrays`` to ``fileobj`` in the ``.npz`` layout of ``np.savez`` (an uncompressed
    zip of ``.npy`` members), straight from the arrays' memory.

    Written member by member, so any key is a valid member name: ``np.savez(f, **arrays)``
    fails or silently drops arrays named after its own arguments (``file``, ``allow_pickle``).
    ``fileobj`` may be unseekable (no ``tell``): zipfile then writes each member's sizes and
    CRC after its data. The data goes out in pieces of ``piece`` bytes.
    """
    with zipfile.ZipFile(
        fileobj, "w", compression=zipfile.ZIP_STORED, allowZip64=True
    ) as zf:
        for key, array in arrays.items():
            with zf.open(f"{key}.npy", "w", force_zip64=True) as member:
                _write_npy(member, array, piece)


def _write_npy(member: Any, array: np.ndarray, piece: int) -> None:
    """One ``.npy`` member: numpy's header, then the array's own memory in C order.

    ``np.lib.format.write_array`` copies the data through ``tobytes`` in chunks when the target
    is not a real file (a zip member is not); handing the zip member a view of a C-contiguous
    array skips that copy. Other layouts are made C-contiguous first, as numpy would write them.
    """
    data = np.asarray(array, order="C")  # (ascontiguousarray would turn a 0-d array into 1-d)
    header = np.lib.format.header_data_from_array_1_0(data)
    try:
        np.lib.format.write_array_header_1_0(member, header)
    except ValueError:  # a header over 64 KiB (very long structured dtypes) needs format 2.0
        np.lib.format.write_array_header_2_0(member, header)
    if data.size:
        raw = data.reshape(-1).view(np.uint8).data
        for start in range(0, len(raw), piece):
            member.write(raw[start : start + piece])


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """The bytes of an ``.npz`` file holding ``arrays`` (see :func:`write_npz`)."""
    buffer = io.BytesIO()
    write_npz(buffer, arrays)
    return buffer.getvalue()
