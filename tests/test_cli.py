"""The command line: help everywhere, and the commands a new user runs first, as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from contactcenter.cli import cli


def walk(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, command in group.commands.items():
        yield (*path, name)
        if isinstance(command, click.Group):
            yield from walk(command, (*path, name))


@pytest.mark.parametrize("path", [(), *walk(cli)], ids=lambda p: " ".join(p) or "contactcenter")
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: contactcenter" in result.output
    command = cli
    for name in path:
        command = command.commands[name]
    assert command.help, f"{' '.join(path)} has no help text"


def test_the_commands_the_readme_promises(desk: Path, tmp_path: Path) -> None:
    """`contactcenter --help`, `plugins list`, `db upgrade`, `tickets list` in a fresh desk folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTACTCENTER_")}
    env["CONTACTCENTER_SETTINGS"] = str(desk)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "contactcenter", *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=120,
        )

    assert run("--help").returncode == 0
    plugins = run("plugins", "list", "--format", "json")
    assert plugins.returncode == 0, plugins.stderr
    [tickets] = [row for row in json.loads(plugins.stdout) if row["name"] == "tickets"]
    assert tickets["enabled"] and tickets["status"] == "loaded"

    empty = run("tickets", "list")
    assert empty.returncode == 3 and "run `contactcenter db upgrade`" in empty.stderr

    upgraded = run("db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert "is at revision 0014" in upgraded.stdout
    assert (desk.parent / "data" / "contactcenter.db").exists()  # the embedded default: SQLite under data/

    listed = run("tickets", "list", "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout) == []
    assert run("db", "current").stdout.strip() == "0014"


def test_a_database_that_is_down_exits_with_a_message(desk: Path) -> None:
    env = {
        "CONTACTCENTER_SETTINGS": str(desk),
        "CONTACTCENTER_DATABASE__URL": "postgresql+psycopg://nobody@127.0.0.1:1/down",
    }
    result = CliRunner().invoke(cli, ["db", "upgrade"], env=env)
    assert result.exit_code == 3
    assert "cannot use database postgresql+psycopg://nobody@127.0.0.1:1/down" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_plugins_install_wraps_pip_in_this_environment(tmp_path: Path, desk: Path) -> None:
    """A plugin project on disk is installed with pip, found through its entry point, then removed."""
    name = "contactcenter-installtest"
    project = tmp_path / "installtest"
    (project / "cc_installtest").mkdir(parents=True)
    (project / "cc_installtest" / "__init__.py").write_text(
        "from contactcenter import hookimpl\n\n@hookimpl\ndef call_ringing(call):\n    pass\n", encoding="utf-8"
    )
    (project / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=64"]\nbuild-backend = "setuptools.build_meta"\n\n'
        f'[project]\nname = "{name}"\nversion = "0.0.1"\n\n'
        '[project.entry-points.contactcenter]\ninstalltest = "cc_installtest"\n',
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTACTCENTER_")}
    env["CONTACTCENTER_SETTINGS"] = str(desk)

    def contactcenter(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "contactcenter", *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=300,
        )

    try:
        installed = contactcenter("plugins", "install", str(project))
        assert installed.returncode == 0, installed.stdout + installed.stderr
        assert "enable it in settings.toml" in installed.stdout
        rows = {row["name"]: row for row in json.loads(contactcenter("plugins", "list", "--format", "json").stdout)}
        assert rows["installtest"]["distribution"] == name and rows["installtest"]["version"] == "0.0.1"
        assert rows["installtest"]["status"] == "disabled" and rows["installtest"]["hooks"] == ["call_ringing"]
    finally:
        subprocess.run([sys.executable, "-m", "pip", "uninstall", "-y", "-q", name], capture_output=True)


def test_plugins_install_reports_a_pip_failure(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["plugins", "install", str(tmp_path / "no-such-plugin")])
    assert result.exit_code == 1 and "pip failed" in result.output


def test_prompts_are_built_from_the_script_and_recordings_kept(desk: Path) -> None:
    import soundfile

    from contactcenter.audio.prompts import to_line_audio

    folder = desk.parent / "scripts_zh" / "prompts"
    recorded = folder / "closing.wav"
    soundfile.write(recorded, [0.0] * 800, 8000)
    runner = CliRunner()
    built = runner.invoke(cli, ["--settings", str(desk), "prompts", "build"])
    assert built.exit_code == 0, built.output
    assert f"wrote {folder / 'greeting.wav'}" in built.output and "closing.wav" not in built.output
    greeting = to_line_audio(folder / "greeting.wav")
    assert len(greeting) / 2 / 8000 > 1.5  # the spoken greeting, at line rate
    listed = runner.invoke(cli, ["--settings", str(desk), "prompts", "list"])
    assert "greeting             recorded  您好,示例科技有限公司,很高兴为您服务" in listed.output
