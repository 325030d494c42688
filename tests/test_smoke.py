"""Fast checks that the installed package imports and its build metadata is sound."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

import kaizenml

ROOT = Path(__file__).resolve().parents[1]


def test_version_and_errors() -> None:
    assert kaizenml.__version__.count(".") == 2
    assert issubclass(kaizenml.ValidationError, ValueError)
    assert issubclass(kaizenml.ValidationError, kaizenml.KaizenError)


@pytest.mark.parametrize("name", ["tests.yml", "wheels.yml"])
def test_workflows_parse(name: str) -> None:
    path = ROOT / ".github" / "workflows" / name
    doc = yaml.safe_load(path.read_text())
    # PyYAML reads the bare key `on` as True
    assert "jobs" in doc and (True in doc or "on" in doc)
    for job in doc["jobs"].values():
        assert job["runs-on"]
        assert job["steps"]


def test_workflow_matrix_covers_supported_pythons() -> None:
    path = ROOT / ".github" / "workflows" / "tests.yml"
    matrix = yaml.safe_load(path.read_text())["jobs"]["test"]["strategy"]["matrix"]
    assert matrix["python-version"] == ["3.10", "3.11", "3.12", "3.13"]
    assert set(matrix["os"]) == {"ubuntu-latest", "macos-latest"}


def test_cibuildwheel_config() -> None:
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["cibuildwheel"]
    assert "pp*" in cfg["skip"] and "musllinux" in cfg["skip"]
    assert cfg["linux"]["archs"] == ["x86_64", "aarch64"]
    assert "test-command" in cfg


def test_every_public_name_resolves() -> None:
    for name in kaizenml.__all__:
        assert getattr(kaizenml, name) is not None, name
    assert kaizenml.Float is kaizenml.optimize.Float
    assert kaizenml.FeatureStore is kaizenml.features.FeatureStore
