#!/usr/bin/env python3
"""Run every command of the README (its ```bash blocks and inline `iot-mlops ...` spans) in order, as written,
in a scratch copy of the project, the demo at its default size; print a table and exit 1 if any command failed.

Usage: python scripts/walk_readme.py [--keep] [--demo-args "--devices 400 ..."]
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The closed-loop test's size: fewer devices or days leave the first model below the gate's floor (no champion).
DEMO_ARGS = ""  # the demo as written: smaller fleets can fall below the champion gate's floor and alert on nothing
FENCE = re.compile(r"^[ \t]*```([a-z]*)\n(.*?)^[ \t]*```", flags=re.DOTALL | re.MULTILINE)
# Long-running commands: started in the background, waited for, stopped at the end of their README section.
SERVERS = [
    (r"\bdagster dev\b", "http://127.0.0.1:3000/server_info"),
    (r"\biot-mlops serve\b", "http://127.0.0.1:{port}/readyz"),
    (r"\biot-mlops ingest mqtt\b", "log:ready:"),
    (r"\bcelery .* worker\b", "log: ready."),
    (r"\bmlflow ui\b", "http://127.0.0.1:5000/"),
]


@dataclass
class Command:
    line: int
    section: str
    text: str
    inline: bool = False
    status: str = ""
    detail: str = ""


def complete(text: str) -> bool:
    """True when no quote is left open (a quoted JSON body may span lines)."""
    try:
        return shlex.split(text) is not None
    except ValueError:
        return False


def strip_comment(text: str) -> str:
    """The text without `# ...` comments outside quotes (a quoted string may span lines)."""
    kept, quote, skipping = [], None, False
    for i, char in enumerate(text):
        if skipping:
            skipping = char != "\n"
        elif quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or text[i - 1].isspace()):
            skipping = True
            continue
        if not skipping:
            kept.append(char)
    return "\n".join(line.rstrip() for line in "".join(kept).splitlines()).strip()


def block_commands(body: str, first_line: int) -> list[tuple[int, str]]:
    """The commands of one bash block: `\\` continuations joined, comments dropped, heredocs and open quotes kept."""
    found, buffer, start, heredoc = [], "", 0, None
    for number, raw in enumerate(body.splitlines(), first_line):
        if heredoc:
            buffer += "\n" + raw.strip()
            if raw.strip() == heredoc:
                found.append((start, buffer))
                buffer, heredoc = "", None
            continue
        if not buffer:
            if not strip_comment(raw.strip()):
                continue
            start = number
        buffer = (buffer + (" " if complete(buffer) else "\n") if buffer else "") + raw.strip()
        text = strip_comment(buffer)
        if text.endswith("\\"):
            buffer = text[:-1].rstrip()
        elif match := re.search(r"<<-?'?(\w+)'?$", text):
            buffer, heredoc = text, match.group(1)
        elif complete(text):
            found.append((start, text))
            buffer = ""
    return found


def extract(text: str) -> list[Command]:
    """Every command of the README in order: bash block lines, then inline `iot-mlops ...` spans, by line."""
    headings = [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in re.finditer(r"^## (.+)$", text, re.MULTILINE)]
    section = lambda line: ([h for n, h in headings if n <= line] or [""])[-1]
    commands = []
    for match in FENCE.finditer(text):
        if match.group(1) == "bash":
            first = text.count("\n", 0, match.start(2)) + 1
            commands += [Command(n, section(n), c) for n, c in block_commands(match.group(2), first)]
    prose = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    for match in re.finditer(r"`(iot-mlops [^`]+)`", prose):
        line = prose.count("\n", 0, match.start()) + 1
        commands.append(Command(line, section(line), " ".join(match.group(1).split()), inline=True))
    return sorted(commands, key=lambda c: c.line)


def invocations(text: str) -> list[tuple[tuple[str, ...], frozenset[str]]]:
    """Each `iot-mlops` call in a command line: its command words (at most two) and option names."""
    calls = []
    for part in re.split(r"\biot-mlops ", text)[1:]:
        words = re.split(r"&&|\||;", part)[0].split()
        names = []
        for word in words[:2]:
            if not re.fullmatch(r"[a-z][a-z_]*", word):
                break
            names.append(word)
        calls.append((tuple(names), frozenset(w.split("=")[0] for w in words if w.startswith("--"))))
    return calls


def last_line(output: str) -> str:
    """The last line of an output that says something (not a frame of a box), shortened."""
    output = re.sub(r"\x1b\[[0-9;]*m", "", output)
    lines = [line.strip(" │╭╰─") for line in output.splitlines() if re.search(r"[A-Za-z0-9]", line)]
    return lines[-1][:70] if lines else ""


class Walk:
    """The walk's state: environment, background servers, and what earlier commands printed."""

    def __init__(self, scratch: Path, demo_args: str):
        self.scratch, self.demo_args, self.servers, self.captured = scratch, demo_args, [], {}
        self.etc, self.logs = scratch.parent / "etc/iot_mlops", scratch.parent / "logs"
        self.logs.mkdir()
        bin_dir = str(Path(sys.executable).parent)
        self.env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", PYTHONPATH=str(scratch), COLUMNS="160")
        self.env.pop("DAGSTER_HOME", None)
        self.roles_before = self.psql("select rolname from pg_roles")

    def psql(self, sql: str) -> set[str]:
        out = subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-Atc", sql], capture_output=True, text=True, check=False)
        return set(out.stdout.split())

    def prepare(self, c: Command, earlier: list[Command], everything: list[Command]) -> tuple[str | None, list[str]]:
        """The command as it will run, and the substitutions made; None with the reason when it is not run."""
        text, notes = c.text, []

        def sub(pattern: str, new: str, note: str) -> None:
            nonlocal text
            if re.search(pattern, text):
                text = re.sub(pattern, lambda _: new, text)
                notes.append(note)

        if text == "pytest":
            return None, ["not run: the test suite (run by .ci/run)"]
        if c.inline:
            same = next((e for e in earlier if e.text == text), None)
            if same:
                return None, [f"not run: same as line {same.line}"]
            named = next((e for e in everything if not e.inline and invocations(text)[0][0] in [i[0] for i in invocations(e.text)]), None)
            if named and len(text.split()) == 1 + len(invocations(text)[0][0]):
                return None, [f"not run: names the command run at line {named.line}"]
            if re.search(r"\s[A-Z]\s|\.\.\.$", text) and "NAME" not in text:
                return None, ["not run: a template (placeholders F, ...) in a table"]
            sub(r"\[--json\]", "--json", "optional [--json] given")
            sub(r"\bNAME\b", "water_heaters_component_failure", "NAME = water_heaters_component_failure")
        sub(r'^pip install (-e "\.\[dev\]")', r'pip install --dry-run -e ".[dev]"',
            "pip --dry-run: resolves the install, leaves the running venv as it is")
        if self.demo_args:
            sub(r"\biot-mlops demo$", f"iot-mlops demo {self.demo_args}", f"demo {self.demo_args}")
        if re.search(r"<prediction_id>|0205bb3f-1868-\.\.\.", text):
            if "pid" not in self.captured:
                return None, ["not run: no alert id captured from the demo"]
            sub(r"<prediction_id>|0205bb3f-1868-\.\.\.", self.captured["pid"], "id of the demo's alert without feedback")
        sub(r"<the entry>", self.captured.get("entry:admin", "<none>"), "the entry `keys new` printed")
        if "9f86d0..." in text:
            entries = ",".join(self.captured.get(f"entry:{r}", "") for r in ("admin", "operator", "reader"))
            sub(r'"9f86d0[^"]*"', f'"{entries}"', "the example's elided hashes = the entries printed above")
        if "$KEY" in text:
            notes.append("$KEY = the admin key `keys new` printed")
        text = re.sub(r"\bcurl ", "curl -sS --fail-with-body ", text)  # an HTTP error status fails the command
        sub(r"\bdb\.internal\b", "127.0.0.1", "db.internal = 127.0.0.1")
        sub(r"^sudo ", "", "no sudo")
        sub(r"/etc/iot_mlops", str(self.etc), "/etc/iot_mlops = a scratch folder")
        if text.startswith("sudoedit "):
            return None, ["substituted: the walk fills in the file (CHANGE_ME, db.internal = 127.0.0.1, /srv = scratch, the admin entry)"]
        return text, [n for n in notes if n]

    def fill_env_file(self) -> bool:
        """What an operator does in sudoedit: every CHANGE_ME, with the local services and scratch folders."""
        path = self.etc / "iot_mlops.env"
        text = path.read_text().replace("CHANGE_ME@db.internal", "change-me@127.0.0.1")
        text = text.replace("CHANGE_ME_SHA256_HEX:admin:ops-team", self.captured.get("entry:admin", "CHANGE_ME"))
        text = text.replace("/srv/iot_mlops", str(self.scratch.parent / "srv"))
        path.write_text(text)
        return not any("CHANGE_ME" in line for line in text.splitlines() if not line.startswith("#"))

    def run(self, c: Command, text: str) -> tuple[bool, str]:
        """Run one command in bash with the walk's environment; keep what it exports and what it printed."""
        log, env_file = self.logs / f"{c.line}.log", self.logs / f"{c.line}.env"
        script = f"set -a -e -o pipefail\ntrap 'env -0 > {env_file}' EXIT\n{text}\n"
        with open(log, "w") as out:
            proc = subprocess.Popen(["bash", "-c", script], cwd=self.scratch, env=self.env, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
            try:
                rc = proc.wait()
            except BaseException:
                self.servers.append((c, proc))  # interrupted: stopped with the servers
                raise
        if env_file.exists():
            self.env = dict(kv.split("=", 1) for kv in env_file.read_text().split("\0") if "=" in kv)
        output = log.read_text(errors="replace")
        if match := re.findall(r"An alert without feedback: .*?prediction ([0-9a-f-]{36})", output):
            self.captured["pid"] = match[-1]
            output += f"\nalert without feedback: prediction {match[-1]}"
        role = (re.findall(r"--role (\w+)", text) or ["reader"])[0]
        for kind, value in re.findall(r"^(key|entry): (\S+)$", output, re.MULTILINE):
            self.captured[f"{kind}:{role}"] = value
            if kind == "key" and role == "admin":
                self.env.setdefault("KEY", value)  # the first admin key: the one the Serving section's server knows
        if "keys hash" in text and rc == 0:
            self.captured[f"entry:{role}"] = output.split()[-1]
        ok = rc == 0 and not (text.startswith("psql") and "ERROR:" in output)
        if not ok and "rollback" in text and "no version before" in output:
            return True, f"exit {rc}, refused as the README says: no earlier version passed its gate"
        return ok, f"exit {rc}: {last_line(output)}"

    def start(self, c: Command, text: str, ready: str) -> tuple[bool, str]:
        """Start a server in its own process group and wait until it answers (or logs that it is ready)."""
        log = self.logs / f"{c.line}.log"
        with open(log, "w") as out:
            proc = subprocess.Popen(["bash", "-c", f"set -a\n{text}"], cwd=self.scratch, env=self.env,
                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.servers.append((c, proc))
        ready = ready.format(port=(re.findall(r"--port (\d+)", text) or ["8000"])[0])
        began = time.monotonic()
        while time.monotonic() - began < 300 and proc.poll() is None:
            if ready.startswith("log:"):
                if ready[4:] in log.read_text(errors="replace"):
                    return True, f"up in {time.monotonic() - began:.0f} s (background)"
            else:
                try:
                    with urllib.request.urlopen(ready, timeout=5) as answer:
                        return True, f"up in {time.monotonic() - began:.0f} s (background, {ready} {answer.status})"
                except OSError:
                    pass
            time.sleep(1)
        return False, f"not up ({'exited ' + str(proc.returncode) if proc.poll() is not None else 'timeout'}), see {log}"

    def stop_servers(self) -> None:
        """Stop every background server (its process group): SIGTERM, then SIGKILL after 30 s."""
        for c, proc in self.servers:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            c.detail += f"; stopped: {last_line((self.logs / f'{c.line}.log').read_text(errors='replace'))}"
        self.servers = []

    def cleanup(self) -> None:
        """Stop the servers; drop the Production section's databases and roles if the walk made them."""
        self.stop_servers()
        for name in ("dagster", "iot_mlops", "mlflow"):
            if name not in self.roles_before and name in self.psql("select rolname from pg_roles"):
                self.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                self.psql(f"DROP ROLE IF EXISTS {name}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument("--demo-args", default=DEMO_ARGS)
    args = parser.parse_args()
    commands = extract((ROOT / "README.md").read_text())
    base = Path(tempfile.mkdtemp(prefix="walk_readme."))
    scratch = base / "project"
    for name in subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split("\0"):
        if name and (ROOT / name).is_file():
            (scratch / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, scratch / name)
    if (ROOT.parent / "shared").is_dir():  # the azure_pdm profile's default data folder, ../../shared from profiles/
        (base / "shared").symlink_to((ROOT.parent / "shared").resolve())
    walk = Walk(scratch, args.demo_args)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that the servers are stopped
    try:
        for i, c in enumerate(commands):
            if i and c.section != commands[i - 1].section:
                walk.stop_servers()
            text, notes = walk.prepare(c, commands[:i], commands)
            began = time.monotonic()
            if text is None:
                ok = not notes[0].startswith("substituted") or walk.fill_env_file()
                c.status = notes[0] if ok else "FAILED: CHANGE_ME left in the env file"
            else:
                ready = next((r for pattern, r in SERVERS if re.search(pattern, text)), None)
                ok, c.detail = walk.start(c, text, ready) if ready else walk.run(c, text)
                c.status = ("ok" if ok else "FAILED") + (f" (substituted: {'; '.join(notes)})" if notes else "")
            print(f"[{i + 1}/{len(commands)}] line {c.line} {c.text[:60]!r}: {c.status} {c.detail} "
                  f"{time.monotonic() - began:.0f} s", file=sys.stderr, flush=True)
    finally:
        walk.cleanup()
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    print("| line | command | status | output |\n|---|---|---|---|")
    for c in commands:
        shown = " ".join(c.text.split())
        shown = (shown if len(shown) <= 90 else shown[:87] + "...").replace("|", "\\|")
        print(f"| {c.line} | `{shown}` | {c.status} | {c.detail.replace('|', '/')} |")
    failed = [c for c in commands if c.status.startswith("FAILED")]
    print(f"\n{len(commands)} commands, {len(failed)} failed" + (f"; scratch kept in {base}" if args.keep else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
