"""`contactcenter web` (the reviewer console) and `contactcenter users` (who may sign in to it)."""

from __future__ import annotations

import ipaddress

import click

from contactcenter.app import App
from contactcenter.storage.models import WEB_ROLES
from contactcenter.web.auth import Accounts, AuthError


@click.command("web")
@click.option("--host", help="Address to listen on (default: [web] listen_ip, 127.0.0.1).")
@click.option("--port", type=int, help="Port (default: [web] port, 8080).")
@click.pass_obj
def command(app: App, host: str | None, port: int | None) -> None:
    """Serve the reviewer console until Ctrl-C (sign in with a user from `contactcenter users add`)."""
    import uvicorn

    from contactcenter.web.app import create_app

    web = app.settings.web
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


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


@click.group("users")
def users_command() -> None:
    """Who may sign in to the reviewer console, and with which role."""


def _accounts(app: App) -> Accounts:
    return Accounts(app.store, app.settings.web.session_minutes)


@users_command.command("add")
@click.argument("username")
@click.option(
    "--role",
    type=click.Choice(WEB_ROLES),
    required=True,
    help="reviewer: reads calls, writes reviews; supervisor: also the live view; admin: also rules and users.",
)
@click.option("--name", "display_name", default="", help="The name shown in the console.")
@click.password_option(help="At least 10 characters (asked for when not given).")
@click.pass_obj
def add_user(app: App, username: str, role: str, display_name: str, password: str) -> None:
    """Add a user (the password is stored only as an Argon2 hash)."""
    try:
        _accounts(app).add_user(username, password, role, display_name)
    except AuthError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"user {username}: {role}")


@users_command.command("list")
@click.pass_obj
def list_users(app: App) -> None:
    """Every user, role and whether it may sign in."""
    for user in _accounts(app).users():
        click.echo(f"{user.username}\t{user.role}\t{'active' if user.active else 'disabled'}\t{user.display_name}")


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
@click.password_option(help="The new password, at least 10 characters.")
@click.pass_obj
def set_password(app: App, username: str, password: str) -> None:
    """Set a new password (the user's sessions end at once)."""
    try:
        _accounts(app).set_password(username, password)
    except AuthError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"user {username}: password changed")
