"""The ASGI application: the API, the web page and its files, the API's documentation, and the rules every answer
follows (errors as ``{"error": "<one line>"}`` with a 4xx status, never a traceback; uploads capped in bytes)."""

from __future__ import annotations

import html
import json
import logging
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orbit_lite import __version__
from orbit_lite.errors import OrbitLiteError
from orbit_lite.serve.errors import ServiceError
from orbit_lite.serve.routes import router
from orbit_lite.serve.service import Service
from orbit_lite.serve.uploads import too_large

log = logging.getLogger(__name__)
STATIC = resources.files("orbit_lite.serve") / "static"
_SLACK = 64 * 1024  # multipart framing around the file itself


class BodyLimit:
    """Refuse a request body over ``max_bytes`` with 413 as soon as that many bytes arrived (a declared length is
    refused before any is read), so an oversized upload never fills the disk."""

    def __init__(self, app: ASGIApp, max_bytes: int, message: str) -> None:
        self.app, self.max_bytes = app, max_bytes + _SLACK
        self.body = json.dumps({"error": message}).encode()

    async def _refuse(self, send: Send) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(self.body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        received, over, started = 0, False, False

        async def counted() -> Message:
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    over = True
                    return {"type": "http.disconnect"}  # the app stops reading; its answer is replaced below
            return message

        async def answer(message: Message) -> None:
            nonlocal started
            if over:
                if not started:
                    started = True
                    await self._refuse(send)
                return
            await send(message)

        await self.app(scope, counted, answer)
        if over and not started:
            await self._refuse(send)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _one_line(errors: list[dict[str, Any]]) -> str:
    first = errors[0] if errors else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path", "header"))
    return f"{where or 'request'}: {first.get('msg', 'invalid')}"


def create_app(service: Service) -> FastAPI:
    app = FastAPI(
        title="orbit-lite serve",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        description="Teach a personal object recognizer from a few videos, and run it.",
    )
    app.state.service = service
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    app.add_middleware(BodyLimit, max_bytes=service.limits.max_bytes, message=str(too_large(service.limits)))

    @app.exception_handler(ServiceError)
    async def refused(request: Request, e: ServiceError) -> JSONResponse:
        return _error(e.status, str(e))

    @app.exception_handler(OrbitLiteError)
    async def mistake(request: Request, e: OrbitLiteError) -> JSONResponse:
        return _error(400, str(e))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        return _error(422, _one_line(list(e.errors())))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException) -> JSONResponse:
        return _error(e.status_code, str(e.detail))

    @app.exception_handler(Exception)
    async def crash(request: Request, e: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=e)  # the log has it, the client never
        return _error(500, "internal error: the service's log has the details")

    @app.get("/", include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"))

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse(api_page(app.openapi()))

    @app.get("/healthz", include_in_schema=False)
    def health() -> Response:
        return Response("ok", media_type="text/plain")

    return app


def api_page(spec: dict[str, Any]) -> str:
    """The OpenAPI document as one plain HTML table (nothing loaded from elsewhere, readable by a screen reader)."""
    rows = []
    for path, methods in spec.get("paths", {}).items():
        for method, op in methods.items():
            rows.append(
                f"<tr><td>{method.upper()}</td><td><code>{html.escape(path)}</code></td>"
                f"<td>{html.escape(op.get('summary', ''))}</td></tr>"
            )
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>orbit-lite serve API</title>"
        "<link rel='stylesheet' href='/static/style.css'></head><body><main><h1>orbit-lite serve: HTTP API</h1>"
        '<p>JSON in and out; errors are <code>{"error": "..."}</code> with a 4xx status. Every call on a '
        "collection needs <code>Authorization: Bearer &lt;token&gt;</code>. The live socket "
        "<code>/api/collections/{cid}/live</code> takes JPEG frames (a browser sends "
        "<code>{\"token\": ...}</code> first). The machine-readable document is <a href='/openapi.json'>"
        "/openapi.json</a>.</p><table><caption>Routes</caption><thead><tr><th scope='col'>Method</th>"
        "<th scope='col'>Path</th><th scope='col'>What it does</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table></main></body></html>"
    )
