"""What the commands that read recordings share: how a recording's channels are the call's legs, and the
progress bar an interactive run shows on standard error."""

from __future__ import annotations

from typing import get_args

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, SpinnerColumn, TextColumn

from contactcenter.records import Leg

agent_channel_option = click.option(
    "--agent-channel",
    type=click.Choice(["0", "1"]),
    default="0",
    show_default=True,
    help="Stereo recordings: the channel with the agent (0 left, 1 right); the other is the customer.",
)
mono_leg_option = click.option(
    "--mono-leg",
    type=click.Choice(get_args(Leg)),
    default="agent",
    show_default=True,
    help="Mono recordings: whose voice it is.",
)


def progress_bar(label: str, stderr: Console, *, spinner: bool = False) -> Progress:
    """``label``, a bar, done/total and the file at hand, cleared when it ends (``spinner`` for open-ended work)."""
    columns: list[ProgressColumn] = [SpinnerColumn()] if spinner else []
    columns += [TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}")]
    return Progress(*columns, console=stderr, transient=True)
