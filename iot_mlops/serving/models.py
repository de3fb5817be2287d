"""Champion and challenger models in memory, swapped when their alias moves (gate or rollback), without a restart.

A background thread polls the registry's aliases every few seconds and loads a moved alias's version aside,
then swaps one dict entry. A request takes its model snapshot once, so requests in flight finish on the model
they started with. Models load only through ModelRegistry.load_model (skops, trusted types).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from mlflow.exceptions import MlflowException
from sqlalchemy.exc import SQLAlchemyError

from iot_mlops.names import model_name
from iot_mlops.profiles import FleetProfile
from iot_mlops.registry.mlflow_service import CHALLENGER, CHAMPION, ModelNotFound, ModelRegistry, UntrustedModelError
from iot_mlops.serving.scoring import AnomalyScorer, FailureScorer

log = logging.getLogger(__name__)
ANOMALY = "anomaly"
ALIASES = (CHAMPION, CHALLENGER)
FULL_POLL_SECONDS = 60.0
# What a registry or artifact store can raise while it is unreachable or a version is broken: reported, old model kept.
LOAD_ERRORS = (MlflowException, ModelNotFound, UntrustedModelError, SQLAlchemyError, OSError, ValueError)


@dataclass(frozen=True)
class ModelSpec:
    """A registered model the service serves: which fleet and prediction type it answers."""

    name: str
    fleet: str
    prediction_type: str
    components: tuple[str, ...]

    @property
    def is_anomaly(self) -> bool:
        return self.prediction_type == ANOMALY


@dataclass(frozen=True)
class Loaded:
    """One version in memory, immutable: a request holds it for its whole life."""

    spec: ModelSpec
    alias: str
    version: str
    scorer: FailureScorer | AnomalyScorer
    loaded_at: datetime


@dataclass
class AliasState:
    version: str | None = None  # what the registry said last
    error: str | None = None
    checked_at: float = 0.0


def sqlite_changes(tracking_uri: str) -> Callable[[], bool] | None:
    """For a SQLite tracking database: a probe telling whether it was written since the last call (an alias move
    is a write); None for a server database."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    database = Path(tracking_uri.removeprefix("sqlite:///"))
    seen: list[object] = []

    def changed() -> bool:
        now: list[object] = []
        for file in (database, database.with_name(database.name + "-wal")):
            try:
                stat = file.stat()
                now.append((stat.st_ino, stat.st_mtime_ns, stat.st_size))
            except FileNotFoundError:
                now.append(None)
        try:
            with open(database, "rb") as handle:
                now.append(handle.read(28)[24:])  # the header's change counter: every commit outside WAL mode bumps it
        except FileNotFoundError:
            now.append(None)
        different = now != seen
        seen[:] = now
        return different

    return changed


def specs_for(profiles: dict[str, FleetProfile]) -> dict[str, ModelSpec]:
    """Per fleet: the failure model (the profile's prediction type) and the anomaly model, by registered name."""
    out = {}
    for profile in profiles.values():
        for kind in (profile.target.prediction_type, ANOMALY):
            name = model_name(profile.name, kind)
            out[name] = ModelSpec(name, profile.name, kind, tuple(profile.components))
    return out


class ModelCache:
    """The current champion and challenger of each served model."""

    def __init__(self, registry: Callable[[], ModelRegistry], specs: dict[str, ModelSpec], poll_seconds: float = 2.0,
                 explain_top: int = 5, changed: Callable[[], bool] | None = None):
        self._registry_factory, self._registry = registry, None
        self.specs, self.poll_seconds, self.explain_top = specs, poll_seconds, explain_top
        self._models: dict[tuple[str, str], Loaded] = {}
        self._states: dict[tuple[str, str], AliasState] = {(n, a): AliasState() for n in specs for a in ALIASES}
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.poller_error: str | None = None
        # Asking the registry costs ~10 ms of CPU that requests in flight wait for: skipped while `changed` says
        # nothing was written, except once a minute.
        self.changed = changed

    @property
    def registry(self) -> ModelRegistry:
        if self._registry is None:
            self._registry = self._registry_factory()
        return self._registry

    def get(self, name: str, alias: str = CHAMPION) -> Loaded | None:
        """The loaded version holding `alias` now (one dict read: the swap is atomic)."""
        return self._models.get((name, alias))

    def refresh(self, names: list[str] | None = None) -> None:
        """Ask the registry where each alias points; load what moved, drop what was removed."""
        with self._refresh_lock:  # one refresh at a time: the poller and a rollback request may overlap
            for name in names or list(self.specs):
                self._refresh_model(name)

    def _refresh_model(self, name: str) -> None:
        try:
            aliases = self.registry.client.get_registered_model(name).aliases
        except MlflowException as error:
            if error.error_code == "RESOURCE_DOES_NOT_EXIST":
                aliases = {}
            else:
                self._fail(name, ALIASES, error)
                return
        except LOAD_ERRORS as error:
            self._fail(name, ALIASES, error)
            return
        for alias in ALIASES:
            version = str(aliases[alias]) if alias in aliases else None
            state = self._states[(name, alias)]
            state.checked_at = time.monotonic()
            current = self._models.get((name, alias))
            if version is None:
                self._models.pop((name, alias), None)
                state.version, state.error = None, None
            elif current is None or current.version != version:
                self._load(name, alias, version, state)

    def _load(self, name: str, alias: str, version: str, state: AliasState) -> None:
        spec = self.specs[name]
        try:
            model = self.registry.load_model(name, alias)
            # The alias may have moved while we downloaded: keep the model only if it still points at `version`.
            if self.registry.alias_version(name, alias) != version:
                return
            scorer = AnomalyScorer(model, self.explain_top) if spec.is_anomaly else FailureScorer(model, list(spec.components), self.explain_top)
        except LOAD_ERRORS as error:
            self._fail(name, (alias,), error)
            return
        self._models[(name, alias)] = Loaded(spec, alias, version, scorer, datetime.now(UTC))
        state.version, state.error = version, None
        log.info("serving %s v%s as %s", name, version, alias)

    def _fail(self, name: str, aliases: tuple[str, ...], error: BaseException) -> None:
        log.warning("could not refresh %s: %s", name, error)
        for alias in aliases:
            self._states[(name, alias)].error = f"{type(error).__name__}: {error}"

    def status(self) -> list[dict]:
        """Per model and alias: version loaded, version the registry names, last error."""
        out = []
        for (name, alias), state in sorted(self._states.items()):
            loaded = self._models.get((name, alias))
            out.append({"model": name, "alias": alias, "loaded_version": loaded.version if loaded else None,
                        "registry_version": state.version, "error": state.error})
        return out

    # --- background polling -------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._poll, name="model-poller", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _poll(self) -> None:
        asked = time.monotonic()
        try:
            while not self._stop.is_set():
                if self.changed is None or self.changed() or time.monotonic() - asked >= FULL_POLL_SECONDS:
                    self.refresh()
                    asked = time.monotonic()
                self._stop.wait(self.poll_seconds)
        except BaseException as error:  # a bug, not an outage: /readyz reports it rather than serving stale models silently
            self.poller_error = f"{type(error).__name__}: {error}"
            log.exception("model poller stopped")
            raise

    @property
    def polling(self) -> bool:
        return self._thread is not None and self._thread.is_alive()
