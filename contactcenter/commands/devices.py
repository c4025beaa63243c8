"""`contactcenter devices`: the sound devices PortAudio offers, and which ones [headset] chooses."""

from __future__ import annotations

import click

from contactcenter.app import App
from contactcenter.audio.devices import HeadsetError, Kind, NoAudio, choose, list_devices
from contactcenter.output import emit_rows


@click.command("devices")
@click.option("--json", "as_json", is_flag=True, help="JSON on standard output.")
@click.pass_obj
def command(app: App, as_json: bool) -> None:
    """List microphones and earpieces; mark the ones [headset] input_device / output_device choose."""
    headset = app.settings.headset
    try:
        devices = list_devices()
    except NoAudio as exc:
        raise click.ClickException(f"{exc}; the headset bridge is off and calls are answered unattended") from None
    if not devices:
        click.echo(
            "no sound devices (no sound card, or no sound server running): the headset bridge is off "
            "and calls are answered unattended"
        )
        return
    chosen: dict[int, list[str]] = {}
    problems = []
    wanted: tuple[tuple[Kind, int | str], ...] = (("input", headset.input_device), ("output", headset.output_device))
    for kind, choice in wanted:
        try:
            chosen.setdefault(choose(choice, kind, devices).index, []).append(
                "microphone" if kind == "input" else "earpiece"
            )
        except HeadsetError as exc:
            problems.append(str(exc))
    rows = [
        {
            "index": d.index,
            "name": d.name,
            "host_api": d.host_api,
            "inputs": d.inputs,
            "outputs": d.outputs,
            "default_rate": int(d.default_rate),
            "headset": ", ".join(chosen.get(d.index, [])),
        }
        for d in devices
    ]
    emit_rows(
        rows,
        ["index", "name", "host_api", "inputs", "outputs", "default_rate", "headset"],
        "json" if as_json else "table",
        title="sound devices",
    )
    if problems:
        raise click.ClickException("\n".join(problems))
