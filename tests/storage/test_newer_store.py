"""A store whose domain schema was written by a newer kaizenml is refused, not modified."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from kaizenml import StorageError
from kaizenml.storage import dispose_engine, get_engine, schema_versions


def _stamp(url: str, component: str, version: int) -> None:
    with get_engine(url).begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO kaizenml_schema_version (component, version, description, "
                "applied_at) VALUES (:c, :v, 'from a newer kaizenml', CURRENT_TIMESTAMP)"
            ),
            {"c": component, "v": version},
        )
    dispose_engine(url)  # a new process opens it


def test_each_domain_records_its_schema_version(tmp_path: Path) -> None:
    from kaizenml.features import FeatureStore
    from kaizenml.optimize import Float, optimize_hyperparameters
    from kaizenml.versioning import ModelVersionManager

    url = f"sqlite:///{tmp_path / 'k.db'}"
    ModelVersionManager(url, tmp_path / "art")
    FeatureStore(url, cache_dir=None)
    optimize_hyperparameters({"x": Float(0, 1)}, lambda p: p["x"], max_trials=1,
                             strategy="random", storage=url, study_name="s")
    versions = schema_versions(get_engine(url))
    assert {versions["versioning"], versions["features"], versions["studies"]} == {1}


@pytest.mark.parametrize("component", ["versioning", "features", "studies"])
def test_a_store_from_a_newer_kaizenml_is_refused(tmp_path: Path, component: str) -> None:
    from kaizenml.features import FeatureStore
    from kaizenml.optimize import Float, optimize_hyperparameters
    from kaizenml.versioning import ModelVersionManager

    url = f"sqlite:///{tmp_path / 'k.db'}"
    open_store = {
        "versioning": lambda: ModelVersionManager(url, tmp_path / "art"),
        "features": lambda: FeatureStore(url, cache_dir=None),
        "studies": lambda: optimize_hyperparameters(
            {"x": Float(0, 1)}, lambda p: p["x"], max_trials=1, strategy="random",
            storage=url, study_name="s", load_if_exists=True),
    }[component]
    open_store()
    _stamp(url, component, 2)
    with pytest.raises(StorageError, match=rf"this store's '{component}' schema is version 2, "
                                           "newer than the newest this kaizenml knows"):
        open_store()
