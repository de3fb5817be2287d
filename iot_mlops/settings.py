"""Settings from the environment (prefix IOT_MLOPS_); every default is embedded and local."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where state lives. Relative paths are relative to the working directory."""

    model_config = SettingsConfigDict(env_prefix="IOT_MLOPS_", extra="forbid", frozen=True)

    data_dir: Path = Path("data")
    profiles_dir: Path = Path("profiles")
    lake_dir: Path | None = None
    landing_dir: Path | None = None

    @property
    def lake(self) -> Path:
        return (self.lake_dir or self.data_dir / "lake").resolve()

    @property
    def landing(self) -> Path:
        return (self.landing_dir or self.data_dir / "landing").resolve()


def get_settings() -> Settings:
    """Read settings now (not at import), so tests and CLIs can change the environment."""
    return Settings()
