"""The ``contactcenter`` command: one group, a sub-command module per job, plugin commands added last."""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from contactcenter import __version__
from contactcenter.app import App
from contactcenter.commands import (
    agents,
    audit,
    callbacks,
    customers,
    db,
    demo,
    devices,
    models,
    plugins,
    prompts,
    registrar,
    rules,
    run,
    tickets,
    web,
)
from contactcenter.settings import SettingsError
from contactcenter.speech.vosk_model import SpeechModelError
from contactcenter.storage.database import DatabaseUnavailable

EXIT_SETTINGS = 2
EXIT_DATABASE = 3
EXIT_SPEECH_MODEL = 4


class DeskGroup(click.Group):
    """Turns the errors a user can fix into a clear message and a non-zero exit, not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SettingsError as exc:
            click.echo("contactcenter: the settings are not valid:", err=True)
            for problem in exc.problems:
                click.echo(f"  {problem}", err=True)
            ctx.exit(EXIT_SETTINGS)
        except DatabaseUnavailable as exc:
            click.echo(f"contactcenter: {exc}", err=True)
            ctx.exit(EXIT_DATABASE)
        except SpeechModelError as exc:
            click.echo(f"contactcenter: {exc}", err=True)
            ctx.exit(EXIT_SPEECH_MODEL)


@click.group("contactcenter", cls=DeskGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--settings",
    "settings_file",
    type=click.Path(dir_okay=False),
    envvar="CONTACTCENTER_SETTINGS",
    help="Settings file (default: ./settings.toml, or $CONTACTCENTER_SETTINGS).",
)
@click.version_option(__version__, prog_name="contactcenter")
@click.pass_context
def cli(ctx: click.Context, settings_file: str | None) -> None:
    """A SIP phone line turned into a disciplined Chinese-language customer-service desk."""
    if not isinstance(ctx.obj, App):
        ctx.obj = App(settings_file)
    ctx.call_on_close(ctx.obj.close)


for module in (
    run,
    demo,
    devices,
    agents,
    audit,
    rules,
    prompts,
    plugins,
    db,
    tickets,
    callbacks,
    models,
    web,
    registrar,
):
    cli.add_command(module.command)
cli.add_command(callbacks.scheduler_command)
cli.add_command(web.users_command)
cli.add_command(customers.command)


def _settings_argument(argv: list[str]) -> str | None:
    """The --settings value, read before click parses, so plugin commands can be added first."""
    for i, arg in enumerate(argv):
        if arg == "--settings" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--settings="):
            return arg.split("=", 1)[1]
    return None


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    app = App(_settings_argument(sys.argv[1:]))
    try:
        app.plugins.add_commands(cli)
    except (SettingsError, DatabaseUnavailable):
        pass  # a desk with broken settings still gets the built-in commands, which report the problem
    cli(prog_name="contactcenter", obj=app)
