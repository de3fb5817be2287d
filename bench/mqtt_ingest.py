#!/usr/bin/env python
"""Benchmark: MQTT telemetry of 1,000 simulated water heaters into landing files, the ingester killed half way.

Run on demand from the repository root (loopback only, about a minute):

    python bench/mqtt_ingest.py                           # a private Mosquitto, configured as advised
    python bench/mqtt_ingest.py --broker 127.0.0.1:1883   # an existing broker, as it is configured

One publisher process sends the simulator's first `--minutes` of 2026-01-01 for `--devices` heaters
(one JSON reading per message, QoS 1, time order) as fast as it can; `iot-mlops ingest mqtt`
(`python -m iot_mlops.ingestion.cli mqtt`) lands them. When half the readings are on disk the
ingester gets SIGKILL and is restarted at once, while the publisher goes on. Rates count rows in
the landing parts (Parquet footers), polled every 0.1 s. `lost_messages` is the readings published
that are not in the landing files; `duplicates` the rows landed twice (both should be 0).

The private broker keeps `max_queued_messages 1000000` for a session: Mosquitto's default (1000,
counting a killed client's unacknowledged messages) drops what is published while the ingester is
away, which `--broker` against a default-configured Mosquitto shows.
"""

from __future__ import annotations

import argparse
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

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
DAY = date(2026, 1, 1)
FLEET = "bench_mqtt"


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


def publisher(args: argparse.Namespace) -> None:
    """Worker: simulate, then publish once the go file exists; prints `published N seconds end-epoch`."""
    from iot_mlops.profiles import load_profile
    from iot_mlops.sources.landing import simulator_for
    from iot_mlops.sources.mqtt_publish import publish, simulated_telemetry, telemetry_payloads

    profile = load_profile(Path(args.profiles) / f"{FLEET}.yaml")
    table = simulated_telemetry(simulator_for(profile), DAY)
    table = table.slice(0, args.devices * args.minutes)
    payloads = list(telemetry_payloads(profile, table))
    print(f"prepared {len(payloads)}", flush=True)
    go = Path(args.go)
    while not go.exists():
        time.sleep(0.01)
    started = time.perf_counter()
    sent = publish(FLEET, payloads, args.host, args.port)
    print(f"published {sent} {time.perf_counter() - started:.3f} {time.time():.3f}", flush=True)


def wait_line(log: Path, prefix: str, proc: subprocess.Popen, seconds: float = 120) -> str:
    deadline = time.monotonic() + seconds
    while True:
        lines = [line for line in log.read_text().splitlines() if line.startswith(prefix)]
        if lines:
            return lines[-1]
        if proc.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"{log.name}: no '{prefix}' line (exit {proc.poll()}):\n{log.read_text()[-3000:]}")
        time.sleep(0.02)


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
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--minutes", type=int, default=100, help="Minutes of 1-minute telemetry per device.")
    parser.add_argument("--broker", help="host:port of an existing broker (default: a private Mosquitto).")
    parser.add_argument("--flush-seconds", type=float, default=1.0)
    parser.add_argument("--max-batch", type=int, default=5000)
    parser.add_argument("--worker", choices=["publish"], help=argparse.SUPPRESS)
    for hidden in ("--profiles", "--go", "--host"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        publisher(args)
        return 0

    workdir = Path(tempfile.mkdtemp(prefix="bench-mqtt-"))
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
        profiles = write_profile(workdir, args.devices)
        env = {**os.environ, "IOT_MLOPS_PROFILES_DIR": str(profiles), "IOT_MLOPS_DATA_DIR": str(workdir / "data"),
               "IOT_MLOPS_LANDING_DIR": str(workdir / "landing"), "IOT_MLOPS_LAKE_DIR": str(workdir / "lake")}  # fmt: skip
        day_file = workdir / "landing" / FLEET / f"telemetry/date={DAY.isoformat()}/telemetry.parquet"
        ingest = [sys.executable, "-m", "iot_mlops.ingestion.cli", "mqtt", "--fleet", FLEET, "--host", host, "--port", str(port),
                  "--client-id", client_id, "--flush-seconds", str(args.flush_seconds), "--max-batch", str(args.max_batch)]  # fmt: skip
        total = args.devices * args.minutes

        go = workdir / "go"
        pub_log = workdir / "publisher.log"
        pub = subprocess.Popen([sys.executable, __file__, "--worker", "publish", "--profiles", str(profiles), "--go", str(go),
                                "--host", host, "--port", str(port), "--devices", str(args.devices), "--minutes", str(args.minutes)],
                               stdout=open(pub_log, "w"), stderr=subprocess.STDOUT, cwd=ROOT, env=env)  # fmt: skip
        procs.append(pub)
        logs = [workdir / "ingest-1.log", workdir / "ingest-2.log"]
        first = subprocess.Popen(ingest, stdout=open(logs[0], "w"), stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        procs.append(first)
        wait_line(pub_log, "prepared", pub, 300)
        wait_line(logs[0], "ready:", first)

        go.touch()
        started = time.monotonic()
        while (rows := landed_rows(day_file)) < total // 2:
            if first.poll() is not None:
                sys.exit(f"ingester exited early:\n{logs[0].read_text()[-3000:]}")
            time.sleep(0.1)
        first.send_signal(signal.SIGKILL)
        first.wait()
        killed, killed_epoch, at_kill = time.monotonic(), time.time(), landed_rows(day_file)
        second = subprocess.Popen([*ingest, "--idle-timeout", "5"], stdout=open(logs[1], "w"), stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        procs.append(second)
        wait_line(logs[1], "ready:", second)
        back = time.monotonic()
        while (rows := landed_rows(day_file)) < total and second.poll() is None and time.monotonic() - back < 300:
            time.sleep(0.1)
        done = time.monotonic()
        pub_line = wait_line(pub_log, "published", pub, 300)
        published, publish_seconds, publish_end = int(pub_line.split()[1]), float(pub_line.split()[2]), float(pub_line.split()[3])
        second.wait(60)
        stats = json.loads(wait_line(logs[1], "stats:", second)[len("stats: "):])
        published_while_down = "yes" if publish_end > killed_epoch else "no"

        import duckdb

        from iot_mlops.ingestion.sources import landing_parts

        listed = ", ".join(f"'{p}'" for p in landing_parts(day_file))
        rows, unique = duckdb.sql(f"SELECT count(*), count(DISTINCT (device_id, timestamp)) FROM read_parquet([{listed}])").fetchone()
        lost, duplicates = published - unique, rows - unique

        print(f"MQTT ingestion: {args.devices} devices x {args.minutes} min = {total} readings; broker: {broker}")
        print(f"ingester: flush every {args.flush_seconds} s or {args.max_batch} messages; killed (SIGKILL) at {at_kill} rows on disk")
        print()
        print(f"{'phase':<34}{'seconds':>9}{'rows landed':>13}{'msg/s':>10}")
        table = [
            ("publisher (QoS 1, broker acks)", publish_seconds, published),
            ("ingester before the kill", killed - started, at_kill),
            ("restart (kill -> subscribed)", back - killed, 0),
            ("ingester after restart", done - back, unique - at_kill),
            ("end to end", done - started, unique),
        ]
        for name, seconds, count in table:
            rate = f"{count / seconds:,.0f}" if count else "-"
            print(f"{name:<34}{seconds:>9.2f}{count:>13,}{rate:>10}")
        print()
        print(f"published while the ingester was down: {published_while_down}; redelivered after restart: {stats['redelivered']}; "
              f"quarantined: {stats['quarantined']}; duplicates: {duplicates}")  # fmt: skip
        print(f"lost_messages: {lost}")
        return 0 if lost == 0 and duplicates == 0 else 1
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
