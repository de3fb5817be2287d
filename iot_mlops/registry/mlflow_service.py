"""MLflow behind one small class: runs, registered versions, aliases, and safe (skops) model loading."""

from __future__ import annotations

import functools
import math
import os
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from iot_mlops.secrets import secrets_hidden, without_credentials
from iot_mlops.settings import get_settings, psycopg2_url

if TYPE_CHECKING:
    import mlflow
    import pandas as pd
    from matplotlib.figure import Figure
    from mlflow.exceptions import MlflowException

# MLflow, skops and matplotlib load in seconds: imported where used, so that loading the definitions (and every CLI
# command that names an alias) does not pay for them.

# MLflow draws a progress bar per artifact download (14 in one demo): noise in CLI and server output.
# Read at each download, so setting it here is enough; set the variable to true to see them.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

CHAMPION = "champion"
CHALLENGER = "challenger"
INPUT_EXAMPLE_ROWS = 5

# Types skops does not trust by default but that only hold arrays and numbers: loading them runs no user code.
TRUSTED_TYPES = frozenset({
    "numpy.dtype",
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
})

# Some MLflow calls read the process-wide tracking URI; this lock keeps two registries from swapping it mid-call.
_GLOBAL_URI_LOCK = threading.Lock()


class ModelNotFound(LookupError):
    """A registered model, version or alias that does not exist."""


class UntrustedModelError(ValueError):
    """A model whose serialized form needs types outside TRUSTED_TYPES."""


@dataclass(frozen=True)
class ModelVersionInfo:
    name: str
    version: str
    run_id: str
    model_uri: str
    experiment_id: str = ""


@dataclass(frozen=True)
class VersionInfo:
    version: str
    aliases: tuple[str, ...]
    tags: dict[str, str]
    run_id: str | None
    metrics: dict[str, float]
    created_at: datetime


@dataclass(frozen=True)
class ModelSummary:
    name: str
    champion: str | None
    challenger: str | None
    latest_version: str | None
    versions: int


def trusted_types_for(model: Any) -> list[str]:
    """The skops types `model` needs beyond skops' defaults; raises UntrustedModelError if any is not allowed."""
    import skops.io

    needed = sorted(skops.io.get_untrusted_types(data=skops.io.dumps(model)))
    return _check_trusted(needed, f"{type(model).__name__} model")


def run_page_url(ui_url: str, experiment_id: str, run_id: str, artifact: str | None = None) -> str:
    """The MLflow UI page of a run, opened on one of its artifacts when given."""
    page = f"{without_credentials(ui_url).rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
    return f"{page}/artifactPath/{artifact}" if artifact else page


def artifact_file_url(ui_url: str, run_id: str, artifact: str) -> str:
    """The raw file of a run's artifact as the MLflow UI's server sends it (e.g. a PNG an <img> can show)."""
    query = urlencode({"path": artifact, "run_uuid": run_id})
    return f"{without_credentials(ui_url).rstrip('/')}/get-artifact?{query}"


def _check_trusted(types: list[str], what: str) -> list[str]:
    refused = [t for t in types if t not in TRUSTED_TYPES]
    if refused:
        raise UntrustedModelError(f"{what} needs types outside the trusted allow-list: {', '.join(refused)}")
    return types


def _mlflow_error() -> type[MlflowException]:
    from mlflow.exceptions import MlflowException

    return MlflowException


def _is(error: MlflowException, code: str) -> bool:
    return error.error_code == code


def _pages(search: Callable[..., Any], **kwargs: Any) -> Iterator[Any]:
    token = None
    while True:
        page = search(page_token=token, **kwargs)
        yield from page
        token = page.token
        if not token:
            return


@contextmanager
def _global_tracking_uri(uri: str) -> Iterator[None]:
    """Point MLflow's process-wide tracking URI at `uri` for one call, then restore the caller's (global and env)."""
    import mlflow

    with _GLOBAL_URI_LOCK, secrets_hidden(uri):
        env = os.environ.get("MLFLOW_TRACKING_URI")
        current = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
        mlflow.set_tracking_uri(uri)
        try:
            yield
        finally:
            mlflow.set_tracking_uri(current if current != env else None)
            if env is None:
                os.environ.pop("MLFLOW_TRACKING_URI", None)
            else:
                os.environ["MLFLOW_TRACKING_URI"] = env


class _Client:
    """An MlflowClient whose errors never hold the tracking URI's password (MLflow quotes the URI in some)."""

    def __init__(self, client: mlflow.MlflowClient, uri: str):
        self._client, self._uri = client, uri

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute

        @functools.wraps(attribute)
        def call(*args: Any, **kwargs: Any) -> Any:
            with secrets_hidden(self._uri):
                return attribute(*args, **kwargs)

        return call


class ModelRegistry:
    """One tracking store + registry (same URI) and a local or remote artifact root."""

    def __init__(self, tracking_uri: str, artifacts_dir: Path):
        self.tracking_uri = psycopg2_url(tracking_uri)
        self.artifacts_dir = Path(artifacts_dir).resolve()
        if self.tracking_uri.startswith("sqlite:///"):
            Path(self.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        import mlflow

        with secrets_hidden(self.tracking_uri):
            client = mlflow.MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        self.client = _Client(client, self.tracking_uri)

    @classmethod
    def from_settings(cls) -> ModelRegistry:
        settings = get_settings()
        return cls(settings.tracking_uri, settings.artifacts)

    # --- logging -----------------------------------------------------------------------------

    def log_model_version(self, *, fleet: str, model_name: str, model: Any, X_example: pd.DataFrame,
                          params: dict[str, Any], metrics: dict[str, float], tags: dict[str, str],
                          figures: dict[str, Figure], json_artifacts: dict[str, dict], run_name: str) -> ModelVersionInfo:
        """Log one training run in experiment `fleet` and register its model as a new version, alias `challenger`."""
        trusted = trusted_types_for(model)
        tags = {**{k: str(v) for k, v in tags.items()}, "fleet": fleet}
        experiment_id = self._experiment(fleet)
        run_id = self.client.create_run(experiment_id, run_name=run_name, tags=tags).info.run_id
        try:
            self._log_run_data(run_id, params, metrics, figures, json_artifacts)
            # log_model is fluent, and the SQL registry store resolves `models:/m-...` sources through a
            # default MlflowClient(): both need the global URI pointed at this store.
            with _global_tracking_uri(self.tracking_uri):
                model_id, model_uri = self._log_sklearn(model, X_example, experiment_id, run_id, trusted)
                version = self._register(model_name, model_uri, model_id, run_id, tags)
        except BaseException:
            self.client.set_terminated(run_id, status="FAILED")
            raise
        self.client.set_terminated(run_id)
        return ModelVersionInfo(model_name, version, run_id, f"models:/{model_name}/{version}", experiment_id)

    def log_report(self, experiment: str, run_name: str, report: Path, *, artifact_dir: str | None = None,
                   metrics: dict[str, float] | None = None, tags: dict[str, str] | None = None) -> tuple[str, str]:
        """Log a report file (e.g. an HTML drift report) as the artifact of a new run; (experiment_id, run_id)."""
        experiment_id = self._experiment(experiment)
        run_id = self.client.create_run(experiment_id, run_name=run_name,
                                        tags={k: str(v) for k, v in (tags or {}).items()}).info.run_id
        try:
            self._log_run_data(run_id, {}, metrics or {}, {}, {})
            self.client.log_artifact(run_id, str(report), artifact_dir)
        except BaseException:
            self.client.set_terminated(run_id, status="FAILED")
            raise
        self.client.set_terminated(run_id)
        return experiment_id, run_id

    def _experiment(self, fleet: str) -> str:
        experiment = self.client.get_experiment_by_name(fleet)
        if experiment is None:
            try:
                return self.client.create_experiment(fleet, artifact_location=(self.artifacts_dir / fleet).as_uri())
            except _mlflow_error() as error:  # another process created it first
                if not _is(error, "RESOURCE_ALREADY_EXISTS"):
                    raise
                experiment = self.client.get_experiment_by_name(fleet)
        if experiment.lifecycle_stage == "deleted":
            self.client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id

    def _log_run_data(self, run_id: str, params: dict[str, Any], metrics: dict[str, float],
                      figures: dict[str, Figure], json_artifacts: dict[str, dict]) -> None:
        from mlflow.entities import Metric, Param

        now = int(time.time() * 1000)
        param_rows = [Param(k, str(v)) for k, v in params.items()]
        metric_rows = [Metric(k, float(v), now, 0) for k, v in metrics.items() if not math.isnan(float(v))]
        for i in range(0, max(len(param_rows), len(metric_rows)), 100):  # MLflow's batch limit is 100 params
            self.client.log_batch(run_id, metrics=metric_rows[i:i + 100], params=param_rows[i:i + 100])
        for key, figure in figures.items():
            self.client.log_figure(run_id, figure, key if Path(key).suffix else f"{key}.png")
        for key, data in json_artifacts.items():
            self.client.log_dict(run_id, data, key if Path(key).suffix else f"{key}.json")

    def _log_sklearn(self, model: Any, X_example: pd.DataFrame, experiment_id: str, run_id: str,
                     trusted: list[str]) -> tuple[str, str]:
        import mlflow.sklearn
        from mlflow.models import infer_signature

        # Creating the LoggedModel here pins its experiment and run without MLflow's global active run/experiment.
        logged = self.client.create_logged_model(experiment_id, name="model", source_run_id=run_id,
                                                 params=self.client.get_run(run_id).data.params)
        with warnings.catch_warnings():
            # MLflow advises on integer columns (they cannot hold missing values) at every model logged: advice, not a fault.
            warnings.filterwarnings("ignore", "Hint: Inferred schema contains integer column", UserWarning)
            signature = infer_signature(X_example, model.predict(X_example))
        info = mlflow.sklearn.log_model(
            model, name="model", model_id=logged.model_id, run_id=run_id, signature=signature,
            input_example=X_example.head(INPUT_EXAMPLE_ROWS),
            serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS, skops_trusted_types=trusted,
            # Explicit requirements skip MLflow's inference, which re-imports the model in a subprocess (~6 s).
            pip_requirements=mlflow.sklearn.get_default_pip_requirements(include_skops=True),
        )
        return info.model_id, info.model_uri

    def _register(self, name: str, model_uri: str, model_id: str, run_id: str, tags: dict[str, str]) -> str:
        try:
            self.client.create_registered_model(name)
        except _mlflow_error() as error:
            if not _is(error, "RESOURCE_ALREADY_EXISTS"):
                raise
        version = self.client.create_model_version(name, source=model_uri, run_id=run_id, tags=tags, model_id=model_id)
        self.client.set_registered_model_alias(name, CHALLENGER, version.version)
        return str(version.version)

    # --- loading -----------------------------------------------------------------------------

    def load_model(self, name: str, alias: str = CHAMPION) -> Any:
        """The sklearn model behind `models:/NAME@ALIAS`, deserialized by skops with the allow-listed types only."""
        import mlflow.artifacts
        import mlflow.sklearn
        from mlflow.models import Model

        version = self.alias_version(name, alias)
        if version is None:
            raise ModelNotFound(f"model {name!r} has no version with alias {alias!r}")
        # Download and check first: MLflow would trust whatever type list the artifact's own MLmodel declares.
        # The location comes from our client because `models:/` downloads resolve through the global registry URI.
        location = self.client.get_model_version_download_uri(name, version)
        with tempfile.TemporaryDirectory(prefix="iot_mlops_model_") as tmp:
            with secrets_hidden(self.tracking_uri):
                path = mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=tmp, tracking_uri=self.tracking_uri)
            flavor = Model.load(path).flavors.get("sklearn", {})
            if flavor.get("serialization_format") != mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS:
                raise UntrustedModelError(f"{name} v{version} is not saved with skops; refusing to unpickle it")
            _check_trusted(list(flavor.get("skops_trusted_types") or []), f"{name} v{version}")
            return mlflow.sklearn.load_model(path)

    # --- aliases, tags, listing --------------------------------------------------------------

    def alias_version(self, name: str, alias: str) -> str | None:
        """The version holding `alias`, or None (also when the model does not exist)."""
        try:
            aliases = self.client.get_registered_model(name).aliases
        except _mlflow_error() as error:
            if _is(error, "RESOURCE_DOES_NOT_EXIST"):
                return None
            raise
        version = aliases.get(alias)
        return str(version) if version is not None else None

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self.client.set_registered_model_alias(name, alias, str(version))

    def delete_alias(self, name: str, alias: str) -> None:
        self.client.delete_registered_model_alias(name, alias)

    def tag_version(self, name: str, version: str, key: str, value: str) -> None:
        self.client.set_model_version_tag(name, str(version), key, value)

    def versions(self, name: str) -> list[VersionInfo]:
        """Every version of `name`, oldest first, with its aliases, tags and its run's metrics."""
        try:
            registered = self.client.get_registered_model(name)
        except _mlflow_error() as error:
            if _is(error, "RESOURCE_DOES_NOT_EXIST"):
                raise ModelNotFound(f"no registered model named {name!r}") from error
            raise
        # search_model_versions leaves ModelVersion.aliases empty on the SQL store; the model's own map is complete.
        aliases: dict[str, list[str]] = {}
        for alias, version in sorted(registered.aliases.items()):
            aliases.setdefault(str(version), []).append(alias)
        return [
            VersionInfo(version=str(v.version), aliases=tuple(aliases.get(str(v.version), ())), tags=dict(v.tags),
                        run_id=v.run_id, metrics=self._run_metrics(v.run_id),
                        created_at=datetime.fromtimestamp(v.creation_timestamp / 1000, tz=UTC))
            for v in sorted(self._search_versions(name), key=lambda v: int(v.version))
        ]

    def _search_versions(self, name: str) -> Iterator[Any]:
        return _pages(self.client.search_model_versions, filter_string=f"name = '{name}'")

    def _run_metrics(self, run_id: str | None) -> dict[str, float]:
        if not run_id:
            return {}
        try:
            return dict(self.client.get_run(run_id).data.metrics)
        except _mlflow_error() as error:
            if _is(error, "RESOURCE_DOES_NOT_EXIST"):
                return {}
            raise

    def list_models(self) -> list[ModelSummary]:
        """Every registered model with its champion, challenger and latest version."""
        out = []
        for model in sorted(_pages(self.client.search_registered_models), key=lambda m: m.name):
            numbers = [int(v.version) for v in self._search_versions(model.name)]
            aliases = {alias: str(version) for alias, version in model.aliases.items()}
            out.append(ModelSummary(model.name, aliases.get(CHAMPION), aliases.get(CHALLENGER),
                                    str(max(numbers)) if numbers else None, len(numbers)))
        return out
