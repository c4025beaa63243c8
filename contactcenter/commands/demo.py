"""`contactcenter demo-call`: a real SIP caller (SIPp) calls the running desk with a recorded voice.

So a newcomer sees the whole path at once: the phone rings and answers, the greeting plays, the caller
talks (speech, a tone, DTMF 1 2 #) and hangs up, and the call shows up in the store with its findings
and its ticket. The demo then wraps the call up (话后处理) as an agent would, through the same
``save_wrap_up`` the agent's desktop uses, so the ticket shows what a person wrote rather than the
machine's guesses.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from importlib.resources import files
from pathlib import Path

import click
from sqlalchemy import func, select

from contactcenter.app import App
from contactcenter.output import terminal_text
from contactcenter.storage.models import Call, Ticket
from contactcenter.wrap_up import WrapUpError, save_wrap_up, wrap_up_defaults

STORE_WAIT_SECONDS = 15.0
#: What the demo's agent types; the category stays the one the desk gave the call.
DEMO_WRAP_UP = {
    "caller_name": "张伟",
    "salutation": "先生",
    "company": "示例客户有限公司",
    "purpose": "咨询空调保修期和上门服务",
    "notes": "客户去年购买的空调，询问保修是否包含上门服务；已告知整机保修六年，上门免费。",
    "resolution": "已解答，客户满意",
}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@click.command("demo-call")
@click.option(
    "--talk",
    "talk_seconds",
    type=click.IntRange(2, 120),
    default=10,
    show_default=True,
    help="Seconds the caller stays on the line after the answer.",
)
@click.option("--to", "extension", help="Extension to call (default: [sip] user).")
@click.pass_obj
def command(app: App, talk_seconds: int, extension: str | None) -> None:
    """Call the running desk (`contactcenter run`) from SIPp with a recorded caller, then show the result."""
    if shutil.which("sipp") is None:
        raise click.ClickException("sipp not found (install the Debian package: apt-get install sip-tester)")
    settings = app.settings
    sip = settings.sip
    host, port = (
        (settings.local_registrar.listen_ip, settings.local_registrar.port)
        if sip.uses_local_registrar
        else (sip.server, sip.port)
    )
    demo = files("contactcenter.telephony").joinpath("demo")
    with tempfile.TemporaryDirectory(prefix="contactcenter-demo-") as work:
        scenario = Path(work) / "demo_call.xml"
        scenario.write_text(
            demo.joinpath("uac_call.xml")
            .read_text(encoding="utf-8")
            .replace("@PCAP@", str(demo.joinpath("caller.pcap")))
            .replace("@TALK_MS@", str(talk_seconds * 1000))
            .replace("@RTP_PORT@", str(_free_port()))
            .replace("@CODECS@", "0"),
            encoding="utf-8",
        )
        with app.store.session() as session:
            before = session.scalar(select(func.max(Call.id))) or 0
        click.echo(f"calling {extension or sip.user} at {host}:{port} from SIPp ...")
        result = subprocess.run(
            [
                "sipp",
                f"{host}:{port}",
                "-sf",
                str(scenario),
                "-s",
                extension or sip.user,
                "-m",
                "1",
                "-l",
                "1",
                "-i",
                "127.0.0.1",
                "-mi",
                "127.0.0.1",
                "-p",
                str(_free_port()),
                "-mp",
                str(_free_port() & ~1),
                "-timeout",
                str(talk_seconds + 60),
                "-timeout_error",
                "-nostdin",
                "-trace_err",
            ],
            capture_output=True,
            text=True,
            cwd=work,
        )
    if result.returncode != 0:
        raise click.ClickException("the call failed (is `contactcenter run` running?):\n" + result.stdout[-1500:])
    click.echo("call finished; what the desk recorded:")
    deadline = time.monotonic() + STORE_WAIT_SECONDS  # the desk stores the call once its analysis is done
    while True:
        with app.store.session() as session:
            call = session.scalars(select(Call).where(Call.id > before).order_by(Call.id.desc()).limit(1)).first()
            done = call is not None and (  # and the ticket plugin, if enabled, has made its ticket
                "tickets" not in app.settings.plugins.enabled
                or session.scalar(select(func.count(Ticket.id)).where(Ticket.call_id == call.id))
            )
            if done or time.monotonic() > deadline:
                break
        time.sleep(0.2)
    if call is None:
        click.echo("  no call stored yet (the desk may still be saving it; run `contactcenter tickets list`)")
        return
    wrapped_up = _wrap_up(app, call.id)
    with app.store.session() as session:
        call = session.get(Call, call.id)
        assert call is not None
        click.echo(
            f"  call {call.id}: {call.disposition}, answered at ring {call.rings_before_answer}, "
            f"hung up first: {call.hung_up_first}, score {call.compliance_score}"
        )
        for utterance in call.utterances:
            click.echo(terminal_text(f"  [{utterance.leg} {utterance.start_s:5.1f}s] {utterance.text}", one_line=True))
        for hit in call.rule_hits:
            click.echo(terminal_text(f"  rule {hit.rule_id}: {hit.kind} {hit.matched_text}", one_line=True))
        click.echo(f"  {wrapped_up}")
        for ticket in session.scalars(select(Ticket).where(Ticket.call_id == call.id)):
            click.echo(
                terminal_text(
                    f"  ticket {ticket.id}: {ticket.category}, {ticket.priority}, due {ticket.due_at}", one_line=True
                )
            )
            click.echo(
                terminal_text(f"    {ticket.caller_name} {ticket.caller_phone}: {ticket.purpose}", one_line=True)
            )
            click.echo(terminal_text(f"    {ticket.summary} → {ticket.resolution or '-'}", one_line=True))


def _wrap_up(app: App, call_id: int) -> str:
    """Wrap the demo call up as its agent (``[sip] user``) would: the prefilled form, completed. What
    happened, in a line."""
    with app.store.session() as session:
        prefilled = wrap_up_defaults(session, app.settings, call_id)
    category = prefilled.category or app.settings.agent.categories[0]
    form = prefilled.model_copy(update={**DEMO_WRAP_UP, "category": category})
    try:
        record = save_wrap_up(
            app.store,
            app.settings,
            call_id=call_id,
            form=form,
            agent=app.settings.sip.user,
            publish=app.plugins.publish,
        )
    except WrapUpError as exc:  # settings that ask for more than the demo types ([agent] required_fields)
        return f"not wrapped up: {exc}"
    app.plugins.bus.drain(STORE_WAIT_SECONDS)  # the ticket plugin fills the ticket from it
    return (
        f"wrapped up (话后处理) by {record.wrapped_up_by}: {record.caller_name}{record.salutation}, {record.category}"
    )
