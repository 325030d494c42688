"""Worker process for the storage conformance tests: claim the next number ``count`` times.

Usage: python _counter_worker.py WORKER_INDEX URL COUNT

Each claim reads MAX(number) and inserts MAX + 1 in one transaction; concurrent claimers
collide on the primary key and :func:`retry_on_conflict` repeats the whole transaction.
"""

from __future__ import annotations

import sys

import sqlalchemy as sa

from kaizenml.storage import get_engine, retry_on_conflict


def main() -> None:
    worker, url, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    md = sa.MetaData()
    counter = sa.Table(
        "conf_counter",
        md,
        sa.Column("number", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("writer", sa.String(64), nullable=False),
    )
    engine = get_engine(url)

    def claim() -> int:
        with engine.begin() as conn:
            top = conn.execute(sa.select(sa.func.coalesce(sa.func.max(counter.c.number), 0)))
            number = int(top.scalar_one()) + 1
            conn.execute(counter.insert().values(number=number, writer=f"p{worker}"))
            return number

    got = [retry_on_conflict(claim) for _ in range(count)]
    print(" ".join(map(str, got)))


if __name__ == "__main__":
    main()
