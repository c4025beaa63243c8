"""`contactcenter run`: the desk's main job.

Until the softphone lands (issue: SIP softphone core), this brings up everything it will stand on: the
call store at the newest schema, the enabled plugins, and, when settings.toml names no PBX, a Kamailio
registrar on loopback that softphones on this machine can register to. It runs until Ctrl-C.
"""

from __future__ import annotations

import signal
import threading

import click

from contactcenter.app import App
from contactcenter.speech.vosk_model import SpeechModelError, check_model_folder
from contactcenter.telephony.registrar import LocalRegistrar, RegistrarError


@click.command("run")
@click.pass_obj
def command(app: App) -> None:
    """Run the desk until Ctrl-C: store, plugins, and a local registrar when no PBX is configured."""
    settings = app.settings
    app.database.upgrade()
    click.echo(f"store: {app.database.safe_url} (revision {app.database.current_revision()})")
    for info in app.plugins.infos():
        if info.enabled:
            click.echo(f"plugin {info.name}: {info.status}" + (f" ({info.error})" if info.error else ""))
    rules = app.rules  # a broken rules file stops the desk here, with the reason
    click.echo(f"rules: {len(rules.rules)} from {settings.scripts.rules}")
    try:
        check_model_folder(settings.speech.model_path)
        click.echo(f"speech model: {settings.speech.model_path}")
    except SpeechModelError as exc:
        click.echo(f"speech model: not usable, live transcription is off ({exc})")
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    registrar = None
    if settings.sip.uses_local_registrar:
        reg = settings.local_registrar
        registrar = LocalRegistrar(reg.listen_ip, reg.port, reg.kamailio)
        try:
            registrar.start()
        except RegistrarError as exc:
            raise click.ClickException(f"local registrar: {exc}") from None
        click.echo(f"registrar: Kamailio on udp:{registrar.address} (loopback only); "
                   f"register a softphone as any user at {registrar.address}")
    else:
        click.echo(f"PBX: {settings.sip.server}:{settings.sip.port} as {settings.sip.user}")
    click.echo("ready; the softphone is not part of this version yet. Ctrl-C stops.")
    try:
        stop.wait()
    finally:
        if registrar is not None:
            registrar.stop()
        click.echo("stopped")
