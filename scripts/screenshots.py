#!/usr/bin/env python
"""Screenshots of the Dagster UI after `iot-mlops demo`, taken with headless Chromium.

Run from the project folder once the demo has run:

    python scripts/screenshots.py [--out data/screenshots] [--fleet water_heaters]

It starts a read-only `dagster-webserver` on the project's Dagster instance (DAGSTER_HOME, else this folder, as
the CLI), and `mlflow server` on the tracking store if IOT_MLOPS_MLFLOW_UI_URL (default 127.0.0.1:5000) does
not answer (the model plots on the asset page are images it serves), waits until the code location has loaded,
saves one PNG per page (see shots()) and stops what it started. `--url` uses a webserver already running instead.

Needs Chromium with its WebDriver (Debian/Ubuntu: `apt-get install chromium chromium-driver`) and selenium
(`pip install -e ".[screenshots]"`). Chromium's own `--headless --screenshot` is not enough: the drift plot is
behind the metadata table's "Plots" toggle, which takes a click.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit

from iot_mlops.processes import stop_process_group

PROJECT = Path(__file__).resolve().parents[1]
LOCATION = "iot_mlops"  # workspace.yaml's location_name
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
DRIVERS = ("chromedriver",)
INSTALL_HINT = (
    "Install Chromium and its WebDriver (Debian/Ubuntu: apt-get install chromium chromium-driver), or pass "
    "--chromium and --chromedriver with their paths."
)


class MissingTool(RuntimeError):
    """Something the screenshots need is not installed; the message says what and how to get it."""


@dataclass(frozen=True)
class Shot:
    """One screenshot: the UI path, text that shows the page has its data, and what to do before taking it."""

    name: str
    path: str
    wait_for: str
    click: str | None = None  # a button's label to click first (e.g. the metadata table's "Plots" toggle)
    scroll_to: str | None = None  # text to bring into view (the last occurrence: metadata sits below the fold)


def shots(fleet: str, location: str = LOCATION) -> list[Shot]:
    """The pages to capture for one fleet, in order."""
    repo = f"__repository__@{location}"
    asset = f"/assets/{quote(fleet)}"
    sensor = f"/locations/{repo}/sensors/{quote(fleet)}_drift_sensor"
    return [
        Shot("asset_graph", f"/locations/{repo}/asset-groups/{quote(fleet)}", "failure_model"),
        Shot("drift_sensor", sensor, f"{fleet}_drift_sensor"),
        # Runs the sensor requested, by their tag: the sensor page's own Runs tab lists only runs the daemon
        # launched (with the code location's tags), not the demo's in-process ones.
        Shot("drift_sensor_runs", f"/runs?{urlencode({'q[]': f'tag:dagster/sensor_name={fleet}_drift_sensor'})}",
             f"{fleet}_retraining"),
        Shot("daily_job_runs", f"/runs?{urlencode({'q[]': f'job:{fleet}_daily'})}", "Success"),
        Shot("drift_share_plot", f"{asset}/drift_report", "drift_share", click="Plots", scroll_to="drift_share"),
        Shot("failure_model", f"{asset}/failure_model", "precision_recall", scroll_to="confusion_matrix"),
    ]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("data/screenshots"), help="Folder for the PNGs (default %(default)s).")
    parser.add_argument("--fleet", default="water_heaters", help="Fleet whose pages to capture (default %(default)s).")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="Capture only these shots (names as in the PNG files).")
    parser.add_argument("--url", help="A running Dagster webserver to use instead of starting one.")
    parser.add_argument("--port", type=int, default=0, help="Port for the webserver this script starts (default: a free one).")
    parser.add_argument("--home", type=Path, help="DAGSTER_HOME (default as the CLI: $DAGSTER_HOME, else this folder "
                                                   "if it holds dagster.yaml).")
    parser.add_argument("--no-mlflow", action="store_true", help="Do not start an MLflow server for the model plots.")
    parser.add_argument("--chromium", help="Chromium (or Chrome) binary (default: the first of %s on PATH)." % ", ".join(BROWSERS))
    parser.add_argument("--chromedriver", help="chromedriver binary (default: chromedriver on PATH).")
    parser.add_argument("--size", default="1600x1000", help="Window size WIDTHxHEIGHT (default %(default)s).")
    parser.add_argument("--timeout", type=float, default=120, help="Seconds to wait for the server, and for each page (default %(default)s).")
    args = parser.parse_args(argv)
    try:
        width, height = (int(n) for n in args.size.lower().split("x"))
    except ValueError:
        parser.error(f"--size must be WIDTHxHEIGHT, got {args.size!r}")
    args.window = (width, height)
    known = {s.name for s in shots(args.fleet)}
    if args.only and not set(args.only) <= known:
        parser.error(f"--only: unknown shot(s) {', '.join(sorted(set(args.only) - known))}; known: {', '.join(sorted(known))}")
    return args


def find_tool(given: str | None, names: tuple[str, ...], what: str) -> str:
    """The path of a binary given or on PATH; MissingTool naming what to install if none."""
    for name in ([given] if given else names):
        path = shutil.which(name)
        if path:
            return path
    tried = given or " / ".join(names)
    raise MissingTool(f"{what} not found ({tried}). {INSTALL_HINT}")


def webdriver_module():
    try:
        from selenium import webdriver
    except ImportError as error:
        raise MissingTool('selenium is not installed: pip install -e ".[screenshots]" (or pip install selenium).') from error
    return webdriver


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dagster_home(given: Path | None) -> Path:
    """As the CLI: the given folder, else $DAGSTER_HOME, else this folder if it holds dagster.yaml, else data/dagster_home."""
    if given or os.environ.get("DAGSTER_HOME"):
        return Path(given or os.environ["DAGSTER_HOME"]).resolve()
    return Path.cwd() if Path("dagster.yaml").is_file() else Path("data/dagster_home").resolve()


def answers(url: str, timeout: float = 2) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True  # it answered
    except OSError:
        return False


def location_loaded(base_url: str) -> bool:
    """True once the webserver has loaded the code location (its GraphQL lists a repository)."""
    query = json.dumps({"query": "{ repositoriesOrError { ... on RepositoryConnection { nodes { name } } } }"}).encode()
    request = urllib.request.Request(f"{base_url}/graphql", data=query, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            nodes = json.load(response)["data"]["repositoriesOrError"].get("nodes") or []
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return bool(nodes)


def wait_for(check, timeout: float, what: str, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what}: the process exited with code {process.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not ready after {timeout:.0f}s")
        time.sleep(1)


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """A server in its own process group (stopped as a whole), its output in `log`; run from this folder, as the
    CLI (dagster.yaml's and the settings' relative paths are relative to it)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def bin_of(name: str) -> str:
    """A console script of this Python's environment (dagster-webserver, mlflow), else from PATH."""
    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.exists() else find_tool(None, (name,), name)


def start_mlflow(env: dict[str, str], logs: Path, timeout: float) -> subprocess.Popen | None:
    """`mlflow server` on the tracking store at the UI URL the metadata links to, unless something answers there."""
    sys.path.insert(0, str(PROJECT))
    from iot_mlops.settings import get_settings

    settings = get_settings()
    url = urlsplit(settings.mlflow_ui_url)
    if answers(settings.mlflow_ui_url) or url.hostname not in ("127.0.0.1", "localhost"):
        return None
    command = [bin_of("mlflow"), "server", "--backend-store-uri", settings.tracking_uri, "--host", url.hostname,
               "--port", str(url.port or 80), "--workers", "1"]
    process = start(command, env, logs / "mlflow.log")
    wait_for(lambda: answers(settings.mlflow_ui_url), timeout, "mlflow server", process)
    return process


def browser(args: argparse.Namespace):
    webdriver = webdriver_module()
    chromium = find_tool(args.chromium, BROWSERS, "Chromium")
    driver_path = find_tool(args.chromedriver, DRIVERS, "chromedriver")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
                 f"--window-size={args.window[0]},{args.window[1]}"):
        options.add_argument(flag)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        options.add_argument("--no-sandbox")  # Chromium refuses to start as root with its sandbox
    try:
        return webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_path))
    except Exception as error:  # selenium's WebDriverException: e.g. a driver for another Chromium version
        raise RuntimeError(f"{chromium} did not start through {driver_path}: {str(error).strip()}") from error


# Dagster's "Join the Dagster community" dialog on localhost stays away once this browser has dismissed it.
NO_COMMUNITY_DIALOG = "localStorage.setItem('communityNux', JSON.stringify('1'));"
PAGE_HAS = "return document.body && document.body.innerText.includes(arguments[0]);"
IMAGES_DONE = "return Array.from(document.images).every(i => i.complete);"
# Buttons first: the navigation's links have labels such as "Runs" too.
CLICK = """
const label = arguments[0];
for (const selector of ['button', '[role=button], [role=tab]']) {
  const el = Array.from(document.querySelectorAll(selector)).find(e => e.innerText.trim() === label);
  if (el) { el.click(); return true; }
}
return false;"""
SCROLL = """
const text = arguments[0];
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
let last = null;
while (walker.nextNode()) { if (walker.currentNode.textContent.trim() === text) last = walker.currentNode.parentElement; }
if (last) { last.scrollIntoView({block: 'start'}); return true; } return false;"""


def take(driver, base_url: str, shot: Shot, out: Path, timeout: float) -> str:
    """Save one screenshot; returns a note on anything that did not show (empty when all did)."""
    notes = []

    def until(script: str, arg: str | None = None, seconds: float = timeout) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if driver.execute_script(script, arg):
                return True
            time.sleep(0.5)
        return False

    driver.get(base_url.rstrip("/") + shot.path)
    if not until(PAGE_HAS, shot.wait_for):
        notes.append(f"'{shot.wait_for}' did not show within {timeout:.0f}s")
    time.sleep(2)  # queries that follow the first render (tick lists, run rows, plots)
    if shot.click:
        if until(CLICK, shot.click, 15):
            time.sleep(3)
        else:
            notes.append(f"no '{shot.click}' button")
    if shot.scroll_to and not until(SCROLL, shot.scroll_to, 10):
        notes.append(f"'{shot.scroll_to}' not found to scroll to")
    until(IMAGES_DONE, None, 15)
    time.sleep(1)
    path = out / f"{shot.name}.png"
    driver.save_screenshot(str(path))
    return "; ".join(notes)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        webdriver_module()
        find_tool(args.chromium, BROWSERS, "Chromium")
        find_tool(args.chromedriver, DRIVERS, "chromedriver")
    except MissingTool as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    home = dagster_home(args.home)
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    os.environ["DAGSTER_HOME"] = str(home)
    started: list[subprocess.Popen] = []
    driver = None
    try:
        if not args.no_mlflow:
            mlflow = start_mlflow(env, out / "logs", args.timeout)
            if mlflow:
                started.append(mlflow)
        base_url = args.url
        if not base_url:
            port = args.port or free_port()
            base_url = f"http://127.0.0.1:{port}"
            command = [bin_of("dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-w", str(PROJECT / "workspace.yaml"),
                       "--read-only", "--suppress-warnings"]
            started.append(start(command, env, out / "logs" / "dagster-webserver.log"))
            print(f"dagster-webserver on {base_url} (DAGSTER_HOME={home}), log in {out / 'logs'}")
        wait_for(lambda: location_loaded(base_url), args.timeout, f"Dagster webserver at {base_url}",
                 started[-1] if not args.url else None)
        driver = browser(args)
        driver.get(base_url)
        driver.execute_script(NO_COMMUNITY_DIALOG)
        failed = 0
        for shot in shots(args.fleet):
            if args.only and shot.name not in args.only:
                continue
            note = take(driver, base_url, shot, out, args.timeout)
            failed += bool(note)
            print(f"{out / (shot.name + '.png')}" + (f"  (check it: {note})" if note else ""))
        return 1 if failed else 0
    except (MissingTool, RuntimeError, TimeoutError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        if driver is not None:
            driver.quit()
        for process in reversed(started):
            stop_process_group(process, timeout=20)


if __name__ == "__main__":
    sys.exit(main())
