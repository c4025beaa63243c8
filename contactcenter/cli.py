"""The ``contactcenter`` command: one group, a sub-command module per job, plugin commands added last."""

from __future__ import annotations

import logging
import re
import sys
from typing import Any, NoReturn

import click
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from contactcenter import __version__
from contactcenter.app import App
from contactcenter.commands import (
    agents,
    audit,
    audit_worker,
    callbacks,
    customers,
    db,
    demo,
    devices,
    evaluate,
    models,
    plugins,
    prompts,
    registrar,
    retention,
    review,
    rules,
    run,
    tickets,
    web,
)
from contactcenter.settings import SettingsError
from contactcenter.speech.vosk_model import SpeechModelError
from contactcenter.storage.database import DatabaseUnavailable, describe_error
from contactcenter.vocabulary import VocabularyError

EXIT_SETTINGS = 2
EXIT_DATABASE = 3
EXIT_SPEECH_MODEL = 4
EXIT_SYSTEM = 5  # a file, folder or port the command cannot use
EXIT_INTERNAL = 70  # a bug (sysexits' EX_SOFTWARE): one line here, the traceback with --debug

DEBUG_ENV = "CONTACTCENTER_DEBUG"
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-z][a-z0-9+.-]*://[^\s:/@]*:)[^\s@]+@", re.IGNORECASE)
_HASH = re.compile(r"\$argon2\w*\$\S*")


def one_line(text: str) -> str:
    """``text`` fit for one line of a terminal: its first line, without a password in a URL, a password hash or
    a SQL statement and its parameters, and not endless."""
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    first = first.split(" [SQL: ")[0].split(" [parameters: ")[0]
    first = _HASH.sub("[hash hidden]", _URL_PASSWORD.sub(r"\g<head>***@", first))
    return first if len(first) <= 300 else first[:299] + "…"


def _database_where(ctx: click.Context) -> str:
    """The database a command was using, with any password in its URL hidden."""
    app = ctx.find_object(App)
    try:
        if app is not None and "database" in app.__dict__:
            return f"database {app.database.safe_url}"
        if app is not None:
            return f"database {make_url(app.settings.database_url).render_as_string(hide_password=True)}"
    except Exception:  # settings that cannot be read: say less, not nothing
        return "the database"
    return "the database"


def _file_error(exc: OSError) -> str:
    """An OSError as "what (where)": the system's reason and the file, folder or address it concerns."""
    what = exc.strerror or one_line(str(exc)) or type(exc).__name__
    where = [str(name) for name in (exc.filename, exc.filename2) if name is not None]
    return f"{what} ({' → '.join(where)})" if where else what


def _fail(ctx: click.Context, message: str, code: int) -> NoReturn:
    click.echo(f"error: {one_line(message)}", err=True)
    ctx.exit(code)


class DeskGroup(click.Group):
    """Turns the errors a user can fix into one line on standard error and a non-zero exit, not a traceback.

    Expected problems (settings, database, speech model, files and ports) name what and where; anything else is
    a bug, reported in a line that points to ``--debug`` (or CONTACTCENTER_DEBUG=1), which shows the traceback.
    Click's own usage errors and ClickExceptions are left to click."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            if ctx.params.get("debug"):
                raise
            self._report(ctx, exc)

    def _report(self, ctx: click.Context, exc: Exception) -> NoReturn:
        if isinstance(exc, SettingsError):
            if len(exc.problems) == 1:
                _fail(ctx, f"the settings are not valid: {exc.problems[0]}", EXIT_SETTINGS)
            click.echo("error: the settings are not valid:", err=True)
            for problem in exc.problems:
                click.echo(f"  {one_line(problem)}", err=True)
            ctx.exit(EXIT_SETTINGS)
        if isinstance(exc, DatabaseUnavailable):
            _fail(ctx, str(exc), EXIT_DATABASE)
        if isinstance(exc, SpeechModelError):
            _fail(ctx, str(exc), EXIT_SPEECH_MODEL)
        if isinstance(exc, VocabularyError):
            _fail(ctx, str(exc), EXIT_SETTINGS)
        if isinstance(exc, SQLAlchemyError):
            _fail(ctx, f"{describe_error(exc)} ({_database_where(ctx)})", EXIT_DATABASE)
        if isinstance(exc, OSError):
            _fail(ctx, _file_error(exc), EXIT_SYSTEM)
        _fail(
            ctx,
            f"unexpected {type(exc).__name__}: {one_line(str(exc))} "
            f"(a bug: run again with --debug, or {DEBUG_ENV}=1, for the traceback)",
            EXIT_INTERNAL,
        )


@click.group("contactcenter", cls=DeskGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--settings",
    "settings_file",
    type=click.Path(dir_okay=False),
    envvar="CONTACTCENTER_SETTINGS",
    help="Settings file (default: ./settings.toml, or $CONTACTCENTER_SETTINGS).",
)
@click.option(
    "--debug",
    is_flag=True,
    envvar=DEBUG_ENV,
    help=f"Show the full traceback of an error instead of one line (or set {DEBUG_ENV}=1).",
)
@click.version_option(__version__, prog_name="contactcenter")
@click.pass_context
def cli(ctx: click.Context, settings_file: str | None, debug: bool) -> None:
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
    audit_worker,
    evaluate,
    rules,
    prompts,
    plugins,
    db,
    tickets,
    callbacks,
    models,
    web,
    registrar,
    retention,
    review,
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
    except (SettingsError, DatabaseUnavailable, SQLAlchemyError, OSError):
        pass  # a desk with broken settings, database or data folder still gets the built-in commands, which say why
    cli(prog_name="contactcenter", obj=app)
