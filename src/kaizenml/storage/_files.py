"""Atomic, checksummed file writes for artifacts and caches."""

from __future__ import annotations

import hashlib
import io
import os
import struct
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

try:  # CRC-32 at memory speed; the result is the same as zlib's
    from zlib_ng.zlib_ng import crc32 as _crc32
except ImportError:  # pragma: no cover - zlib-ng has wheels wherever kaizenml runs
    from zlib import crc32 as _crc32


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


# Zip record signatures and fields (PKWARE APPNOTE 6.3): every member is stored (method 0),
# sized by a ZIP64 data descriptor after its data, dated 1980-01-01 00:00 like np.savez's.
_LOCAL_HEADER = struct.Struct("<IHHHHHIIIHH")
_ZIP64_LOCAL_EXTRA = struct.Struct("<HHQQ")
_DATA_DESCRIPTOR = struct.Struct("<IIQQ")
_CENTRAL_HEADER = struct.Struct("<IHHHHHHIIIHHHHHII")
_ZIP64_END = struct.Struct("<IQHHIIQQQQ")
_ZIP64_LOCATOR = struct.Struct("<IIQI")
_END = struct.Struct("<IHHHHIIH")
_ZIP_VERSION = 45  # 4.5: ZIP64 extensions
_MADE_BY = (3 << 8) | _ZIP_VERSION  # UNIX attributes
_FILE_ATTRIBUTES = 0o100644 << 16  # a regular file, rw-r--r--
_DESCRIPTOR_FLAG = 0x08
_UTF8_FLAG = 0x800
_DOS_DATE = (0 << 9) | (1 << 5) | 1  # 1980-01-01
_CRC_STEP = 1 << 30  # bytes per CRC call, well inside every binding's length type
# Values from these up go to ZIP64 fields; the classic field then holds all ones.
_ZIP64_SIZE = 0xFFFFFFFF
_ZIP64_COUNT = 0xFFFF


class _ZipWriter:
    """A zip archive of stored members laid out front to back as a list of buffers (no
    ``seek`` or ``tell`` needed to write it): sizes and CRC go in a data descriptor after each
    member's data, and the central directory switches to ZIP64 records where a count, size or
    offset needs them."""

    def __init__(self) -> None:
        self.buffers: list[Any] = []
        self._offset = 0
        self._members: list[tuple[bytes, int, int, int, int]] = []  # name, flags, crc, size, at

    def _emit(self, data: Any) -> None:
        self.buffers.append(data)
        self._offset += memoryview(data).nbytes

    def add(self, name: str, pieces: Iterable[Any]) -> None:
        """Write one member from buffers (bytes or memoryviews, in order)."""
        encoded = name.encode("utf-8")
        flags = _DESCRIPTOR_FLAG | (0 if encoded.isascii() else _UTF8_FLAG)
        start = self._offset
        self._emit(
            _LOCAL_HEADER.pack(
                0x04034B50, _ZIP_VERSION, flags, 0, 0, _DOS_DATE, 0, 0, 0, len(encoded),
                _ZIP64_LOCAL_EXTRA.size,
            )
            + encoded
            + _ZIP64_LOCAL_EXTRA.pack(0x0001, 16, 0, 0)
        )
        crc = size = 0
        for piece in pieces:
            view = memoryview(piece)
            for at in range(0, view.nbytes, _CRC_STEP):
                crc = _crc32(view[at : at + _CRC_STEP], crc)
            size += view.nbytes
            self._emit(piece)
        self._emit(_DATA_DESCRIPTOR.pack(0x08074B50, crc, size, size))
        self._members.append((encoded, flags, crc, size, start))

    def close(self) -> None:
        """Write the central directory and the end records."""
        directory_start = self._offset
        for encoded, flags, crc, size, start in self._members:
            big = [size] * 2 if size >= _ZIP64_SIZE else []  # uncompressed, compressed
            if start >= _ZIP64_SIZE:
                big.append(start)
            extra = struct.pack(f"<HH{len(big)}Q", 0x0001, 8 * len(big), *big) if big else b""
            small = 0xFFFFFFFF if size >= _ZIP64_SIZE else size
            self._emit(
                _CENTRAL_HEADER.pack(
                    0x02014B50, _MADE_BY, _ZIP_VERSION, flags, 0, 0, _DOS_DATE, crc, small,
                    small, len(encoded), len(extra), 0, 0, 0, _FILE_ATTRIBUTES,
                    0xFFFFFFFF if start >= _ZIP64_SIZE else start,
                )
                + encoded
                + extra
            )
        count = len(self._members)
        directory_size = self._offset - directory_start
        wide_count = count >= _ZIP64_COUNT
        wide_size = directory_size >= _ZIP64_SIZE
        wide_start = directory_start >= _ZIP64_SIZE
        if wide_count or wide_size or wide_start:
            zip64_end = self._offset
            self._emit(
                _ZIP64_END.pack(
                    0x06064B50, _ZIP64_END.size - 12, _MADE_BY, _ZIP_VERSION, 0, 0, count,
                    count, directory_size, directory_start,
                )
                + _ZIP64_LOCATOR.pack(0x07064B50, 0, zip64_end, 1)
            )
        self._emit(
            _END.pack(
                0x06054B50, 0, 0, *[0xFFFF if wide_count else count] * 2,
                0xFFFFFFFF if wide_size else directory_size,
                0xFFFFFFFF if wide_start else directory_start, 0,
            )
        )


def npz_buffers(arrays: Mapping[str, np.ndarray]) -> list[Any]:
    """The bytes of an ``.npz`` file holding ``arrays``, in the layout of ``np.savez`` (an
    uncompressed zip of ``.npy`` members), as a list of buffers to write in order: headers, and
    views of the arrays' own memory (no copy of C-contiguous data; keep the arrays unchanged
    until the buffers are written).

    Laid out member by member, so any key is a valid member name: ``np.savez(f, **arrays)``
    fails or silently drops arrays named after its own arguments (``file``, ``allow_pickle``).
    Each member's sizes and CRC follow its data, so the file is written front to back. The
    CRC-32 comes from zlib-ng when it is installed (about ten times faster than the zlib
    Python is built with).
    """
    writer = _ZipWriter()
    for key, array in arrays.items():
        writer.add(f"{key}.npy", _npy_pieces(array))
    writer.close()
    return writer.buffers


def write_npz(fileobj: Any, arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``fileobj`` (anything with ``write``) as an ``.npz`` file: see
    :func:`npz_buffers`."""
    for buffer in npz_buffers(arrays):
        fileobj.write(buffer)


def _npy_pieces(array: np.ndarray) -> Iterator[Any]:
    """One ``.npy`` member: numpy's header, then the array's own memory in C order.

    ``np.lib.format.write_array`` copies the data through ``tobytes`` in chunks when the target
    is not a real file; handing out views of a C-contiguous array skips that copy. Other
    layouts are made C-contiguous first, as numpy would write them.
    """
    data = np.asarray(array, order="C")  # (ascontiguousarray would turn a 0-d array into 1-d)
    header = np.lib.format.header_data_from_array_1_0(data)
    buffer = io.BytesIO()
    try:
        np.lib.format.write_array_header_1_0(buffer, header)
    except ValueError:  # a header over 64 KiB (very long structured dtypes) needs format 2.0
        buffer = io.BytesIO()
        try:
            np.lib.format.write_array_header_2_0(buffer, header)
        except UnicodeEncodeError:
            # Field names outside Latin-1 need format 3.0 (a UTF-8 header), which numpy
            # writes only with the data: this rare member is copied once.
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, data, version=(3, 0), allow_pickle=False)
            yield buffer.getvalue()
            return
    yield buffer.getvalue()
    if data.size:
        yield data.reshape(-1).view(np.uint8).data


# Headers of the .npy members kaizenml reads back. numpy refuses headers over 10,000 bytes
# unless told otherwise (a guard for untrusted files); the callers check a sha256 before
# parsing, and a structured dtype of a few thousand fields needs a longer header.
NPY_HEADER_LIMIT = 1 << 20


def read_npz(data: bytes) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` file's bytes, without unpickling (object arrays raise
    ``ValueError``)."""
    with np.load(io.BytesIO(data), allow_pickle=False, max_header_size=NPY_HEADER_LIMIT) as npz:
        return {key: npz[key] for key in npz.files}


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """The bytes of an ``.npz`` file holding ``arrays`` (see :func:`write_npz`)."""
    return b"".join(npz_buffers(arrays))
