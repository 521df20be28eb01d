"""The web page of `orbit-lite serve` in a real browser: headless Chromium (the system's package, driven by
Playwright) with a fake camera playing a synthetic video creates a collection, uploads clean videos of three
objects, teaches, hears the right object announced in the live view, recognizes an uploaded video, and passes
axe-core with no serious or critical violation. A screenshot of each step is saved in the test's folder."""

from __future__ import annotations

import re
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("fastapi", reason="pip install 'orbit-lite[serve]'")
from serve_media import COLOURS, video_bytes, write_recipe, write_y4m

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
INSTALL = "apt-get install -y chromium chromium-driver"
AXE = Path(__file__).parent / "assets" / "axe-core" / "axe.min.js"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason=f"needs the system's Chromium: {INSTALL}"),
    pytest.mark.slow,
]


@pytest.fixture
def server(tmp_path: Path):
    """The service on 127.0.0.1 (a free port), with the tiny recipe, in a thread."""
    import uvicorn

    from orbit_lite.serve.app import create_app
    from orbit_lite.serve.model import parse_source
    from orbit_lite.serve.service import Service, Settings

    torch.manual_seed(0)
    service = Service(Settings(tmp_path / "store", parse_source(None, [write_recipe(tmp_path)], []), "cpu"))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(service), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(10)
    service.close()


def serious_violations(page) -> list[str]:
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [
        f"{v['id']} ({v['impact']}): {v['help']}"
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def test_teach_three_objects_and_hear_the_live_answer(server: str, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (no browser download)")
    shots = tmp_path / "screenshots"
    shots.mkdir()
    camera = write_y4m(tmp_path / "camera.y4m", COLOURS["green keys"])
    files = {}
    for name, colour in COLOURS.items():
        files[name] = []
        for seed in range(2):
            path = tmp_path / f"{name.replace(' ', '-')}-{seed}.mp4"
            path.write_bytes(video_bytes(tmp_path, colour, seed=seed))
            files[name].append(path)
    probe = tmp_path / "probe.mp4"
    probe.write_bytes(video_bytes(tmp_path, COLOURS["red cane"], seed=5))
    with sync_api.sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        browser = p.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=[*FLAGS, f"--use-file-for-fake-video-capture={camera}"],
        )
        try:
            page = browser.new_page()
            page.set_default_timeout(60_000)
            page.goto(server + "/")
            page.screenshot(path=shots / "1-start.png", full_page=True)
            assert serious_violations(page) == []

            page.get_by_role("button", name="Create a new collection").click()
            page.wait_for_selector("#token-link:visible")
            assert "#collection=" in page.get_attribute("#token-link", "href")
            page.screenshot(path=shots / "2-collection.png", full_page=True)

            for name in COLOURS:  # by keyboard: type the name, press Enter
                page.focus("#object-name")
                page.keyboard.type(name)
                page.keyboard.press("Enter")
                page.get_by_label(f"Upload clean videos of {name}").set_input_files([str(f) for f in files[name]])
                page.wait_for_selector(f"text=Added 2 videos of {name}.")
            # one more clean video of the object the camera shows, recorded in the page (MediaRecorder's WebM)
            page.get_by_role("button", name="Record 4 seconds of green keys").click()
            page.wait_for_selector("text=Added 1 video of green keys.")
            assert page.get_by_role("heading", name="green keys (3 videos)").is_visible()
            page.screenshot(path=shots / "3-videos.png", full_page=True)

            page.get_by_role("button", name="Teach the recognizer").click()
            page.wait_for_function("document.getElementById('teach-status').textContent.startsWith('Ready')")
            assert page.eval_on_selector("#teach-progress", "e => e.value") == 1
            page.screenshot(path=shots / "4-taught.png", full_page=True)

            # what the page says aloud, caught (a headless browser has no voice)
            page.evaluate("() => { window.spoken = []; speechSynthesis.speak = (u) => window.spoken.push(u.text); }")
            page.get_by_label("Speak what is recognized").check()
            page.get_by_role("button", name="Start the live camera").click()
            page.wait_for_function("document.getElementById('announce').textContent.startsWith('green keys')")
            assert page.get_attribute("#announce", "aria-live") == "polite"
            assert page.evaluate("window.spoken") == ["green keys"]
            page.screenshot(path=shots / "5-live.png", full_page=True)
            page.get_by_role("button", name="Stop the live camera").click()

            page.get_by_label("Recognize a video, image or zip of frames").set_input_files(str(probe))
            page.get_by_role("button", name="Recognize", exact=True).click()
            page.wait_for_selector("text=It shows red cane")
            page.wait_for_selector("#annotated:visible")
            page.screenshot(path=shots / "6-recognized.png", full_page=True)
            assert serious_violations(page) == []

            # every visible control is reached by the Tab key alone
            count = page.evaluate(
                """() => { const all = [...document.querySelectorAll('a[href], button, input, summary')]
                       .filter(e => e.checkVisibility() && !e.disabled);
                       all.forEach((e, i) => e.dataset.control = i); return all.length; }"""
            )
            page.focus("body")
            reached = set()
            for _ in range(count + 5):
                page.keyboard.press("Tab")
                reached.add(page.evaluate("document.activeElement.dataset.control"))
            assert {str(i) for i in range(count)} <= reached

            # 200% zoom of a 1280 px window is a 640 CSS px viewport: everything reflows, nothing scrolls sideways
            page.set_viewport_size({"width": 640, "height": 900})
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
            page.screenshot(path=shots / "7-zoom-200.png", full_page=True)
        finally:
            browser.close()


# Records each change of the detail line under the bar (with the bar's value then) and of the live region.
WATCH_TEACHING = """() => {
  window.seen = []; window.said = [];
  const watch = (id, push) => new MutationObserver(push)
    .observe(document.getElementById(id), { childList: true, characterData: true, subtree: true });
  const text = (id) => document.getElementById(id).textContent;
  const bar = () => document.getElementById('teach-progress').value;
  watch('teach-detail', () => window.seen.push([text('teach-detail'), bar()]));
  watch('teach-status', () => window.said.push(text('teach-status')));
}"""


def test_the_page_shows_each_stage_of_a_slow_teach_job(
    server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading and encoding slowed by sleeps: the page's detail line and bar follow the job's stages as they change,
    the bar never goes back and ends at 1, and the live region speaks each phase once, without the numbers."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (no browser download)")
    from orbit_lite.data.video import FrameReader
    from orbit_lite.learners.base import FewShotLearner

    with sync_api.sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        browser = p.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            body = browser.request.post(server + "/api/collections").json()  # the collection made through the API
            cid, auth = body["id"], {"Authorization": f"Bearer {body['token']}"}
            for name, colour in COLOURS.items():
                for seed in range(2):
                    video = {
                        "name": "clip.mp4",
                        "mimeType": "video/mp4",
                        "buffer": video_bytes(tmp_path, colour, seed=seed),
                    }
                    url = f"{server}/api/collections/{cid}/objects/{name}/videos"
                    assert browser.request.post(url, headers=auth, multipart={"file": video}).ok
            # slowed after the uploads: 6 videos (2.4 s) and 3 chunks of frames (1.8 s), seen over several polls
            for cls, method, pause in ((FrameReader, "read_into", 0.4), (FewShotLearner, "clip_features", 0.6)):
                slowed = lambda *a, _f=getattr(cls, method), _s=pause, **k: (time.sleep(_s), _f(*a, **k))[1]  # noqa: E731
                monkeypatch.setattr(cls, method, slowed)
            page = browser.new_page()
            page.set_default_timeout(60_000)
            page.goto(f"{server}/#collection={cid}&token={body['token']}")
            page.wait_for_selector("text=green keys (2 videos)")
            page.evaluate(WATCH_TEACHING)
            page.get_by_role("button", name="Teach the recognizer").click()
            page.wait_for_function("document.getElementById('teach-detail').textContent.startsWith('learning')")
            page.screenshot(path=tmp_path / "teaching.png", full_page=True)
            assert serious_violations(page) == []
            page.wait_for_function("document.getElementById('teach-status').textContent.startsWith('Ready')")
            seen, said = page.evaluate("window.seen"), page.evaluate("window.said")
        finally:
            browser.close()
    details = [d for d, _ in seen]
    reading = {d for d in details if re.fullmatch(r"reading the videos: \d of 6 \(\d+%\)", d)}
    learning = {d for d in details if re.fullmatch(r"learning your objects: \d+ of \d+ frames \(\d+%\)", d)}
    assert len(reading) >= 2 and len(learning) >= 2, details  # the numbers move while the page watches
    bar = [v for _, v in seen]
    assert bar == sorted(bar) and bar[-1] == 1 and details[-1] == "done (100%)"
    assert len({v for v in bar if 0 < v < 1}) >= 4  # the bar moves with the stages, not only at the end
    phases = [s for s in said if s.startswith("Teaching:") and "waiting" not in s]  # (queued on a slow machine)
    assert phases[:2] == ["Teaching: reading the videos.", "Teaching: learning your objects."], said
    assert len(phases) == len(set(phases)) and not any(c.isdigit() for s in phases for c in s)
