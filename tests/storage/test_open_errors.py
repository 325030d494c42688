"""A store that cannot be opened fails with StorageError naming the URL (password hidden)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kaizenml import StorageError
from kaizenml.versioning import ModelVersionManager


def test_unsupported_backend_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match=r"storage='mysql://x/y' uses the 'mysql' backend"):
        ModelVersionManager("mysql://x/y", tmp_path)


def test_unreachable_server_names_url_without_password(tmp_path: Path) -> None:
    url = "postgresql+psycopg://user:s3cret@127.0.0.1:1/db"  # nothing listens on port 1
    shown = r"cannot open storage='postgresql\+psycopg://user:\*\*\*@127"
    with pytest.raises(StorageError, match=shown) as info:
        ModelVersionManager(url, tmp_path).list_models()
    assert "s3cret" not in str(info.value)


def test_sqlite_folder_that_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StorageError, match="cannot create the database's folder"):
        ModelVersionManager(f"sqlite:///{blocker / 'sub' / 'k.db'}", tmp_path / "art")


def test_sqlite_file_that_cannot_be_opened(tmp_path: Path) -> None:
    folder = tmp_path / "db-is-a-folder.db"
    folder.mkdir()
    with pytest.raises(StorageError, match="cannot open storage="):
        ModelVersionManager(f"sqlite:///{folder}", tmp_path / "art").list_models()
