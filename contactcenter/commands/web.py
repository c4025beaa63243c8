"""`contactcenter web` (the reviewer console) and `contactcenter users` (who may sign in to it)."""

from __future__ import annotations

import ipaddress
import socket
from zoneinfo import ZoneInfo

import click

from contactcenter.app import App
from contactcenter.output import terminal_text
from contactcenter.storage.models import WEB_ROLES
from contactcenter.web.auth import Accounts, AuthError


@click.command("web")
@click.option("--host", help="Address to listen on (default: [web] listen_ip, 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port (default: [web] port, 8080).")
@click.pass_obj
def command(app: App, host: str | None, port: int | None) -> None:
    """Serve the reviewer console until Ctrl-C (sign in with a user from `contactcenter users add`)."""
    import uvicorn

    from contactcenter.web.app import create_app

    web = app.settings.web
    _check_listen(host or web.listen_ip, port or web.port)
    console = create_app(app.settings, app.store)
    if not Accounts(app.database, web.session_minutes).users():
        click.echo("no users yet: add one with `contactcenter users add NAME --role admin`", err=True)
    address = host or web.listen_ip
    if not _loopback(address) and not web.secure_cookies:
        click.echo(
            f"warning: listening on {address} without [web] secure_cookies: sign-ins cross the network in "
            "clear unless an HTTPS proxy is in front",
            err=True,
        )
    click.echo(f"reviewer console on http://{address}:{port or web.port}/")
    uvicorn.run(console, host=host or web.listen_ip, port=port or web.port, log_level="warning")


def _check_listen(host: str, port: int) -> None:
    """Bind host:port once, as uvicorn is about to, so a port in use or a host that is not this machine's is an
    OSError naming host:port (one line from the CLI) before the console starts, not uvicorn's traceback after.
    SO_REUSEADDR as uvicorn sets it, so a port left in TIME_WAIT by the last run still counts as free."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot listen: {exc.strerror or exc}", f"{host}:{port}") from None


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


@click.group("users")
def users_command() -> None:
    """Who may sign in to the reviewer console, and with which role."""


def _accounts(app: App) -> Accounts:
    return Accounts.for_console(app.store, app.settings.web)


@users_command.command("add")
@click.argument("username")
@click.option(
    "--role",
    type=click.Choice(WEB_ROLES),
    required=True,
    help="reviewer: reads calls, writes reviews; supervisor: also the live view; admin: also rules and users.",
)
@click.option("--name", "display_name", default="", help="The name shown in the console.")
@click.password_option(
    help="At least 10 characters, not the user name, not one character repeated, not a common password "
    "(asked for when not given)."
)
@click.pass_obj
def add_user(app: App, username: str, role: str, display_name: str, password: str) -> None:
    """Add a user (the password is stored only as an Argon2 hash)."""
    try:
        _accounts(app).add_user(username, password, role, display_name)
    except AuthError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"user {username}: {role}")


def _tab_separated(*fields: str) -> str:
    """One line of tab-separated fields, each cleaned for the terminal (a name may be typed by anyone)."""
    return "\t".join(terminal_text(field, one_line=True) for field in fields)


@users_command.command("list")
@click.pass_obj
def list_users(app: App) -> None:
    """Every user, role and whether it may sign in."""
    for user in _accounts(app).users():
        state = "active" if user.active else "disabled"
        click.echo(_tab_separated(user.username, user.role, state, user.display_name))


@users_command.command("disable")
@click.argument("username")
@click.pass_obj
def disable_user(app: App, username: str) -> None:
    """Stop a user signing in (their sessions end at once)."""
    try:
        _accounts(app).set_active(username, False)
    except AuthError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"user {username}: disabled")


@users_command.command("password")
@click.argument("username")
@click.password_option(help="The new password: the same rules as for `users add`.")
@click.pass_obj
def set_password(app: App, username: str, password: str) -> None:
    """Set a new password (the user's sessions end at once)."""
    try:
        _accounts(app).set_password(username, password)
    except AuthError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"user {username}: password changed")


@users_command.command("unlock")
@click.argument("username")
@click.option("--address", default="", help="Also lift the lock on this client address (see `users locks`).")
@click.pass_obj
def unlock_user(app: App, username: str, address: str) -> None:
    """Lift the sign-in lock of a user name (after too many wrong passwords) and forget its failures."""
    lifted = _accounts(app).unlock(username, address)
    what = f"user {username}" + (f" and address {address}" if address else "")
    click.echo(f"{what}: unlocked" if lifted else f"{what}: was not locked")


@users_command.command("locks")
@click.pass_obj
def list_locks(app: App) -> None:
    """The user names and client addresses locked now by too many failed sign-ins, and until when."""
    zone = ZoneInfo(app.settings.general.timezone)
    for row in _accounts(app).locks():
        if row.locked_until is not None:
            until = row.locked_until.astimezone(zone)
            click.echo(
                f"{row.scope}\t{row.key}\tlocked until {until:%Y-%m-%d %H:%M:%S}\t{row.lockouts} lock(s) in a row"
            )


@users_command.command("log")
@click.option("--user", "username", default=None, help="Only the sign-ins with this user name.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True, help="How many, newest first.")
@click.pass_obj
def sign_in_log(app: App, username: str | None, limit: int) -> None:
    """The latest sign-ins to the console: time, user name as typed, client address, outcome."""
    zone = ZoneInfo(app.settings.general.timezone)
    for row in _accounts(app).sign_ins(username, limit):
        click.echo(
            _tab_separated(f"{row.at.astimezone(zone):%Y-%m-%d %H:%M:%S}", row.username, row.address, row.outcome)
        )
