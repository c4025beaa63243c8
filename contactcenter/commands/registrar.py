"""`contactcenter registrar config`: the Kamailio configuration to run on a host of its own for a team.

The same configuration `run` starts on loopback, with the listen address and the team routing of this
settings file ([team], [ring]) filled in. The REGISTER password is not in it: with ``--auth`` Kamailio reads
it from its own environment (CONTACTCENTER_REGISTRAR_PASSWORD), like every secret here.
"""

from __future__ import annotations

import ipaddress

import click

from contactcenter.app import App
from contactcenter.commands.run import team_routing
from contactcenter.telephony.registrar import PASSWORD_VARIABLE, RegistrarError, kamailio_modules, registrar_config

FALLBACK_MODULES = "/usr/lib/x86_64-linux-gnu/kamailio/modules/"  # Debian and Ubuntu on amd64


@click.group("registrar")
def command() -> None:
    """The Kamailio registrar a team line runs on (embedded on loopback by `run`, or a host of its own)."""


@command.command("config")
@click.option("--listen", "listen_ip", default="0.0.0.0", show_default=True, help="Address Kamailio listens on.")
@click.option("--port", default=5060, show_default=True, type=click.IntRange(1, 65535), help="UDP port.")
@click.option(
    "--auth/--no-auth",
    default=True,
    show_default=True,
    help=f"Require the password in Kamailio's environment variable {PASSWORD_VARIABLE} on every REGISTER.",
)
@click.option("--modules", default=None, help="Kamailio's module directory on that host (default: found here).")
@click.pass_obj
def config_command(app: App, listen_ip: str, port: int, auth: bool, modules: str | None) -> None:
    """Print the Kamailio configuration for this settings file's team line (redirect it to a file)."""
    try:
        ipaddress.ip_address(listen_ip)
    except ValueError:
        raise click.BadParameter(f"{listen_ip!r} is not an IP address", param_hint="--listen") from None
    if modules is None:
        try:
            modules = kamailio_modules() + "/"
        except RegistrarError:
            modules = FALLBACK_MODULES
    click.echo(registrar_config(listen_ip, port, modules, team=team_routing(app), with_auth=auth), nl=False)
