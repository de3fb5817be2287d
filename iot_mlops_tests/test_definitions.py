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
