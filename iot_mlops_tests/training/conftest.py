"""Training fixtures: the synthetic fleet with a short horizon, and the shared labelled / trained Azure PdM state."""

from __future__ import annotations

from pathlib import Path

import pytest

from iot_mlops_tests.fleet import Fleet
from iot_mlops_tests.training.tiny import HORIZON, TinyPipeline


@pytest.fixture
def tiny(tmp_path: Path) -> TinyPipeline:
    """The synthetic fleet (3 devices, 4 days, hourly features) with a 6 h horizon and clean data."""
    fleet = Fleet(tmp_path / "fleet", tmp_path / "data" / "lake", tmp_path / "data" / "landing")
    fleet.spec["target"] = {"horizon": f"{int(HORIZON.total_seconds() // 3600)}h"}
    fleet.write_profile()
    fleet.write_clean()
    return TinyPipeline(fleet, tmp_path / "registry")
