"""Several files of one partition published together: written into a new version folder, then one link switched.

A partition with several files (valid rows and quarantine) is a symlink, e.g.
`telemetry/date=2024-01-01 -> .v-<uuid>-date=2024-01-01`, to a hidden sibling folder
holding all its files. A commit writes and fsyncs every file in a fresh version folder, points
a new link at it and renames that link over the old one (one atomic rename), fsyncs the
parent folder, then removes the old version. A reader, or a run killed at any instant, sees
the old version or the new one, never a mix. A link is chosen over a manifest with recovery
because readers need no recovery step and paths such as `date=D/data.parquet` keep working
through it; a reader of several files resolves the link once (`current`). Linux local disks.

A writer holds a lock on its version folder until it has switched the link, so the next
commit in the folder removes versions that no link names and no writer holds: those of
killed writers and old ones not yet removed. A reader that resolved a version just replaced
may find it gone: an error, never a mix.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import shutil
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

from iot_mlops.lake.atomic import fsync_path, remove_stale_temp_files, temp_path

VERSION_PREFIX = ".v-"
# The steps of a commit, in order; "written" comes once per file.
STEPS = ("created", "written", "synced", "linked", "switched", "durable", "cleaned")
# Tests set this to stop a writer at a step: called as crash_hook(step, link path).
crash_hook: Callable[[str, Path], None] | None = None


def current(link: Path) -> Path:
    """The folder a partition's files are read from now: the version its link names, else the folder itself."""
    try:
        return link.parent / os.readlink(link)
    except OSError:  # not a link: a plain folder, or nothing yet
        return link


def commit_files(link: Path, writes: Mapping[str, Callable[[Path], None]]) -> Path:
    """Write each named file with its writer into a new version folder, then switch `link` to it; returns the folder.

    On error nothing is switched and the new folder is removed.
    """
    folder = link.parent
    _make_dirs(folder)
    remove_stale_temp_files(folder)
    remove_stale_versions(folder)
    version = folder / f"{VERSION_PREFIX}{uuid.uuid4().hex}-{link.name}"
    new_link = temp_path(link)
    # Made under a temp name and locked before it takes its version name: unlocked, unlinked versions are garbage.
    made = temp_path(version)
    made.mkdir()
    lock = os.open(made, os.O_RDONLY)
    switched = False
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        os.rename(made, version)
        _step("created", link)
        for name, write in writes.items():
            write(version / name)
            _step("written", link)
        for name in writes:
            fsync_path(version / name)
        os.fsync(lock)
        _step("synced", link)
        os.symlink(version.name, new_link)
        _step("linked", link)
        old = _switch(new_link, link)
        switched = True
        _step("switched", link)
        fsync_path(folder)
        _step("durable", link)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        _step("cleaned", link)
    finally:
        if not switched:
            new_link.unlink(missing_ok=True)
            for leftover in (made, version):
                shutil.rmtree(leftover, ignore_errors=True)
        os.close(lock)
    return version


def remove_stale_versions(folder: Path) -> None:
    """Remove version folders that no link names and no writer holds (killed before switching, or replaced)."""
    if not folder.is_dir():
        return
    for version in folder.glob(f"{VERSION_PREFIX}*"):
        try:
            lock = os.open(version, os.O_RDONLY)
        except OSError:
            continue  # removed meanwhile
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # its writer is still at work
        else:
            # Links are read with the lock held: a writer switches before it lets go.
            if version.name not in _link_targets(folder):
                shutil.rmtree(version, ignore_errors=True)
        finally:
            os.close(lock)


def _link_targets(folder: Path) -> set[str]:
    """What the links in `folder` name now; a link renamed or removed while listing is passed over.

    A vanished entry is another writer's temp link, just renamed over its partition's link: it named
    that writer's own version, which its writer held locked until then, so it is not the one being checked.
    """
    targets = set()
    for entry in folder.iterdir():
        try:
            targets.add(os.readlink(entry))
        except OSError:  # not a link (EINVAL), or gone since the listing (ENOENT)
            continue
    return targets


def _switch(new_link: Path, link: Path) -> Path | None:
    """Put `new_link` in place of `link` atomically; returns the old version to remove, if any."""
    if link.is_symlink() or not link.exists():
        old = current(link)
        os.replace(new_link, link)
        return old if old != link and old.name.startswith(VERSION_PREFIX) else None
    # A partition of the one-file layout is a plain folder, which a rename cannot replace: swap the two names.
    _exchange(new_link, link)
    return new_link


def _exchange(a: Path, b: Path) -> None:
    """Swap two paths atomically (renameat2 RENAME_EXCHANGE); where unsupported, move `b` aside first."""
    libc = ctypes.CDLL(None, use_errno=True)
    at_fdcwd, rename_exchange = -100, 2
    if hasattr(libc, "renameat2") and libc.renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return
    error = ctypes.get_errno() if hasattr(libc, "renameat2") else errno.ENOSYS
    if error not in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        raise OSError(error, os.strerror(error), str(b))
    aside = temp_path(b)
    os.rename(b, aside)
    os.replace(a, b)
    os.rename(aside, a)


def _make_dirs(folder: Path) -> None:
    """Create `folder` and its missing parents, each entry fsynced into its parent."""
    if folder.is_dir():
        return
    _make_dirs(folder.parent)
    folder.mkdir(exist_ok=True)
    fsync_path(folder.parent)


def _step(step: str, link: Path) -> None:
    if crash_hook is not None:
        crash_hook(step, link)
