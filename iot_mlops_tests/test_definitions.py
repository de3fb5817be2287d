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
