"""The ``orbit-lite`` command."""

from __future__ import annotations

import signal

import typer

from orbit_lite import __version__
from orbit_lite.cli import data
from orbit_lite.cli.backbones import backbones_command
from orbit_lite.cli.common import out, setup_logging
from orbit_lite.cli.evaluate import evaluate_command
from orbit_lite.cli.export import export_command
from orbit_lite.cli.import_orbit import import_orbit_command
from orbit_lite.cli.personal import personalize_command, recognize_command
from orbit_lite.cli.serve import serve_command
from orbit_lite.cli.train import train_command

app = typer.Typer(
    name="orbit-lite",
    help="Teachable object recognizers from a few videos: ORBIT data, LITE meta-training, personalization, evaluation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,  # help text is plain: "[default: ...]" and "<dir>/[clean/]" are shown, not read as markup
)
app.add_typer(data.app, name="data")
app.command("train")(train_command)
app.command("personalize")(personalize_command)
app.command("recognize")(recognize_command)
app.command("evaluate")(evaluate_command)
app.command("export")(export_command)
app.command("import-orbit")(import_orbit_command)
app.command("backbones")(backbones_command)
app.command("serve")(serve_command)


def _version(value: bool) -> None:
    if value:
        out.print(f"orbit-lite {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    setup_logging(verbose)


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds like Ctrl-C: locks and temporary files are removed on the way out


def main() -> None:
    for name in ("SIGTERM", "SIGHUP"):  # `kill`, `timeout`, a closed terminal: leave no lock or partial file behind
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), _exit_on_signal)
    app()
