"""One storage conformance suite, run against SQLite and PostgreSQL (the ``storage_url`` fixture).

Every behaviour the domain modules rely on is checked on each backend: engines, transactions,
conflict retries under threads and processes, unique constraints, JSON text, large values and
timezone-aware timestamps.
"""

from __future__ import annotations

import datetime as dt
import math
import threading

import pytest
import sqlalchemy as sa

from kaizenml import KaizenTypeError, StorageError
from kaizenml.storage import (
    default_storage_url,
    dispose_engine,
    ensure_schema,
    get_engine,
    metadata,
    resolve_engine,
    retry_on_conflict,
    schema_versions,
    transaction_lock,
)


def test_engine_is_shared_per_url_and_backend_matches(storage_url: str) -> None:
    engine = get_engine(storage_url)
    assert get_engine(storage_url) is engine
    assert resolve_engine(storage_url) is engine
    assert resolve_engine(engine) is engine
    expected = "sqlite" if storage_url.startswith("sqlite") else "postgresql"
    assert engine.dialect.name == expected
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT 41 + 1")).scalar_one() == 42
    dispose_engine(storage_url)
    again = get_engine(storage_url)
    assert again is not engine
    with again.connect() as conn:
        assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1


def test_default_store_follows_kaizenml_home(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("KAIZENML_HOME", str(tmp_path / "home"))
    url = default_storage_url()
    assert url == f"sqlite:///{tmp_path / 'home' / 'kaizenml.db'}"
    assert resolve_engine(None) is get_engine(url)
    dispose_engine(url)


def test_bad_storage_arguments() -> None:
    with pytest.raises(KaizenTypeError, match="database URL string"):
        get_engine(42)  # type: ignore[arg-type]
    with pytest.raises(StorageError, match="not a database URL"):
        get_engine("no-such-scheme")


def test_ensure_schema_creates_shared_tables_and_is_idempotent(storage_url: str) -> None:
    engine = get_engine(storage_url)
    ensure_schema(engine)
    ensure_schema(engine)
    names = set(sa.inspect(engine).get_table_names())
    assert set(metadata.tables) <= names
    assert "kaizenml_schema_version" in names
    # Every registered component is stamped exactly once at its newest version.
    from kaizenml.storage import _migrations

    for comp in _migrations.registered_components():
        assert schema_versions(engine)[comp.name] == comp.latest


def test_transaction_rolls_back_as_a_whole(conf_store) -> None:
    _url, engine, t = conf_store
    docs = t["docs"]
    with pytest.raises(RuntimeError, match="boom"):
        with engine.begin() as conn:
            conn.execute(docs.insert().values(name="a", x=1.0))
            conn.execute(docs.insert().values(name="b", x=2.0))
            raise RuntimeError("boom")
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(docs)).scalar_one() == 0
    with engine.begin() as conn:
        conn.execute(docs.insert().values(name="a", x=1.0))
    # A committed row is visible from a brand-new connection of another engine.
    other = sa.create_engine(engine.url, poolclass=sa.pool.NullPool)
    with other.connect() as conn:
        assert conn.execute(sa.select(docs.c.name)).scalars().all() == ["a"]
    other.dispose()


def test_unique_constraint_is_enforced(conf_store) -> None:
    _url, engine, t = conf_store
    docs = t["docs"]
    with engine.begin() as conn:
        conn.execute(docs.insert().values(name="same"))
    with pytest.raises(sa.exc.IntegrityError):
        with engine.begin() as conn:
            conn.execute(docs.insert().values(name="same"))
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(docs)).scalar_one() == 1


def _claim(engine: sa.engine.Engine, counter: sa.Table, writer: str) -> int:
    def txn() -> int:
        with engine.begin() as conn:
            top = conn.execute(sa.select(sa.func.coalesce(sa.func.max(counter.c.number), 0)))
            number = int(top.scalar_one()) + 1
            conn.execute(counter.insert().values(number=number, writer=writer))
            return number

    return retry_on_conflict(txn)


def test_retry_on_conflict_with_threads(conf_store) -> None:
    _url, engine, t = conf_store
    counter = t["counter"]
    n_threads, per_thread = 6, 20
    claimed: list[list[int]] = [[] for _ in range(n_threads)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(n_threads)

    def work(i: int) -> None:
        try:
            barrier.wait()
            for _ in range(per_thread):
                claimed[i].append(_claim(engine, counter, f"t{i}"))
        except BaseException as exc:  # surfaced in the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    everything = sorted(n for c in claimed for n in c)
    assert everything == list(range(1, n_threads * per_thread + 1))
    for c in claimed:  # each writer sees its own claims in increasing order
        assert c == sorted(c)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(counter.c.number, counter.c.writer)).all()
    assert len(rows) == n_threads * per_thread
    owner = {n: w for n, w in rows}
    for i, c in enumerate(claimed):
        assert all(owner[n] == f"t{i}" for n in c)


def test_retry_on_conflict_with_processes(conf_store, run_workers) -> None:
    url, engine, t = conf_store
    n_procs, per_proc = 4, 25
    outs = run_workers("_counter_worker.py", n_procs, url, str(per_proc))
    claimed = [list(map(int, out.split())) for out in outs]
    assert sorted(n for c in claimed for n in c) == list(range(1, n_procs * per_proc + 1))
    with engine.connect() as conn:
        rows = dict(conn.execute(sa.select(t["counter"].c.number, t["counter"].c.writer)).all())
    for i, c in enumerate(claimed):
        assert c == sorted(c)
        assert all(rows[n] == f"p{i}" for n in c)


def test_retry_gives_up_on_permanent_errors(conf_store) -> None:
    _url, engine, _t = conf_store
    calls = []

    def bad() -> None:
        calls.append(1)
        with engine.begin() as conn:
            conn.execute(sa.text("SELECT * FROM no_such_table_here"))

    with pytest.raises(sa.exc.DBAPIError):
        retry_on_conflict(bad)
    assert len(calls) == 1  # a missing table is not a conflict: no retry


JSON_DOCS = [
    {"lr": 0.1 + 0.2, "tiny": 5e-324, "huge": 1.7976931348623157e308, "neg0": -0.0},
    {"nested": {"list": [1, 2.5, "three", None, True, {"deep": []}]}, "z": 1, "a": 2},
    {"unicode": "Kaizen 改善 ∑ 🚀", "quote": 'it\'s "quoted"\n\ttab', "big": 2**62 + 1},
    {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")},
    [],
    "just a string",
]


@pytest.mark.parametrize("doc", JSON_DOCS, ids=range(len(JSON_DOCS)))
def test_json_text_round_trip(conf_store, doc) -> None:
    _url, engine, t = conf_store
    docs = t["docs"]
    with engine.begin() as conn:
        conn.execute(docs.insert().values(name="d", doc=doc))
    with engine.connect() as conn:
        back = conn.execute(sa.select(docs.c.doc)).scalar_one()
        raw = conn.execute(sa.text("SELECT doc FROM conf_docs")).scalar_one()

    def same(a, b) -> bool:
        if isinstance(a, float) and math.isnan(a):
            return isinstance(b, float) and math.isnan(b)
        if isinstance(a, float):
            return type(b) is float and a == b and math.copysign(1, a) == math.copysign(1, b)
        if isinstance(a, dict):
            return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
        if isinstance(a, list):
            return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
        return type(a) is type(b) and a == b

    assert same(doc, back)
    assert isinstance(raw, str)  # stored as text: same bytes on every backend


def test_large_values_round_trip(conf_store) -> None:
    _url, engine, t = conf_store
    docs = t["docs"]
    blob = bytes(range(256)) * (4 * 4096)  # 4 MiB, every byte value
    text = "αβγ-kaizen-" * 200_000  # about 2.6 MB of UTF-8
    doc = {"weights": [i * 0.001 for i in range(50_000)]}
    with engine.begin() as conn:
        conn.execute(docs.insert().values(name="big", blob=blob, text=text, doc=doc))
    with engine.connect() as conn:
        row = conn.execute(sa.select(docs.c.blob, docs.c.text, docs.c.doc)).one()
    assert bytes(row.blob) == blob
    assert row.text == text
    assert row.doc == doc


def test_floats_round_trip_exactly(conf_store) -> None:
    _url, engine, t = conf_store
    docs = t["docs"]
    values = [0.1 + 0.2, 1 / 3, 5e-324, 1.7976931348623157e308, -2.5e-17, math.pi]
    with engine.begin() as conn:
        for i, v in enumerate(values):
            conn.execute(docs.insert().values(name=f"f{i}", x=v))
    with engine.connect() as conn:
        back = conn.execute(sa.select(docs.c.x).order_by(docs.c.id)).scalars().all()
    assert back == values


def test_timestamps_keep_their_instant_and_come_back_aware(conf_store) -> None:
    _url, engine, t = conf_store
    docs = t["docs"]
    ist = dt.timezone(dt.timedelta(hours=5, minutes=30))
    est = dt.timezone(dt.timedelta(hours=-5))
    stamps = [
        dt.datetime(2024, 3, 10, 1, 59, 59, 999_999, tzinfo=est),  # 06:59:59.999999 UTC
        dt.datetime(2024, 3, 10, 12, 0, 0, 1, tzinfo=ist),  # 06:30:00.000001 UTC
        dt.datetime(2024, 3, 10, 7, 0, 0, tzinfo=dt.timezone.utc),
    ]
    with engine.begin() as conn:
        for i, s in enumerate(stamps):
            conn.execute(docs.insert().values(name=f"t{i}", at=s))
    with engine.connect() as conn:
        rows = conn.execute(sa.select(docs.c.name, docs.c.at).order_by(docs.c.at)).all()
        after = (
            conn.execute(
                sa.select(docs.c.name).where(
                    docs.c.at > dt.datetime(2024, 3, 10, 6, 45, tzinfo=dt.timezone.utc)
                )
            )
            .scalars()
            .all()
        )
    # Ordered by instant, not by wall-clock text.
    assert [r.name for r in rows] == ["t1", "t0", "t2"]
    for name, at in rows:
        original = stamps[int(name[1])]
        assert at.tzinfo is not None and at.utcoffset() == dt.timedelta(0)
        assert at == original  # same instant, microseconds included
    assert sorted(after) == ["t0", "t2"]


def test_naive_timestamps_are_refused(conf_store) -> None:
    _url, engine, t = conf_store
    with pytest.raises(sa.exc.StatementError, match="naive datetime"):
        with engine.begin() as conn:
            conn.execute(t["docs"].insert().values(name="n", at=dt.datetime(2024, 1, 1)))


def test_transaction_lock_serializes_read_then_write(conf_store) -> None:
    _url, engine, t = conf_store
    counter = t["counter"]
    with engine.begin() as conn:
        conn.execute(counter.insert().values(number=0, writer="start"))
    first_holds = threading.Event()
    order: list[str] = []
    seen_by_second: list[int] = []

    def second() -> None:
        first_holds.wait()
        with engine.begin() as conn:
            transaction_lock(conn, "counter")
            order.append("second got the lock")
            top = conn.execute(sa.select(sa.func.max(counter.c.number))).scalar_one()
            seen_by_second.append(int(top))
            conn.execute(counter.insert().values(number=top + 1, writer="second"))

    th = threading.Thread(target=second)
    th.start()
    with engine.begin() as conn:
        transaction_lock(conn, "counter")
        top = conn.execute(sa.select(sa.func.max(counter.c.number))).scalar_one()
        first_holds.set()
        th.join(timeout=0.5)
        assert th.is_alive(), "the second writer did not wait for the lock"
        order.append("first writes")
        conn.execute(counter.insert().values(number=top + 1, writer="first"))
    th.join(timeout=30)
    assert not th.is_alive()
    assert order == ["first writes", "second got the lock"]
    assert seen_by_second == [1]  # it read the first writer's committed row


def test_transaction_lock_prevents_lost_updates(conf_store) -> None:
    _url, engine, t = conf_store
    docs = t["docs"]
    with engine.begin() as conn:
        conn.execute(docs.insert().values(name="balance", x=0.0))
    n_threads, per_thread = 4, 15
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(per_thread):
                with engine.begin() as conn:
                    transaction_lock(conn, "balance")
                    x = conn.execute(sa.select(docs.c.x).where(docs.c.name == "balance"))
                    value = x.scalar_one()
                    conn.execute(
                        docs.update().where(docs.c.name == "balance").values(x=value + 1.0)
                    )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    with engine.connect() as conn:
        final = conn.execute(sa.select(docs.c.x).where(docs.c.name == "balance")).scalar_one()
    assert final == n_threads * per_thread


def test_transaction_lock_validates_key(conf_store) -> None:
    _url, engine, _t = conf_store
    with engine.begin() as conn:
        with pytest.raises(KaizenTypeError, match="key must be a non-empty str"):
            transaction_lock(conn, "")
