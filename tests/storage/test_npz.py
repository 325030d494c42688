"""The npz writer shared by artifact folders and the feature cache, read back by independent
readers: numpy's own loader, the standard library's zipfile (which checks every CRC), and
numpy's ``.npy`` writer for the member bytes."""

from __future__ import annotations

import io
import shutil
import subprocess
import warnings
import zipfile
import zlib
from typing import Any

import numpy as np
import pytest

from kaizenml.storage import _files, npz_buffers, npz_bytes, read_npz, write_npz


def _arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    long_struct = np.dtype([(f"field_{i:05d}", "<f8") for i in range(3000)])  # header > 64 KiB
    return {
        "weights": rng.normal(size=(70, 50)),
        "fortran": np.asfortranarray(rng.normal(size=(9, 4))),
        "strided": np.arange(40, dtype=np.int16)[::3],
        "big_endian": np.arange(6, dtype=">i4"),
        "scalar": np.array(2.5),
        "empty": np.zeros((0, 3)),
        "flags": np.array([True, False, True]),
        "complex": np.array([1 + 2j, -3j]),
        "dates": np.array(["2024-01-02", "2024-03-04"], dtype="datetime64[D]"),
        "text": np.array(["alpha", "βeta"]),
        "record": np.zeros(2, dtype=[("bid", "<f8"), ("size", "<i8")]),
        "wide_record": np.zeros(1, dtype=long_struct),
        "file": np.ones(2),  # np.savez's own argument names
        "allow_pickle": np.ones(1),
        "dir/näme": np.arange(3),
        "utf8_fields": np.array([(1.5, 2)], dtype=[("价格", "<f8"), ("数量", "<i4")]),
    }


class _WriteOnly:
    """A stream with nothing but ``write`` (no tell, seek or flush)."""

    def __init__(self) -> None:
        self.buffer = io.BytesIO()

    def write(self, data: Any) -> int:
        return self.buffer.write(data)


def _npy(array: np.ndarray) -> bytes:
    """numpy's bytes for the array as stored: every layout is written in C order."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # "format 2.0 needs NumPy >= 1.9" for the long header
        warnings.simplefilter("ignore", UserWarning)
        np.save(buffer, np.asarray(array, order="C"), allow_pickle=False)
    return buffer.getvalue()


def test_numpy_reads_every_array_back() -> None:
    arrays = _arrays()
    out = _WriteOnly()
    write_npz(out, arrays)
    loaded = read_npz(out.buffer.getvalue())
    assert list(loaded) == list(arrays)
    for key, array in arrays.items():
        got = loaded[key]
        assert got.dtype == array.dtype, key
        assert got.shape == array.shape, key
        np.testing.assert_array_equal(got, array)


def test_members_are_numpys_npy_bytes_with_their_crc() -> None:
    arrays = _arrays()
    with zipfile.ZipFile(io.BytesIO(npz_bytes(arrays))) as archive:
        assert archive.testzip() is None  # zipfile checks each member's CRC-32
        infos = {info.filename: info for info in archive.infolist()}
        assert list(infos) == [f"{key}.npy" for key in arrays]
        for key, array in arrays.items():
            info = infos[f"{key}.npy"]
            expected = _npy(array)
            assert archive.read(info) == expected, key
            assert info.CRC == zlib.crc32(expected), key
            assert info.file_size == info.compress_size == len(expected)
            assert info.compress_type == zipfile.ZIP_STORED
            assert info.date_time == (1980, 1, 1, 0, 0, 0)


def test_the_buffers_view_the_arrays_memory() -> None:
    """No copy of C-contiguous data: the array's bytes are written from its own memory."""
    weights = np.random.default_rng(1).normal(size=1000)
    buffers = npz_buffers({"w": weights, "v": np.arange(3)})
    assert b"".join(buffers) == npz_bytes({"w": weights, "v": np.arange(3)})
    views = [b for b in buffers if isinstance(b, memoryview) and b.nbytes == weights.nbytes]
    assert len(views) == 1
    assert np.shares_memory(np.frombuffer(views[0], dtype=weights.dtype), weights)


def test_an_empty_mapping_is_an_empty_archive() -> None:
    data = npz_bytes({})
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.namelist() == []
    assert read_npz(data) == {}


def test_zip64_records_are_read_by_zipfile_and_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Members and directories past 4 GiB, and more than 65,534 members, need the ZIP64
    fields; with the thresholds lowered, small archives use every one of them."""
    arrays = {f"a{i}": np.arange(i + 5, dtype=np.float64) for i in range(12)}
    monkeypatch.setattr(_files, "_ZIP64_SIZE", 150)
    monkeypatch.setattr(_files, "_ZIP64_COUNT", 5)
    data = npz_bytes(arrays)
    monkeypatch.undo()
    assert b"PK\x06\x06" in data and b"PK\x06\x07" in data  # ZIP64 end record and locator
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None
        infos = archive.infolist()
        assert len(infos) == 12
        assert infos[-1].header_offset > 150  # read from the ZIP64 extra field
        for info, (key, array) in zip(infos, arrays.items(), strict=True):
            assert info.file_size == len(_npy(array)), key
    loaded = read_npz(data)
    for key, array in arrays.items():
        np.testing.assert_array_equal(loaded[key], array)


def test_numpy_alone_refuses_the_long_header_that_read_npz_accepts() -> None:
    wide = {"wide_record": _arrays()["wide_record"]}
    with pytest.raises(ValueError, match="large"), np.load(
        io.BytesIO(npz_bytes(wide)), allow_pickle=False
    ) as loaded:
        loaded["wide_record"]
    assert read_npz(npz_bytes(wide))["wide_record"].dtype == wide["wide_record"].dtype


def test_crc_matches_zlib() -> None:
    data = np.random.default_rng(0).bytes(1 << 20)
    assert _files._crc32(data) == zlib.crc32(data)
    assert _files._crc32(data[1000:], _files._crc32(data[:1000])) == zlib.crc32(data)


def test_info_zip_accepts_the_archive(tmp_path: Any) -> None:
    """Info-ZIP's unzip (installed by .ci/run) is a reader written apart from Python's."""
    assert shutil.which("unzip"), "the unzip program is needed (Debian: apt install unzip)"
    path = tmp_path / "a.npz"
    path.write_bytes(npz_bytes(_arrays()))
    done = subprocess.run(["unzip", "-t", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No errors detected" in done.stdout
