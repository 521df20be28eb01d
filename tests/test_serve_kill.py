"""A teach job whose service is killed (SIGKILL, no clean shutdown) is failed on the next start, and the previous
recognizer still serves."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="pip install 'orbit-lite[serve]'")
from serve_media import COLOURS, video_bytes, write_recipe

ROOT = Path(__file__).resolve().parents[1]

# The service in its own process; its second teach job blocks in personalize, so the kill lands mid-teach.
SERVER = textwrap.dedent(
    """
    import sys, threading, torch, uvicorn
    import orbit_lite.engine.personalize as engine
    from orbit_lite.serve.app import create_app
    from orbit_lite.serve.model import parse_source
    from orbit_lite.serve.service import Service, Settings

    real, calls = engine.personalize_user, []
    def stuck(*args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            threading.Event().wait()
        return real(*args, **kwargs)
    engine.personalize_user = stuck
    torch.manual_seed(0)
    service = Service(Settings(sys.argv[1], parse_source(None, [sys.argv[2]], []), "cpu"))
    uvicorn.run(create_app(service), host="127.0.0.1", port=int(sys.argv[3]), log_level="warning")
    """
)


@pytest.mark.heavy  # a second Python process with torch: about 15 s
def test_killed_teach_job_is_failed_on_restart(tmp_path: Path) -> None:
    import httpx2 as httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store, recipe = tmp_path / "store", write_recipe(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(store), str(recipe), str(port)], env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                httpx.get(url + "/healthz", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        http = httpx.Client(base_url=url, timeout=60)
        created = http.post("/api/collections").json()
        cid, auth = created["id"], {"Authorization": f"Bearer {created['token']}"}
        for name, colour in COLOURS.items():
            data = video_bytes(tmp_path, colour)
            http.post(f"/api/collections/{cid}/objects/{name}/videos", headers=auth, files={"file": ("v.mp4", data)})

        def teach_until(status: str) -> str:
            job = http.post(f"/api/collections/{cid}/teach", headers=auth).json()["job"]
            for _ in range(600):
                if http.get(f"/api/jobs/{job}", headers=auth).json()["status"] == status:
                    return job
                time.sleep(0.1)
            raise AssertionError(f"job {job} never {status}")

        first = teach_until("done")
        killed = teach_until("running")
        server.send_signal(signal.SIGKILL)
        server.wait(30)
    finally:
        server.kill()
    from fastapi.testclient import TestClient

    from orbit_lite.serve.app import create_app
    from orbit_lite.serve.model import parse_source
    from orbit_lite.serve.service import Service, Settings
    from orbit_lite.serve.store import INTERRUPTED

    service = Service(Settings(store, parse_source(None, [recipe], []), "cpu"))
    with TestClient(create_app(service)) as c:
        job = c.get(f"/api/jobs/{killed}", headers=auth).json()
        assert job["status"] == "failed" and job["error"] == INTERRUPTED
        view = c.get(f"/api/collections/{cid}", headers=auth).json()
        assert view["state"] == "ready" and view["recognizer"]["job"] == first
        probe = video_bytes(tmp_path, COLOURS["red cane"], seed=4)
        r = c.post(f"/api/collections/{cid}/recognize", headers=auth, files={"file": ("p.mp4", probe)})
        assert r.json()["inputs"][0]["prediction"] == "red cane"
    service.close()
