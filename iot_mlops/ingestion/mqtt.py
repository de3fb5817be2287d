"""Ingest a fleet's telemetry from an MQTT broker into its landing folder, losing nothing across restarts.

The ingester subscribes to `fleets/<fleet>/+/telemetry` at QoS 1 over MQTT 5 with a fixed client id
and a persistent session (clean start off, session expiry), and acknowledges a message only after
the flush that landed it (or quarantined it) is on disk: a killed ingester's unacknowledged messages
are redelivered to the next one, and dedupe on (device, timestamp) for readings and on the message
digest for quarantined ones makes the redelivery add nothing. Acknowledged means on disk exactly once.

The broker bounds what it keeps for a session: Mosquitto drops QoS 1 messages for a client beyond
`max_queued_messages` (default 1000, counting the unacknowledged ones of a disconnected client).
Size it for the longest ingester outage (messages/s x seconds + receive maximum), or set it to 0
and bound `max_queued_bytes`; keep `persistence true` so sessions survive a broker restart. How many
messages the broker dropped is not knowable; after a resumed session the ingester logs a warning for
every device whose readings show a gap (a silence longer than 1.5 sampling intervals).
"""

from __future__ import annotations

import fcntl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from iot_mlops.ingestion.mqtt_landing import BatchCounts, MqttLanding, Step, no_step
from iot_mlops.ingestion.mqtt_payload import Message, topic_filter
from iot_mlops.lake import connect
from iot_mlops.profiles.schema import FleetProfile

LOCK_FILE = ".mqtt-ingest.lock"
FLAP_COUNT, FLAP_SECONDS = 5, 10.0  # this many lost connections in this long: give up
GAPS_SHOWN = 10  # gaps listed in one warning


class MqttError(RuntimeError):
    """The broker cannot be reached, refused us, or the ingester cannot run."""


@dataclass(frozen=True)
class MqttOptions:
    """Broker, session and flush settings of one ingester."""

    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str | None = None  # default iot-mlops-ingest-<fleet>: one session per fleet
    flush_seconds: float = 2.0  # flush when the oldest buffered message is this old
    max_batch: int = 5000  # ... or when this many are buffered
    # Unacknowledged messages the broker may send us; a broker queues only max_queued_messages beyond it.
    receive_maximum: int = 65535
    session_expiry: int = 7 * 86400  # seconds the broker keeps the session while we are away
    keepalive: int = 60
    max_messages: int | None = None  # stop after this many messages (tests, benchmarks)
    idle_timeout: float | None = None  # stop after this long without a message
    report_seconds: float = 10.0

    def client_for(self, fleet: str) -> str:
        return self.client_id or f"iot-mlops-ingest-{fleet}"


def client_for(client_id: str) -> mqtt.Client:
    """An MQTT 5 client with manual acknowledgements."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, manual_ack=True)
    client.max_inflight_messages_set(100)
    return client


def connect_properties(receive_maximum: int, session_expiry: int) -> Properties:
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = session_expiry
    props.ReceiveMaximum = receive_maximum
    return props


def forget_session(client_id: str, host: str = "127.0.0.1", port: int = 1883) -> None:
    """Delete a client's session on the broker (its subscription and queued messages)."""
    client = client_for(client_id)
    try:
        client.connect(host, port, clean_start=True, properties=connect_properties(1, 0))
    except OSError as error:
        raise MqttError(f"cannot reach the MQTT broker at {host}:{port}: {error}") from error
    client.loop_start()
    try:
        client.disconnect()
    finally:
        client.loop_stop()


def drain(client: mqtt.Client, seconds: float = 5.0) -> None:
    """Give the network thread time to send queued acknowledgements (unsent ones only cause redelivery)."""
    deadline = time.monotonic() + seconds
    while client.want_write() and client.is_connected() and time.monotonic() < deadline:
        time.sleep(0.01)


@contextmanager
def exclusive(folder: Path, fleet: str) -> Iterator[None]:
    """Hold the fleet's ingester lock: two ingesters would take each other's session over."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_FILE, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise MqttError(f"{fleet}: another MQTT ingester is running for this fleet ({folder / LOCK_FILE} is locked)") from None
        yield


@dataclass
class IngestStats(BatchCounts):
    """Totals of one ingester run."""

    flushes: int = 0
    merges: int = 0
    seconds: float = 0.0
    session_present: bool = False
    gaps_found: int = 0

    def summary(self) -> dict:
        return {
            "received": self.received, "landed": self.landed, "quarantined": self.quarantined,
            "redelivered": self.redelivered, "flushes": self.flushes, "merges": self.merges,
            "seconds": round(self.seconds, 3), "session_present": self.session_present, "gaps": self.gaps_found,
            "by_reason": dict(sorted(self.by_reason.items())), "days": sorted(d.isoformat() for d in self.days),
        }  # fmt: skip


class MqttIngester:
    """Receives on paho's network thread; buffers, lands and acknowledges on the calling thread."""

    def __init__(self, profile: FleetProfile, folder: Path, options: MqttOptions = MqttOptions(), log: Callable[[str], None] = print,
                 step: Step = no_step):  # fmt: skip
        if not 0 < options.max_batch <= options.receive_maximum <= 65535:
            raise MqttError(f"need 0 < max_batch ({options.max_batch}) <= receive_maximum ({options.receive_maximum}) <= 65535")
        self.profile, self.folder, self.options, self.log = profile, Path(folder), options, log
        self.stats = IngestStats()
        self._buffer: list[Message] = []
        self._wake = threading.Condition()
        self._stop = threading.Event()
        self._seq = 0
        self._last_received = time.monotonic()
        self.ready = threading.Event()  # set once the subscription is acknowledged
        self._fatal: str | None = None
        self._drops: list[float] = []
        self._resumed = False  # a session resumed (or a reconnect): the broker may have dropped queued messages
        self._step = step

    def stop(self) -> None:
        """Flush what is buffered and leave (safe from signal handlers and other threads)."""
        self._stop.set()
        with self._wake:
            self._wake.notify()

    def run(self) -> IngestStats:
        """Ingest until stopped, `max_messages` or `idle_timeout`; returns the run's totals."""
        started = time.monotonic()
        with exclusive(self.folder, self.profile.name), connect() as con:
            landing = MqttLanding(con, self.profile, self.folder, step=self._step)
            client = self._connect()
            self._last_received = time.monotonic()
            try:
                self._loop(landing, client)
            finally:
                drain(client)
                client.disconnect()
                client.loop_stop()
        self.stats.seconds = time.monotonic() - started
        return self.stats

    def _connect(self) -> mqtt.Client:
        opts, fleet = self.options, self.profile.name
        client = client_for(opts.client_for(fleet))
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        client.reconnect_delay_set(1, 30)
        try:
            client.connect(opts.host, opts.port, opts.keepalive, clean_start=False,
                           properties=connect_properties(opts.receive_maximum, opts.session_expiry))  # fmt: skip
        except OSError as error:
            raise MqttError(f"cannot reach the MQTT broker at {opts.host}:{opts.port}: {error}") from error
        client.loop_start()
        deadline = time.monotonic() + 30
        while not self.ready.is_set() and self._fatal is None and time.monotonic() < deadline:
            self.ready.wait(0.1)
        if not self.ready.is_set():
            client.disconnect()
            client.loop_stop()
            raise MqttError(self._fatal or f"no subscription acknowledged by {opts.host}:{opts.port} within 30 s")
        session = "resumed" if self.stats.session_present else "new (messages published before it existed are not delivered)"
        self.log(f"ready: {fleet} subscribed to {topic_filter(fleet)} at {opts.host}:{opts.port} as {opts.client_for(fleet)}, session {session}")
        return client

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._fatal = f"the MQTT broker refused the connection: {reason_code}"
            self.stop()
            return
        if self.ready.is_set():
            lost = "" if flags.session_present else ": the broker had lost the session, messages sent meanwhile may be lost"
            self.log(f"reconnected to {self.options.host}:{self.options.port}{lost}")
            self._resumed = True
        else:
            self.stats.session_present = self._resumed = bool(flags.session_present)
        # Subscribing again on a resumed session is harmless and restores a lost subscription.
        client.subscribe(topic_filter(self.profile.name), qos=1)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        now = time.monotonic()
        self._drops = [t for t in self._drops if now - t < FLAP_SECONDS] + [now]
        if len(self._drops) >= FLAP_COUNT:
            # Mosquitto closes the socket without a reason when another client takes the session over;
            # reconnecting would take it back, and the two would take turns forever.
            self._fatal = (f"the broker dropped the connection {len(self._drops)} times in {FLAP_SECONDS:.0f} s ({reason_code}): "
                           f"is another client connected as {self.options.client_for(self.profile.name)}?")  # fmt: skip
            self.stop()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        failed = [str(code) for code in reason_codes if code.is_failure]
        if failed:
            self._fatal = f"the MQTT broker refused the subscription to {topic_filter(self.profile.name)}: {', '.join(failed)}"
            self.stop()
        else:
            self.ready.set()

    def _on_message(self, client, userdata, message: mqtt.MQTTMessage) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:  # brokers reject such topics; if one comes, it is quarantined, not fatal
            topic = "<topic not UTF-8>"
        with self._wake:
            self._seq += 1
            self._buffer.append(Message(self._seq, time.time_ns() // 1000, topic, message.payload, message.mid, message.qos))
            self._last_received = time.monotonic()
            if len(self._buffer) >= self.options.max_batch:
                self._wake.notify()

    def _loop(self, landing: MqttLanding, client: mqtt.Client) -> None:
        opts = self.options
        oldest: float | None = None  # when the oldest buffered message arrived
        next_report = time.monotonic() + opts.report_seconds
        while True:
            with self._wake:
                if self._buffer and oldest is None:
                    oldest = time.monotonic()
                if not self._stop.is_set() and len(self._buffer) < opts.max_batch:
                    self._wake.wait(min(0.1, opts.flush_seconds))
                now, pending, idle = time.monotonic(), len(self._buffer), time.monotonic() - self._last_received
            full = pending >= opts.max_batch or (pending and oldest is not None and now - oldest >= opts.flush_seconds)
            done = self._stop.is_set()
            done |= opts.max_messages is not None and self.stats.received + pending >= opts.max_messages
            done |= opts.idle_timeout is not None and idle >= opts.idle_timeout
            # Leaving lands everything buffered, a max_batch at a time.
            for _ in range(-(-pending // opts.max_batch) if done else int(bool(full))):
                self._flush(landing, client)
                oldest = None
            if now >= next_report:
                self._report()
                next_report = now + opts.report_seconds
            if done:
                break
        if self._fatal:
            raise MqttError(self._fatal)
        self._report()

    def _flush(self, landing: MqttLanding, client: mqtt.Client) -> None:
        with self._wake:
            batch, self._buffer = self._buffer[: self.options.max_batch], self._buffer[self.options.max_batch :]
        counts = landing.write_batch(batch)
        # Only now is the batch on disk: acknowledge it, in the order it was received.
        for message in batch:
            if message.qos > 0:
                client.ack(message.mid, message.qos)
        self._step("acked")
        if self._resumed and counts.gaps:
            self._warn_gaps(counts.gaps)
        self.stats.gaps_found += len(counts.gaps)
        counts.gaps = []  # counted, not kept: a long run would pile them up
        self.stats.add(counts)
        self.stats.flushes += 1
        self.stats.merges += landing.compact(counts.days)

    def _warn_gaps(self, gaps: list) -> None:
        interval = self.profile.sampling_interval
        shown = [f"{device} {before:%Y-%m-%d %H:%M:%S} -> {after:%Y-%m-%d %H:%M:%S} ({round((after - before) / interval) - 1} missing)"
                 for device, before, after in gaps[:GAPS_SHOWN]]  # fmt: skip
        more = f" and {len(gaps) - GAPS_SHOWN} more" if len(gaps) > GAPS_SHOWN else ""
        self.log(f"warning: readings missing after a resumed session (the broker may have dropped queued messages "
                 f"beyond max_queued_messages; how many it dropped is unknown): {'; '.join(shown)}{more}")  # fmt: skip

    def _report(self) -> None:
        s = self.stats
        self.log(f"received {s.received}, landed {s.landed}, quarantined {s.quarantined}, redelivered {s.redelivered}, flushes {s.flushes}")
