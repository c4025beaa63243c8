"""`contactcenter prompts`: the audio the caller hears."""

from __future__ import annotations

import click

from contactcenter.app import App
from contactcenter.telephony.prompt_builder import PromptBuildError, build_prompts, script_lines


@click.group("prompts")
def command() -> None:
    """Prompt audio in [scripts] prompts_dir, one WAV per line of the service script."""


@command.command("list")
@click.pass_obj
def list_prompts(app: App) -> None:
    """Each line of the service script, and whether its recording exists."""
    folder = app.settings.scripts.prompts_dir
    for key, text in script_lines(app.settings).items():
        state = "recorded" if (folder / f"{key}.wav").exists() else "MISSING"
        click.echo(f"{key:<20} {state:<9} {text}")


@command.command("build")
@click.option("--force", is_flag=True, help="Replace existing recordings too.")
@click.pass_obj
def build(app: App, force: bool) -> None:
    """Speak missing prompts with espeak-ng from the script (robotic stand-ins until real recordings)."""
    try:
        written = build_prompts(app.settings, force)
    except PromptBuildError as exc:
        raise click.ClickException(str(exc)) from None
    for path in written:
        click.echo(f"wrote {path}")
    click.echo(f"{len(written)} prompt(s) made; record real ones before going live")
