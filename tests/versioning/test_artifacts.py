"""Artifact folders: format, checksums, serializer opt-in, atomic writes and crash safety."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from kaizenml import IntegrityError, KaizenTypeError, ValidationError
from kaizenml.versioning import ModelVersionManager


def _artifact() -> dict:
    rng = np.random.default_rng(0)
    return {
        "weights": rng.normal(size=(4, 3)),
        "bias": np.arange(3, dtype=np.int32),
        "mask": np.array([True, False]),
        "names": np.array(["rsi", "macd"]),
        "config": {"lr": 0.01, "layers": [16, 8], "act": "relu", "dropout": None},
        "features": ["rsi_14", "macd"],
        "seed": 7,
    }


def test_wide_structured_arrays_load_back(manager: ModelVersionManager) -> None:
    """A structured dtype of thousands of fields has an .npy header beyond numpy's default
    safety limit; the artifact is checksummed, so it is read back anyway."""
    wide = np.zeros(3, dtype=[(f"lag_{i:04d}", "<f4") for i in range(2500)])
    wide["lag_0007"] = [1.0, 2.0, 3.0]
    manager.create_version("wide", {"table": wide}, change_type="retrain")
    loaded = manager.load_artifact("wide", "1.0.0")["table"]
    assert loaded.dtype == wide.dtype
    np.testing.assert_array_equal(loaded["lag_0007"], [1.0, 2.0, 3.0])


def test_round_trip_and_folder_layout(manager: ModelVersionManager, art_root: Path) -> None:
    art = _artifact()
    v = manager.create_version("alpha", art, change_type="architecture")
    folder = art_root / "alpha" / "1.0.0"
    assert Path(v.artifact_path) == folder
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["arrays.npz", "manifest.json"]
    loaded = manager.load_artifact("alpha", "1.0.0")
    assert set(loaded) == set(art)
    for key in ("weights", "bias", "mask", "names"):
        assert loaded[key].dtype == art[key].dtype
        np.testing.assert_array_equal(loaded[key], art[key])
    assert loaded["config"] == art["config"] and loaded["features"] == art["features"]
    assert loaded["seed"] == 7
    # the files are plain formats readable by their own tools
    with np.load(folder / "arrays.npz", allow_pickle=False) as npz:
        np.testing.assert_array_equal(npz["weights"], art["weights"])
    # the manifest holds the other values and the sha256 of the data file; the row holds the
    # manifest's
    manifest_bytes = (folder / "manifest.json").read_bytes()
    assert v.checksum == hashlib.sha256(manifest_bytes).hexdigest()
    manifest = json.loads(manifest_bytes)
    assert manifest["values"]["config"]["layers"] == [16, 8]
    assert manifest["values"] == {k: art[k] for k in ("config", "features", "seed")}
    assert manifest["arrays"] == ["bias", "mask", "names", "weights"]
    data = (folder / "arrays.npz").read_bytes()
    assert manifest["files"] == {
        "arrays.npz": {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    }
    assert manifest["serializer"] is None and manifest["format_version"] == 2
    # no temporary folders left behind
    assert [p.name for p in (art_root / "alpha").iterdir()] == ["1.0.0"]


@pytest.mark.parametrize("victim", ["arrays.npz", "manifest.json"])
def test_corruption_raises_integrity_error_naming_file(
    manager: ModelVersionManager, art_root: Path, victim: str
) -> None:
    manager.create_version("alpha", _artifact(), change_type="architecture")
    path = art_root / "alpha" / "1.0.0" / victim
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # a single flipped bit
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=victim):
        manager.load_artifact("alpha", "1.0.0")
    with pytest.raises(IntegrityError, match=victim):
        manager.verify_version("alpha", "1.0.0")


def test_missing_file_and_folder(manager: ModelVersionManager, art_root: Path) -> None:
    manager.create_version("alpha", _artifact(), change_type="architecture")
    (art_root / "alpha" / "1.0.0" / "arrays.npz").unlink()
    with pytest.raises(IntegrityError, match=r"arrays\.npz is missing"):
        manager.load_artifact("alpha", "1.0.0")
    manager.create_version("alpha", _artifact(), change_type="bugfix")
    import shutil

    shutil.rmtree(art_root / "alpha" / "1.0.1")
    with pytest.raises(IntegrityError, match="missing"):
        manager.load_artifact("alpha", "1.0.1")


def test_rewritten_manifest_is_detected(manager: ModelVersionManager, art_root: Path) -> None:
    # someone replaces a file and updates the manifest to match: the row's checksum catches it
    manager.create_version("alpha", {"w": np.ones(3)}, change_type="architecture")
    folder = art_root / "alpha" / "1.0.0"
    np.savez(folder / "arrays.npz", w=np.zeros(3))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["arrays.npz"]["sha256"] = hashlib.sha256(
        (folder / "arrays.npz").read_bytes()
    ).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IntegrityError, match="manifest.json"):
        manager.load_artifact("alpha", "1.0.0")


def test_bad_artifacts_refused(manager: ModelVersionManager, art_root: Path) -> None:
    with pytest.raises(KaizenTypeError, match="serializer='pickle'"):
        manager.create_version("alpha", {"obj": object()}, change_type="architecture")
    with pytest.raises(KaizenTypeError, match="dtype object"):
        manager.create_version(
            "alpha", {"a": np.array([{"x": 1}], dtype=object)}, change_type="architecture"
        )
    with pytest.raises(KaizenTypeError, match="mapping"):
        manager.create_version("alpha", [1, 2, 3], change_type="architecture")
    with pytest.raises(ValidationError, match="serializer"):
        manager.create_version("alpha", {"a": 1}, change_type="architecture", serializer="json")
    # nothing was written for the refused artifacts
    assert not (art_root / "alpha").exists() or not any((art_root / "alpha").iterdir())
    assert manager.list_models() == []


class _Sentinel:
    """Unpickling this writes a file: proof of whether pickle code ran."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (Path(self.path),))


def test_pickle_needs_opt_in_at_save_and_load(
    manager: ModelVersionManager, tmp_path: Path
) -> None:
    marker = tmp_path / "pickle-ran"
    v = manager.create_version(
        "alpha", {"model": _Sentinel(str(marker))}, change_type="architecture",
        serializer="pickle",
    )
    assert v.serializer == "pickle"
    assert (Path(v.artifact_path) / "artifact.pkl").exists()
    with pytest.raises(ValidationError, match="serializer='pickle'"):
        manager.load_artifact("alpha", "1.0.0")
    with pytest.raises(ValidationError, match="serializer='pickle'"):
        manager.load_artifact("alpha", "1.0.0", serializer="joblib")
    assert not marker.exists()  # refused loads ran no code
    manager.load_artifact("alpha", "1.0.0", serializer="pickle")
    assert marker.exists()


def test_joblib_round_trip(manager: ModelVersionManager) -> None:
    import joblib  # noqa: F401  (the serializer under test)
    obj = {"coef": np.linspace(0, 1, 5), "meta": ({1, 2}, "x")}
    manager.create_version("alpha", obj, change_type="architecture", serializer="joblib")
    back = manager.load_artifact("alpha", "1.0.0", serializer="joblib")
    np.testing.assert_array_equal(back["coef"], obj["coef"])
    assert back["meta"] == ({1, 2}, "x")
    with pytest.raises(ValidationError):
        manager.load_artifact("alpha", "1.0.0")


def test_plain_artifact_loads_with_any_serializer_opt_in(manager: ModelVersionManager) -> None:
    manager.create_version("alpha", {"w": np.ones(2)}, change_type="architecture")
    np.testing.assert_array_equal(
        manager.load_artifact("alpha", "1.0.0", serializer="pickle")["w"], np.ones(2)
    )


def test_npz_holding_pickled_objects_is_refused(manager: ModelVersionManager, art_root: Path,
                                               tmp_path: Path) -> None:
    # an artifact folder whose npz holds an object array (with a matching manifest and row)
    # must not unpickle it: np.load runs with allow_pickle=False
    v = manager.create_version("alpha", {"w": np.ones(2)}, change_type="architecture")
    folder = Path(v.artifact_path)
    marker = tmp_path / "ran"
    np.savez(folder / "arrays.npz", w=np.array([_Sentinel(str(marker))], dtype=object))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["arrays.npz"]["sha256"] = hashlib.sha256(
        (folder / "arrays.npz").read_bytes()
    ).hexdigest()
    data = json.dumps(manifest).encode()
    (folder / "manifest.json").write_bytes(data)
    with manager.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE kz_model_versions SET checksum = :c WHERE version = '1.0.0'"),
            {"c": hashlib.sha256(data).hexdigest()},
        )
    with pytest.raises(IntegrityError, match="arrays.npz holds data that needs pickle"):
        manager.load_artifact("alpha", "1.0.0")
    assert not marker.exists()


def test_failed_row_insert_removes_folder(
    manager: ModelVersionManager, art_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager.create_version("alpha", {"w": np.ones(2)}, change_type="architecture")

    def boom(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("database went away")

    monkeypatch.setattr(manager, "_to_version", boom)  # fails after the rename
    with pytest.raises(RuntimeError, match="went away"):
        manager.create_version("alpha", {"w": np.zeros(2)}, change_type="retrain")
    monkeypatch.undo()
    assert sorted(p.name for p in (art_root / "alpha").iterdir()) == ["1.0.0"]
    assert [v.version for v in manager.get_version_history("alpha")] == ["1.0.0"]
    # the next write gets the number that failed, with the new content
    v = manager.create_version("alpha", {"w": np.full(2, 3.0)}, change_type="retrain")
    assert v.version == "1.1.0"
    np.testing.assert_array_equal(manager.load_artifact("alpha", "1.1.0")["w"], [3.0, 3.0])


def test_orphan_final_folder_is_replaced_and_cleaned(
    manager: ModelVersionManager, art_root: Path
) -> None:
    manager.create_version("alpha", {"w": np.ones(2)}, change_type="architecture")
    # what a crash between the rename and the commit leaves: a folder without a row
    orphan = art_root / "alpha" / "1.1.0"
    orphan.mkdir()
    (orphan / "arrays.npz").write_bytes(b"half")
    tmp_left = art_root / "alpha" / ".tmp-deadbeef"
    tmp_left.mkdir()
    v = manager.create_version("alpha", {"w": np.zeros(2)}, change_type="retrain")
    assert v.version == "1.1.0"
    np.testing.assert_array_equal(manager.load_artifact("alpha", "1.1.0")["w"], [0.0, 0.0])
    other_orphan = art_root / "alpha" / "7.0.0"
    other_orphan.mkdir()
    assert manager.clean_orphans(older_than=3600) == []  # young folders are kept
    removed = manager.clean_orphans(older_than=0)
    assert sorted(p.name for p in removed) == [".tmp-deadbeef", "7.0.0"]
    assert sorted(p.name for p in (art_root / "alpha").iterdir()) == ["1.0.0", "1.1.0"]


_WRITER = """
import os, sys, numpy as np
from kaizenml.versioning import ModelVersionManager, _manager
url, root, mode = sys.argv[1], sys.argv[2], sys.argv[3]
mgr = ModelVersionManager(url, root)
from kaizenml.versioning import _artifacts
if mode == "after-rename":
    # folder renamed into place (its manifest not written yet), transaction not committed
    real = _manager.move_folder
    def move_then_die(temp, final):
        real(temp, final)
        os.kill(os.getpid(), 9)
    _manager.move_folder = move_then_die
if mode == "mid-manifest":
    # the data file written and the folder renamed; the manifest is being written
    real_write = _artifacts._write_file
    def write_then_die(fh, data):
        if fh.name.endswith("manifest.json"):
            fh.write(data[: len(data) // 2])
            fh.flush()
            os.kill(os.getpid(), 9)
        return real_write(fh, data)
    _artifacts._write_file = write_then_die
if mode == "before-commit":
    # every file and the rename on disk, the row inserted but not committed
    real_wait = _artifacts.PendingSync.wait
    def wait_then_die(self, timeout=None):
        real_wait(self, None)
        os.kill(os.getpid(), 9)
    _artifacts.PendingSync.wait = wait_then_die
if mode == "mid-write":
    # the data file half written, in its temporary folder
    def npz_then_die(fh, buffers):
        fh.write(buffers[0])
        fh.write(buffers[1][: len(buffers[1]) // 2])
        fh.flush()
        os.kill(os.getpid(), 9)
    _artifacts._write_buffers = npz_then_die
print("ready", flush=True)
rng = np.random.default_rng(os.getpid())
while True:
    v = mgr.create_version("crashy", {"w": rng.normal(size=131072), "n": 1}, change_type="bugfix")
    print(v.version, flush=True)
"""


def _check_consistent(url: str, root: Path) -> list[str]:
    mgr = ModelVersionManager(url, root)
    try:
        versions = [v.version for v in mgr.get_version_history("crashy")]
    except KeyError:
        versions = []
    for version in versions:  # every row points to a complete, verified folder
        art = mgr.load_artifact("crashy", version)
        assert art["w"].shape == (131072,) and art["n"] == 1
    return versions


@pytest.mark.parametrize("mode", ["after-rename", "mid-manifest", "before-commit", "mid-write"])
def test_deterministic_crash_points(child, db_url: str, art_root: Path, mode: str) -> None:
    proc = child(_WRITER, db_url, str(art_root), mode)
    proc.wait(timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
    assert _check_consistent(db_url, art_root) == []
    leftovers = sorted(p.name for p in (art_root / "crashy").iterdir())
    if mode != "mid-write":
        assert leftovers == ["1.0.0"]  # the orphan, which no row references
    else:
        assert len(leftovers) == 1 and leftovers[0].startswith(".tmp-")
    mgr = ModelVersionManager(db_url, art_root)
    v = mgr.create_version("crashy", {"w": np.ones(131072), "n": 1}, change_type="bugfix")
    assert v.version == "1.0.0"
    np.testing.assert_array_equal(mgr.load_artifact("crashy", "1.0.0")["w"], 1.0)
    mgr.clean_orphans(older_than=0)
    assert sorted(p.name for p in (art_root / "crashy").iterdir()) == ["1.0.0"]


def test_sigkill_at_random_times_never_leaves_broken_rows(
    child, db_url: str, art_root: Path
) -> None:
    rng = random.Random(3)
    for _ in range(4):
        proc = child(_WRITER, db_url, str(art_root), "plain")
        assert proc.stdout.readline().strip() == "ready"
        assert proc.stdout.readline().strip()  # one version written: now kill it mid-loop
        time.sleep(rng.uniform(0.0, 0.2))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        _check_consistent(db_url, art_root)
    versions = _check_consistent(db_url, art_root)
    assert versions, "the writers were killed before creating any version"
    mgr = ModelVersionManager(db_url, art_root)
    mgr.clean_orphans(older_than=0)
    on_disk = {p.name for p in (art_root / "crashy").iterdir()}
    assert on_disk == set(versions)


def test_keys_that_are_numpy_keyword_names(manager: ModelVersionManager) -> None:
    art = {"file": np.arange(3), "allow_pickle": np.ones(2), "args": [1], "kwds": {"a": 1}}
    manager.create_version("alpha", art, change_type="architecture")
    back = manager.load_artifact("alpha", "1.0.0")
    np.testing.assert_array_equal(back["file"], [0, 1, 2])
    np.testing.assert_array_equal(back["allow_pickle"], [1.0, 1.0])
    assert back["args"] == [1] and back["kwds"] == {"a": 1}


def test_empty_and_large_arrays_round_trip(manager: ModelVersionManager) -> None:
    rng = np.random.default_rng(1)
    art = {"empty": np.zeros((0, 3)), "big": rng.normal(size=(300, 500)).astype(np.float32),
           "fortran": np.asfortranarray(rng.normal(size=(7, 5))), "c": np.array(3 + 4j)}
    manager.create_version("alpha", art, change_type="architecture")
    back = manager.load_artifact("alpha", "1.0.0")
    for key, value in art.items():
        assert back[key].dtype == value.dtype and back[key].shape == value.shape
        np.testing.assert_array_equal(back[key], value)


def test_arrays_of_every_layout_and_dtype_round_trip(manager: ModelVersionManager) -> None:
    """Members are written from the arrays' memory; np.load must read back the same arrays."""
    rng = np.random.default_rng(0)
    arrays = {
        "c_order": rng.normal(size=(3, 4)),
        "fortran": np.asfortranarray(rng.normal(size=(5, 3))),
        "strided_view": rng.normal(size=(6, 6))[::2, 1:],
        "zero_d": np.array(3.5),
        "empty": np.zeros((0, 3)),
        "big_endian": np.arange(5, dtype=">i4"),
        "bools": np.array([True, False, True]),
        "datetimes": np.array(["2020-01-01T09:30", "NaT"], dtype="M8[ns]"),
        "unicode": np.array(["ab", "c"]),
        "records": np.array([(1.5, 2), (3.0, -4)], dtype=[("a", "f8"), ("b", "i2")]),
        "complex": np.arange(4) + 1j,
        "float32_3d": rng.normal(size=(2, 3, 4)).astype(np.float32),
    }
    v = manager.create_version("layouts", arrays, change_type="retrain")
    loaded = manager.load_artifact("layouts", v.version)
    for key, expected in arrays.items():
        got = loaded[key]
        assert got.dtype == expected.dtype and got.shape == expected.shape, key
        assert got.tobytes() == np.ascontiguousarray(expected).tobytes(), key


# Small artifacts are written inside create_version's transaction, large ones before it.
_WRITE_PATHS = pytest.mark.parametrize("in_transaction", [True, False], ids=["small", "large"])


@_WRITE_PATHS
def test_slow_fsync_is_waited_for_outside_the_transaction(
    manager: ModelVersionManager, art_root: Path, monkeypatch: pytest.MonkeyPatch,
    in_transaction: bool,
) -> None:
    """The transaction waits only briefly for the artifact's fsync; a slower disk makes it roll
    back, wait without the write lock, and run again: one version, complete on disk."""
    from kaizenml.versioning import _manager

    if not in_transaction:
        monkeypatch.setattr(_manager, "_WRITE_IN_TRANSACTION_BYTES", 0)
    monkeypatch.setattr(_manager, "_SYNC_WAIT_AFTER_WRITE", 0.001)
    manager.create_version("slow", {"w": np.ones(2)}, change_type="retrain")
    real_fsync = os.fsync
    calls: list[int] = []

    def slow_fsync(fd: int) -> None:
        calls.append(fd)
        time.sleep(0.05)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", slow_fsync)
    monkeypatch.setattr(_manager, "_SYNC_WAIT_IN_TRANSACTION", 0.001)
    begins: list[str] = []

    def count_begin(conn: sa.Connection) -> None:
        begins.append("begin")

    sa.event.listen(manager.engine, "begin", count_begin)
    try:
        v = manager.create_version("slow", {"w": np.full(2, 7.0)}, change_type="retrain")
    finally:
        sa.event.remove(manager.engine, "begin", count_begin)
    assert v.version == "1.1.0"
    assert len(begins) == 2  # the first transaction rolled back, the second published
    assert calls  # the files were fsynced
    monkeypatch.undo()
    np.testing.assert_array_equal(manager.load_artifact("slow", "1.1.0")["w"], [7.0, 7.0])
    assert [x.version for x in manager.get_version_history("slow")] == ["1.1.0", "1.0.0"]
    assert sorted(p.name for p in (art_root / "slow").iterdir()) == ["1.0.0", "1.1.0"]


@_WRITE_PATHS
def test_every_fsync_ends_before_the_commit(
    manager: ModelVersionManager, art_root: Path, monkeypatch: pytest.MonkeyPatch,
    in_transaction: bool,
) -> None:
    """The row is what makes a folder a version: the data file, the manifest, the folder and
    the rename in the model's folder are all on disk before it is committed."""
    from kaizenml.versioning import _manager

    if not in_transaction:
        monkeypatch.setattr(_manager, "_WRITE_IN_TRANSACTION_BYTES", 0)
    manager.create_version("order", {"w": np.ones(2)}, change_type="retrain")
    events: list[tuple[str, str]] = []
    from kaizenml.versioning import _artifacts

    # Every fsync of a version goes through the two helpers of the artifact writer: a file by
    # its handle, a folder by the descriptor opened (by path) when it was added.
    opened: dict[int, str] = {}
    real_open = os.open
    real_fsync_file, real_fsync_fd = _artifacts._fsync_file, _artifacts._fsync_fd

    def recording_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        fd = real_open(path, flags, *args, **kwargs)
        opened[fd] = str(path)
        return fd

    def recording_fsync_file(fh: Any) -> None:
        name = fh.name
        real_fsync_file(fh)
        events.append(("fsync", name))

    def recording_fsync_fd(fd: int) -> None:
        target = opened[fd]
        real_fsync_fd(fd)
        events.append(("fsync", target))

    dialect = manager.engine.dialect
    real_commit = dialect.do_commit

    def recording_commit(dbapi_conn: object) -> None:
        events.append(("commit", ""))
        real_commit(dbapi_conn)

    def recording_begin(conn: sa.Connection) -> None:
        events.append(("begin", ""))

    real_write_buffers = _artifacts._write_buffers

    def recording_write_buffers(fh: Any, buffers: Any) -> None:
        events.append(("write", fh.name))
        real_write_buffers(fh, buffers)

    monkeypatch.setattr(_artifacts, "_write_buffers", recording_write_buffers)
    monkeypatch.setattr(os, "open", recording_open)
    monkeypatch.setattr(_artifacts, "_fsync_file", recording_fsync_file)
    monkeypatch.setattr(_artifacts, "_fsync_fd", recording_fsync_fd)
    monkeypatch.setattr(dialect, "do_commit", recording_commit)
    sa.event.listen(manager.engine, "begin", recording_begin)
    try:
        manager.create_version("order", {"w": np.zeros(4)}, change_type="retrain")
    finally:
        sa.event.remove(manager.engine, "begin", recording_begin)
    monkeypatch.undo()
    # a small artifact is written once the transaction holds the number, a large one before
    written = next(i for i, (kind, _) in enumerate(events) if kind == "write")
    assert (events.index(("begin", "")) < written) == in_transaction
    commit = events.index(("commit", ""))
    synced_before = {target for kind, target in events[:commit] if kind == "fsync"}
    folder = art_root / "order" / "1.1.0"
    # the files were opened under the temporary name (they moved with their folder)
    names = {Path(t).name for t in synced_before}
    assert {"arrays.npz", "manifest.json"} <= names
    assert str(folder) in synced_before  # the folder's entries
    assert str(art_root / "order") in synced_before  # the rename
    assert all(kind == "commit" for kind, _ in events[commit:])


@_WRITE_PATHS
def test_where_open_files_block_a_rename_the_folder_waits_for_them(
    manager: ModelVersionManager, art_root: Path, monkeypatch: pytest.MonkeyPatch,
    in_transaction: bool,
) -> None:
    """On Windows a folder holding open files cannot be renamed: the data files' fsync tasks,
    which close them, end before the rename, and a slow disk is then waited for in the
    transaction instead of undoing the rename."""
    from kaizenml.versioning import _artifacts, _manager

    monkeypatch.setattr(_manager, "_RENAME_NEEDS_CLOSED_FILES", True)
    monkeypatch.setattr(_manager, "_SYNC_WAIT_AFTER_WRITE", 0.001)
    monkeypatch.setattr(_manager, "_SYNC_WAIT_IN_TRANSACTION", 0.001)
    if not in_transaction:
        monkeypatch.setattr(_manager, "_WRITE_IN_TRANSACTION_BYTES", 0)
    manager.create_version("win", {"w": np.ones(2)}, change_type="retrain")
    open_files: list[str] = []
    real_close = _artifacts._fsync_file

    def slow_fsync_then_close(fh: Any) -> None:
        open_files.append(fh.name)
        time.sleep(0.02)
        real_close(fh)
        open_files.remove(fh.name)

    real_move = _manager.move_folder
    moved_with_open: list[list[str]] = []

    def checking_move(temp: Path, final: Path) -> None:
        moved_with_open.append([f for f in open_files if f.startswith(str(temp))])
        real_move(temp, final)

    monkeypatch.setattr(_artifacts, "_fsync_file", slow_fsync_then_close)
    monkeypatch.setattr(_manager, "move_folder", checking_move)
    begins: list[str] = []
    sa.event.listen(manager.engine, "begin", lambda conn: begins.append("begin"))
    v = manager.create_version("win", {"w": np.full(2, 5.0)}, change_type="retrain")
    assert moved_with_open == [[]]  # renamed once, with no file of the folder open
    assert len(begins) == 1  # no rollback and second run
    monkeypatch.undo()
    np.testing.assert_array_equal(manager.load_artifact("win", v.version)["w"], [5.0, 5.0])


def test_failed_fsync_raises_and_leaves_nothing(
    manager: ModelVersionManager, art_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager.create_version("fs", {"w": np.ones(2)}, change_type="retrain")

    def broken_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="Input/output error"):
        manager.create_version("fs", {"w": np.zeros(2)}, change_type="retrain")
    monkeypatch.undo()
    assert [x.version for x in manager.get_version_history("fs")] == ["1.0.0"]
    assert sorted(p.name for p in (art_root / "fs").iterdir()) == ["1.0.0"]


def _as_format_1(folder: Path, arrays: dict, values: dict) -> str:
    """Rewrite a version's folder in the layout of format version 1 (values in values.json,
    listed in the manifest with the npz); returns the new manifest's sha256."""
    for path in folder.iterdir():
        path.unlink()
    np.savez(folder / "arrays.npz", **arrays)
    (folder / "values.json").write_text(json.dumps(values, sort_keys=True))
    files = {
        name: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        for name in ("arrays.npz", "values.json")
        for data in [(folder / name).read_bytes()]
    }
    manifest = {"format": "kaizenml-artifact", "format_version": 1, "arrays": sorted(arrays),
                "values": sorted(values), "serializer": None, "files": files}
    data = json.dumps(manifest, sort_keys=True, indent=1).encode()
    (folder / "manifest.json").write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def test_folders_of_format_version_1_still_load_and_verify(
    manager: ModelVersionManager, art_root: Path
) -> None:
    from kaizenml.versioning._schema import model_versions

    manager.create_version("old", {"w": np.ones(3)}, change_type="architecture")
    folder = art_root / "old" / "1.0.0"
    checksum = _as_format_1(folder, {"w": np.arange(4.0)}, {"cfg": {"lr": 0.1}, "n": 2})
    with manager.engine.begin() as conn:
        conn.execute(sa.update(model_versions).where(model_versions.c.model_name == "old")
                     .values(checksum=checksum))
    manager.verify_version("old", "1.0.0")
    loaded = manager.load_artifact("old", "1.0.0")
    np.testing.assert_array_equal(loaded["w"], np.arange(4.0))
    assert loaded["cfg"] == {"lr": 0.1} and loaded["n"] == 2
    (folder / "values.json").write_text('{"cfg": {"lr": 0.2}, "n": 2}')
    with pytest.raises(IntegrityError, match=r"values\.json is corrupted"):
        manager.load_artifact("old", "1.0.0")


def test_only_values_or_only_arrays(manager: ModelVersionManager, art_root: Path) -> None:
    """No arrays: the folder holds the manifest alone; no values: an empty mapping."""
    manager.create_version("cfg", {"lr": 0.1, "layers": [3, 2]}, change_type="architecture")
    folder = art_root / "cfg" / "1.0.0"
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json"]
    assert manager.load_artifact("cfg", "1.0.0") == {"lr": 0.1, "layers": [3, 2]}
    manager.create_version("arr", {"w": np.arange(3)}, change_type="architecture")
    manifest = json.loads((art_root / "arr" / "1.0.0" / "manifest.json").read_text())
    assert manifest["values"] == {} and manifest["arrays"] == ["w"]
    # the npz is a valid zip whose members carry correct CRCs (written without seeking)
    import zipfile

    with zipfile.ZipFile(art_root / "arr" / "1.0.0" / "arrays.npz") as zf:
        assert zf.testzip() is None and zf.namelist() == ["w.npy"]
    manager.create_version("none", {}, change_type="architecture")
    assert manager.load_artifact("none", "1.0.0") == {}


def test_manifest_missing_the_arrays_file_is_refused(
    manager: ModelVersionManager, art_root: Path
) -> None:
    from kaizenml.versioning._schema import model_versions

    manager.create_version("bad", {"w": np.ones(2), "n": 1}, change_type="architecture")
    folder = art_root / "bad" / "1.0.0"
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"] = {}
    data = json.dumps(manifest).encode()
    (folder / "manifest.json").write_bytes(data)
    with manager.engine.begin() as conn:
        conn.execute(sa.update(model_versions).where(model_versions.c.model_name == "bad")
                     .values(checksum=hashlib.sha256(data).hexdigest()))
    with pytest.raises(IntegrityError, match="does not list arrays.npz"):
        manager.load_artifact("bad", "1.0.0")


def test_threads_writing_large_artifacts_get_exact_checksums(
    manager: ModelVersionManager, art_root: Path
) -> None:
    """The hash workers are shared by every writer; each file's manifest must still hold the
    sha256 of that file's own bytes."""
    import threading

    errors: list[BaseException] = []

    def writer(k: int) -> None:
        rng = np.random.default_rng(k)
        try:
            for _ in range(3):
                manager.create_version(f"t{k}", {"w": rng.normal(size=393_216)},
                                       change_type="retrain")
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for k in range(4):
        for v in manager.get_version_history(f"t{k}"):
            data = (Path(v.artifact_path) / "arrays.npz").read_bytes()
            manifest = json.loads((Path(v.artifact_path) / "manifest.json").read_text())
            assert manifest["files"]["arrays.npz"]["sha256"] == hashlib.sha256(data).hexdigest()
            manager.verify_version(f"t{k}", v.version)


def test_commit_reported_failed_after_it_succeeded(manager: ModelVersionManager) -> None:
    """A lost connection during COMMIT leaves its outcome unknown; the store says it was
    stored: the version is returned once (not retried under the next number) and its folder
    stays in place."""
    from sqlalchemy.exc import OperationalError

    manager.create_version("amb", {"w": np.ones(3)}, change_type="architecture")
    dialect = manager.engine.dialect
    real_commit = dialect.do_commit
    calls: list[int] = []

    def commit_then_lose_the_answer(dbapi_conn) -> None:
        real_commit(dbapi_conn)
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("COMMIT", {}, Exception("server closed the connection"))

    dialect.do_commit = commit_then_lose_the_answer
    try:
        v = manager.create_version("amb", {"w": np.zeros(3)}, change_type="retrain")
    finally:
        dialect.do_commit = real_commit
    assert v.version == "1.1.0"
    assert [x.version for x in manager.get_version_history("amb")] == ["1.1.0", "1.0.0"]
    np.testing.assert_array_equal(manager.load_artifact("amb", "1.1.0")["w"], np.zeros(3))


def test_commit_that_really_failed_leaves_an_orphan_the_next_writer_replaces(
    manager: ModelVersionManager, art_root: Path
) -> None:
    """After a failed COMMIT the lock is gone, so the folder is not renamed back (another
    writer may own its name by then): no row points at it, the next version of that number
    replaces it and clean_orphans removes it."""
    from sqlalchemy.exc import OperationalError

    manager.create_version("amb", {"w": np.ones(3)}, change_type="architecture")
    dialect = manager.engine.dialect
    real_commit = dialect.do_commit

    def lose_connection(dbapi_conn) -> None:
        dbapi_conn.rollback()
        raise OperationalError("COMMIT", {}, Exception("server closed the connection"))

    dialect.do_commit = lose_connection
    try:
        with pytest.raises(OperationalError, match="server closed the connection"):
            manager.create_version("amb", {"w": np.zeros(3)}, change_type="retrain")
    finally:
        dialect.do_commit = real_commit
    assert [x.version for x in manager.get_version_history("amb")] == ["1.0.0"]
    assert sorted(p.name for p in (art_root / "amb").iterdir()) == ["1.0.0", "1.1.0"]
    assert [p.name for p in manager.clean_orphans(older_than=0)] == ["1.1.0"]
    v = manager.create_version("amb", {"w": np.full(3, 2.0)}, change_type="retrain")
    assert v.version == "1.1.0"
    np.testing.assert_array_equal(manager.load_artifact("amb", "1.1.0")["w"], [2.0, 2.0, 2.0])


@pytest.mark.parametrize("stored", [True, False], ids=["committed", "not-committed"])
def test_commit_of_unknown_outcome_is_not_retried(
    manager: ModelVersionManager, art_root: Path, monkeypatch: pytest.MonkeyPatch, stored: bool
) -> None:
    """A COMMIT failing with an error that is otherwise retried ("database is locked"), and
    the store unreadable right after: retrying could store the artifact twice, so the caller
    gets a StorageError; whatever was committed is whole."""
    from sqlalchemy.exc import OperationalError

    from kaizenml import StorageError
    from kaizenml.versioning import _manager

    manager.create_version("unk", {"w": np.ones(3)}, change_type="bugfix")
    dialect = manager.engine.dialect
    real_commit = dialect.do_commit
    real_read = _manager.read_connection
    failures = {"commit": 1, "read": 1}

    def flaky_commit(dbapi_conn: Any) -> None:
        if failures["commit"]:
            failures["commit"] = 0
            if stored:
                real_commit(dbapi_conn)
            raise OperationalError("COMMIT", {}, Exception("database is locked"))
        real_commit(dbapi_conn)

    def flaky_read(engine: Any) -> Any:
        if failures["read"]:
            failures["read"] = 0
            raise OperationalError("SELECT", {}, Exception("disk I/O error"))
        return real_read(engine)

    monkeypatch.setattr(dialect, "do_commit", flaky_commit)
    monkeypatch.setattr(_manager, "read_connection", flaky_read)
    with pytest.raises(StorageError, match="could not be asked whether it was stored"):
        manager.create_version("unk", {"w": np.zeros(3)}, change_type="bugfix")
    monkeypatch.undo()
    versions = [x.version for x in manager.get_version_history("unk")]
    assert versions == (["1.0.1", "1.0.0"] if stored else ["1.0.0"])
    for version in versions:
        manager.verify_version("unk", version)
    if stored:
        np.testing.assert_array_equal(manager.load_artifact("unk", "1.0.1")["w"], np.zeros(3))


def test_a_failed_transaction_undoes_its_rename_before_another_writer_can_start(
    manager: ModelVersionManager, art_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transaction that gives up on a slow fsync renames its folder back while it still
    holds the write lock: a writer waiting for that lock is given the same number only after,
    so neither can take or remove the other's folder."""
    import sqlite3
    import threading

    from kaizenml.versioning import _artifacts, _manager

    manager.create_version("race", {"w": np.zeros(3)}, change_type="bugfix")
    monkeypatch.setattr(_manager, "_SYNC_WAIT_AFTER_WRITE", 0.001)
    slow = {"armed": True}
    real_fsync_file = _artifacts._fsync_file

    def slow_once(fh: Any) -> None:
        if slow["armed"]:
            slow["armed"] = False
            time.sleep(0.2)
        real_fsync_file(fh)

    monkeypatch.setattr(_artifacts, "_fsync_file", slow_once)
    db_path = manager.engine.url.database
    real_unpublish = _manager.unpublish_folder
    seen: dict[str, Any] = {}

    def unpublish_with_a_writer_waiting(final: Path, temp: Path) -> None:
        if "b" not in seen:
            probe = sqlite3.connect(db_path, timeout=0)
            try:
                probe.execute("BEGIN IMMEDIATE")
                seen["locked"] = False
                probe.rollback()
            except sqlite3.OperationalError:
                seen["locked"] = True
            finally:
                probe.close()
            # another writer starts now: it must wait for this transaction's lock
            seen["b"] = threading.Thread(target=lambda: seen.setdefault(
                "b_version", manager.create_version("race", {"b": np.full(4, 7.0)},
                                                    change_type="bugfix")))
            seen["b"].start()
            time.sleep(0.1)
        real_unpublish(final, temp)

    monkeypatch.setattr(_manager, "unpublish_folder", unpublish_with_a_writer_waiting)
    a = manager.create_version("race", {"a": np.full(5, 1.0)}, change_type="bugfix")
    seen["b"].join()
    monkeypatch.undo()
    assert seen["locked"] is True
    assert a.version != seen["b_version"].version
    np.testing.assert_array_equal(manager.load_artifact("race", a.version)["a"], np.ones(5))
    np.testing.assert_array_equal(
        manager.load_artifact("race", seen["b_version"].version)["b"], np.full(4, 7.0)
    )
    assert sorted(p.name for p in (art_root / "race").iterdir()) == sorted(
        ["1.0.0", a.version, seen["b_version"].version]
    )
