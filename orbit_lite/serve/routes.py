"""The HTTP API: each route parses its request into typed values and calls one operation of the service."""

from __future__ import annotations

import json
import shutil
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Header, Query, Request, UploadFile, WebSocket, WebSocketDisconnect
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse
from starlette.background import BackgroundTask

from orbit_lite.errors import OrbitLiteError
from orbit_lite.serve.errors import ServiceError
from orbit_lite.serve.recognizers import LiveStream
from orbit_lite.serve.service import Service
from orbit_lite.serve.tokens import bearer

router = APIRouter(prefix="/api")
MAX_LIVE_FRAME = 8 * 2**20  # one camera frame as JPEG


def service(request: Request) -> Service:
    return request.app.state.service


def token(authorization: Annotated[str | None, Header()] = None) -> str | None:
    return bearer(authorization)


Svc = Annotated[Service, Depends(service)]
Token = Annotated[str | None, Depends(token)]


def collection(cid: str, svc: Svc, tok: Token) -> str:
    """The collection id, once the bearer token is known to open it."""
    svc.check_access(cid, tok)
    return cid


Collection = Annotated[str, Depends(collection)]
Upload = Annotated[UploadFile, File(description="a video file or a zip of frames (an image too, to recognize)")]


@router.post("/collections", status_code=201, summary="Create a collection; its token is shown only now")
def create_collection(svc: Svc) -> dict[str, str]:
    cid, secret = svc.store.create_collection()
    return {"id": cid, "token": secret}


@router.get("/collections/{cid}", summary="Objects, their videos and the recognizer's state")
def get_collection(cid: Collection, svc: Svc) -> dict[str, Any]:
    return svc.store.collection(cid)


@router.delete("/collections/{cid}", summary="Delete the collection and every file of it")
def delete_collection(cid: Collection, svc: Svc) -> dict[str, str]:
    svc.store.delete_collection(cid)
    return {"deleted": cid}


@router.put("/collections/{cid}/objects/{name:path}", summary="Add an object (no videos yet)")
def add_object(cid: Collection, name: str, svc: Svc) -> JSONResponse:
    result = svc.add_object(cid, name)
    return JSONResponse(result, status_code=201 if result["created"] else 200)


@router.delete("/collections/{cid}/objects/{name:path}", summary="Delete an object and its videos")
def delete_object(cid: Collection, name: str, svc: Svc) -> dict[str, str]:
    from orbit_lite.serve.names import check_object_name

    name = check_object_name(name)
    svc.store.delete_object(cid, name)
    return {"deleted": name}


@router.post(
    "/collections/{cid}/objects/{name:path}/videos",
    status_code=201,
    summary="Upload a clean video of an object (a video file or a zip of frames)",
)
def add_video(cid: Collection, name: str, svc: Svc, file: Upload) -> dict[str, Any]:
    return svc.add_video(cid, name, file.file, file.filename)


@router.delete("/collections/{cid}/videos/{vid}", summary="Delete one video")
def delete_video(cid: Collection, vid: str, svc: Svc) -> dict[str, str]:
    svc.store.delete_video(cid, vid)
    return {"deleted": vid}


@router.get(
    "/collections/{cid}/videos/{vid}/thumbnail.jpg", summary="A video's first frame, small", response_class=FileResponse
)
def video_thumbnail(cid: Collection, vid: str, svc: Svc) -> FileResponse:
    return FileResponse(svc.store.thumbnail(cid, vid), media_type="image/jpeg")


@router.post("/collections/{cid}/teach", status_code=202, summary="Teach the recognizer from the clean videos")
def teach(cid: Collection, svc: Svc) -> dict[str, str]:
    return {"job": svc.teacher.submit(cid)}


@router.get("/jobs/{job}", summary="A teach job's status, progress and error")
def get_job(job: str, svc: Svc, tok: Token) -> dict[str, Any]:
    return svc.job(job, tok)


@router.post(
    "/collections/{cid}/recognize",
    summary="Per-frame predictions for an image, video or zip of frames",
    response_model=None,
)
def recognize(
    cid: Collection,
    svc: Svc,
    file: Upload,
    annotate: Annotated[bool, Query(description="return the annotated MP4 instead of JSON")] = False,
    label: Annotated[str | None, Query(description="the true object: scores the answers")] = None,
) -> dict[str, Any] | FileResponse:
    result = svc.recognize(cid, file.file, file.filename, annotate, label)
    if isinstance(result, dict):
        return result
    cleanup = BackgroundTask(shutil.rmtree, result.parent, ignore_errors=True)
    return FileResponse(result, media_type="video/mp4", filename="recognized.mp4", background=cleanup)


@router.get(
    "/collections/{cid}/recognizer.pt",
    summary="The personal recognizer (as `personalize --out` writes it)",
    response_class=FileResponse,
)
def recognizer_pt(cid: Collection, svc: Svc) -> FileResponse:
    path = svc.recognizer_file(cid)
    return FileResponse(path, media_type="application/octet-stream", filename="recognizer.pt")


@router.get(
    "/collections/{cid}/recognizer.onnx",
    summary="The recognizer as ONNX (as `export` writes it)",
    response_class=FileResponse,
)
def recognizer_onnx(cid: Collection, svc: Svc) -> FileResponse:
    path = svc.recognizers.onnx(svc.recognizer_file(cid))
    return FileResponse(path, media_type="application/octet-stream", filename="recognizer.onnx")


@router.websocket("/collections/{cid}/live")
async def live(websocket: WebSocket, cid: str) -> None:
    """JPEG frames in (binary messages), one JSON answer per frame out. A browser, which cannot set headers on a
    socket, sends ``{"token": ...}`` as its first (text) message; other clients may send the Authorization header."""
    svc: Service = websocket.app.state.service
    await websocket.accept()
    try:
        secret = bearer(websocket.headers.get("authorization"))
        if secret is None:
            first = await websocket.receive_text()
            secret = _token_message(first)
        await run_in_threadpool(svc.check_access, cid, secret)
        await _stream(websocket, svc, cid)
    except WebSocketDisconnect:
        return
    except OrbitLiteError as e:  # refusals close the socket with the one-line reason; nothing else is said
        await websocket.send_json({"error": str(e)})
        await websocket.close(code=1008)
    except Exception:
        await websocket.send_json({"error": "internal error"})
        await websocket.close(code=1011)
        raise


def _token_message(text: str) -> str | None:
    try:
        message = json.loads(text)
    except ValueError:
        return None
    return message.get("token") if isinstance(message, dict) and isinstance(message.get("token"), str) else None


async def _stream(websocket: WebSocket, svc: Service, cid: str) -> None:
    streams: list[LiveStream] = []  # the stream of the recognizer in use (a new one when teaching replaces it)

    def answer(data: bytes) -> dict[str, Any]:  # one trip to a worker thread per frame
        model = svc.recognizers.get(svc.recognizer_file(cid))  # a newly taught recognizer takes over at once
        if not streams or streams[0].model is not model:
            streams[:] = [LiveStream(model)]
        try:
            return streams[0].push(data)
        except ServiceError as e:
            return {"error": str(e)}

    while True:
        data = await websocket.receive_bytes()
        if len(data) > MAX_LIVE_FRAME:
            await websocket.send_json({"error": f"frame over {MAX_LIVE_FRAME // 2**20} MB; send smaller JPEGs"})
            continue
        await websocket.send_json(await run_in_threadpool(answer, data))
