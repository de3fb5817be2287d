"""Load fleet profiles from YAML; a bad profile is an error naming the file and field."""

from __future__ import annotations

import os
import re
from pathlib import Path

import yaml
from pydantic import ValidationError

from iot_mlops.profiles.schema import FleetProfile

_ENV = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?::-([^}]*))?\}")


class ProfileError(ValueError):
    """A fleet profile that cannot be used, with the file and field at fault."""


def expand_env(value: str) -> str:
    """Expand ${VAR} and ${VAR:-default}; an unset variable without default is an error."""

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ and os.environ[name]:
            return os.environ[name]
        if default is None:
            raise ProfileError(f"environment variable {name} is not set and has no default")
        return default

    return _ENV.sub(substitute, value)


def load_profile(path: Path) -> FleetProfile:
    """Parse and validate one profile file."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ProfileError(f"{path}: cannot read profile: {error}") from error
    if not isinstance(raw, dict):
        raise ProfileError(f"{path}: a profile is a YAML mapping, got {type(raw).__name__}")
    try:
        profile = FleetProfile.model_validate(raw)
    except ValidationError as error:
        problems = "; ".join(
            f"field '{'.'.join(str(p) for p in e['loc']) or '<root>'}': {e['msg']}" for e in error.errors()
        )
        raise ProfileError(f"{path}: invalid fleet profile: {problems}") from error
    if profile.name != path.stem:
        raise ProfileError(f"{path}: field 'name' is {profile.name!r} but the file is named {path.stem!r}")
    return profile


def load_profiles(folder: Path) -> dict[str, FleetProfile]:
    """All profiles in a folder, by name."""
    folder = Path(folder)
    files = sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml"))
    if not files:
        raise ProfileError(f"{folder}: no fleet profiles (*.yaml) found")
    return {p.name: p for p in (load_profile(f) for f in files)}


def source_folder(profile: FleetProfile, profile_dir: Path, landing_root: Path) -> Path:
    """The folder a profile's tables are read from (landing folder for the simulator)."""
    if profile.source.kind == "simulator":
        return (Path(landing_root) / profile.name).resolve()
    try:
        folder = Path(expand_env(profile.source.path or ""))
    except ProfileError as error:
        raise ProfileError(f"{profile.name}: field 'source.path': {error}") from error
    if not folder.is_absolute():
        folder = Path(profile_dir) / folder
    return folder.resolve()
