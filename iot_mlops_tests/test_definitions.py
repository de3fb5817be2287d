"""The code location loads: one asset group per shipped profile, keys prefixed by the fleet."""

from __future__ import annotations

import dagster as dg


def test_definitions_load_with_one_group_per_fleet():
    from iot_mlops.definitions import build_definitions

    defs = build_definitions()
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    keys = graph.get_all_asset_keys()
    assert {k.path[0] for k in keys} == {"azure_pdm", "water_heaters"}
    for fleet in ("azure_pdm", "water_heaters"):
        assert {k.path[1] for k in keys if k.path[0] == fleet} >= {"devices", "telemetry", "events", "features"}
    for key in keys:
        assert graph.get(key).group_name == key.path[0]
    checks = {(c.asset_key.path[0], c.name) for c in graph.asset_check_keys}
    assert ("azure_pdm", "rows_accounted_for") in checks and ("water_heaters", "one_row_per_device_and_time") in checks
    features = graph.get(dg.AssetKey(["azure_pdm", "features"]))
    assert features.partitions_def.get_partition_keys()[0] == "2015-01-01"


def test_descriptions_speak_in_profile_durations_not_python_timedeltas():
    import re

    from iot_mlops.definitions import build_definitions

    defs = build_definitions()
    graph = defs.resolve_asset_graph()
    texts = [graph.get(key).description or "" for key in graph.get_all_asset_keys()]
    texts += [spec.description or "" for spec in defs.resolve_all_asset_specs()]
    texts += [sensor.description or "" for sensor in defs.sensors or []]
    python_timedelta = re.compile(r"\d+:\d\d:\d\d|\d+ days?, |KS for no features")
    assert texts and not [t for t in texts if python_timedelta.search(t)]
    assert any(re.search(r"every \d+(min|h|s)\b", t) for t in texts)


def test_format_duration_writes_what_a_profile_would():
    from datetime import timedelta

    from iot_mlops.profiles.schema_types import format_duration, parse_duration

    cases = {"90s": "90s", "15min": "15min", "1h": "1h", "1d": "24h", "3h": "3h", "7d": "7d", "120min": "2h"}
    for text, expected in cases.items():
        assert format_duration(parse_duration(text)) == expected
    assert format_duration(timedelta(seconds=1.5)) == "1.5s"


def test_deployment_settings_choose_backfill_runs_and_the_celery_executor(monkeypatch):
    from iot_mlops.definitions import build_definitions

    default = build_definitions()
    assert default.executor is None  # Dagster's default: no broker for the demo and the tests
    graph = default.resolve_asset_graph()
    assert graph.get(dg.AssetKey(["water_heaters", "telemetry"])).backfill_policy == dg.BackfillPolicy.single_run()

    monkeypatch.setenv("IOT_MLOPS_EXECUTOR", "celery")
    monkeypatch.setenv("IOT_MLOPS_BACKFILL_PARTITIONS_PER_RUN", "7")
    defs = build_definitions()
    assert defs.executor.name == "iot_mlops_celery"
    # broker and queue reach the workers: iot_mlops_tests/deploy/test_celery.py runs on a queue of its own
    graph = defs.resolve_asset_graph()
    daily = [graph.get(k) for k in graph.get_all_asset_keys() if graph.get(k).partitions_def is not None]
    assert daily and {n.backfill_policy for n in daily} == {dg.BackfillPolicy.multi_run(7)}
    assert defs.resolve_job_def("water_heaters_retraining").executor_def is dg.in_process_executor


def test_device_baselines_make_features_depend_on_the_days_they_read():
    from iot_mlops.definitions import build_definitions

    graph = build_definitions().resolve_asset_graph()
    relative, plain = dg.AssetKey(["water_heaters", "features"]), dg.AssetKey(["azure_pdm", "features"])
    assert relative in graph.get(relative).parent_keys and plain not in graph.get(plain).parent_keys
    mapping = graph.get_partition_mapping(relative, relative)
    # baseline 7d + gap 24h + a step of 1h reach into 9 earlier days; the day itself is not among them
    assert (mapping.start_offset, mapping.end_offset) == (-9, -1)
