"""`contactcenter run`: the desk's main job, the phone.

Brings up the call store at the newest schema, the enabled plugins, the speech monitor (when the model is
usable), the agent's headset (when the machine has sound), a Kamailio registrar on loopback when
settings.toml names no PBX, and the softphone registered as [sip] user; shows registration and each call on
the terminal, takes the agent's keys (mute, hold, hang up); Ctrl-C hangs up politely and stops.
"""

from __future__ import annotations

import signal
import threading
from datetime import datetime
from zoneinfo import ZoneInfo

import click

from contactcenter.app import App
from contactcenter.audio.devices import HeadsetError
from contactcenter.audio.headset import Headset
from contactcenter.commands.agent_keys import start_agent_keys
from contactcenter.desktop import runner as desktop_runner
from contactcenter.output import terminal_text
from contactcenter.records import CallbackRecord
from contactcenter.scheduling.dialer import CallbackDialer
from contactcenter.scheduling.scheduler import CallbackScheduler
from contactcenter.speech.vosk_model import SpeechModelError
from contactcenter.telephony.agent_history import AgentHistory
from contactcenter.telephony.agent_state import AgentState
from contactcenter.telephony.certificates import loopback_certificate
from contactcenter.telephony.desk import Desk, DeskCall
from contactcenter.telephony.registrar import LocalRegistrar, RegistrarError, TeamRouting
from contactcenter.telephony.rtp_loop import RTP_LOOP, settle_heap
from contactcenter.telephony.softphone import RegistrationError, SipAccount, Softphone
from contactcenter.telephony.team import ContactAccount, TeamMembership, follow_agent

#: What the terminal says after the caller for each call event ({rings}: the ring it was answered at).
EVENT_LINES = {
    "ringing": "ringing   {who}",
    "answered": "answered  {who} at ring {rings}",
    "refused": "refused   {who} (486: agent not ready, busy or in wrap-up)",
    "answered_elsewhere": "elsewhere {who} (team call answered at another desk)",
    "duplicate": "duplicate {who} (also answered at another desk in the same instant: ended, not stored)",
    "ring_ended": "unanswered {who} (team call: the caller hung up or it went to the overflow desk)",
    **{
        what: f"{what:<9} {{who}}" for what in ("muted", "unmuted", "held", "resumed", "transferred", "transfer_failed")
    },
}


def media_priority(priority: int) -> str:
    """The RTP threads (and sender process) at real-time priority when set and permitted, started now; what
    the terminal says about it and about where packets leave from."""
    RTP_LOOP.start()
    pid = RTP_LOOP.sender_pid
    sent = (
        f"sent by a process of its own (pid {pid})"
        if pid is not None
        else "sent by the desk's own process"
        + ("" if RTP_LOOP.sender_process_wanted else " ([sip] media_sender_process = false)")
    )
    if not priority:
        return f"normal priority ([sip] media_realtime_priority = 0), {sent}"
    problem = RTP_LOOP.use_realtime_priority(priority)
    if problem is None:
        return f"real-time priority {priority}, {sent}"
    return f"normal priority: {problem}; or set [sip] media_realtime_priority = 0; {sent}"


def show(what: str, desk_call: DeskCall) -> None:
    """One line per call event on the terminal."""
    call = desk_call.call
    now = datetime.now().strftime("%H:%M:%S")
    who = f"{call.caller_name or ''} {call.remote_number}".strip()
    if what in EVENT_LINES:
        click.echo(terminal_text(f"{now} " + EVENT_LINES[what].format(who=who, rings=desk_call.rings), one_line=True))
    elif what in ("ended", "abandoned"):
        record = desk_call.record
        score = "" if record is None or what == "abandoned" else f", hung up first: {record.hung_up_first}"
        click.echo(terminal_text(f"{now} {what:<9} {who}{score}", one_line=True))


def _start_scheduler(app: App, stop: threading.Event, desktop: desktop_runner.Desktop | None) -> threading.Thread:
    """[callbacks] scheduler_in_desk: this desk fires the callbacks too (and dials them with auto_dial: to the
    agent's headset when the agent is ready, else as before, with the prompt)."""
    settings = app.settings
    dialer = CallbackDialer(app.plugins.api_for("callbacks")) if settings.callbacks.auto_dial else None

    def on_due(callback: CallbackRecord) -> None:
        owner = f" for {callback.owner_extension}" if callback.owner_extension else ""
        click.echo(
            terminal_text(
                f"{datetime.now():%H:%M:%S} DUE callback {callback.id}{owner}: {callback.phone} {callback.reason}",
                one_line=True,
            )
        )
        if dialer is None:
            return
        if desktop is not None and desktop.service is not None and desktop.service.dial_for_agent(callback):
            return
        dialer(callback)  # not an overflow callback: the caller wants an agent, offered to the next one ready

    scheduler = CallbackScheduler(app.database, settings, app.plugins.bus.publish, on_due=on_due)
    thread = threading.Thread(target=scheduler.run, args=(stop,), name="callback-scheduler", daemon=True)
    thread.start()
    click.echo("callbacks: this desk runs the scheduler" + (" and dials due callbacks" if dialer else ""))
    return thread


def team_routing(app: App) -> TeamRouting | None:
    """How the registrar routes the team number ([team] in settings.toml), or None without a team line."""
    settings = app.settings
    team = settings.team
    if not team.enabled:
        return None
    return TeamRouting(
        number=team.number,
        overflow_number=team.overflow_number,
        ring_ms=round(settings.team_ring_seconds * 1000),
        longest_idle=team.strategy == "longest_idle",
    )


@click.command("run")
@click.pass_obj
def command(app: App) -> None:
    """Run the phone until Ctrl-C: register, answer calls, greet, listen, store, publish."""
    settings = app.settings
    app.database.upgrade()
    click.echo(f"store: {app.database.safe_url} (revision {app.database.current_revision()})")
    for info in app.plugins.infos():
        if info.enabled:
            click.echo(f"plugin {info.name}: {info.status}" + (f" ({info.error})" if info.error else ""))
    rules = app.rules  # a broken rules file stops the desk here, with the reason
    in_force = app.rule_book.refresh()
    click.echo(
        f"rules: {len(rules.rules)} from {settings.scripts.rules}, {len(in_force.rules)} in force "
        "(admins' changes in the console apply from the next call)"
    )
    speech_off = ""
    try:
        monitor = app.speech_monitor
        click.echo(f"speech model: {settings.speech.model_path}")
    except SpeechModelError as exc:
        monitor = None
        speech_off = str(exc)
        click.echo(f"speech model: not usable, live transcription is off ({exc})")
    overflow_desk = settings.team.enabled and settings.team.role == "overflow"
    headset = Headset(settings.headset.model_copy(update={"enabled": False}) if overflow_desk else settings.headset)
    try:
        has_headset = headset.check()
    except HeadsetError as exc:
        raise click.ClickException(str(exc)) from None
    if overflow_desk:
        click.echo("headset: off (the overflow desk answers callers by itself; no agent works it)")
    elif has_headset:
        microphone, earpiece = headset.input_device, headset.output_device
        if microphone is None or earpiece is None:
            raise RuntimeError("Headset.check() said yes without finding both devices")
        click.echo(f"headset: microphone {microphone.describe()}, earpiece {earpiece.describe()}")
    else:
        click.echo(f"headset: off ({headset.off_reason})")
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    registrar = None
    sip = settings.sip
    if settings.team.enabled and sip.transport != "udp":
        # the team number's contact is registered on its own UDP socket (team.py): over TLS it could not be reached
        raise click.ClickException(f'[team] needs [sip] transport = "udp" for now (it is "{sip.transport}")')
    server, port = sip.server, sip.port
    ca_file = sip.tls_ca_file
    if sip.uses_local_registrar:
        reg = settings.local_registrar
        # TLS: a self-signed certificate made once in <data_dir>/tls/, the one the desk trusts for loopback
        certificate = loopback_certificate(settings.general.data_dir / "tls") if sip.transport == "tls" else None
        registrar = LocalRegistrar(
            reg.listen_ip,
            reg.port,
            reg.kamailio,
            team=team_routing(app),
            transport=sip.transport,
            certificate=certificate,
        )
        try:
            registrar.start()
        except RegistrarError as exc:
            raise click.ClickException(f"local registrar: {exc}") from None
        server, port = registrar.listen_ip, registrar.port
        if certificate is not None and not ca_file:
            ca_file = str(certificate.certificate)  # the loopback registrar's own: verified, not skipped
        also = f" and {sip.transport}:{registrar.address}" if sip.transport != "udp" else ""
        click.echo(
            f"registrar: Kamailio on udp:{registrar.address}{also} (loopback only); "
            f"call {sip.user} from a softphone registered at {registrar.address}"
        )
    desktop = None
    publish = app.plugins.bus.publish
    if settings.agent.enabled and headset.available:
        desktop = desktop_runner.prepare(
            settings, app.rule_book.current, speech_on=monitor is not None, speech_off_reason=speech_off
        )
        publish = desktop.publish_through(publish)
    elif settings.agent.enabled:
        click.echo("agent desktop: off (no headset: this desk answers unattended)")
    team = settings.team
    agent = desktop.agent if desktop is not None else None
    history = None
    if agent is None and team.enabled and team.role == "agent":  # an agent without a page: ready unless busy
        agent_settings = settings.agent
        agent = AgentState(
            agent_settings.not_ready_reasons, agent_settings.wrap_up_seconds, start_ready=agent_settings.start_ready
        )
        history = AgentHistory(app.database, sip.user, agent)

    def on_change(what: str, desk_call: DeskCall) -> None:
        show(what, desk_call)
        if desktop is not None:
            desktop.hub.desk_changed(what, desk_call)

    desk = Desk(
        settings,
        app.database,
        publish,
        monitor,
        app.rule_book,
        on_change=on_change,
        headset=headset,
        agent=agent,
    )
    account = SipAccount(
        server=server,
        port=port,
        user=sip.user,
        password=sip.password or "",
        local_ip=sip.local_ip,
        local_port=sip.local_port,
        rtp_low=sip.rtp_port_low,
        rtp_high=sip.rtp_port_high,
        t1=sip.t1_ms / 1000,
        t2=sip.t2_ms / 1000,
        transport=sip.transport,
        ca_file=ca_file,
        media_encryption=sip.media_encryption,
    )
    phone = Softphone(account, desk.handle)
    membership = None
    if team.enabled:
        contact = ContactAccount(server, port, sip.user, sip.password or "", sip.local_ip, sip.local_port)
        aor = team.overflow_number if team.role == "overflow" else team.number
        membership = TeamMembership(contact, aor, team.registration_seconds)
    RTP_LOOP.sender_process_wanted = sip.media_sender_process  # before the first call starts the loop
    RTP_LOOP.lead_s = sip.media_lead_ms / 1000
    try:
        try:
            phone.start(attempts=5)
        except RegistrationError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(
            f"registered as {sip.user} at {server}:{port}; answering at ring "
            f"{settings.ring.answer_after_rings}. Ctrl-C stops."
        )
        click.echo(f"sip: {phone.security()}")
        click.echo(f"call media: {media_priority(sip.media_realtime_priority)}")
        desk.phone = phone
        if history is not None:
            history.start()
        if membership is not None and agent is not None:
            zone = ZoneInfo(settings.general.timezone)
            follow_agent(agent, membership, longest_idle=team.strategy == "longest_idle", zone=zone)
            membership.start()
            click.echo(f"team line {team.number}: this desk is rung while its agent is ready ({team.strategy})")
        elif membership is not None:
            membership.want(True)
            membership.start()
            click.echo(f"team line {team.number}: overflow desk, registered as {team.overflow_number}")
        app.plugins.attach_phone(desk)  # calls plugins place run through the desk: recorded, checked, stored
        if desktop is not None:
            try:
                desktop_runner.serve(desktop, settings, app.database, desk, app.plugins.bus.publish)
            except OSError as exc:
                raise click.ClickException(f"agent desktop: {exc}; set [agent] port to a free port") from None
            click.echo(f"agent desktop (坐席工作台): {desktop.url}")
        scheduler_thread = _start_scheduler(app, stop, desktop) if settings.callbacks.scheduler_in_desk else None
        app.plugins.bus.publish("desk_started", role="desk")
        settle_heap()  # what start-up loaded stays out of the collector's full passes (rtp_loop.py)
        click.echo("ready")
        keys = start_agent_keys(desk, stop) if headset.available else None
        stop.wait()
        if keys is not None:
            keys.join(timeout=1)
        if scheduler_thread is not None:
            scheduler_thread.join(timeout=10)
    finally:
        click.echo("stopping: hanging up calls in progress")
        if membership is not None:
            membership.stop()  # no team call is sent here any more
        if desktop is not None:
            desktop.stop()
        if history is not None:
            history.stop()
        phone.stop()
        if not desk.wait_until_idle(timeout=5):
            click.echo("waiting for speech recognition to finish the last calls (Ctrl-C again to abandon it)")
            signal.signal(signal.SIGINT, signal.default_int_handler)
            try:
                desk.wait_until_idle(timeout=600)
            except KeyboardInterrupt:
                click.echo("abandoned: the calls in progress are stored without their analysis where not done")
        desk.close()
        if registrar is not None:
            registrar.stop()
        click.echo("stopped")
