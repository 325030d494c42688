"""Artifact folders: safe on-disk format, atomic publication and verified loading.

Used by the version manager and the checkpointer. A folder holds

* ``arrays.npz``   every numpy array of the artifact (the ``np.savez`` format; read with
  ``allow_pickle=False``, so object arrays are refused);
* ``values.json``  every other value, which must be JSON-able;
* ``manifest.json`` the format, the serializer and the sha256 and size of each file.

Every file is fsynced, and so is the folder, before the folder is renamed into place.

The sha256 of ``manifest.json`` itself is kept in the database row, so the row pins the whole
folder. With an explicit ``serializer="pickle"`` or ``"joblib"`` the artifact is stored as one
``artifact.pkl`` / ``artifact.joblib`` instead of the two data files; loading it needs the same
opt-in. Nothing in a folder is ever imported or executed: only the fixed file names above are
opened, and the bytes are hashed before they are parsed.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import shutil
import threading
import uuid
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from .._exceptions import IntegrityError, KaizenTypeError, ValidationError
from ..storage import fsync_dir

__all__ = [
    "PendingSync",
    "SERIALIZERS",
    "check_serializer",
    "load_folder",
    "publish_folder",
    "remove_folder",
    "start_temp_folder",
    "unpublish_folder",
    "verify_folder",
    "write_temp_folder",
]

SERIALIZERS = ("pickle", "joblib")
FORMAT = "kaizenml-artifact"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
ARRAYS = "arrays.npz"
VALUES = "values.json"
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


def _write_file(path: Path, data: bytes, opened: list[BinaryIO]) -> dict[str, Any]:
    """Write ``data`` to a new file and leave it open (appended to ``opened``) for its fsync:
    opening a file again just to fsync it costs as much as the write here."""
    fh = open(path, "wb")  # noqa: SIM115 - closed by _fsync_target or the caller's cleanup
    opened.append(fh)
    fh.write(data)
    fh.flush()
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def _fsync_target(target: Path | BinaryIO, errors: list[BaseException]) -> None:
    """fsync a folder (by path) or a file left open by :func:`_write_file` (then closed)."""
    try:
        if isinstance(target, Path):
            # Windows can only flush a file opened for writing; POSIX folders open read-only.
            fd = os.open(target, os.O_RDONLY if target.is_dir() else os.O_RDWR)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        else:
            try:
                os.fsync(target.fileno())
            finally:
                target.close()
    except BaseException as exc:  # re-raised by the caller's thread
        errors.append(exc)


def _fsync_all(paths: list[Path | BinaryIO]) -> None:
    """fsync files (and folders) concurrently.

    fsync releases the GIL; issued together, the filesystem journal commits them as one group
    instead of one commit per file, which roughly halves the cost of a small folder.
    """
    if os.name == "nt":  # folders cannot be opened for fsync on Windows
        paths = [p for p in paths if not (isinstance(p, Path) and p.is_dir())]
    errors: list[BaseException] = []
    threads = [
        threading.Thread(target=_fsync_target, args=(p, errors), name="kaizenml-fsync")
        for p in paths[1:]
    ]
    for thread in threads:
        thread.start()
    _fsync_target(paths[0], errors)
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


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


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    # The .npz layout of np.savez (an uncompressed zip of .npy members), written member by
    # member so that artifact keys never collide with np.savez's own keyword arguments
    # ("file", "allow_pickle").
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for key, array in arrays.items():
            with zf.open(key + ".npy", "w", force_zip64=True) as member:
                _write_npy(member, array)
    return buffer.getvalue()


def _write_npy(member: Any, array: np.ndarray) -> None:
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
        member.write(data.reshape(-1).view(np.uint8).data)


def _encode_values(values: dict[str, Any]) -> bytes:
    try:
        text = json.dumps(values, sort_keys=True, allow_nan=True)
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


class PendingSync:
    """The fsync of a written folder, running on a background thread.

    ``wait`` blocks until it is done (or ``timeout`` seconds pass: then it returns False) and
    re-raises the error of a failed fsync. Nothing may be published before ``wait`` returned
    True.
    """

    def __init__(self, paths: list[Path | BinaryIO]) -> None:
        self._errors: list[BaseException] = []
        self._thread = threading.Thread(
            target=self._run, args=(paths,), name="kaizenml-fsync", daemon=True
        )
        self._thread.start()

    def _run(self, paths: list[Path | BinaryIO]) -> None:
        try:
            _fsync_all(paths)
        except BaseException as exc:  # re-raised by wait() in the caller's thread
            self._errors.append(exc)

    def wait(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        if self._thread.is_alive():
            return False
        if self._errors:
            raise self._errors[0]
        return True

    def join(self) -> None:
        """Wait for the thread without raising (before the folder is removed)."""
        self._thread.join()


def write_temp_folder(
    parent: Path, artifact: Any, serializer: str | None = None
) -> tuple[Path, str]:
    """Write ``artifact`` into a new hidden temporary folder inside ``parent``.

    Every file is fsynced; the manifest is written last. Returns the folder and the sha256 of
    its manifest. The caller publishes it with :func:`publish_folder` or removes it.
    """
    folder, checksum, sync = start_temp_folder(parent, artifact, serializer)
    try:
        sync.wait()
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder, checksum


def start_temp_folder(
    parent: Path, artifact: Any, serializer: str | None = None
) -> tuple[Path, str, PendingSync]:
    """:func:`write_temp_folder` that returns as soon as the files are written, with their
    fsync still running (see :class:`PendingSync`), so the caller can overlap it with other
    work. The caller must ``wait()`` before publishing and ``join()`` before removing it."""
    serializer = check_serializer(serializer)
    files: dict[str, bytes] = {}
    manifest: dict[str, Any] = {"format": FORMAT, "format_version": FORMAT_VERSION}
    if serializer is None:
        arrays, values = _split_artifact(artifact)
        values_bytes = _encode_values(values)
        files[ARRAYS] = _npz_bytes(arrays)
        files[VALUES] = values_bytes
        manifest["arrays"] = sorted(arrays)
        manifest["values"] = sorted(values)
    elif serializer == "pickle":
        files[_OBJECT_FILES["pickle"]] = pickle.dumps(artifact, protocol=pickle.HIGHEST_PROTOCOL)
    else:
        joblib = _import_joblib()
        buffer = io.BytesIO()
        joblib.dump(artifact, buffer)
        files[_OBJECT_FILES["joblib"]] = buffer.getvalue()
    manifest["serializer"] = serializer

    _ensure_dir(parent)
    folder = parent / f"{TEMP_PREFIX}{uuid.uuid4().hex}"
    folder.mkdir()
    opened: list[BinaryIO] = []
    try:
        manifest["files"] = {
            name: _write_file(folder / name, data, opened) for name, data in files.items()
        }
        manifest_bytes = json.dumps(manifest, sort_keys=True, indent=1).encode("utf-8")
        _write_file(folder / MANIFEST, manifest_bytes, opened)
    except BaseException:
        for fh in opened:
            fh.close()
        shutil.rmtree(folder, ignore_errors=True)
        raise
    sync = PendingSync([*opened, folder])
    return folder, hashlib.sha256(manifest_bytes).hexdigest(), sync


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
    if final.exists():
        remove_folder(final)
    os.rename(temp, final)
    fsync_dir(final.parent)


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
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise IntegrityError(f"artifact file {folder / MANIFEST} has an unknown format")
    files = manifest.get("files")
    if not isinstance(files, dict) or not set(files) <= _KNOWN_FILES:
        raise IntegrityError(f"artifact file {folder / MANIFEST} lists unexpected files")
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
        arrays_bytes = _read_verified(folder, ARRAYS, files[ARRAYS]["sha256"])
        values_bytes = _read_verified(folder, VALUES, files[VALUES]["sha256"])
        result: dict[str, Any] = dict(json.loads(values_bytes))
        try:
            with np.load(io.BytesIO(arrays_bytes), allow_pickle=False) as npz:
                for key in npz.files:
                    result[key] = npz[key]
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
