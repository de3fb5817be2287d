#!/usr/bin/env python
"""Benchmark: MQTT telemetry of 1,000 simulated water heaters into landing files, the ingester killed mid-stream.

Run on demand from the repository root (loopback only, about a minute):

    python bench/mqtt_ingest.py                           # a private Mosquitto, configured as advised
    python bench/mqtt_ingest.py --tiny                    # 100 heaters x 50 minutes (CI)
    python bench/mqtt_ingest.py --broker 127.0.0.1:1883   # an existing broker, as it is configured

One publisher process sends the simulator's first `--minutes` of 2026-01-01 for `--devices` heaters (one JSON
reading per message, QoS 1, time order) as fast as it can; `iot-mlops ingest mqtt` (`python -m
iot_mlops.ingestion.cli mqtt`) lands them, fsyncing and acknowledging each flush itself. When the publisher has
handed half the readings to its client, the ingester gets SIGKILL and is restarted at once, while the publisher
goes on. One scenario, run once (`--runs` is unused): no other side races it.

The publisher stamps every message as it hands it to the MQTT client; the client has the broker's acknowledgement
of it by the stamp of the first message of the next 5,000 (publish() waits for them there) or the publisher's end.
`published_during_outage` counts the messages the broker certainly received while the ingester was down: handed
over after the kill and acknowledged before the restarted ingester's `ready:` line (printed once its subscription
is acknowledged) was seen, polled every 10 ms. The run fails when it is 0: the outage path did not run.
`lost_messages` is the readings published that are not in the landing files, `duplicates` the rows landed twice;
either above 0 fails the run. Rates count rows in the landing parts (Parquet footers), polled every 0.1 s.

The private broker keeps `max_queued_messages 1000000` for a session: Mosquitto's default (1000, counting a
killed client's unacknowledged messages) drops what is published while the ingester is away, which `--broker`
against a default-configured Mosquitto shows.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import yaml
from harness import ROOT, finish, machine_line, parser, table

DAY = date(2026, 1, 1)
FLEET = "bench_mqtt"
PROGRESS = 500  # the publisher reports its count every this many messages


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_broker(workdir: Path) -> tuple[subprocess.Popen, int]:
    if not shutil.which("mosquitto"):
        sys.exit("mosquitto is not installed: install it or pass --broker host:port")
    port = free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 1000000\n")
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"private mosquitto did not start on port {port}")
            time.sleep(0.05)


def write_profile(workdir: Path, devices: int) -> Path:
    spec = yaml.safe_load((ROOT / "profiles" / "water_heaters.yaml").read_text())
    spec["name"] = FLEET
    spec["source"]["simulator"]["devices"] = devices
    folder = workdir / "profiles"
    folder.mkdir()
    (folder / f"{FLEET}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return folder


def publisher(case: dict) -> None:
    """Worker: simulate, then publish once the go file exists, stamping each message as it is handed to the client;
    prints `progress N` every PROGRESS messages and `published N seconds end-epoch` at the end, the stamps in case["stamps"]."""
    import numpy as np

    from iot_mlops.profiles import load_profile
    from iot_mlops.sources.landing import simulator_for
    from iot_mlops.sources.mqtt_publish import publish, simulated_telemetry, telemetry_payloads

    profile = load_profile(Path(case["profiles"]) / f"{FLEET}.yaml")
    table = simulated_telemetry(simulator_for(profile), DAY).slice(0, case["devices"] * case["minutes"])
    payloads = list(telemetry_payloads(profile, table))
    stamps = np.zeros(len(payloads))
    print(f"prepared {len(payloads)}", flush=True)

    def stamped():
        for i, message in enumerate(payloads):
            if i % PROGRESS == 0:
                print(f"progress {i}", flush=True)
            stamps[i] = time.time()
            yield message

    go = Path(case["go"])
    while not go.exists():
        time.sleep(0.01)
    started = time.perf_counter()
    sent = publish(FLEET, stamped(), case["host"], case["port"])
    seconds = time.perf_counter() - started
    np.save(case["stamps"], stamps)
    print(f"published {sent} {seconds:.3f} {time.time():.6f}", flush=True)


def wait_line(log: Path, prefix: str, proc: subprocess.Popen, seconds: float = 120, poll: float = 0.02) -> str:
    deadline = time.monotonic() + seconds
    while True:
        lines = [line for line in log.read_text().splitlines() if line.startswith(prefix)]
        if lines:
            return lines[-1]
        if proc.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"{log.name}: no '{prefix}' line (exit {proc.poll()}):\n{log.read_text()[-3000:]}")
        time.sleep(poll)


def last_count(log: Path, prefix: str) -> int:
    """The number on the log's last `prefix` line (0 before the first)."""
    lines = [line for line in log.read_text().splitlines() if line.startswith(prefix + " ")]
    return int(lines[-1].split()[1]) if lines else 0


def landed_rows(day_file: Path) -> int:
    import pyarrow.parquet as pq

    from iot_mlops.ingestion.sources import landing_parts

    total = 0
    for part in landing_parts(day_file):
        try:
            total += pq.read_metadata(part).num_rows
        except FileNotFoundError:  # removed after a merge between listing and reading: count again
            return landed_rows(day_file)
    return total


def main() -> int:
    p = parser(__doc__, ["publish"])
    p.add_argument("--devices", type=int, help="heaters (default 1000; --tiny 100)")
    p.add_argument("--minutes", type=int, help="minutes of 1-minute telemetry per heater (default 100; --tiny 50)")
    p.add_argument("--broker", help="host:port of an existing broker (default: a private Mosquitto)")
    p.add_argument("--flush-seconds", type=float, default=1.0)
    p.add_argument("--max-batch", type=int, default=5000)
    args = p.parse_args()
    if args.worker:
        publisher(json.loads(Path(args.case_file).read_text()))
        return 0
    devices, minutes = args.devices or (100 if args.tiny else 1000), args.minutes or (50 if args.tiny else 100)

    print(machine_line("mqtt_ingest", "paho-mqtt", "duckdb", "pyarrow"))
    workdir = Path(tempfile.mkdtemp(prefix="bench-mqtt-", dir=args.workdir))
    procs: list[subprocess.Popen] = []
    client_id = f"iot-mlops-ingest-{FLEET}-{os.getpid()}"
    try:
        if args.broker:
            host, port = args.broker.rsplit(":", 1)[0], int(args.broker.rsplit(":", 1)[1])
            broker = f"{host}:{port} (as configured)"
        else:
            proc, port = start_broker(workdir)
            procs.append(proc)
            host, broker = "127.0.0.1", f"private mosquitto 127.0.0.1:{port}, max_queued_messages 1000000"
        profiles = write_profile(workdir, devices)
        env = {**os.environ, "IOT_MLOPS_PROFILES_DIR": str(profiles), "IOT_MLOPS_DATA_DIR": str(workdir / "data"),
               "IOT_MLOPS_LANDING_DIR": str(workdir / "landing"), "IOT_MLOPS_LAKE_DIR": str(workdir / "lake")}  # fmt: skip
        day_file = workdir / "landing" / FLEET / f"telemetry/date={DAY.isoformat()}/telemetry.parquet"
        ingest = [sys.executable, "-m", "iot_mlops.ingestion.cli", "mqtt", "--fleet", FLEET, "--host", host, "--port", str(port),
                  "--client-id", client_id, "--flush-seconds", str(args.flush_seconds), "--max-batch", str(args.max_batch)]  # fmt: skip
        total = devices * minutes

        case = {"profiles": str(profiles), "go": str(workdir / "go"), "host": host, "port": port, "devices": devices,
                "minutes": minutes, "stamps": str(workdir / "stamps.npy")}  # fmt: skip
        case_file, pub_log = workdir / "publisher.json", workdir / "publisher.log"
        case_file.write_text(json.dumps(case))
        pub = subprocess.Popen([sys.executable, __file__, "--worker", "publish", "--case-file", str(case_file)],
                               stdout=open(pub_log, "w"), stderr=subprocess.STDOUT, cwd=ROOT, env=env)  # fmt: skip
        procs.append(pub)
        logs = [workdir / "ingest-1.log", workdir / "ingest-2.log"]
        first = subprocess.Popen(ingest, stdout=open(logs[0], "w"), stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        procs.append(first)
        wait_line(pub_log, "prepared", pub, 300)
        wait_line(logs[0], "ready:", first)

        Path(case["go"]).touch()
        started = time.monotonic()
        while last_count(pub_log, "progress") < total // 2:
            if first.poll() is not None or pub.poll() is not None:
                sys.exit(f"ingester or publisher exited early:\n{logs[0].read_text()[-3000:]}\n{pub_log.read_text()[-3000:]}")
            time.sleep(0.01)
        first.send_signal(signal.SIGKILL)
        first.wait()
        killed, killed_epoch, at_kill = time.monotonic(), time.time(), landed_rows(day_file)
        second = subprocess.Popen([*ingest, "--idle-timeout", "5"], stdout=open(logs[1], "w"), stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        procs.append(second)
        ready = wait_line(logs[1], "ready:", second, poll=0.01)
        back, back_epoch = time.monotonic(), time.time()
        while (rows := landed_rows(day_file)) < total and second.poll() is None and time.monotonic() - back < 300:
            time.sleep(0.1)
        done = time.monotonic()
        pub_line = wait_line(pub_log, "published", pub, 300)
        published, publish_seconds, publish_end = int(pub_line.split()[1]), float(pub_line.split()[2]), float(pub_line.split()[3])
        second.wait(60)
        stats = json.loads(wait_line(logs[1], "stats:", second)[len("stats: "):])

        import duckdb
        import numpy as np

        from iot_mlops.ingestion.sources import landing_parts
        from iot_mlops.sources.mqtt_publish import CHUNK

        # publish() waits for the broker's acknowledgements every CHUNK messages: message i reached the broker after
        # its stamp and before the stamp of the next chunk's first message (or the end of publish() for the last chunk).
        stamps = np.load(case["stamps"])
        acked_by = np.append(stamps[CHUNK::CHUNK], publish_end)[np.arange(len(stamps)) // CHUNK]
        during_outage = int(((stamps >= killed_epoch) & (acked_by < back_epoch)).sum())
        listed = ", ".join(f"'{p}'" for p in landing_parts(day_file))
        rows, unique = duckdb.sql(f"SELECT count(*), count(DISTINCT (device_id, timestamp)) FROM read_parquet([{listed}])").fetchone()
        lost, duplicates = published - unique, rows - unique

        print(f"MQTT ingestion: {devices} devices x {minutes} min = {total} readings; broker: {broker}")
        print(f"ingester: flush every {args.flush_seconds} s or {args.max_batch} messages; killed (SIGKILL) when the publisher "
              f"had handed over {total // 2:,}, with {at_kill:,} rows on disk\n")  # fmt: skip
        phases = [("publisher (QoS 1, broker acks)", publish_seconds, published),
                  ("ingester before the kill", killed - started, at_kill),
                  ("outage (kill -> subscribed again)", back - killed, during_outage),
                  ("ingester after restart", done - back, unique - at_kill),
                  ("end to end", done - started, unique)]  # fmt: skip
        table(["phase", "seconds", "messages", "msg/s"],
              [[name, seconds, count, f"{count / seconds:,.0f}" if count else "-"] for name, seconds, count in phases])
        print(f"\npublished during the outage: {during_outage:,}; restarted session: {ready.rsplit('session ', 1)[-1]}; "
              f"redelivered after restart: {stats['redelivered']}; quarantined: {stats['quarantined']}")  # fmt: skip
        problems = [f"{name}: {value:,}" for name, value, bad in [
            ("lost_messages", lost, lost != 0), ("duplicates", duplicates, duplicates != 0),
            ("published_during_outage (the publisher was done before the kill: nothing tested the outage)", during_outage,
             during_outage == 0)] if bad]  # fmt: skip
        code = finish(problems, {"end_to_end_messages_per_second": unique / (done - started)})
        if code == 0:
            print(f"published_during_outage: {during_outage}\nlost_messages: {lost}\nduplicates: {duplicates}")
        return code
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if args.broker:
            from iot_mlops.ingestion.mqtt import forget_session

            forget_session(client_id, host, port)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
