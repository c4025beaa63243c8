"""`contactcenter plugins`: what is installed and enabled, install, enable and disable, replay undelivered
events."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

import click
import tomlkit
from tomlkit.exceptions import TOMLKitError

from contactcenter.app import App
from contactcenter.hooks.host import BUILT_IN_PLUGINS, installed_entry_points
from contactcenter.output import Format, emit_rows
from contactcenter.settings import settings_path

FORMATS = click.Choice(["table", "json", "csv"])


@click.group("plugins")
def command() -> None:
    """Installed plugins (entry-point group "contactcenter"), and the events they missed."""


@command.command("list")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@click.pass_obj
def list_plugins(app: App, fmt: Format) -> None:
    """Show installed and enabled plugins with their versions, hooks and state."""
    rows = []
    for info in app.plugins.infos():
        row = asdict(info)
        row["hooks"] = ", ".join(info.hooks) if fmt != "json" else info.hooks
        row["enabled"] = info.enabled if fmt == "json" else ("yes" if info.enabled else "no")
        rows.append(row)
    emit_rows(rows, ["name", "distribution", "version", "enabled", "status", "hooks", "error"], fmt, title="plugins")


@command.command("install", context_settings={"ignore_unknown_options": True})
@click.argument("targets", nargs=-1, required=True)
def install(targets: tuple[str, ...]) -> None:
    """Install plugins with pip into this environment: a package NAME, or a PATH to a plugin's folder.

    Enable it afterwards: `contactcenter plugins enable <entry-point name>`.
    """
    args = [sys.executable, "-m", "pip", "install"]
    for target in targets:
        args += ["-e", target] if _is_local_project(target) else [target]
    result = subprocess.run(args, check=False)
    if result.returncode != 0:
        raise click.ClickException(f"pip failed (exit {result.returncode}); nothing was enabled")
    click.echo(
        "installed; enable it in settings.toml with `contactcenter plugins enable NAME` (`plugins list` names it)"
    )


def _is_local_project(target: str) -> bool:
    path = Path(target)
    return path.is_dir() and ((path / "pyproject.toml").exists() or (path / "setup.py").exists())


class SettingsFileError(click.ClickException):
    """The settings file cannot be edited (missing, not TOML, [plugins] enabled not a list)."""


def set_enabled(path: Path, name: str, enabled: bool) -> bool:
    """Add ``name`` to (or remove it from) ``[plugins] enabled`` in the TOML file at ``path``, keeping its
    comments and layout; False when it was so already (the file is then not written). The file is replaced
    in one step, so a desk starting meanwhile reads the old or the new one, never half of it."""
    try:
        document = tomlkit.parse(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingsFileError(f"cannot read the settings file {path}: {exc.strerror or exc}") from None
    except TOMLKitError as exc:
        raise SettingsFileError(f"{path} is not valid TOML ({exc}); fix it first") from None
    plugins = document.get("plugins")
    if plugins is None:
        plugins = document["plugins"] = tomlkit.table()
    if not isinstance(plugins, dict):
        raise SettingsFileError(f"{path}: [plugins] is not a table")
    names = plugins.get("enabled")
    if names is None:
        names = plugins["enabled"] = tomlkit.array()
    if not isinstance(names, list):
        raise SettingsFileError(f"{path}: [plugins] enabled is not a list")
    listed = [str(item) for item in names]
    if (name in listed) == enabled:
        return False
    if enabled:
        names.append(name)
    else:
        del names[listed.index(name)]
    _replace(path, tomlkit.dumps(document))
    return True


def _replace(path: Path, text: str) -> None:
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
            out.write(text)
        os.chmod(temporary, path.stat().st_mode & 0o7777)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _settings_file(app: App) -> Path:
    path = settings_path(app.settings_file)
    if not path.is_file():
        raise SettingsFileError(f"no settings file at {path} (set CONTACTCENTER_SETTINGS or pass --settings)")
    return path


def _overridden_note() -> None:
    if os.environ.get("CONTACTCENTER_PLUGINS__ENABLED"):
        click.echo("note: CONTACTCENTER_PLUGINS__ENABLED is set and overrides the file where it is set", err=True)


@command.command("enable")
@click.argument("name")
@click.pass_obj
def enable(app: App, name: str) -> None:
    """Switch an installed plugin on: add NAME to [plugins] enabled in the settings file, keeping its
    comments. Desk processes load it at their next start."""
    if name in BUILT_IN_PLUGINS:
        click.echo(f"{name} is built in and always on; nothing to enable")
        return
    installed = installed_entry_points()
    if name not in installed:
        known = ", ".join(sorted(installed)) or "none"
        raise click.ClickException(
            f"no plugin named {name!r} is installed (installed: {known}); "
            "install it first with `contactcenter plugins install`"
        )
    path = _settings_file(app)
    if set_enabled(path, name, True):
        click.echo(f"enabled {name} in {path}; restart the desk processes to load it")
    else:
        click.echo(f"{name} is already enabled in {path}")
    _overridden_note()


@command.command("disable")
@click.argument("name")
@click.pass_obj
def disable(app: App, name: str) -> None:
    """Switch a plugin off: remove NAME from [plugins] enabled in the settings file, keeping its comments.
    It stays installed; its undelivered events wait until it is enabled again."""
    if name in BUILT_IN_PLUGINS:
        raise click.ClickException(f"{name} is built in and always on; it cannot be disabled")
    path = _settings_file(app)
    if set_enabled(path, name, False):
        click.echo(f"disabled {name} in {path}; restart the desk processes to unload it")
    elif name in installed_entry_points():
        click.echo(f"{name} is not enabled in {path}")
    else:
        raise click.ClickException(f"no plugin named {name!r} is installed or enabled in {path}")
    _overridden_note()


@command.command("undelivered")
@click.option("--plugin", help="Only this plugin.")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@click.pass_obj
def undelivered(app: App, plugin: str | None, fmt: Format) -> None:
    """List hook calls a plugin failed to take (raised or timed out), waiting for replay."""
    app.database.require_current_schema()
    app.plugins.undelivered.import_spool()
    rows = [
        {"id": e.id, "plugin": e.plugin, "hook": e.hook, "attempts": e.attempts}
        for e in app.plugins.undelivered.pending(plugin)
    ]
    emit_rows(rows, ["id", "plugin", "hook", "attempts"], fmt, title="undelivered events")


@command.command("replay")
@click.option("--plugin", help="Only this plugin.")
@click.pass_obj
def replay(app: App, plugin: str | None) -> None:
    """Hand undelivered hook calls to their plugins again; exits 1 if any still fail."""
    app.database.require_current_schema()
    result = app.plugins.dispatcher.replay(plugin)
    app.plugins.bus.drain()
    click.echo(f"delivered {len(result.delivered)}, still failing {len(result.failed)}")
    for event, error in result.failed.items():
        click.echo(f"  {event}: {error}", err=True)
    if result.failed:
        raise SystemExit(1)
