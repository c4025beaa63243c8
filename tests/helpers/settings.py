"""A deployable desk folder, and its settings loaded for a test database."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

from contactcenter.settings import Settings, load_settings
from tests.helpers.paths import REPO


def make_desk(folder: Path, settings_text: str | None = None) -> Path:
    """A deployable desk folder: settings.toml with the repo's scripts and model manifest beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    # the scripts, not the prompt audio the set-up may have spoken into the checkout
    shutil.copytree(
        REPO / "scripts_zh", folder / "scripts_zh", dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.wav")
    )
    (folder / "models").mkdir(exist_ok=True)
    shutil.copy(REPO / "models" / "manifest.toml", folder / "models" / "manifest.toml")
    settings = folder / "settings.toml"
    settings.write_text(
        settings_text if settings_text is not None else (REPO / "settings.toml").read_text(encoding="utf-8"),
        encoding="utf-8",
    )
    return settings


def desk_environment(database_url: str, **overrides: str) -> dict[str, str]:
    """Environment overrides for a desk under test (only CONTACTCENTER_ variables, nothing inherited)."""
    env = {"CONTACTCENTER_DATABASE__URL": database_url}
    env.update({f"CONTACTCENTER_{key.upper()}": value for key, value in overrides.items()})
    return env


def desk_settings(settings_file: Path, database_url: str, environ: Mapping[str, str] | None = None) -> Settings:
    return load_settings(settings_file, {**desk_environment(database_url), **(environ or {})})
