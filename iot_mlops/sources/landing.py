"""Make sure a fleet's landing files exist: the simulator writes them, real fleets already have."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

from iot_mlops.lake.atomic import atomic_write
from iot_mlops.profiles import FleetProfile


def simulator_for(profile: FleetProfile):
    """The simulator of a simulated fleet."""
    from iot_mlops.sources.simulator import WaterHeaterSimulator

    resolutions = {s.name: s.resolution for s in profile.sensors if s.resolution is not None}
    return WaterHeaterSimulator(profile.source.simulator, int(profile.sampling_interval.total_seconds()), resolutions)


def ensure_devices(profile: FleetProfile, folder: Path) -> None:
    """Write the simulated fleet's device table if it is not in the landing folder yet."""
    target = folder / profile.source.devices.path
    if profile.source.kind != "simulator" or target.is_file():
        return
    frame = simulator_for(profile).devices()
    atomic_write(target, lambda tmp: frame.to_parquet(tmp, index=False))


def ensure_days(profile: FleetProfile, folder: Path, days: list[date], now: datetime | None = None) -> list[date]:
    """Simulate the days whose landing telemetry is missing, up to `now` (a day in progress only as far as it has gone)."""
    from iot_mlops.ingestion.sources import day_files  # ingestion imports this module

    if profile.source.kind != "simulator":
        return []
    tables = [profile.source.telemetry, *profile.source.events]
    missing = [d for d in days if not all(day_files(folder, t, d) for t in tables)]
    if missing:
        simulator = simulator_for(profile)
        until = (now or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None)
        for day in missing:
            simulator.write_landing(day, folder, until=until)
    return missing
