"""Artifact folders: safe on-disk format, atomic publication and verified loading.

Used by the version manager and the checkpointer. A folder holds

* ``arrays.npz``   every numpy array of the artifact (the ``np.savez`` format; read with
  ``allow_pickle=False``, so object arrays are refused); absent when there are no arrays;
* ``manifest.json`` the format, the serializer, every other (JSON-able) value of the
  artifact under ``"values"``, and the sha256 and size of each data file.

Every file is fsynced, and so is the folder and its entry in the model's folder, before the
database row that records the folder is committed: the row is what makes a folder a version or
a checkpoint. A folder is written under a hidden temporary name and renamed to its final one
inside that transaction (the version manager renames it before the manifest is written and
lets one journal commit carry the files and the rename). A crash can leave a folder that no
row points to, never a row that points to a missing or partly written file; such orphans are
replaced when their number is given again, and removed by ``clean_orphans``.

The sha256 of ``manifest.json`` itself is kept in the database row, so the row pins the whole
folder: the values directly, the data files through their checksums. With an explicit
``serializer="pickle"`` or ``"joblib"`` the artifact is stored as one ``artifact.pkl`` /
``artifact.joblib`` instead; loading it needs the same opt-in. Nothing in a folder is ever
imported or executed: only the fixed file names above are opened, and the bytes are hashed
before they are parsed.

Folders of format version 1 (values in a separate ``values.json`` listed in the manifest) are
still read.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
import pickle
import shutil
import threading
import uuid
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from .._exceptions import IntegrityError, KaizenTypeError, ValidationError
from ..storage import fsync_dir, npz_buffers, read_npz

__all__ = [
    "PendingSync",
    "PreparedArtifact",
    "prepare_artifact",
    "check_artifact",
    "SERIALIZERS",
    "check_serializer",
    "load_folder",
    "FolderWrite",
    "move_folder",
    "publish_folder",
    "remove_folder",
    "start_temp_folder",
    "unpublish_folder",
    "verify_folder",
    "write_temp_folder",
]

SERIALIZERS = ("pickle", "joblib")
FORMAT = "kaizenml-artifact"
FORMAT_VERSION = 2
_READABLE_VERSIONS = (1, 2)
MANIFEST = "manifest.json"
ARRAYS = "arrays.npz"
VALUES = "values.json"  # format version 1 only
_OBJECT_FILES = {"pickle": "artifact.pkl", "joblib": "artifact.joblib"}
_KNOWN_FILES = {ARRAYS, VALUES, *_OBJECT_FILES.values()}
TEMP_PREFIX = ".tmp-"
TRASH_PREFIX = ".trash-"


def check_serializer(serializer: Any) -> str | None:
    """Validate a ``serializer=`` argument (None, "pickle" or "joblib")."""
    if serializer is None or serializer in SERIALIZERS:
        return serializer
    raise ValidationError(
        f"serializer={serializer!r} is not supported; use None (numpy arrays + JSON), "
        "'pickle' or 'joblib'"
    )


def _write_buffers(fh: BinaryIO, buffers: list[Any]) -> None:
    for buffer in buffers:
        fh.write(buffer)
    fh.flush()


def _write_file(fh: BinaryIO, data: bytes) -> dict[str, Any]:
    fh.write(data)
    fh.flush()
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def _sha256_of(buffers: list[Any]) -> dict[str, Any]:
    digest = hashlib.sha256()
    size = 0
    for buffer in buffers:
        digest.update(buffer)  # releases the GIL for large buffers
        size += memoryview(buffer).nbytes
    return {"sha256": digest.hexdigest(), "size": size}


_pools: dict[str, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _get_pool(name: str, workers: int) -> ThreadPoolExecutor:
    """A thread pool kept for the process: starting a thread costs about 0.1 ms, a large
    share of writing a small artifact."""
    with _pools_lock:
        pool = _pools.get(name)
        if pool is None:
            pool = _pools[name] = ThreadPoolExecutor(workers, thread_name_prefix=name)
        return pool


def _fsync_pool() -> ThreadPoolExecutor:
    return _get_pool("kaizenml-fsync", 8)


_next_hash_worker = itertools.count()
_CPUS = os.cpu_count() or 1  # (reads /sys on every call)


def _hash_worker() -> ThreadPoolExecutor:
    """One of ``cpu_count`` single-threaded workers, in turn."""
    k = next(_next_hash_worker) % _CPUS
    return _get_pool(f"kaizenml-hash-{k}", 1)


def _forget_pools() -> None:  # a forked child inherits the executors but not their threads
    global _pools_lock
    _pools.clear()
    _pools_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pools)


def _split_artifact(artifact: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    if not isinstance(artifact, Mapping):
        raise KaizenTypeError(
            f"artifact must be a mapping of names to numpy arrays and JSON-able values, got "
            f"{type(artifact).__name__}; to store another object pass serializer='pickle' or "
            "'joblib' explicitly"
        )
    arrays: dict[str, np.ndarray] = {}
    values: dict[str, Any] = {}
    for key, value in artifact.items():
        if not isinstance(key, str) or not key:
            raise KaizenTypeError(f"artifact keys must be non-empty str, got {key!r}")
        if isinstance(value, np.ndarray):
            if value.dtype.hasobject:
                raise KaizenTypeError(
                    f"artifact[{key!r}] is a numpy array of dtype object, which cannot be stored "
                    "without pickle; convert it to a numeric or string dtype, or pass "
                    "serializer='pickle'"
                )
            arrays[key] = value
        else:
            values[key] = value
    return arrays, values


def _encode_values(values: dict[str, Any], indent: int | None = None) -> bytes:
    try:
        text = json.dumps(values, sort_keys=True, allow_nan=True, indent=indent)
    except (TypeError, ValueError) as exc:
        raise KaizenTypeError(
            f"artifact values must be numpy arrays or JSON-able (dict, list, str, int, float, "
            f"bool, None): {exc}; to store other objects pass serializer='pickle' or 'joblib'"
        ) from exc
    return text.encode("utf-8")


def _ensure_dir(path: Path) -> None:
    # A new folder's own entry must reach the disk too, or a power cut could lose the whole
    # model folder after its first version was committed.
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        fsync_dir(folder.parent)


def _fsync_file(fh: BinaryIO) -> None:
    """fsync and close a file left open by the writers above."""
    try:
        os.fsync(fh.fileno())
    finally:
        fh.close()


def _fsync_fd(fd: int) -> None:
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class PendingSync:
    """The fsyncs of a folder being written, each started on a kept background thread as soon
    as its file is written (:meth:`add`) or the folder's entries changed (:meth:`add_folder`).
    fsync releases the GIL, and the filesystem journal commits fsyncs issued together as one
    group.

    ``wait`` blocks until they are done (or ``timeout`` seconds pass: then it returns False)
    and re-raises the error of a failed fsync. Nothing may be recorded as stored before
    ``wait`` returned True, and a folder is removed only after ``join``.
    """

    def __init__(self) -> None:
        self._futures: list[Future[None]] = []

    def add(self, fh: BinaryIO) -> None:
        """fsync (then close) ``fh``, a file opened for writing whose data is all written."""
        self._futures.append(_fsync_pool().submit(_fsync_file, fh))

    def add_folder(self, folder: Path) -> None:
        """fsync a folder whose entries changed (opened now: a later rename does not matter).
        Folders cannot be opened for this on Windows, which skips it."""
        if os.name != "nt":
            self._futures.append(_fsync_pool().submit(_fsync_fd, os.open(folder, os.O_RDONLY)))

    def wait(self, timeout: float | None = None) -> bool:
        _, pending = wait_futures(self._futures, timeout)
        if pending:
            return False
        for future in self._futures:
            future.result()  # re-raises a failed fsync
        return True

    def join(self) -> None:
        """Wait for every fsync without raising (before the folder is removed)."""
        wait_futures(self._futures)


def write_temp_folder(
    parent: Path, artifact: Any, serializer: str | None = None
) -> tuple[Path, str]:
    """Write ``artifact`` into a new hidden temporary folder inside ``parent``.

    Every file is fsynced, and the folder; the manifest is written last. Returns the folder
    and the sha256 of its manifest. The caller publishes it with :func:`publish_folder` or
    removes it.
    """
    write = start_temp_folder(parent, prepare_artifact(artifact, serializer))
    try:
        checksum = write.finish(write.temp)
        write.sync.wait()
    except BaseException:
        write.sync.join()
        shutil.rmtree(write.temp, ignore_errors=True)
        raise
    return write.temp, checksum


def check_artifact(artifact: Any, serializer: str | None = None) -> None:
    """Raise the error :meth:`ModelVersionManager.create_version` would raise for ``artifact``
    (not a mapping, object arrays, values that are not JSON-able), without writing anything."""
    PreparedArtifact(artifact, serializer)


class PreparedArtifact:
    """An artifact checked and split into what the files will hold, before any disk access
    (:func:`prepare_artifact`)."""

    __slots__ = ("arrays", "files", "manifest", "npz", "npz_info")

    def __init__(self, artifact: Any, serializer: str | None) -> None:
        serializer = check_serializer(serializer)
        self.npz: list[Any] | None = None
        self.npz_info: Future[dict[str, Any]] | None = None
        self.files: dict[str, bytes] = {}
        self.arrays: dict[str, np.ndarray] = {}
        self.manifest: dict[str, Any] = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "serializer": serializer
        }
        if serializer is None:
            self.arrays, values = _split_artifact(artifact)
            _encode_values(values)  # refused here, in the caller's thread
            self.manifest["arrays"] = sorted(self.arrays)
            self.manifest["values"] = values
        elif serializer == "pickle":
            self.files[_OBJECT_FILES["pickle"]] = pickle.dumps(
                artifact, protocol=pickle.HIGHEST_PROTOCOL
            )
        else:
            buffer = io.BytesIO()
            _import_joblib().dump(artifact, buffer)
            self.files[_OBJECT_FILES["joblib"]] = buffer.getvalue()

    def start_hashing(self) -> None:
        """Lay out the npz file and start its sha256 on a worker thread (once): the bytes are
        known before they are written, so the hash runs while they are written."""
        if self.arrays and self.npz is None:
            self.npz = npz_buffers(self.arrays)
            self.npz_info = _hash_worker().submit(_sha256_of, self.npz)

    @property
    def nbytes(self) -> int:
        """The size of the data files' contents, about what writing them costs."""
        return sum(a.nbytes for a in self.arrays.values()) + sum(map(len, self.files.values()))


def prepare_artifact(artifact: Any, serializer: str | None = None) -> PreparedArtifact:
    """Check ``artifact`` and split it into what the files will hold; raises the errors
    :meth:`ModelVersionManager.create_version` raises for a bad artifact."""
    return PreparedArtifact(artifact, serializer)


class FolderWrite:
    """An artifact folder being written: :func:`start_temp_folder` writes the data files into
    ``temp`` and starts their fsyncs; :meth:`finish` writes the manifest, which holds their
    checksums, into the folder wherever it is by then (the caller may have renamed it).
    ``sync`` holds every fsync started for the folder."""

    __slots__ = ("_prepared", "_written", "checksum", "sync", "temp")

    def __init__(self, temp: Path, prepared: PreparedArtifact) -> None:
        self.temp = temp
        self.sync = PendingSync()
        self.checksum: str | None = None
        self._prepared = prepared
        self._written: dict[str, dict[str, Any]] = {}

    def finish(self, folder: Path) -> str:
        """Write the manifest into ``folder`` (this write's folder, possibly renamed), start
        its fsync and the folder's; return the manifest's sha256. Idempotent."""
        if self.checksum is None:
            if self._prepared.npz_info is not None:
                self._written[ARRAYS] = self._prepared.npz_info.result()
            manifest_bytes = _encode_values(
                {**self._prepared.manifest, "files": self._written}, indent=1
            )
            fh = open(folder / MANIFEST, "wb")  # noqa: SIM115 - closed by the fsync task
            try:
                checksum = _write_file(fh, manifest_bytes)["sha256"]
            except BaseException:
                fh.close()
                raise
            self.sync.add(fh)
            self.sync.add_folder(folder)
            self.checksum = checksum
        return self.checksum


def start_temp_folder(parent: Path, prepared: PreparedArtifact) -> FolderWrite:
    """Write the data files of a prepared artifact into a new hidden temporary folder inside
    ``parent``; returns as soon as they are written, with their fsyncs running, so the caller
    can overlap them with other work (see :class:`FolderWrite`). The caller must ``finish``
    the write and ``sync.wait()`` before recording it, and ``sync.join()`` before removing it.
    """
    _ensure_dir(parent)
    folder = parent / f"{TEMP_PREFIX}{uuid.uuid4().hex}"
    folder.mkdir()
    write = FolderWrite(folder, prepared)
    # Each file's fsync starts as soon as it is written, through the handle that wrote it
    # (opening a file again just to fsync it costs as much as the write).
    fh: BinaryIO | None = None
    try:
        for name, data in prepared.files.items():
            fh = open(folder / name, "wb")  # noqa: SIM115 - closed by the fsync task
            write._written[name] = _write_file(fh, data)
            write.sync.add(fh)
            fh = None
        if prepared.arrays:
            prepared.start_hashing()
            assert prepared.npz is not None
            fh = open(folder / ARRAYS, "wb")  # noqa: SIM115 - closed by the fsync task
            _write_buffers(fh, prepared.npz)
            write.sync.add(fh)
            fh = None
    except BaseException:
        if fh is not None:
            fh.close()
        write.sync.join()
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return write


def _import_joblib() -> Any:
    try:
        import joblib
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ValidationError(
            "serializer='joblib' needs the joblib package: pip install joblib"
        ) from exc
    return joblib


def remove_folder(folder: Path) -> None:
    """Remove a folder: first renamed to a hidden trash name so a half-removed tree is never
    mistaken for a live one, then deleted."""
    if not folder.exists():
        return
    trash = folder.parent / f"{TRASH_PREFIX}{uuid.uuid4().hex}"
    try:
        os.rename(folder, trash)
    except OSError:
        trash = folder
    shutil.rmtree(trash, ignore_errors=True)


def publish_folder(temp: Path, final: Path) -> None:
    """Rename a written temporary folder to its final name (same parent, so atomic).

    The caller must own ``final``'s database key: a folder already there then can only be an
    orphan left by a crash between this rename and a commit, and is removed.
    """
    move_folder(temp, final)
    fsync_dir(final.parent)


def move_folder(temp: Path, final: Path) -> None:
    """:func:`publish_folder` without its fsync: the caller adds the parent folder to the
    write's :class:`PendingSync` and waits for it before the commit that records the folder."""
    if final.exists():
        remove_folder(final)
    os.rename(temp, final)


def unpublish_folder(final: Path, temp: Path) -> None:
    """Undo :func:`publish_folder` after the transaction that should record it failed."""
    if final.exists() and not temp.exists():
        os.rename(final, temp)
        fsync_dir(final.parent)


def _read_verified(folder: Path, name: str, expected: str) -> bytes:
    path = folder / name
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise IntegrityError(f"artifact file {path} is missing") from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected:
        raise IntegrityError(
            f"artifact file {path} is corrupted: sha256 {digest} does not match the recorded "
            f"{expected}"
        )
    return data


def _read_manifest(folder: Path, checksum: str) -> dict[str, Any]:
    if not folder.is_dir():
        raise IntegrityError(f"artifact folder {folder} is missing")
    data = _read_verified(folder, MANIFEST, checksum)
    try:
        manifest = json.loads(data)
    except ValueError as exc:  # pragma: no cover - guarded by the checksum
        raise IntegrityError(f"artifact file {folder / MANIFEST} is not valid JSON") from exc
    version = manifest.get("format_version")
    if manifest.get("format") != FORMAT or version not in _READABLE_VERSIONS:
        raise IntegrityError(f"artifact file {folder / MANIFEST} has an unknown format")
    files = manifest.get("files")
    if not isinstance(files, dict) or not set(files) <= _KNOWN_FILES:
        raise IntegrityError(f"artifact file {folder / MANIFEST} lists unexpected files")
    if manifest.get("serializer") is None:
        # version 1 keeps the values in values.json and always writes both files; version 2
        # keeps them in the manifest and writes arrays.npz only when there are arrays
        needed = {ARRAYS, VALUES} if version == 1 else {ARRAYS} if manifest.get("arrays") else set()
        if version != 1 and not isinstance(manifest.get("values"), dict):
            raise IntegrityError(f"artifact file {folder / MANIFEST} has no values mapping")
        for name in sorted(needed - set(files)):
            raise IntegrityError(f"artifact file {folder / MANIFEST} does not list {name}")
    return manifest


def verify_folder(folder: Path, checksum: str) -> None:
    """Check that the manifest matches ``checksum`` and every file matches the manifest.

    Raises
    ------
    IntegrityError
        Naming the first missing or corrupted file.
    """
    manifest = _read_manifest(folder, checksum)
    for name, info in manifest["files"].items():
        _read_verified(folder, name, info["sha256"])


def load_folder(folder: Path, checksum: str, serializer: str | None = None) -> Any:
    """Load an artifact after verifying every checksum.

    ``serializer`` is the caller's opt-in: a pickle or joblib artifact is refused unless the
    same serializer is passed.
    """
    serializer = check_serializer(serializer)
    manifest = _read_manifest(folder, checksum)
    stored = manifest.get("serializer")
    files = manifest["files"]
    if stored is None:
        if manifest["format_version"] == 1:
            values_bytes = _read_verified(folder, VALUES, files[VALUES]["sha256"])
            result: dict[str, Any] = dict(json.loads(values_bytes))
        else:
            result = dict(manifest["values"])
        if ARRAYS not in files:
            return result
        arrays_bytes = _read_verified(folder, ARRAYS, files[ARRAYS]["sha256"])
        try:
            result.update(read_npz(arrays_bytes))
        except ValueError as exc:  # object arrays: refused rather than unpickled
            raise IntegrityError(
                f"artifact file {folder / ARRAYS} holds data that needs pickle to load ({exc}); "
                "it was not written by kaizenml and is refused"
            ) from exc
        return result
    if stored not in SERIALIZERS:
        raise IntegrityError(f"artifact file {folder / MANIFEST} names unknown serializer")
    if serializer != stored:
        raise ValidationError(
            f"the artifact in {folder} was saved with serializer={stored!r}; loading it runs code "
            f"stored in the file, so pass serializer={stored!r} explicitly, and only for "
            f"artifacts from a trusted source (got serializer={serializer!r})"
        )
    name = _OBJECT_FILES[stored]
    data = _read_verified(folder, name, files[name]["sha256"])
    if stored == "pickle":
        return pickle.loads(data)
    return _import_joblib().load(io.BytesIO(data))
