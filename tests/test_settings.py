"""settings.toml: defaults, every kind of mistake named with file and key, environment overrides."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from contactcenter.settings import SettingsError, load_settings
from tests.helpers.paths import REPO
from tests.helpers.settings import make_desk

REPO_SETTINGS = (REPO / "settings.toml").read_text(encoding="utf-8")


def desk_with(tmp_path: Path, old: str, new: str) -> Path:
    assert old in REPO_SETTINGS, f"the test expects {old!r} in settings.toml"
    return make_desk(tmp_path / "desk", REPO_SETTINGS.replace(old, new, 1))


def problems(path: Path, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(SettingsError) as caught:
        load_settings(path, environ or {})
    return caught.value.problems


def test_the_repository_settings_load_with_working_defaults(desk: Path) -> None:
    settings = load_settings(desk, {})
    assert settings.company.name == "示例科技有限公司"
    assert settings.general.timezone == "Asia/Shanghai"
    assert settings.ring.answer_after_rings == 2 and settings.ring.apology_after_rings == 3
    assert settings.sip.uses_local_registrar
    assert settings.plugins.enabled == ["tickets"]
    assert settings.plugins.options["tickets"]["due_hours"]["投诉"] == 24
    assert settings.database_url == f"sqlite:///{desk.parent / 'data' / 'contactcenter.db'}"
    assert settings.scripts.banned_phrases == desk.parent / "scripts_zh" / "banned_phrases.txt"
    assert settings.source == desk


def test_a_wrong_type_names_file_key_and_expectation(tmp_path: Path) -> None:
    path = desk_with(tmp_path, "answer_after_rings = 2", 'answer_after_rings = "three"')
    [problem] = problems(path)
    assert problem.startswith(f"{path}: [ring] answer_after_rings:")
    assert "valid integer" in problem and "'three'" in problem


def test_more_than_three_rings_is_refused(tmp_path: Path) -> None:
    path = desk_with(tmp_path, "answer_after_rings = 2", "answer_after_rings = 5")
    [problem] = problems(path)
    assert "[ring] answer_after_rings" in problem and "less than or equal to 3" in problem


def test_an_unknown_key_lists_the_known_ones(tmp_path: Path) -> None:
    path = desk_with(tmp_path, "[ring]\n", "[ring]\nrigns = 3\n")
    [problem] = problems(path)
    assert "[ring] rigns: unknown key" in problem
    assert "answer_after_rings" in problem and "ring_period_seconds" in problem


def test_a_password_in_the_file_is_refused(tmp_path: Path) -> None:
    path = desk_with(tmp_path, 'user = "1001"', 'user = "1001"\npassword = "secret"')
    [problem] = problems(path)
    assert "[sip] password: unknown key" in problem and "password_env" in problem


def test_a_missing_script_file_is_named(tmp_path: Path) -> None:
    path = desk_with(tmp_path, '"scripts_zh/banned_phrases.txt"', '"scripts_zh/banned.txt"')
    [problem] = problems(path)
    assert "[scripts] banned_phrases" in problem
    assert str(path.parent / "scripts_zh" / "banned.txt") in problem and "does not exist" in problem


def test_several_problems_are_all_reported(tmp_path: Path) -> None:
    text = REPO_SETTINGS.replace('timezone = "Asia/Shanghai"', 'timezone = "Mars/Olympus"')
    text = text.replace("port = 5060\nuser", "port = 99999\nuser")
    path = make_desk(tmp_path / "desk", text)
    found = problems(path)
    assert len(found) == 2
    assert any("[general] timezone" in p and "IANA time zone" in p for p in found)
    assert any("[sip] port" in p and "less than or equal to 65535" in p for p in found)


def test_a_missing_settings_file(tmp_path: Path) -> None:
    [problem] = problems(tmp_path / "nowhere.toml")
    assert "nowhere.toml: settings file not found" in problem


def test_a_file_that_is_not_toml(tmp_path: Path) -> None:
    path = make_desk(tmp_path / "desk", "[company\nname = 1")
    [problem] = problems(path)
    assert "not valid TOML" in problem and "line 1" in problem


def test_environment_overrides_the_file(desk: Path) -> None:
    settings = load_settings(
        desk,
        {
            "CONTACTCENTER_RING__ANSWER_AFTER_RINGS": "1",
            "CONTACTCENTER_DATABASE__URL": "postgresql+psycopg://cc@db/cc",
            "CONTACTCENTER_PLUGINS__ENABLED": '["tickets", "crm"]',
            "CONTACTCENTER_COMPANY__NAME": "另一家公司",
            "CONTACTCENTER_PLUGINS__TICKETS__DEFAULT_CATEGORY": "其他",
        },
    )
    assert settings.ring.answer_after_rings == 1
    assert settings.database_url == "postgresql+psycopg://cc@db/cc"
    assert settings.plugins.enabled == ["tickets", "crm"]
    assert settings.company.name == "另一家公司"
    assert settings.plugins.options["tickets"]["default_category"] == "其他"


def test_a_bad_environment_value_names_the_variable(desk: Path) -> None:
    [problem] = problems(desk, {"CONTACTCENTER_RING__RING_PERIOD_SECONDS": "often"})
    assert problem.startswith(
        "environment variable CONTACTCENTER_RING__RING_PERIOD_SECONDS: [ring] ring_period_seconds"
    )


def test_the_sip_password_comes_only_from_the_environment(desk: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(desk, {})
    monkeypatch.delenv("CONTACTCENTER_SIP_PASSWORD", raising=False)
    assert settings.sip.password is None
    monkeypatch.setenv("CONTACTCENTER_SIP_PASSWORD", "s3cret")
    assert settings.sip.password == "s3cret"
    assert "s3cret" not in repr(settings)


def test_the_cli_reports_bad_settings_without_a_traceback(tmp_path: Path) -> None:
    path = desk_with(tmp_path, "answer_after_rings = 2", "answer_after_rings = 0")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTACTCENTER_")}
    result = subprocess.run(
        [sys.executable, "-m", "contactcenter", "--settings", str(path), "tickets", "list"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "the settings are not valid" in result.stderr
    assert f"{path}: [ring] answer_after_rings: Input should be greater than or equal to 1" in result.stderr
