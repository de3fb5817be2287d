"""Publish telemetry to MQTT as a fleet's devices would: one JSON reading per message, QoS 1.

Topic and payload follow iot_mlops.ingestion.mqtt_payload. The simulator's events and device
table are not telemetry: `publish_simulated` writes them as landing files, as a gateway uploads them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator
from datetime import date
from pathlib import Path

import paho.mqtt.client as mqtt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from iot_mlops.ingestion.mqtt_payload import TOPIC
from iot_mlops.lake.atomic import atomic_write
from iot_mlops.profiles import FleetProfile, source_folder
from iot_mlops.sources.simulator import DEVICE_SCHEMA, EVENT_SCHEMAS, LANDING_PATHS

CHUNK = 5000  # messages in flight in the client before waiting for the broker's acknowledgements


def telemetry_payloads(profile: FleetProfile, table: pa.Table) -> Iterator[tuple[str, bytes]]:
    """(device id, JSON payload) per row of a telemetry table in the profile's source columns, in row order."""
    ts_col = profile.source.telemetry.timestamp_column or profile.timestamp_column
    dev_col = profile.source.telemetry.device_column or profile.device_column
    keys = [s.source_column for s in profile.sensors]
    stamps = table[ts_col]
    try:
        stamps = stamps.cast(pa.timestamp("s"))  # whole seconds print without a fraction
    except pa.ArrowInvalid:
        pass  # sub-second stamps keep their fraction
    stamps = pc.strftime(stamps, format="%Y-%m-%dT%H:%M:%S").to_pylist()
    columns = [table[k].to_pylist() for k in keys]
    for i, device in enumerate(table[dev_col].to_pylist()):
        reading = {ts_col: stamps[i] + "Z", **{k: col[i] for k, col in zip(keys, columns, strict=True)}}
        yield device, json.dumps(reading).encode()


def publish(fleet: str, messages: Iterable[tuple[str, bytes]], host: str = "127.0.0.1", port: int = 1883, qos: int = 1) -> int:
    """Publish (device id, payload) messages to the fleet's telemetry topics; returns when the broker has them all."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"iot-mlops-publish-{fleet}-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(100)  # paho slows down sharply with thousands in flight
    client.max_queued_messages_set(0)
    try:
        client.connect(host, port)
    except OSError as error:
        raise ConnectionError(f"cannot reach the MQTT broker at {host}:{port}: {error}") from error
    client.loop_start()
    sent, pending = 0, []
    try:
        for device, payload in messages:
            pending.append(client.publish(TOPIC.format(fleet=fleet, device=device), payload, qos=qos))
            sent += 1
            if len(pending) >= CHUNK:
                _wait(pending)
        _wait(pending)
    finally:
        client.disconnect()
        client.loop_stop()
    return sent


def _wait(pending: list[mqtt.MQTTMessageInfo]) -> None:
    for info in pending:
        info.wait_for_publish(timeout=60)
        if not info.is_published():
            raise ConnectionError(f"the MQTT broker did not acknowledge message {info.mid} within 60 s (rc {info.rc})")
    pending.clear()


def simulated_telemetry(simulator, day: date) -> pa.Table:
    """The simulator's telemetry of a day, ordered by time then device as devices would send it."""
    table = simulator.telemetry(day)
    return table.take(pc.sort_indices(table, [("timestamp", "ascending"), ("device_id", "ascending")]))


def publish_simulated(profile: FleetProfile, days: list[date], devices: int | None = None, host: str = "127.0.0.1", port: int = 1883,
                      landing: Path | None = None) -> int:  # fmt: skip
    """Publish a simulated fleet's telemetry of these days to MQTT and write its events and devices as landing files.

    Returns the messages published; `devices` overrides the profile's fleet size; `landing` the landing root.
    """
    from iot_mlops.settings import get_settings
    from iot_mlops.sources.landing import simulator_for

    if profile.source.kind != "simulator":
        raise ValueError(f"{profile.name} is not a simulated fleet (source kind {profile.source.kind!r})")
    settings = get_settings()
    profile = sized(profile, devices)
    folder = source_folder(profile, settings.profiles_dir, landing or settings.landing)
    simulator = simulator_for(profile)
    _write(folder / LANDING_PATHS["devices"], pa.Table.from_pandas(simulator.devices(), schema=DEVICE_SCHEMA, preserve_index=False))
    sent = 0
    for day in days:
        for name, frame in simulator.events(day).items():
            _write(folder / LANDING_PATHS[name].format(date=day.isoformat()), pa.Table.from_pandas(frame, schema=EVENT_SCHEMAS[name], preserve_index=False))
        sent += publish(profile.name, telemetry_payloads(profile, simulated_telemetry(simulator, day)), host, port)
    return sent


def sized(profile: FleetProfile, devices: int | None) -> FleetProfile:
    """The simulated profile with another fleet size."""
    if devices is None:
        return profile
    spec = profile.source.simulator.model_copy(update={"devices": devices})
    return profile.model_copy(update={"source": profile.source.model_copy(update={"simulator": spec})})


def _write(target: Path, table: pa.Table) -> None:
    table = table.replace_schema_metadata(None)
    atomic_write(target, lambda tmp: pq.write_table(table, tmp, compression="zstd"))
