"""Atomic partition writes: readers see the old file or the new one, and killed writers leave no damage."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest

from iot_mlops.lake import Lake, atomic_write, connect, row_count
from iot_mlops.lake.atomic import TMP_PREFIX, remove_stale_temp_files

DAY = date(2024, 3, 1)

WRITER = """
import sys
from datetime import date
from pathlib import Path
from iot_mlops.lake import Lake, connect
con = connect(threads=1)
Lake(Path(sys.argv[1])).write_partition(con, "fleet", "telemetry", date.fromisoformat(sys.argv[2]),
    "SELECT range AS i, hash(range) AS h, md5(CAST(range AS VARCHAR)) AS s FROM range(200000000)")
"""


def write_rows(lake: Lake, n: int) -> Path:
    with connect() as con:
        return lake.write_partition(con, "fleet", "telemetry", DAY, f"SELECT range AS i FROM range({n})")


def test_write_replaces_the_partition(tmp_path: Path):
    lake = Lake(tmp_path)
    first = write_rows(lake, 10)
    second = write_rows(lake, 3)
    assert first == second == tmp_path / "fleet" / "telemetry" / f"date={DAY}" / "data.parquet"
    with connect() as con:
        assert row_count(con, second) == 3
    assert lake.partitions("fleet", "telemetry") == [DAY]
    assert [p.name for p in second.parent.iterdir()] == ["data.parquet"]


def test_failed_write_keeps_the_old_file_and_no_temp(tmp_path: Path):
    target = tmp_path / "t" / "data.bin"
    atomic_write(target, lambda tmp: tmp.write_bytes(b"old"))

    def broken(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, broken)
    assert target.read_bytes() == b"old"
    assert list(target.parent.iterdir()) == [target]


def test_stale_temp_files_of_dead_writers_only_are_removed(tmp_path: Path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    stale = tmp_path / f"{TMP_PREFIX}{dead.stdout.strip()}-abc-data.parquet"
    live = tmp_path / f"{TMP_PREFIX}{os.getpid()}-def-data.parquet"
    for f in (stale, live):
        f.write_bytes(b"x")
    remove_stale_temp_files(tmp_path)
    assert not stale.exists()
    assert live.exists()


def test_writer_killed_mid_write_leaves_previous_partition(tmp_path: Path):
    lake = Lake(tmp_path)
    previous = write_rows(lake, 1000)
    content = previous.read_bytes()

    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), DAY.isoformat()])
    try:
        deadline = time.monotonic() + 60
        temps: list[Path] = []
        while not temps and time.monotonic() < deadline and writer.poll() is None:
            temps = [t for t in previous.parent.glob(f"{TMP_PREFIX}*") if t.stat().st_size > 0]
            time.sleep(0.005)
        assert temps, "the writer never started its temp file"
        writer.send_signal(signal.SIGKILL)
    finally:
        writer.kill()
        writer.wait()
    assert writer.returncode == -signal.SIGKILL

    assert previous.read_bytes() == content
    with connect() as con:
        assert row_count(con, previous) == 1000
    assert [t for t in temps if t.exists()], "the killed writer's temp file should be left behind"

    write_rows(lake, 5)
    assert sorted(p.name for p in previous.parent.iterdir()) == ["data.parquet"]
    with connect() as con:
        assert row_count(con, previous) == 5


def test_partitions_lists_only_written_days(tmp_path: Path):
    lake = Lake(tmp_path)
    write_rows(lake, 1)
    (lake.table_dir("fleet", "telemetry") / "date=2024-03-02").mkdir()
    (lake.table_dir("fleet", "telemetry") / "notes").mkdir()
    assert lake.partitions("fleet", "telemetry") == [DAY]
    assert lake.partitions("fleet", "other") == []
    assert lake.scan("fleet", "other") is None
    assert lake.files("fleet", "telemetry", [DAY, date(2024, 3, 2)]) == [lake.partition_file("fleet", "telemetry", DAY)]


def test_scan_unions_partitions_without_a_hive_column(tmp_path: Path):
    lake = Lake(tmp_path)
    with connect() as con:
        for i in range(3):
            lake.write_partition(con, "fleet", "t", date(2024, 1, 1 + i), f"SELECT {i} AS day_index")
        rows = con.execute(f"SELECT * FROM {lake.scan('fleet', 't')} ORDER BY 1").fetchall()
    assert rows == [(0,), (1,), (2,)]
