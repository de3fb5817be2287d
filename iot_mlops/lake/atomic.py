"""Atomic, idempotent file writes: write aside in the same folder, then rename over."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

TMP_PREFIX = ".tmp-"


def atomic_write(target: Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp_path)` then atomically move the result onto `target`.

    A reader sees the old file or the new one, never a partial one; a killed writer leaves
    only a hidden temp file, which the next write to the folder removes.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(target.parent)
    tmp = temp_path(target)
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def fsync_path(path: Path) -> None:
    """fsync a file, or a folder so that the renames and new entries in it are durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_path(target: Path) -> Path:
    """A hidden, unique temp file name beside `target`, marked with this process's id."""
    return target.parent / f"{TMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex}-{target.name}"


def remove_stale_temp_files(folder: Path) -> None:
    """Remove temp files and staging folders whose writer process is gone (killed mid-write)."""
    if not folder.is_dir():
        return
    for leftover in folder.glob(f"{TMP_PREFIX}*"):
        pid = leftover.name[len(TMP_PREFIX) :].split("-", 1)[0]
        if not pid.isdigit() or not _alive(int(pid)):
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
