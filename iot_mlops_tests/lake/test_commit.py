"""Several files of one partition published together: old version or new one, at any step a writer dies."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from iot_mlops.lake import DATA_FILE, QUARANTINE_FILE, Lake, connect
from iot_mlops.lake.atomic import TMP_PREFIX
from iot_mlops.lake.commit import STEPS, VERSION_PREFIX, commit_files, current, remove_stale_versions

DAY = date(2024, 3, 1)
CRASHED = 70

WRITER = """
import os, sys
from pathlib import Path
from iot_mlops.lake import commit

def crash(step, link, seen=[]):
    seen.append(step)
    if step == sys.argv[2] and seen.count(step) == int(sys.argv[3]):
        os._exit(70)

commit.crash_hook = crash
commit.commit_files(Path(sys.argv[1]), {name: lambda p, n=name: p.write_bytes(b"new " + n.encode()) for name in ("a", "b")})
"""


def writes(tag: bytes) -> dict:
    return {name: (lambda p, n=name: p.write_bytes(tag + b" " + n.encode())) for name in ("a", "b")}


def contents(link: Path) -> dict[str, bytes]:
    folder = current(link)
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith((TMP_PREFIX, VERSION_PREFIX)))


def test_files_are_published_together_and_the_old_version_removed(tmp_path: Path):
    link = tmp_path / "t" / "date=2024-03-01"
    first = commit_files(link, writes(b"old"))
    second = commit_files(link, writes(b"new"))
    assert link.is_symlink() and current(link) == second != first
    assert contents(link) == {"a": b"new a", "b": b"new b"}
    assert (link / "a").read_bytes() == b"new a", "paths through the link keep working"
    assert leftovers(link.parent) == [second.name]


def test_a_failing_writer_publishes_nothing_and_leaves_nothing(tmp_path: Path):
    link = tmp_path / "t" / "date=2024-03-01"
    kept = commit_files(link, writes(b"old"))

    def broken(path: Path) -> None:
        path.write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        commit_files(link, {"a": writes(b"new")["a"], "b": broken})
    assert contents(link) == {"a": b"old a", "b": b"old b"}
    assert leftovers(link.parent) == [kept.name]


def test_a_plain_folder_partition_is_replaced_in_one_step(tmp_path: Path):
    link = tmp_path / "t" / "date=2024-03-01"
    link.mkdir(parents=True)
    (link / "data.parquet").write_bytes(b"one-file layout")
    version = commit_files(link, writes(b"new"))
    assert link.is_symlink() and contents(link) == {"a": b"new a", "b": b"new b"}
    assert leftovers(link.parent) == [version.name]


def test_stale_versions_go_unless_linked_or_locked_by_their_writer(tmp_path: Path):
    folder = tmp_path / "t"
    linked = commit_files(folder / "date=2024-03-01", writes(b"x"))
    orphan, in_progress = folder / f"{VERSION_PREFIX}orphan-date=2024-03-02", folder / f"{VERSION_PREFIX}busy-date=2024-03-02"
    orphan.mkdir()
    in_progress.mkdir()
    lock = os.open(in_progress, os.O_RDONLY)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        remove_stale_versions(folder)
        assert leftovers(folder) == sorted([linked.name, in_progress.name])
    finally:
        os.close(lock)
    remove_stale_versions(folder)
    assert leftovers(folder) == [linked.name]


def test_lake_reads_multi_file_partitions_through_their_link(tmp_path: Path):
    lake = Lake(tmp_path)
    with connect() as con:
        for i in range(2):
            lake.write_partition_files(con, "fleet", "t", DAY, {DATA_FILE: f"SELECT {i} AS v", QUARANTINE_FILE: f"SELECT {i} AS q"})
        version = lake.partition_version("fleet", "t", DAY)
        assert lake.partitions("fleet", "t") == [DAY]
        assert lake.files("fleet", "t") == [lake.partition_file("fleet", "t", DAY)]
        assert con.execute(f"SELECT v FROM {lake.scan('fleet', 't')}").fetchall() == [(1,)]
        assert con.execute(f"SELECT q FROM read_parquet('{version / QUARANTINE_FILE}')").fetchall() == [(1,)]
    assert version.name.startswith(VERSION_PREFIX) and version.parent == lake.table_dir("fleet", "t")


# Each step a writer can die after; "written" twice: after the first file, and after the last.
CRASH_POINTS = [(step, 1) for step in STEPS] + [("written", 2)]


@pytest.mark.parametrize(("step", "nth"), CRASH_POINTS, ids=[f"{s}-{n}" for s, n in CRASH_POINTS])
def test_a_writer_killed_at_any_step_leaves_the_old_version_or_the_new(tmp_path: Path, step: str, nth: int):
    link = tmp_path / "t" / "date=2024-03-01"
    commit_files(link, writes(b"old"))
    died = subprocess.run([sys.executable, "-c", WRITER, str(link), step, str(nth)])
    assert died.returncode == CRASHED

    switched = STEPS.index(step) >= STEPS.index("switched")
    assert contents(link) == ({"a": b"new a", "b": b"new b"} if switched else {"a": b"old a", "b": b"old b"})
    commit_files(link, writes(b"again"))  # the next write removes what the dead one left
    assert contents(link) == {"a": b"again a", "b": b"again b"}
    assert leftovers(link.parent) == [current(link).name]


CONCURRENT = """
import sys
from pathlib import Path
from iot_mlops.lake.commit import commit_files

link = Path(sys.argv[1])
for i in range(40):
    commit_files(link, {name: lambda p, n=name, i=i: p.write_bytes(f"{i} {n}".encode()) for name in ("a", "b")})
"""


def test_writers_of_other_days_in_one_table_never_remove_each_others_versions(tmp_path: Path):
    folder = tmp_path / "t"
    links = [folder / f"date=2024-03-0{i}" for i in range(1, 5)]
    writers = [subprocess.Popen([sys.executable, "-c", CONCURRENT, str(link)]) for link in links]
    assert [w.wait() for w in writers] == [0] * len(links)
    assert all(contents(link) == {"a": b"39 a", "b": b"39 b"} for link in links)
    assert leftovers(folder) == sorted(current(link).name for link in links)
