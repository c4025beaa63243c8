"""`contactcenter models`: fetch and verify the speech model against models/manifest.toml."""

from __future__ import annotations

from pathlib import Path

import click
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from contactcenter.app import App
from contactcenter.speech.model_files import ModelError, ModelManifest, fetch_model, verify_model


@click.group("models")
def command() -> None:
    """The speech model: download it and check every file against the manifest."""


@command.command("verify")
@click.argument("path", required=False, type=click.Path(file_okay=False))
@click.pass_obj
def verify(app: App, path: str | None) -> None:
    """Check the model folder (default: [speech] model_path); exits 1 naming every bad file."""
    manifest = _manifest(app)
    folder = Path(path) if path else app.settings.speech.model_path
    problems = verify_model(folder, manifest)
    if len(problems) == 1:  # a missing folder, most often: one line
        [(name, reason)] = problems.items()
        click.echo(f"{folder}: the model is not usable: {reason if name == '.' else f'{name}: {reason}'}", err=True)
        raise SystemExit(1)
    if problems:
        click.echo(f"{folder}: the model is not usable:", err=True)
        for name, reason in problems.items():
            click.echo(f"  {name}: {reason}", err=True)
        raise SystemExit(1)
    click.echo(f"{folder}: {manifest.name}, {len(manifest.files)} files verified")


@command.command("fetch")
@click.option("--url", help="Download from here instead of the manifest's URL (a mirror).")
@click.option("--force", is_flag=True, help="Fetch again even if a verified copy is present.")
@click.pass_obj
def fetch(app: App, url: str | None, force: bool) -> None:
    """Download the model, check it, and install it at [speech] model_path; a bad copy is refused."""
    manifest = _manifest(app)
    folder = app.settings.speech.model_path
    if not force and not verify_model(folder, manifest):
        click.echo(f"{folder}: {manifest.name} already present and verified")
        return
    with Progress(
        *Progress.get_default_columns()[:1], BarColumn(), DownloadColumn(), TransferSpeedColumn(), transient=True
    ) as bar:
        task = bar.add_task(manifest.name, total=manifest.zip_size)
        try:
            fetch_model(
                manifest, folder, url=url, progress=lambda done, total: bar.update(task, completed=done, total=total)
            )
        except ModelError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"{folder}: {manifest.name} fetched and verified")


def _manifest(app: App) -> ModelManifest:
    try:
        return ModelManifest.load(app.settings.speech.model_manifest)
    except ModelError as exc:
        raise click.ClickException(str(exc)) from None
