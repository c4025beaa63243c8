"""The agent's keys while `contactcenter run` shows the desk: m mute, h hold, x hang up.

Read one key at a time from the terminal (cbreak mode, restored on exit); nothing happens when standard
input is not a terminal (a service, a test), where the desk runs without an agent at the keyboard.
"""

from __future__ import annotations

import select
import sys
import termios
import threading
import tty

import click

from contactcenter.telephony.desk import Desk

HELP = "keys: m mute/unmute · h hold/resume · x hang up"


def _press(desk: Desk, key: str) -> None:
    """One key on the call-control object of the call the agent is on."""
    control = desk.current_control()
    if control is None or not control.on_headset:
        if key in "mhx":
            click.echo("no call on the headset")
        return
    if key == "m":
        control.mute(not control.muted)
    elif key == "h":
        control.hold(not control.held)
    elif key == "x":
        control.hang_up()


def start_agent_keys(desk: Desk, stop: threading.Event) -> threading.Thread | None:
    """Start reading keys until ``stop`` is set; None when there is no terminal to read."""
    if not sys.stdin.isatty():
        return None
    stream = sys.stdin
    saved = termios.tcgetattr(stream)

    def read() -> None:
        tty.setcbreak(stream)
        try:
            while not stop.is_set():
                ready, _, _ = select.select([stream], [], [], 0.2)
                if ready:
                    _press(desk, stream.read(1).lower())
        finally:
            termios.tcsetattr(stream, termios.TCSADRAIN, saved)

    thread = threading.Thread(target=read, name="agent-keys", daemon=True)
    thread.start()
    click.echo(HELP)
    return thread
