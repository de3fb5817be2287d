"""One engine per store URL and process, its schema upgraded by Alembic on first use; write transactions.

SQLite is the embedded default: one process writes at a time (WAL, and writers wait for the lock up front), so
several serving workers need Postgres. Postgres is the production store.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

HEAD = "0002"  # the newest migration; a store at it skips Alembic altogether (a test keeps this in step)
MIGRATIONS = Path(__file__).with_name("migrations")
_UPGRADE_LOCK = 0x10710957  # Postgres advisory lock: one process migrates, the others wait and find it done


def create_engine(url: str) -> sa.Engine:
    """A new engine for a store URL (SQLite with WAL and locking write transactions), schema untouched."""
    if url.startswith("postgresql://"):
        from iot_mlops.settings import psycopg2_url

        url = psycopg2_url(url)
    sqlite = url.startswith("sqlite")
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, pool_pre_ping=True, connect_args={"timeout": 30} if sqlite else {})
    if sqlite:
        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record) -> None:
            dbapi_conn.isolation_level = None  # transactions are begun below, not by the driver
            # WAL with synchronous=NORMAL: a commit survives the process crashing, not a power cut (no fsync per
            # commit; checkpoints still sync). journal_size_limit: a WAL that was long is cut back to 64 MB.
            for pragma in ("journal_mode = WAL", "synchronous = NORMAL", "foreign_keys = ON", "busy_timeout = 30000",
                           "journal_size_limit = 67108864"):
                dbapi_conn.execute(f"PRAGMA {pragma}")

        @sa.event.listens_for(engine, "begin")
        def _begin(conn) -> None:
            # A deferred read-then-write transaction fails at once (SQLITE_BUSY) when another writer got in
            # between; IMMEDIATE takes the write lock up front and waits for it.
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("write") else "BEGIN")
    return engine


@functools.lru_cache(maxsize=16)
def engine_for(url: str) -> sa.Engine:
    """The process's engine for a store URL, its schema migrated to the newest revision."""
    engine = create_engine(url)
    upgrade(engine)
    return engine


@contextmanager
def write_transaction(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A transaction that writes: on SQLite it holds the write lock from its first statement."""
    with engine.connect() as conn:
        conn.execution_options(write=True)
        with conn.begin():
            yield conn


def revision(conn: sa.Connection) -> str | None:
    """The store's Alembic revision; None for an empty database or one made before migrations."""
    if not sa.inspect(conn).has_table("alembic_version"):
        return None
    return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()


def upgrade(engine: sa.Engine) -> None:
    """Migrate the store to HEAD; the baseline keeps the tables a store made before migrations already has."""
    with engine.connect() as conn:
        if revision(conn) == HEAD:
            return
    from alembic import command
    from alembic.config import Config

    with write_transaction(engine) as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_UPGRADE_LOCK})")
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


def insert_ignoring_duplicates(conn: sa.Connection, table: sa.Table):
    """INSERT that skips rows whose primary key a concurrent writer stored first."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        return table.insert()
    return insert(table).on_conflict_do_nothing(index_elements=[c.name for c in table.primary_key])
