"""Retraining sensors on real lake partitions: a firing condition asks for one run, however often it is evaluated."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
import yaml

from iot_mlops.automation.daemon import LOCATION_NAME, workspace_yaml
from iot_mlops.automation.sensors import retraining_sensors, search_config
from iot_mlops.definitions import fleet_definitions
from iot_mlops.monitoring.quality import ERROR
from iot_mlops.monitoring.quality_store import quality_history
from iot_mlops.monitoring.resource import StoreResource
from iot_mlops.partitions import FleetContext
from iot_mlops.registry.resource import RegistryResource
from iot_mlops_tests.fleet import DAYS, DEVICES, RANGE_END, RANGE_START, Fleet, garbled_day

SENSORS = ("drift_sensor", "feedback_sensor", "performance_sensor", "data_quality_sensor")


@pytest.fixture
def failing_fleet(fleet: Fleet, tmp_path: Path) -> tuple[dg.Definitions, Fleet]:
    """The tiny fleet with two consecutive days of ERROR data quality, ingested and featurized for real."""
    for day in DAYS[1:3]:
        fleet.write("telemetry", garbled_day(day), day)
    profile = fleet.profile()
    defs = fleet_definitions(FleetContext.of(profile, fleet.profile_dir))
    registry = RegistryResource(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", artifacts_dir=str(tmp_path / "artifacts"),
                                store_url=f"sqlite:///{tmp_path / 'operational.db'}")
    resources = {**fleet.resources(), "registry": registry, "store": StoreResource(url=registry.store_url)}
    defs = dg.Definitions.merge(defs, dg.Definitions(resources=resources))
    job = defs.resolve_job_def(f"{fleet.name}_daily")
    result = job.execute_in_process(
        asset_selection=[dg.AssetKey([fleet.name, t]) for t in ("devices", "telemetry", "events", "data_quality", "features")],
        tags={RANGE_START: DAYS[0].isoformat(), RANGE_END: DAYS[2].isoformat()}, raise_on_error=False,
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    assert [s for _, s in quality_history(fleet.lake, fleet.name)][-2:] == [ERROR, ERROR]
    return defs, fleet


def tick(defs: dg.Definitions, fleet: str, sensor: str, instance: dg.DagsterInstance):
    with dg.build_sensor_context(instance=instance, resources=dict(defs.resources), definitions=defs) as context:
        return defs.resolve_sensor_def(f"{fleet}_{sensor}").evaluate_tick(context)


@pytest.mark.slow
def test_storm_of_evaluations_requests_one_run(failing_fleet):
    defs, fleet = failing_fleet
    instance = dg.DagsterInstance.ephemeral()
    requests, skips = [], []
    for _ in range(100):
        for sensor in SENSORS:
            data = tick(defs, fleet.name, sensor, instance)
            requests += [(sensor, r) for r in data.run_requests or []]
            skips.append((sensor, data.skip_message))
    assert [s for s, _ in requests] == ["data_quality_sensor"]
    _, request = requests[0]
    assert request.run_key == f"data_quality_sensor:quality:{DAYS[1]}"
    assert request.tags["iot_mlops/trigger"] == "data_quality_sensor" and request.run_config == {}
    log = defs.resources["registry"].decision_log()
    triggered = log.list(fleet=fleet.name, actions={"retrain_triggered"})
    assert len(triggered) == 1 and request.tags["iot_mlops/decision_id"] == str(triggered[0].id)
    assert triggered[0].details["figures"]["consecutive_error_days"] == 2
    # The 99 later evaluations of the same condition were skipped, and said why, once in the log.
    repeated = log.list(fleet=fleet.name, actions={"retrain_skipped"})
    assert len(repeated) == 1 and "already started a run" in repeated[0].reason
    assert sum("already started a run" in (m or "") for s, m in skips if s == "data_quality_sensor") == 99


def test_a_queued_run_blocks_a_second_condition(failing_fleet):
    """While a retraining run is in flight, a firing condition is skipped with that reason."""
    defs, fleet = failing_fleet
    instance = dg.DagsterInstance.ephemeral()
    job = defs.resolve_job_def(f"{fleet.name}_retraining")
    instance.create_run_for_job(job_def=job, status=dg.DagsterRunStatus.STARTED)
    data = tick(defs, fleet.name, "data_quality_sensor", instance)
    assert not data.run_requests and "already queued or running" in data.skip_message


@pytest.mark.slow
def test_calm_fleet_decides_nothing(fleet: Fleet, tmp_path: Path):
    fleet.materialize("devices", "telemetry", "events", days=(DAYS[0], DAYS[1]))
    profile = fleet.profile()
    registry = RegistryResource(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", artifacts_dir=str(tmp_path / "artifacts"),
                                store_url=f"sqlite:///{tmp_path / 'operational.db'}")
    defs = dg.Definitions.merge(fleet_definitions(FleetContext.of(profile, fleet.profile_dir)), dg.Definitions(
        resources={**fleet.resources(), "registry": registry, "store": StoreResource(url=registry.store_url)}))
    instance = dg.DagsterInstance.ephemeral()
    for sensor in SENSORS:
        data = tick(defs, fleet.name, sensor, instance)
        assert not data.run_requests and data.skip_message
    assert registry.decision_log().list(fleet=fleet.name) == []
    assert len(DEVICES) == 3


def test_a_deployment_can_start_a_fleets_sensors_on_with_a_search_budget(fleet: Fleet, monkeypatch: pytest.MonkeyPatch):
    """IOT_MLOPS_SENSORS_RUNNING turns on the named fleets' sensors only; the budget reaches the run request's config."""
    def statuses() -> set:
        return {sensor.default_status for sensor in retraining_sensors(FleetContext.of(fleet.profile(), fleet.profile_dir))}

    assert statuses() == {dg.DefaultSensorStatus.STOPPED} and search_config(fleet.name) == {}
    monkeypatch.setenv("IOT_MLOPS_SENSORS_RUNNING", f"other, {fleet.name}")
    monkeypatch.setenv("IOT_MLOPS_RETRAINING_SEARCH_ITERATIONS", "1")
    assert statuses() == {dg.DefaultSensorStatus.RUNNING}
    assert search_config(fleet.name) == {"ops": {f"{fleet.name}__failure_model": {"config": {"search_iterations": 1}}}}
    monkeypatch.setenv("IOT_MLOPS_SENSORS_RUNNING", "other")
    assert statuses() == {dg.DefaultSensorStatus.STOPPED}


def test_the_demo_daemon_loads_the_code_location_under_workspace_yamls_name(tmp_path: Path):
    """Ticks belong to a location's name: under another name the UI (workspace.yaml) would show none of them."""
    shipped = yaml.safe_load((Path(__file__).resolve().parents[2] / "workspace.yaml").read_text())
    generated = yaml.safe_load(workspace_yaml(tmp_path))
    (ours,), (theirs,) = generated["load_from"], shipped["load_from"]
    assert ours["python_module"]["location_name"] == theirs["python_module"]["location_name"] == LOCATION_NAME
    assert ours["python_module"]["module_name"] == theirs["python_module"]["module_name"]
    assert ours["python_module"]["working_directory"] == str(tmp_path)
