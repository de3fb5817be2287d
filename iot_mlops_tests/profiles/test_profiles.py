"""Fleet profiles: the shipped ones load; a bad one is a ProfileError naming the file and field."""

from __future__ import annotations

import copy
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from iot_mlops.profiles import ProfileError, load_profile, load_profiles, source_folder
from iot_mlops_tests.fleet import PROFILE, PROFILES


def write(folder: Path, spec: dict, name: str | None = None) -> Path:
    target = folder / f"{name or spec['name']}.yaml"
    target.write_text(yaml.safe_dump(spec, sort_keys=False))
    return target


def broken(change) -> dict:
    spec = copy.deepcopy(PROFILE)
    change(spec)
    return spec


def test_shipped_profiles_load():
    profiles = load_profiles(PROFILES)
    assert set(profiles) == {"azure_pdm", "water_heaters"}
    azure = profiles["azure_pdm"]
    assert azure.sensor_names == ["volt", "rotate", "pressure", "vibration"]
    assert (azure.features.step, azure.features.windows) == (timedelta(hours=3), [timedelta(hours=3), timedelta(hours=24)])
    assert profiles["water_heaters"].source.kind == "simulator"
    assert profiles["water_heaters"].sampling_interval == timedelta(minutes=1)


def test_synthetic_profile_is_valid(tmp_path: Path):
    profile = load_profile(write(tmp_path, PROFILE))
    assert profile.features.lookback == timedelta(hours=6)
    assert (profile.ambiguous_local_time, profile.max_future) == ("quarantine", timedelta(days=1))


def _set(path: str, value):
    def change(spec: dict) -> None:
        *parents, last = path.split(".")
        node = spec
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[last] = value

    return change


def _rename(path: str, new: str):
    def change(spec: dict) -> None:
        *parents, last = path.split(".")
        node = spec
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[new] = node.pop(last)

    return change


BAD = {
    "sensor min above max": (_set("sensors.0.min", 150), "sensors.0", "min"),
    "sensor min equal to max": (_set("sensors.1.max", 0), "sensors.1", "min"),
    "unknown source kind": (_set("source.kind", "kafka"), "source.kind", "tables"),
    "misspelled sensor key": (_rename("sensors.0.unit", "unti"), "sensors.0.unti", "Extra inputs"),
    "misspelled top-level key": (_rename("sensors", "sensor"), "sensor", "Extra inputs"),
    "missing required field": (lambda s: s.pop("device_column"), "device_column", "required"),
    "bad duration": (_set("features.step", "1 fortnight"), "features.step", "duration"),
    "zero step": (_set("features.step", "0h"), "features.step", "positive"),
    "negative sampling interval": (_set("sampling_interval", -60), "sampling_interval", "positive"),
    "window not a multiple of step": (_set("features.windows", ["90min"]), "features", "multiple"),
    "attribute min above max": (_set("source.devices.attributes.1.min", 40), "source.devices.attributes.1", "min"),
    "non-finite sensor bound": (_set("sensors.0.max", float("inf")), "sensors.0.max", "finite"),
    "end before start": (_set("partitions.end", "2023-12-31"), "partitions", "end"),
    "unknown interaction sensor": (_set("features.interactions.0.right", "flow"), "<root>", "flow"),
    "bad path placeholder": (_set("source.telemetry.path", "t/{day}.csv"), "source.telemetry.path", "{date}"),
    "bad identifier": (_set("components", ["Impeller Blade"]), "components.0", "pattern"),
    "unknown ambiguous-time rule": (_set("ambiguous_local_time", "guess"), "ambiguous_local_time", "earliest"),
    "zero max_future": (_set("max_future", "0s"), "max_future", "positive"),
    "relative cohort not an attribute": (_set("features.relative", {"cohort": "colour"}), "<root>", "colour"),
    "relative cohort not categorical": (_set("features.relative", {"cohort": "age"}), "<root>", "categorical"),
    "relative baseline not a multiple of step": (_set("features.relative", {"baseline": "90min"}), "features", "multiple"),
    "relative gap not a multiple of step": (_set("features.relative", {"baseline_gap": "30min"}), "features", "multiple"),
    "relative baseline of one step": (_set("features.relative", {"baseline": "1h"}), "features", "two steps"),
    "relative with nothing to compare": (_set("features.relative", {"baseline": None}), "features.relative", "set a baseline"),
    "relative gap without baseline": (_set("features.relative", {"baseline": None, "baseline_gap": "2h", "cohort": "model"}),
                                      "features.relative", "needs a baseline"),
    "relative zero gap": (_set("features.relative", {"baseline_gap": "0h"}), "features.relative.baseline_gap", "positive"),
    "relative misspelled key": (_set("features.relative", {"cohrot": "model"}), "features.relative.cohrot", "Extra inputs"),
    "relative baseline without the step mean": (lambda s: s["features"].update(relative={"baseline": "6h"}, aggregations=["max"]),
                                                "features", "step mean"),
}


@pytest.mark.parametrize("change, field, detail", BAD.values(), ids=BAD.keys())
def test_bad_profile_names_file_and_field(tmp_path: Path, change, field: str, detail: str):
    path = write(tmp_path, broken(change))
    with pytest.raises(ProfileError) as error:
        load_profile(path)
    message = str(error.value)
    assert str(path) in message
    assert f"field '{field}'" in message
    assert detail in message


def test_name_must_match_file(tmp_path: Path):
    path = write(tmp_path, PROFILE, name="other")
    with pytest.raises(ProfileError, match=r"other\.yaml: field 'name'"):
        load_profile(path)


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "name: [unclosed\n"])
def test_not_a_mapping_or_not_yaml(tmp_path: Path, text: str):
    path = tmp_path / "tiny.yaml"
    path.write_text(text)
    with pytest.raises(ProfileError, match="tiny.yaml"):
        load_profile(path)


def test_empty_folder(tmp_path: Path):
    with pytest.raises(ProfileError, match=str(tmp_path)):
        load_profiles(tmp_path)


def test_source_path_expands_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    profile = load_profile(write(tmp_path, broken(_set("source.path", "${TINY_DATA:-rel/data}"))))
    assert source_folder(profile, tmp_path, tmp_path / "landing") == tmp_path / "rel" / "data"
    monkeypatch.setenv("TINY_DATA", str(tmp_path / "abs"))
    assert source_folder(profile, tmp_path, tmp_path / "landing") == tmp_path / "abs"


def test_simulated_fleet_reads_its_landing_folder(tmp_path: Path):
    profile = load_profiles(PROFILES)["water_heaters"]
    assert source_folder(profile, PROFILES, tmp_path / "landing") == tmp_path / "landing" / "water_heaters"


def test_unset_variable_without_default_names_the_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("TINY_DATA", raising=False)
    profile = load_profile(write(tmp_path, broken(_set("source.path", "${TINY_DATA}"))))
    with pytest.raises(ProfileError, match=r"tiny: field 'source.path': environment variable TINY_DATA"):
        source_folder(profile, tmp_path, tmp_path / "landing")
