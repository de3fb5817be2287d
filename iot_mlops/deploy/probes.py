"""Small, bounded probes of a deployment's parts: each returns None when fine, or the problem in plain words."""

from __future__ import annotations

import re
import tempfile
import time
from pathlib import Path

TIMEOUT = 5  # seconds: a doctor answers quickly, an unreachable host is a finding, not a hang
_PASSWORD = re.compile(r"(://[^:/@]*:)[^@]*@")


def mask(url: str) -> str:
    """A URL fit to print: its password replaced by ***."""
    return _PASSWORD.sub(r"\1***@", url)


def first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return mask(text[0] if text else type(error).__name__)


def writable(path: Path) -> str | None:
    """Whether files can be created in `path`, or in its nearest existing parent when it does not exist yet."""
    existing = Path(path)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, so {path} cannot be a folder"
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".iot-mlops-doctor-"):
            pass
    except OSError as error:
        return f"cannot create files in {existing}: {error.strerror or error}"
    return None


def is_postgres(url: str) -> bool:
    return url.startswith(("postgresql", "postgres:"))


def database_of(url: str) -> tuple[str, int, str] | None:
    """(host, port, database) of a Postgres URL, to tell whether two settings share one database."""
    from sqlalchemy.engine import make_url

    if not is_postgres(url):
        return None
    parsed = make_url(url)
    return (parsed.host or "localhost", parsed.port or 5432, parsed.database or "")


def driver_problem(url: str, who: str) -> str | None:
    """A Postgres URL whose SQLAlchemy driver is not installed (bare postgresql:// means psycopg 3 in SQLAlchemy 2.1)."""
    if url.startswith("postgres://"):
        return f"{who} uses the scheme postgres://, which SQLAlchemy does not know; write postgresql+psycopg2://"
    if url.startswith(("postgresql://", "postgresql+psycopg://")):
        try:
            import psycopg  # noqa: F401
        except ImportError:
            return f"{who} needs the psycopg 3 driver, which is not installed; write postgresql+psycopg2://"
    return None


def postgres(url: str) -> str | None:
    """Connect once with a timeout (psycopg2) and run SELECT 1."""
    import psycopg2
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    try:
        conn = psycopg2.connect(host=parsed.host or "localhost", port=parsed.port or 5432, user=parsed.username,
                                password=parsed.password, dbname=parsed.database, connect_timeout=TIMEOUT,
                                **{k: v for k, v in parsed.query.items() if isinstance(v, str)})
    except psycopg2.Error as error:
        return f"cannot connect to {mask(url)}: {first_line(error)}"
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
    finally:
        conn.close()
    return None


def postgres_fix(problem: str, variable: str) -> str:
    """What to do about a Postgres connection problem, in the words of the setting that holds the URL."""
    if "does not exist" in problem and "database" in problem:
        return f"create the database (createdb -h HOST -U USER NAME) or correct the database name in {variable}"
    if "authentication failed" in problem or "no password supplied" in problem:
        return f"check the user and password in {variable}"
    if "Connection refused" in problem or "timeout expired" in problem or "could not translate host name" in problem:
        return f"start PostgreSQL on that host and port, or correct the host and port in {variable}"
    return f"check {variable} and that PostgreSQL accepts connections from this host"


def rabbitmq(url: str) -> str | None:
    """Open (and close) one AMQP connection to the broker."""
    import kombu
    from amqp.exceptions import AMQPError
    from kombu.exceptions import KombuError

    try:
        with kombu.Connection(url, connect_timeout=TIMEOUT) as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=TIMEOUT)
    except (OSError, AMQPError, KombuError) as error:
        return f"cannot connect to the broker at {mask(url)}: {first_line(error)}"
    return None


def mqtt(host: str, port: int) -> str | None:
    """Connect with a clean, throw-away session and wait for the broker's CONNACK."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5,
                         client_id=f"iot-mlops-doctor-{time.monotonic_ns()}")
    acks: list = []
    client.on_connect = lambda _c, _u, _flags, reason, _props: acks.append(reason)
    try:
        client.connect(host, port, keepalive=10)
    except OSError as error:
        return f"cannot reach the MQTT broker at {host}:{port}: {error.strerror or error}"
    try:
        deadline = time.monotonic() + TIMEOUT
        while not acks and time.monotonic() < deadline:
            client.loop(timeout=0.2)
    finally:
        client.disconnect()
    if not acks:
        return f"the MQTT broker at {host}:{port} did not answer the connection within {TIMEOUT} s"
    if acks[0].is_failure:
        return f"the MQTT broker at {host}:{port} refused the connection: {acks[0]}"
    return None
