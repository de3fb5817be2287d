"""Steady write streams to a SQLite file from several processes (the prediction service's workers).

- Writers take turns on an OS file lock before SQLite's own write lock. SQLite's busy handler sleeps and retries
  (1, 2, 5, 10 ... ms): under a stream of short write transactions a waiter keeps missing the free moments, and
  requests wait for 100+ ms. A blocked flock is woken as soon as the holder lets go.
- A WAL checkpoint normally runs inside whichever commit crosses 1,000 WAL pages, making that commit take 15-25 ms.
  A writer that must stay fast turns that off for its own connections and checkpoints from a thread of its own.
- Under a steady write stream a checkpoint never copies the whole WAL (frames keep arriving while it runs), so
  SQLite never starts the WAL over and the file grows without end (seen here: 4.8 GB beside a 1.4 GB database).
  Once the WAL is long, the checkpointer copies the last frames while holding the write lock and restarts it.
"""

from __future__ import annotations

import fcntl
import functools
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import ContextManager

import sqlalchemy as sa

log = logging.getLogger(__name__)


class FileWriteLock:
    """An exclusive lock on `<database>.write-lock`, shared by the threads of a process and across processes."""

    def __init__(self, database: Path):
        self.path = database.with_name(database.name + ".write-lock")
        self._threads = threading.Lock()  # flock does not exclude threads sharing one open file
        self._fd: int | None = None

    @contextmanager
    def hold(self) -> Iterator[None]:
        with self._threads:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)


@functools.lru_cache(maxsize=16)
def _lock_for(database: str) -> FileWriteLock:
    # Keyed by the path as written; resolved once here, not on every write. Two spellings of one file get two
    # objects, whose flocks on separate open files still exclude each other.
    return FileWriteLock(Path(database).resolve())


def write_lock(engine: sa.Engine | str) -> ContextManager[None]:
    """Held around a write transaction: the file lock for a SQLite file, nothing for a server database."""
    url = engine.url if isinstance(engine, sa.Engine) else sa.engine.make_url(engine)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return _lock_for(url.database).hold()
    return nullcontext()


class WalCheckpointer:
    """Every `seconds`, a passive WAL checkpoint on its own connection, which blocks no one; when the WAL holds more
    than `restart_frames` frames (64 MB), the rest is copied under the write lock and the WAL starts over: writers
    pause for about 10 ms (the syncs), every few seconds under the serving benchmark's load."""

    def __init__(self, engine: sa.Engine, seconds: float = 1.0, restart_frames: int = 16_384):
        self.engine, self.seconds, self.restart_frames = engine, seconds, restart_frames
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.engine.url.get_backend_name() == "sqlite" and self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def checkpoint(self) -> tuple[int, int]:
        """One round; returns the WAL's frames and those copied into the database, as the last checkpoint saw them."""
        with self.engine.connect() as conn:
            _, frames, copied = conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").one()
            if frames > self.restart_frames:
                for _ in range(3):  # the frames written meanwhile, so that little is left to copy under the lock
                    _, frames, copied = conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").one()
                    if frames - copied < 256:
                        break
                with write_lock(self.engine):
                    _, frames, copied = conn.exec_driver_sql("PRAGMA wal_checkpoint(RESTART)").one()
        return frames, copied

    def _run(self) -> None:
        while not self._stop.wait(self.seconds):
            try:
                self.checkpoint()
            except sa.exc.OperationalError as error:  # busy or unreachable: the next round tries again
                log.warning("WAL checkpoint failed: %s", error)
