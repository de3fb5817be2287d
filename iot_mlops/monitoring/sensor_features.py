"""Which model features come from which sensor, and the drift exceptions the profile sets per sensor."""

from __future__ import annotations

from dataclasses import dataclass, field

from iot_mlops.profiles.schema import FleetProfile


def feature_sensors(profile: FleetProfile, features: list[str]) -> dict[str, set[str]]:
    """Feature -> the sensors it is computed from: `<sensor>_...` (the longest sensor name that fits), and both
    sensors of an interaction. Features of no sensor (errors, counters, attributes) are left out."""
    names = sorted(profile.sensor_names, key=len, reverse=True)
    interactions = {i.name: {i.left, i.right} for i in profile.features.interactions}
    found = {}
    for feature in features:
        if feature in interactions:
            found[feature] = interactions[feature]
            continue
        sensor = next((s for s in names if feature == s or feature.startswith(s + "_")), None)
        if sensor is not None:
            found[feature] = {sensor}
    return found


@dataclass(frozen=True)
class DriftOverrides:
    """Features left out of drift, and PSI thresholds set per feature, from `monitoring.sensors`."""

    ignored: frozenset[str] = frozenset()
    psi_threshold: dict[str, float] = field(default_factory=dict)


def drift_overrides(profile: FleetProfile, features: list[str]) -> DriftOverrides:
    """A feature is ignored when any of its sensors ignores drift; its PSI threshold is the largest its sensors set."""
    ignored, thresholds = set(), {}
    for feature, sensors in feature_sensors(profile, features).items():
        own = [profile.monitoring.sensor(s) for s in sensors]
        if any(o.ignores("drift") for o in own):
            ignored.add(feature)
        set_here = [o.psi_threshold for o in own if o.psi_threshold is not None]
        if set_here:
            thresholds[feature] = max(set_here)
    return DriftOverrides(frozenset(ignored), thresholds)
