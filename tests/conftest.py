"""Fixtures shared by every test area.

``storage_url`` gives each test a private, empty store on each backend: a SQLite file in the
test's temporary folder, and a schema of its own on the PostgreSQL server named by
``KAIZENML_TEST_POSTGRES_URL`` (so tests never see each other's tables). Outside CI, the
PostgreSQL case is skipped when that variable is unset; with ``CI`` set it fails instead, so a
CI run can never pass without having exercised PostgreSQL.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

POSTGRES_ENV = "KAIZENML_TEST_POSTGRES_URL"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _postgres_unavailable(reason: str) -> None:
    if _in_ci():
        pytest.fail(f"PostgreSQL is required in CI but unavailable: {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL tests need a server: {reason}")


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    """The base URL of the test PostgreSQL server, checked to accept connections."""
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        _postgres_unavailable(f"{POSTGRES_ENV} is not set (bash .ci/run starts a server)")
    try:
        import sqlalchemy as sa

        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # any driver or network failure means "not available"
        _postgres_unavailable(f"cannot connect to {POSTGRES_ENV}: {exc}")
    return url


def _make_pg_schema(base_url: str) -> tuple[str, str]:
    import sqlalchemy as sa

    schema = f"kz_{uuid.uuid4().hex[:16]}"
    engine = sa.create_engine(base_url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    engine.dispose()
    url = (
        sa.engine.make_url(base_url)
        .update_query_dict({"options": f"-csearch_path={schema}"})
        .render_as_string(hide_password=False)
    )
    return schema, url


def _drop_pg_schema(base_url: str, schema: str, url: str) -> None:
    import sqlalchemy as sa

    from kaizenml.storage import dispose_engine

    dispose_engine(url)
    engine = sa.create_engine(base_url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    engine.dispose()


@pytest.fixture
def postgres_url(postgres_server_url: str) -> Iterator[str]:
    """A PostgreSQL storage URL whose tables live in a fresh schema dropped after the test."""
    schema, url = _make_pg_schema(postgres_server_url)
    try:
        yield url
    finally:
        _drop_pg_schema(postgres_server_url, schema, url)


@pytest.fixture(params=["sqlite", "postgresql"])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty store's URL, once per backend (SQLite file, PostgreSQL schema)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'kaizenml.db'}"
        try:
            yield url
        finally:
            from kaizenml.storage import dispose_engine

            dispose_engine(url)
        return
    base = request.getfixturevalue("postgres_server_url")
    schema, url = _make_pg_schema(base)
    try:
        yield url
    finally:
        _drop_pg_schema(base, schema, url)


@pytest.fixture
def worker_env() -> dict[str, str]:
    """Environment for child Python processes: they import the same kaizenml as the tests
    (the installed package or the source tree, whichever this process imported), also when
    they start in another folder."""
    import kaizenml

    env = dict(os.environ)
    package_parent = str(Path(kaizenml.__file__).resolve().parents[1])
    paths = [str(Path(p).resolve()) for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join([package_parent, *paths])
    return env
