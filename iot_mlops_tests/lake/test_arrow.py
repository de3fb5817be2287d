"""Partitions written from Arrow tables: atomic, byte-stable whatever the run shape, nothing half-published."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from iot_mlops.lake import Lake, connect
from iot_mlops.lake.atomic import TMP_PREFIX

DAYS = [date(2024, 3, 1) + timedelta(days=i) for i in range(4)]

WRITER = """
import sys, time
from datetime import date, timedelta
import pyarrow as pa
from pathlib import Path
from iot_mlops.lake import Lake

def days():
    for i in range(4):
        yield date(2024, 3, 1) + timedelta(days=i), pa.table({"i": list(range(50_000)), "day": [i] * 50_000})
    Path(sys.argv[2]).touch()  # every day is handed to the writers; none is published before the last
    time.sleep(600)
    yield date(2024, 3, 9), pa.table({"i": [0], "day": [9]})

Lake(Path(sys.argv[1])).write_arrow_partitions("fleet", "t", days(), workers=2)
"""


def day_table(day: date, rows: int = 5) -> pa.Table:
    return pa.table({"device_id": [f"d{i}" for i in range(rows)], "value": [day.toordinal() + i / 7 for i in range(rows)]})


def read_values(lake: Lake, day: date) -> list:
    with connect() as con:
        return con.execute(f"SELECT value FROM {lake.scan('fleet', 't', [day])} ORDER BY device_id").fetchall()


def test_each_day_becomes_one_partition_with_its_rows(tmp_path: Path):
    lake = Lake(tmp_path)
    written = lake.write_arrow_partitions("fleet", "t", ((d, day_table(d)) for d in DAYS), workers=3)
    assert sorted(written) == DAYS == lake.partitions("fleet", "t")
    assert all(written[d] == lake.partition_file("fleet", "t", d) for d in DAYS)
    assert read_values(lake, DAYS[2]) == [(v,) for v in day_table(DAYS[2])["value"].to_pylist()]
    assert not list(tmp_path.rglob(f"{TMP_PREFIX}*"))
    columns = pq.ParquetFile(written[DAYS[0]]).metadata.row_group(0)
    assert {columns.column(i).compression for i in range(columns.num_columns)} == {"ZSTD"}


def test_bytes_depend_only_on_the_rows_not_on_how_they_are_chunked(tmp_path: Path):
    whole, chunked = Lake(tmp_path / "whole"), Lake(tmp_path / "chunked")
    table = day_table(DAYS[0], rows=3000)
    pieces = pa.Table.from_batches([b for start in range(0, 3000, 700) for b in table.slice(start, 700).to_batches()])
    assert pieces.column("value").num_chunks > 1
    whole.write_arrow_partitions("fleet", "t", [(DAYS[0], table)])
    chunked.write_arrow_partitions("fleet", "t", [(DAYS[1], day_table(DAYS[1])), (DAYS[0], pieces)], workers=2)
    assert whole.partition_file("fleet", "t", DAYS[0]).read_bytes() == chunked.partition_file("fleet", "t", DAYS[0]).read_bytes()


def test_a_failure_publishes_nothing_and_leaves_no_temp_files(tmp_path: Path):
    lake = Lake(tmp_path)
    lake.write_arrow_partitions("fleet", "t", [(d, day_table(d)) for d in DAYS[:2]])
    before = {d: lake.partition_file("fleet", "t", d).read_bytes() for d in DAYS[:2]}

    def broken():
        yield DAYS[0], day_table(DAYS[0], rows=9)
        yield DAYS[1], day_table(DAYS[1], rows=9)
        raise RuntimeError("query failed half way")

    with pytest.raises(RuntimeError, match="half way"):
        lake.write_arrow_partitions("fleet", "t", broken(), workers=2)
    assert {d: lake.partition_file("fleet", "t", d).read_bytes() for d in DAYS[:2]} == before
    assert not list(tmp_path.rglob(f"{TMP_PREFIX}*"))


def test_writer_killed_before_publishing_leaves_previous_partitions(tmp_path: Path):
    lake = Lake(tmp_path)
    lake.write_arrow_partitions("fleet", "t", [(d, day_table(d)) for d in DAYS])
    before = {d: lake.partition_file("fleet", "t", d).read_bytes() for d in DAYS}
    staged = tmp_path / "staged"

    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(staged)])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and writer.poll() is None:
            if staged.exists() and len(list(tmp_path.rglob(f"{TMP_PREFIX}*"))) == len(DAYS):
                break
            time.sleep(0.01)
        assert staged.exists(), "the writer never got every day"
        writer.send_signal(signal.SIGKILL)
    finally:
        writer.kill()
        writer.wait()

    assert {d: lake.partition_file("fleet", "t", d).read_bytes() for d in DAYS} == before
    temps = list(tmp_path.rglob(f"{TMP_PREFIX}*"))
    assert len(temps) == len(DAYS), "the killed writer's temp files are left behind, beside their partitions"

    lake.write_arrow_partitions("fleet", "t", [(DAYS[1], day_table(DAYS[1], rows=2))])
    assert read_values(lake, DAYS[1]) == [(v,) for v in day_table(DAYS[1], rows=2)["value"].to_pylist()]
    assert not [t for t in temps if t.parent.name == f"date={DAYS[1]}" and t.exists()], "the next write removes them"


def test_a_step_connection_reads_utc_and_draws_no_progress_bar():
    """A slow query on a loaded machine must not print DuckDB's progress bar into the demo's or a run's output."""
    with connect() as con:
        assert con.execute("SELECT current_setting('enable_progress_bar'), current_setting('TimeZone')").fetchone() == (False, "UTC")
