"""Fleet profiles: one YAML file describes one fleet."""

from iot_mlops.profiles.loader import ProfileError, load_profile, load_profiles, source_folder
from iot_mlops.profiles.schema import FleetProfile

__all__ = ["FleetProfile", "ProfileError", "load_profile", "load_profiles", "source_folder"]
