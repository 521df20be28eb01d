"""``orbit-lite serve``: the personal-recognizer service (web page and HTTP API) on one machine."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from orbit_lite.cli.common import err, one_line_errors
from orbit_lite.errors import OrbitLiteError


def default_store() -> Path:
    """``$XDG_DATA_HOME/orbit-lite/serve`` (``~/.local/share/orbit-lite/serve``); the platform's data folder on macOS
    and Windows."""
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "orbit-lite" / "serve"
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "orbit-lite" / "serve"
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "orbit-lite" / "serve"


@one_line_errors
def serve_command(
    checkpoint: Path = typer.Option(None, "--checkpoint", help="A training checkpoint (checkpoints/best.pt)."),
    config: list[Path] = typer.Option(
        [],
        "--config",
        help="A recipe of a learner without meta-trained parts [default: configs/photos_pretrained.yaml].",
    ),
    overrides: list[str] = typer.Option([], "--set", help="Override a config key, as personalize takes it."),
    store: Path = typer.Option(
        None, "--store", help="Where collections live [default: ~/.local/share/orbit-lite/serve]."
    ),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0 to serve other machines)."),
    port: int = typer.Option(8000, help="Port to listen on."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or mps."),
    max_upload_mb: int = typer.Option(200, "--max-upload-mb", min=1, help="Largest upload, in megabytes."),
    max_frames: int = typer.Option(3000, "--max-frames", min=1, help="Most frames in one uploaded video."),
) -> None:
    """Serve a web page and an HTTP API where people teach their own recognizer from a few videos and run it."""
    try:
        import uvicorn

        from orbit_lite.serve.app import create_app
    except ImportError as e:
        raise OrbitLiteError(f"serve needs its extra ({e.name} is missing): pip install 'orbit-lite[serve]'") from None
    from orbit_lite.serve.model import default_recipe, describe, parse_source
    from orbit_lite.serve.service import Service, Settings

    if checkpoint is None and not config:
        config = [default_recipe()]
    source = parse_source(checkpoint, config, overrides)
    settings = Settings(store or default_store(), source, device, max_upload_mb, max_frames)
    service = Service(settings)
    err.print(
        f"serving {describe(source)} on {service.device}; collections in {settings.store}", markup=False, soft_wrap=True
    )
    err.print(f"open http://{host}:{port}/ (API documentation at /docs)", markup=False, soft_wrap=True)
    try:
        uvicorn.run(create_app(service), host=host, port=port, log_level="warning", ws_max_size=16 * 2**20)
    finally:
        service.close()
