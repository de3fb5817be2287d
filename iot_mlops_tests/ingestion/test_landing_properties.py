"""Property: mixed, malformed and overlapping landing files lose, shift and double-count no row."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iot_mlops.ingestion.ingest import ingest_devices, ingest_telemetry
from iot_mlops.lake import Lake, connect
from iot_mlops.profiles import source_folder
from iot_mlops_tests.fleet import DAYS, DEVICES, Fleet

DAY = DAYS[1]
MIDNIGHT = datetime(DAY.year, DAY.month, DAY.day)
ZONES = ["Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe", "UTC"]


@st.composite
def readings(draw) -> tuple[str, str, datetime | None]:
    """(device, timestamp text, the UTC instant the text means or None when it means none in the day)."""
    device = draw(st.sampled_from([*DEVICES, "ghost", " d1", "d 2"]))
    # Whole seconds from a little before to a little after the day, so some fall outside it.
    instant = MIDNIGHT + timedelta(seconds=draw(st.integers(-7200, 86400 + 7200)))
    form = draw(st.sampled_from(["naive", "iso", "z", "offset", "zone", "date", "garbage", "future"]))
    if form == "naive":
        return device, instant.strftime("%Y-%m-%d %H:%M:%S"), instant
    if form == "iso":
        return device, instant.isoformat(), instant
    if form == "z":
        return device, instant.strftime("%Y-%m-%dT%H:%M:%SZ"), instant
    if form == "offset":
        minutes = draw(st.integers(-14 * 60, 14 * 60))
        local = instant + timedelta(minutes=minutes)
        sign, hhmm = ("+" if minutes >= 0 else "-"), divmod(abs(minutes), 60)
        return device, local.strftime("%Y-%m-%d %H:%M:%S") + f"{sign}{hhmm[0]:02d}:{hhmm[1]:02d}", instant
    if form == "zone":
        zone = draw(st.sampled_from(ZONES))
        local = instant.replace(tzinfo=UTC).astimezone(ZoneInfo(zone))
        return device, local.strftime("%Y-%m-%d %H:%M:%S") + f" {zone}", instant
    if form == "date":
        return device, MIDNIGHT.strftime("%Y-%m-%d"), MIDNIGHT
    if form == "future":
        return device, "9999-12-31 23:59:59", None
    return device, draw(st.sampled_from(["yesterday", "2024-13-45 99:00", "infinity", "", "10000-01-01"])), None


@st.composite
def landing(draw) -> tuple[list[bytes], list[list[tuple]], dict[float, datetime | None]]:
    """CSV lines (some malformed), Parquet parts (typed UTC times, overlapping the CSV), and each temp's true time."""
    rows = draw(st.lists(readings(), min_size=0, max_size=40))
    lines, serial = [b"device,time,temp,pressure"], 0
    values: dict[float, datetime | None] = {}
    for device, text, _instant in rows:
        serial += 1
        temp = round(10 + serial * 0.01, 2)  # unique: maps a valid row back to its source
        values[temp] = _instant
        line = f'"{device}",{text},{temp},1.5'.encode()
        fault = draw(st.sampled_from([None] * 6 + ["byte", "extra", "short"]))
        if fault == "byte":
            line = line.replace(b",1.5", b",1\xff5")
        elif fault == "extra":
            line += b",surplus"
        elif fault == "short":
            line = line.rsplit(b",", 1)[0]
        lines.append(line)
    parts = []
    for _ in range(draw(st.integers(0, 2))):
        part = []
        for device, _text, instant in draw(st.lists(readings(), max_size=10)):
            if instant is None:
                continue
            if values and draw(st.booleans()):  # overlap: a key the CSV already has
                instant = draw(st.sampled_from([v for v in values.values() if v is not None] or [instant]))
            serial += 1
            temp = round(10 + serial * 0.01, 2)
            values[temp] = instant
            part.append((device, instant, temp, 1.5))
        parts.append(part)
    return lines, parts, values


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(landing())
def test_every_landed_row_lands_once_with_its_true_time(data):
    lines, parts, values = data
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        fleet = Fleet(root / "fleet", root / "lake", root / "landing")
        profile = fleet.write_profile()
        fleet.write("devices", [{"device": d, "model": "m0", "age": 3} for d in DEVICES])
        day_file = fleet.path("telemetry", DAY)
        day_file.parent.mkdir(parents=True, exist_ok=True)
        day_file.write_bytes(b"\n".join(lines) + b"\n")
        for i, part in enumerate(parts, start=1):
            table = pa.table({
                "device": [p[0] for p in part], "time": pa.array([p[1] for p in part], pa.timestamp("us")),
                "temp": [p[2] for p in part], "pressure": [p[3] for p in part],
            })
            pq.write_table(table, day_file.with_name(f"{day_file.stem}.part-{i:06d}-{i:06d}.parquet"))
        folder, lake = source_folder(profile, fleet.profile_dir, fleet.landing_root), Lake(fleet.lake_root)

        outputs = []
        for _ in range(2):
            with connect() as con:
                ingest_devices(con, lake, profile, folder)
                report = ingest_telemetry(con, lake, profile, folder, [DAY])
            outputs.append([fleet.file(t, DAY).read_bytes() for t in ("telemetry", "quarantine/telemetry")])
            counts = report.days[DAY]
            rows_in = len(lines) - 1 + sum(len(p) for p in parts)
            assert counts.rows_read == rows_in == counts.rows_valid + counts.rows_quarantined
        assert outputs[0] == outputs[1], "a re-run writes the same bytes"

        valid, quarantined = fleet.read("telemetry", DAY), fleet.quarantine("telemetry", DAY)
        assert len(valid) + len(quarantined) == rows_in
        for device, ts, temp in zip(valid["device_id"], valid["ts"], valid["temp"]):
            assert device in DEVICES
            assert ts.to_pydatetime() == values[round(temp, 2)], f"{device} at temp {temp}"
            assert MIDNIGHT <= ts.to_pydatetime() < MIDNIGHT + timedelta(days=1)
        assert valid.duplicated(["device_id", "ts"]).sum() == 0
        # Each source row once: its temp (unique per row) is in exactly one valid row or quarantine record.
        temps = [round(float(t), 2) for t in valid["temp"]]
        for record in quarantined["record"]:
            temps.append(round(float(record["text"].split(",")[2] if "text" in record else record["temp"]), 2))
        assert sorted(temps) == sorted(values)
