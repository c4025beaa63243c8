"""`contactcenter plugins`: what is installed and enabled, install, replay undelivered events."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import click

from contactcenter.app import App
from contactcenter.output import emit_rows

FORMATS = click.Choice(["table", "json", "csv"])


@click.group("plugins")
def command() -> None:
    """Installed plugins (entry-point group "contactcenter"), and the events they missed."""


@command.command("list")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@click.pass_obj
def list_plugins(app: App, fmt: str) -> None:
    """Show installed and enabled plugins with their versions, hooks and state."""
    rows = []
    for info in app.plugins.infos():
        row = asdict(info)
        row["hooks"] = ", ".join(info.hooks) if fmt != "json" else info.hooks
        row["enabled"] = info.enabled if fmt == "json" else ("yes" if info.enabled else "no")
        rows.append(row)
    emit_rows(rows, ["name", "distribution", "version", "enabled", "status", "hooks", "error"], fmt,
              title="plugins")


@command.command("install", context_settings={"ignore_unknown_options": True})
@click.argument("targets", nargs=-1, required=True)
def install(targets: tuple[str, ...]) -> None:
    """Install plugins with pip into this environment: a package NAME, or a PATH to a plugin's folder.

    Enable it afterwards in settings.toml: [plugins] enabled = [..., "<entry-point name>"].
    """
    args = [sys.executable, "-m", "pip", "install"]
    for target in targets:
        args += ["-e", target] if _is_local_project(target) else [target]
    result = subprocess.run(args)
    if result.returncode != 0:
        raise click.ClickException(f"pip failed (exit {result.returncode}); nothing was enabled")
    click.echo("installed; enable it in settings.toml under [plugins] enabled")


def _is_local_project(target: str) -> bool:
    path = Path(target)
    return path.is_dir() and ((path / "pyproject.toml").exists() or (path / "setup.py").exists())


@command.command("undelivered")
@click.option("--plugin", help="Only this plugin.")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@click.pass_obj
def undelivered(app: App, plugin: str | None, fmt: str) -> None:
    """List hook calls a plugin failed to take (raised or timed out), waiting for replay."""
    app.database.require_current_schema()
    app.plugins.undelivered.import_spool()
    rows = [{"id": e.id, "plugin": e.plugin, "hook": e.hook, "attempts": e.attempts}
            for e in app.plugins.undelivered.pending(plugin)]
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
